/* Error metrics of a quantized copy against the original (accumulated in double). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>

#include "quant/quant.h"

qd_qerror qd_quant_error(const float *w, const float *q, int64_t n)
{
    double se = 0, sw = 0, mx = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)w[i] - (double)q[i];
        se += d * d;
        sw += (double)w[i] * w[i];
        if (fabs(d) > mx) mx = fabs(d);
    }
    qd_qerror e;
    e.mse = n ? se / (double)n : 0;
    e.max_abs = mx;
    e.rel_fro = sw > 0 ? sqrt(se / sw) : (se > 0 ? INFINITY : 0);
    e.sqnr_db = se > 0 ? (sw > 0 ? 10.0 * log10(sw / se) : -INFINITY) : INFINITY;
    return e;
}

double qd_output_rel_error(const float *W, const float *Q, const float *H, int64_t R, int64_t C)
{
    float *D = qd_xmalloc((size_t)(R * C) * sizeof(float)), *P = qd_xmalloc((size_t)(R * C) * sizeof(float));
    double num = 0, den = 0;
    for (int64_t i = 0; i < R * C; i++) D[i] = W[i] - Q[i];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, (int)C, (int)C, 1.0f, D, (int)C, H, (int)C, 0.0f, P,
                (int)C);
    for (int64_t i = 0; i < R * C; i++) num += (double)P[i] * D[i];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, (int)C, (int)C, 1.0f, W, (int)C, H, (int)C, 0.0f, P,
                (int)C);
    for (int64_t i = 0; i < R * C; i++) den += (double)P[i] * W[i];
    free(D);
    free(P);
    return den > 0 ? num / den : (num > 0 ? INFINITY : 0);
}
