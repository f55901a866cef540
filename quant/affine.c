/* Affine quantization: parameters (GPTQ-reference finder + clipping search), RTN, packing,
 * error metrics. See quant.h for the conventions. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant.h"

int qd_check_finite(const float *x, int64_t rows, int64_t cols, const char *what) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            float v = x[r * cols + c];
            if (!isfinite(v))
                return qd_err_set(QD_ENONFINITE, "%s: %s at [%lld, %lld]", what, isnan(v) ? "NaN" : "Inf",
                                  (long long)r, (long long)c);
        }
    return QD_OK;
}

int qd_qparams_alloc(qd_qparams *p, int64_t rows, int64_t cols, const qd_qscheme *s) {
    memset(p, 0, sizeof *p);
    if (!qd_valid_bits(s->bits)) return qd_err_set(QD_EINVAL, "bits must be 2..8, got %d", s->bits);
    if (rows < 1 || cols < 1) return qd_err_set(QD_ESHAPE, "cannot quantize a [%lld, %lld] matrix", (long long)rows, (long long)cols);
    if (s->gran == QD_GRAN_GROUP && s->group_size < 1)
        return qd_err_set(QD_EINVAL, "group size must be >= 1, got %lld", (long long)s->group_size);
    p->rows = rows;
    p->cols = cols;
    p->bits = s->bits;
    p->sym = s->sym;
    p->gran = s->gran;
    p->group_size = s->gran == QD_GRAN_GROUP ? QD_MIN(s->group_size, cols) : cols;
    p->ngroups = (cols + p->group_size - 1) / p->group_size;
    p->scales = calloc((size_t)(rows * p->ngroups), sizeof(float));
    p->zeros = calloc((size_t)(rows * p->ngroups), sizeof(int32_t));
    if (!p->scales || !p->zeros) {
        qd_qparams_free(p);
        return qd_err_set(QD_ENOMEM, "out of memory for %lld x %lld quantization parameters", (long long)rows,
                          (long long)p->ngroups);
    }
    return QD_OK;
}

void qd_qparams_free(qd_qparams *p) {
    free(p->scales);
    free(p->zeros);
    p->scales = NULL;
    p->zeros = NULL;
}

/* sum |q(x) - x|^norm over one row segment (norm 2 computed as a square) */
static double seg_err(const float *x, int64_t n, float scale, int32_t zero, int maxq, float norm) {
    double e = 0;
    for (int64_t c = 0; c < n; c++) {
        float d = fabsf(qd_dequantize1(qd_quantize1(x[c], scale, zero, maxq), scale, zero) - x[c]);
        e += norm == 2.0f ? (double)d * d : pow((double)d, (double)norm);
    }
    return e;
}

void qd_find_params_rows(const float *x, int64_t rows, int64_t n, int64_t ld, int bits, int sym,
                         const qd_clip_opts *clip, float *scale, int32_t *zero, int64_t sstride) {
    const int maxq = qd_maxq(bits);
    const int32_t zsym = (maxq + 1) / 2;
    for (int64_t r = 0; r < rows; r++) {
        const float *row = x + r * ld;
        float lo = row[0], hi = row[0];
        for (int64_t c = 1; c < n; c++) {
            lo = fminf(lo, row[c]);
            hi = fmaxf(hi, row[c]);
        }
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
        if (clip && clip->grid > 0) {
            double best = INFINITY;
            int steps = (int)(clip->maxshrink * (float)clip->grid);
            for (int i = 0; i < steps; i++) {
                float pshr = (float)(1.0 - (double)i / clip->grid);
                float xmin1 = pshr * xmin, xmax1 = pshr * xmax;
                float s1 = (xmax1 - xmin1) / (float)maxq;
                int32_t z1 = sym ? zsym : (int32_t)rintf(-xmin1 / s1);
                double e = seg_err(row, n, s1, z1, maxq, clip->norm);
                if (e < best) {
                    best = e;
                    s = s1;
                    z = z1;
                }
            }
        }
        /* A constant group must come back exactly: if the finder's scale does not reproduce it,
         * use scale |c| with the constant one step from the zero point. */
        if (constant && cval != 0.0f &&
            qd_dequantize1(qd_quantize1(cval, s, z, maxq), s, z) != cval) {
            s = fabsf(cval);
            z = sym ? zsym : (cval > 0 ? 0 : 1);
        }
        scale[r * sstride] = s;
        zero[r * sstride] = z;
    }
}

int qd_quant_params(const float *w, int64_t rows, int64_t cols, const qd_qscheme *s, const qd_clip_opts *clip,
                    qd_qparams *p) {
    int rc = qd_check_finite(w, rows, cols, "weight");
    if (rc) return rc;
    if ((rc = qd_qparams_alloc(p, rows, cols, s))) return rc;
    if (s->gran == QD_GRAN_TENSOR) {
        qd_find_params_rows(w, 1, rows * cols, rows * cols, s->bits, s->sym, clip, p->scales, p->zeros, 1);
        for (int64_t r = 1; r < rows; r++) {
            p->scales[r] = p->scales[0];
            p->zeros[r] = p->zeros[0];
        }
    } else {
        for (int64_t g = 0; g < p->ngroups; g++) {
            int64_t c0 = g * p->group_size, n = QD_MIN(p->group_size, cols - c0);
            qd_find_params_rows(w + c0, rows, n, cols, s->bits, s->sym, clip, p->scales + g, p->zeros + g, p->ngroups);
        }
    }
    return QD_OK;
}

