/* worker/calib_job.c — calibration and the calibrated methods over the job's ranks (see
 * calib_job.h). */
#include "worker/calib_job.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collective/coll_calib.h"
#include "collective/collective.h"
#include "model/calib.h"
#include "model/calib_data.h"
#include "quant/quant.h"
#include "worker/calib_run.h"
#include "worker/mem_guard.h"

const char *const qd_calib_phase_names[QD_CALIB_NPHASES] = {"read", "forward", "reduce", "quantize", "gather", "write"};

void qd_calib_results_free(qd_calib_results *r)
{
    if (!r || !r->t) return;
    for (int i = 0; i < r->n; i++) {
        free(r->t[i].codes);
        free(r->t[i].scales);
        free(r->t[i].zeros);
        free(r->t[i].codebook);
        free(r->t[i].g_idx);
        free(r->t[i].mask);
        free(r->t[i].fweight);
    }
    free(r->t);
    free(r->calibration_json);
    memset(r, 0, sizeof *r);
}

/* ---- the input rows kept for methods that learn from them ----------------------------------- */

/* Methods that need the input rows (QD_NEEDS_ROWS: AdaRound's mini-batch form) get X [nrows][in]
 * per input group: the real (unpadded) tokens of all samples in sample order, micro-batch after
 * micro-batch, so that X is the same for any number of ranks. The hook copies each call's real
 * rows to fill[group] and advances it; `inner` (the statistics) runs first. */
typedef struct {
    qd_model_hooks inner;
    float **X;     /* model group -> [nrows][in], or NULL when not kept */
    int64_t *fill; /* model group -> rows written */
    int64_t nrows; /* real tokens of all samples */
} rowtap;

static int tap_input(void *user, const qd_model *m, int li, const float *X, int64_t rows, const uint8_t *valid)
{
    rowtap *t = user;
    if (t->inner.linear_input) {
        int rc = t->inner.linear_input(t->inner.user, m, li, X, rows, valid);
        if (rc) return rc;
    }
    const qd_linear *L = qd_model_linear(m, li);
    float *dst = t->X[L->input_group];
    if (!dst) return QD_OK;
    int64_t *f = &t->fill[L->input_group];
    for (int64_t r = 0; r < rows; r++) {
        if (valid && !valid[r]) continue;
        QD_ASSERT_LT(*f, t->nrows);
        memcpy(dst + *f * L->in, X + r * L->in, (size_t)L->in * sizeof(float));
        (*f)++;
    }
    return QD_OK;
}

/* ---- state shared by the phases ------------------------------------------------------------ */

typedef struct {
    const qd_job_config *cfg;
    MPI_Comm comm;
    int rank, size, progress;
    qd_checkpoint *ck;
    const qd_job_tensor *jt;
    const qd_calib_stream *stream; /* where finished results go */
    qd_model *m;
    int *lin_tensor; /* model linear -> checkpoint tensor index, or -1 */
    int *tensor_lin; /* checkpoint tensor -> model linear, or -1 */
    float **dq;      /* model linear -> dequantized weight while its block is advanced */
    int T;           /* tokens per item (for the per-item products) */
    qd_calib_results *res;
    /* the last prepared state: query, key and value share their input (same H), so with the same
     * method and options they share it */
    const qd_method_def *prep_def;
    void *prep;
    int prep_group;
    qd_method_opts prep_opts;
    rowtap tap; /* the rows of the groups in hand */
} gjob;

/* Whether tensor ti's method learns from the input rows rather than through H. */
static int rows_kept(const gjob *g, int ti) { return qd_job_needs(g->cfg, &g->jt[ti]) == QD_NEEDS_ROWS; }

/* Keeps the rows of input group gi: allocates X [nrows][in]. QD_OK or QD_ENOMEM. */
static int tap_keep(gjob *g, int gi)
{
    const qd_linear *L = qd_model_linear(g->m, qd_model_group_first(g->m, gi));
    g->tap.fill[gi] = 0;
    g->tap.X[gi] = malloc((size_t)g->tap.nrows * (size_t)L->in * sizeof(float));
    if (!g->tap.X[gi])
        return qd_err_set(QD_ENOMEM, "AdaRound --batch: out of memory for the %lld calibration rows of '%s' (%.1f MB)",
                          (long long)g->tap.nrows, L->name, (double)g->tap.nrows * L->in * 4e-6);
    return QD_OK;
}

static void tap_release(gjob *g)
{
    for (int gi = 0; gi < qd_model_num_groups(g->m); gi++) {
        free(g->tap.X[gi]);
        g->tap.X[gi] = NULL;
    }
}

static int agree(gjob *g, int rc) { return qd_coll_agree_status(g->comm, rc); }

/* Replacement products with the dequantized weights, one sgemm per item as model/forward.c. */
static int apply_dq(void *user, const qd_model *m, int li, const float *X, int64_t rows, float *Y)
{
    gjob *g = user;
    if (!g->dq[li]) return 0;
    const qd_linear *L = qd_model_linear(m, li);
    for (int64_t r = 0; r < rows; r += g->T)
        qd_linear_f32(X + r * L->in, QD_MIN(g->T, rows - r), L->in, g->dq[li], L->b, L->out, Y + r * L->out);
    return 1;
}

/* ---- one tensor: its units, its results ----------------------------------------------------- */

/* The method's prepared state for tensor ti's input group: the last one when it serves. */
static int prepared(gjob *g, const qd_method_def *def, const qd_method_opts *o, int group, const qd_layer_stats *s,
                    void **prep)
{
    *prep = NULL;
    if (!def->prepare) return QD_OK;
    if (g->prep && g->prep_def == def && g->prep_group == group && def->same_prep(&g->prep_opts, o)) {
        *prep = g->prep;
        return QD_OK;
    }
    if (g->prep) g->prep_def->release(g->prep);
    g->prep = NULL;
    int rc = def->prepare(o, s, prep);
    if (rc) return rc;
    g->prep = *prep;
    g->prep_def = def;
    g->prep_group = group;
    g->prep_opts = *o;
    return QD_OK;
}

/* The units of tensor ti that this rank owns, through its method: unit u belongs to rank
 * lo + u % n of the tensor's range [lo, lo + n). H: the input's Hessian where this rank needs
 * it; the rows come from g->tap. */
static int quantize_units(gjob *g, int ti, const float *H, int lo, int n)
{
    const qd_job_tensor *j = &g->jt[ti];
    qd_calib_result *r = &g->res->t[ti];
    const char *name = qd_ckpt_tensor(g->ck, ti)->name;
    const qd_method_def *def = qd_job_method(j);
    qd_method_opts o;
    qd_job_method_opts(g->cfg, j, &o);
    const int64_t R = j->rows, C = j->cols, U = QD_CALIB_UNIT_ROWS;
    const int64_t nunits = (R + U - 1) / U;
    const int any = g->rank >= lo && g->rank - lo < QD_MIN(n, nunits); /* prepare only then */
    QD_ASSERT(!any || (r->codes && r->row0 == 0 && r->row1 == R));     /* whole while its block is in hand */
    const int group = qd_model_linear(g->m, g->tensor_lin[ti])->input_group;
    const qd_layer_stats s = {.cols = C, .H = H, .X = rows_kept(g, ti) ? g->tap.X[group] : NULL, .N = g->tap.nrows};
    void *prep = NULL;
    int rc = any ? prepared(g, def, &o, group, &s, &prep) : QD_OK;
    if (rc) {
        qd_err_wrap(rc, "tensor '%s': ", name);
        return rc;
    }
    float *W = any ? malloc((size_t)(U * C) * sizeof(float)) : NULL;
    if (any && !W) rc = qd_err_set(QD_ENOMEM, "tensor '%s': out of memory", name);
    for (int64_t u = 0; u < nunits && !rc; u++) {
        if (lo + (int)(u % n) != g->rank) continue;
        const int64_t r0 = u * U, n = QD_MIN(U, R - r0);
        if ((rc = qd_ckpt_read_rows_f32(g->ck, ti, r0, n, W))) break;
        QD_ASSERT(s.X || !rows_kept(g, ti));
        qd_unit_out out = {.codes = r->codes + r0 * C,
                           .codebook = r->codebook ? r->codebook + r0 * r->cbr : NULL,
                           .scales = r->scales + r0 * r->ng,
                           .zeros = r->zeros + r0 * r->ng,
                           .mask = r->mask ? r->mask + r0 * C : NULL};
        if ((rc = def->quantize(&o, &s, prep, W, n, &out))) {
            qd_err_wrap(rc, "tensor '%s' rows [%lld, %lld): ", name, (long long)r0, (long long)(r0 + n));
            break;
        }
        if (out.damp_used > r->damp_used) r->damp_used = out.damp_used;
        r->dead_columns = out.dead_columns;
        if (r->fweight) /* prune-only: +0 for every zero, the all-reduce adds the other ranks' zeros */
            for (int64_t i = 0; i < n * C; i++) r->fweight[r0 * C + i] = W[i] == 0.0f ? 0.0f : W[i];
    }
    free(W);
    /* the units read the job's own map of the checkpoint (not the model's, which forgets its own):
     * its pages would stay resident block after block */
    if (any) qd_ckpt_forget(g->ck, ti);
    return rc; /* the prepared state stays in g->prep for the next tensor with the same input */
}

