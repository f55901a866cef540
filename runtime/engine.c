/* runtime/engine.c — the inference engine (see engine.h). */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/gemm.h"
#include "kernels/infer.h"
#include "kernels/kernels.h"
#include "runtime/engine.h"
#include "runtime/workers.h"

/* rows below which a row-wise piece (quantization, LayerNorm, GELU) runs on the calling thread
 * alone: splitting a sentence's 30 rows costs more in hand-off than it saves */
#define ROWS_PER_TASK 32

/* A 2:4 Linear's call of fewer rows than qd_gemm_u24_rows() runs the 2:4 kernel
 * (kernels/gemm_u8_24.h), others the dense int8 GEMM: one thread, BERT-base shapes
 * (build/bench/bench_gemm_u8_24), where the 2:4 version beats the dense GEMM of its own table: the
 * AVX-512 VNNI + VBMI one is 1.8x the dense one at 1 row, 1.3x at 4, even at 8 and 0.4x from 16
 * rows, where the dense GEMM takes AMX tiles (8); the AVX-VNNI one 2.8x at 1 row, 1.1x at 32,
 * 0.95x at 48 (40); the AVX2 one 4.5x at 1 row, 1.4x at 8, 0.85x at 12 (12). The environment variable
 * QD_ENGINE_24_ROWS sets another bound (0: never the 2:4 kernel; a large one: always; tests and
 * bench/eval_24.sh compare the two). */

typedef enum { R_QKV = 0, R_OUT_ATT, R_FFN_IN, R_FFN_OUT, R_PATCH } lin_role;
static const char *role_name[] = {"q,k,v", "attention output", "FFN in", "FFN out", "patch embedding"};

typedef struct {
    qd_ql_kind kind;
    int64_t N, K;
    const qd_gemm_w8 *w8;
    const qd_gemm_u24 *w24; /* 2:4 Linears: the compact form, or NULL */
    const qd_gemm_w4 *w4;
    const qd_gemm_wf *wf;
    qd_gemm_wf *own; /* float Linears packed here from the model */
    float *inv_s;    /* [K] 1 / SmoothQuant factor, or NULL */
    int prof;        /* profile row of its GEMM */
} elin;

typedef struct {
    char name[80];
    double s, cpu, ops;
    int64_t calls;
} prow;

enum { P_EMBED = 0, P_QUANT, P_OUTLIER, P_SCORES, P_SOFTMAX, P_CONTEXT, P_LAYERNORM, P_ACT, P_HEAD, P_FIXED };
static const char *fixed_name[P_FIXED] = {
    "embeddings",      "activation quantization", "outlier columns (float)", "attention scores (Q K^T)",
    "softmax",         "attention context (P V)", "LayerNorm (+ residual)",  "activation (GELU/ReLU)",
    "pooling and head"};

/* What one forward pass works in: buffers (grown on demand, kept between runs), the layout of the
 * batch in hand, statistics. The engine has one per thread: large batches run their sub-batches in
 * parallel, each on its own workspace with its regions on that thread alone. */
typedef struct ws {
    int serial; /* regions run on the calling thread (a sub-batch of a parallel run) */
    int64_t cap_rows;
    float *h, *x1, *tb, *qkv, *ctx, *inter, *xs;
    uint8_t *aq;
    float *as;
    int64_t cap_att, att_slots;
    float *att; /* per slot: scores [T][t16] and K transposed [d][t16] */
    int64_t cap_pix;
    float *pix;
    float *cm, *colmax, *wcol, *xcol;
    int *cols;
    int64_t cap_wcol;
    int cap_seq;
    int64_t *off;
    int *len;
    int32_t *pos;
    float *hd; /* the head's rows */
    int64_t cap_hd;
    float *hpad; /* [B, T, hidden]: the padded hidden state of the model's own stages */
    int64_t cap_hpad;
    /* the batch in hand */
    int B, Tmax;
    int64_t R;
    /* statistics (profile rows indexed as the engine's) */
    double outl_cols, outl_calls;
    double ps[64], pcpu[64], pops[64];
    int64_t pcalls[64];
    double thr_time[256][3]; /* profile: per thread, attention steps */
} ws;

struct qd_engine {
    const qd_model *m;
    qd_model_config c;
    const qd_qmodel *q;
    qd_engine_opts o;
    qd_model_tensors tw;
    const float **ln1g, **ln1b, **ln2g, **ln2b, **ls1, **ls2;
    int *set;   /* the linear set of each block */
    int native; /* the engine runs the blocks itself (else the model's stages with its Linears) */
    elin *lin;
    int nlin;
    const qd_qembed *qemb;
    qd_gemm_wf *patch, *pool_w, *pre_w, *out_w, *dist_w, *proj_w; /* float products outside the encoder */
    qd_gemm_wf *emb_proj; /* ELECTRA, ALBERT: the embeddings' projection to the hidden width */
    int32_t *bucket;      /* MPNet: the bucket of relative position rel at bucket[rel + max_position] */
    char path[160];       /* qd_engine_path of a native forward */
    qd_workers *pool;
    int64_t A, H, FF, d; /* attention width, hidden, intermediate, head size */
    int64_t kmax;
    ws *w;        /* [threads] */
    int *rc;      /* status of each sub-batch of a parallel run */
    int *owner;   /* the thread that runs each sub-batch of a parallel run */
    int64_t *tok; /* its tokens (rows), by which the sub-batches are shared out */
    int64_t cap_rc;
    char prof_name[64][80];
    int nprof;
    char isa[QD_QL_KINDS_][96];
    int64_t rows24; /* 2:4 Linears: calls of fewer rows run the 2:4 kernel */
};

/* ---- helpers ---------------------------------------------------------------------------------- */

static void *grow(void *p, size_t bytes)
{ /* 64-byte aligned, contents not kept */
    free(p);
    void *n = aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
    QD_ASSERT(n != NULL);
    return n;
}

static int prof_row(qd_engine *e, const char *name)
{
    for (int i = 0; i < e->nprof; i++)
        if (!strcmp(e->prof_name[i], name)) return i;
    QD_ASSERT(e->nprof < (int)QD_ARRAY_LEN(e->prof_name));
    snprintf(e->prof_name[e->nprof], sizeof e->prof_name[e->nprof], "%s", name);
    return e->nprof++;
}

/* the calling thread's CPU time: with other jobs on the machine, wall time counts them too */
static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct {
    double wall, cpu;
} stamp;

static inline stamp tick(const qd_engine *e)
{
    stamp t = {0, 0};
    if (e->o.profile) t.wall = qd_now(), t.cpu = cpu_now();
    return t;
}
static inline void tock(const qd_engine *e, ws *w, int row, stamp t0, double ops)
{
    if (!e->o.profile) return;
    w->ps[row] += qd_now() - t0.wall;
    w->pcpu[row] += cpu_now() - t0.cpu;
    w->pcalls[row]++;
    w->pops[row] += ops;
}

/* a parallel region: on the pool, or on this thread for the sub-batch of a parallel run */
static void prun(qd_engine *e, ws *w, int64_t n, qd_workers_task task, void *arg)
{
    if (w->serial)
        for (int64_t i = 0; i < n; i++) task(arg, i, 0);
    else
        qd_workers_run(e->pool, n, task, arg);
}

static const char *kind_isa(qd_ql_kind k)
{
    const char *isa = qd_kernels_isa();
    const int ref = !strcmp(isa, "ref"), amx = !strcmp(isa, "amx"), v512 = !strcmp(isa, "avx512vnni"),
              v256 = !strcmp(isa, "avxvnni"), z = amx || v512 || !strcmp(isa, "avx512");
    if (ref) return "scalar reference";
    switch (k) {
    case QD_QL_INT8_24:
        if (qd_gemm_u24_isa()) /* the 2:4 version and the row bound follow in qd_engine_create */
            return amx    ? "2:4 %s below %lld rows, else dense amx tiles"
                   : v512 ? "2:4 %s below %lld rows, else dense avx512-vnni"
                   : v256 ? "2:4 %s below %lld rows, else dense avx-vnni"
                          : "2:4 %s below %lld rows, else dense avx2 vpmaddwd";
        return amx    ? "amx-int8 tiles, dense: no 2:4 kernel for this table"
               : v512 ? "avx512-vnni, dense: no 2:4 kernel for this table"
               : v256 ? "avx-vnni, dense: no 2:4 kernel for this table"
                      : "avx2 vpmaddwd, dense: no 2:4 kernel for this table";
    case QD_QL_INT8:
    case QD_QL_CB_INT8:
        return amx    ? "amx-int8 tiles (avx512-vnni below 16 rows)"
               : v512 ? "avx512-vnni"
               : v256 ? "avx-vnni"
                      : "avx2 vpmaddwd";
    case QD_QL_INT4_S8: return amx || v512 ? "avx512-vnni" : v256 ? "avx-vnni" : "avx2 vpmaddubsw";
    case QD_QL_INT4_F32: return "avx2 fma (dequantized blocks)";
    default: return z ? "avx512 fma" : "avx2 fma";
    }
}

