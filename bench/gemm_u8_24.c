/* The inference engine's 2:4 sparse int8 GEMM (kernels/gemm_u8_24.h: compact weights, AVX-512
 * VNNI + VBMI) against the engine's dense int8 GEMM on the same weights (pruned ones as zeros),
 * one thread, BERT-base shapes (K, N) in {(768, 768), (768, 3072), (3072, 768)} at M rows: 1, 8,
 * 25 (one sentence: batch 1), 128, 800 (32 sentences of 25 tokens: batch 32). Dense runs twice:
 * with the selected kernel table (AMX tiles from 16 rows where the CPU has them) and with the
 * AVX-512 VNNI table. All give the same bits (checked on every shape). The figure is the ratio of
 * best times over 6 interleaved rounds (other load hits all alike); "GOP/s" counts the dense
 * 2·M·N·K for every version. The engine runs a 2:4 Linear on the sparse kernel where its row
 * count is below the threshold this bench sets (runtime/engine.c).
 * Then the 256-bit versions (kernels/avx2/gemm_u8_24_ymm.h), each against the dense GEMM of its
 * own kernel table (AVX-VNNI: the avxvnni table; AVX2: the avx2 table), where the CPU has it:
 * what a CPU without AVX-512 gets.
 *   build/bench/bench_gemm_u8_24 [seconds per shape, default 1.0] [M ...] */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_util.h"
#include "kernels/gemm.h"
#include "kernels/gemm_u8_24.h"
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
    uint8_t *A;
    float *as, *C;
    qd_gemm_w8 *W8;
    qd_gemm_u24 *W24;
    const qd_kernel_table *vnni;
    const qd_gemm_u24_fns *f24;
} shape;

static void run_dense(shape *s) { qd_gemm_u8_f32(s->A, s->K, s->as, s->M, s->W8, 0, s->N, s->C, s->N); }
static void run_vnni(shape *s) { s->vnni->gemm_u8_f32(s->A, s->K, s->as, s->M, s->W8, 0, s->N, s->C, s->N); }
static void run_24(shape *s) { s->f24->f32(s->A, s->K, s->as, s->M, s->W24, 0, s->N, s->C, s->N); }

typedef void (*run_fn)(shape *);

static double best_time(run_fn f, shape *s, double min_s) { return QD_BENCH_BEST_TIME(f(s), min_s); }

static void make_weights(int8_t *w, float *ws, int64_t N, int64_t K)
{
    for (int64_t n = 0; n < N; n++)
        for (int64_t g = 0; g < K; g += 4) {
            const int a = (int)(rnd() % 4), b = (a + 1 + (int)(rnd() % 3)) % 4;
            w[n * K + g + a] = (int8_t)(rnd() % 255 - 127);
            w[n * K + g + b] = (int8_t)(rnd() % 255 - 127);
        }
    for (int64_t n = 0; n < N; n++) ws[n] = 1e-3f * (float)(1 + rnd() % 100);
}

static const int64_t kn[][2] = {{768, 768}, {768, 3072}, {3072, 768}};

/* an M x K by K x N problem: random activations, 2:4 weights packed both ways (dense in LAYOUT) */
static int shape_make(shape *s, int64_t M, const int64_t kn_[2], const qd_kernel_table *tab, const qd_gemm_u24_fns *f24,
                      int layout)
{
    *s = (shape){M, kn_[0], kn_[1], 0, 0, 0, 0, 0, tab, f24};
    int8_t *w = calloc((size_t)(s->N * s->K), 1);
    float *ws = malloc((size_t)s->N * sizeof(float));
    make_weights(w, ws, s->N, s->K);
    s->A = malloc((size_t)(s->M * s->K));
    for (int64_t k = 0; k < s->M * s->K; k++) s->A[k] = (uint8_t)(rnd() % 256);
    s->as = malloc((size_t)s->M * sizeof(float));
    for (int64_t m = 0; m < s->M; m++) s->as[m] = 0.01f;
    const int rc = qd_gemm_w8_create_layout(layout, w, s->N, s->K, s->K, ws, NULL, &s->W8) ||
                   qd_gemm_u24_create(w, s->N, s->K, s->K, ws, NULL, &s->W24);
    if (rc) fprintf(stderr, "%s\n", qd_errmsg());
    free(w);
    free(ws);
    return rc;
}

static void shape_free(shape *s)
{
    qd_gemm_w8_free(s->W8);
    qd_gemm_u24_free(s->W24);
    free(s->A);
    free(s->as);
}
enum { ROUNDS = 6 };