/* Tensor ti's result arrays for all its rows, zero (units not owned stay zero for the merge). */
static int result_alloc(gjob *g, int ti)
{
    qd_calib_result *r = &g->res->t[ti];
    if (r->codes) return QD_OK;
    const int64_t nc = r->rows * r->cols, ns = r->rows * r->ng;
    r->row0 = 0;
    r->row1 = r->rows;
    r->codes = calloc((size_t)(nc ? nc : 1), 1);
    r->scales = calloc((size_t)(ns ? ns : 1), sizeof(float));
    r->zeros = calloc((size_t)(ns ? ns : 1), sizeof(int32_t));
    const int pruned = qd_sparsity_active(&g->jt[ti].sp);
    if (pruned) r->mask = calloc((size_t)(nc ? nc : 1), 1);
    if (r->float_kept) r->fweight = calloc((size_t)(nc ? nc : 1), sizeof(float));
    if (r->cbr) r->codebook = calloc((size_t)(r->rows * r->cbr), sizeof(float));
    if (!r->codes || !r->scales || !r->zeros || (pruned && !r->mask) || (r->float_kept && !r->fweight) ||
        (r->cbr && !r->codebook))
        return qd_err_set(QD_ENOMEM, "tensor '%s': out of memory for its result (%.1f MB)",
                          qd_ckpt_tensor(g->ck, ti)->name, (double)nc * (r->float_kept ? 6 : 2) * 1e-6);
    return QD_OK;
}

/* Frees tensor ti's result arrays (written, or read back and dequantized). */
static void result_drop(gjob *g, int ti)
{
    qd_calib_result *r = &g->res->t[ti];
    free(r->codes);
    free(r->scales);
    free(r->zeros);
    free(r->codebook);
    free(r->mask);
    free(r->fweight);
    r->codes = r->mask = NULL;
    r->scales = r->codebook = r->fweight = NULL;
    r->zeros = NULL;
    r->row0 = r->row1 = 0;
}

/* Whether tensor ti's record is complete in the file being resumed. */
static int stream_complete(const gjob *g, int ti)
{
    return g->stream && g->stream->complete && g->stream->complete[ti];
}

/* The finished tensors ts[0 .. n) (whole results on every rank) to the writer, those not complete
 * in the file yet; then their results are freed. Agreed status. */
static int stream_write(gjob *g, const int *ts, int n)
{
    int *todo = qd_xmalloc((size_t)(n ? n : 1) * sizeof *todo), nt = 0, rc = QD_OK;
    for (int i = 0; i < n; i++)
        if (!stream_complete(g, ts[i])) todo[nt++] = ts[i];
    const double t0 = qd_now();
    if (nt && g->stream && g->stream->write) rc = g->stream->write(g->stream->user, todo, nt);
    g->res->phase[QD_PH_WRITE] += qd_now() - t0;
    for (int i = 0; i < n; i++) result_drop(g, ts[i]);
    free(todo);
    return rc;
}

/* quantize_units, with its CPU time (the whole process's: the methods' threads included; no
 * communication inside) added to this rank's results: the job summary's units CPU. */
static int quantize_units_timed(gjob *g, int ti, const float *H, int lo, int n)
{
    const double c0 = qd_process_cpu();
    const int rc = quantize_units(g, ti, H, lo, n);
    g->res->unit_cpu += qd_process_cpu() - c0;
    return rc;
}

/* Gather tensor ti's results on every rank: units not owned are zero, so sums (and ORs) of the
 * ranks' arrays are the owners' values. */
static void allgather_result(gjob *g, int ti)
{
    qd_calib_result *r = &g->res->t[ti];
    const int64_t nc = r->rows * r->cols, ns = r->rows * r->ng;
    qd_coll_merge_u8(g->comm, r->codes, nc);
    if (r->mask) qd_coll_merge_u8(g->comm, r->mask, nc);
    if (r->fweight) qd_coll_merge_floats(g->comm, r->fweight, nc); /* one owner per row, others exact zeros */
    qd_coll_merge_floats(g->comm, r->scales, ns);
    qd_coll_merge_i32(g->comm, r->zeros, ns);
    if (r->codebook) qd_coll_merge_floats(g->comm, r->codebook, r->rows * r->cbr);
    double d[2] = {r->damp_used, (double)r->dead_columns};
    qd_coll_allreduce_doubles(g->comm, d, 2, QD_COLL_MAX);
    r->damp_used = d[0];
    r->dead_columns = (int64_t)d[1];
}

/* Whether tensor ti's method may record a column order (it needs the input's H on every rank). */
static int wants_g_idx(const gjob *g, int ti) { return g->cfg->act_order && qd_job_method(&g->jt[ti])->g_idx; }

/* The column order of tensor ti from H (the same on every rank), when its method reorders. */
static void compute_g_idx(gjob *g, int ti, const float *H)
{
    qd_calib_result *r = &g->res->t[ti];
    qd_method_opts o;
    qd_job_method_opts(g->cfg, &g->jt[ti], &o);
    const qd_layer_stats s = {.cols = r->cols, .H = H};
    int32_t *gi = qd_xmalloc((size_t)r->cols * sizeof(int32_t));
    if (qd_job_method(&g->jt[ti])->g_idx(&o, &s, gi))
        r->g_idx = gi;
    else
        free(gi);
}

/* Tensor ti's column order, computed by root (where the input's H is) and sent to every rank:
 * the others never hold that H. */
static void share_g_idx(gjob *g, int ti, int root)
{
    qd_calib_result *r = &g->res->t[ti];
    int32_t *buf = qd_xmalloc((size_t)(r->cols + 1) * sizeof *buf);
    buf[0] = g->rank == root && r->g_idx;
    if (buf[0]) memcpy(buf + 1, r->g_idx, (size_t)r->cols * sizeof *buf);
    qd_coll_bcast(g->comm, buf, (size_t)(r->cols + 1) * sizeof *buf, root);
    if (g->rank != root && buf[0]) {
        free(r->g_idx);
        r->g_idx = qd_xmalloc((size_t)r->cols * sizeof *buf);
        memcpy(r->g_idx, buf + 1, (size_t)r->cols * sizeof *buf);
    }
    free(buf);
}

