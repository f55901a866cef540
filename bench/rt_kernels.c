/* bench/rt_kernels: the inference runtime's GEMMs (kernels/gemm.h inference path) on every kernel
 * table this CPU offers, against OpenBLAS sgemm on the same shapes, one thread, in the same run;
 * then one attention head (kernels/infer.h) per table.
 *
 *   bench_rt_kernels [--reps N] [--shape M,K,N | --attention]
 *
 * Shapes: the Linears of all-MiniLM-L6-v2 (hidden 384) and BERT-base (768), at M = 1 (a token),
 * 25 (a sentence at batch 1) and 256 rows (a batch). Times are the calling thread's CPU time
 * (CLOCK_THREAD_CPUTIME_ID), best of N repetitions: on a machine shared with other jobs, wall
 * time measures the neighbours as much as the kernel. GOP/s counts 2 M K N. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/gemm.h"
#include "kernels/kernels.h"

static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t g_s = 7;
static uint32_t rnd(void)
{
    g_s = g_s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(g_s >> 33);
}

typedef void (*run_fn)(void *ctx);

/* best CPU seconds of one call over reps, at least 2 ms of calls per repetition */
static double best_of(run_fn f, void *ctx, int reps)
{
    f(ctx);
    double t0 = cpu_now();
    int inner = 1;
    f(ctx);
    const double one = cpu_now() - t0;
    if (one < 2e-3) inner = (int)(2e-3 / (one > 1e-7 ? one : 1e-7)) + 1;
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        t0 = cpu_now();
        for (int i = 0; i < inner; i++) f(ctx);
        const double t = (cpu_now() - t0) / inner;
        best = t < best ? t : best;
    }
    return best;
}

typedef struct {
    const qd_kernel_table *t;
    int64_t M, K, N;
    const float *X, *Wf, *as;
    const uint8_t *A;
    qd_gemm_w8 *w8;
    qd_gemm_w4 *w4;
    qd_gemm_wf *wf;
    float *C;
} ctx;

static void run_sgemm(void *v)
{
    ctx *c = v;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)c->M, (int)c->N, (int)c->K, 1.0f, c->X, (int)c->K, c->Wf,
                (int)c->K, 0.0f, c->C, (int)c->N);
}
static void run_f32(void *v)
{
    ctx *c = v;
    c->t->gemm_f32(c->X, c->K, c->M, c->wf, 0, c->N, c->C, c->N);
}
static void run_u8(void *v)
{
    ctx *c = v;
    c->t->gemm_u8_f32(c->A, c->K, c->as, c->M, c->w8, 0, c->N, c->C, c->N);
}
static void run_w4(void *v)
{
    ctx *c = v;
    c->t->gemm_u8w4_f32(c->A, c->K, c->as, c->M, c->w4, 0, c->N, c->C, c->N);
}

typedef struct {
    const qd_kernel_table *t;
    int64_t T, d, ld;
    const float *qkv;
    float *S, *kt, *ctx;
} att_ctx;

static void run_att(void *v)
{
    att_ctx *a = v;
    const int64_t t16 = (a->T + 15) / 16 * 16;
    a->t->attn_scores(a->qkv, a->qkv + a->d, a->ld, a->T, a->d, 0.125f, a->S, t16, a->kt);
    a->t->softmax_rows(a->S, a->T, a->T, t16);
    a->t->attn_context(a->S, t16, a->qkv + 2 * a->d, a->ld, a->T, a->d, a->ctx, a->d);
}

/* one attention head (scores, softmax, context) at the models' shapes: GFLOP/s of its two products */
static void bench_attention(int reps)
{
    const int64_t shapes[][2] = {{25, 32}, {50, 64}, {128, 64}, {197, 64}};
    printf("\nattention, one head: scores + softmax + context, GFLOP/s of Q K^T and P V (CPU time)\n");
    printf("%-12s %5s %5s %10s\n", "table", "T", "d", "GFLOP/s");
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const int64_t T = shapes[si][0], d = shapes[si][1], t16 = (T + 15) / 16 * 16, ld = 3 * 4 * d;
        float *qkv = malloc((size_t)(T * ld) * 4), *S = malloc((size_t)(T * t16) * 4),
              *kt = malloc((size_t)(d * t16) * 4), *ctx = malloc((size_t)(T * d) * 4);
        for (int64_t i = 0; i < T * ld; i++) qkv[i] = (float)(rnd() % 1000) / 500.0f - 1.0f;
        static const char *isas[] = {"ref", "avx2", "avx512"};
        for (int ii = 0; ii < 3; ii++) {
            const qd_kernel_table *t = qd_kernels_table(isas[ii]);
            if (!t) continue;
            att_ctx a = {t, T, d, ld, qkv, S, kt, ctx};
            const double s = best_of(run_att, &a, reps);
            printf("%-12s %5lld %5lld %10.1f\n", isas[ii], (long long)T, (long long)d, 4.0 * T * T * d / s / 1e9);
        }
        free(qkv), free(S), free(kt), free(ctx);
    }
}

