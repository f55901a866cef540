/* The fused RTN path (rtn_rows.h). Every formula mirrors quant/affine.c; the loops are written
 * so that the compiler vectorizes them (no libm calls, branch-free selects). */
#include "worker/rtn_rows.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int64_t qd_rtn_ngroups(const qd_qscheme *s, int64_t cols)
{
    if (s->gran != QD_GRAN_GROUP) return 1;
    int64_t G = QD_MIN(s->group_size, cols);
    return (cols + G - 1) / G;
}

/* 8-lane vectors (GNU vector extensions). The compiler lowers them to the ISA it targets: two
 * SSE2 registers in the default build, one AVX register in the avx2 clone (QD_CLONES); the
 * operations and their order are the same, so both give the same bits. No FMA is enabled, and
 * ISO C mode keeps a*b+c as two roundings. */
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef double v4d __attribute__((vector_size(32)));
typedef int64_t v4l __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16)));

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(QD_NO_CLONES)
#define QD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define QD_CLONES
#endif

/* Helpers as macros: functions taking or returning 32-byte vectors would have a different ABI
 * in the default and the avx2 build. */
#define LOAD8(p)                     \
    ({                               \
        v8f v_;                      \
        memcpy(&v_, (p), sizeof v_); \
        v_;                          \
    })
#define SELF(m, a, b) ((v8f)(((m) & (v8i)(a)) | (~(m) & (v8i)(b))))
/* max for non-negative, non-NaN values */
#define MAXD(a, b)                               \
    ({                                           \
        v4d a_ = (a), b_ = (b);                  \
        v4l m_ = a_ > b_;                        \
        (v4d)((m_ & (v4l)a_) | (~m_ & (v4l)b_)); \
    })
#define ABSD(d) ((v4d)((v4l)(d) & (v4l){INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX}))
#define LO4(v)  __builtin_convertvector(((v4f){(v)[0], (v)[1], (v)[2], (v)[3]}), v4d)
#define HI4(v)  __builtin_convertvector(((v4f){(v)[4], (v)[5], (v)[6], (v)[7]}), v4d)

QD_CLONES int qd_all_finite(const float *x, int64_t n)
{
    /* v - v is 0 for finite v and NaN for Inf/NaN; NaN sticks in the sum */
    v8f acc = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        v8f v = LOAD8(x + i);
        acc += v - v;
    }
    float f = 0;
    for (int k = 0; k < 8; k++) f += acc[k];
    for (; i < n; i++) f += x[i] - x[i];
    return f == 0.0f;
}

/* min and max of x[0..n); returns 0 if a value is NaN or Inf (v - v is then NaN and sticks in
 * the sum), so that the finiteness check costs no pass of its own */
static inline __attribute__((always_inline)) int range_of(const float *x, int64_t n, float *lo_out, float *hi_out)
{
    float lo = x[0], hi = x[0], f = 0.0f;
    int64_t c = 0;
    if (n >= 16) {
        v8f l = LOAD8(x), h = l, acc = l - l;
        for (c = 8; c + 8 <= n; c += 8) {
            v8f v = LOAD8(x + c);
            l = SELF(v < l, v, l);
            h = SELF(v > h, v, h);
            acc += v - v;
        }
        for (int k = 0; k < 8; k++) {
            lo = l[k] < lo ? l[k] : lo;
            hi = h[k] > hi ? h[k] : hi;
            f += acc[k];
        }
    }
    for (; c < n; c++) {
        float v = x[c];
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
        f += v - v;
    }
    *lo_out = lo;
    *hi_out = hi;
    return f == 0.0f;
}

/* qd_find_params_rows' min-max branch for a known range (finite inputs: the selects above give
 * the same range as fminf/fmaxf, up to the sign of a zero, which no result depends on) */
static void params_from_range(float lo, float hi, int bits, int sym, float *ps, int32_t *pz)
{
    qd_params_from_range(lo, hi, bits, sym, ps, pz);
}

