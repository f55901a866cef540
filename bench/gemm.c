/* Integer GEMM throughput on one core: qdist's INT8 and 4-bit-weight GEMMs (kernels/gemm.h, the
 * selected ISA) against OpenBLAS sgemm measured in the same run, and against oneDNN's int8 GEMMs
 * (dnnl_gemm_s8s8s32 / dnnl_gemm_u8s8s32) when the build found libdnnl.
 *
 * Shapes: BERT-base Linear layers, Y[M][N] = X[M][K] · W[N][K]ᵀ for M (tokens) in {128, 512} and
 * (K, N) in {(768, 768), (768, 3072), (3072, 768)}. Columns (GOP/s = 2·M·N·K / best time, and the
 * ratio to sgemm on the same shape):
 *   sgemm     cblas_sgemm, FP32 (X row-major, W transposed)
 *   i8        qd_gemm_s8_f32 on int8 activations already quantized (per-channel int8 weights)
 *   i8+q      qd_quantize_rows_s8 (dynamic per token) + qd_gemm_s8_f32, from FP32 activations
 *   w4a8      qd_gemm_w4_s8, 4-bit weights in groups of 128, int8 activations already quantized
 *   w4a8+q    the same with the dynamic activation quantization
 *   w4a32     qd_gemm_w4_f32, 4-bit weights, FP32 activations
 *   dnnl s8 / dnnl u8   oneDNN s8s8s32 / u8s8s32 (int32 output, no epilogue)
 * Exactness: on full-range random int8 data (both operands uniform in [-128, 127]) every int32
 * output of oneDNN is compared with qd_gemm_s8_s32 (itself checked against the scalar reference on
 * the first rows here, and everywhere by tests/kernels); "errors" counts differing outputs.
 *
 *   bench_gemm [seconds per kernel and shape, default 1]
 * The process re-executes itself with OPENBLAS_NUM_THREADS=1 and OMP_NUM_THREADS=1 (oneDNN's
 * threads) unless both are set. oneDNN is limited to AVX2 (the ISA of qdist's kernels) unless
 * DNNL_MAX_CPU_ISA is set (e.g. DNNL_MAX_CPU_ISA=ALL for its best ISA on this CPU). */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/gemm.h"
#include "bench/bench_util.h"
#include "kernels/kernels.h"

#ifdef QD_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

#define G4 128

static uint64_t rng = 0x853C49E6748FEA9Bull;
static uint64_t rnd(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}
static double unif(void) { return (double)(rnd() >> 11) * 0x1.0p-53; }
static float gauss(void)
{
    double u = unif(), v = unif();
    return (float)(sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v));
}

/* everything one shape needs */
typedef struct {
    int64_t M, N, K;
    float *x, *wf, *c; /* FP32 activations [M][K], weights [N][K], output [M][N] */
    int8_t *xq;        /* quantized activations */
    float *xs;         /* their per-row scales */
    qd_gemm_w8 *w8;
    qd_gemm_w4 *w4;
} shape;

static double g_min_s = 1.0;

typedef void (*run_fn)(shape *s);

/* best seconds of one call over at least min_s seconds (at least 2 calls, after one warm-up) */
static double best_time(run_fn f, shape *s, double min_s) { return QD_BENCH_BEST_TIME(f(s), min_s); }

/* best times of fns[0..nf) measured in ROUNDS interleaved rounds (other load on the machine hits
 * every kernel alike, and the best of the rounds is kept) */
#define ROUNDS 6
static void time_all(const run_fn *fns, int nf, shape *s, double *best)
{
    for (int f = 0; f < nf; f++) best[f] = 1e30;
    for (int r = 0; r < ROUNDS; r++)
        for (int f = 0; f < nf; f++) {
            const double t = best_time(fns[f], s, g_min_s / ROUNDS);
            if (t < best[f]) best[f] = t;
        }
}

static void run_sgemm(shape *s)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)s->M, (int)s->N, (int)s->K, 1.0f, s->x, (int)s->K, s->wf,
                (int)s->K, 0.0f, s->c, (int)s->N);
}
static void run_i8(shape *s) { qd_gemm_s8_f32(s->xq, s->K, s->xs, s->M, s->w8, s->c, s->N); }
static void run_i8q(shape *s)
{
    qd_quantize_rows_s8(s->x, s->M, s->K, s->K, NULL, s->xs, s->xq, s->K);
    qd_gemm_s8_f32(s->xq, s->K, s->xs, s->M, s->w8, s->c, s->N);
}
static void run_w4a8(shape *s) { qd_gemm_w4_s8(s->xq, s->K, s->xs, s->M, s->w4, s->c, s->N); }
static void run_w4a8q(shape *s)
{
    qd_quantize_rows_s8(s->x, s->M, s->K, s->K, NULL, s->xs, s->xq, s->K);
    qd_gemm_w4_s8(s->xq, s->K, s->xs, s->M, s->w4, s->c, s->N);
}
static void run_w4a32(shape *s) { qd_gemm_w4_f32(s->x, s->K, s->M, s->w4, s->c, s->N); }