static float *dequantize_result(const qd_calib_result *r, const qd_job_tensor *j)
{
    float *W = malloc((size_t)(r->rows * r->cols) * sizeof(float));
    if (!W) return NULL;
    if (r->fweight) {
        memcpy(W, r->fweight, (size_t)(r->rows * r->cols) * sizeof(float));
        return W;
    }
    const int64_t G = qd_scheme_group_cols(&j->scheme, r->cols);
    if (r->codebook) {
        qd_kmeans_dequantize(r->codes, r->rows, r->cols, G, j->scheme.bits, r->codebook, W);
        return W;
    }
    qd_qparams p = {.rows = r->rows,
                    .cols = r->cols,
                    .ngroups = r->ng,
                    .group_size = G,
                    .bits = j->scheme.bits,
                    .sym = j->scheme.sym,
                    .gran = G < r->cols ? QD_GRAN_GROUP : QD_GRAN_CHANNEL,
                    .scales = r->scales,
                    .zeros = r->zeros};
    qd_dequantize(r->codes, &p, r->g_idx, W);
    return W;
}

void qd_calib_plan_block(const qd_job_config *cfg, const qd_model *m, const qd_job_tensor *jt, const int *lin_tensor,
                         int size, int k, qd_calib_plan *p)
{
    memset(p, 0, sizeof *p);
    double fact[QD_CALIB_PLAN_MAX] = {0}, rest[QD_CALIB_PLAN_MAX] = {0};
    for (int li = 0; li < qd_model_num_linears(m) && p->nbt < QD_CALIB_PLAN_MAX; li++) {
        const qd_linear *L = qd_model_linear(m, li);
        if (L->layer != k || lin_tensor[li] < 0) continue;
        int gi = 0;
        while (gi < p->ng && p->grp[gi] != L->input_group) gi++;
        const qd_job_tensor *j = &jt[lin_tensor[li]];
        const qd_method_def *def = qd_job_method(j);
        qd_method_opts o;
        qd_job_method_opts(cfg, j, &o);
        const int first = gi == p->ng;
        if (first) p->grp[p->ng++] = L->input_group;
        p->tg[p->nbt] = gi;
        p->bt[p->nbt++] = li;
        if (!def->balance_cost) {
            rest[gi] += def->cost(L->out, L->in, &o);
            continue;
        }
        const double shared = def->balance_cost(L->out, L->in, 1, &o);
        if (first && def->prepare) fact[gi] = def->balance_cost(L->out, L->in, 0, &o) - shared;
        rest[gi] += shared;
    }
    for (int i = 0; i < p->ng; i++) p->n[i] = 1;
    if (size == 1) return;
    if (p->ng >= size) {
        double load[1024] = {0};
        int order[QD_CALIB_PLAN_MAX];
        QD_ASSERT(size <= 1024);
        for (int i = 0; i < p->ng; i++) order[i] = i;
        for (int i = 1; i < p->ng; i++) /* stable insertion sort by descending cost */
            for (int j = i; j > 0 && fact[order[j]] + rest[order[j]] > fact[order[j - 1]] + rest[order[j - 1]]; j--) {
                int t = order[j];
                order[j] = order[j - 1];
                order[j - 1] = t;
            }
        for (int i = 0; i < p->ng; i++) {
            int best = 0;
            for (int r = 1; r < size; r++)
                if (load[r] < load[best]) best = r;
            p->lo[order[i]] = best;
            load[best] += fact[order[i]] + rest[order[i]];
        }
        return;
    }
    for (int extra = size - p->ng; extra > 0; extra--) {
        int best = 0;
        for (int i = 1; i < p->ng; i++)
            if (fact[i] + rest[i] / p->n[i] > fact[best] + rest[best] / p->n[best]) best = i;
        p->n[best]++;
    }
    for (int i = 1; i < p->ng; i++) p->lo[i] = p->lo[i - 1] + p->n[i - 1];
}

/* Whether a tensor of b's group comes after another group's, later in the block (its H would
 * be formed again, so its sums must stay until then). */
static int later_run(const qd_calib_plan *p, int b)
{
    int other = 0;
    for (int b2 = b + 1; b2 < p->nbt; b2++) {
        if (p->tg[b2] != p->tg[b])
            other = 1;
        else if (other)
            return 1;
    }
    return 0;
}

static void plan_block(gjob *g, int k, qd_calib_plan *p)
{
    qd_calib_plan_block(g->cfg, g->m, g->jt, g->lin_tensor, g->size, k, p);
}

static int plan_mine(const gjob *g, const qd_calib_plan *p, int i) { return qd_calib_plan_has(p, i, g->rank); }

int qd_calib_plan_solo(const qd_job_config *cfg, const qd_job_tensor *jt, const int *lin_tensor, const qd_calib_plan *p,
                       int i)
{
    if (p->n[i] < 2) return 0;
    for (int b = 0; b < p->nbt; b++) {
        if (p->tg[b] != i) continue;
        const qd_job_tensor *j = &jt[lin_tensor[p->bt[b]]];
        const qd_method_def *def = qd_job_method(j);
        qd_method_opts o;
        qd_job_method_opts(cfg, j, &o);
        if (qd_job_needs(cfg, j) == QD_NEEDS_ROWS || !def->prepare || !def->prep_parts || !def->prep_alone(&o))
            return 0;
    }
    return 1;
}

static int prep_solo(const gjob *g, const qd_calib_plan *p, int i)
{
    return qd_calib_plan_solo(g->cfg, g->jt, g->lin_tensor, p, i);
}

/* Whether the b-th tensor of the block starts a new prepared state (the first of its group's run,
 * or options that do not share the previous tensor's): from the plan and the options alone, so
 * the sender and the receivers of a solo group agree without a message. */
static int prep_starts(const gjob *g, const qd_calib_plan *p, int b)
{
    if (b == 0 || p->tg[b - 1] != p->tg[b]) return 1;
    const int t0 = g->lin_tensor[p->bt[b - 1]], t1 = g->lin_tensor[p->bt[b]];
    const qd_method_def *d0 = qd_job_method(&g->jt[t0]), *d1 = qd_job_method(&g->jt[t1]);
    qd_method_opts o0, o1;
    qd_job_method_opts(g->cfg, &g->jt[t0], &o0);
    qd_job_method_opts(g->cfg, &g->jt[t1], &o1);
    return d0 != d1 || !d0->same_prep(&o0, &o1);
}

/* A solo group's prepared state for the b-th tensor: its first rank prepares it from H (rc: its
 * status so far) and sends a status, then the state's parts to the rest of the range, which keep
 * it as their prepared state (as if they had prepared it: the same bits). Called by every rank of
 * the range at every tensor prep_starts names, whatever their status, so no rank waits on one
 * that stopped. Returns this rank's status. */
static int prep_share(gjob *g, const qd_calib_plan *p, int b, const float *H, int rc)
{
    const int i = p->tg[b], lo = p->lo[i], ti = g->lin_tensor[p->bt[b]];
    const qd_method_def *def = qd_job_method(&g->jt[ti]);
    qd_method_opts o;
    qd_job_method_opts(g->cfg, &g->jt[ti], &o);
    const int group = qd_model_linear(g->m, g->tensor_lin[ti])->input_group;
    uint8_t *member = qd_xcalloc((size_t)g->size, 1);
    for (int r = lo + 1; r < lo + p->n[i]; r++) member[r] = 1;
    void *prep = NULL, *part[QD_PREP_PARTS];
    size_t bytes[QD_PREP_PARTS];
    int status = rc;
    if (g->rank == lo && !status) {
        const double c0 = qd_process_cpu();
        const qd_layer_stats s = {.cols = g->jt[ti].cols, .H = H};
        QD_ASSERT(H);
        status = prepared(g, def, &o, group, &s, &prep);
        g->res->unit_cpu += qd_process_cpu() - c0;
    }
    int32_t st = status;
    qd_coll_share(g->comm, &st, sizeof st, lo, member);
    if (st) { /* nothing follows; a receiver reports its sender's failure */
        free(member);
        if (g->rank == lo || rc) return status;
        return qd_err_set(st, "tensor '%s': its prepared state was not received (rank %d failed)",
                          qd_ckpt_tensor(g->ck, ti)->name, lo);
    }
    if (g->rank == lo) { /* the head first: the receivers size the state by it */
        def->prep_parts(prep, part, bytes);
        qd_coll_share(g->comm, part[0], bytes[0], lo, member);
    } else {
        char *head = qd_xmalloc(def->prep_head());
        qd_coll_share(g->comm, head, def->prep_head(), lo, member);
        prep = def->prep_from_head(head);
        free(head);
    }
    const int np = def->prep_parts(prep, part, bytes);
    for (int k = 1; k < np; k++) qd_coll_share(g->comm, part[k], bytes[k], lo, member);
    free(member);
    if (g->rank == lo) return QD_OK;
    if (rc) { /* received to keep the exchange in step; this rank already stopped */
        def->release(prep);
        return rc;
    }
    if (g->prep) g->prep_def->release(g->prep);
    g->prep = prep;
    g->prep_def = def;
    g->prep_group = group;
    g->prep_opts = o;
    return QD_OK;
}

