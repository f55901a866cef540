/* Scalar references of the row quantizers (kernels.h). These define the results: every ISA version
 * must give the same bits. Compiled without ISA flags; plain loops over groups, then columns. */
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"

/* clamp(rint(x / s) + z, 0, maxq). The selects are written as x86 maxps/minps define them
 * (a > b ? a : b, a < b ? a : b), so a NaN quotient gives 0 here and in the vector versions. */
static inline uint8_t quant1(float x, float s, float zf, float mf)
{
    float q = rintf(x / s) + zf;
    q = q > 0.0f ? q : 0.0f;
    q = q < mf ? q : mf;
    return (uint8_t)(int)q;
}

static void ref_quantize_codes(const float *x, int64_t n, int64_t G, const float *scales, const int32_t *zeros,
                               int maxq, uint8_t *codes)
{
    QD_ASSERT(G >= 1 && maxq >= 1 && maxq <= 255);
    const float mf = (float)maxq;
    for (int64_t g = 0, c0 = 0; c0 < n; g++, c0 += G) {
        const int64_t c1 = QD_MIN(c0 + G, n);
        const float s = scales[g], zf = (float)zeros[g];
        for (int64_t c = c0; c < c1; c++) codes[c] = quant1(x[c], s, zf, mf);
    }
}

static void ref_quantize_q4(const float *x, int64_t n, int64_t G, const float *scales, const int32_t *zeros,
                            uint8_t *out)
{
    QD_ASSERT(G >= 1);
    for (int64_t g = 0, c0 = 0; c0 < n; g++, c0 += G) {
        const int64_t c1 = QD_MIN(c0 + G, n);
        const float s = scales[g], zf = (float)zeros[g];
        for (int64_t c = c0; c < c1; c++) {
            uint8_t q = quant1(x[c], s, zf, 15.0f);
            if (c & 1)
                out[c >> 1] |= (uint8_t)(q << 4);
            else
                out[c >> 1] = q;
        }
    }
}

/* code c of a row: one byte each (q4 = 0) or two per byte, low nibble first (q4 = 1) */
static inline int32_t code_at(const uint8_t *in, int64_t c, int q4)
{
    return !q4 ? in[c] : (c & 1) ? in[c >> 1] >> 4 : in[c >> 1] & 15;
}

static void dequantize(const uint8_t *in, int q4, int64_t n, int64_t G, const float *scales, const int32_t *zeros,
                       float *out)
{
    QD_ASSERT(G >= 1);
    for (int64_t g = 0, c0 = 0; c0 < n; g++, c0 += G) {
        const int64_t c1 = QD_MIN(c0 + G, n);
        const float s = scales[g];
        const int32_t z = zeros[g];
        for (int64_t c = c0; c < c1; c++) out[c] = s * (float)(code_at(in, c, q4) - z);
    }
}

static void ref_dequantize_codes(const uint8_t *codes, int64_t n, int64_t G, const float *scales, const int32_t *zeros,
                                 float *out)
{
    dequantize(codes, 0, n, G, scales, zeros, out);
}

static void ref_dequantize_q4(const uint8_t *in, int64_t n, int64_t G, const float *scales, const int32_t *zeros,
                              float *out)
{
    dequantize(in, 1, n, G, scales, zeros, out);
}

void qd_kernels_fill_ref(qd_kernel_table *t)
{
    memset(t, 0, sizeof *t);
    t->isa = "ref";
    t->quantize_codes = ref_quantize_codes;
    t->quantize_q4 = ref_quantize_q4;
    t->dequantize_codes = ref_dequantize_codes;
    t->dequantize_q4 = ref_dequantize_q4;
}
