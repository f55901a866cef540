/* The kernels give the bits of quant/'s scalar definition (qd_rtn_quantize_row,
 * qd_dequantize_row) for every width 2..8 on finite inputs (quant validates weights as finite),
 * and qd_rtn_quantize / qd_dequantize, which run through the selected kernels, equal a loop of
 * those row functions. Data: GPTQ-reference min-max parameters from quant, exact .5 ties,
 * clamped values, zeros of both signs, denormals. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "quant/quant.h"
#include "qd_test.h"

static uint64_t rng = 0x13198A2E03707344ull;
static uint64_t rnd(void)
{
    uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static int64_t irand(int64_t lo, int64_t hi) { return lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1)); }
static float frand(void) { return (float)((double)(rnd() >> 11) * 0x1.0p-53 * 2.0 - 1.0); }

static void fill(float *w, int64_t n, int kind)
{
    for (int64_t i = 0; i < n; i++) {
        switch (kind) {
        case 0: w[i] = 0.05f * frand(); break;
        case 1: w[i] = (float)(2 * irand(-40, 40) + 1) * 0.0078125f; break; /* k + 0.5 steps of 1/64 */
        default: {
            static const float pick[] = {0.0f, -0.0f, 1e-40f, -1e-40f, FLT_MIN, 3.0f, -3.0f, 1e-8f};
            w[i] = irand(0, 2) ? pick[irand(0, (int64_t)QD_ARRAY_LEN(pick) - 1)] : frand();
        }
        }
    }
}

int main(void)
{
    const char *isas[] = {"ref", "avx2"};
    printf("selected kernels: %s\n", qd_kernels_isa());
    long compared = 0;
    for (int bits = 2; bits <= 8; bits++)
        for (int kind = 0; kind < 3; kind++)
            for (int sym = 0; sym <= 1; sym++) {
                const int64_t rows = irand(1, 9), cols = irand(1, 300);
                const int64_t Gs[] = {1, 3, 16, 32, 64, 128, cols};
                for (size_t gi = 0; gi < QD_ARRAY_LEN(Gs); gi++) {
                    qd_qscheme s = {bits, sym, QD_GRAN_GROUP, Gs[gi], 0};
                    float *w = malloc((size_t)(rows * cols) * sizeof *w);
                    fill(w, rows * cols, kind);
                    qd_qparams p;
                    CHECK_EQ(qd_quant_params(w, rows, cols, &s, NULL, &p), QD_OK);
                    /* ties with the actual scales: replace a quarter of the values by (k + 0.5) * s */
                    if (kind == 1)
                        for (int64_t r = 0; r < rows; r++)
                            for (int64_t c = 0; c < cols; c += 4) {
                                float sc = p.scales[r * p.ngroups + c / p.group_size];
                                w[r * cols + c] = (float)irand(-9, 9) * sc + 0.5f * sc;
                            }
                    uint8_t *want = malloc((size_t)(rows * cols)), *got = malloc((size_t)(rows * cols));
                    float *fwant = malloc((size_t)(rows * cols) * sizeof *fwant);
                    float *fgot = malloc((size_t)(rows * cols) * sizeof *fgot);
                    const int maxq = qd_maxq(bits);
                    for (int64_t r = 0; r < rows; r++) {
                        const float *sr = p.scales + r * p.ngroups;
                        const int32_t *zr = p.zeros + r * p.ngroups;
                        qd_rtn_quantize_row(w + r * cols, cols, p.group_size, sr, zr, maxq, want + r * cols);
                        qd_dequantize_row(want + r * cols, cols, p.group_size, sr, zr, fwant + r * cols);
                    }
                    for (size_t ii = 0; ii < QD_ARRAY_LEN(isas); ii++) {
                        const qd_kernel_table *k = qd_kernels_table(isas[ii]);
                        if (!k) continue;
                        for (int64_t r = 0; r < rows; r++) {
                            const float *sr = p.scales + r * p.ngroups;
                            const int32_t *zr = p.zeros + r * p.ngroups;
                            k->quantize_codes(w + r * cols, cols, p.group_size, sr, zr, maxq, got + r * cols);
                            k->dequantize_codes(want + r * cols, cols, p.group_size, sr, zr, fgot + r * cols);
                        }
                        CHECK_MSG(memcmp(got, want, (size_t)(rows * cols)) == 0, "%s codes: bits %d G %lld", isas[ii],
                                  bits, (long long)Gs[gi]);
                        CHECK_MSG(memcmp(fgot, fwant, (size_t)(rows * cols) * sizeof *fgot) == 0,
                                  "%s dequant: bits %d G %lld", isas[ii], bits, (long long)Gs[gi]);
                        compared++;
                    }
                    /* the matrix functions (selected kernels) */
                    qd_rtn_quantize(w, &p, NULL, got);
                    CHECK(memcmp(got, want, (size_t)(rows * cols)) == 0);
                    qd_dequantize(want, &p, NULL, fgot);
                    CHECK(memcmp(fgot, fwant, (size_t)(rows * cols) * sizeof *fgot) == 0);
                    qd_qparams_free(&p);
                    free(w), free(want), free(got), free(fwant), free(fgot);
                }
            }
    printf("%ld (isa, scheme) comparisons\n", compared);
    QD_TEST_MAIN_END();
}