static inline int64_t group_of(const qd_qparams *p, const int32_t *g_idx, int64_t c) {
    return g_idx ? g_idx[c] : c / p->group_size;
}

void qd_rtn_quantize(const float *w, const qd_qparams *p, const int32_t *g_idx, uint8_t *codes) {
    const int maxq = qd_maxq(p->bits);
    for (int64_t r = 0; r < p->rows; r++) {
        const float *sr = p->scales + r * p->ngroups;
        const int32_t *zr = p->zeros + r * p->ngroups;
        for (int64_t c = 0; c < p->cols; c++) {
            int64_t g = group_of(p, g_idx, c);
            codes[r * p->cols + c] = (uint8_t)qd_quantize1(w[r * p->cols + c], sr[g], zr[g], maxq);
        }
    }
}

void qd_dequantize(const uint8_t *codes, const qd_qparams *p, const int32_t *g_idx, float *out) {
    for (int64_t r = 0; r < p->rows; r++) {
        const float *sr = p->scales + r * p->ngroups;
        const int32_t *zr = p->zeros + r * p->ngroups;
        for (int64_t c = 0; c < p->cols; c++) {
            int64_t g = group_of(p, g_idx, c);
            out[r * p->cols + c] = qd_dequantize1(codes[r * p->cols + c], sr[g], zr[g]);
        }
    }
}

/* ---- packing: low bits first, each row starts on a byte boundary ------------------------- */

_Static_assert((8 * 3 + 7) / 8 == 3, "3-bit packs 8 values in 3 bytes");
_Static_assert((8 * 5 + 7) / 8 == 5, "5-bit packs 8 values in 5 bytes");
_Static_assert((2 * 4 + 7) / 8 == 1, "4-bit packs 2 values per byte");

int64_t qd_packed_row_bytes(int64_t cols, int bits) { return (cols * bits + 7) / 8; }

void qd_pack_row(const uint8_t *codes, int64_t n, int bits, uint8_t *out) {
    int64_t nb = qd_packed_row_bytes(n, bits);
    if (bits == 8) {
        memcpy(out, codes, (size_t)n);
        return;
    }
    memset(out, 0, (size_t)nb);
    uint64_t bitpos = 0;
    for (int64_t i = 0; i < n; i++, bitpos += (uint64_t)bits) {
        uint32_t v = codes[i] & ((1u << bits) - 1);
        uint64_t byte = bitpos >> 3;
        unsigned sh = (unsigned)(bitpos & 7);
        out[byte] |= (uint8_t)(v << sh);
        if (sh + (unsigned)bits > 8) out[byte + 1] |= (uint8_t)(v >> (8 - sh));
    }
}

void qd_unpack_row(const uint8_t *in, int64_t n, int bits, uint8_t *codes) {
    if (bits == 8) {
        memcpy(codes, in, (size_t)n);
        return;
    }
    const uint32_t mask = (1u << bits) - 1;
    uint64_t bitpos = 0;
    for (int64_t i = 0; i < n; i++, bitpos += (uint64_t)bits) {
        uint64_t byte = bitpos >> 3;
        unsigned sh = (unsigned)(bitpos & 7);
        uint32_t v = in[byte] >> sh;
        if (sh + (unsigned)bits > 8) v |= (uint32_t)in[byte + 1] << (8 - sh);
        codes[i] = (uint8_t)(v & mask);
    }
}

void qd_pack_matrix(const uint8_t *codes, int64_t rows, int64_t cols, int bits, uint8_t *out) {
    int64_t rb = qd_packed_row_bytes(cols, bits);
    for (int64_t r = 0; r < rows; r++) qd_pack_row(codes + r * cols, cols, bits, out + r * rb);
}

void qd_unpack_matrix(const uint8_t *in, int64_t rows, int64_t cols, int bits, uint8_t *codes) {
    int64_t rb = qd_packed_row_bytes(cols, bits);
    for (int64_t r = 0; r < rows; r++) qd_unpack_row(in + r * rb, cols, bits, codes + r * cols);
}

/* ---- error metrics ---------------------------------------------------------------------- */

qd_qerror qd_quant_error(const float *w, const float *q, int64_t n) {
    double se = 0, sw = 0, mx = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)w[i] - q[i];
        se += d * d;
        sw += (double)w[i] * w[i];
        if (fabs(d) > mx) mx = fabs(d);
    }
    qd_qerror e;
    e.mse = n ? se / (double)n : 0;
    e.max_abs = mx;
    e.rel_fro = sw > 0 ? sqrt(se / sw) : (se > 0 ? INFINITY : 0);
    e.sqnr_db = se > 0 ? 10.0 * log10(sw / se) : INFINITY;
    return e;
}
