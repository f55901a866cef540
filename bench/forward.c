/* bench/forward: FP32 forward throughput of model/ on one rank, one thread, against PyTorch on
 * the same CPU, same models, same inputs, measured in the same run.
 *
 *   BERT  all-MiniLM-L6-v2 (6 layers, hidden 384, 12 heads, FFN 1536, erf GELU): a batch of 8
 *         SST-2 dev sentences (the first 8 data rows of shared/models/data/sst2/dev.tsv, as in
 *         the file) tokenized by model/tokenizer.h, padded/truncated to 128 tokens, with the
 *         attention mask; forward = embeddings, 6 blocks, pooler. Throughput counts all
 *         8 x 128 = 1024 tokens, padding included (the pass computes padded rows in full).
 *   ViT   vit-mnist-tiny (6 layers, hidden 64, 4 heads of 64, FFN 128, ReLU, pre-LN, 50 tokens):
 *         batches of 64 MNIST test images (the 16 pixel_values of
 *         shared/models/reference/vit-forward-reference.safetensors, repeated); forward =
 *         patch embedding, 6 blocks, final LayerNorm, classifier.
 *
 * Each model: warm-up passes, then timed passes of qd_model_forward; best and median. GFLOP/s
 * count the multiply-adds of every Linear (encoder, patch embedding, pooler / classifier) and
 * the attention products (Q K^T and P V), 2 FLOP each; the ceiling is OpenBLAS sgemm 1024^3
 * measured in the same run (best of several).
 *
 * The peer is bench/forward_torch.py run with $QD_TORCH_PYTHON (default: /tmp/venv-ref/bin/python,
 * then python3) when that Python imports torch, transformers, safetensors and numpy; it writes
 * its inputs and outputs, which are checked against ours (token ids exactly; hidden states at
 * real tokens, pooler output, logits within float32 tolerances). Without it: "PyTorch not
 * available" and only the GFLOP/s-vs-sgemm figures.
 *
 * The stage profile (--no-profile to skip) times every Linear in place (a linear_apply hook that
 * does what model/forward.c does: one sgemm per item of T rows), then the other stages on their
 * own at the model's shapes, with the model's building blocks (qd_layernorm, qd_activation) or a
 * copy of model/forward.c's attention loop, plus what-if variants (one sgemm over all B x T
 * rows, the scalar reference kernels (QD_KERNELS=ref) for GELU and the softmax, malloc keeping
 * freed scratch). The profile runs after the table and changes no figure in it.
 *
 *   bench_forward [--runs N] [--warmup N] [--no-torch] [--no-profile]
 *
 * Without the BERT checkpoint (deploy/fetch-models.sh; $QD_BERT_DIR) the BERT rows are skipped
 * with a message; without either model the program prints why and exits 0.
 */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernels/kernels.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "shard/safetensors.h"
#include "tests/reference/bert_dir.h"

#ifndef QD_BENCH_SOURCE_DIR
#define QD_BENCH_SOURCE_DIR "."
#endif

extern void openblas_set_num_threads(int);

#define BERT_B 8
#define BERT_T 128
#define VIT_B  64

static int g_runs = 7, g_warmup = 2;

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    double best, median, cpu_per_wall, faults;
} timing;

static timing summarize(double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, cmp_dbl);
    timing r = {t[0], n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]), 0, 0};
    return r;
}

/* process CPU seconds (user + system) and minor page faults so far */
static double cpu_seconds(long *minflt)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    if (minflt) *minflt = u.ru_minflt;
    return u.ru_utime.tv_sec + 1e-6 * u.ru_utime.tv_usec + u.ru_stime.tv_sec + 1e-6 * u.ru_stime.tv_usec;
}

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static float gauss(void)
{
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    double u = ((g_rng >> 11) + 1.0) * 0x1.0p-53;
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    double v = (g_rng >> 11) * 0x1.0p-53;
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

static float *randn(int64_t n, float s)
{
    float *p = qd_xmalloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) p[i] = s * gauss();
    return p;
}

/* ---- the ceiling: OpenBLAS sgemm 1024^3 ---------------------------------------------------- */

static double sgemm_peak(void)
{
    const int n = 1024;
    float *A = randn((int64_t)n * n, 1), *B = randn((int64_t)n * n, 1), *C = qd_xcalloc((size_t)n * n, sizeof(float));
    double best = 1e30;
    for (int r = 0; r < 6; r++) {
        double t0 = qd_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, A, n, B, n, 0.0f, C, n);
        double t = qd_now() - t0;
        if (r > 0 && t < best) best = t;
    }
    free(A);
    free(B);
    free(C);
    return 2.0 * n * n * n / best / 1e9;
}

/* ---- FLOPs of one forward: every Linear + attention products ------------------------------- */

static double forward_flops(const qd_model *m, int B, int T)
{
    const qd_model_config *c = qd_model_cfg(m);
    double f = 0;
    for (int li = 0; li < qd_model_num_linears(m); li++) {
        const qd_linear *L = qd_model_linear(m, li);
        f += 2.0 * B * T * L->in * L->out;
    }
    f += 4.0 * B * c->layers * c->heads * (double)T * T * c->head_size;
    if (c->arch == QD_ARCH_VIT) {
        int np = (c->image_h / c->patch_h) * (c->image_w / c->patch_w);
        f += 2.0 * B * np * (double)c->channels * c->patch_h * c->patch_w * c->hidden;
        f += 2.0 * B * c->hidden * (double)c->num_labels;
    } else if (c->has_pooler) {
        f += 2.0 * B * (double)c->hidden * c->hidden;
    }
    return f;
}

/* ---- the timed pass ------------------------------------------------------------------------ */

typedef struct {
    const char *name;
    qd_model *m;
    qd_batch b;
    int items; /* tokens (BERT) or images (ViT) per forward */
    const char *unit;
    float *pooled, *logits;
    timing ours;
    double flops;
} bench_model;

