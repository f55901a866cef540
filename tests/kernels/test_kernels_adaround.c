/* The AdaRound step kernel and log (kernels.h adaround_step, log): the AVX2 (and, where the CPU
 * has it, AVX-512) versions give the
 * reference's bits (every length 0..40 and a long run, with and without the Adam update and the
 * regulariser), and the reference is close to the same formulas in double with libm. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "qd_test.h"

static uint64_t rs = 88172645463325252ull;
static double urand(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (double)(rs >> 11) / 9007199254740992.0;
}

enum { N = 4103, NARR = 11 };
/* arrays: 0 c0, 1 sm, 2 V, 3 m, 4 v, 5 a, 6 b, 7 E, 8 reg, 9 gw */
static void fill(float *x[NARR])
{
    for (int i = 0; i < N; i++) {
        x[0][i] = (float)(urand() - 0.5);
        x[1][i] = i % 7 == 3 ? 0.0f : (float)(0.01 + 0.1 * urand());
        x[2][i] = (float)((urand() * 2 - 1) * (i % 5 ? 3 : 30));
        x[3][i] = (float)((urand() - 0.5) * 1e-2);
        x[4][i] = (float)(urand() * 1e-4);
        x[5][i] = (float)(urand() - 0.5);
        x[6][i] = (float)((urand() - 0.5) * 1e-2);
        x[7][i] = x[8][i] = 0;
        x[9][i] = (float)((urand() - 0.5) * 1e-1);
    }
    x[2][0] = 0.0f; /* h = 0.5: t = 0 */
    x[2][1] = -0.0f;
    x[2][2] = logf(11.0f); /* near the clip */
    x[2][3] = -logf(11.0f);
    x[2][4] = 1e30f;
    x[2][5] = -1e30f;
}

static qd_ada_step mk(float *x[NARR], int64_t off, int64_t n, float beta, float lambda, int reg)
{
    qd_ada_step s = {.n = n,
                     .c0 = x[0] + off,
                     .sm = x[1] + off,
                     .V = x[2] + off,
                     .m = x[3] + off,
                     .v = x[4] + off,
                     .a = x[5] + off,
                     .b = x[6] + off,
                     .E = x[7] + off,
                     .reg = reg ? x[8] + off : NULL,
                     .lrc1 = 1e-2f,
                     .ic2 = 1.7f,
                     .beta = beta,
                     .lambda = lambda};
    return s;
}