/* The statistics of each group of the plan summed onto the group's first rank (exact integer
 * sums: the bits of an all-reduction) and handed to its other ranks; the ranks outside the range
 * free theirs. What this rank then holds is recorded. */
static void reduce_to_owners(gjob *g, qd_calib *stats, const qd_calib_plan *p)
{
    uint8_t *member = qd_xcalloc((size_t)g->size, 1);
    double held = 0;
    for (int i = 0; i < p->ng; i++) {
        qd_calib_group *cg = qd_calib_find(stats, p->grp[i]);
        QD_ASSERT(cg);
        const int64_t len = qd_calib_acc_len(cg->in);
        qd_coll_sum_i64(g->comm, &cg->rows, 1);
        if (p->n[i] == g->size) {
            qd_coll_sum_i64(g->comm, cg->acc, len);
        } else {
            qd_coll_reduce_i64(g->comm, cg->acc, len, p->lo[i]);
            /* a solo group's sums stay on its first rank: the others receive the prepared state */
            const int solo = prep_solo(g, p, i);
            for (int r = 0; r < g->size; r++) member[r] = !solo && r > p->lo[i] && r < p->lo[i] + p->n[i];
            qd_coll_share(g->comm, cg->acc, (size_t)len * sizeof *cg->acc, p->lo[i], member);
            if (!plan_mine(g, p, i) || (solo && g->rank != p->lo[i])) qd_calib_release(cg);
        }
        if (g->size > 1) g->res->reduce_bytes += (double)len * 8;
        if (cg->acc) held += (double)len * 8;
    }
    if (held > g->res->stats_bytes) g->res->stats_bytes = held;
    free(member);
}

/* H of input group gi from the statistics into *H (kept while the group stays the same). */
static int hessian(gjob *g, qd_calib *stats, int gi, float **H, int *Hgroup)
{
    if (*Hgroup == gi) return QD_OK;
    qd_calib_group *cg = qd_calib_find(stats, gi);
    QD_ASSERT(cg && cg->acc); /* only where the statistics were reduced to */
    g->res->hessians++;
    free(*H);
    *H = malloc((size_t)cg->in * (size_t)cg->in * sizeof(float));
    *Hgroup = gi;
    return *H ? qd_calib_hessian_f32(cg, *H) : qd_err_set(QD_ENOMEM, "out of memory for a Hessian");
}

/* ---- data mode: block after block -------------------------------------------------------- */

/* This rank's samples (micro-batches rank, rank + size, ...), embedded once and advanced block
 * by block through the blocks as quantized. */
typedef struct {
    int N, mb, T, nmb, nloc;
    int64_t slot;    /* floats of one micro-batch's residual stream */
    float *hs;       /* [nloc][slot] */
    float *scratch;  /* [slot] */
    qd_batch *bat;   /* [nloc] shapes and masks */
    int need_rows;   /* some tensor's method learns from the input rows */
    int64_t *mb_off; /* [nmb + 1] where each micro-batch's real tokens start in the rows */
} seqstate;

/* Embeds this rank's samples; later blocks need only the shape and the mask. */
static int seq_embed(gjob *g, qd_calib_data *data, seqstate *q)
{
    const qd_model_config *c = qd_model_cfg(g->m);
    q->N = qd_calib_data_count(data);
    q->mb = g->cfg->microbatch;
    q->T = qd_calib_data_tokens(data);
    q->nmb = (q->N + q->mb - 1) / q->mb;
    /* micro-batch i belongs to rank i % size: samples are sorted by length, so a contiguous split
     * would give rank 0 all the long ones */
    q->nloc = g->rank < q->nmb ? (q->nmb - g->rank + g->size - 1) / g->size : 0;
    q->slot = (int64_t)q->mb * q->T * c->hidden;
    q->hs = malloc((size_t)(q->nloc > 0 ? q->nloc : 1) * (size_t)q->slot * sizeof(float));
    q->scratch = malloc((size_t)q->slot * sizeof(float));
    q->bat = qd_xcalloc((size_t)(q->nloc > 0 ? q->nloc : 1), sizeof *q->bat);
    int rc = q->hs && q->scratch
                 ? QD_OK
                 : qd_err_set(QD_ENOMEM, "calibration: out of memory for %d samples' activations", q->N);
    for (int j = 0; j < q->nloc && !rc; j++) {
        const int i = g->rank + j * g->size, first = i * q->mb, n = QD_MIN(q->mb, q->N - first);
        qd_batch b;
        if ((rc = qd_calib_data_batch(data, first, n, &b))) break;
        if ((rc = qd_model_embed(g->m, &b, q->hs + (int64_t)j * q->slot))) break;
        /* the shape and a copy of the mask (the data's batch buffers are reused) */
        int32_t *mk = NULL;
        if (b.mask) {
            mk = qd_xmalloc((size_t)n * (size_t)b.T * sizeof *mk);
            memcpy(mk, b.mask, (size_t)n * (size_t)b.T * sizeof *mk);
        }
        q->bat[j] = (qd_batch){.B = n, .T = b.T, .mask = mk};
    }
    return agree(g, rc);
}

/* For methods that learn from the input rows: where each micro-batch's real tokens start in the
 * rows X, from every rank's micro-batches. */
static void seq_row_offsets(gjob *g, seqstate *q)
{
    for (int li = 0; li < qd_model_num_linears(g->m); li++)
        q->need_rows |= g->lin_tensor[li] >= 0 && rows_kept(g, g->lin_tensor[li]);
    if (!q->need_rows) return;
    q->mb_off = qd_xcalloc((size_t)q->nmb + 1, sizeof *q->mb_off);
    for (int j = 0; j < q->nloc; j++) {
        int64_t cnt = (int64_t)q->bat[j].B * q->bat[j].T;
        if (q->bat[j].mask) {
            cnt = 0;
            for (int64_t t = 0; t < (int64_t)q->bat[j].B * q->bat[j].T; t++) cnt += q->bat[j].mask[t] != 0;
        }
        q->mb_off[g->rank + j * g->size + 1] = cnt;
    }
    qd_coll_sum_i64(g->comm, q->mb_off, q->nmb + 1);
    for (int i = 0; i < q->nmb; i++) q->mb_off[i + 1] += q->mb_off[i];
    QD_ASSERT_EQ(q->mb_off[q->nmb], g->tap.nrows);
}

/* The input groups of block k with a calibrated tensor; returns whether there is any. */
static int seq_select(gjob *g, int k, uint8_t *sel)
{
    int any = 0;
    for (int gi = 0; gi < qd_model_num_groups(g->m); gi++) {
        sel[gi] = 0;
        for (int li = 0; li < qd_model_num_linears(g->m); li++) {
            const qd_linear *L = qd_model_linear(g->m, li);
            if (L->layer == k && L->input_group == gi && g->lin_tensor[li] >= 0) sel[gi] = 1;
        }
        any |= sel[gi];
    }
    return any;
}

