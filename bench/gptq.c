/* bench/gptq: seconds per layer at BERT-base shapes (768x768, 3072x768, 768x3072; H from 128x128
 * = 16,384 calibration tokens), 4-bit per channel, one thread, as a ratio against the GPTQ
 * reference implementation (IST-DASLab/gptq fasterquant, PyTorch 1.13 CPU, 1 thread) measured once
 * with the same shapes on a 2-core AMD EPYC (Zen 3): 174 ms, 387 ms and 1,739 ms. The reference is
 * not run here, so on another machine the ratio is not a same-run comparison. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_util.h"
#include "quant/gptq.h"

extern void openblas_set_num_threads(int);

static uint64_t g_s = 11;
static float nrand(void) { return qd_bench_nrand(&g_s, 1.0); }

int main(int argc, char **argv)
{
    openblas_set_num_threads(1);
    int reps = argc > 1 ? atoi(argv[1]) : 3;
    struct {
        int R, C;
        double ref_ms;
        const char *what;
    } S[] = {{768, 768, 174, "768x768 (attention)"},
             {3072, 768, 387, "3072x768 (intermediate)"},
             {768, 3072, 1739, "768x3072 (output)"}};
    const int N = 16384;
    /* the reference's times are constants from one earlier measurement, not from this run: the
     * ratio compares two machines as much as two programs */
    printf("GPTQ 4-bit per channel, block 128, 1 thread; reference: IST-DASLab/gptq on PyTorch 1.13, 1 thread,\n"
           "measured once on a 2-core AMD EPYC (Zen 3), not in this run: the ratio holds on that machine only\n");
    printf("%-26s %10s %14s %10s\n", "layer", "qdist ms", "reference ms", "ratio");
    double tot = 0, tot_ref = 0;
    for (int k = 0; k < 3; k++) {
        int R = S[k].R, C = S[k].C;
        float *W = malloc(sizeof(float) * R * C), *X = malloc(sizeof(float) * (size_t)N * C),
              *H = calloc((size_t)C * C, sizeof(float));
        for (size_t i = 0; i < (size_t)N * C; i++) X[i] = nrand() * (1.0f + (float)(i % C) / C);
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, C, N, 2.0f / N, X, C, 0.0f, H, C);
        for (int a = 0; a < C; a++)
            for (int b = 0; b < a; b++) H[a * C + b] = H[b * C + a];
        free(X);
        float *Wk = malloc(sizeof(float) * R * C);
        uint8_t *codes = malloc((size_t)R * C);
        float *sc = malloc(sizeof(float) * R);
        int32_t *zr = malloc(sizeof(int32_t) * R);
        double best = 1e30;
        for (int r = 0; r < reps; r++) {
            for (int i = 0; i < R * C; i++) W[i] = 0.05f * nrand();
            memcpy(Wk, W, sizeof(float) * R * C);
            qd_gptq_opts o;
            qd_gptq_default_opts(&o);
            qd_gptq_stats st;
            qd_gptq_quantize(Wk, R, C, H, &o, codes, sc, zr, NULL, &st);
            if (st.seconds < best) best = st.seconds;
        }
        printf("%-26s %10.1f %14.0f %9.2fx\n", S[k].what, best * 1e3, S[k].ref_ms, S[k].ref_ms / (best * 1e3));
        tot += best * 1e3;
        tot_ref += S[k].ref_ms;
        free(W);
        free(H);
        free(Wk);
        free(codes);
        free(sc);
        free(zr);
    }
    printf("%-26s %10.1f %14.0f %9.2fx\n", "all three", tot, tot_ref, tot_ref / tot);
    return 0;
}
