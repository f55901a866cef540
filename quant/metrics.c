/* Error metrics of a quantized copy against the original (accumulated in double). */
#include <math.h>

#include "quant/quant.h"

qd_qerror qd_quant_error(const float *w, const float *q, int64_t n) {
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