/* The statistics of block k's selected groups over every rank's samples (two passes: absmax,
 * then the exact sums), and the input rows of the groups whose methods learn from them, every
 * micro-batch's broadcast from the rank that ran it. */
static int seq_calibrate(gjob *g, seqstate *q, int k, const uint8_t *sel, const qd_calib_plan *plan,
                         qd_calib **stats_out)
{
    const int ng = qd_model_num_groups(g->m), Hd = qd_model_cfg(g->m)->hidden;
    qd_calib *stats = NULL;
    int rc = qd_calib_new(g->m, sel, &stats);
    for (int li = 0; li < qd_model_num_linears(g->m) && !rc; li++) {
        const qd_linear *L = qd_model_linear(g->m, li);
        if (L->layer == k && g->lin_tensor[li] >= 0 && rows_kept(g, g->lin_tensor[li]) && !g->tap.X[L->input_group])
            rc = tap_keep(g, L->input_group);
    }
    rc = agree(g, rc);
    qd_model_hooks hk = stats ? qd_calib_hooks(stats) : (qd_model_hooks){0};
    qd_model_hooks tk = {.user = &g->tap, .linear_input = tap_input};
    g->tap.inner = hk;
    for (int pass = 0; pass < 2 && !rc; pass++) {
        for (int j = 0; j < q->nloc && !rc; j++) {
            const int i = g->rank + j * g->size;
            memcpy(q->scratch, q->hs + (int64_t)j * q->slot,
                   (size_t)((int64_t)q->bat[j].B * q->bat[j].T * Hd) * sizeof(float));
            if (pass == 1 && q->need_rows) { /* the statistics, and the rows at the micro-batch's place */
                for (int gi = 0; gi < ng; gi++) g->tap.fill[gi] = q->mb_off[i];
                rc = qd_model_block(g->m, k, &q->bat[j], q->scratch, &tk);
                for (int gi = 0; gi < ng && !rc; gi++)
                    if (g->tap.X[gi]) QD_ASSERT_EQ(g->tap.fill[gi], q->mb_off[i + 1]);
            } else
                rc = qd_model_block(g->m, k, &q->bat[j], q->scratch, &hk);
        }
        if ((rc = agree(g, rc))) break;
        const double tr = qd_now();
        if (pass == 0) { /* every rank needs the grids: absmax everywhere */
            qd_calib_allreduce(g->comm, stats);
            for (int i = 0; i < qd_calib_num_groups(stats) && g->size > 1; i++)
                g->res->reduce_bytes += qd_calib_group_at(stats, i)->in * 4.0;
        } else /* the integer sums only where they are used */
            reduce_to_owners(g, stats, plan);
        g->res->phase[QD_PH_REDUCE] += qd_now() - tr;
        g->res->phase[QD_PH_FORWARD] -= qd_now() - tr; /* counted in the whole call below */
        if (pass == 0) qd_calib_begin_accumulate(stats);
    }
    for (int gi = 0; gi < ng && !rc; gi++) {
        if (!g->tap.X[gi]) continue;
        const int64_t in = qd_model_linear(g->m, qd_model_group_first(g->m, gi))->in;
        for (int i = 0; i < q->nmb; i++)
            qd_coll_bcast(g->comm, g->tap.X[gi] + q->mb_off[i] * in,
                          (size_t)((q->mb_off[i + 1] - q->mb_off[i]) * in) * sizeof(float), i % g->size);
    }
    *stats_out = stats;
    return rc;
}

/* Block k's tensors: every rank does its groups' share without waiting (plan_block), then one
 * agreement, then the results are gathered (a column order from its group's first rank) and the
 * block's weights dequantized for the next step. *nt: tensors quantized. */
static int seq_quantize(gjob *g, const qd_calib_plan *p, qd_calib *stats, int *nt)
{
    int ts[QD_CALIB_PLAN_MAX];
    float *H = NULL;
    int Hgroup = -1, rc = QD_OK;
    const double tq = qd_now();
    for (int b = 0; b < p->nbt && !rc; b++) rc = result_alloc(g, g->lin_tensor[p->bt[b]]);
    for (int b = 0; b < p->nbt; b++) {
        const int ti = g->lin_tensor[p->bt[b]], gi = p->tg[b], mine = plan_mine(g, p, gi);
        const int solo = mine && prep_solo(g, p, gi);
        if (rc && !(solo && prep_starts(g, p, b))) continue; /* a solo range's exchange goes on */
        const int need_h =
            mine && (solo ? g->rank == p->lo[gi] : !rows_kept(g, ti) || (wants_g_idx(g, ti) && g->rank == p->lo[gi]));
        if (need_h && !rc) rc = hessian(g, stats, p->grp[gi], &H, &Hgroup);
        if (need_h && !rc && later_run(p, b) == 0) /* H serves the group's tensors: the sums go now */
            qd_calib_release(qd_calib_find(stats, p->grp[gi]));
        if (solo && prep_starts(g, p, b)) rc = prep_share(g, p, b, H, rc);
        if (rc) continue;
        rc = quantize_units_timed(g, ti, need_h && !rows_kept(g, ti) ? H : NULL, p->lo[gi], p->n[gi]);
        if (!rc && need_h && wants_g_idx(g, ti) && g->rank == p->lo[gi]) compute_g_idx(g, ti, H);
        if (!later_run(p, b)) qd_calib_release(qd_calib_find(stats, p->grp[gi]));
    }
    free(H);
    if (g->prep) { /* the last group's prepared state is not needed by the next block */
        g->prep_def->release(g->prep);
        g->prep = NULL;
    }
    g->res->phase[QD_PH_QUANTIZE] += qd_now() - tq;
    rc = agree(g, rc);
    tap_release(g);
    *nt = 0;
    const double tg = qd_now();
    for (int b = 0; b < p->nbt && !rc; b++) {
        const int ti = g->lin_tensor[p->bt[b]];
        allgather_result(g, ti);
        if (wants_g_idx(g, ti)) share_g_idx(g, ti, p->lo[p->tg[b]]);
        g->dq[p->bt[b]] = dequantize_result(&g->res->t[ti], &g->jt[ti]);
        QD_ASSERT(g->dq[p->bt[b]]);
        ts[(*nt)++] = ti;
    }
    g->res->phase[QD_PH_GATHER] += qd_now() - tg;
    if (!rc) rc = stream_write(g, ts, *nt);
    return rc;
}

/* Whether block k's calibrated tensors are all complete in the resumed file and can be read
 * back (plain codes, scales and zeros: pruned and codebook tensors are computed again). */
static int block_in_file(const gjob *g, int k)
{
    int any = 0;
    for (int li = 0; li < qd_model_num_linears(g->m); li++) {
        const int ti = g->lin_tensor[li];
        if (qd_model_linear(g->m, li)->layer != k || ti < 0) continue;
        const qd_calib_result *r = &g->res->t[ti];
        if (!stream_complete(g, ti) || !g->stream->w || r->cbr || r->float_kept || qd_sparsity_active(&g->jt[ti].sp))
            return 0;
        any = 1;
    }
    return any;
}

/* Block k's calibrated tensors read back from the resumed file and dequantized for the forward
 * through the block: the same codes, scales and zeros as when they were computed, so the later
 * blocks see the same inputs. */
