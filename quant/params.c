/* Affine quantization parameters: the GPTQ reference's finder (range widened to include 0),
 * the clipping search over shrink factors, whole-matrix parameters per tensor / row / group,
 * and input validation. See quant.h for the conventions. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/kmeans.h"
#include "quant/quant.h"

int qd_check_finite(const float *x, int64_t rows, int64_t cols, const char *what)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            float v = x[r * cols + c];
            if (!isfinite(v))
                return qd_err_set(QD_ENONFINITE, "%s: %s at [%lld, %lld]", what, isnan(v) ? "NaN" : "Inf", (long long)r,
                                  (long long)c);
        }
    return QD_OK;
}

int qd_check_g_idx(const int32_t *g_idx, int64_t cols, int64_t ngroups, const char *what)
{
    for (int64_t c = 0; c < cols; c++)
        if (g_idx[c] < 0 || g_idx[c] >= ngroups)
            return qd_err_set(QD_EFORMAT, "%s: g_idx[%lld] = %d outside [0, %lld)", what, (long long)c, (int)g_idx[c],
                              (long long)ngroups);
    return QD_OK;
}

int qd_qscheme_check(const qd_qscheme *s, const char *what)
{
    const char *w = what ? what : "", *sep = what ? ": " : "";
    if (!qd_valid_bits(s->bits)) return qd_err_set(QD_EINVAL, "%s%sbits must be 2..8, got %d", w, sep, s->bits);
    if (s->gran != QD_GRAN_TENSOR && s->gran != QD_GRAN_CHANNEL && s->gran != QD_GRAN_GROUP)
        return qd_err_set(QD_EINVAL, "%s%sunknown granularity %d", w, sep, (int)s->gran);
    if (s->gran == QD_GRAN_GROUP && s->group_size < 1)
        return qd_err_set(QD_EINVAL, "%s%sgroup size must be >= 1, got %lld", w, sep, (long long)s->group_size);
    return QD_OK;
}

int qd_qscheme_check_groups(int bits, int64_t group_size, const char *what)
{
    const qd_qscheme s = {
        .bits = bits, .gran = group_size > 0 ? QD_GRAN_GROUP : QD_GRAN_CHANNEL, .group_size = group_size};
    return qd_qscheme_check(&s, what);
}

int qd_qparams_alloc(qd_qparams *p, int64_t rows, int64_t cols, const qd_qscheme *s)
{
    memset(p, 0, sizeof *p);
    int rc = qd_qscheme_check(s, NULL);
    if (rc) return rc;
    if (rows < 1 || cols < 1)
        return qd_err_set(QD_ESHAPE, "cannot quantize a [%lld, %lld] matrix", (long long)rows, (long long)cols);
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

void qd_qparams_free(qd_qparams *p)
{
    free(p->scales);
    free(p->zeros);
    p->scales = NULL;
    p->zeros = NULL;
}

/* sum |q(x) - x|^norm over one row segment. The difference is taken in double, so that with
 * norm 2 this is exactly n * the MSE that qd_quant_error reports, and the search's i = 0
 * candidate (min-max itself) makes "MSE <= min-max" hold row by row. */
static double seg_err(const float *x, int64_t n, float scale, int32_t zero, int maxq, float norm)
{
    double e = 0;
    if (norm == 2.0f) {
        for (int64_t c = 0; c < n; c++) {
            double d = (double)qd_dequantize1(qd_quantize1(x[c], scale, zero, maxq), scale, zero) - (double)x[c];
            e += d * d;
        }
    } else {
        for (int64_t c = 0; c < n; c++) {
            double d = (double)qd_dequantize1(qd_quantize1(x[c], scale, zero, maxq), scale, zero) - (double)x[c];
            e += pow(fabs(d), (double)norm);
        }
    }
    return e;
}