__attribute__((unused)) static timing time_forward(bench_model *bm, const qd_model_hooks *hk, int warmup, int runs)
{
    double *t = qd_xmalloc((size_t)runs * sizeof(double)), wall = 0, cpu = 0;
    long f0 = 0, f1 = 0;
    for (int r = 0; r < warmup + runs; r++) {
        double c0 = cpu_seconds(r == warmup ? &f0 : NULL), t0 = qd_now();
        int rc = qd_model_forward(bm->m, &bm->b, hk, bm->pooled, bm->logits, NULL);
        double dt = qd_now() - t0;
        if (rc) {
            fprintf(stderr, "%s forward: %s\n", bm->name, qd_errmsg());
            exit(1);
        }
        double c1 = cpu_seconds(&f1);
        if (r >= warmup) t[r - warmup] = dt, wall += dt, cpu += c1 - c0;
    }
    timing s = summarize(t, runs);
    s.cpu_per_wall = wall > 0 ? cpu / wall : 0;
    s.faults = runs > 0 ? (double)(f1 - f0) / runs : 0;
    free(t);
    return s;
}

typedef struct peer peer;
static cJSON *peer_ask(peer *p, const char *cmd);

/* ---- stage profile --------------------------------------------------------------------------- */

typedef struct {
    int T;
    int batched; /* 1: one sgemm over all rows (what-if); 0: one per item, as the model */
    double lin[QD_LIN_PER_BLOCK];
    int capture_li; /* copy this linear's output (pre-activation of the FFN) */
    float *capture;
} prof_state;

static int prof_apply(void *user, const qd_model *m, int li, const float *X, int64_t rows, float *Y)
{
    prof_state *s = user;
    const qd_linear *L = qd_model_linear(m, li);
    int64_t step = s->batched ? rows : s->T;
    double t0 = qd_now();
    for (int64_t r = 0; r < rows; r += step)
        qd_linear_f32(X + r * L->in, QD_MIN(step, rows - r), L->in, L->W, L->b, L->out, Y + r * L->out);
    s->lin[L->kind] += qd_now() - t0;
    if (li == s->capture_li && s->capture) memcpy(s->capture, Y, (size_t)(rows * L->out) * sizeof(float));
    return 1;
}

/* the attention core of model/forward.c (per item, per head: sgemm Q K^T, masked softmax through
 * the kernel table's exp_sum, sgemm P V), timed in two parts; `k` is the selected table or, for
 * the what-if, the scalar reference */
static void attention_core(const qd_model_config *c, const qd_batch *b, const float *q, const float *k, const float *v,
                           float *ctx, float *S, const qd_kernel_table *kt, double *t_mm, double *t_sm)
{
    const int T = b->T, d = c->head_size, A = c->heads * d;
    const float scale = (float)(1.0 / sqrt((double)d));
    for (int bi = 0; bi < b->B; bi++) {
        const int32_t *mask = b->mask ? b->mask + (int64_t)bi * T : NULL;
        for (int h = 0; h < c->heads; h++) {
            const int64_t off = (int64_t)bi * T * A + (int64_t)h * d;
            double t0 = qd_now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, d, scale, q + off, A, k + off, A, 0.0f, S, T);
            double t1 = qd_now();
            for (int i = 0; i < T; i++) {
                float *row = S + (int64_t)i * T;
                float mx = -INFINITY;
                for (int j = 0; j < T; j++) {
                    if (mask && !mask[j]) row[j] = -INFINITY;
                    if (row[j] > mx) mx = row[j];
                }
                const float inv = 1.0f / kt->exp_sum(row, T, mx);
                for (int j = 0; j < T; j++) row[j] *= inv;
            }
            double t2 = qd_now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, d, T, 1.0f, S, T, v + off, A, 0.0f, ctx + off, A);
            *t_mm += (t1 - t0) + (qd_now() - t2);
            *t_sm += t2 - t1;
        }
    }
}

static void gelu_erff(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678f));
}

/* best-of-5 seconds of fn over a fresh copy of src (n floats), times `reps` */
static double time_inplace(void (*fn)(void *, float *, int64_t), void *arg, const float *src, int64_t n, float *dst,
                           int reps)
{
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        double t = 0;
        for (int k = 0; k < reps; k++) {
            memcpy(dst, src, (size_t)n * sizeof(float));
            double t0 = qd_now();
            fn(arg, dst, n);
            t += qd_now() - t0;
        }
        if (t < best) best = t;
    }
    return best;
}

static void fn_act(void *a, float *x, int64_t n) { qd_activation(*(qd_act *)a, x, n); }
static void fn_gelu_erff(void *a, float *x, int64_t n)
{
    (void)a;
    gelu_erff(x, n);
}
static void fn_gelu_table(void *a, float *x, int64_t n) { ((const qd_kernel_table *)a)->gelu(x, n); }

typedef struct {
    const float *g, *b;
    int H;
    double eps;
    float *y;
} ln_arg;
static void fn_ln(void *a, float *x, int64_t n)
{
    ln_arg *l = a;
    qd_layernorm(x, n / l->H, l->H, l->g, l->b, l->eps, l->y);
}

static double ms(double s) { return s * 1e3; }

/* Seconds per minor page fault on fresh anonymous memory (the kernel's trap and zeroing of one
 * page): 64 MiB mapped, one write per page, unmapped; best of 3. */
static double fault_cost(void)
{
    const size_t len = 64u << 20, pg = (size_t)sysconf(_SC_PAGESIZE);
    double best = 1e30;
    for (int r = 0; r < 3; r++) {
        double t0 = qd_now();
        char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) return 0;
        for (size_t i = 0; i < len; i += pg) m[i] = 1;
        munmap(m, len);
        double t = qd_now() - t0;
        if (t < best) best = t;
    }
    return best / (double)(len / pg);
}

/* Every Linear timed in place, one sgemm per item (as the model, hooks of ps) and one over all rows,
 * the two kinds of pass alternating: per Linear the best of `reps` into lin and lin_b, the page
 * faults of a hooked pass into *hook_faults; returns the best hooked pass. */