int main(int argc, char **argv)
{
    int reps = 5;
    long long one[3] = {0, 0, 0}; /* --shape M,K,N: that shape alone */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        if (!strcmp(argv[i], "--attention")) one[0] = -1; /* the attention heads alone */
        if (!strcmp(argv[i], "--shape") && i + 1 < argc &&
            sscanf(argv[++i], "%lld,%lld,%lld", &one[0], &one[1], &one[2]) != 3) {
            fprintf(stderr, "--shape M,K,N\n");
            return 2;
        }
    }
    openblas_set_num_threads(1);
    if (one[0] < 0) {
        bench_attention(reps);
        return 0;
    }
    static const char *isas[] = {"ref", "avx2", "avxvnni", "avx512", "avx512vnni", "amx"};
    int64_t shapes[][2] = {{384, 1152}, {384, 1536}, {1536, 384}, {768, 2304}, {768, 3072}, {3072, 768}};
    int64_t Ms[] = {1, 25, 256};
    size_t nshapes = sizeof shapes / sizeof *shapes, nms = sizeof Ms / sizeof *Ms;
    if (one[0] > 0) {
        Ms[0] = one[0], shapes[0][0] = one[1], shapes[0][1] = one[2];
        nshapes = nms = 1;
    }
    printf("inference GEMMs, one thread, CPU time (best of %d); GOP/s = 2 M K N / s\n", reps);
    printf("%-12s %5s %5s %5s %10s", "table", "M", "K", "N", "sgemm");
    printf(" %10s %10s %10s  (ratio to sgemm)\n", "fp32", "int8", "int4 g32");
    for (size_t si = 0; si < nshapes; si++)
        for (size_t mi = 0; mi < nms; mi++) {
            const int64_t K = shapes[si][0], N = shapes[si][1], M = Ms[mi], G = 32, ng = K / G;
            float *X = malloc((size_t)(M * K) * 4), *W = malloc((size_t)(N * K) * 4), *C = malloc((size_t)(M * N) * 4);
            float *as = malloc((size_t)M * 4), *ws = malloc((size_t)N * 4), *sc = malloc((size_t)(N * ng) * 4);
            uint8_t *A = malloc((size_t)(M * K)), *p4 = malloc((size_t)(N * K / 2));
            int8_t *w8 = malloc((size_t)(N * K));
            int32_t *z = malloc((size_t)(N * ng) * 4);
            for (int64_t i = 0; i < M * K; i++) X[i] = (float)(rnd() % 1000) / 500.0f - 1.0f, A[i] = (uint8_t)rnd();
            for (int64_t i = 0; i < N * K; i++) W[i] = (float)(rnd() % 1000) / 5e4f, w8[i] = (int8_t)rnd();
            for (int64_t i = 0; i < N * K / 2; i++) p4[i] = (uint8_t)rnd();
            for (int64_t i = 0; i < M; i++) as[i] = 0.01f;
            for (int64_t i = 0; i < N; i++) ws[i] = 0.01f;
            for (int64_t i = 0; i < N * ng; i++) sc[i] = 0.01f, z[i] = (int32_t)(rnd() % 16);
            ctx c = {NULL, M, K, N, X, W, as, A, NULL, NULL, NULL, C};
            const double ts = best_of(run_sgemm, &c, reps), gop = 2.0 * (double)(M * K * N) / 1e9;
            for (size_t ii = 0; ii < sizeof isas / sizeof *isas; ii++) {
                const qd_kernel_table *t = qd_kernels_table(isas[ii]);
                if (!t || (ii == 0 && M > 25)) continue; /* the reference only where it finishes quickly */
                c.t = t;
                qd_gemm_w8_create_layout(t->layout, w8, N, K, K, ws, NULL, &c.w8);
                qd_gemm_w4_create_layout(t->layout, p4, N, K, K / 2, G, sc, z, NULL, &c.w4);
                qd_gemm_wf_create(W, N, K, K, NULL, &c.wf);
                const double tf = best_of(run_f32, &c, reps), t8 = best_of(run_u8, &c, reps),
                             t4 = best_of(run_w4, &c, reps);
                printf("%-12s %5lld %5lld %5lld %10.1f %10.1f %10.1f %10.1f  (%.2fx %.2fx %.2fx)\n", isas[ii],
                       (long long)M, (long long)K, (long long)N, gop / ts, gop / tf, gop / t8, gop / t4, ts / tf,
                       ts / t8, ts / t4);
                qd_gemm_w8_free(c.w8), qd_gemm_w4_free(c.w4), qd_gemm_wf_free(c.wf);
            }
            free(X), free(W), free(C), free(as), free(ws), free(sc), free(A), free(p4), free(w8), free(z);
        }
    if (one[0] == 0) bench_attention(reps);
    return 0;
}