/* ---- creation --------------------------------------------------------------------------------- */

/* The blocks the engine runs itself: post-LN text encoders (ELECTRA's and ALBERT's narrower
 * embeddings projected to the hidden width, ALBERT's shared layers through the block sets,
 * MPNet's relative position buckets included), pre-LN vision encoders (layer scales, registers,
 * CLIP's pre-LayerNorm, BEiT's relative position tables included). Structurally pruned models run
 * the model's own stages with the engine's Linears. */
static int native_model(const qd_model_config *c, const qd_model_tensors *t)
{
    if (c->pruned_heads) return 0; /* blocks of different head counts: the model's stages run them */
    if (c->arch == QD_ARCH_BERT)
        return c->norm == QD_NORM_POST && !c->layer_scale && (!t->emb_proj_W || c->embed_size <= c->hidden);
    return c->norm == QD_NORM_PRE;
}

/* head inputs the engine gathers itself from the ragged rows; others go through the model */
static int native_src(qd_head_src s) { return s == QD_SRC_FIRST || s == QD_SRC_FIRST_NORM || s == QD_SRC_POOLER; }

int qd_engine_create(const qd_model *m, const qd_qmodel *q, const qd_engine_opts *o, qd_engine **out)
{
    *out = NULL;
    /* The engine runs its own threads; OpenBLAS's pool (outlier columns' rank-1 updates, the
     * model's stages on the fallback path) would put a hand-off and a wake-up in every small call:
     * on a loaded machine all-mpnet-base-v2's outlier class took 1.4 s of wall time per sentence
     * for 4.7 ms of CPU. */
    openblas_set_num_threads(1);
    qd_engine *e = qd_xcalloc(1, sizeof *e);
    e->m = m;
    e->c = *qd_model_cfg(m);
    e->q = q;
    e->o = *o;
    e->o.threads = QD_MAX(o->threads, 1);
    qd_model_get_tensors(m, &e->tw);
    const qd_model_config *c = &e->c;
    e->H = c->hidden;
    e->FF = c->intermediate;
    e->d = c->head_size;
    e->A = (int64_t)c->heads * c->head_size;
    e->ln1g = qd_xcalloc((size_t)c->layers, sizeof *e->ln1g);
    e->ln1b = qd_xcalloc((size_t)c->layers, sizeof *e->ln1b);
    e->ln2g = qd_xcalloc((size_t)c->layers, sizeof *e->ln2g);
    e->ln2b = qd_xcalloc((size_t)c->layers, sizeof *e->ln2b);
    e->ls1 = qd_xcalloc((size_t)c->layers, sizeof *e->ls1);
    e->ls2 = qd_xcalloc((size_t)c->layers, sizeof *e->ls2);
    e->set = qd_xcalloc((size_t)c->layers, sizeof *e->set);
    for (int k = 0; k < c->layers; k++) {
        qd_model_block_norms(m, k, &e->ln1g[k], &e->ln1b[k], &e->ln2g[k], &e->ln2b[k]);
        qd_model_block_scales(m, k, &e->ls1[k], &e->ls2[k]);
        e->set[k] = qd_model_block_set(m, k);
    }
    e->native = native_model(c, &e->tw);
    for (int k = 0; k < P_FIXED; k++) prof_row(e, fixed_name[k]);
    const char *r24 = getenv("QD_ENGINE_24_ROWS");
    e->rows24 = r24 && *r24 ? atoll(r24) : qd_gemm_u24_rows();
    for (int k = 0; k < QD_QL_KINDS_; k++) snprintf(e->isa[k], sizeof e->isa[k], "%s", kind_isa((qd_ql_kind)k));
    if (qd_gemm_u24_isa()) /* "%s" and "%lld" in the 2:4 line */
        snprintf(e->isa[QD_QL_INT8_24], sizeof e->isa[QD_QL_INT8_24], kind_isa(QD_QL_INT8_24), qd_gemm_u24_isa(),
                 (long long)e->rows24);
    e->w = qd_xcalloc((size_t)e->o.threads, sizeof *e->w);
    int rc = qd_workers_create(e->o.threads, &e->pool);
    e->nlin = qd_model_num_linears(m);
    e->lin = qd_xcalloc((size_t)e->nlin, sizeof *e->lin);
    for (int li = 0; li < e->nlin && !rc; li++) {
        const qd_linear *L = qd_model_linear(m, li);
        elin *el = &e->lin[li];
        const qd_qlinear *ql = q ? qd_qmodel_linear(q, li) : NULL;
        el->N = L->out;
        el->K = L->in;
        /* codebooks run as what they were packed into: int8 weights or float (qmodel.c) */
        el->kind = !ql                                                      ? QD_QL_FLOAT
                   : ql->kind == QD_QL_CB_INT8 || ql->kind == QD_QL_INT8_24 ? QD_QL_INT8
                   : ql->kind == QD_QL_LUT                                  ? QD_QL_DEQUANT
                                                                            : ql->kind;
        e->kmax = QD_MAX(e->kmax, el->K);
        if (ql) {
            el->w8 = ql->w8;
            el->w24 = ql->w24;
            el->w4 = ql->w4;
            el->wf = ql->wf;
            if (ql->smooth) {
                el->inv_s = qd_xmalloc((size_t)el->K * sizeof(float));
                for (int64_t k = 0; k < el->K; k++) el->inv_s[k] = 1.0f / ql->smooth[k];
            }
        }
        if (el->kind == QD_QL_FLOAT && !el->wf) {
            rc = qd_gemm_wf_create(L->W, el->N, el->K, el->K, L->b, &el->own);
            el->wf = el->own;
        }
        char name[80];
        snprintf(name, sizeof name, "GEMM %s K=%lld N=%lld (%s)",
                 el->kind == QD_QL_INT8      ? "int8"
                 : el->kind == QD_QL_INT4_S8 ? "int4"
                                             : "fp32",
                 (long long)el->K, (long long)el->N,
                 role_name[L->kind <= QD_LIN_V       ? R_QKV
                           : L->kind == QD_LIN_O     ? R_OUT_ATT
                           : L->kind == QD_LIN_INTER ? R_FFN_IN
                                                     : R_FFN_OUT]);
        el->prof = prof_row(e, name);
    }
    if (!rc && e->native && c->arch == QD_ARCH_VIT) {
        const int64_t pk = (int64_t)c->channels * c->patch_h * c->patch_w;
        rc = qd_gemm_wf_create(e->tw.patch_W, e->H, pk, pk, e->tw.patch_b, &e->patch);
    }
    /* the heads through the same GEMM: a row's result then does not depend on the batch */
    const int64_t L = c->num_labels, H = e->H;
    const qd_model_tensors *t = &e->tw;
    if (!rc && e->native && c->relpos == QD_RELPOS_BUCKETS) {
        e->bucket = qd_xmalloc((size_t)(2 * c->max_position + 1) * sizeof *e->bucket);
        for (int r = -c->max_position; r <= c->max_position; r++)
            e->bucket[r + c->max_position] = qd_model_rel_bucket(r);
    }
    if (e->native)
        snprintf(e->path, sizeof e->path, "engine forward (%s%s%s)",
                 c->arch == QD_ARCH_BERT ? "ragged rows, post-LN text blocks" : "pre-LN vision blocks",
                 t->emb_proj_W ? ", embeddings projected to the hidden width" : "",
                 c->relpos == QD_RELPOS_BUCKETS ? ", relative position buckets"
                 : c->relpos == QD_RELPOS_TABLE ? ", relative position bias table"
                                                : "");
    if (!rc && e->native && t->emb_proj_W)
        rc = qd_gemm_wf_create(t->emb_proj_W, H, c->embed_size, c->embed_size, t->emb_proj_b, &e->emb_proj);
    if (!rc && e->native) {
        if (t->pool_W) rc = qd_gemm_wf_create(t->pool_W, H, H, H, t->pool_b, &e->pool_w);
        if (!rc && t->proj_W) rc = qd_gemm_wf_create(t->proj_W, c->embedding_dim, H, H, NULL, &e->proj_w);
        if (!rc && L && native_src(t->head_src)) {
            if (t->head_pre_W) rc = qd_gemm_wf_create(t->head_pre_W, H, H, H, t->head_pre_b, &e->pre_w);
            if (!rc) rc = qd_gemm_wf_create(t->head_out_W, L, H, H, t->head_out_b, &e->out_w);
            if (!rc && t->head_dist_W) rc = qd_gemm_wf_create(t->head_dist_W, L, H, H, t->head_dist_b, &e->dist_w);
        }
    }
    if (q) { /* the file's quantized embeddings replace the float ones */
        e->qemb = qd_qmodel_embedding(q);
        if (qd_qmodel_position_embedding(q)) e->tw.pos_emb = qd_qmodel_position_embedding(q);
        if (qd_qmodel_type_embedding(q)) e->tw.type_emb = qd_qmodel_type_embedding(q);
    }
    if (rc) {
        qd_engine_free(e);
        return rc;
    }
    *out = e;
    return QD_OK;
}