static double time_linears(bench_model *bm, prof_state *ps, double *lin, double *lin_b, double *hook_faults, int reps)
{
    const qd_model *m = bm->m;
    const qd_batch *b = &bm->b;
    prof_state pb = {.T = b->T, .batched = 1, .capture_li = -1};
    long pf0 = 0, pf1 = 0;
    qd_model_hooks hk = {.user = ps, .linear_apply = prof_apply}, hkb = {.user = &pb, .linear_apply = prof_apply};
    double total = 1e30;
    for (int k = 0; k < QD_LIN_PER_BLOCK; k++) lin[k] = lin_b[k] = 1e30;
    for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
        memset(ps->lin, 0, sizeof ps->lin);
        memset(pb.lin, 0, sizeof pb.lin);
        cpu_seconds(&pf0);
        double t0 = qd_now();
        if (qd_model_forward(m, b, &hk, bm->pooled, bm->logits, NULL)) {
            fprintf(stderr, "%s\n", qd_errmsg());
            exit(1);
        }
        double t = qd_now() - t0;
        cpu_seconds(&pf1);
        if (r >= 0) *hook_faults += (double)(pf1 - pf0) / reps;
        if (qd_model_forward(m, b, &hkb, bm->pooled, bm->logits, NULL)) {
            fprintf(stderr, "%s\n", qd_errmsg());
            exit(1);
        }
        if (r < 0) continue;
        total = fmin(total, t);
        for (int k = 0; k < QD_LIN_PER_BLOCK; k++)
            lin[k] = fmin(lin[k], ps->lin[k]), lin_b[k] = fmin(lin_b[k], pb.lin[k]);
    }
    return total;
}

/* Why a plain forward faults in more pages than the hooked passes (printed when it does). */
static void explain_faults(const bench_model *bm, int64_t rows, int64_t A, int H)
{
    const qd_model_config *c = qd_model_cfg(bm->m);
    const qd_batch *b = &bm->b;
    const double mib = 1.0 / 1048576.0;
    double scratch =
        (double)(rows * A * 4 + rows * H * 2 + rows * c->intermediate + (int64_t)b->T * b->T) * sizeof(float) * mib;
    printf("    %.1f MiB of fresh pages per plain forward: model/forward.c mallocs and frees %.1f MiB of scratch "
           "in every block;\n"
           "    glibc's trim threshold (twice the largest mmapped block freed so far, here 2 x %.1f MiB) is below "
           "that, so free()\n"
           "    gives the heap top back to the OS and the next block faults it in again, mostly inside the "
           "Linears' sgemm. The\n"
           "    hooked passes ran after larger blocks had been freed (another model's scratch, the output check), "
           "which raised\n"
           "    the threshold: hence their fewer faults. A process that runs only this model pays them on every "
           "forward.\n",
           bm->ours.faults * (double)sysconf(_SC_PAGESIZE) * mib, scratch,
           (double)(rows * A * 4) * sizeof(float) * mib);
}

/* Stage profile of one forward (milliseconds per forward), printed as a table with PyTorch's
 * per-operator profile beside it when given. */