/* the AVX-512 VNNI + VBMI version against the selected table's dense GEMM and the AVX-512 VNNI one */
static int bench_512(const qd_kernel_table *vnni, const qd_gemm_u24_fns *f24, double min_s, const int64_t *ms,
                     int64_t nm)
{
    printf("dense: %s table; one thread; best of %d interleaved rounds, %.1f s per shape\n", qd_kernels_isa(), ROUNDS,
           min_s);
    printf("%5s %5s %5s  %11s %11s %11s  %9s %9s  %s\n", "M", "K", "N", "dense GOP/s", "vnni GOP/s", "2:4 GOP/s",
           "2:4/dense", "2:4/vnni", "same bits");
    for (int64_t mi = 0; mi < nm; mi++) {
        double logsum = 0;
        for (size_t i = 0; i < QD_ARRAY_LEN(kn); i++) {
            shape s;
            if (shape_make(&s, ms[mi], kn[i], vnni, f24, qd_kernels()->layout)) return 1;
            const size_t cb = (size_t)(s.M * s.N) * sizeof(float);
            float *c1 = malloc(cb), *c2 = malloc(cb), *c3 = malloc(cb);
            s.C = c1;
            run_dense(&s);
            s.C = c2;
            run_24(&s);
            s.C = c3;
            run_vnni(&s);
            const int same = !memcmp(c1, c2, cb) && !memcmp(c1, c3, cb);
            double bd = 1e30, bv = 1e30, b24 = 1e30;
            for (int r = 0; r < ROUNDS; r++) {
                double t = best_time(run_dense, &s, min_s / ROUNDS / 3);
                bd = t < bd ? t : bd;
                t = best_time(run_vnni, &s, min_s / ROUNDS / 3);
                bv = t < bv ? t : bv;
                t = best_time(run_24, &s, min_s / ROUNDS / 3);
                b24 = t < b24 ? t : b24;
            }
            const double ops = 2.0 * (double)s.M * (double)s.N * (double)s.K;
            printf("%5lld %5lld %5lld  %11.1f %11.1f %11.1f  %8.2fx %8.2fx  %s\n", (long long)s.M, (long long)s.K,
                   (long long)s.N, ops / bd * 1e-9, ops / bv * 1e-9, ops / b24 * 1e-9, bd / b24, bv / b24,
                   same ? "yes" : "NO");
            logsum += log(bd / b24);
            if (!same) return 1;
            shape_free(&s);
            free(c1);
            free(c2);
            free(c3);
        }
        printf("M = %lld: geometric mean of 2:4/dense over the three shapes %.2fx\n", (long long)ms[mi],
               exp(logsum / (double)QD_ARRAY_LEN(kn)));
    }
    printf("weights in memory: dense 1 byte per weight, 2:4 compact 0.625 (values + 2-bit positions)\n");
    return 0;
}

static void run_isa_dense(shape *s) { s->vnni->gemm_u8_f32(s->A, s->K, s->as, s->M, s->W8, 0, s->N, s->C, s->N); }

/* a 256-bit version against the dense GEMM of the same kernel table */
static int bench_ymm(const char *isa, double min_s, const int64_t *ms, int64_t nm)
{
    const qd_kernel_table *tab = qd_kernels_table(isa);
    const qd_gemm_u24_fns *f24 = qd_gemm_u24_table(isa);
    if (!tab || !f24) {
        printf("%s: not on this CPU\n", isa);
        return 0;
    }
    printf("%s: 2:4 version %s against the %s table's dense int8 GEMM; one thread; best of %d interleaved rounds\n",
           isa, f24->isa, isa, ROUNDS);
    printf("%5s %5s %5s  %11s %11s  %9s  %s\n", "M", "K", "N", "dense GOP/s", "2:4 GOP/s", "2:4/dense", "same bits");
    for (int64_t mi = 0; mi < nm; mi++) {
        double logsum = 0;
        for (size_t i = 0; i < QD_ARRAY_LEN(kn); i++) {
            shape s;
            if (shape_make(&s, ms[mi], kn[i], tab, f24, tab->layout)) return 1;
            const size_t cb = (size_t)(s.M * s.N) * sizeof(float);
            float *c1 = malloc(cb), *c2 = malloc(cb);
            s.C = c1;
            run_isa_dense(&s);
            s.C = c2;
            run_24(&s);
            const int same = !memcmp(c1, c2, cb);
            double bd = 1e30, b24 = 1e30;
            for (int r = 0; r < ROUNDS; r++) {
                double t = best_time(run_isa_dense, &s, min_s / ROUNDS / 2);
                bd = t < bd ? t : bd;
                t = best_time(run_24, &s, min_s / ROUNDS / 2);
                b24 = t < b24 ? t : b24;
            }
            const double ops = 2.0 * (double)s.M * (double)s.N * (double)s.K;
            printf("%5lld %5lld %5lld  %11.1f %11.1f  %8.2fx  %s\n", (long long)s.M, (long long)s.K, (long long)s.N,
                   ops / bd * 1e-9, ops / b24 * 1e-9, bd / b24, same ? "yes" : "NO");
            logsum += log(bd / b24);
            shape_free(&s);
            free(c1);
            free(c2);
            if (!same) return 1;
        }
        printf("%s M = %lld: geometric mean of 2:4/dense over the three shapes %.2fx\n", isa, (long long)ms[mi],
               exp(logsum / (double)QD_ARRAY_LEN(kn)));
    }
    return 0;
}

int main(int argc, char **argv)
{
    const double min_s = argc > 1 ? atof(argv[1]) : 1.0;
    const qd_kernel_table *vnni = qd_kernels_table("avx512vnni");
    const qd_gemm_u24_fns *f24 = qd_gemm_u24_table("avx512vnni");
    int64_t ms[16] = {1, 8, 25, 128, 800}, nm = 5;
    if (argc > 2)
        for (nm = 0; nm < argc - 2 && nm < 16; nm++) ms[nm] = atoll(argv[nm + 2]);
    if (!vnni || !f24 || strcmp(f24->isa, "avx512vnni") != 0)
        printf("no AVX-512 VNNI + VBMI here: the engine runs 2:4 Linears on a 256-bit version or dense\n");
    else if (bench_512(vnni, f24, min_s, ms, nm))
        return 1;
    const char *ymm[] = {"avxvnni", "avx2"};
    for (size_t i = 0; i < QD_ARRAY_LEN(ymm); i++)
        if (bench_ymm(ymm[i], min_s, ms, nm)) return 1;
    return 0;
}
