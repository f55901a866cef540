/* The training kernels (kernels.h adamw, sumsq): the reference against AdamW and the sum of
 * squares computed in double, every table the CPU offers bit for bit against the reference, over
 * lengths that do not fill a vector, zero and large gradients, clipping and decay. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd_test.h"
#include "kernels/kernels.h"

static uint64_t g_s = 0x243f6a8885a308d3ull;
static double urand(void)
{
    g_s ^= g_s << 13, g_s ^= g_s >> 7, g_s ^= g_s << 17;
    return (double)(g_s >> 11) / 9007199254740992.0;
}

static void fill(float *x, int64_t n, double scale)
{
    for (int64_t i = 0; i < n; i++) x[i] = (float)((urand() * 2 - 1) * scale);
}

int main(void)
{
    const qd_kernel_table *ref = qd_kernels_table("ref");
    static const char *isas[] = {"avx2", "avx512"};
    static const int64_t lens[] = {1, 7, 8, 9, 15, 16, 17, 31, 1000, 4099};
    double worst = 0;
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        const int64_t n = lens[li];
        float *w = malloc(n * sizeof *w), *g = malloc(n * sizeof *g), *m = malloc(n * sizeof *m),
              *v = malloc(n * sizeof *v);
        float *w2 = malloc(n * sizeof *w), *m2 = malloc(n * sizeof *m), *v2 = malloc(n * sizeof *v);
        fill(w, n, 1.0);
        fill(g, n, li % 3 == 0 ? 1e3 : 1e-2);
        fill(m, n, 1e-3);
        for (int64_t i = 0; i < n; i++) v[i] = (float)(urand() * 1e-4);
        if (n > 3) g[1] = 0, m[1] = 0, v[1] = 0; /* a value never touched: stays put but for decay */
        const qd_adamw_args a = {.b1 = 0.9f,
                                 .b2 = 0.999f,
                                 .omb1 = 0.1f,
                                 .omb2 = 0.001f,
                                 .cf = li % 2 ? 0.25f : 1.0f,
                                 .rbc2 = 1.3f,
                                 .eps = 1e-8f,
                                 .decay = 0.9995f,
                                 .pstep = 2e-3f};
        /* the reference against AdamW in double */
        memcpy(w2, w, n * sizeof *w), memcpy(m2, m, n * sizeof *m), memcpy(v2, v, n * sizeof *v);
        ref->adamw(w2, g, m2, v2, n, &a);
        for (int64_t i = 0; i < n; i++) {
            double gr = (double)g[i] * a.cf, mm = a.b1 * (double)m[i] + a.omb1 * gr,
                   vv = a.b2 * (double)v[i] + a.omb2 * gr * gr;
            double ww = (double)w[i] * a.decay - a.pstep * mm / (sqrt(vv) * a.rbc2 + a.eps);
            double e = fabs(ww - w2[i]) / (fabs(ww) + 1e-6);
            worst = fmax(worst, e);
            CHECK_MSG(e < 1e-5, "adamw n=%lld i=%lld: %.9g vs %.9g", (long long)n, (long long)i, w2[i], ww);
            /* relative to the terms: m's two may cancel */
            CHECK(fabs(mm - m2[i]) <= 1e-6 * (fabs(a.b1 * (double)m[i]) + fabs(a.omb1 * gr)) &&
                  fabs(vv - v2[i]) <= 1e-6 * vv);
        }
        if (n > 3) CHECK(w2[1] == w[1] * a.decay);
        double s = 0;
        for (int64_t i = 0; i < n; i++) s += (double)g[i] * g[i];
        const double rs = ref->sumsq(g, n);
        CHECK_MSG(fabs(rs - s) <= 1e-14 * s, "sumsq n=%lld: %.17g vs %.17g", (long long)n, rs, s);
        /* every ISA table bit for bit */
        for (size_t k = 0; k < sizeof isas / sizeof isas[0]; k++) {
            const qd_kernel_table *t = qd_kernels_table(isas[k]);
            if (!t) continue;
            float *w3 = malloc(n * sizeof *w), *m3 = malloc(n * sizeof *m), *v3 = malloc(n * sizeof *v);
            memcpy(w3, w, n * sizeof *w), memcpy(m3, m, n * sizeof *m), memcpy(v3, v, n * sizeof *v);
            t->adamw(w3, g, m3, v3, n, &a);
            CHECK_MSG(!memcmp(w3, w2, n * sizeof *w) && !memcmp(m3, m2, n * sizeof *m) &&
                          !memcmp(v3, v2, n * sizeof *v),
                      "%s adamw differs from the reference at n=%lld", isas[k], (long long)n);
            const double ts = t->sumsq(g, n);
            CHECK_MSG(!memcmp(&ts, &rs, sizeof ts), "%s sumsq differs at n=%lld", isas[k], (long long)n);
            free(w3), free(m3), free(v3);
        }
        free(w), free(g), free(m), free(v), free(w2), free(m2), free(v2);
    }
    printf("adamw reference vs double: worst relative %.2e; tables checked:%s%s\n", worst,
           qd_kernels_table("avx2") ? " avx2" : "", qd_kernels_table("avx512") ? " avx512" : "");
    printf("%d checks, %d failed\n", qd_test_checks_, qd_test_failures_);
    return qd_test_failures_;
}