void qd_engine_free(qd_engine *e)
{
    if (!e) return;
    for (int i = 0; e->lin && i < e->nlin; i++) {
        qd_gemm_wf_free(e->lin[i].own);
        free(e->lin[i].inv_s);
    }
    qd_gemm_wf_free(e->patch);
    qd_gemm_wf_free(e->emb_proj);
    free(e->bucket);
    qd_gemm_wf_free(e->pool_w);
    qd_gemm_wf_free(e->pre_w);
    qd_gemm_wf_free(e->out_w);
    qd_gemm_wf_free(e->dist_w);
    qd_gemm_wf_free(e->proj_w);
    qd_workers_free(e->pool);
    free(e->lin);
    free(e->ln1g), free(e->ln1b), free(e->ln2g), free(e->ln2b), free(e->ls1), free(e->ls2), free(e->set);
    for (int t = 0; e->w && t < e->o.threads; t++) {
        ws *w = &e->w[t];
        free(w->h), free(w->x1), free(w->tb), free(w->qkv), free(w->ctx), free(w->inter), free(w->xs);
        free(w->aq), free(w->as), free(w->att), free(w->pix);
        free(w->cm), free(w->colmax), free(w->wcol), free(w->xcol), free(w->cols);
        free(w->off), free(w->len), free(w->pos), free(w->hd), free(w->hpad);
    }
    free(e->w);
    free(e->rc), free(e->owner), free(e->tok);
    free(e);
}

/* buffers for R rows, sequences up to Tmax tokens */
static void ensure(const qd_engine *e, ws *w, int64_t R, int Tmax, int B)
{
    const int64_t slots = w->serial ? 1 : e->o.threads;
    if (R > w->cap_rows) {
        const int64_t r = R + R / 4 + 16;
        w->h = grow(w->h, (size_t)(r * e->H) * sizeof(float));
        w->x1 = grow(w->x1, (size_t)(r * e->H) * sizeof(float));
        w->tb = grow(w->tb, (size_t)(r * e->H) * sizeof(float));
        w->qkv = grow(w->qkv, (size_t)(r * 3 * e->A) * sizeof(float));
        w->ctx = grow(w->ctx, (size_t)(r * e->A) * sizeof(float));
        w->inter = grow(w->inter, (size_t)(r * e->FF) * sizeof(float));
        w->xs = grow(w->xs, (size_t)(r * e->kmax) * sizeof(float));
        w->aq = grow(w->aq, (size_t)(r * e->kmax));
        w->as = grow(w->as, (size_t)r * sizeof(float));
        w->pos = grow(w->pos, (size_t)r * sizeof(int32_t));
        w->xcol = grow(w->xcol, (size_t)(r * e->o.threads) * sizeof(float));
        w->cap_rows = r;
    }
    const int64_t t16 = (Tmax + 15) / 16 * 16, att = t16 * (Tmax + e->d) + 64;
    if (att > w->cap_att || slots > w->att_slots) { /* never shrinks: serial and split calls alternate */
        w->cap_att = QD_MAX(att, w->cap_att);
        w->att_slots = QD_MAX(slots, w->att_slots);
        w->att = grow(w->att, (size_t)(w->cap_att * w->att_slots) * sizeof(float));
    }
    if (B > w->cap_seq) {
        w->off = grow(w->off, (size_t)(B + 1) * sizeof(int64_t));
        w->len = grow(w->len, (size_t)B * sizeof(int));
        w->cap_seq = B;
    }
    if (!w->cm) {
        w->cm = grow(NULL, (size_t)e->kmax * sizeof(float));
        w->colmax = grow(NULL, (size_t)e->kmax * sizeof(float));
        w->cols = grow(NULL, (size_t)e->kmax * sizeof(int));
    }
}

/* ---- row-wise pieces ------------------------------------------------------------------------------ */

/* tasks of about ROWS_PER_TASK rows, at most a few per thread */
static int64_t row_tasks(const qd_engine *e, const ws *w, int64_t R)
{
    if (e->o.threads == 1 || w->serial || R < 2 * ROWS_PER_TASK) return 1;
    /* a multiple of the threads (197 rows in 7 tasks gave one of 2 threads 4 of them) */
    const int64_t T = e->o.threads, n = QD_MIN((R + ROWS_PER_TASK - 1) / ROWS_PER_TASK, T * 4);
    return QD_MAX(T, n / T * T);
}
static void task_rows(int64_t R, int64_t ntask, int64_t i, int64_t *r0, int64_t *r1)
{
    *r0 = R * i / ntask;
    *r1 = R * (i + 1) / ntask;
}

typedef struct {
    qd_engine *e;
    const float *x, *r, *g, *b;
    float *y, *sum;
    int64_t R, n, ld, ntask;
    float eps;
} ln_job;

static void ln_task(void *arg, int64_t i, int th)
{
    (void)th;
    ln_job *j = arg;
    int64_t r0, r1;
    task_rows(j->R, j->ntask, i, &r0, &r1);
    qd_layernorm_rows(j->x + r0 * j->ld, j->r ? j->r + r0 * j->ld : NULL, r1 - r0, j->n, j->ld, j->g, j->b, j->eps,
                      j->y + r0 * j->ld, j->sum ? j->sum + r0 * j->ld : NULL);
}

/* y = LN(x + r) (r may be NULL), sum = x + r when asked; rows of H */
static void layernorm(qd_engine *e, ws *w, const float *x, const float *r, const float *g, const float *b, float *y,
                      float *sum)
{
    const stamp t0 = tick(e);
    ln_job j = {e, x, r, g, b, y, sum, w->R, e->H, e->H, row_tasks(e, w, w->R), (float)e->c.ln_eps};
    prun(e, w, j.ntask, ln_task, &j);
    tock(e, w, P_LAYERNORM, t0, 0);
}

typedef struct {
    qd_act act;
    float *x;
    int64_t R, n, ntask;
} act_job;

static void act_task(void *arg, int64_t i, int th)
{
    (void)th;
    act_job *j = arg;
    int64_t r0, r1;
    task_rows(j->R, j->ntask, i, &r0, &r1);
    qd_activation(j->act, j->x + r0 * j->n, (r1 - r0) * j->n);
}

/* ---- Linears ---------------------------------------------------------------------------------- */

typedef struct {
    ws *w;
    const elin *L;
    const float *X; /* float input (float kinds) */
    int64_t ldx;
    const uint8_t *A; /* quantized input [R][K] */
    float *Y;
    int64_t ldy, R;
    int by_rows;
    int64_t chunk;  /* by columns: panels of 16 columns per task */
    int64_t rows24; /* the engine's rows24 */
    int64_t ntask;  /* by rows: tasks of about R / ntask rows, */
    int64_t mb;     /* cut at multiples of mb rows (a tile or microkernel block) */
} gemm_job;

/* the first row of task i of a split by rows: i R / ntask to the nearest block (197 rows in 16-row
 * tiles on 2 threads: 96 + 101; rounding every task up to whole tiles gave 112 + 85, 1.76x at best) */
static int64_t row_bound(const gemm_job *j, int64_t i)
{
    if (i >= j->ntask) return j->R;
    return QD_MIN(j->R, (i * j->R / j->ntask + j->mb / 2) / j->mb * j->mb);
}

static void gemm_task(void *arg, int64_t i, int th)
{
    (void)th;
    const gemm_job *j = arg;
    const elin *L = j->L;
    int64_t m0 = 0, m1 = j->R, n0 = 0, n1 = L->N;
    if (j->by_rows) {
        m0 = row_bound(j, i);
        m1 = row_bound(j, i + 1);
    } else {
        n0 = i * j->chunk * 16;
        n1 = QD_MIN(L->N, n0 + j->chunk * 16);
    }
    if (m0 >= m1 || n0 >= n1) return;
    float *Y = j->Y + m0 * j->ldy;
    switch (L->kind) {
    case QD_QL_INT8:
        if (L->w24 && m1 - m0 < j->rows24)
            qd_gemm_u8w24_f32(j->A + m0 * L->K, L->K, j->w->as + m0, m1 - m0, L->w24, n0, n1, Y, j->ldy);
        else
            qd_gemm_u8_f32(j->A + m0 * L->K, L->K, j->w->as + m0, m1 - m0, L->w8, n0, n1, Y, j->ldy);
        break;
    case QD_QL_INT4_S8:
        qd_gemm_u8w4_f32(j->A + m0 * L->K, L->K, j->w->as + m0, m1 - m0, L->w4, n0, n1, Y, j->ldy);
        break;
    case QD_QL_INT4_F32: qd_gemm_w4_f32(j->X + m0 * j->ldx, j->ldx, m1 - m0, L->w4, Y, j->ldy); break;
    default: qd_gemm_f32(j->X + m0 * j->ldx, j->ldx, m1 - m0, L->wf, n0, n1, Y, j->ldy); break;
    }
}

