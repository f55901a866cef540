/* The 2:4 sparse int8 GEMM (kernels/gemm_s8_24.h) against the dense int8 GEMM (kernels/gemm.h) on
 * the same 2:4 weights (pruned weights as zeros), one thread, BERT-base shapes: M in {128, 512}
 * tokens, (K, N) in {(768, 768), (768, 3072), (3072, 768)}, plus M = 1 and 8. Both give the same
 * bits (checked here on every shape); the figure is the ratio of best times, measured in 6
 * interleaved rounds so other load on the machine hits both alike. "effective GOP/s" counts the
 * dense 2·M·N·K operations for both, so the ratio is the speed-up a 2:4 model sees.
 *   build/bench/bench_gemm_24 [seconds per shape, default 1.0]
 * QD_KERNELS=ref times the scalar references (slow; for the record only). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/gemm.h"
#include "kernels/gemm_s8_24.h"
#include "bench/bench_util.h"
#include "kernels/kernels.h"

static uint64_t rng = 0x243F6A8885A308D3ull;
static uint64_t rnd(void)
{
    uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

typedef struct {
    int64_t M, K, N;
    int8_t *A;
    float *as, *C;
    qd_gemm_w8 *W8;
    qd_gemm_w24 *W24;
} shape;

static void run_dense(shape *s) { qd_gemm_s8_f32(s->A, s->K, s->as, s->M, s->W8, s->C, s->N); }
static void run_24(shape *s) { qd_gemm_s8_24_f32(s->A, s->K, s->as, s->M, s->W24, s->C, s->N); }

typedef void (*run_fn)(shape *);

static double best_time(run_fn f, shape *s, double min_s) { return QD_BENCH_BEST_TIME(f(s), min_s); }

int main(int argc, char **argv)
{
    const double min_s = argc > 1 ? atof(argv[1]) : 1.0;
    enum { ROUNDS = 6 };
    const int64_t shapes[][3] = {{1, 768, 768},    {8, 768, 768},   {128, 768, 768},  {128, 768, 3072},
                                 {128, 3072, 768}, {512, 768, 768}, {512, 768, 3072}, {512, 3072, 768}};
    printf("kernels: %s; one thread; best of %d interleaved rounds, %.1f s per shape\n", qd_kernels_isa(), ROUNDS,
           min_s);
    printf("%5s %5s %5s  %12s %12s  %7s  %s\n", "M", "K", "N", "dense GOP/s", "2:4 GOP/s", "ratio", "same bits");
    double logsum = 0;
    int nbig = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        shape s = {shapes[i][0], shapes[i][1], shapes[i][2], 0, 0, 0, 0, 0};
        int8_t *w = calloc((size_t)(s.N * s.K), 1);
        for (int64_t n = 0; n < s.N; n++)
            for (int64_t g = 0; g < s.K; g += 4) {
                int a = (int)(rnd() % 4), b = (a + 1 + (int)(rnd() % 3)) % 4;
                w[n * s.K + g + a] = (int8_t)(rnd() % 255 - 127);
                w[n * s.K + g + b] = (int8_t)(rnd() % 255 - 127);
            }
        float *ws = malloc((size_t)s.N * sizeof(float));
        for (int64_t n = 0; n < s.N; n++) ws[n] = 1e-3f * (float)(1 + rnd() % 100);
        s.A = malloc((size_t)(s.M * s.K));
        for (int64_t k = 0; k < s.M * s.K; k++) s.A[k] = (int8_t)(rnd() % 256 - 128);
        s.as = malloc((size_t)s.M * sizeof(float));
        for (int64_t m = 0; m < s.M; m++) s.as[m] = 0.01f;
        if (qd_gemm_w8_create(w, s.N, s.K, s.K, ws, NULL, &s.W8) ||
            qd_gemm_w24_create(w, s.N, s.K, s.K, ws, NULL, &s.W24)) {
            fprintf(stderr, "%s\n", qd_errmsg());
            return 1;
        }
        float *c1 = malloc((size_t)(s.M * s.N) * sizeof(float)), *c2 = malloc((size_t)(s.M * s.N) * sizeof(float));
        s.C = c1;
        run_dense(&s);
        s.C = c2;
        run_24(&s);
        const int same = !memcmp(c1, c2, (size_t)(s.M * s.N) * sizeof(float));
        double bd = 1e30, b24 = 1e30;
        for (int r = 0; r < ROUNDS; r++) {
            double t = best_time(run_dense, &s, min_s / ROUNDS / 2);
            bd = t < bd ? t : bd;
            t = best_time(run_24, &s, min_s / ROUNDS / 2);
            b24 = t < b24 ? t : b24;
        }
        const double ops = 2.0 * (double)s.M * (double)s.N * (double)s.K;
        printf("%5lld %5lld %5lld  %12.1f %12.1f  %6.2fx  %s\n", (long long)s.M, (long long)s.K, (long long)s.N,
               ops / bd * 1e-9, ops / b24 * 1e-9, bd / b24, same ? "yes" : "NO");
        if (s.M >= 128) {
            logsum += log(bd / b24);
            nbig++;
        }
        if (!same) return 1;
        qd_gemm_w8_free(s.W8);
        qd_gemm_w24_free(s.W24);
        free(w);
        free(ws);
        free(s.A);
        free(s.as);
        free(c1);
        free(c2);
    }
    printf("geometric mean of the ratio over the BERT-base shapes (M >= 128): %.2fx\n", exp(logsum / nbig));
    printf("weights: dense int8 packed %s, 2:4 packed (values + selectors) the same bytes; the file stores 2:4 as\n"
           "values + 2-bit positions (0.625 of int8)\n",
           "2 bytes/weight (int16 pairs)");
    return 0;
}