#ifdef QD_HAVE_DNNL
static int32_t *g_c32;
static uint8_t *g_xu8;
static int8_t *g_wq;
static void run_dnnl_s8(shape *s)
{
    const int32_t co = 0;
    dnnl_status_t st =
        dnnl_gemm_s8s8s32('N', 'T', 'F', s->M, s->N, s->K, 1.0f, s->xq, s->K, 0, g_wq, s->K, 0, 0.0f, g_c32, s->N, &co);
    QD_ASSERT(st == dnnl_success);
}
static void run_dnnl_u8(shape *s)
{
    const int32_t co = 0;
    dnnl_status_t st = dnnl_gemm_u8s8s32('N', 'T', 'F', s->M, s->N, s->K, 1.0f, g_xu8, s->K, 128, g_wq, s->K, 0, 0.0f,
                                         g_c32, s->N, &co);
    QD_ASSERT(st == dnnl_success);
}
#endif

static void setup(shape *s, int64_t M, int64_t N, int64_t K)
{
    s->M = M, s->N = N, s->K = K;
    s->x = qd_xmalloc((size_t)(M * K) * sizeof(float));
    s->wf = qd_xmalloc((size_t)(N * K) * sizeof(float));
    s->c = qd_xmalloc((size_t)(M * N) * sizeof(float));
    s->xq = qd_xmalloc((size_t)(M * K));
    s->xs = qd_xmalloc((size_t)M * sizeof(float));
    for (int64_t i = 0; i < M * K; i++) s->x[i] = gauss();
    for (int64_t i = 0; i < N * K; i++) s->wf[i] = 0.02f * gauss() * (unif() < 0.001 ? 10.0f : 1.0f);
    /* int8 weights: symmetric per output channel (the activation quantizer applied to W's rows) */
    int8_t *wq = qd_xmalloc((size_t)(N * K));
    float *ws = qd_xmalloc((size_t)N * sizeof(float));
    qd_quantize_rows_s8(s->wf, N, K, K, NULL, ws, wq, K);
    QD_ASSERT(qd_gemm_w8_create(wq, N, K, K, ws, NULL, &s->w8) == 0);
    /* 4-bit weights: asymmetric min-max per group of G4 */
    const int64_t ng = (K + G4 - 1) / G4, rb = (K + 1) / 2;
    float *sc = qd_xmalloc((size_t)(N * ng) * sizeof(float));
    int32_t *zr = qd_xmalloc((size_t)(N * ng) * sizeof(int32_t));
    uint8_t *p4 = qd_xcalloc((size_t)(N * rb), 1);
    for (int64_t n = 0; n < N; n++) {
        for (int64_t g = 0; g < ng; g++) {
            const float *w = s->wf + n * K + g * G4;
            float lo = 0, hi = 0;
            for (int64_t k = 0; k < QD_MIN((int64_t)G4, K - g * G4); k++) lo = fminf(lo, w[k]), hi = fmaxf(hi, w[k]);
            float sg = (hi - lo) / 15.0f;
            if (sg == 0) sg = 1;
            const int32_t z = (int32_t)rintf(-lo / sg);
            sc[n * ng + g] = sg;
            zr[n * ng + g] = z < 0 ? 0 : z > 15 ? 15 : z;
        }
        qd_kernels()->quantize_q4(s->wf + n * K, K, G4, sc + n * ng, zr + n * ng, p4 + n * rb);
    }
    QD_ASSERT(qd_gemm_w4_create(p4, N, K, rb, G4, sc, zr, NULL, &s->w4) == 0);
    qd_quantize_rows_s8(s->x, M, K, K, NULL, s->xs, s->xq, K);
    free(wq), free(ws), free(sc), free(zr), free(p4);
}

static void teardown(shape *s)
{
    free(s->x), free(s->wf), free(s->c), free(s->xq), free(s->xs);
    qd_gemm_w8_free(s->w8);
    qd_gemm_w4_free(s->w4);
}