static void gemm(qd_engine *e, ws *w, const elin *L, const float *X, int64_t ldx, const uint8_t *A, float *Y,
                 int64_t ldy)
{
    const stamp t0 = tick(e);
    const int64_t R = w->R, T = w->serial ? 1 : e->o.threads, np = (L->N + 15) / 16;
    gemm_job j = {w, L, X, ldx, A, Y, ldy, R, 1, R, e->rows24, 1, 1};
    int64_t ntask = 1;
    if (T > 1) {
        /* many rows: a share of rows per thread cut at whole AMX tiles (float: the 8-row
         * microkernel); few rows (a sentence): output columns, so that each thread streams its own
         * share of the weights. The old 4-bit x float path takes rows. */
        if (R >= 32 * T || L->kind == QD_QL_INT4_F32) {
            j.mb = L->kind == QD_QL_INT4_F32 ? 1 : L->kind == QD_QL_FLOAT ? 8 : 16;
            j.ntask = ntask = T;
        } else {
            j.by_rows = 0;
            j.chunk = (np + T - 1) / T;
            if (np >= 6 * T) j.chunk = (j.chunk + 5) / 6 * 6; /* whole microkernel and tile blocks */
            ntask = (np + j.chunk - 1) / j.chunk;
        }
    }
    prun(e, w, ntask, gemm_task, &j);
    tock(e, w, L->prof, t0, 2.0 * (double)R * (double)L->K * (double)L->N);
}

typedef struct {
    ws *w;
    const float *X;
    int64_t ldx, K, ntask;
    const float *cm;
} quant_job;

static void quant_task(void *arg, int64_t i, int th)
{
    (void)th;
    quant_job *j = arg;
    int64_t r0, r1;
    task_rows(j->w->R, j->ntask, i, &r0, &r1);
    qd_quantize_rows_u8(j->X + r0 * j->ldx, r1 - r0, j->K, j->ldx, j->cm, j->w->as + r0, j->w->aq + r0 * j->K, j->K);
}

typedef struct {
    ws *w;
    const float *X; /* the input rows */
    int64_t ldx, N, no, ntask;
    const int *cols;
    const float *inv_s;
    const float *wcol; /* [no][N] */
    float *Y;
    int64_t ldy;
} outl_job;

/* Y[r0:r1] += x_c w_c^T for every outlier column c: one rank-1 update (BLAS sger) per column, the
 * column of inputs x_c (divided by the smoothing factor) gathered first */
static void outl_task(void *arg, int64_t i, int th)
{
    outl_job *j = arg;
    int64_t r0, r1;
    task_rows(j->w->R, j->ntask, i, &r0, &r1);
    float *xc = j->w->xcol + th * j->w->cap_rows;
    for (int64_t c = 0; c < j->no; c++) {
        const int k = j->cols[c];
        for (int64_t r = r0; r < r1; r++)
            xc[r - r0] = j->inv_s ? j->X[r * j->ldx + k] * j->inv_s[k] : j->X[r * j->ldx + k];
        cblas_sger(CblasRowMajor, (int)(r1 - r0), (int)j->N, 1.0f, xc, 1, j->wcol + c * j->N, 1, j->Y + r0 * j->ldy,
                   (int)j->ldy);
    }
}

/* The int8 input of linears [l0, l0 + nl) (one input group: the same X, the same smoothing):
 * outlier columns (when asked) and the u8 codes of the rest into w->aq / w->as. Returns the number
 * of outlier columns (in w->cols). */
static int64_t quantize_input(qd_engine *e, ws *w, const elin *L, const float *X, int64_t ldx)
{
    const int64_t K = L->K, R = w->R;
    stamp t0 = tick(e);
    int64_t no = 0;
    const float *cm = L->inv_s;
    if (e->o.outlier > 0) {
        float *mx = w->colmax;
        for (int64_t k = 0; k < K; k++) mx[k] = 0.0f;
        qd_col_absmax(X, R, K, ldx, L->inv_s, mx);
        for (int64_t k = 0; k < K; k++)
            if (mx[k] > e->o.outlier) w->cols[no++] = (int)k;
        w->outl_cols += (double)no;
        w->outl_calls += 1;
        if (no > 0) { /* the column multipliers: 0 takes a column out of the int8 product */
            for (int64_t k = 0; k < K; k++) w->cm[k] = L->inv_s ? L->inv_s[k] : 1.0f;
            for (int64_t c = 0; c < no; c++) w->cm[w->cols[c]] = 0.0f;
            cm = w->cm;
        }
        tock(e, w, P_OUTLIER, t0, 0);
        t0 = tick(e);
    }
    quant_job j = {w, X, ldx, K, row_tasks(e, w, R), cm};
    prun(e, w, j.ntask, quant_task, &j);
    tock(e, w, P_QUANT, t0, 0);
    return no;
}

/* the float product of the outlier columns, added to Y */
static void outlier_product(qd_engine *e, ws *w, const elin *L, const float *X, int64_t ldx, int64_t no, float *Y,
                            int64_t ldy)
{
    const stamp t0 = tick(e);
    if (no * L->N > w->cap_wcol) {
        w->cap_wcol = no * L->N;
        w->wcol = grow(w->wcol, (size_t)w->cap_wcol * sizeof(float));
    }
    for (int64_t c = 0; c < no; c++) {
        if (L->kind == QD_QL_INT8)
            qd_gemm_w8_column(L->w8, w->cols[c], w->wcol + c * L->N);
        else
            qd_gemm_w4_column(L->w4, w->cols[c], w->wcol + c * L->N);
    }
    outl_job j = {w, X, ldx, L->N, no, row_tasks(e, w, w->R), w->cols, L->inv_s, w->wcol, Y, ldy};
    prun(e, w, j.ntask, outl_task, &j);
    tock(e, w, P_OUTLIER, t0, 0);
}

static int same_smoothing(const elin *a, const elin *b)
{
    if (!a->inv_s || !b->inv_s) return !a->inv_s && !b->inv_s;
    return memcmp(a->inv_s, b->inv_s, (size_t)a->K * sizeof(float)) == 0;
}

/* Y[:, col0 + ...] = linears l0 .. l0 + nl - 1 of X (one input); outputs at column offsets
 * n_off[i] of Y (row stride ldy) */
static void linears(qd_engine *e, ws *w, int l0, int nl, const float *X, int64_t ldx, float *Y, int64_t ldy)
{
    int quantized = -1; /* the linear whose input sits in w->aq, or -1 */
    int64_t no = 0, col = 0;
    for (int i = 0; i < nl; i++) {
        const elin *L = &e->lin[l0 + i];
        float *y = Y + col;
        col += L->N;
        if (L->kind == QD_QL_INT8 || L->kind == QD_QL_INT4_S8) {
            if (quantized < 0 || !same_smoothing(&e->lin[quantized], L)) {
                no = quantize_input(e, w, L, X, ldx);
                quantized = l0 + i;
            }
            gemm(e, w, L, X, ldx, w->aq, y, ldy);
            if (no > 0) outlier_product(e, w, L, X, ldx, no, y, ldy);
        } else if (L->kind == QD_QL_INT4_F32 && L->inv_s) {
            /* float activations of a smoothed 4-bit Linear: divided by s first */
            for (int64_t r = 0; r < w->R; r++)
                for (int64_t k = 0; k < L->K; k++) w->xs[r * L->K + k] = X[r * ldx + k] * L->inv_s[k];
            gemm(e, w, L, w->xs, L->K, NULL, y, ldy);
        } else {
            gemm(e, w, L, X, ldx, NULL, y, ldy);
        }
    }
}

/* ---- attention ------------------------------------------------------------------------------------ */

typedef struct {
    qd_engine *e;
    ws *w;
    int k; /* the block */
} att_job;

/* S[i][j] += the relative position bias of head h (MPNet: by the bucket of the tokens' positions,
 * which keeps a ragged sequence's own positions; BEiT: by the block's table over the image tokens),
 * before the softmax as in the model */
