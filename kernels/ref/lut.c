/* Scalar reference of the codebook lookup (kernels.h lut_row): the definition the ISA versions
 * match bit for bit. */
#include "kernels/kernels.h"

static void lut_row(const uint8_t *codes, int64_t n, int64_t G, int L, const float *cb, float *out)
{
    for (int64_t c = 0; c < n; c++) out[c] = cb[(c / G) * L + codes[c]];
}

void qd_kernels_fill_ref_lut(qd_kernel_table *t) { t->lut_row = lut_row; }