/* Full-range exactness: qd_gemm_s8_s32 against the scalar reference on the first rows, and the
 * number of oneDNN outputs (s8s8, u8s8) that differ from it. Returns 0 when qdist's is exact. */
static int full_range(shape *s, long *err_s8, long *err_u8)
{
    const int64_t M = s->M, N = s->N, K = s->K;
    int8_t *a = qd_xmalloc((size_t)(M * K)), *w = qd_xmalloc((size_t)(N * K));
    for (int64_t i = 0; i < M * K; i++) a[i] = (int8_t)(rnd() & 0xff);
    for (int64_t i = 0; i < N * K; i++) w[i] = (int8_t)(rnd() & 0xff);
    float *ones = qd_xmalloc((size_t)N * sizeof(float));
    for (int64_t n = 0; n < N; n++) ones[n] = 1.0f;
    qd_gemm_w8 *W = NULL;
    QD_ASSERT(qd_gemm_w8_create(w, N, K, K, ones, NULL, &W) == 0);
    int32_t *ours = qd_xmalloc((size_t)(M * N) * sizeof(int32_t));
    const int64_t mref = QD_MIN(M, (int64_t)8);
    int32_t *ref = qd_xmalloc((size_t)(mref * N) * sizeof(int32_t));
    qd_gemm_s8_s32(a, K, M, W, ours, N);
    qd_kernels_table("ref")->gemm_s8_s32(a, K, mref, W, ref, N);
    const int exact = memcmp(ours, ref, (size_t)(mref * N) * sizeof(int32_t)) == 0;
    *err_s8 = *err_u8 = -1;
#ifdef QD_HAVE_DNNL
    int32_t *d = qd_xmalloc((size_t)(M * N) * sizeof(int32_t));
    uint8_t *au = qd_xmalloc((size_t)(M * K));
    for (int64_t i = 0; i < M * K; i++) au[i] = (uint8_t)(a[i] + 128);
    const int32_t co = 0;
    QD_ASSERT(dnnl_gemm_s8s8s32('N', 'T', 'F', M, N, K, 1.0f, a, K, 0, w, K, 0, 0.0f, d, N, &co) == dnnl_success);
    *err_s8 = 0;
    for (int64_t i = 0; i < M * N; i++) *err_s8 += d[i] != ours[i];
    QD_ASSERT(dnnl_gemm_u8s8s32('N', 'T', 'F', M, N, K, 1.0f, au, K, 128, w, K, 0, 0.0f, d, N, &co) == dnnl_success);
    *err_u8 = 0;
    for (int64_t i = 0; i < M * N; i++) *err_u8 += d[i] != ours[i];
    free(d), free(au);
#endif
    qd_gemm_w8_free(W);
    free(a), free(w), free(ones), free(ours), free(ref);
    return exact ? 0 : 1;
}

static void cpu_name(char *buf, size_t n)
{
    snprintf(buf, n, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[256];
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0) {
            const char *p = strchr(line, ':');
            if (p) snprintf(buf, n, "%s", p + 2);
            buf[strcspn(buf, "\n")] = 0;
            break;
        }
    fclose(f);
}