int main(void)
{
    const qd_kernel_table *ref = qd_kernels_table("ref"), *avx = qd_kernels_table("avx2");
    CHECK(ref && ref->adaround_step && ref->log);
    float *x[NARR], *y[NARR], *x0[NARR];
    for (int k = 0; k < NARR; k++) {
        x[k] = malloc(N * sizeof(float));
        y[k] = malloc(N * sizeof(float));
        x0[k] = malloc(N * sizeof(float));
    }
    fill(x0);

    /* log vs libm: relative 2e-7 away from 1, absolute 1e-7 near 1 */
    {
        float *in = x[0], *out = x[1], *out2 = x[2];
        for (int i = 0; i < N; i++) in[i] = (float)exp((urand() * 2 - 1) * (i % 2 ? 1 : 80));
        in[0] = 1.0f;
        in[1] = FLT_MIN;
        in[2] = FLT_MAX;
        in[3] = 0.70710677f;
        in[4] = 0.70710683f;
        in[5] = 1.0000001f;
        ref->log(in, N, out);
        double worst = 0;
        for (int i = 0; i < N; i++) {
            double l = log((double)in[i]), e = fabs(out[i] - l) / fmax(fabs(l), 0.5);
            if (e > worst) worst = e;
        }
        printf("log: max error (relative, absolute below 0.5) %.3g\n", worst);
        CHECK_DBL_LE(worst, 2e-7);
        CHECK(out[0] == 0.0f);
        if (avx)
            for (int len = 0; len <= 40; len++) {
                memset(out2, 0, N * sizeof(float));
                avx->log(in, len, out2);
                ref->log(in, len, out);
                CHECK(memcmp(out, out2, (size_t)len * sizeof(float)) == 0);
            }
        if (avx) {
            avx->log(in, N, out2);
            ref->log(in, N, out);
            CHECK(memcmp(out, out2, N * sizeof(float)) == 0);
        }
    }

    /* the step against double-precision formulas (reference), then AVX2 bits against it */
    const float betas[] = {20.0f, 7.3f, 2.0f, 0.5f};
    for (int bi = 0; bi < 4; bi++)
        for (int lam = 0; lam < 2; lam++)
            for (int upd = 0; upd < 2; upd++) {
                const float beta = betas[bi], lambda = lam ? 0.01f : 0.0f;
                for (int k = 0; k < NARR; k++) memcpy(x[k], x0[k], N * sizeof(float));
                qd_ada_step s = mk(x, 0, N, beta, lambda, 1);
                ref->adaround_step(&s, upd ? x[9] : NULL);
                double wV = 0, wE = 0, wa = 0, wb = 0, wr = 0;
                for (int i = 0; i < N; i++) {
                    double V = x0[2][i];
                    if (upd) {
                        double g = (double)x0[9][i] * x0[5][i] + x0[6][i];
                        double m = 0.9 * x0[3][i] + 0.1 * g, v = 0.999 * x0[4][i] + 0.001 * g * g;
                        V -= 1e-2 * m / (sqrt(v * 1.7) + 1e-8);
                        wV = fmax(wV, fabs(V - x[2][i]) / (fabs(V) + 1e-3));
                        V = x[2][i]; /* evaluate at the kernel's V */
                    }
                    double sg = 1 / (1 + exp(-V)), hr = 1.2 * sg - 0.1, h = fmin(fmax(hr, 0), 1);
                    double dh = hr > 0 && hr < 1 ? 1.2 * sg * (1 - sg) : 0, sm = x0[1][i];
                    double t = 2 * h - 1, at = fabs(t);
                    double p = at > 0 ? pow(at, beta - 1.0) : 0;
                    double b = lambda > 0 ? -2.0 * lambda * beta * (t > 0 ? 1 : -1) * p * dh : 0;
                    double reg = lambda > 0 ? 1 - at * p : 0;
                    wE = fmax(wE, fabs(x0[0][i] - sm * h - x[7][i]));
                    wa = fmax(wa, fabs(sm * dh - x[5][i]) / (sm * 0.3 + 1e-30));
                    /* t = 2h - 1 is a float difference near t = 0 (an ulp of h ~ 6e-8 absolute):
                     * relative to |b| plus 1e-5 of b's scale 2 lambda beta dh; |t|^(beta - 1) is
                     * steep near t = 0: compared where |t| > 0.05 (the float resolution of h,
                     * amplified by |beta - 1| / |t|, stays below 1e-5 there) */
                    if (at > 0.05) wb = fmax(wb, fabs(b - x[6][i]) / (fabs(b) + 2e-5 * lambda * beta * dh + 1e-30));
                    wr = fmax(wr, fabs(reg - x[8][i]));
                }
                printf("beta %4.1f lambda %.2f %s: V %.2g  E %.2g  a %.2g  b %.2g  reg %.2g\n", beta, lambda,
                       upd ? "update" : "eval  ", wV, wE, wa, wb, wr);
                CHECK_DBL_LE(wV, 1e-5);
                CHECK_DBL_LE(wE, 1e-7);
                CHECK_DBL_LE(wa, 1e-6);
                CHECK_DBL_LE(wb, 3e-5);
                CHECK_DBL_LE(wr, 1e-5); /* 1 - |t|^beta: beta times the float resolution of t */
                for (int isa = 0; isa < 2; isa++) {
                    const qd_kernel_table *vt = isa ? qd_kernels_table("avx512") : avx;
                    if (!vt) continue;
                    for (int len = 0; len <= 40; len++) {
                        for (int k = 0; k < NARR; k++) {
                            memcpy(x[k], x0[k], N * sizeof(float));
                            memcpy(y[k], x0[k], N * sizeof(float));
                        }
                        qd_ada_step sr = mk(x, 7, len, beta, lambda, len % 2),
                                    sa = mk(y, 7, len, beta, lambda, len % 2);
                        ref->adaround_step(&sr, upd ? x[9] + 7 : NULL);
                        vt->adaround_step(&sa, upd ? y[9] + 7 : NULL);
                        for (int k = 0; k < NARR; k++) CHECK(memcmp(x[k], y[k], N * sizeof(float)) == 0);
                    }
                    for (int k = 0; k < NARR; k++) {
                        memcpy(x[k], x0[k], N * sizeof(float));
                        memcpy(y[k], x0[k], N * sizeof(float));
                    }
                    qd_ada_step sr = mk(x, 0, N, beta, lambda, 1), sa = mk(y, 0, N, beta, lambda, 1);
                    ref->adaround_step(&sr, upd ? x[9] : NULL);
                    vt->adaround_step(&sa, upd ? y[9] : NULL);
                    for (int k = 0; k < NARR; k++) CHECK(memcmp(x[k], y[k], N * sizeof(float)) == 0);
                }
            }
    if (!avx) printf("no AVX2 on this CPU: reference only\n");
    printf("AVX-512 step %s\n", qd_kernels_table("avx512") ? "checked against the reference" : "not on this CPU");
    for (int k = 0; k < NARR; k++) {
        free(x[k]);
        free(y[k]);
        free(x0[k]);
    }
    printf("%d checks, %d failures\n", qd_test_checks_, qd_test_failures_);
    return qd_test_failures_;
}