static void attn_bias(const qd_engine *e, const ws *w, int k, int64_t s, int64_t h, int64_t T, float *S, int64_t lds)
{
    const int64_t nh = e->c.heads;
    if (e->bucket) {
        const float *tb = qd_model_rel_buckets(e->m);
        const int32_t *pos = w->pos + w->off[s], *bk = e->bucket + e->c.max_position;
        for (int64_t i = 0; i < T; i++)
            for (int64_t j = 0; j < T; j++) S[i * lds + j] += tb[(int64_t)bk[pos[j] - pos[i]] * nh + h];
    } else if (e->c.relpos == QD_RELPOS_TABLE) {
        const float *tb = qd_model_block_rel_table(e->m, k);
        const int32_t *ix = qd_model_rel_index(e->m);
        for (int64_t i = 0; i < T; i++)
            for (int64_t j = 0; j < T; j++) S[i * lds + j] += tb[(int64_t)ix[i * T + j] * nh + h];
    }
}

static void att_task(void *arg, int64_t i, int th)
{
    qd_engine *e = ((att_job *)arg)->e;
    ws *w = ((att_job *)arg)->w;
    const int heads = e->c.heads;
    const int64_t s = i / heads, h = i % heads, T = w->len[s], t16 = (T + 15) / 16 * 16, A = e->A, d = e->d;
    const float *q = w->qkv + w->off[s] * 3 * A + h * d;
    float *S = w->att + th * w->cap_att, *kt = S + T * t16;
    const float scale = (float)(1.0 / sqrt((double)d));
    double t0 = e->o.profile ? qd_now() : 0, t1 = 0, t2 = 0;
    qd_attn_scores(q, q + A, 3 * A, T, d, scale, S, t16, kt);
    if (e->c.relpos != QD_RELPOS_NONE) attn_bias(e, w, ((att_job *)arg)->k, s, h, T, S, t16);
    if (e->o.profile) t1 = qd_now();
    qd_softmax_rows(S, T, T, t16);
    if (e->o.profile) t2 = qd_now();
    qd_attn_context(S, t16, q + 2 * A, 3 * A, T, d, w->ctx + w->off[s] * A + h * d, A);
    if (e->o.profile) {
        w->thr_time[th][0] += t1 - t0;
        w->thr_time[th][1] += t2 - t1;
        w->thr_time[th][2] += qd_now() - t2;
    }
}

static void attention(qd_engine *e, ws *w, int k)
{
    const stamp t0 = tick(e);
    if (e->o.profile)
        for (int th = 0; th < e->o.threads; th++) w->thr_time[th][0] = w->thr_time[th][1] = w->thr_time[th][2] = 0;
    att_job j = {e, w, k};
    prun(e, w, (int64_t)w->B * e->c.heads, att_task, &j);
    if (e->o.profile) { /* the region's wall and CPU time, shared out by the threads' time in each step */
        const double wall = qd_now() - t0.wall, cpu = cpu_now() - t0.cpu;
        double part[3] = {0, 0, 0}, all = 0;
        for (int th = 0; th < e->o.threads; th++)
            for (int k = 0; k < 3; k++) part[k] += w->thr_time[th][k], all += w->thr_time[th][k];
        for (int k = 0; k < 3; k++) {
            w->ps[P_SCORES + k] += all > 0 ? wall * part[k] / all : 0;
            w->pcpu[P_SCORES + k] += all > 0 ? cpu * part[k] / all : 0;
            w->pcalls[P_SCORES + k]++;
        }
    }
}

/* ---- embeddings ------------------------------------------------------------------------------------ */

/* the word embedding row of token id into out[E]: float, or dequantized from the file's codes */
static void word_row(const qd_engine *e, int32_t id, int64_t E, float *out)
{
    if (!e->qemb) {
        memcpy(out, e->tw.word_emb + (int64_t)id * E, (size_t)E * sizeof(float));
        return;
    }
    const qd_qembed *q = e->qemb;
    qd_kernels_dequantize_row(q->codes + (int64_t)id * q->row_bytes, E, E, q->scales + id, q->zeros + id, q->bits, out);
}

/* the embedding sum at the embedding width E, its LayerNorm, and (E < hidden: ELECTRA, ALBERT) the
 * projection to the hidden width; x1 holds the narrower rows meanwhile */
static int embed_text(qd_engine *e, ws *w, const qd_batch *b)
{
    const qd_model_config *c = &e->c;
    const int64_t E = c->embed_size;
    float *dst = e->emb_proj ? w->x1 : w->h;
    for (int s = 0; s < b->B; s++) {
        int count = 0; /* non-padding tokens so far, valid or not (QD_POS_AFTER_PAD) */
        int64_t r = w->off[s];
        for (int t = 0; t < b->T && r < w->off[s + 1]; t++) {
            const int64_t src = (int64_t)s * b->T + t;
            const int32_t id = b->ids[src], tt = b->type_ids ? b->type_ids[src] : 0;
            int p = t;
            if (c->pos == QD_POS_AFTER_PAD) p = id == c->pad_id ? c->pad_id : c->pad_id + ++count;
            if (w->pos[r] != t) continue; /* a masked token */
            if (id < 0 || id >= c->vocab_size)
                return qd_err_set(QD_EINVAL, "%s: token id %d at position %d of item %d is outside the vocabulary (%d)",
                                  qd_model_dir(e->m), id, t, s, c->vocab_size);
            if (tt < 0 || tt >= QD_MAX(c->type_vocab, 1))
                return qd_err_set(QD_EINVAL,
                                  "%s: token type %d at position %d of item %d is outside type_vocab_size %d",
                                  qd_model_dir(e->m), tt, t, s, c->type_vocab);
            float *o = dst + r * E;
            word_row(e, id, E, o);
            const float *pe = c->pos != QD_POS_NONE ? e->tw.pos_emb + (int64_t)p * E : NULL,
                        *te = e->tw.type_emb ? e->tw.type_emb + (int64_t)tt * E : NULL;
            for (int64_t i = 0; i < E; i++) o[i] = o[i] + (pe ? pe[i] : 0.0f) + (te ? te[i] : 0.0f);
            r++;
        }
    }
    qd_layernorm_rows(dst, NULL, w->R, E, E, e->tw.emb_ln_g, e->tw.emb_ln_b, (float)c->ln_eps, dst, NULL);
    if (e->emb_proj) qd_gemm_f32(dst, E, w->R, e->emb_proj, 0, e->H, w->h, e->H);
    return QD_OK;
}

/* [CLS, (DIST,) registers..., patches] per image; positions on all but the registers */
static void embed_vision(qd_engine *e, ws *w, const qd_batch *b)
{
    const qd_model_config *c = &e->c;
    const qd_model_tensors *tw = &e->tw;
    const int64_t H = e->H, C = c->channels, gh = c->image_h / c->patch_h, gw = c->image_w / c->patch_w;
    const int64_t np = gh * gw, pk = C * c->patch_h * c->patch_w, lead = c->n_prefix - c->n_registers;
    const float *pos = tw->vis_pos;
    if (np * pk > w->cap_pix) {
        w->cap_pix = np * pk;
        w->pix = grow(w->pix, (size_t)w->cap_pix * sizeof(float));
    }
    for (int s = 0; s < b->B; s++) {
        const float *img = b->pixels + (int64_t)s * C * c->image_h * c->image_w;
        for (int64_t py = 0; py < gh; py++) /* one row per patch, (c, i, j) order as the weight */
            for (int64_t px = 0; px < gw; px++) {
                float *row = w->pix + (py * gw + px) * pk;
                for (int64_t ch = 0; ch < C; ch++)
                    for (int64_t i = 0; i < c->patch_h; i++)
                        memcpy(row + (ch * c->patch_h + i) * c->patch_w,
                               img + (ch * c->image_h + py * c->patch_h + i) * c->image_w + px * c->patch_w,
                               (size_t)c->patch_w * sizeof(float));
            }
        float *o = w->h + w->off[s] * H;
        qd_gemm_f32(w->pix, pk, np, e->patch, 0, H, o + (int64_t)c->n_prefix * H, H);
        for (int64_t i = 0; i < H; i++) o[i] = tw->cls_tok[i] + (pos ? pos[i] : 0.0f);
        if (tw->dist_tok)
            for (int64_t i = 0; i < H; i++) o[H + i] = tw->dist_tok[i] + (pos ? pos[H + i] : 0.0f);
        for (int64_t r = 0; r < c->n_registers; r++)
            memcpy(o + (lead + r) * H, tw->reg_tok + r * H, (size_t)H * sizeof(float));
        for (int64_t p = 0; pos && p < np; p++) {
            float *op = o + (c->n_prefix + p) * H;
            const float *pe = pos + (lead + p) * H;
            for (int64_t i = 0; i < H; i++) op[i] = op[i] + pe[i];
        }
    }
    if (tw->emb_ln_g) /* CLIP's pre-LayerNorm */
        qd_layernorm_rows(w->h, NULL, w->R, H, H, tw->emb_ln_g, tw->emb_ln_b, (float)c->ln_eps, w->h, NULL);
}

/* ---- the forward pass ------------------------------------------------------------------------------ */

