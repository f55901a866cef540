/* bench/adaround: AdaRound iterations per second at BERT-base layer shapes, in both modes
 * (mini-batches of calibration rows, and the Hessian form), one thread, and the projected time
 * of a default run (10,000 iterations) per layer and per checkpoint shape.
 *   bench_adaround [iters]   (default 40 timed iterations per case) */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/adaround.h"

extern void openblas_set_num_threads(int);

static uint64_t g_s = 7;
static float nrand(void) {
    g_s = g_s * 6364136223846793005ull + 1442695040888963407ull;
    double u = ((g_s >> 11) + 1.0) / 9007199254740993.0;
    g_s = g_s * 6364136223846793005ull + 1442695040888963407ull;
    double v = (g_s >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

typedef struct { int R, C; const char *what; } shape;

int main(int argc, char **argv) {
    openblas_set_num_threads(1);
    int iters = argc > 1 ? atoi(argv[1]) : 40;
    const int N = 16384; /* 128 samples x 128 tokens */
    shape shapes[] = {{768, 768, "attention q/k/v/o"}, {3072, 768, "intermediate.dense"}, {768, 3072, "output.dense"}};
    double sec_per_iter[3][2];
    printf("AdaRound, 4-bit per channel, %d timed iterations per case, 1 thread\n", iters);
    printf("%-20s %-11s %10s %12s %14s\n", "layer", "mode", "iter/s", "GFLOP/s", "10k iters (s)");
    for (int si = 0; si < 3; si++) {
        int R = shapes[si].R, C = shapes[si].C;
        float *W = malloc((size_t)R * C * sizeof(float));
        float *X = malloc((size_t)N * C * sizeof(float));
        float *H = calloc((size_t)C * C, sizeof(float));
        for (size_t i = 0; i < (size_t)R * C; i++) W[i] = 0.05f * nrand();
        for (size_t i = 0; i < (size_t)N * C; i++) X[i] = nrand();
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, C, N, 2.0f / N, X, C, 0.0f, H, C);
        for (int a = 0; a < C; a++)
            for (int b = 0; b < a; b++) H[a * C + b] = H[b * C + a];
        qd_qscheme sch = {4, 0, QD_GRAN_CHANNEL, 0};
        qd_qparams p;
        qd_qparams_alloc(&p, R, C, &sch);
        qd_clip_opts clip = QD_CLIP_MINMAX;
        qd_find_params_rows(W, R, C, C, 4, 0, &clip, p.scales, p.zeros, p.ngroups);
        uint8_t *codes = malloc((size_t)R * C);
        for (int mode = 0; mode < 2; mode++) {
            qd_adaround_problem pb = {R, C, W, mode == 0 ? X : NULL, N, H, &p};
            qd_adaround_opts o;
            qd_adaround_default_opts(&o);
            o.iters = iters;
            qd_adaround_stats st;
            qd_adaround_quantize(&pb, &o, codes, NULL, &st);
            /* st.seconds includes the final evaluation over all data; time it alone and subtract */
            o.iters = 0;
            qd_adaround_stats st0;
            qd_adaround_quantize(&pb, &o, codes, NULL, &st0);
            double s = (st.seconds - st0.seconds) / iters;
            double flop = mode == 0 ? 4.0 * R * C * o.batch : 2.0 * R * C * (double)C;
            sec_per_iter[si][mode] = s;
            printf("%-20s %-11s %10.1f %12.1f %14.1f\n", shapes[si].what, mode == 0 ? "X batch 256" : "Hessian",
                   1.0 / s, flop / s * 1e-9, 10000 * s);
        }
        free(W);
        free(X);
        free(H);
        free(codes);
        qd_qparams_free(&p);
    }
    for (int mode = 0; mode < 2; mode++) {
        double bert = 12 * (4 * sec_per_iter[0][mode] + sec_per_iter[1][mode] + sec_per_iter[2][mode]) * 10000;
        printf("projected BERT-base (72 layers, 10k iterations each, %s): %.0f s on 1 rank, %.0f s on 2\n",
               mode == 0 ? "X batch 256" : "Hessian", bert, bert / 2);
    }
    return 0;
}