static void profile_model(bench_model *bm, peer *p, const char *key)
{
    const qd_model *m = bm->m;
    const qd_model_config *c = qd_model_cfg(m);
    const qd_batch *b = &bm->b;
    const int64_t rows = (int64_t)b->B * b->T, A = (int64_t)c->heads * c->head_size;
    const int reps = 5;

    /* 1. in place: every Linear (time_linears), capturing block 0's FFN pre-activations */
    prof_state ps = {.T = b->T, .capture_li = QD_LIN_INTER};
    /* mmap, not malloc: leaves the heap that the forward's scratch lives on as it was */
    const size_t cap_bytes = (size_t)(rows * c->intermediate) * sizeof(float);
    ps.capture = mmap(NULL, cap_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ps.capture == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    double lin[QD_LIN_PER_BLOCK], lin_b[QD_LIN_PER_BLOCK], lin_sum = 0, lin_b_sum = 0, hook_faults = 0;
    const double total = time_linears(bm, &ps, lin, lin_b, &hook_faults, reps);
    for (int k = 0; k < QD_LIN_PER_BLOCK; k++) lin_sum += lin[k], lin_b_sum += lin_b[k];

    /* 2. the attention core at the model's shapes (random Q, K, V; the batch's mask) */
    float *q = randn(rows * A, 1), *kk = randn(rows * A, 1), *v = randn(rows * A, 1);
    float *ctx = qd_xmalloc((size_t)(rows * A) * sizeof(float)), *S = qd_xmalloc((size_t)b->T * b->T * sizeof(float));
    const qd_kernel_table *kref = qd_kernels_table("ref");
    double t_mm = 1e30, t_sm = 1e30, t_sm_ref = 1e30;
    for (int r = 0; r < reps; r++) {
        double a = 0, s = 0, a2 = 0, s2 = 0;
        for (int l = 0; l < c->layers; l++) attention_core(c, b, q, kk, v, ctx, S, qd_kernels(), &a, &s);
        if (a + s < t_mm + t_sm) t_mm = a, t_sm = s;
        for (int l = 0; l < c->layers; l++) attention_core(c, b, q, kk, v, ctx, S, kref, &a2, &s2);
        t_sm_ref = fmin(t_sm_ref, s2);
    }

    /* 3. activation on the real pre-activations of block 0; LayerNorm on real-scale rows */
    const int64_t na = rows * c->intermediate;
    float *act_buf = qd_xmalloc((size_t)na * sizeof(float));
    qd_act act = c->act;
    double t_act = time_inplace(fn_act, &act, ps.capture, na, act_buf, c->layers);
    double t_erff = 0, t_ref = 0, err_erff = 0, err_ref = 0;
    int is_gelu = act == QD_ACT_GELU;
    if (is_gelu) {
        float *ref = qd_xmalloc((size_t)na * sizeof(float));
        memcpy(ref, ps.capture, (size_t)na * sizeof(float));
        qd_activation(QD_ACT_GELU, ref, na);
        t_erff = time_inplace(fn_gelu_erff, NULL, ps.capture, na, act_buf, c->layers);
        for (int64_t i = 0; i < na; i++) err_erff = fmax(err_erff, fabs((double)act_buf[i] - ref[i]));
        t_ref = time_inplace(fn_gelu_table, (void *)kref, ps.capture, na, act_buf, c->layers);
        for (int64_t i = 0; i < na; i++) err_ref = fmax(err_ref, fabs((double)act_buf[i] - ref[i]));
        free(ref);
    }
    const int H = c->hidden;
    float *lnx = randn(rows * H, 2), *lny = qd_xmalloc((size_t)(rows * H) * sizeof(float));
    float *g = randn(H, 1), *be = randn(H, 1);
    ln_arg la = {g, be, H, c->ln_eps, lny};
    int n_ln = 2 * c->layers + 1; /* two per block + embeddings (BERT) or final (ViT) */
    double t_ln = time_inplace(fn_ln, &la, lnx, rows * H, ctx, n_ln);

    double accounted = lin_sum + t_mm + t_sm + t_act + t_ln;
    printf("\n%s: where one forward's time goes (ms, best of %d; Linears timed in place by a hook, the other stages "
           "alone at the same shapes)\n",
           bm->name, reps);
    printf("  %-58s %9s %7s   %s\n", "stage", "ms", "share", "what-if");
    static const char *lname[QD_LIN_PER_BLOCK] = {"query",        "key",   "value", "attention output",
                                                  "intermediate", "output"};
    for (int k = 0; k < QD_LIN_PER_BLOCK; k++) {
        const qd_linear *L = qd_model_linear(m, k);
        char what[96];
        snprintf(what, sizeof what, "one sgemm over %lld rows: %.1f ms", (long long)rows, ms(lin_b[k]));
        char nm[96];
        snprintf(nm, sizeof nm, "Linear %s %dx%d (%d x sgemm %lldx%dx%d)", lname[k], L->out, L->in, b->B * c->layers,
                 (long long)b->T, L->out, L->in);
        printf("  %-58s %9.1f %6.1f%%   %s\n", nm, ms(lin[k]), 100 * lin[k] / total, what);
    }
    char nm[96];
    snprintf(nm, sizeof nm, "attention QK^T + PV (%d x 2 sgemm, T=%d d=%d)", b->B * c->heads * c->layers, b->T,
             c->head_size);
    printf("  %-58s %9.1f %6.1f%%\n", nm, ms(t_mm), 100 * t_mm / total);
    snprintf(nm, sizeof nm, "softmax (exp_sum %s, %s)", qd_kernels_isa(), b->mask ? "masked" : "no mask");
    printf("  %-58s %9.1f %6.1f%%   scalar reference kernels: %.1f ms\n", nm, ms(t_sm), 100 * t_sm / total,
           ms(t_sm_ref));
    snprintf(nm, sizeof nm, "GELU (kernels gelu, %s)", qd_kernels_isa());
    if (is_gelu)
        printf("  %-58s %9.1f %6.1f%%   float erff %.1f ms (max diff %.1g); scalar reference %.1f ms (max diff %.1g)\n",
               nm, ms(t_act), 100 * t_act / total, ms(t_erff), err_erff, ms(t_ref), err_ref);
    else
        printf("  %-58s %9.1f %6.1f%%\n", "activation", ms(t_act), 100 * t_act / total);
    snprintf(nm, sizeof nm, "LayerNorm (double, two passes) x %d", n_ln);
    printf("  %-58s %9.1f %6.1f%%\n", nm, ms(t_ln), 100 * t_ln / total);
    printf("  %-58s %9.1f %6.1f%%\n", "rest (embeddings, residual adds, head, timer overlap)", ms(total - accounted),
           100 * (total - accounted) / total);
    double fc = fault_cost(), tf = fc * hook_faults;
    printf("  %-58s %9.1f %6.1f%%   %.0f per forward x %.2f us (the kernel's trap + zeroing of a fresh page)\n",
           "page faults (inside the stages above)", ms(tf), 100 * tf / total, hook_faults, fc * 1e6);
    printf("  %-58s %9.1f   (Linears as one sgemm over all rows: %.1f ms, %+.1f ms)\n",
           "total (best forward with the hook)", ms(total), ms(lin_b_sum), ms(lin_b_sum - lin_sum));
    printf("  %-58s %9.1f   (%.0f page faults per forward x %.2f us = %.1f ms)\n",
           "the forward without the hook, from the table", ms(bm->ours.best), bm->ours.faults, fc * 1e6,
           ms(fc * bm->ours.faults));
    if (bm->ours.faults > hook_faults) explain_faults(bm, rows, A, H);
    cJSON *torch_prof = NULL;
    if (p) { /* asked only now: its reply on our heap during the passes above would change their page faults */
        char cmd[32];
        snprintf(cmd, sizeof cmd, "profile %s 3", key);
        torch_prof = peer_ask(p, cmd);
    }
    if (torch_prof && cJSON_IsObject(torch_prof)) {
        printf("  PyTorch, self CPU ms per forward (torch.profiler):");
        int n = 0;
        for (const cJSON *e = torch_prof->child; e && n < 8; e = e->next, n++)
            printf("%s %s %.1f", n ? "," : "", e->string, e->valuedouble);
        printf("\n");
    }
    free(q);
    free(kk);
    free(v);
    free(ctx);
    free(S);
    free(act_buf);
    free(lnx);
    free(lny);
    free(g);
    free(be);
    cJSON_Delete(torch_prof);
    munmap(ps.capture, cap_bytes);
}

/* ---- inputs ------------------------------------------------------------------------------- */

static int bert_inputs(const char *dir, const char *tsv, int32_t *ids, int32_t *tt, int32_t *mask, int *real)
{
    char vocab[4200];
    snprintf(vocab, sizeof vocab, "%s/vocab.txt", dir);
    qd_tokenizer *tok = NULL;
    if (qd_tokenizer_load(vocab, QD_TOK_LOWER_AUTO, &tok)) {
        fprintf(stderr, "%s\n", qd_errmsg());
        return -1;
    }
    FILE *f = fopen(tsv, "r");
    char line[8192];
    if (!f || !fgets(line, sizeof line, f)) {
        fprintf(stderr, "%s: cannot read\n", tsv);
        qd_tokenizer_free(tok);
        if (f) fclose(f);
        return -1;
    }
    *real = 0;
    int s = 0;
    for (; s < BERT_B && fgets(line, sizeof line, f); s++) {
        char *tab = strrchr(line, '\t');
        if (tab) *tab = 0;
        int n = 0;
        if (qd_tokenizer_encode(tok, line, NULL, BERT_T, BERT_T, BERT_T, ids + s * BERT_T, tt + s * BERT_T,
                                mask + s * BERT_T, &n, NULL)) {
            fprintf(stderr, "%s\n", qd_errmsg());
            s = -1;
            break;
        }
        for (int t = 0; t < BERT_T; t++) *real += mask[s * BERT_T + t] != 0;
    }
    fclose(f);
    qd_tokenizer_free(tok);
    if (s != BERT_B) {
        fprintf(stderr, "%s: fewer than %d sentences\n", tsv, BERT_B);
        return -1;
    }
    return 0;
}

/* ---- the PyTorch peer: a coprocess driven pass by pass ------------------------------------ */

struct peer {
    pid_t pid;
    FILE *to, *from;
    char *line;
    size_t cap;
};

static const char *torch_python(void)
{
    static const char *cand[3];
    int nc = 0;
    const char *e = getenv("QD_TORCH_PYTHON");
    if (e && *e)
        cand[nc++] = e;
    else {
        cand[nc++] = "/tmp/venv-ref/bin/python";
        cand[nc++] = "python3";
    }
    for (int i = 0; i < nc; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            int dn = open("/dev/null", O_WRONLY);
            if (dn >= 0) {
                dup2(dn, 1);
                dup2(dn, 2);
            }
            execlp(cand[i], cand[i], "-c", "import torch, transformers, safetensors, numpy", (char *)NULL);
            _exit(127);
        }
        int st = 0;
        if (pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0) return cand[i];
    }
    return NULL;
}