static int block_read_back(gjob *g, int k)
{
    int rc = QD_OK;
    const double t0 = qd_now();
    for (int li = 0; li < qd_model_num_linears(g->m) && !rc; li++) {
        const int ti = g->lin_tensor[li];
        if (qd_model_linear(g->m, li)->layer != k || ti < 0) continue;
        qd_calib_result *r = &g->res->t[ti];
        const qd_qscheme *sc = &g->jt[ti].scheme;
        const int rec = g->stream->rec[ti];
        if ((rc = result_alloc(g, ti))) break;
        uint8_t *packed = malloc((size_t)(r->rows * qd_packed_row_bytes(r->cols, sc->bits)) + 1);
        if (!packed) rc = qd_err_set(QD_ENOMEM, "out of memory reading '%s' back", qd_ckpt_tensor(g->ck, ti)->name);
        if (!rc) rc = qd_h5m_read_rows(g->stream->w, rec, QD_H5M_QWEIGHT, 0, r->rows, packed);
        if (!rc) qd_unpack_matrix(packed, r->rows, r->cols, sc->bits, r->codes);
        free(packed);
        if (!rc) rc = qd_h5m_read_rows(g->stream->w, rec, QD_H5M_SCALES, 0, r->rows, r->scales);
        if (!rc && !sc->sym) rc = qd_h5m_read_rows(g->stream->w, rec, QD_H5M_ZEROS, 0, r->rows, r->zeros);
        for (int64_t i = 0; !rc && sc->sym && i < r->rows * r->ng; i++) r->zeros[i] = 1 << (sc->bits - 1);
        if (!rc && r->has_g_idx) {
            r->g_idx = qd_xmalloc((size_t)r->cols * sizeof *r->g_idx);
            rc = qd_h5m_read_rows(g->stream->w, rec, QD_H5M_G_IDX, 0, r->cols, r->g_idx);
        }
        if (!rc && !(g->dq[li] = dequantize_result(r, &g->jt[ti])))
            rc = qd_err_set(QD_ENOMEM, "out of memory dequantizing '%s'", qd_ckpt_tensor(g->ck, ti)->name);
        result_drop(g, ti);
    }
    g->res->phase[QD_PH_WRITE] += qd_now() - t0;
    return agree(g, rc);
}

/* Whether every Linear block k runs has its dequantized weights (else the forward needs the
 * block's F32 weights loaded). */
static int block_dequantized(const gjob *g, int k)
{
    const int l0 = qd_model_block_set(g->m, k) * QD_LIN_PER_BLOCK;
    for (int j = 0; j < QD_LIN_PER_BLOCK; j++)
        if (l0 + j < qd_model_num_linears(g->m) && !g->dq[l0 + j]) return 0;
    return 1;
}

/* Advances this rank's residual streams through block k as quantized. */
static int seq_advance(gjob *g, seqstate *q, int k)
{
    qd_model_hooks adv = {.user = g, .linear_apply = apply_dq};
    int rc = QD_OK;
    for (int j = 0; j < q->nloc && !rc; j++) {
        g->T = q->bat[j].T; /* the per-item products of apply_dq */
        rc = qd_model_block(g->m, k, &q->bat[j], q->hs + (int64_t)j * q->slot, &adv);
    }
    rc = agree(g, rc);
    for (int li = 0; li < qd_model_num_linears(g->m); li++) {
        if (qd_model_linear(g->m, li)->last_layer > k) continue; /* shared weights a later block runs */
        free(g->dq[li]);
        g->dq[li] = NULL;
    }
    return rc;
}

/* The heap's free pages back to the system (QD_MALLOC_TRIM=0 leaves it out to measure that):
 * without it the block's temporaries under glibc's mmap threshold stay resident. */
static void heap_trim(void)
{
    const char *e = getenv("QD_MALLOC_TRIM");
    if (!e || strcmp(e, "0")) qd_mem_trim();
}

/* After block k: the heap trimmed (the block's Hessians, sums and dequantized weights are freed
 * by now; without this the resident memory of a long job grows block by block), and each rank's
 * resident memory, its peak so far and the heap in use are printed with the progress lines. */
static void block_memory(gjob *g, int k)
{
    heap_trim();
    qd_mem_now mine;
    qd_mem_probe(&mine);
    qd_mem_now *all = g->rank == 0 ? qd_xcalloc((size_t)g->size, sizeof *all) : NULL;
    qd_coll_gather(g->comm, &mine, sizeof mine, all, 0);
    if (g->rank == 0) {
        if (g->progress) {
            printf("memory after block %d (MB per rank, resident / peak / heap in use / heap held):", k + 1);
            for (int r = 0; r < g->size; r++)
                printf(" %.0f/%.0f/%.0f/%.0f", all[r].rss * 1e-6, all[r].hwm * 1e-6, all[r].heap_used * 1e-6,
                       all[r].heap_held * 1e-6);
            printf("\n");
        }
        free(all);
    }
}

static int run_sequential(gjob *g, qd_calib_data *data)
{
    const qd_model_config *c = qd_model_cfg(g->m);
    seqstate q = {0};
    int rc = seq_embed(g, data, &q);
    if (!rc) seq_row_offsets(g, &q);
    uint8_t *sel = qd_xmalloc((size_t)qd_model_num_groups(g->m));
    qd_calib_plan plan;
    for (int k = 0; k < c->layers && !rc; k++) {
        const double t0 = qd_now();
        if ((rc = agree(g, qd_model_block_load(g->m, k)))) break; /* this block's weights only */
        if (block_in_file(g, k)) {
            rc = block_read_back(g, k);
            if (g->progress && g->rank == 0 && !rc)
                printf("calibrated: block %d/%d: read back from the resumed file\n", k + 1, c->layers);
        } else if (seq_select(g, k, sel)) {
            qd_calib *stats = NULL;
            plan_block(g, k, &plan);
            rc = seq_calibrate(g, &q, k, sel, &plan, &stats);
            const double t_cal = qd_now() - t0;
            g->res->phase[QD_PH_FORWARD] += t_cal;
            /* the statistics are complete: the units read their rows from the checkpoint and the
             * samples advance through the block as quantized, so its F32 weights go before the
             * block's Hessians and factorizations arrive */
            qd_model_block_release(g->m, k);
            heap_trim();
            int nt = 0;
            if (!rc) rc = seq_quantize(g, &plan, stats, &nt);
            qd_calib_free(stats);
            if (g->progress && g->rank == 0 && !rc)
                printf("calibrated: block %d/%d: %d tensors, calibration %.2f s, quantization %.2f s\n", k + 1,
                       c->layers, nt, t_cal, qd_now() - t0 - t_cal);
        }
        const double ta = qd_now();
        if (!rc && !block_dequantized(g, k)) rc = agree(g, qd_model_block_load(g->m, k)); /* its float Linears */
        if (!rc) rc = seq_advance(g, &q, k);
        g->res->phase[QD_PH_FORWARD] += qd_now() - ta;
        qd_model_block_release(g->m, k);
        block_memory(g, k);
        if (g->progress && g->rank == 0) fflush(stdout);
    }
    tap_release(g);
    free(q.mb_off);
    free(sel);
    free(q.hs);
    free(q.scratch);
    for (int j = 0; j < q.nloc; j++) free((void *)q.bat[j].mask);
    free(q.bat);
    return rc;
}

/* ---- pipeline mode -------------------------------------------------------------------------- */

/* One pipelined calibration of the FP32 model: each rank the statistics of its blocks' groups,
 * and the input rows of those whose methods learn from them (every micro-batch passes this
 * rank's blocks in order, so they arrive in sample order). */
static int fp_calibrate(gjob *g, qd_calib_data *data, qd_calib **stats_out)
{
    const int ng = qd_model_num_groups(g->m), nl = qd_model_num_linears(g->m);
    uint8_t *want = qd_xcalloc((size_t)ng, 1), *sel = qd_xmalloc((size_t)ng);
    for (int li = 0; li < nl; li++)
        if (g->lin_tensor[li] >= 0) want[qd_model_linear(g->m, li)->input_group] = 1;
    qd_calib_rank_groups(g->m, want, QD_CALIB_PIPELINE, g->rank, g->size, sel);
    qd_calib *stats = NULL;
    int rc = qd_calib_new(g->m, sel, &stats), need_rows = 0;
    for (int li = 0; li < nl && !rc; li++) {
        const qd_linear *L = qd_model_linear(g->m, li);
        if (g->lin_tensor[li] >= 0 && sel[L->input_group] && rows_kept(g, g->lin_tensor[li]) &&
            !g->tap.X[L->input_group]) {
            rc = tap_keep(g, L->input_group);
            need_rows = 1;
        }
    }
    rc = agree(g, rc);
    if (!rc) {
        qd_model_hooks tk = {.user = &g->tap, .linear_input = tap_input};
        qd_calib_opts o = {.mode = QD_CALIB_PIPELINE,
                           .microbatch = g->cfg->microbatch,
                           .quiet = !g->progress,
                           .tap = need_rows ? &tk : NULL};
        rc = qd_calib_run(g->comm, g->m, data, &o, stats);
        for (int gi = 0; gi < ng && !rc; gi++)
            if (g->tap.X[gi]) QD_ASSERT_EQ(g->tap.fill[gi], g->tap.nrows);
    }
    free(want);
    free(sel);
    *stats_out = stats;
    return rc;
}