static void activation(qd_engine *e, ws *w)
{
    const stamp t0 = tick(e);
    act_job aj = {e->c.act, w->inter, w->R, e->FF, row_tasks(e, w, w->R)};
    prun(e, w, aj.ntask, act_task, &aj);
    tock(e, w, P_ACT, t0, 0);
}

/* a layer scale on a residual branch: x[r][i] *= s[i] */
static void scale_rows(const qd_engine *e, const ws *w, float *x, const float *s)
{
    for (int64_t r = 0; r < w->R; r++)
        for (int64_t i = 0; i < e->H; i++) x[r * e->H + i] *= s[i];
}

static void block_post(qd_engine *e, ws *w, int k)
{
    const int64_t H = e->H, A = e->A, FF = e->FF;
    const int l0 = e->set[k] * QD_LIN_PER_BLOCK;
    linears(e, w, l0 + QD_LIN_Q, 3, w->h, H, w->qkv, 3 * A);
    attention(e, w, k);
    linears(e, w, l0 + QD_LIN_O, 1, w->ctx, A, w->tb, H);
    layernorm(e, w, w->tb, w->h, e->ln1g[k], e->ln1b[k], w->x1, NULL); /* a = LN1(h + attn) */
    linears(e, w, l0 + QD_LIN_INTER, 1, w->x1, H, w->inter, FF);
    activation(e, w);
    linears(e, w, l0 + QD_LIN_OUT, 1, w->inter, FF, w->tb, H);
    layernorm(e, w, w->tb, w->x1, e->ln2g[k], e->ln2b[k], w->h, NULL); /* h = LN2(a + mlp) */
}

/* pre-LN: h += s1 attn(LN1 h); h += s2 mlp(LN2 h). The MLP output of block k stays in tb and is
 * added to h by the LayerNorm of block k + 1 (pend), after the last block by run_batch. */
static void block_pre(qd_engine *e, ws *w, int k, int pend)
{
    const int64_t H = e->H, A = e->A, FF = e->FF;
    const int l0 = e->set[k] * QD_LIN_PER_BLOCK;
    layernorm(e, w, w->h, pend ? w->tb : NULL, e->ln1g[k], e->ln1b[k], w->x1, w->h);
    linears(e, w, l0 + QD_LIN_Q, 3, w->x1, H, w->qkv, 3 * A);
    attention(e, w, k);
    linears(e, w, l0 + QD_LIN_O, 1, w->ctx, A, w->tb, H);
    if (e->ls1[k]) scale_rows(e, w, w->tb, e->ls1[k]);
    layernorm(e, w, w->h, w->tb, e->ln2g[k], e->ln2b[k], w->x1, w->h);
    linears(e, w, l0 + QD_LIN_INTER, 1, w->x1, H, w->inter, FF);
    activation(e, w);
    linears(e, w, l0 + QD_LIN_OUT, 1, w->inter, FF, w->tb, H);
    if (e->ls2[k]) scale_rows(e, w, w->tb, e->ls2[k]);
}

/* the rows R of a batch packed (the tokens whose mask is set) and its longest sequence */
static void extent(const qd_batch *b, int64_t *R, int *Tmax)
{
    for (int s = 0; s < b->B; s++) {
        int n = 0;
        for (int t = 0; t < b->T; t++) n += !b->mask || b->mask[(int64_t)s * b->T + t];
        if (n == 0) n = b->T; /* nothing to attend to: as if unmasked, like the FP32 model */
        *R += n;
        *Tmax = QD_MAX(*Tmax, n);
    }
}

static void ensure_head(ws *w, int64_t B, int64_t H, int64_t L)
{
    if (B * (3 * H + L) > w->cap_hd) {
        w->cap_hd = B * (3 * H + L);
        w->hd = grow(w->hd, (size_t)w->cap_hd * sizeof(float));
    }
}

/* the sequences of the batch, packed: text the tokens whose mask is set (positions kept), vision
 * all */
static int layout(qd_engine *e, ws *w, const qd_batch *b)
{
    if (b->B <= 0 || b->T <= 0) return qd_err_set(QD_EINVAL, "forward pass: empty batch (%d x %d)", b->B, b->T);
    const qd_model_config *c = &e->c;
    if (c->arch == QD_ARCH_VIT) {
        if (!b->pixels) return qd_err_set(QD_EINVAL, "%s: a vision batch needs pixel values", qd_model_dir(e->m));
        if (b->T != qd_model_tokens(e->m, 0))
            return qd_err_set(QD_ESHAPE, "%s: a vision batch has %d tokens per image, not %d", qd_model_dir(e->m),
                              qd_model_tokens(e->m, 0), b->T);
    } else {
        if (!b->ids) return qd_err_set(QD_EINVAL, "%s: a text batch needs token ids", qd_model_dir(e->m));
        const int longest = c->pos == QD_POS_AFTER_PAD ? c->max_position - c->pad_id - 1 : c->max_position;
        if (c->pos != QD_POS_NONE && b->T > longest)
            return qd_err_set(QD_ESHAPE,
                              "%s: sequence length %d exceeds the %d positions of max_position_embeddings %d",
                              qd_model_dir(e->m), b->T, longest, c->max_position);
    }
    int64_t R = 0;
    int Tmax = 0;
    extent(b, &R, &Tmax);
    ensure(e, w, R, Tmax, b->B);
    w->B = b->B;
    w->R = R;
    w->Tmax = Tmax;
    int64_t r = 0;
    for (int s = 0; s < b->B; s++) {
        w->off[s] = r;
        int any = 0;
        for (int t = 0; t < b->T; t++) any |= !b->mask || b->mask[(int64_t)s * b->T + t];
        for (int t = 0; t < b->T; t++)
            if (!any || !b->mask || b->mask[(int64_t)s * b->T + t]) w->pos[r++] = t;
        w->len[s] = (int)(r - w->off[s]);
    }
    w->off[b->B] = r;
    return QD_OK;
}

static float *hpad_buffer(ws *w, const qd_batch *b, int64_t H)
{
    const int64_t n = (int64_t)b->B * b->T * H;
    if (n > w->cap_hpad) {
        w->hpad = grow(w->hpad, (size_t)n * sizeof(float));
        w->cap_hpad = n;
    }
    return w->hpad;
}

/* the output of a padded hidden state [B, T, hidden], by the model's own head */
static int head_model(const qd_engine *e, const qd_batch *b, qd_engine_output what, const float *h, float *out)
{
    switch (what) {
    case QD_ENGINE_EMBEDDING: return qd_model_embedding(e->m, b, h, out);
    case QD_ENGINE_POOLED: return qd_model_head(e->m, b, h, out, NULL);
    default: return qd_model_head(e->m, b, h, NULL, out);
    }
}

/* x [B, H] = token `tok` of every sequence (CLS, DeiT's distillation token) */
static void gather_token(const qd_engine *e, const ws *w, int tok, float *x)
{
    for (int s = 0; s < w->B; s++)
        memcpy(x + (int64_t)s * e->H, w->h + (w->off[s] + tok) * e->H, (size_t)e->H * sizeof(float));
}

/* x [B, H] as `src` (FIRST, FIRST_NORM or POOLER) reads the last hidden state; tmp [B, H] */
static void gather_src(const qd_engine *e, const ws *w, qd_head_src src, float *x, float *tmp)
{
    const int64_t H = e->H, B = w->B;
    gather_token(e, w, 0, x);
    if (src == QD_SRC_FIRST_NORM)
        qd_layernorm_rows(x, NULL, B, H, H, e->tw.final_ln_g, e->tw.final_ln_b, (float)e->c.ln_eps, x, NULL);
    if (src == QD_SRC_POOLER) {
        qd_gemm_f32(x, H, B, e->pool_w, 0, H, tmp, H);
        for (int64_t i = 0; i < B * H; i++) x[i] = tanhf(tmp[i]);
    }
}