/* codes of one group: clamp(rint(x / s) + z, 0, maxq). rint is done with the 1.5*2^23 trick,
 * exact (half to even, default rounding mode) for |v| < 2^22; larger |v| clamp to the same end
 * either way. The dequantized value s * (q - z) is formed as the reference does (q - z is exact
 * in float), and the error sums go to 8 fixed lanes (element c of the group to lane c % 8). */
#define QD_MAGIC 12582912.0f
static inline __attribute__((always_inline)) void quant_group(const float *x, int64_t n, float s, int32_t z, int maxq,
                                                              uint8_t *codes, double *e2, double *w2, double *mx)
{
    const float zf = (float)z, mf = (float)maxq;
    v4d a0 = {0}, a1 = {0}, b0 = {0}, b1 = {0}, m0 = {0}, m1 = {0};
    const v8f vs = s - (v8f){0}, vz = zf - (v8f){0}, vm = mf - (v8f){0}, vM = QD_MAGIC - (v8f){0}, v0 = {0};
    int64_t c = 0;
    for (; c + 8 <= n; c += 8) {
        v8f xv = LOAD8(x + c);
        v8f q = (((xv / vs) + vM) - vM) + vz;
        q = SELF(q < v0, v0, q);
        q = SELF(q > vm, vm, q);
        v8i qi = __builtin_convertvector(q, v8i);
        for (int k = 0; k < 8; k++) codes[c + k] = (uint8_t)qi[k];
        v8f dq = vs * (q - vz);
        v4d xl = LO4(xv), xh = HI4(xv);
        v4d dl = xl - LO4(dq), dh = xh - HI4(dq);
        a0 += dl * dl;
        a1 += dh * dh;
        b0 += xl * xl;
        b1 += xh * xh;
        m0 = MAXD(ABSD(dl), m0);
        m1 = MAXD(ABSD(dh), m1);
    }
    double a[8], b[8], m[8];
    for (int k = 0; k < 4; k++) {
        a[k] = a0[k], a[k + 4] = a1[k];
        b[k] = b0[k], b[k + 4] = b1[k];
        m[k] = m0[k], m[k + 4] = m1[k];
    }
    for (int k = 0; c < n; c++, k++) {
        float v = x[c] / s;
        float q = ((v + QD_MAGIC) - QD_MAGIC) + zf;
        q = q < 0.0f ? 0.0f : q;
        q = q > mf ? mf : q;
        codes[c] = (uint8_t)(int)q;
        float dq = s * (q - zf);
        double d = (double)x[c] - (double)dq;
        double ad = d < 0 ? -d : d;
        a[k] += d * d;
        b[k] += (double)x[c] * (double)x[c];
        m[k] = ad > m[k] ? ad : m[k];
    }
    *e2 += ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    *w2 += ((b[0] + b[1]) + (b[2] + b[3])) + ((b[4] + b[5]) + (b[6] + b[7]));
    for (int k = 0; k < 8; k++)
        if (m[k] > *mx) *mx = m[k];
}

static inline __attribute__((always_inline)) void pack_row(const uint8_t *codes, int64_t n, int bits, uint8_t *out)
{
    if (bits == 8) {
        memcpy(out, codes, (size_t)n);
    } else if (bits == 4) {
        int64_t h = n / 2;
        for (int64_t i = 0; i < h; i++) out[i] = (uint8_t)(codes[2 * i] | codes[2 * i + 1] << 4);
        if (n & 1) out[h] = codes[n - 1];
    } else if (bits == 2) {
        int64_t q = n / 4;
        for (int64_t i = 0; i < q; i++)
            out[i] = (uint8_t)(codes[4 * i] | codes[4 * i + 1] << 2 | codes[4 * i + 2] << 4 | codes[4 * i + 3] << 6);
        if (n & 3) {
            uint8_t v = 0;
            for (int64_t i = 4 * q; i < n; i++) v |= (uint8_t)(codes[i] << (2 * (i - 4 * q)));
            out[q] = v;
        }
    } else
        qd_pack_row(codes, n, bits, out);
}

