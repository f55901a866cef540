/* bench/adaround: AdaRound iterations per second on one 64-row unit (the job's unit of work) at
 * BERT-base and all-MiniLM-L6-v2 layer shapes, one thread: the Hessian form with the float sgemm
 * product (the peer), with the bfloat16 AMX product where the CPU has it, and the mini-batch form
 * (256 rows per step); then the projected time of a default run (10,000 iterations per layer) of
 * both checkpoint shapes on 1 and 2 ranks.
 *   bench_adaround [iters]   (default 200 timed iterations per case) */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/gemm_bf16.h"
#include "kernels/kernels.h"
#include "bench/bench_util.h"
#include "quant/adaround.h"

extern void openblas_set_num_threads(int);

static uint64_t g_s = 7;
static float nrand(void) { return qd_bench_nrand(&g_s, 1.0); }

typedef struct {
    int R, C, per_block;
    const char *what;
} shape;
enum { MODES = 3, UNIT = 64 };
static const char *k_mode[MODES] = {"Hessian sgemm", "Hessian tiles", "X batch 256"};

/* seconds per iteration of one unit of UNIT rows of an R x C layer in mode md (0 if n/a) */
static double time_unit(int C, int md, int iters)
{
    const int N = 4096; /* calibration rows */
    float *W = malloc((size_t)UNIT * C * sizeof(float));
    float *X = malloc((size_t)N * C * sizeof(float));
    float *H = calloc((size_t)C * C, sizeof(float));
    for (size_t i = 0; i < (size_t)UNIT * C; i++) W[i] = 0.05f * nrand();
    for (size_t i = 0; i < (size_t)N * C; i++) X[i] = nrand();
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, C, N, 2.0f / N, X, C, 0.0f, H, C);
    for (int a = 0; a < C; a++)
        for (int b = 0; b < a; b++) H[a * C + b] = H[b * C + a];
    qd_qscheme sch = {4, 0, QD_GRAN_CHANNEL, 0, 0};
    qd_qparams p;
    qd_qparams_alloc(&p, UNIT, C, &sch);
    qd_clip_opts clip = QD_CLIP_MINMAX;
    qd_find_params_rows(W, UNIT, C, C, 4, 0, &clip, p.scales, p.zeros, p.ngroups);
    uint8_t *codes = malloc((size_t)UNIT * C);
    qd_adaround_problem pb = {UNIT, C, W, md == 2 ? X : NULL, N, H, &p};
    qd_adaround_opts o;
    qd_adaround_default_opts(&o);
    o.sparse_max = 0; /* every step a full product: the sparse update's gain depends on the run */
    o.tiles = md == 1;
    double s = 0;
    if (md != 1 || qd_gemm_bf16_available()) {
        qd_adaround_stats st, st0;
        o.iters = iters;
        qd_adaround_quantize(&pb, &o, codes, NULL, &st);
        o.iters = 0; /* the set-up and the final evaluation, timed alone and subtracted */
        qd_adaround_quantize(&pb, &o, codes, NULL, &st0);
        s = (st.seconds - st0.seconds) / iters;
    }
    free(W), free(X), free(H), free(codes);
    qd_qparams_free(&p);
    return s;
}

int main(int argc, char **argv)
{
    openblas_set_num_threads(1);
    int iters = argc > 1 ? atoi(argv[1]) : 200;
    if (iters < 1) iters = 200;
    const shape bert[] = {
        {768, 768, 4, "768x768 (q/k/v/o)"}, {3072, 768, 1, "3072x768 (interm.)"}, {768, 3072, 1, "768x3072 (output)"}};
    const shape mini[] = {
        {384, 384, 4, "384x384 (q/k/v/o)"}, {1536, 384, 1, "1536x384 (interm.)"}, {384, 1536, 1, "384x1536 (output)"}};
    const shape *sets[2] = {bert, mini};
    const char *names[2] = {"BERT-base (12 blocks)", "all-MiniLM-L6-v2 (6 blocks)"};
    const int blocks[2] = {12, 6};
    printf("AdaRound on one %d-row unit, 4-bit per channel, %d timed iterations per case, 1 thread; kernels %s%s\n",
           UNIT, iters, qd_kernels_isa(), qd_gemm_bf16_available() ? " + AMX bfloat16 tiles" : " (no AMX tiles here)");
    for (int m = 0; m < 2; m++) {
        double proj[MODES] = {0};
        printf("\n%s\n%-20s", names[m], "layer");
        for (int md = 0; md < MODES; md++) printf(" %14s", k_mode[md]);
        printf(" %10s   (iterations/s per unit)\n", "tiles/sgemm");
        for (int si = 0; si < 3; si++) {
            const shape *sh = &sets[m][si];
            double t[MODES];
            printf("%-20s", sh->what);
            for (int md = 0; md < MODES; md++) {
                t[md] = time_unit(sh->C, md, iters);
                if (t[md] > 0)
                    printf(" %14.1f", 1.0 / t[md]);
                else
                    printf(" %14s", "-");
                proj[md] += (double)blocks[m] * sh->per_block * ((sh->R + UNIT - 1) / UNIT) * t[md] * 10000;
            }
            if (t[1] > 0) printf(" %9.2fx", t[0] / t[1]);
            printf("\n");
        }
        for (int md = 0; md < MODES; md++)
            if (proj[md] > 0)
                printf("projected, 10,000 iterations per layer, %-14s: %6.0f s on 1 rank, %6.0f s on 2\n", k_mode[md],
                       proj[md], proj[md] / 2);
    }
    return 0;
}