static int head(qd_engine *e, ws *w, const qd_batch *b, qd_engine_output what, float *out)
{
    const qd_model_config *c = &e->c;
    const qd_model_tensors *t = &e->tw;
    const int64_t H = e->H, L = c->num_labels, B = b->B;
    if (what == QD_ENGINE_EMBEDDING && c->arch == QD_ARCH_BERT) {
        if (c->pool == QD_POOL_CLS) {
            gather_token(e, w, 0, out);
            return QD_OK;
        }
        for (int s = 0; s < b->B; s++) { /* sentence-transformers pooling, in double as the FP32 model */
            float *o = out + (int64_t)s * H;
            for (int64_t i = 0; i < H; i++) {
                double acc = 0;
                for (int64_t r = w->off[s]; r < w->off[s + 1]; r++) acc += w->h[r * H + i];
                o[i] = (float)(acc / (double)w->len[s]);
            }
        }
        return QD_OK;
    }
    const qd_head_src src = what == QD_ENGINE_LOGITS ? t->head_src : t->pooled_src;
    if (what == QD_ENGINE_LOGITS && c->head == QD_HEAD_NONE)
        return qd_err_set(QD_EUNSUPPORTED, "%s: the checkpoint has no classification head", qd_model_dir(e->m));
    if (what != QD_ENGINE_LOGITS && src == QD_SRC_NONE)
        return qd_err_set(QD_EUNSUPPORTED, "%s: the checkpoint has no pooler", qd_model_dir(e->m));
    if (!native_src(src)) { /* patch means, token heads: the model's head on the padded state */
        float *h = hpad_buffer(w, b, H);
        memset(h, 0, (size_t)((int64_t)b->B * b->T * H) * sizeof(float));
        for (int s = 0; s < b->B; s++)
            for (int64_t r = w->off[s]; r < w->off[s + 1]; r++)
                memcpy(h + ((int64_t)s * b->T + w->pos[r]) * H, w->h + r * H, (size_t)H * sizeof(float));
        return head_model(e, b, what, h, out);
    }
    ensure_head(w, B, H, L);
    float *x = w->hd, *tmp = x + B * H, *y = tmp + B * H;
    gather_src(e, w, src, x, tmp);
    if (what == QD_ENGINE_POOLED || (what == QD_ENGINE_EMBEDDING && !e->proj_w)) {
        memcpy(out, x, (size_t)(B * H) * sizeof(float));
        return QD_OK;
    }
    if (what == QD_ENGINE_EMBEDDING) { /* CLIP's image_embeds */
        qd_gemm_f32(x, H, B, e->proj_w, 0, c->embedding_dim, out, c->embedding_dim);
        return QD_OK;
    }
    if (e->pre_w) {
        qd_gemm_f32(x, H, B, e->pre_w, 0, H, tmp, H);
        qd_activation(t->head_pre_act, tmp, B * H);
        float *sw = x;
        x = tmp, tmp = sw;
    }
    qd_gemm_f32(x, H, B, e->out_w, 0, L, out, L);
    if (e->dist_w) { /* DeiT: the distillation head on token 1, averaged with the CLS head */
        gather_token(e, w, 1, tmp);
        qd_layernorm_rows(tmp, NULL, B, H, H, t->final_ln_g, t->final_ln_b, (float)c->ln_eps, tmp, NULL);
        qd_gemm_f32(tmp, H, B, e->dist_w, 0, L, y, L);
        for (int64_t i = 0; i < B * L; i++) out[i] = (out[i] + y[i]) * 0.5f;
    }
    return QD_OK;
}

/* linear_apply of the model's stages: the engine's Linear li on the model's rows */
static int apply_hook(void *user, const qd_model *m, int li, const float *X, int64_t rows, float *Y)
{
    (void)m;
    qd_engine *e = user;
    ws *w = &e->w[0];
    ensure(e, w, rows, 1, 1);
    w->R = rows;
    linears(e, w, li, 1, X, e->lin[li].K, Y, e->lin[li].N);
    return 1;
}

qd_model_hooks qd_engine_hooks(qd_engine *e) { return (qd_model_hooks){.user = e, .linear_apply = apply_hook}; }

static int run_batch(qd_engine *e, ws *w, const qd_batch *b, qd_engine_output what, float *out)
{
    int rc;
    if (!e->native) { /* the model's stages on the padded batch, the engine's Linears inside */
        float *h = hpad_buffer(w, b, e->H);
        const qd_model_hooks hk = qd_engine_hooks(e);
        stamp t0 = tick(e);
        rc = qd_model_embed(e->m, b, h);
        tock(e, w, P_EMBED, t0, 0);
        for (int k = 0; k < e->c.layers && !rc; k++) rc = qd_model_block(e->m, k, b, h, &hk);
        t0 = tick(e);
        if (!rc) rc = head_model(e, b, what, h, out);
        tock(e, w, P_HEAD, t0, 0);
        return rc;
    }
    if ((rc = layout(e, w, b))) return rc;
    stamp t0 = tick(e);
    if (e->c.arch == QD_ARCH_BERT) {
        if ((rc = embed_text(e, w, b))) return rc;
    } else {
        embed_vision(e, w, b);
    }
    tock(e, w, P_EMBED, t0, 0);
    for (int k = 0; k < e->c.layers; k++) {
        if (e->c.norm == QD_NORM_POST)
            block_post(e, w, k);
        else
            block_pre(e, w, k, k > 0);
    }
    t0 = tick(e);
    if (e->c.norm == QD_NORM_PRE) /* the last MLP's output */
        for (int64_t i = 0; i < w->R * e->H; i++) w->h[i] += w->tb[i];
    rc = head(e, w, b, what, out);
    tock(e, w, P_HEAD, t0, 0);
    return rc;
}

/* Items per sub-batch: the forward runs a large batch in pieces whose activations stay in the L2
 * cache (about 1 MiB of them), unless re-reading a block's weights for every piece would cost more
 * than it saves (pieces of at least twice a block's weight bytes of activations). Measured on
 * vit-mnist-tiny and all-MiniLM-L6-v2 at batch 32: INT8 0.71 -> 0.46 and 2.3 -> 1.5 CPU ms per
 * sample; FP32 MiniLM (7 MB of weights a block) stays whole. QD_ENGINE_CHUNK_ROWS overrides the
 * target rows (0: whole batches). */
static int chunk_items(const qd_engine *e, const qd_batch *b)
{
    const int64_t bpr = 4 * (3 * e->H + 4 * e->A + e->FF) + e->kmax; /* activation bytes per row */
    int64_t wblock = 0;
    for (int i = 0; i < QD_LIN_PER_BLOCK && i < e->nlin; i++) {
        const elin *L = &e->lin[i];
        wblock += L->N * L->K *
                  (L->kind == QD_QL_INT8      ? 1
                   : L->kind == QD_QL_INT4_S8 ? 1
                                              : 4) /
                  (L->kind == QD_QL_INT4_S8 ? 2 : 1);
    }
    int64_t rows = QD_MAX((int64_t)(1 << 20) / bpr, 2 * wblock / bpr);
    const char *env = getenv("QD_ENGINE_CHUNK_ROWS");
    if (env && *env) rows = atoll(env) > 0 ? atoll(env) : (int64_t)b->B * b->T;
    return (int)QD_MAX((int64_t)1, QD_MIN((int64_t)b->B, rows / QD_MAX(b->T, 1)));
}

/* sub-batch i of a batch split into pieces of `per` items */
static qd_batch sub_batch(const qd_engine *e, const qd_batch *b, int per, int64_t i)
{
    const int64_t first = i * per;
    const int64_t pix = e->c.arch == QD_ARCH_VIT ? (int64_t)e->c.channels * e->c.image_h * e->c.image_w : 0;
    qd_batch s = *b;
    s.B = (int)QD_MIN((int64_t)per, b->B - first);
    if (b->ids) s.ids = b->ids + first * b->T;
    if (b->type_ids) s.type_ids = b->type_ids + first * b->T;
    if (b->mask) s.mask = b->mask + first * b->T;
    if (b->pixels) s.pixels = b->pixels + first * pix;
    return s;
}

typedef struct {
    qd_engine *e;
    const qd_batch *b;
    int per;
    qd_engine_output what;
    float *out;
    int64_t dim, n;
    int *rc;
} chunk_job;

/* the sub-batches owned by thread th, whole, on th's own workspace */
static void chunk_task(void *arg, int64_t i, int th)
{
    (void)i;
    chunk_job *j = arg;
    ws *w = &j->e->w[th];
    w->serial = 1;
    for (int64_t c = 0; c < j->n; c++)
        if (j->e->owner[c] == th) {
            const qd_batch s = sub_batch(j->e, j->b, j->per, c);
            j->rc[c] = run_batch(j->e, w, &s, j->what, j->out + c * j->per * j->dim);
        }
    w->serial = 0;
}

/* Shares the n sub-batches out by their tokens: largest first, each to the thread with the fewest
 * tokens so far (ties to the lower thread). Sub-batches th, th + threads, ... left one thread a
 * whole sub-batch more whenever n was not a multiple of the threads (11 pieces of 3 sentences at
 * batch 32: at most 11 / 6 = 1.83x on 2 threads) and ignored their ragged lengths. The rule
 * depends on the batch alone, so a thread sees the same pieces whenever a batch comes again (its
 * scratch then never grows again); the results do not depend on it (a piece's rows are computed
 * alike on any workspace). */