/* QD_ENONFINITE naming the first NaN/Inf by its [row, col] in the whole tensor */
static int non_finite(const float *x, int64_t nrows, int64_t cols, const char *what, int64_t row0)
{
    for (int64_t i = 0; i < nrows * cols; i++)
        if (!isfinite(x[i]))
            return qd_err_set(QD_ENONFINITE, "%s: %s at [%lld, %lld]", what, isnan(x[i]) ? "NaN" : "Inf",
                              (long long)(row0 + i / cols), (long long)(i % cols));
    return qd_err_set(QD_ENONFINITE, "%s: a NaN or Inf value", what);
}

QD_CLONES int qd_rtn_rows(const float *x, int64_t nrows, int64_t cols, const qd_qscheme *s, const qd_clip_opts *clip,
                          uint8_t *packed, float *scales, int32_t *zeros, int64_t blk_rows, qd_errsum *blk,
                          const char *what, int64_t row0)
{
    if (!qd_valid_bits(s->bits)) return qd_err_set(QD_EINVAL, "%s: bits must be 2..8, got %d", what, s->bits);
    if (nrows < 1 || cols < 1 || blk_rows < 1)
        return qd_err_set(QD_EINVAL, "%s: cannot quantize %lld rows of %lld", what, (long long)nrows, (long long)cols);
    if (s->gran == QD_GRAN_GROUP && s->group_size < 1)
        return qd_err_set(QD_EINVAL, "%s: group size must be >= 1", what);
    const int bits = s->bits, maxq = qd_maxq(bits);
    const int use_clip = clip && clip->grid > 0;
    const int64_t G = s->gran == QD_GRAN_GROUP ? QD_MIN(s->group_size, cols) : cols;
    const int64_t ng = (cols + G - 1) / G, rb = qd_packed_row_bytes(cols, bits);
    float ts = 0;
    int32_t tz = 0;
    if (s->gran == QD_GRAN_TENSOR) {
        float lo, hi;
        if (!range_of(x, nrows * cols, &lo, &hi)) return non_finite(x, nrows, cols, what, row0);
        if (use_clip)
            qd_find_params_rows(x, 1, nrows * cols, nrows * cols, bits, s->sym, clip, &ts, &tz, 1);
        else
            params_from_range(lo, hi, bits, s->sym, &ts, &tz);
    }
    uint8_t *codes = malloc((size_t)cols);
    if (!codes) return qd_err_set(QD_ENOMEM, "%s: out of memory", what);
    for (int64_t r = 0; r < nrows; r++) {
        const float *xr = x + r * cols;
        float *sr = scales + r * ng;
        int32_t *zr = zeros + r * ng;
        if (s->gran == QD_GRAN_TENSOR) {
            sr[0] = ts;
            zr[0] = tz;
        } else if (use_clip) {
            if (!qd_all_finite(xr, cols)) {
                free(codes);
                return non_finite(x, nrows, cols, what, row0);
            }
            for (int64_t g = 0; g < ng; g++)
                qd_find_params_rows(xr + g * G, 1, QD_MIN(G, cols - g * G), cols, bits, s->sym, clip, sr + g, zr + g,
                                    1);
        } else {
            for (int64_t g = 0; g < ng; g++) {
                float lo, hi;
                if (!range_of(xr + g * G, QD_MIN(G, cols - g * G), &lo, &hi)) {
                    free(codes);
                    return non_finite(x, nrows, cols, what, row0);
                }
                params_from_range(lo, hi, bits, s->sym, sr + g, zr + g);
            }
        }
        double e2 = 0, w2 = 0, mx = 0;
        for (int64_t g = 0; g < ng; g++) {
            int64_t c0 = g * G, n = QD_MIN(G, cols - c0);
            quant_group(xr + c0, n, sr[g], zr[g], maxq, codes + c0, &e2, &w2, &mx);
        }
        pack_row(codes, cols, bits, packed + r * rb);
        qd_errsum *b = &blk[r / blk_rows];
        b->err2 += e2;
        b->w2 += w2;
        if (mx > b->max_abs) b->max_abs = mx;
    }
    free(codes);
    return QD_OK;
}
