/* The fused RTN path (rtn_rows.h). Every formula mirrors quant/affine.c; the loops are written
 * so that the compiler vectorizes them (no libm calls, branch-free selects). */
#include "worker/rtn_rows.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int64_t qd_rtn_ngroups(const qd_qscheme *s, int64_t cols) {
    if (s->gran != QD_GRAN_GROUP) return 1;
    int64_t G = QD_MIN(s->group_size, cols);
    return (cols + G - 1) / G;
}

/* 4-lane vectors (GNU vector extensions: SSE2 on x86-64, NEON on arm64, scalar elsewhere) */
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
typedef double v2d __attribute__((vector_size(16)));
typedef float v2f __attribute__((vector_size(8)));

static inline v4f load4(const float *p) {
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline v4f sel(v4i m, v4f a, v4f b) { return (v4f)((m & (v4i)a) | (~m & (v4i)b)); }
static inline v2d seld(v2d a, v2d b) { /* max for non-negative, non-NaN doubles */
    typedef int64_t v2l __attribute__((vector_size(16)));
    v2l m = a > b;
    return (v2d)((m & (v2l)a) | (~m & (v2l)b));
}

static inline v2d sel_abs(v2d d) { /* |d|: clear the sign bits */
    typedef int64_t v2l __attribute__((vector_size(16)));
    const v2l mask = {INT64_MAX, INT64_MAX};
    return (v2d)((v2l)d & mask);
}

int qd_all_finite(const float *x, int64_t n) {
    /* v - v is 0 for finite v and NaN for Inf/NaN; NaN sticks in the sum */
    v4f acc = {0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        v4f v = load4(x + i);
        acc += v - v;
    }
    float f = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (; i < n; i++) f += x[i] - x[i];
    return f == 0.0f;
}

static void range_of(const float *x, int64_t n, float *lo_out, float *hi_out) {
    float lo = x[0], hi = x[0];
    int64_t c = 0;
    if (n >= 8) {
        v4f l = load4(x), h = l;
        for (c = 4; c + 4 <= n; c += 4) {
            v4f v = load4(x + c);
            l = sel(v < l, v, l);
            h = sel(v > h, v, h);
        }
        for (int k = 0; k < 4; k++) {
            lo = l[k] < lo ? l[k] : lo;
            hi = h[k] > hi ? h[k] : hi;
        }
    }
    for (; c < n; c++) {
        float v = x[c];
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    *lo_out = lo;
    *hi_out = hi;
}

/* qd_find_params_rows' min-max branch for a known range (finite inputs: the selects above give
 * the same range as fminf/fmaxf, up to the sign of a zero, which no result depends on) */
static void params_from_range(float lo, float hi, int bits, int sym, float *ps, int32_t *pz) {
    const int maxq = qd_maxq(bits);
    const int32_t zsym = (maxq + 1) / 2;
    const int constant = lo == hi;
    const float cval = lo;
    float xmin = fminf(lo, 0.0f), xmax = fmaxf(hi, 0.0f);
    if (sym) {
        xmax = fmaxf(fabsf(xmin), xmax);
        if (xmin < 0) xmin = -xmax;
    }
    if (xmin == 0.0f && xmax == 0.0f) {
        xmin = -1.0f;
        xmax = 1.0f;
    }
    float s = (xmax - xmin) / (float)maxq;
    int32_t z = sym ? zsym : (int32_t)rintf(-xmin / s);
    if (constant && cval != 0.0f && qd_dequantize1(qd_quantize1(cval, s, z, maxq), s, z) != cval) {
        s = fabsf(cval);
        z = sym ? zsym : (cval > 0 ? 0 : 1);
    }
    *ps = s;
    *pz = z;
}

/* codes of one group: clamp(rint(x / s) + z, 0, maxq). rint is done with the 1.5*2^23 trick,
 * exact (half to even, default rounding mode) for |v| < 2^22; larger |v| clamp to the same end
 * either way. The dequantized value s * (q - z) is formed as the reference does (q - z is exact
 * in float), and the error sums go to 4 fixed lanes (element c of the group to lane c % 4). */
#define QD_MAGIC 12582912.0f
static void quant_group(const float *x, int64_t n, float s, int32_t z, int maxq, uint8_t *codes, double *e2,
                        double *w2, double *mx) {
    const float zf = (float)z, mf = (float)maxq;
    v2d a0 = {0, 0}, a1 = {0, 0}, b0 = {0, 0}, b1 = {0, 0}, m0 = {0, 0}, m1 = {0, 0};
    const v4f vs = {s, s, s, s}, vz = {zf, zf, zf, zf}, vm = {mf, mf, mf, mf}, vM = {QD_MAGIC, QD_MAGIC, QD_MAGIC, QD_MAGIC};
    const v4f v0 = {0, 0, 0, 0};
    int64_t c = 0;
    for (; c + 4 <= n; c += 4) {
        v4f xv = load4(x + c);
        v4f r = ((xv / vs) + vM) - vM;
        v4f q = r + vz;
        q = sel(q < v0, v0, q);
        q = sel(q > vm, vm, q);
        v4i qi = __builtin_convertvector(q, v4i);
        typedef uint8_t v16u __attribute__((vector_size(16)));
        const v16u pick = {0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12};
        v16u bytes = __builtin_shuffle((v16u)qi, pick);
        memcpy(codes + c, &bytes, 4);
        v4f dq = vs * (q - vz);
        v2f xl = {xv[0], xv[1]}, xh = {xv[2], xv[3]}, dl = {dq[0], dq[1]}, dh = {dq[2], dq[3]};
        v2d xdl = __builtin_convertvector(xl, v2d), xdh = __builtin_convertvector(xh, v2d);
        v2d dlo = xdl - __builtin_convertvector(dl, v2d), dhi = xdh - __builtin_convertvector(dh, v2d);
        a0 += dlo * dlo;
        a1 += dhi * dhi;
        b0 += xdl * xdl;
        b1 += xdh * xdh;
        v2d alo = sel_abs(dlo), ahi = sel_abs(dhi);
        m0 = seld(alo, m0);
        m1 = seld(ahi, m1);
    }
    double a[4] = {a0[0], a0[1], a1[0], a1[1]}, b[4] = {b0[0], b0[1], b1[0], b1[1]}, m[4] = {m0[0], m0[1], m1[0], m1[1]};
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
    *e2 += (a[0] + a[1]) + (a[2] + a[3]);
    *w2 += (b[0] + b[1]) + (b[2] + b[3]);
    double mm = m[0] > m[1] ? m[0] : m[1], mm2 = m[2] > m[3] ? m[2] : m[3];
    mm = mm > mm2 ? mm : mm2;
    if (mm > *mx) *mx = mm;
}

static void pack_row(const uint8_t *codes, int64_t n, int bits, uint8_t *out) {
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

int qd_rtn_rows(const float *x, int64_t nrows, int64_t cols, const qd_qscheme *s, const qd_clip_opts *clip,
                uint8_t *packed, float *scales, int32_t *zeros, int64_t blk_rows, qd_errsum *blk,
                const char *what, int64_t row0) {
    if (!qd_valid_bits(s->bits)) return qd_err_set(QD_EINVAL, "%s: bits must be 2..8, got %d", what, s->bits);
    if (nrows < 1 || cols < 1 || blk_rows < 1)
        return qd_err_set(QD_EINVAL, "%s: cannot quantize %lld rows of %lld", what, (long long)nrows, (long long)cols);
    if (s->gran == QD_GRAN_GROUP && s->group_size < 1)
        return qd_err_set(QD_EINVAL, "%s: group size must be >= 1", what);
    if (!qd_all_finite(x, nrows * cols)) {
        int rc = qd_check_finite(x, nrows, cols, what);
        if (row0 && rc) { /* name the row in the whole tensor */
            for (int64_t i = 0; i < nrows * cols; i++)
                if (!isfinite(x[i]))
                    return qd_err_set(QD_ENONFINITE, "%s: %s at [%lld, %lld]", what, isnan(x[i]) ? "NaN" : "Inf",
                                      (long long)(row0 + i / cols), (long long)(i % cols));
        }
        return rc;
    }
    const int bits = s->bits, maxq = qd_maxq(bits);
    const int use_clip = clip && clip->grid > 0;
    const int64_t G = s->gran == QD_GRAN_GROUP ? QD_MIN(s->group_size, cols) : cols;
    const int64_t ng = (cols + G - 1) / G, rb = qd_packed_row_bytes(cols, bits);
    float ts = 0;
    int32_t tz = 0;
    if (s->gran == QD_GRAN_TENSOR) {
        if (use_clip)
            qd_find_params_rows(x, 1, nrows * cols, nrows * cols, bits, s->sym, clip, &ts, &tz, 1);
        else {
            float lo, hi;
            range_of(x, nrows * cols, &lo, &hi);
            params_from_range(lo, hi, bits, s->sym, &ts, &tz);
        }
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
            for (int64_t g = 0; g < ng; g++)
                qd_find_params_rows(xr + g * G, 1, QD_MIN(G, cols - g * G), cols, bits, s->sym, clip, sr + g, zr + g, 1);
        } else {
            for (int64_t g = 0; g < ng; g++) {
                float lo, hi;
                range_of(xr + g * G, QD_MIN(G, cols - g * G), &lo, &hi);
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