static void share_out(qd_engine *e, const qd_batch *b, int per, int64_t n)
{
    const int threads = e->o.threads;
    int64_t load[256] = {0}; /* qd_workers_create allows 256 threads */
    for (int64_t c = 0; c < n; c++) {
        const qd_batch s = sub_batch(e, b, per, c);
        int tmax = 0;
        e->tok[c] = 0;
        extent(&s, &e->tok[c], &tmax);
        e->owner[c] = -1;
    }
    for (int64_t k = 0; k < n; k++) {
        int64_t best = -1;
        for (int64_t c = 0; c < n; c++)
            if (e->owner[c] < 0 && (best < 0 || e->tok[c] > e->tok[best])) best = c;
        int th = 0;
        for (int t = 1; t < threads; t++)
            if (load[t] < load[th]) th = t;
        e->owner[best] = th;
        load[th] += e->tok[best];
    }
}

int qd_engine_run(qd_engine *e, const qd_batch *b, qd_engine_output what, float *out)
{
    int per = chunk_items(e, b);
    const int64_t dim = what == QD_ENGINE_LOGITS      ? qd_model_logits_per_item(e->m, b->T)
                        : what == QD_ENGINE_EMBEDDING ? e->c.embedding_dim
                                                      : e->H;
    int64_t n = (b->B + per - 1) / per;
    const int64_t threads = e->o.threads;
    if (threads > 1 && e->native && n >= threads && !(e->q && e->o.outlier > 0)) {
        /* Pieces of equal item counts, as many as a multiple of the threads: with FP32 weights a
         * batch of 32 makes a few large ones (MiniLM 13-18 sentences: 13 + 13 + 6 on 2 threads
         * is 1.68x at best, 18 + 14 1.78x; ViT-B/16 5 pieces of up to 7 images). Only where a
         * row's result does not depend on the rows beside it (outlier columns are chosen per
         * piece), so that 1 and N threads still agree bit for bit. */
        const int64_t want = (n + threads - 1) / threads * threads;
        per = (int)((b->B + want - 1) / want);
        n = (b->B + per - 1) / per;
    }
    if (b->B <= 0 || b->T <= 0) return qd_err_set(QD_EINVAL, "forward pass: empty batch (%d x %d)", b->B, b->T);
    if (e->o.threads > 1 && n >= e->o.threads && e->native) {
        /* at least a sub-batch per thread: each thread runs whole sub-batches on its own workspace
         * (no hand-off inside a forward pass); the results are the same as run one after another */
        if (n > e->cap_rc) {
            free(e->rc), free(e->owner), free(e->tok);
            e->rc = qd_xcalloc((size_t)n, sizeof *e->rc);
            e->owner = qd_xcalloc((size_t)n, sizeof *e->owner);
            e->tok = qd_xcalloc((size_t)n, sizeof *e->tok);
            e->cap_rc = n;
        }
        share_out(e, b, per, n);
        chunk_job j = {e, b, per, what, out, dim, n, e->rc};
        qd_workers_run_each(e->pool, chunk_task, &j);
        int st = QD_OK;
        for (int64_t i = 0; i < n && !st; i++) st = e->rc[i];
        return st;
    }
    int rc = QD_OK; /* sub-batches in turn, the threads splitting every piece of each */
    for (int64_t i = 0; i < n && !rc; i++) {
        const qd_batch s = sub_batch(e, b, per, i);
        rc = run_batch(e, &e->w[0], &s, what, out + i * per * dim);
    }
    return rc;
}

/* ---- reports ----------------------------------------------------------------------------------------- */

uint64_t qd_engine_weight_bytes(const qd_engine *e)
{
    const qd_model_config *c = &e->c;
    uint64_t b = 0;
    for (int i = 0; i < e->nlin; i++) {
        const elin *L = &e->lin[i];
        b += L->own ? qd_gemm_wf_bytes(L->own) : 0;
        if (e->q && L->kind != QD_QL_FLOAT) b += qd_qmodel_linear(e->q, i)->bytes;
        if (L->inv_s) b += (uint64_t)L->K * 4;
    }
    const uint64_t H = (uint64_t)c->hidden, f = 4, L = (uint64_t)c->num_labels;
    b += (uint64_t)c->layers * (e->ls1[0] ? 6 : 4) * H * f; /* block LayerNorms, layer scales */
    if (c->arch == QD_ARCH_BERT) {
        const uint64_t E = (uint64_t)c->embed_size;
        b += e->qemb ? e->qemb->bytes : (uint64_t)c->vocab_size * E * f;
        b += ((uint64_t)c->max_position + (uint64_t)c->type_vocab + 2) * E * f;
        if (e->tw.emb_proj_W) b += e->emb_proj ? qd_gemm_wf_bytes(e->emb_proj) : (H * E + H) * f;
    } else {
        const uint64_t pk = (uint64_t)c->channels * (uint64_t)c->patch_h * (uint64_t)c->patch_w;
        b += e->patch ? qd_gemm_wf_bytes(e->patch) : (pk * H + H) * f;
        b += ((uint64_t)qd_model_tokens(e->m, 0) + 4) * H * f;
    }
    /* the head's float products: packed, or the model's */
    const qd_gemm_wf *packed[] = {e->pool_w, e->pre_w, e->out_w, e->dist_w, e->proj_w};
    for (size_t i = 0; i < QD_ARRAY_LEN(packed); i++) b += packed[i] ? qd_gemm_wf_bytes(packed[i]) : 0;
    if (!e->pool_w && e->tw.pool_W) b += (H * H + H) * f;
    if (!e->out_w && e->tw.head_out_W) {
        const uint64_t in = (uint64_t)e->tw.head_in;
        b += ((e->tw.head_pre_W ? in * in + in : 0) + L * in + L) * f * (e->tw.head_dist_W ? 2 : 1);
    }
    if (!e->proj_w && e->tw.proj_W) b += (uint64_t)c->embedding_dim * H * f;
    return b;
}

uint64_t qd_engine_buffer_bytes(const qd_engine *e)
{
    uint64_t b = 0;
    for (int t = 0; t < e->o.threads; t++) {
        const ws *w = &e->w[t];
        const uint64_t r = (uint64_t)w->cap_rows, f = 4;
        b += r *
                 (3 * (uint64_t)e->H + 4 * (uint64_t)e->A + (uint64_t)e->FF + (uint64_t)e->kmax + 2 +
                  (uint64_t)e->o.threads) *
                 f +
             r * (uint64_t)e->kmax + (uint64_t)(w->cap_att * w->att_slots) * f + (uint64_t)w->cap_pix * f;
    }
    return b;
}

double qd_engine_outlier_cols(const qd_engine *e)
{
    double c = 0, n = 0;
    for (int t = 0; t < e->o.threads; t++) c += e->w[t].outl_cols, n += e->w[t].outl_calls;
    return n > 0 ? c / n : 0;
}

const char *qd_engine_path(const qd_engine *e)
{
    const qd_model_config *c = &e->c;
    if (e->native) return e->path;
    if (c->relpos == QD_RELPOS_BUCKETS)
        return "model stages, engine Linears (padded batch: MPNet's relative position buckets)";
    if (c->relpos != QD_RELPOS_NONE) return "model stages, engine Linears (padded batch: relative position bias table)";
    if (e->tw.emb_proj_W)
        return "model stages, engine Linears (padded batch: embeddings projected to the hidden width)";
    return "model stages, engine Linears (padded batch: a block layout the engine does not fuse)";
}

const char *qd_engine_gemm_isa(const qd_engine *e, qd_ql_kind kind) { return kind < QD_QL_KINDS_ ? e->isa[kind] : "?"; }

static int cmp_row(const void *a, const void *b)
{
    const qd_engine_prof_row *x = a, *y = b;
    return x->seconds < y->seconds ? 1 : x->seconds > y->seconds ? -1 : 0;
}

/* Sums over the workspaces: with sub-batches on several threads at once, a row's time is the
 * time of its regions summed over the threads that ran them (thread-seconds). */
int qd_engine_profile(const qd_engine *e, qd_engine_prof_row *rows, int max)
{
    int n = 0;
    for (int i = 0; i < e->nprof && n < max; i++) {
        qd_engine_prof_row r = {.seconds = 0};
        for (int t = 0; t < e->o.threads; t++) {
            const ws *w = &e->w[t];
            r.seconds += w->ps[i], r.cpu_seconds += w->pcpu[i], r.calls += w->pcalls[i], r.ops += w->pops[i];
        }
        if (r.calls == 0) continue;
        snprintf(r.name, sizeof r.name, "%s", e->prof_name[i]);
        rows[n++] = r;
    }
    qsort(rows, (size_t)n, sizeof *rows, cmp_row);
    return n;
}

void qd_engine_profile_reset(qd_engine *e)
{
    for (int t = 0; t < e->o.threads; t++) {
        ws *w = &e->w[t];
        memset(w->ps, 0, sizeof w->ps), memset(w->pcpu, 0, sizeof w->pcpu), memset(w->pops, 0, sizeof w->pops);
        memset(w->pcalls, 0, sizeof w->pcalls);
        w->outl_cols = w->outl_calls = 0;
    }
}
