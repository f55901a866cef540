/* Round to nearest of whole matrices with given parameters, and the inverse. The row functions
 * are the scalar definition of the results; the matrix functions run rows without g_idx through
 * the dispatched kernels/ row quantizers, which give the same bits (tests/kernels/
 * test_kernels_vs_quant.c checks them against the row functions here). */
#include "quant/quant.h"

#include "kernels/kernels.h"

void qd_rtn_quantize_row(const float *x, int64_t n, int64_t G, const float *scales, const int32_t *zeros, int maxq,
                         uint8_t *codes)
{
    for (int64_t c0 = 0, g = 0; c0 < n; c0 += G, g++) {
        const int64_t c1 = QD_MIN(c0 + G, n);
        const float s = scales[g];
        const int32_t z = zeros[g];
        for (int64_t c = c0; c < c1; c++) codes[c] = (uint8_t)qd_quantize1(x[c], s, z, maxq);
    }
}

void qd_dequantize_row(const uint8_t *codes, int64_t n, int64_t G, const float *scales, const int32_t *zeros,
                       float *out)
{
    for (int64_t c0 = 0, g = 0; c0 < n; c0 += G, g++) {
        const int64_t c1 = QD_MIN(c0 + G, n);
        const float s = scales[g];
        const int32_t z = zeros[g];
        for (int64_t c = c0; c < c1; c++) out[c] = qd_dequantize1(codes[c], s, z);
    }
}

void qd_rtn_quantize(const float *w, const qd_qparams *p, const int32_t *g_idx, uint8_t *codes)
{
    const int maxq = qd_maxq(p->bits);
    const qd_kernel_table *k = qd_kernels();
    for (int64_t r = 0; r < p->rows; r++) {
        const float *sr = p->scales + r * p->ngroups;
        const int32_t *zr = p->zeros + r * p->ngroups;
        const float *wr = w + r * p->cols;
        uint8_t *cr = codes + r * p->cols;
        if (!g_idx) {
            k->quantize_codes(wr, p->cols, p->group_size, sr, zr, maxq, cr);
            continue;
        }
        for (int64_t c = 0; c < p->cols; c++) cr[c] = (uint8_t)qd_quantize1(wr[c], sr[g_idx[c]], zr[g_idx[c]], maxq);
    }
}

void qd_dequantize(const uint8_t *codes, const qd_qparams *p, const int32_t *g_idx, float *out)
{
    const qd_kernel_table *k = qd_kernels();
    for (int64_t r = 0; r < p->rows; r++) {
        const float *sr = p->scales + r * p->ngroups;
        const int32_t *zr = p->zeros + r * p->ngroups;
        const uint8_t *cr = codes + r * p->cols;
        float *orow = out + r * p->cols;
        if (!g_idx) {
            k->dequantize_codes(cr, p->cols, p->group_size, sr, zr, orow);
            continue;
        }
        for (int64_t c = 0; c < p->cols; c++) orow[c] = qd_dequantize1(cr[c], sr[g_idx[c]], zr[g_idx[c]]);
    }
}