/* One JSON line from the peer (NULL on end of output or garbage). */
static cJSON *peer_read(peer *p)
{
    if (!p->from || getline(&p->line, &p->cap, p->from) < 0) return NULL;
    return cJSON_Parse(p->line);
}

static cJSON *peer_ask(peer *p, const char *cmd)
{
    if (fprintf(p->to, "%s\n", cmd) < 0 || fflush(p->to)) return NULL;
    cJSON *r = peer_read(p);
    if (r && cJSON_GetObjectItem(r, "error")) {
        cJSON_Delete(r);
        return NULL;
    }
    return r;
}

/* Start bench/forward_torch.py --serve; NULL facts when it does not come up. */
static cJSON *peer_start(peer *p, const char *py, char **args, const char *errfile)
{
    int in[2], out[2];
    memset(p, 0, sizeof *p);
    if (pipe(in) || pipe(out)) return NULL;
    fflush(stdout);
    p->pid = fork();
    if (p->pid < 0) return NULL;
    if (p->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        int ef = open(errfile, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (ef >= 0) dup2(ef, 2);
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        execvp(py, args);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    p->to = fdopen(in[1], "w");
    p->from = fdopen(out[0], "r");
    return peer_read(p);
}

static void peer_stop(peer *p)
{
    if (p->to) {
        fprintf(p->to, "quit\n");
        fclose(p->to);
    }
    if (p->from) fclose(p->from);
    if (p->pid > 0) waitpid(p->pid, NULL, 0);
    free(p->line);
    memset(p, 0, sizeof *p);
}

/* Alternate our passes with the peer's (the order flips every pass), so both see the same
 * machine; warm-up passes first. Returns 0, or -1 when the peer stopped answering. */
static int measure(bench_model *bm, peer *p, const char *key, timing *theirs)
{
    const int n = g_warmup + g_runs;
    double *to = qd_xmalloc((size_t)g_runs * sizeof(double)), *tp = qd_xmalloc((size_t)g_runs * sizeof(double));
    double ow = 0, oc = 0, pw = 0, pc = 0, pf = 0;
    long of = 0, f0, f1;
    char cmd[32];
    snprintf(cmd, sizeof cmd, "run %s", key);
    int rc = 0;
    for (int r = 0; r < n && !rc; r++) {
        for (int side = 0; side < 2 && !rc; side++) {
            if ((side ^ (r & 1)) == 0) {
                double c0 = cpu_seconds(&f0), t0 = qd_now();
                if (qd_model_forward(bm->m, &bm->b, NULL, bm->pooled, bm->logits, NULL)) {
                    fprintf(stderr, "%s forward: %s\n", bm->name, qd_errmsg());
                    exit(1);
                }
                double dt = qd_now() - t0, c1 = cpu_seconds(&f1);
                if (r >= g_warmup) to[r - g_warmup] = dt, ow += dt, oc += c1 - c0, of += f1 - f0;
            } else if (p) {
                cJSON *j = peer_ask(p, cmd);
                const cJSON *s = j ? cJSON_GetObjectItem(j, "s") : NULL;
                if (!cJSON_IsNumber(s))
                    rc = -1;
                else if (r >= g_warmup) {
                    tp[r - g_warmup] = s->valuedouble, pw += s->valuedouble;
                    pc += cJSON_GetObjectItem(j, "cpu")->valuedouble,
                        pf += cJSON_GetObjectItem(j, "faults")->valuedouble;
                }
                cJSON_Delete(j);
            }
        }
    }
    bm->ours = summarize(to, g_runs);
    bm->ours.cpu_per_wall = oc / ow;
    bm->ours.faults = (double)of / g_runs;
    if (p && !rc) {
        *theirs = summarize(tp, g_runs);
        theirs->cpu_per_wall = pc / pw;
        theirs->faults = pf / g_runs;
    }
    free(to);
    free(tp);
    return rc;
}

static void *read_raw(const char *dir, const char *name, size_t bytes)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    void *buf = qd_xmalloc(bytes);
    size_t got = fread(buf, 1, bytes, f);
    int extra = fgetc(f) != EOF;
    fclose(f);
    if (got != bytes || extra) {
        free(buf);
        return NULL;
    }
    return buf;
}

static void remove_tmp(const char *dir)
{
    static const char *files[] = {"bert_ids.i32",    "bert_mask.i32",  "bert_hidden.f32",
                                  "bert_pooled.f32", "vit_logits.f32", "stderr.txt"};
    char p[4200];
    for (size_t i = 0; i < QD_ARRAY_LEN(files); i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

/* Our outputs against the peer's (written to `dir` by its first pass); one line of text. */
static void check_same(bench_model *x, const char *dir, char *buf, size_t cap)
{
    const qd_model_config *c = qd_model_cfg(x->m);
    if (c->arch == QD_ARCH_BERT) {
        const int32_t *ids = x->b.ids, *mask = x->b.mask;
        int64_t n = (int64_t)x->b.B * x->b.T, nh = n * c->hidden;
        int32_t *pid = read_raw(dir, "bert_ids.i32", (size_t)n * 4),
                *pm = read_raw(dir, "bert_mask.i32", (size_t)n * 4);
        float *ph = read_raw(dir, "bert_hidden.f32", (size_t)nh * 4),
              *pp = read_raw(dir, "bert_pooled.f32", (size_t)x->b.B * c->hidden * 4);
        float *hid = qd_xmalloc((size_t)(nh * (c->layers + 1)) * sizeof(float));
        double dh = 0, dp = 0;
        int same = pid && pm && !memcmp(pid, ids, (size_t)n * 4) && !memcmp(pm, mask, (size_t)n * 4);
        if (qd_model_forward(x->m, &x->b, NULL, x->pooled, NULL, hid)) {
            fprintf(stderr, "%s\n", qd_errmsg());
            exit(1);
        }
        const float *last = hid + c->layers * nh;
        for (int64_t r = 0; ph && r < n; r++)
            for (int i = 0; mask[r] && i < c->hidden; i++)
                dh = fmax(dh, fabs((double)last[r * c->hidden + i] - ph[r * c->hidden + i]));
        for (int i = 0; pp && i < x->b.B * c->hidden; i++) dp = fmax(dp, fabs((double)x->pooled[i] - pp[i]));
        snprintf(buf, cap,
                 "%s: token ids and mask %s; last hidden state at real tokens max|diff| %.2g; pooler output %.2g\n",
                 x->name, same ? "identical" : "DIFFER", ph ? dh : NAN, pp ? dp : NAN);
        if (!same || !ph || !pp || !(dh <= 1e-3) || !(dp <= 1e-4))
            fprintf(stderr, "warning: PyTorch computed something else for BERT\n");
        free(pid);
        free(pm);
        free(ph);
        free(pp);
        free(hid);
    } else {
        float *pl = read_raw(dir, "vit_logits.f32", (size_t)x->b.B * c->num_labels * 4);
        double d = 0;
        for (int i = 0; pl && i < x->b.B * c->num_labels; i++) d = fmax(d, fabs((double)x->logits[i] - pl[i]));
        snprintf(buf, cap, "%s: logits max|diff| %.2g\n", x->name, pl ? d : NAN);
        if (!pl || !(d <= 1e-3)) fprintf(stderr, "warning: PyTorch computed something else for the ViT\n");
        free(pl);
    }
}

/* ---- main ------------------------------------------------------------------------------- */

/* The BERT row of the table: its model and its batch of SST-2 sentences. 0, or 1 after a message. */
static int add_bert(bench_model *x, const char *bert_dir, const char *tsv, int32_t *ids, int32_t *tt, int32_t *mask,
                    int *real)
{
    memset(x, 0, sizeof *x);
    x->name = "BERT all-MiniLM-L6-v2";
    if (bert_inputs(bert_dir, tsv, ids, tt, mask, real)) return 1;
    if (qd_model_load(bert_dir, &x->m)) {
        fprintf(stderr, "%s\n", qd_errmsg());
        return 1;
    }
    x->b = (qd_batch){.B = BERT_B, .T = BERT_T, .ids = ids, .type_ids = tt, .mask = mask};
    x->items = BERT_B * BERT_T;
    x->unit = "tokens/s";
    x->pooled = qd_xmalloc((size_t)BERT_B * qd_model_cfg(x->m)->hidden * sizeof(float));
    return 0;
}

/* The ViT row: its model and a batch of the reference images repeated. 0, or 1 after a message. */
static int add_vit(bench_model *x, const char *vit_dir, const char *vit_ref, qd_checkpoint **ref, float **pix_out)
{
    memset(x, 0, sizeof *x);
    x->name = "ViT vit-mnist-tiny";
    if (qd_model_load(vit_dir, &x->m)) {
        fprintf(stderr, "%s\n", qd_errmsg());
        return 1;
    }
    const qd_model_config *c = qd_model_cfg(x->m);
    if (qd_ckpt_open(vit_ref, ref)) {
        fprintf(stderr, "%s\n", qd_errmsg());
        return 1;
    }
    int i = qd_ckpt_find(*ref, "pixel_values");
    const int64_t per = (int64_t)c->channels * c->image_h * c->image_w;
    const void *raw;
    if (i < 0 || qd_ckpt_tensor(*ref, i)->numel % per || qd_ckpt_raw(*ref, i, &raw)) {
        fprintf(stderr, "%s: no usable pixel_values\n", vit_ref);
        return 1;
    }
    int64_t n = (int64_t)(qd_ckpt_tensor(*ref, i)->numel / per);
    float *pix = *pix_out = qd_xmalloc((size_t)(VIT_B * per) * sizeof(float));
    for (int k = 0; k < VIT_B; k++)
        memcpy(pix + k * per, (const float *)raw + (k % n) * per, (size_t)per * sizeof(float));
    x->b = (qd_batch){.B = VIT_B, .T = qd_model_tokens(x->m, 0), .pixels = pix};
    x->items = VIT_B;
    x->unit = "images/s";
    x->logits = qd_xmalloc((size_t)VIT_B * c->num_labels * sizeof(float));
    return 0;
}

/* Starts bench/forward_torch.py in --serve mode with the models present (vit_dir NULL: no ViT);
 * its facts, or NULL (errf: the file holding its stderr). */
static cJSON *launch_peer(peer *pr, const char *py, const char *bert_dir, const char *tsv, const char *vit_dir,
                          const char *vit_ref, const char *tmpd, char *errf, size_t errcap)
{
    char script[4200], sw[16], num[3][16];
    const char *se = getenv("QD_SOURCE_DIR");
    snprintf(script, sizeof script, "%s/bench/forward_torch.py", se && *se ? se : QD_BENCH_SOURCE_DIR);
    snprintf(errf, errcap, "%s/stderr.txt", tmpd);
    snprintf(num[0], sizeof num[0], "%d", BERT_T);
    snprintf(num[1], sizeof num[1], "%d", BERT_B);
    snprintf(num[2], sizeof num[2], "%d", VIT_B);
    snprintf(sw, sizeof sw, "--serve");
    char *args[24];
    int na = 0;
    args[na++] = (char *)py;
    args[na++] = script;
    args[na++] = sw;
    args[na++] = "--out-dir";
    args[na++] = (char *)tmpd;
    args[na++] = "--seq";
    args[na++] = num[0];
    args[na++] = "--bert-batch";
    args[na++] = num[1];
    args[na++] = "--vit-batch";
    args[na++] = num[2];
    if (bert_dir) {
        args[na++] = "--bert-dir";
        args[na++] = (char *)bert_dir;
        args[na++] = "--sst2";
        args[na++] = (char *)tsv;
    }
    if (vit_dir) {
        args[na++] = "--vit-dir";
        args[na++] = (char *)vit_dir;
        args[na++] = "--vit-ref";
        args[na++] = (char *)vit_ref;
    }
    args[na] = NULL;
    return peer_start(pr, py, args, errf);
}

/* The table: ours (and PyTorch's where it ran) per model, then the peer's agreement. */
static void print_table(bench_model *bm, int nbm, peer *p, const cJSON *facts, const char *py, const timing *theirs,
                        const int *have_theirs, double peak, int bert, int real, const char *tmpd)
{
    printf(
        "\nFP32 forward, 1 rank, 1 thread; %d warm-up + %d timed passes%s; OpenBLAS sgemm 1024^3 = %.1f GFLOP/s (%s)\n",
        g_warmup, g_runs, p ? ", alternating with PyTorch's" : "", peak, openblas_get_config());
    if (p) {
        const cJSON *be = cJSON_GetObjectItem(facts, "bert");
        const char *tv = cJSON_GetStringValue(cJSON_GetObjectItem(facts, "torch")),
                   *bl = cJSON_GetStringValue(cJSON_GetObjectItem(facts, "blas"));
        const char *trv = be ? cJSON_GetStringValue(cJSON_GetObjectItem(be, "transformers")) : NULL;
        const char *at = be ? cJSON_GetStringValue(cJSON_GetObjectItem(be, "attn")) : NULL;
        const cJSON *th = cJSON_GetObjectItem(facts, "threads");
        printf("PyTorch %s (%s BLAS, %d thread; %s)%s%s%s%s; ViT: the same model in plain torch, sdpa attention\n",
               tv ? tv : "?", bl ? bl : "?", cJSON_IsNumber(th) ? th->valueint : 0, py,
               be ? "; BERT: transformers " : "", trv ? trv : "", be ? " BertModel, attention " : "", at ? at : "");
    }
    if (bert)
        printf("BERT input: the first %d SST-2 dev sentences, padded to %d: %d tokens per pass, %d real (%.1f%%), all "
               "counted\n",
               BERT_B, BERT_T, BERT_B * BERT_T, real, 100.0 * real / (BERT_B * BERT_T));
    printf("\n%-22s %-6s %8s %8s %11s %6s %7s %6s", "model", "batch", "best ms", "med ms", "per s", "GFLOP", "GFLOP/s",
           "%sgemm");
    if (p) printf(" | %8s %8s %11s %7s | %7s %7s", "torch ms", "med ms", "per s", "GFLOP/s", "ours/pt", "median");
    printf("\n");
    for (int k = 0; k < nbm; k++) {
        bench_model *x = &bm[k];
        char batch[32];
        snprintf(batch, sizeof batch, qd_model_cfg(x->m)->arch == QD_ARCH_BERT ? "%dx%d" : "%d", x->b.B, x->b.T);
        double gf = x->flops / x->ours.best / 1e9;
        printf("%-22s %-6s %8.1f %8.1f %11.0f %6.2f %7.1f %5.0f%%", x->name, batch, ms(x->ours.best),
               ms(x->ours.median), x->items / x->ours.best, x->flops / 1e9, gf, 100 * gf / peak);
        if (have_theirs[k])
            printf(" | %8.1f %8.1f %11.0f %7.1f | %6.2fx %6.2fx", ms(theirs[k].best), ms(theirs[k].median),
                   x->items / theirs[k].best, x->flops / theirs[k].best / 1e9, theirs[k].best / x->ours.best,
                   theirs[k].median / x->ours.median);
        printf("   %s\n", x->unit);
    }
    printf("(per s: %s;%s GFLOP counts every Linear and Q K^T, P V)\n",
           nbm == 2 ? "tokens/s for BERT, images/s for the ViT" : bm[0].unit,
           p ? " ours/pt: PyTorch's time over ours, > 1 = ours faster;" : "");
    for (int k = 0; k < nbm; k++) {
        printf("%s: CPU time / wall time %.2f", bm[k].name, bm[k].ours.cpu_per_wall);
        if (have_theirs[k]) printf(" (PyTorch %.2f)", theirs[k].cpu_per_wall);
        printf(", page faults per pass %.0f", bm[k].ours.faults);
        if (have_theirs[k]) printf(" (PyTorch %.0f)", theirs[k].faults);
        printf("\n");
    }
    printf(
        "(CPU/wall 1.00 = one thread never preempted; lower = the machine was busy, best-of is the figure to trust)\n");
    if (p) {
        printf("\nsame computation:\n");
        for (int k = 0; k < nbm; k++) {
            char buf[512];
            check_same(&bm[k], tmpd, buf, sizeof buf);
            printf("  %s", buf);
        }
    }
}

/* What-if: malloc keeps what it frees, so the per-block scratch stays mapped (last, since it changes
 * the process's malloc settings for good). */
static void whatif_malloc(bench_model *bm, int nbm, peer *p, const int *have_theirs)
{
    mallopt(M_MMAP_THRESHOLD, 512 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    printf("\nWhat-if: freed scratch kept mapped (mallopt M_MMAP_THRESHOLD 512 MiB, M_TRIM_THRESHOLD 1 GiB)\n");
    for (int k = 0; k < nbm; k++) {
        const char *key = qd_model_cfg(bm[k].m)->arch == QD_ARCH_BERT ? "bert" : "vit";
        timing was = bm[k].ours, th;
        measure(&bm[k], have_theirs[k] ? p : NULL, key, &th);
        printf("  %-22s best %.1f ms (was %.1f), median %.1f ms (was %.1f), page faults per pass %.0f (was %.0f)",
               bm[k].name, ms(bm[k].ours.best), ms(was.best), ms(bm[k].ours.median), ms(was.median), bm[k].ours.faults,
               was.faults);
        if (have_theirs[k]) printf("; ours/PyTorch %.2fx", th.best / bm[k].ours.best);
        printf("\n");
    }
}

int main(int argc, char **argv)
{
    int use_torch = 1, do_profile = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            g_runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--warmup") && i + 1 < argc)
            g_warmup = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-torch"))
            use_torch = 0;
        else if (!strcmp(argv[i], "--no-profile"))
            do_profile = 0;
        else {
            fprintf(stderr, "usage: %s [--runs N] [--warmup N] [--no-torch] [--no-profile]\n", argv[0]);
            return 2;
        }
    }
    if (g_runs < 1) g_runs = 1;
    if (g_warmup < 0) g_warmup = 0;
    openblas_set_num_threads(1);
    signal(SIGPIPE, SIG_IGN);

    const char *models =
        getenv("QD_MODELS_DIR") && *getenv("QD_MODELS_DIR") ? getenv("QD_MODELS_DIR") : QD_BENCH_MODELS_DIR;
    char tsv[4200], vit_dir[4200], vit_ref[4200];
    snprintf(tsv, sizeof tsv, "%s/data/sst2/dev.tsv", models);
    snprintf(vit_dir, sizeof vit_dir, "%s/vit-mnist-tiny", models);
    snprintf(vit_ref, sizeof vit_ref, "%s/reference/vit-forward-reference.safetensors", models);
    const char *bert_dir = qd_test_bert_dir();
    struct stat st;
    if (!bert_dir) {
        printf("BERT: skipped: no all-MiniLM-L6-v2 checkpoint (run deploy/fetch-models.sh or set QD_BERT_DIR)\n");
    } else if (stat(tsv, &st) != 0) {
        printf("BERT: skipped: %s is missing\n", tsv);
        bert_dir = NULL;
    }
    int have_vit = stat(vit_dir, &st) == 0 && stat(vit_ref, &st) == 0;
    if (!have_vit) printf("ViT: skipped: %s or %s is missing\n", vit_dir, vit_ref);
    if (!bert_dir && !have_vit) return 0;

    double peak0 = sgemm_peak();
    bench_model bm[2];
    int nbm = 0;
    int32_t ids[BERT_B * BERT_T], tt[BERT_B * BERT_T], mask[BERT_B * BERT_T];
    int real = 0;
    qd_checkpoint *ref = NULL;
    float *pix = NULL;

    if (bert_dir) {
        if (add_bert(&bm[nbm], bert_dir, tsv, ids, tt, mask, &real)) return 1;
        nbm++;
    }
    if (have_vit) {
        if (add_vit(&bm[nbm], vit_dir, vit_ref, &ref, &pix)) return 1;
        nbm++;
    }

    /* the peer */
    peer pr = {0}, *p = NULL;
    cJSON *facts = NULL;
    char why[4600] = "", tmpd[] = "/tmp/qd-bench-forward-XXXXXX", errf[4300] = "";
    const char *py = use_torch ? torch_python() : NULL;
    if (!use_torch)
        snprintf(why, sizeof why, "not run (--no-torch)");
    else if (!py)
        snprintf(why, sizeof why,
                 "no Python that imports torch, transformers, safetensors and numpy (set QD_TORCH_PYTHON)");
    else if (!mkdtemp(tmpd))
        snprintf(why, sizeof why, "mkdtemp failed");
    else if ((facts = launch_peer(&pr, py, bert_dir, tsv, have_vit ? vit_dir : NULL, vit_ref, tmpd, errf, sizeof errf)))
        p = &pr;
    else
        snprintf(why, sizeof why, "%s bench/forward_torch.py did not start (its stderr: %s)", py, errf);
    if (!p && use_torch)
        printf("PyTorch not available: %s; figures against the sgemm ceiling only\n", why);
    else if (!p)
        printf("PyTorch not run (--no-torch); figures against the sgemm ceiling only\n");

    timing theirs[2] = {{0}};
    int have_theirs[2] = {0, 0};
    for (int k = 0; k < nbm; k++) {
        const char *key = qd_model_cfg(bm[k].m)->arch == QD_ARCH_BERT ? "bert" : "vit";
        int rc = measure(&bm[k], p, key, &theirs[k]);
        have_theirs[k] = p && rc == 0;
        if (p && !have_theirs[k]) printf("PyTorch stopped answering during %s (its stderr: %s)\n", bm[k].name, errf);
        bm[k].flops = forward_flops(bm[k].m, bm[k].b.B, bm[k].b.T);
    }
    double peak = fmax(peak0, sgemm_peak());

    print_table(bm, nbm, p, facts, py, theirs, have_theirs, peak, bert_dir != NULL, real, tmpd);

    if (do_profile)
        for (int k = 0; k < nbm; k++)
            profile_model(&bm[k], have_theirs[k] ? p : NULL,
                          qd_model_cfg(bm[k].m)->arch == QD_ARCH_BERT ? "bert" : "vit");

    if (do_profile) whatif_malloc(bm, nbm, p, have_theirs);

    if (p) peer_stop(p);
    int all = p != NULL;
    for (int k = 0; k < nbm; k++) all &= have_theirs[k];
    if (all) remove_tmp(tmpd);
    cJSON_Delete(facts);
    for (int k = 0; k < nbm; k++) {
        qd_model_free(bm[k].m);
        free(bm[k].pooled);
        free(bm[k].logits);
    }
    free(pix);
    if (ref) qd_ckpt_close(ref);
    return 0;
}