/* Each rank quantizes the tensors of its blocks (where their statistics are), all at once; then
 * the results are gathered, a column order sent along from its owner (no other rank holds the
 * input's H). */
static int fp_quantize(gjob *g, qd_calib *stats)
{
    const int nl = qd_model_num_linears(g->m);
    int *owner = qd_xmalloc((size_t)nl * sizeof *owner);
    const double tq = qd_now();
    float *H = NULL;
    int Hgroup = -1, rc = QD_OK;
    double held = 0;
    for (int i = 0; i < qd_calib_num_groups(stats); i++)
        held += (double)qd_calib_acc_len(qd_calib_group_at(stats, i)->in) * 8;
    if (held > g->res->stats_bytes) g->res->stats_bytes = held;
    for (int li = 0; li < nl && !rc; li++) {
        const qd_linear *L = qd_model_linear(g->m, li);
        int ti = g->lin_tensor[li], k0, k1;
        owner[li] = 0;
        if (ti < 0) continue;
        for (int r = 0; r < g->size; r++) {
            qd_calib_pipeline_blocks(qd_model_cfg(g->m)->layers, r, g->size, &k0, &k1);
            if (L->layer >= k0 && L->layer < k1) owner[li] = r;
        }
        const int mine = owner[li] == g->rank, need_h = mine && (!rows_kept(g, ti) || wants_g_idx(g, ti));
        if (mine) rc = result_alloc(g, ti);
        if (need_h && !rc) rc = hessian(g, stats, L->input_group, &H, &Hgroup);
        if (!rc) rc = quantize_units_timed(g, ti, need_h && !rows_kept(g, ti) ? H : NULL, owner[li], 1);
        if (!rc && need_h && wants_g_idx(g, ti)) compute_g_idx(g, ti, H);
        int later = 0; /* another tensor on the same input: the sums stay until it has H */
        for (int l2 = li + 1; l2 < nl && !later; l2++)
            later = g->lin_tensor[l2] >= 0 && qd_model_linear(g->m, l2)->input_group == L->input_group;
        if (!later && qd_calib_find(stats, L->input_group)) qd_calib_release(qd_calib_find(stats, L->input_group));
    }
    free(H);
    g->res->phase[QD_PH_QUANTIZE] += qd_now() - tq;
    rc = agree(g, rc);
    tap_release(g);
    double tg = qd_now();
    int *ts = qd_xmalloc((size_t)nl * sizeof *ts), nt = 0;
    for (int li = 0; li < nl && !rc; li++) {
        const int ti = g->lin_tensor[li];
        if (ti >= 0) {
            if ((rc = agree(g, result_alloc(g, ti)))) break;
            allgather_result(g, ti);
            if (wants_g_idx(g, ti)) share_g_idx(g, ti, owner[li]);
            ts[nt++] = ti;
        }
        /* a block's tensors to the writer once gathered: a rank holds one block's, not all */
        if (nt && (li + 1 == nl || qd_model_linear(g->m, li + 1)->layer != qd_model_linear(g->m, li)->layer)) {
            g->res->phase[QD_PH_GATHER] += qd_now() - tg;
            rc = stream_write(g, ts, nt);
            tg = qd_now();
            nt = 0;
        }
    }
    g->res->phase[QD_PH_GATHER] += qd_now() - tg;
    free(ts);
    free(owner);
    return rc;
}

static int run_fp(gjob *g, qd_calib_data *data)
{
    const double t0 = qd_now();
    qd_calib *stats = NULL;
    int k0, k1, rc = QD_OK;
    qd_calib_pipeline_blocks(qd_model_cfg(g->m)->layers, g->rank, g->size, &k0, &k1);
    for (int k = k0; k < k1 && !rc; k++) rc = qd_model_block_load(g->m, k); /* this rank's blocks only */
    if (!(rc = agree(g, rc))) rc = fp_calibrate(g, data, &stats);
    g->res->phase[QD_PH_FORWARD] += qd_now() - t0;
    for (int k = k0; k < k1; k++) qd_model_block_release(g->m, k);
    if (g->progress && g->rank == 0 && !rc) printf("gptq: calibration (pipeline mode) %.2f s\n", qd_now() - t0);
    if (!rc) rc = fp_quantize(g, stats);
    if (g->progress && g->rank == 0 && !rc) printf("gptq: quantization %.2f s\n", qd_now() - t0);
    qd_calib_free(stats);
    tap_release(g);
    return rc;
}

/* ---- the phase ------------------------------------------------------------------------------- */

/* The model's Linears and the checkpoint's tensors mapped both ways, and a result allocated for
 * every tensor whose method needs calibration. */
static int map_tensors(gjob *g)
{
    const int n = qd_ckpt_num_tensors(g->ck), nl = qd_model_num_linears(g->m);
    g->lin_tensor = qd_xmalloc((size_t)nl * sizeof(int));
    g->tensor_lin = qd_xmalloc((size_t)(n ? n : 1) * sizeof(int));
    g->dq = qd_xcalloc((size_t)nl, sizeof(float *));
    g->tap.X = qd_xcalloc((size_t)qd_model_num_groups(g->m), sizeof(float *));
    g->tap.fill = qd_xcalloc((size_t)qd_model_num_groups(g->m), sizeof(int64_t));
    for (int i = 0; i < n; i++) g->tensor_lin[i] = -1;
    for (int li = 0; li < nl; li++) {
        char name[200];
        snprintf(name, sizeof name, "%s.weight", qd_model_linear(g->m, li)->name);
        int ti = qd_ckpt_find(g->ck, name);
        g->lin_tensor[li] = ti >= 0 && qd_job_needs(g->cfg, &g->jt[ti]) != QD_NEEDS_NOTHING ? ti : -1;
        if (ti >= 0) g->tensor_lin[ti] = li;
    }
    for (int i = 0; i < n; i++) {
        const qd_job_tensor *j = &g->jt[i];
        if (qd_job_needs(g->cfg, j) == QD_NEEDS_NOTHING) continue;
        const char *name = qd_ckpt_tensor(g->ck, i)->name;
        if (g->tensor_lin[i] < 0)
            return qd_err_set(QD_ECONFIG,
                              "tensor '%s': %s needs the inputs of an encoder Linear, and this is not "
                              "one; give it method rtn with an override",
                              name, qd_method_name(j->method));
        qd_calib_result *r = &g->res->t[i]; /* its arrays come with its block (result_alloc) */
        r->rows = j->rows;
        r->cols = j->cols;
        r->ng = qd_rtn_ngroups(&j->scheme, r->cols);
        r->calibrated = 1;
        r->has_g_idx = wants_g_idx(g, i);
        r->float_kept = qd_sparsity_active(&j->sp) && g->cfg->prune_only;
        r->cbr = qd_method_codebook_row(j->method, &j->scheme, r->cols);
    }
    return QD_OK;
}

void qd_calib_json_data(cJSON *o, const qd_job_config *cfg, const qd_calib_data *data)
{
    cJSON_AddStringToObject(o, "data", cfg->calib);
    cJSON_AddStringToObject(o, "kind", qd_calib_data_kind(data));
    cJSON_AddNumberToObject(o, "nsamples", qd_calib_data_count(data));
    cJSON_AddNumberToObject(o, "seqlen", qd_calib_data_tokens(data));
    cJSON_AddNumberToObject(o, "real_tokens", qd_calib_data_real_tokens(data));
    cJSON_AddNumberToObject(o, "seed", cfg->calib_seed);
}

