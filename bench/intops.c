/* bench/intops.c — the integer-only kernels (kernels/intops.h) per ISA on all-MiniLM-L6-v2 shapes
 * (128 tokens: the intermediate 1536 wide, hidden 384, 12 heads of 64), one thread: elements per
 * second of each table and its ratio to the scalar reference and to AVX2, best of 7 interleaved
 * rounds. Shows where the AVX-512 versions pay.
 *   build/bench/bench_intops */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/qd_common.h"
#include "kernels/intops.h"
#include "quant/intparams.h"

enum { ROWS = 128, INTER = 1536, HID = 384, T = 128, D = 64, ROUNDS = 7 };

static uint64_t g_s = 99;
static uint32_t r32(void)
{
    g_s = g_s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(g_s >> 32);
}

typedef struct {
    int32_t *acc, *bias, *M0, *sh, *res, *o32, *x, *g;
    int64_t *beta;
    int8_t *o8, *q, *k;
    uint8_t *P;
    qd_igelu gp;
    qd_isoftmax sm;
    qd_iln ln;
} data;

static double run(const qd_intops_table *t, int kernel, data *d)
{
    double t0 = qd_now();
    switch (kernel) {
    case 0: t->requant_s8(d->acc, ROWS, INTER, INTER, d->bias, d->M0, d->sh, 1, 3, -128, d->o8, INTER, NULL); break;
    case 1: t->gelu_s8(d->acc, ROWS, INTER, INTER, d->bias, d->M0, d->sh, &d->gp, d->o8, INTER, NULL); break;
    case 2:
        t->rescale_add(d->acc, ROWS, HID, HID, d->bias, d->M0, d->sh, d->res, HID, 1 << 30, 0, (1 << 24) - 1, d->o32,
                       HID);
        break;
    case 3: t->layernorm(d->x, ROWS, HID, HID, &d->ln, d->o8, HID, d->o32, HID, NULL); break;
    case 4:
        for (int i = 0; i < T; i++) t->softmax_u8(d->acc + (int64_t)i * T, T, NULL, &d->sm, d->P + (int64_t)i * T);
        break;
    case 5: t->qk_s32(d->q, D, 3, d->k, D, -2, T, T, D, d->o32, T); break;
    }
    return qd_now() - t0;
}

int main(void)
{
    static const char *names[] = {"requant_s8 (128 x 1536)", "gelu_s8 (128 x 1536)",   "rescale_add (128 x 384)",
                                  "layernorm (128 x 384)",   "softmax_u8 (128 x 128)", "qk_s32 (128 x 128 x 64)"};
    static const double elems[] = {ROWS * INTER, ROWS * INTER, ROWS * HID, ROWS * HID, T * T, (double)T * T * D};
    const char *isas[] = {"ref", "avx2", "avx512", "neon", "neon-dot"};
    data d;
    const size_t big = (size_t)ROWS * INTER;
    d.acc = malloc(big * 4);
    d.bias = malloc(INTER * 4);
    d.M0 = malloc(INTER * 4);
    d.sh = malloc(INTER * 4);
    d.res = malloc(big * 4);
    d.o32 = malloc(big * 4);
    d.x = malloc(big * 4);
    d.g = malloc(HID * 4);
    d.beta = malloc(HID * 8);
    d.o8 = malloc(big);
    d.q = malloc((size_t)T * D);
    d.k = malloc((size_t)T * D);
    d.P = malloc((size_t)T * T);
    for (size_t i = 0; i < big; i++) {
        d.acc[i] = (int32_t)(r32() >> 12) - (1 << 19);
        d.res[i] = (int32_t)(r32() >> 10) - (1 << 21);
        d.x[i] = (int32_t)(r32() >> 14) - (1 << 17);
    }
    for (int n = 0; n < INTER; n++) {
        d.bias[n] = (int32_t)(r32() >> 20);
        qd_iparams_mult(0.001 + 1e-6 * n, &d.M0[n], &d.sh[n]);
    }
    for (int i = 0; i < T * D; i++) {
        d.q[i] = (int8_t)r32();
        d.k[i] = (int8_t)r32();
    }
    float gamma[HID], betaf[HID];
    for (int i = 0; i < HID; i++) {
        gamma[i] = 1.0f + 0.001f * i;
        betaf[i] = 0.01f * (i % 7);
    }
    qd_igelu_params(0.03, -100, &d.gp);
    qd_isoftmax_params(1e-4, &d.sm);
    qd_iln_params(gamma, betaf, HID, 1e-12, 1.0 / 65536, 0.05, 3, d.g, d.beta, &d.ln);
    printf("integer-only kernels, one thread, best of %d rounds (selected: %s)\n", ROUNDS, qd_intops()->isa);
    printf("%-26s", "kernel");
    for (int i = 0; i < 5; i++)
        if (qd_intops_table_for(isas[i])) printf(" %22s", isas[i]);
    printf("\n");
    for (int k = 0; k < 6; k++) {
        double best[5] = {1e30, 1e30, 1e30, 1e30, 1e30};
        for (int r = 0; r < ROUNDS; r++)
            for (int i = 0; i < 5; i++) {
                const qd_intops_table *t = qd_intops_table_for(isas[i]);
                if (!t) continue;
                const double dt = run(t, k, &d);
                if (dt < best[i]) best[i] = dt;
            }
        printf("%-26s", names[k]);
        for (int i = 0; i < 5; i++) {
            if (!qd_intops_table_for(isas[i])) continue;
            char cell[64];
            snprintf(cell, sizeof cell, "%.0f M/s %.1fx%s", elems[k] / best[i] * 1e-6, best[0] / best[i],
                     i == 2 ? "" : "");
            if (i == 2)
                snprintf(cell, sizeof cell, "%.0f M/s %.2fx avx2", elems[k] / best[i] * 1e-6, best[1] / best[i]);
            printf(" %22s", cell);
        }
        printf("\n");
    }
    return 0;
}
