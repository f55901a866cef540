/* The codebook lookup (kernels.h lut_row): every ISA's table gives the reference's bits (a copy of
 * a level), for group sizes that do and do not divide the row, rows shorter than a vector, and
 * every code of 2- and 8-bit codebooks; the reference by hand. */
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "qd_test.h"

int main(void)
{
    const qd_kernel_table *ref = qd_kernels_table("ref");
    CHECK(ref && ref->lut_row);
    /* by hand: 2 levels per group of 3 */
    const uint8_t c0[7] = {0, 1, 1, 1, 0, 0, 1};
    const float cb0[6] = {-1, 1, -2, 2, -3, 3};
    float o0[7];
    ref->lut_row(c0, 7, 3, 2, cb0, o0);
    const float want0[7] = {-1, 1, 1, 2, -2, -2, 3};
    CHECK(!memcmp(o0, want0, sizeof o0));
    const char *isas[] = {"avx2", "avx512"};
    enum { N = 301 };
    static uint8_t codes[N];
    static float cb[(N / 1 + 1) * 256], a[N], b[N];
    for (int i = 0; i < (int)(sizeof cb / sizeof cb[0]); i++)
        cb[i] = (float)((i * 2654435761u) % 100003) / 977.0f - 50.0f;
    for (int k = 0; k < 2; k++) {
        const qd_kernel_table *t = qd_kernels_table(isas[k]);
        if (!t) continue;
        for (int bits = 2; bits <= 8; bits += 6)
            for (int64_t G = 1; G <= N; G = G < 8 ? G + 3 : G * 3) {
                const int L = 1 << bits;
                for (int n = 1; n <= N; n += n < 20 ? 1 : 70) {
                    for (int c = 0; c < n; c++) codes[c] = (uint8_t)((c * 37 + n) % L);
                    memset(a, 0, sizeof a);
                    memset(b, 0xff, sizeof b);
                    ref->lut_row(codes, n, G, L, cb, a);
                    t->lut_row(codes, n, G, L, cb, b);
                    CHECK_MSG(!memcmp(a, b, (size_t)n * sizeof(float)), "%s: bits %d G %lld n %d", isas[k], bits,
                              (long long)G, n);
                }
            }
    }
    QD_TEST_MAIN_END();
}