void qd_params_from_range(float lo, float hi, int bits, int sym, float *scale, int32_t *zero)
{
    const int maxq = qd_maxq(bits);
    /* reference: xmin = min(x.min(), 0), xmax = max(x.max(), 0) */
    float xmin = fminf(lo, 0.0f), xmax = fmaxf(hi, 0.0f);
    if (sym) {
        /* The reference sets xmin = -xmax only where xmin < 0; for a group with no negative
         * value it keeps xmin = 0, so scale = xmax/maxq while zero = (maxq+1)/2 leaves only
         * (maxq-1)/2 steps above zero: values above about xmax/2 would be clipped. We always
         * use the symmetric range. Groups with a negative value (every row of the reference
         * data) are unchanged. */
        xmax = fmaxf(fabsf(xmin), xmax);
        xmin = -xmax;
    }
    if (xmin == 0.0f && xmax == 0.0f) {
        xmin = -1.0f;
        xmax = 1.0f;
    }
    float s = (xmax - xmin) / (float)maxq;
    int32_t z = sym ? (maxq + 1) / 2 : (int32_t)rintf(-xmin / s);
    /* A constant group c != 0 must come back exactly. The reference's range [min(c,0),
     * max(c,0)] gives scale |c|/maxq, and scale * (q - zero) need not round back to c in
     * float32. Only when it does not, use scale |c| with c one step from the zero point
     * (asymmetric: zero 0 for c > 0, zero 1 for c < 0; symmetric: code zero +- 1):
     * c / |c| = +-1 and |c| * +-1 = c are exact. Non-constant groups are never touched. */
    if (lo == hi && lo != 0.0f && qd_dequantize1(qd_quantize1(lo, s, z, maxq), s, z) != lo) {
        s = fabsf(lo);
        z = sym ? (maxq + 1) / 2 : (lo > 0 ? 0 : 1);
    }
    *scale = s;
    *zero = z;
}

void qd_find_params_rows(const float *x, int64_t rows, int64_t n, int64_t ld, int bits, int sym,
                         const qd_clip_opts *clip, float *scale, int32_t *zero, int64_t sstride)
{
    const int maxq = qd_maxq(bits);
    for (int64_t r = 0; r < rows; r++) {
        const float *row = x + r * ld;
        float lo = row[0], hi = row[0];
        for (int64_t c = 1; c < n; c++) {
            lo = fminf(lo, row[c]);
            hi = fmaxf(hi, row[c]);
        }
        float s;
        int32_t z;
        qd_params_from_range(lo, hi, bits, sym, &s, &z);
        if (clip && clip->grid > 0 && lo != hi) {
            /* reference: for i in range(int(maxshrink * grid)): p = 1 - i / grid (a Python float,
             * rounded to float32 by the tensor op), keep strictly better candidates; i = 0 is
             * min-max. Constant groups are exact already and skip the search. */
            float xmin = fminf(lo, 0.0f), xmax = fmaxf(hi, 0.0f);
            if (sym) {
                xmax = fmaxf(fabsf(xmin), xmax);
                xmin = -xmax;
            }
            double best = INFINITY;
            int steps = (int)(clip->maxshrink * (float)clip->grid);
            for (int i = 0; i < steps; i++) {
                float pshr = (float)(1.0 - (double)i / clip->grid);
                float xmin1 = pshr * xmin, xmax1 = pshr * xmax;
                float s1 = (xmax1 - xmin1) / (float)maxq;
                int32_t z1 = sym ? (maxq + 1) / 2 : (int32_t)rintf(-xmin1 / s1);
                double e = seg_err(row, n, s1, z1, maxq, clip->norm);
                if (e < best) {
                    best = e;
                    s = s1;
                    z = z1;
                }
            }
        }
        scale[r * sstride] = s;
        zero[r * sstride] = z;
    }
}

int qd_scales_round_f16(float *scales, int64_t n, const char *what)
{
    for (int64_t k = 0; k < n; k++) {
        const float h = qd_kmeans_round_fp16(scales[k]);
        if (isinf(h))
            return qd_err_set(QD_EINVAL, "%s: a scale of %g is beyond float16's range (use --scales float32)", what,
                              (double)scales[k]);
        scales[k] = h > 0.0f ? h : 0x1p-24f; /* the least float16 number: never a zero scale */
    }
    return QD_OK;
}

int qd_quant_params(const float *w, int64_t rows, int64_t cols, const qd_qscheme *s, const qd_clip_opts *clip,
                    qd_qparams *p)
{
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
    /* float16 scales: rounded before any code is chosen, so the codes are those of the stored
     * scales (a constant group then comes back to within float16's rounding, not exactly) */
    if (s->scale_f16 && (rc = qd_scales_round_f16(p->scales, rows * p->ngroups, "weight"))) qd_qparams_free(p);
    return rc;
}
