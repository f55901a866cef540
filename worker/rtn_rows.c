/* The fused RTN path (rtn_rows.h). The range, the codes and the error sums of each group are
 * kernels/ (range_f32, rtn_group: the same bits in every ISA version); the parameters are
 * quant/'s qd_params_from_range and the packing quant/'s qd_pack_row. */
#include "worker/rtn_rows.h"

#include <math.h>
#include <stdlib.h>

#include "kernels/kernels.h"

int64_t qd_rtn_ngroups(const qd_qscheme *s, int64_t cols)
{
    if (s->gran != QD_GRAN_GROUP) return 1;
    int64_t G = QD_MIN(s->group_size, cols);
    return (cols + G - 1) / G;
}

int qd_all_finite(const float *x, int64_t n) { return qd_kernels()->all_finite(x, n); }

/* QD_ENONFINITE naming the first NaN/Inf by its [row, col] in the whole tensor */
static int non_finite(const float *x, int64_t nrows, int64_t cols, const char *what, int64_t row0)
{
    for (int64_t i = 0; i < nrows * cols; i++)
        if (!isfinite(x[i]))
            return qd_err_set(QD_ENONFINITE, "%s: %s at [%lld, %lld]", what, isnan(x[i]) ? "NaN" : "Inf",
                              (long long)(row0 + i / cols), (long long)(i % cols));
    return qd_err_set(QD_ENONFINITE, "%s: a NaN or Inf value", what);
}

int qd_rtn_rows(const float *x, int64_t nrows, int64_t cols, const qd_qscheme *s, const qd_clip_opts *clip,
                uint8_t *packed, float *scales, int32_t *zeros, int64_t blk_rows, qd_errsum *blk, const char *what,
                int64_t row0)
{
    int rc = qd_qscheme_check(s, what);
    if (rc) return rc;
    if (nrows < 1 || cols < 1 || blk_rows < 1)
        return qd_err_set(QD_EINVAL, "%s: cannot quantize %lld rows of %lld", what, (long long)nrows, (long long)cols);
    const qd_kernel_table *k = qd_kernels();
    const int bits = s->bits, maxq = qd_maxq(bits);
    const int use_clip = clip && clip->grid > 0;
    const int64_t G = s->gran == QD_GRAN_GROUP ? QD_MIN(s->group_size, cols) : cols;
    const int64_t ng = (cols + G - 1) / G, rb = qd_packed_row_bytes(cols, bits);
    float ts = 0;
    int32_t tz = 0;
    if (s->gran == QD_GRAN_TENSOR) {
        float lo, hi;
        if (!k->range_f32(x, nrows * cols, &lo, &hi)) return non_finite(x, nrows, cols, what, row0);
        /* the min-max finder for a known range gives qd_find_params_rows' bits (finite inputs: the
         * kernel's selects find the same range as fminf/fmaxf up to the sign of a zero, which no
         * result depends on) */
        if (use_clip)
            qd_find_params_rows(x, 1, nrows * cols, nrows * cols, bits, s->sym, clip, &ts, &tz, 1);
        else
            qd_params_from_range(lo, hi, bits, s->sym, &ts, &tz);
        if (s->scale_f16 && (rc = qd_scales_round_f16(&ts, 1, what))) return rc;
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
            if (!k->all_finite(xr, cols)) {
                free(codes);
                return non_finite(x, nrows, cols, what, row0);
            }
            for (int64_t g = 0; g < ng; g++)
                qd_find_params_rows(xr + g * G, 1, QD_MIN(G, cols - g * G), cols, bits, s->sym, clip, sr + g, zr + g,
                                    1);
        } else {
            for (int64_t g = 0; g < ng; g++) {
                float lo, hi;
                if (!k->range_f32(xr + g * G, QD_MIN(G, cols - g * G), &lo, &hi)) {
                    free(codes);
                    return non_finite(x, nrows, cols, what, row0);
                }
                qd_params_from_range(lo, hi, bits, s->sym, sr + g, zr + g);
            }
        }
        /* float16 scales: rounded before the codes, so the codes are those of the stored scales */
        if (s->gran != QD_GRAN_TENSOR && s->scale_f16 && (rc = qd_scales_round_f16(sr, ng, what))) {
            free(codes);
            return rc;
        }
        double e2 = 0, w2 = 0, mx = 0;
        for (int64_t g = 0; g < ng; g++) {
            int64_t c0 = g * G, n = QD_MIN(G, cols - c0);
            k->rtn_group(xr + c0, n, sr[g], zr[g], maxq, codes + c0, &e2, &w2, &mx);
        }
        qd_pack_row(codes, cols, bits, packed + r * rb);
        qd_errsum *b = &blk[r / blk_rows];
        b->err2 += e2;
        b->w2 += w2;
        if (mx > b->max_abs) b->max_abs = mx;
    }
    free(codes);
    return QD_OK;
}