int main(int argc, char **argv)
{
    const char *ob = getenv("OPENBLAS_NUM_THREADS"), *omp = getenv("OMP_NUM_THREADS");
    if (!ob || strcmp(ob, "1") != 0 || !omp || strcmp(omp, "1") != 0) {
        setenv("OPENBLAS_NUM_THREADS", "1", 1);
        setenv("OMP_NUM_THREADS", "1", 1);
        execv("/proc/self/exe", argv);
        perror("bench_gemm: re-exec with one thread");
        return 1;
    }
    if (argc > 1) g_min_s = atof(argv[1]);

    char cpu[128];
    cpu_name(cpu, sizeof cpu);
    printf("bench_gemm: Y[M][N] = X[M][K] W[N][K]^T, one thread, %s\n", cpu);
    printf("qdist kernels: %s; OpenBLAS %s (core %s)", qd_kernels_isa(), openblas_get_config(),
           openblas_get_corename());
#ifdef QD_HAVE_DNNL
    if (!getenv("DNNL_MAX_CPU_ISA")) dnnl_set_max_cpu_isa(dnnl_cpu_isa_avx2);
    const dnnl_version_t *v = dnnl_version();
    static const struct {
        int isa;
        const char *name;
    } isas[] = {{dnnl_cpu_isa_sse41, "sse41"},
                {dnnl_cpu_isa_avx, "avx"},
                {dnnl_cpu_isa_avx2, "avx2"},
                {dnnl_cpu_isa_avx2_vnni, "avx2_vnni"},
                {dnnl_cpu_isa_avx512_core, "avx512_core"},
                {dnnl_cpu_isa_avx512_core_vnni, "avx512_core_vnni"},
                {dnnl_cpu_isa_avx512_core_bf16, "avx512_core_bf16"},
                {dnnl_cpu_isa_avx512_core_amx, "avx512_core_amx"}};
    const char *isa = "?";
    const int eff = (int)dnnl_get_effective_cpu_isa();
    for (size_t i = 0; i < QD_ARRAY_LEN(isas); i++)
        if (isas[i].isa == eff) isa = isas[i].name;
    printf("; oneDNN %d.%d.%d (ISA %s)\n", v->major, v->minor, v->patch, isa);
#else
    printf("; oneDNN not found at build time (libdnnl-dev)\n");
#endif
    printf("int4 weights: groups of %d along K, asymmetric; int8: per-channel weights, per-token activations\n\n", G4);
    printf("%4s %5s %5s | %7s | %14s %14s %14s %14s %14s | %14s %14s | %s\n", "M", "K", "N", "sgemm", "i8", "i8+q",
           "w4a8", "w4a8+q", "w4a32", "dnnl s8", "dnnl u8", "full-range errors (qdist / dnnl s8 / dnnl u8)");

    static const int64_t Ms[] = {128, 512};
    static const int64_t KN[][2] = {{768, 768}, {768, 3072}, {3072, 768}};
    enum { NF = 5 }; /* qdist's columns */
    double logsum[NF + 2] = {0};
    int nshapes = 0, bad = 0;
    for (size_t mi = 0; mi < QD_ARRAY_LEN(Ms); mi++)
        for (size_t ki = 0; ki < QD_ARRAY_LEN(KN); ki++) {
            shape s;
            setup(&s, Ms[mi], KN[ki][1], KN[ki][0]);
            const double ops = 2.0 * (double)s.M * (double)s.N * (double)s.K;
#ifdef QD_HAVE_DNNL
            g_c32 = qd_xmalloc((size_t)(s.M * s.N) * sizeof(int32_t));
            g_xu8 = qd_xmalloc((size_t)(s.M * s.K));
            g_wq = qd_xmalloc((size_t)(s.N * s.K));
            for (int64_t i = 0; i < s.M * s.K; i++) g_xu8[i] = (uint8_t)(s.xq[i] + 128);
            float *ws = qd_xmalloc((size_t)s.N * sizeof(float));
            qd_quantize_rows_s8(s.wf, s.N, s.K, s.K, NULL, ws, g_wq, s.K);
            free(ws);
            const run_fn fns[] = {run_sgemm, run_i8, run_i8q, run_w4a8, run_w4a8q, run_w4a32, run_dnnl_s8, run_dnnl_u8};
#else
            const run_fn fns[] = {run_sgemm, run_i8, run_i8q, run_w4a8, run_w4a8q, run_w4a32};
#endif
            const int nf = (int)QD_ARRAY_LEN(fns);
            double t[8];
            time_all(fns, nf, &s, t);
            const double gs = ops / t[0] / 1e9;
            printf("%4lld %5lld %5lld | %7.1f |", (long long)s.M, (long long)s.K, (long long)s.N, gs);
            for (int f = 1; f < nf; f++) {
                const double g = ops / t[f] / 1e9;
                printf(" %6.1f %5.2fx ", g, g / gs);
                logsum[f - 1] += log(g / gs);
                if (f == NF) printf("|");
            }
#ifdef QD_HAVE_DNNL
            free(g_c32), free(g_xu8), free(g_wq);
#else
            printf(" %14s %14s ", "-", "-");
#endif
            long e8, eu;
            const int inexact = full_range(&s, &e8, &eu);
            bad |= inexact;
            printf("| %s / %ld / %ld of %lld\n", inexact ? "WRONG" : "0", e8, eu, (long long)(s.M * s.N));
            fflush(stdout);
            teardown(&s);
            nshapes++;
        }
    printf("%16s | %7s |", "geometric mean", "1.00x");
    for (int f = 0; f < NF; f++) printf(" %6s %5.2fx ", "", exp(logsum[f] / nshapes));
#ifdef QD_HAVE_DNNL
    printf("| %6s %5.2fx  %6s %5.2fx |\n", "", exp(logsum[NF] / nshapes), "", exp(logsum[NF + 1] / nshapes));
#else
    printf("|\n");
#endif
    printf("\nGOP/s = 2*M*N*K / best time of one call; ratios against sgemm on the same shape and data\n");
    return bad;
}