/* What the file's "calibration" attribute records: the calibrated methods used ("gptq",
 * "adaround", "gptq+adaround"), the data and how it was used. */
static char *calibration_json(const gjob *g, const qd_calib_data *data)
{
    char methods[128] = "";
    for (int m = 0; m < QD_METHOD_COUNT_; m++) {
        int used = 0;
        for (int i = 0; i < qd_ckpt_num_tensors(g->ck); i++)
            used |= g->jt[i].kind == QD_JOB_QUANT && g->jt[i].method == (qd_method)m &&
                    qd_job_needs(g->cfg, &g->jt[i]) != QD_NEEDS_NOTHING;
        if (used)
            snprintf(methods + strlen(methods), sizeof methods - strlen(methods), "%s%s", methods[0] ? "+" : "",
                     qd_method_name((qd_method)m));
    }
    const qd_job_config *cfg = g->cfg;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "method", methods);
    qd_calib_json_data(o, cfg, data);
    cJSON_AddStringToObject(o, "mode", qd_calib_mode_name(cfg->calib_mode));
    char *t = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return t;
}

static void print_data(const gjob *g, const qd_calib_data *data)
{
    const qd_job_config *cfg = g->cfg;
    printf("gptq: calibration data %s: %d %s samples x %d tokens (%d real), %s mode\n", cfg->calib,
           qd_calib_data_count(data), qd_calib_data_kind(data), qd_calib_data_tokens(data),
           qd_calib_data_real_tokens(data), qd_calib_mode_name(cfg->calib_mode));
    int rows = 0;
    for (int i = 0; i < qd_ckpt_num_tensors(g->ck); i++) rows |= rows_kept(g, i);
    if (rows)
        printf("adaround: mini-batch form, %d of the %lld calibration rows per step (seed %d)\n", cfg->ada_batch,
               (long long)g->tap.nrows, cfg->calib_seed);
}

/* The busiest rank's estimate with another configuration or rank count. */
static double estimate_with(const gjob *g, const qd_job_config *cfg, int N, int T, int64_t rows, int ranks)
{
    double worst = 0, b;
    char bd[512];
    for (int r = 0; r < ranks; r++) {
        qd_calib_estimate_rank(cfg, g->ck, g->jt, g->m, N, T, rows, ranks, r, &b, bd, sizeof bd);
        if (b > worst) worst = b;
    }
    return worst;
}

/* Before anything is computed: this rank's estimate against the memory it can have. Too much is
 * an error that names the estimate and the options that fit (more ranks on more hosts, the other
 * calibration mode, fewer samples), instead of the kernel killing the job half way. */
static int memory_check(gjob *g, const qd_calib_data *data)
{
    char src[256];
    const double have = qd_mem_rank_limit(g->cfg->mem_per_rank, qd_coll_node_size(g->comm), src, sizeof src);
    const double need = g->res->estimate_bytes;
    if (have <= 0 || need <= have) return QD_OK;
    const int N = qd_calib_data_count(data), T = qd_calib_data_tokens(data);
    const int64_t rows = g->tap.nrows;
    char opts[768] = "";
    size_t len = 0;
#define QD_OPTION(...) len += (size_t)snprintf(opts + len, len < sizeof opts ? sizeof opts - len : 0, __VA_ARGS__)
    for (int f = 2; f <= 8; f *= 2) {
        const double e = estimate_with(g, g->cfg, N, T, rows, g->size * f);
        QD_OPTION("%s%d ranks on more hosts: %.0f MB per rank%s", len ? "; " : "", g->size * f, e * 1e-6,
                  e <= have ? " (fits)" : "");
    }
    qd_job_config other = *g->cfg;
    other.calib_mode = g->cfg->calib_mode == QD_CALIB_FP ? QD_CALIB_SEQUENTIAL : QD_CALIB_FP;
    double e = estimate_with(g, &other, N, T, rows, g->size);
    QD_OPTION("; --calib-mode %s: %.0f MB%s", qd_calib_mode_name(other.calib_mode), e * 1e-6,
              e <= have ? " (fits)" : "");
    if (N > 1) {
        e = estimate_with(g, g->cfg, N / 2, T, rows / 2, g->size);
        QD_OPTION("; --nsamples %d: %.0f MB%s", N / 2, e * 1e-6, e <= have ? " (fits)" : "");
    }
#undef QD_OPTION
    return qd_err_set(QD_ENOMEM,
                      "rank %d: the calibrated phase needs about %.0f MB per rank (%s), more than the %.0f MB a rank "
                      "can have (%s); options: %s; or --mem-per-rank if more is there",
                      g->rank, need * 1e-6, g->res->estimate_text, have * 1e-6, src, opts);
}

struct qd_calib_job {
    gjob g;
    qd_calib_data *data;
    double t0;
};

int qd_calib_job_begin(const qd_job_config *cfg, MPI_Comm comm, qd_checkpoint *ck, const qd_job_tensor *jt,
                       int progress, qd_calib_results *out, qd_calib_job **job)
{
    memset(out, 0, sizeof *out);
    qd_calib_job *J = qd_xcalloc(1, sizeof *J);
    *job = J;
    gjob *g = &J->g;
    *g = (gjob){.cfg = cfg, .comm = comm, .ck = ck, .jt = jt, .progress = progress, .res = out};
    g->rank = qd_coll_rank(comm);
    g->size = qd_coll_size(comm);
    J->t0 = qd_now();
    const int n = qd_ckpt_num_tensors(ck);
    out->n = n;
    out->t = qd_xcalloc((size_t)(n ? n : 1), sizeof *out->t);
    /* block weights loaded block by block, the word table's rows read as samples are embedded */
    int rc = qd_model_load_flags(cfg->model, QD_MODEL_STREAM_LINEARS | QD_MODEL_STREAM_EMBEDDINGS, &g->m);
    if (!rc) rc = map_tensors(g);
    if (!rc) rc = qd_calib_data_open(g->m, cfg->calib, cfg->nsamples, cfg->seqlen, (uint64_t)cfg->calib_seed, &J->data);
    rc = agree(g, rc);
    out->phase[QD_PH_READ] = qd_now() - J->t0;
    if (!rc) {
        g->tap.nrows = qd_calib_data_real_tokens(J->data);
        qd_calib_estimate_rank(cfg, ck, jt, g->m, qd_calib_data_count(J->data), qd_calib_data_tokens(J->data),
                               g->tap.nrows, g->size, g->rank, &out->estimate_bytes, out->estimate_text,
                               sizeof out->estimate_text);
        rc = agree(g, memory_check(g, J->data));
    }
    if (!rc) out->calibration_json = calibration_json(g, J->data);
    return rc;
}

int qd_calib_job_blocks(qd_calib_job *J, const qd_calib_stream *stream)
{
    gjob *g = &J->g;
    g->stream = stream;
    if (g->progress && g->rank == 0) print_data(g, J->data);
    const int rc = g->cfg->calib_mode == QD_CALIB_FP ? run_fp(g, J->data) : run_sequential(g, J->data);
    g->res->seconds = qd_now() - J->t0;
    return rc;
}

void qd_calib_job_end(qd_calib_job *J)
{
    if (!J) return;
    gjob *g = &J->g;
    qd_calib_data_free(J->data);
    free(g->lin_tensor);
    free(g->tensor_lin);
    free(g->tap.X); /* the rows themselves are released by the phase that kept them */
    free(g->tap.fill);
    if (g->dq) {
        for (int li = 0; g->m && li < qd_model_num_linears(g->m); li++) free(g->dq[li]);
        free(g->dq);
    }
    if (g->prep) g->prep_def->release(g->prep);
    qd_model_free(g->m);
    free(J);
}
