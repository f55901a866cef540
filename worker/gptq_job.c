/* worker/gptq_job.c — calibration + GPTQ over the job's ranks (see gptq_job.h). */
#include <cblas.h>
#include <math.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collective/collective.h"
#include "model/calib.h"
#include "model/calib_data.h"
#include "model/model.h"
#include "quant/adaround.h"
#include "quant/gptq.h"
#include "worker/calib_run.h"
#include "worker/gptq_job.h"
#include "worker/sparse_unit.h"

int qd_job_needs_calibration(const qd_job_tensor *jt, int n)
{
    for (int i = 0; i < n; i++)
        if (jt[i].kind == QD_JOB_QUANT && jt[i].method != QD_METHOD_RTN) return 1;
    return 0;
}

void qd_job_gptq_opts(const qd_job_config *cfg, const qd_job_tensor *jt, void *out)
{
    qd_gptq_opts *o = out;
    qd_gptq_default_opts(o);
    o->bits = jt->scheme.bits;
    o->sym = jt->scheme.sym;
    o->group_size = jt->scheme.gran == QD_GRAN_GROUP ? jt->scheme.group_size : -1;
    o->act_order = cfg->act_order;
    o->static_groups = cfg->static_groups;
    o->damp = (float)cfg->damp;
    o->block_size = cfg->block_size;
    if (jt->clip_mse) o->clip = (qd_clip_opts){100, 0.8f, 2.0f};
}

void qd_gptq_results_free(qd_gptq_results *r)
{
    if (!r || !r->t) return;
    for (int i = 0; i < r->n; i++) {
        free(r->t[i].codes);
        free(r->t[i].scales);
        free(r->t[i].zeros);
        free(r->t[i].g_idx);
        free(r->t[i].mask);
        free(r->t[i].fweight);
    }
    free(r->t);
    free(r->calibration_json);
    memset(r, 0, sizeof *r);
}

/* ---- state shared by the phases ------------------------------------------------------------ */

/* AdaRound's mini-batch form (--batch N > 0) needs each Linear input's calibration rows, not
 * only H: X [nrows][in] per input group, the real (unpadded) tokens of all samples in sample
 * order, micro-batch after micro-batch, so that X is the same for any number of ranks. The hook
 * copies each call's real rows to fill[group] and advances it; `inner` (the statistics) runs
 * first. */
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

typedef struct {
    const qd_job_config *cfg;
    MPI_Comm comm;
    int rank, size, progress;
    qd_checkpoint *ck;
    const qd_job_tensor *jt;
    qd_model *m;
    int *lin_tensor; /* model linear -> checkpoint tensor index, or -1 */
    int *tensor_lin; /* checkpoint tensor -> model linear, or -1 */
    float **dq;      /* model linear -> dequantized weight while its block is advanced */
    int T;           /* tokens per item (for the per-item products) */
    qd_gptq_results *res;
    /* the last prepared state: query, key and value share their input (same H), so with the same
     * options they share it */
    qd_gptq_prep *prep;
    int prep_group;
    qd_gptq_opts prep_opts;
    rowtap tap; /* the rows of the groups in hand (AdaRound's mini-batch form) */
} gjob;

/* Whether tensor ti is learned by AdaRound from calibration rows (the mini-batch form) rather
 * than through H. */
static int ada_rows(const gjob *g, int ti) { return g->jt[ti].method == QD_METHOD_ADAROUND && g->cfg->ada_batch > 0; }

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

static int same_opts(const qd_gptq_opts *a, const qd_gptq_opts *b)
{
    return a->bits == b->bits && a->sym == b->sym && a->group_size == b->group_size && a->act_order == b->act_order &&
           a->static_groups == b->static_groups && a->damp == b->damp && a->block_size == b->block_size &&
           a->clip.grid == b->clip.grid && a->clip.maxshrink == b->clip.maxshrink && a->clip.norm == b->clip.norm;
}

static int agree(gjob *g, int rc)
{
    char msg[1024];
    return qd_coll_agree_msg(g->comm, rc, msg, sizeof msg, NULL);
}

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

/* AdaRound of one unit of rows: scales from the MSE clipping search (per channel or per group),
 * rounding learned against H, or (X not NULL: the mini-batch form) against mini-batches of the
 * NX calibration rows X [NX][C], drawn with the calibration seed. Rows are independent given H or
 * X, and every unit draws the same mini-batches. */
static int adaround_unit(gjob *g, const qd_job_tensor *j, const float *W, int64_t n, int64_t C, const float *H,
                         const float *X, int64_t NX, uint8_t *codes, float *scales, int32_t *zeros)
{
    const qd_job_config *cfg = g->cfg;
    int rc = qd_check_finite(W, n, C, "weight");
    if (rc) return rc;
    int64_t G = j->scheme.gran == QD_GRAN_GROUP && j->scheme.group_size < C ? j->scheme.group_size : C;
    int64_t ng = (C + G - 1) / G;
    qd_clip_opts mse = {100, 0.8f, 2.0f};
    for (int64_t gi = 0; gi < ng; gi++)
        qd_find_params_rows(W + gi * G, n, QD_MIN(G, C - gi * G), C, j->scheme.bits, j->scheme.sym, &mse, scales + gi,
                            zeros + gi, ng);
    qd_qparams p = {.rows = n,
                    .cols = C,
                    .ngroups = ng,
                    .group_size = G,
                    .bits = j->scheme.bits,
                    .sym = j->scheme.sym,
                    .gran = G < C ? QD_GRAN_GROUP : QD_GRAN_CHANNEL,
                    .scales = scales,
                    .zeros = zeros};
    qd_adaround_problem pb = {.R = n, .C = C, .W = W, .X = X, .N = X ? NX : 0, .H = X ? NULL : H, .p = &p};
    qd_adaround_opts o;
    qd_adaround_default_opts(&o);
    o.iters = cfg->ada_iters;
    o.lambda = (float)cfg->ada_lambda;
    o.beta_start = (float)cfg->ada_beta_start;
    o.beta_end = (float)cfg->ada_beta_end;
    o.warmup = (float)cfg->ada_warmup;
    o.lr = (float)cfg->ada_lr;
    o.seed = (uint64_t)cfg->calib_seed;
    if (X) o.batch = cfg->ada_batch;
    o.tiles = cfg->ada_tiles; /* agreed by all ranks (qd_job_run) */
    return qd_adaround_quantize(&pb, &o, codes, NULL, NULL);
}

/* GPTQ (or AdaRound) of the units of tensor ti that this rank owns; owner(u) decides. AdaRound in
 * the mini-batch form reads the rows its input group keeps in g->tap instead of H. */
static int quantize_units(gjob *g, int ti, const float *H, int64_t *unit_counter, int owner_fixed)
{
    const qd_job_tensor *j = &g->jt[ti];
    qd_gptq_result *r = &g->res->t[ti];
    const qd_tensor_info *t = qd_ckpt_tensor(g->ck, ti);
    qd_gptq_opts o;
    qd_job_gptq_opts(g->cfg, j, &o);
    qd_gptq_prep *prep = NULL;
    int rc = QD_OK;
    const int ada = j->method == QD_METHOD_ADAROUND;
    const int64_t R = j->rows, C = j->cols, U = QD_GPTQ_UNIT_ROWS;
    const int64_t nunits = (R + U - 1) / U;
    /* does this rank own any unit? prepare only then */
    int any = 0;
    for (int64_t u = 0; u < nunits; u++) {
        int owner = owner_fixed >= 0 ? owner_fixed : (int)((*unit_counter + u) % g->size);
        any |= owner == g->rank;
    }
    const int group = qd_model_linear(g->m, g->tensor_lin[ti])->input_group;
    if (any && !ada) {
        if (g->prep && g->prep_group == group && same_opts(&g->prep_opts, &o))
            prep = g->prep;
        else {
            qd_gptq_prep_free(g->prep);
            g->prep = NULL;
            if ((rc = qd_gptq_prepare(H, C, &o, &prep))) {
                qd_err_wrap(rc, "tensor '%s': ", t->name);
                *unit_counter += nunits;
                return rc;
            }
            g->prep = prep;
            g->prep_group = group;
            g->prep_opts = o;
        }
    }
    float *W = any ? malloc((size_t)(U * C) * sizeof(float)) : NULL;
    if (any && !W) rc = qd_err_set(QD_ENOMEM, "tensor '%s': out of memory", t->name);
    for (int64_t u = 0; u < nunits && !rc; u++) {
        int owner = owner_fixed >= 0 ? owner_fixed : (int)((*unit_counter + u) % g->size);
        if (owner != g->rank) continue;
        int64_t r0 = u * U, n = QD_MIN(U, R - r0);
        if ((rc = qd_ckpt_read_rows_f32(g->ck, ti, r0, n, W))) break;
        if (ada) {
            const float *X = ada_rows(g, ti) ? g->tap.X[group] : NULL;
            QD_ASSERT(X || !ada_rows(g, ti));
            if ((rc = adaround_unit(g, j, W, n, C, H, X, g->tap.nrows, r->codes + r0 * C, r->scales + r0 * r->ng,
                                    r->zeros + r0 * r->ng))) {
                qd_err_wrap(rc, "tensor '%s' rows [%lld, %lld): ", t->name, (long long)r0, (long long)(r0 + n));
                break;
            }
            continue;
        }
        if (qd_sparsity_active(&j->sp)) {
            rc = qd_sparse_unit(j, &o, prep, H, g->cfg->prune_only, W, n, C, r->codes + r0 * C, r->scales + r0 * r->ng,
                                r->zeros + r0 * r->ng, r->mask + r0 * C);
            if (rc) {
                qd_err_wrap(rc, "tensor '%s' rows [%lld, %lld): ", t->name, (long long)r0, (long long)(r0 + n));
                break;
            }
            if (r->fweight) /* +0 for every zero: the all-reduce adds the other ranks' zeros */
                for (int64_t i = 0; i < n * C; i++) r->fweight[r0 * C + i] = W[i] == 0.0f ? 0.0f : W[i];
            continue;
        }
        qd_gptq_stats st;
        rc = qd_gptq_quantize_prepared(prep, W, n, r->codes + r0 * C, r->scales + r0 * r->ng, r->zeros + r0 * r->ng,
                                       NULL, &st);
        if (rc) {
            qd_err_wrap(rc, "tensor '%s' rows [%lld, %lld): ", t->name, (long long)r0, (long long)(r0 + n));
            break;
        }
        if (st.damp_used > r->damp_used) r->damp_used = st.damp_used;
        r->dead_columns = st.dead_columns;
    }
    *unit_counter += nunits;
    free(W);
    return rc; /* prep stays in g->prep for the next tensor with the same input */
}

/* Gather tensor ti's results on every rank: units not owned are zero, so sums (and ORs) of the
 * ranks' arrays are the owners' values. */
static void allgather_result(gjob *g, int ti)
{
    qd_gptq_result *r = &g->res->t[ti];
    int64_t nc = r->rows * r->cols, ns = r->rows * r->ng, step = 1 << 28;
    for (int64_t off = 0; off < nc; off += step)
        QD_MPI_CHECK(
            MPI_Allreduce(MPI_IN_PLACE, r->codes + off, (int)QD_MIN(step, nc - off), MPI_UINT8_T, MPI_BOR, g->comm));
    for (int64_t off = 0; r->mask && off < nc; off += step)
        QD_MPI_CHECK(
            MPI_Allreduce(MPI_IN_PLACE, r->mask + off, (int)QD_MIN(step, nc - off), MPI_UINT8_T, MPI_BOR, g->comm));
    for (int64_t off = 0; r->fweight && off < nc; off += step) /* one owner per row, others exact zeros */
        QD_MPI_CHECK(
            MPI_Allreduce(MPI_IN_PLACE, r->fweight + off, (int)QD_MIN(step, nc - off), MPI_FLOAT, MPI_SUM, g->comm));
    QD_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, r->scales, (int)ns, MPI_FLOAT, MPI_SUM, g->comm));
    QD_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, r->zeros, (int)ns, MPI_INT32_T, MPI_SUM, g->comm));
    double d[2] = {r->damp_used, (double)r->dead_columns};
    QD_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, d, 2, MPI_DOUBLE, MPI_MAX, g->comm));
    r->damp_used = d[0];
    r->dead_columns = (int64_t)d[1];
}

/* g_idx of act-order results: the group of each original column (the same on every rank). */
static void compute_g_idx(gjob *g, int ti, const float *H)
{
    qd_gptq_result *r = &g->res->t[ti];
    const qd_job_tensor *j = &g->jt[ti];
    if (!g->cfg->act_order || j->method != QD_METHOD_GPTQ) return;
    qd_gptq_opts o;
    qd_job_gptq_opts(g->cfg, j, &o);
    r->g_idx = qd_xmalloc((size_t)r->cols * sizeof(int32_t));
    qd_gptq_g_idx(H, r->cols, &o, r->g_idx);
}

static float *dequantize_result(const qd_gptq_result *r, const qd_job_tensor *j)
{
    float *W = malloc((size_t)(r->rows * r->cols) * sizeof(float));
    if (!W) return NULL;
    if (r->fweight) {
        memcpy(W, r->fweight, (size_t)(r->rows * r->cols) * sizeof(float));
        return W;
    }
    int64_t G = j->scheme.gran == QD_GRAN_GROUP && j->scheme.group_size < r->cols ? j->scheme.group_size : r->cols;
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

/* Owners of a block's tensors: with at least as many tensors as ranks, whole tensors go to ranks
 * by longest-processing-time on their cost (GPTQ: the O(C^3) factorization, once per shared input,
 * plus 2 R C^2, so no factorization is repeated; AdaRound: its Adam steps, shard/plan.h's cost
 * with the job's iterations and batch, no factorization); otherwise -1 (row units round-robin
 * over all ranks). Deterministic: the same on every rank; results do not depend on it. */
static void assign_owners(gjob *g, const int *lins, int n, int *owner)
{
    if (g->size == 1 || n < g->size) {
        for (int i = 0; i < n; i++) owner[i] = g->size == 1 ? 0 : -1;
        return;
    }
    double cost[64], load[1024] = {0};
    int order[64];
    QD_ASSERT(n <= 64 && g->size <= 1024);
    const qd_plan_cost_opts co = qd_job_cost_opts(g->cfg);
    for (int i = 0; i < n; i++) {
        const qd_linear *L = qd_model_linear(g->m, lins[i]);
        order[i] = i;
        if (g->jt[g->lin_tensor[lins[i]]].method == QD_METHOD_ADAROUND) {
            cost[i] = qd_plan_cost(QD_METHOD_ADAROUND, L->out, L->in, &co);
            continue;
        }
        /* the previous tensor prepared the same input's factorization */
        int shared = i > 0 && qd_model_linear(g->m, lins[i - 1])->input_group == L->input_group &&
                     g->jt[g->lin_tensor[lins[i - 1]]].method == QD_METHOD_GPTQ;
        cost[i] = (shared ? 0.0 : (double)L->in * L->in * L->in) + 2.0 * L->out * (double)L->in * L->in;
    }
    for (int i = 1; i < n; i++) /* stable insertion sort by descending cost */
        for (int j = i; j > 0 && cost[order[j]] > cost[order[j - 1]]; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    for (int i = 0; i < n; i++) {
        int best = 0;
        for (int r = 1; r < g->size; r++)
            if (load[r] < load[best]) best = r;
        owner[order[i]] = best;
        load[best] += cost[order[i]];
    }
}

/* ---- sequential mode ------------------------------------------------------------------------ */

static int run_sequential(gjob *g, qd_calib_data *data)
{
    const qd_model_config *c = qd_model_cfg(g->m);
    const int N = qd_calib_data_count(data), mb = g->cfg->microbatch, T = qd_calib_data_tokens(data), Hd = c->hidden;
    const int nmb = (N + mb - 1) / mb;
    /* micro-batch i belongs to rank i % size: samples are sorted by length, so a contiguous split
     * would give rank 0 all the long ones */
    const int nloc = g->rank < nmb ? (nmb - g->rank + g->size - 1) / g->size : 0;
    const int64_t slot = (int64_t)mb * T * Hd;
    float *hs = malloc((size_t)(nloc > 0 ? nloc : 1) * (size_t)slot * sizeof(float));
    float *scratch = malloc((size_t)slot * sizeof(float));
    qd_batch *bat = qd_xcalloc((size_t)(nloc > 0 ? nloc : 1), sizeof *bat);
    int rc = hs && scratch ? QD_OK : qd_err_set(QD_ENOMEM, "calibration: out of memory for %d samples' activations", N);
    /* embed this rank's samples once; later blocks need only the shape and the mask */
    for (int j = 0; j < nloc && !rc; j++) {
        const int i = g->rank + j * g->size;
        qd_batch b;
        int first = i * mb, n = QD_MIN(mb, N - first);
        if ((rc = qd_calib_data_batch(data, first, n, &b))) break;
        if ((rc = qd_model_embed(g->m, &b, hs + (int64_t)j * slot))) break;
        /* the shape and a copy of the mask (the data's batch buffers are reused) */
        int32_t *mk = NULL;
        if (b.mask) {
            mk = qd_xmalloc((size_t)n * (size_t)b.T * sizeof *mk);
            memcpy(mk, b.mask, (size_t)n * (size_t)b.T * sizeof *mk);
        }
        bat[j] = (qd_batch){.B = n, .T = b.T, .mask = mk};
    }
    rc = agree(g, rc);
    const int ng = qd_model_num_groups(g->m), nl = qd_model_num_linears(g->m);
    /* AdaRound's mini-batch form: where each micro-batch's real tokens start in the rows X, from
     * every rank's micro-batches */
    int need_rows = 0;
    for (int li = 0; li < nl; li++) need_rows |= g->lin_tensor[li] >= 0 && ada_rows(g, g->lin_tensor[li]);
    int64_t *mb_off = need_rows ? qd_xcalloc((size_t)nmb + 1, sizeof *mb_off) : NULL;
    if (need_rows && !rc) {
        for (int j = 0; j < nloc; j++) {
            int64_t cnt = (int64_t)bat[j].B * bat[j].T;
            if (bat[j].mask) {
                cnt = 0;
                for (int64_t t = 0; t < (int64_t)bat[j].B * bat[j].T; t++) cnt += bat[j].mask[t] != 0;
            }
            mb_off[g->rank + j * g->size + 1] = cnt;
        }
        QD_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, mb_off, nmb + 1, MPI_INT64_T, MPI_SUM, g->comm));
        for (int i = 0; i < nmb; i++) mb_off[i + 1] += mb_off[i];
        QD_ASSERT_EQ(mb_off[nmb], g->tap.nrows);
    }
    qd_model_hooks tk = {.user = &g->tap, .linear_input = tap_input};
    uint8_t *sel = qd_xmalloc((size_t)ng);
    int64_t unit_counter = 0;
    for (int k = 0; k < c->layers && !rc; k++) {
        double t0 = qd_now();
        int any = 0;
        for (int gi = 0; gi < ng; gi++) {
            sel[gi] = 0;
            for (int li = 0; li < qd_model_num_linears(g->m); li++) {
                const qd_linear *L = qd_model_linear(g->m, li);
                if (L->layer == k && L->input_group == gi && g->lin_tensor[li] >= 0) sel[gi] = 1;
            }
            any |= sel[gi];
        }
        if (any) {
            qd_calib *stats = NULL;
            rc = qd_calib_new(g->m, sel, &stats);
            /* the rows of the groups whose tensors AdaRound learns in the mini-batch form */
            for (int li = 0; li < nl && !rc; li++) {
                const qd_linear *L = qd_model_linear(g->m, li);
                if (L->layer == k && g->lin_tensor[li] >= 0 && ada_rows(g, g->lin_tensor[li]) &&
                    !g->tap.X[L->input_group])
                    rc = tap_keep(g, L->input_group);
            }
            rc = agree(g, rc);
            qd_model_hooks hk = stats ? qd_calib_hooks(stats) : (qd_model_hooks){0};
            g->tap.inner = hk;
            for (int pass = 0; pass < 2 && !rc; pass++) {
                for (int j = 0; j < nloc && !rc; j++) {
                    const int i = g->rank + j * g->size;
                    memcpy(scratch, hs + (int64_t)j * slot,
                           (size_t)((int64_t)bat[j].B * bat[j].T * Hd) * sizeof(float));
                    if (pass == 1 && need_rows) { /* the statistics, and the rows at the micro-batch's place */
                        for (int gi = 0; gi < ng; gi++) g->tap.fill[gi] = mb_off[i];
                        rc = qd_model_block(g->m, k, &bat[j], scratch, &tk);
                        for (int gi = 0; gi < ng && !rc; gi++)
                            if (g->tap.X[gi]) QD_ASSERT_EQ(g->tap.fill[gi], mb_off[i + 1]);
                    } else
                        rc = qd_model_block(g->m, k, &bat[j], scratch, &hk);
                }
                if ((rc = agree(g, rc))) break;
                for (int q = 0; q < qd_calib_num_groups(stats); q++) {
                    qd_calib_group *cg = qd_calib_group_at(stats, q);
                    if (pass == 0)
                        QD_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, cg->absmax, cg->in, MPI_FLOAT, MPI_MAX, g->comm));
                    else {
                        int64_t tot = (int64_t)cg->in * cg->in, step = 1 << 26;
                        for (int64_t off = 0; off < tot; off += step)
                            QD_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, cg->acc + off, (int)QD_MIN(step, tot - off),
                                                       MPI_INT64_T, MPI_SUM, g->comm));
                        QD_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &cg->rows, 1, MPI_INT64_T, MPI_SUM, g->comm));
                    }
                }
                if (pass == 0) qd_calib_begin_accumulate(stats);
            }
            /* every rank gets all the rows, each micro-batch's from the rank that ran it */
            for (int gi = 0; gi < ng && !rc; gi++) {
                if (!g->tap.X[gi]) continue;
                const int64_t in = qd_model_linear(g->m, qd_model_group_first(g->m, gi))->in;
                for (int i = 0; i < nmb; i++)
                    QD_MPI_CHECK(MPI_Bcast(g->tap.X[gi] + mb_off[i] * in, (int)((mb_off[i + 1] - mb_off[i]) * in),
                                           MPI_FLOAT, i % g->size, g->comm));
            }
            double t_cal = qd_now() - t0;
            /* GPTQ of the block's tensors: every rank does its share without waiting (whole tensors by
             * LPT on their cost when there are at least as many tensors as ranks, else row units
             * round-robin), then one agreement, then the results are gathered */
            int bt[QD_LIN_PER_BLOCK * 4], nbt = 0, owner[QD_LIN_PER_BLOCK * 4];
            for (int li = 0; li < qd_model_num_linears(g->m) && nbt < (int)QD_ARRAY_LEN(bt); li++)
                if (qd_model_linear(g->m, li)->layer == k && g->lin_tensor[li] >= 0) bt[nbt++] = li;
            assign_owners(g, bt, nbt, owner);
            float *H = NULL;
            int Hgroup = -1;
            for (int b = 0; b < nbt && !rc; b++) {
                const qd_linear *L = qd_model_linear(g->m, bt[b]);
                int ti = g->lin_tensor[bt[b]];
                int mine = owner[b] < 0 || owner[b] == g->rank, need_h = mine && !ada_rows(g, ti);
                if (need_h && Hgroup != L->input_group) {
                    qd_calib_group *cg = qd_calib_find(stats, L->input_group);
                    free(H);
                    H = malloc((size_t)cg->in * (size_t)cg->in * sizeof(float));
                    rc = H ? qd_calib_hessian_f32(cg, H) : qd_err_set(QD_ENOMEM, "out of memory for a Hessian");
                    Hgroup = L->input_group;
                }
                if (!rc) rc = quantize_units(g, ti, need_h ? H : NULL, &unit_counter, owner[b]);
            }
            rc = agree(g, rc);
            tap_release(g);
            int nt = 0;
            for (int b = 0; b < nbt && !rc; b++) {
                const qd_linear *L = qd_model_linear(g->m, bt[b]);
                int ti = g->lin_tensor[bt[b]];
                allgather_result(g, ti);
                if (g->cfg->act_order) { /* g_idx from diag H, on every rank */
                    qd_calib_group *cg = qd_calib_find(stats, L->input_group);
                    if (Hgroup != L->input_group) {
                        free(H);
                        H = qd_xmalloc((size_t)cg->in * (size_t)cg->in * sizeof(float));
                        rc = qd_calib_hessian_f32(cg, H);
                        Hgroup = L->input_group;
                    }
                    if (!rc) compute_g_idx(g, ti, H);
                }
                g->dq[bt[b]] = dequantize_result(&g->res->t[ti], &g->jt[ti]);
                QD_ASSERT(g->dq[bt[b]]);
                nt++;
            }
            free(H);
            qd_calib_free(stats);
            if (g->progress && g->rank == 0 && !rc)
                printf("calibrated: block %d/%d: %d tensors, calibration %.2f s, quantization %.2f s\n", k + 1,
                       c->layers, nt, t_cal, qd_now() - t0 - t_cal);
        }
        if (rc) break;
        /* advance the residual streams through the block as quantized */
        qd_model_hooks adv = {.user = g, .linear_apply = apply_dq};
        for (int j = 0; j < nloc && !rc; j++) {
            g->T = bat[j].T; /* the per-item products of apply_dq */
            rc = qd_model_block(g->m, k, &bat[j], hs + (int64_t)j * slot, &adv);
        }
        rc = agree(g, rc);
        for (int li = 0; li < qd_model_num_linears(g->m); li++) {
            free(g->dq[li]);
            g->dq[li] = NULL;
        }
        if (g->progress && g->rank == 0) fflush(stdout);
    }
    tap_release(g);
    free(mb_off);
    free(sel);
    free(hs);
    free(scratch);
    for (int j = 0; j < nloc; j++) free((void *)bat[j].mask);
    free(bat);
    return rc;
}

/* ---- fp mode -------------------------------------------------------------------------------- */

static int run_fp(gjob *g, qd_calib_data *data)
{
    const int ng = qd_model_num_groups(g->m);
    uint8_t *want = qd_xcalloc((size_t)ng, 1), *sel = qd_xmalloc((size_t)ng);
    for (int li = 0; li < qd_model_num_linears(g->m); li++)
        if (g->lin_tensor[li] >= 0) want[qd_model_linear(g->m, li)->input_group] = 1;
    qd_calib_rank_groups(g->m, want, QD_CALIB_PIPELINE, g->rank, g->size, sel);
    qd_calib *stats = NULL;
    double t0 = qd_now();
    const int nl = qd_model_num_linears(g->m);
    int rc = qd_calib_new(g->m, sel, &stats), need_rows = 0;
    /* AdaRound's mini-batch form: the rows of this rank's groups whose tensors it learns so; every
     * micro-batch passes this rank's blocks in order, so they arrive in sample order */
    for (int li = 0; li < nl && !rc; li++) {
        const qd_linear *L = qd_model_linear(g->m, li);
        if (g->lin_tensor[li] >= 0 && sel[L->input_group] && ada_rows(g, g->lin_tensor[li]) &&
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
    if (g->progress && g->rank == 0 && !rc) printf("gptq: calibration (fp, pipelined) %.2f s\n", qd_now() - t0);
    int64_t counter = 0;
    /* each rank quantizes the tensors of its blocks (where their statistics are), all at once */
    int *owner = qd_xmalloc((size_t)nl * sizeof *owner);
    float *H = NULL;
    int Hgroup = -1;
    for (int li = 0; li < nl && !rc; li++) {
        const qd_linear *L = qd_model_linear(g->m, li);
        int ti = g->lin_tensor[li], k0, k1;
        owner[li] = 0;
        if (ti < 0) continue;
        for (int r = 0; r < g->size; r++) {
            qd_calib_pipeline_blocks(qd_model_cfg(g->m)->layers, r, g->size, &k0, &k1);
            if (L->layer >= k0 && L->layer < k1) owner[li] = r;
        }
        qd_calib_group *cg = qd_calib_find(stats, L->input_group);
        const int need_h = owner[li] == g->rank && !ada_rows(g, ti);
        if (need_h && Hgroup != L->input_group) {
            free(H);
            H = qd_xmalloc((size_t)L->in * L->in * sizeof(float));
            rc = qd_calib_hessian_f32(cg, H);
            Hgroup = L->input_group;
        }
        if (!rc) rc = quantize_units(g, ti, need_h ? H : NULL, &counter, owner[li]);
    }
    free(H);
    rc = agree(g, rc);
    tap_release(g);
    for (int li = 0; li < nl && !rc; li++) {
        int ti = g->lin_tensor[li];
        if (ti < 0) continue;
        allgather_result(g, ti);
        if (g->cfg->act_order) { /* the Hessian lives on the owner: sent along for g_idx */
            const qd_linear *L = qd_model_linear(g->m, li);
            int64_t in = L->in;
            float *Hb = qd_xcalloc((size_t)(in * in), sizeof(float));
            qd_calib_group *cg = qd_calib_find(stats, L->input_group);
            if (owner[li] == g->rank) rc = qd_calib_hessian_f32(cg, Hb);
            QD_MPI_CHECK(MPI_Bcast(Hb, (int)(in * in), MPI_FLOAT, owner[li], g->comm));
            compute_g_idx(g, ti, Hb);
            free(Hb);
        }
    }
    free(owner);
    if (g->progress && g->rank == 0 && !rc) printf("gptq: quantization %.2f s\n", qd_now() - t0);
    qd_calib_free(stats);
    free(want);
    free(sel);
    return rc;
}

static void estimate_rank(const qd_job_config *cfg, qd_checkpoint *ck, const qd_job_tensor *jt, const qd_model *m,
                          int N, int T, int64_t rows, int ranks, int rank, double *bytes, char *breakdown, size_t cap);

int qd_gptq_job_run(const qd_job_config *cfg, MPI_Comm comm, qd_checkpoint *ck, const qd_job_tensor *jt, int progress,
                    qd_gptq_results *out)
{
    memset(out, 0, sizeof *out);
    gjob g = {.cfg = cfg, .comm = comm, .ck = ck, .jt = jt, .progress = progress, .res = out};
    MPI_Comm_rank(comm, &g.rank);
    MPI_Comm_size(comm, &g.size);
    double t0 = qd_now();
    int n = qd_ckpt_num_tensors(ck);
    out->n = n;
    out->t = qd_xcalloc((size_t)(n ? n : 1), sizeof *out->t);
    qd_calib_data *data = NULL;
    int rc = qd_model_load(cfg->model, &g.m);
    if (!rc) {
        int nl = qd_model_num_linears(g.m);
        g.lin_tensor = qd_xmalloc((size_t)nl * sizeof(int));
        g.tensor_lin = qd_xmalloc((size_t)(n ? n : 1) * sizeof(int));
        g.dq = qd_xcalloc((size_t)nl, sizeof(float *));
        g.tap.X = qd_xcalloc((size_t)qd_model_num_groups(g.m), sizeof(float *));
        g.tap.fill = qd_xcalloc((size_t)qd_model_num_groups(g.m), sizeof(int64_t));
        for (int i = 0; i < n; i++) g.tensor_lin[i] = -1;
        for (int li = 0; li < nl; li++) {
            char name[200];
            snprintf(name, sizeof name, "%s.weight", qd_model_linear(g.m, li)->name);
            int ti = qd_ckpt_find(ck, name);
            g.lin_tensor[li] = ti >= 0 && jt[ti].kind == QD_JOB_QUANT && jt[ti].method != QD_METHOD_RTN ? ti : -1;
            if (ti >= 0) g.tensor_lin[ti] = li;
        }
        for (int i = 0; i < n && !rc; i++)
            if (jt[i].kind == QD_JOB_QUANT && jt[i].method != QD_METHOD_RTN) {
                if (g.tensor_lin[i] < 0)
                    rc = qd_err_set(QD_ECONFIG,
                                    "tensor '%s': %s needs the inputs of an encoder Linear, and this is not "
                                    "one; give it method rtn with an override",
                                    qd_ckpt_tensor(ck, i)->name, qd_method_name(jt[i].method));
                else {
                    qd_gptq_result *r = &out->t[i];
                    r->rows = jt[i].rows;
                    r->cols = jt[i].cols;
                    r->ng = jt[i].scheme.gran == QD_GRAN_GROUP
                                ? (r->cols + jt[i].scheme.group_size - 1) / jt[i].scheme.group_size
                                : 1;
                    if (jt[i].scheme.gran == QD_GRAN_GROUP && jt[i].scheme.group_size >= r->cols) r->ng = 1;
                    r->codes = calloc((size_t)(r->rows * r->cols), 1);
                    r->scales = calloc((size_t)(r->rows * r->ng), sizeof(float));
                    r->zeros = calloc((size_t)(r->rows * r->ng), sizeof(int32_t));
                    if (qd_sparsity_active(&jt[i].sp)) {
                        r->mask = calloc((size_t)(r->rows * r->cols), 1);
                        if (cfg->prune_only) r->fweight = calloc((size_t)(r->rows * r->cols), sizeof(float));
                    }
                    if (!r->codes || !r->scales || !r->zeros || (qd_sparsity_active(&jt[i].sp) && !r->mask) ||
                        (cfg->prune_only && !r->fweight))
                        rc = qd_err_set(QD_ENOMEM, "tensor '%s': out of memory for its GPTQ result",
                                        qd_ckpt_tensor(ck, i)->name);
                }
            }
    }
    if (!rc) rc = qd_calib_data_open(g.m, cfg->calib, cfg->nsamples, cfg->seqlen, (uint64_t)cfg->calib_seed, &data);
    rc = agree(&g, rc);
    if (!rc) {
        g.tap.nrows = qd_calib_data_real_tokens(data);
        estimate_rank(cfg, ck, jt, g.m, qd_calib_data_count(data), qd_calib_data_tokens(data), g.tap.nrows, g.size,
                      g.rank, &out->estimate_bytes, out->estimate_text, sizeof out->estimate_text);
    }
    if (!rc && progress && g.rank == 0)
        printf("gptq: calibration data %s: %d %s samples x %d tokens (%d real), %s mode\n", cfg->calib,
               qd_calib_data_count(data), qd_calib_data_kind(data), qd_calib_data_tokens(data),
               qd_calib_data_real_tokens(data), cfg->calib_mode == QD_CALIB_FP ? "fp" : "sequential");
    int ada_x = 0;
    for (int i = 0; i < n; i++)
        ada_x |= jt[i].kind == QD_JOB_QUANT && jt[i].method == QD_METHOD_ADAROUND && cfg->ada_batch > 0;
    if (!rc && progress && g.rank == 0 && ada_x)
        printf("adaround: mini-batch form, %d of the %lld calibration rows per step (seed %d)\n", cfg->ada_batch,
               (long long)g.tap.nrows, cfg->calib_seed);
    if (!rc) rc = cfg->calib_mode == QD_CALIB_FP ? run_fp(&g, data) : run_sequential(&g, data);
    if (!rc) {
        cJSON *o = cJSON_CreateObject();
        int nada = 0, ngptq = 0;
        for (int i = 0; i < n; i++)
            if (jt[i].kind == QD_JOB_QUANT) {
                nada += jt[i].method == QD_METHOD_ADAROUND;
                ngptq += jt[i].method == QD_METHOD_GPTQ;
            }
        cJSON_AddStringToObject(o, "method", nada && ngptq ? "gptq+adaround" : nada ? "adaround" : "gptq");
        cJSON_AddStringToObject(o, "data", cfg->calib);
        cJSON_AddStringToObject(o, "kind", qd_calib_data_kind(data));
        cJSON_AddNumberToObject(o, "nsamples", qd_calib_data_count(data));
        cJSON_AddNumberToObject(o, "seqlen", qd_calib_data_tokens(data));
        cJSON_AddNumberToObject(o, "real_tokens", qd_calib_data_real_tokens(data));
        cJSON_AddNumberToObject(o, "seed", cfg->calib_seed);
        cJSON_AddStringToObject(o, "mode", cfg->calib_mode == QD_CALIB_FP ? "fp" : "sequential");
        out->calibration_json = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
    }
    out->seconds = qd_now() - t0;
    qd_calib_data_free(data);
    free(g.lin_tensor);
    free(g.tensor_lin);
    free(g.tap.X); /* the rows themselves are released by the phase that kept them */
    free(g.tap.fill);
    if (g.dq) {
        for (int li = 0; g.m && li < qd_model_num_linears(g.m); li++) free(g.dq[li]);
        free(g.dq);
    }
    qd_gptq_prep_free(g.prep);
    qd_model_free(g.m);
    if (rc) qd_gptq_results_free(out);
    return rc;
}

/* The estimate for one rank, from the loaded model and the calibration data's shape (N samples of
 * T tokens, `rows` of them real). */
static void estimate_rank(const qd_job_config *cfg, qd_checkpoint *ck, const qd_job_tensor *jt, const qd_model *m,
                          int N, int T, int64_t rows, int ranks, int rank, double *bytes, char *breakdown, size_t cap)
{
    const qd_model_config *c = qd_model_cfg(m);
    const double H = c->hidden, A = (double)c->heads * c->head_size, Im = c->intermediate;
    const int mb = cfg->microbatch, nmb = (N + mb - 1) / mb, mine = (nmb + ranks - 1) / ranks;
    double weights = 0, results = 0;
    for (int i = 0; i < qd_ckpt_num_tensors(ck); i++) {
        weights += (double)qd_ckpt_tensor(ck, i)->nbytes;
        if (jt[i].kind == QD_JOB_QUANT && jt[i].method != QD_METHOD_RTN)
            results += (double)jt[i].rows * jt[i].cols +
                       (double)jt[i].rows * 8.0 *
                           (jt[i].scheme.gran == QD_GRAN_GROUP
                                ? (double)(jt[i].cols + jt[i].scheme.group_size - 1) / jt[i].scheme.group_size
                                : 1.0);
    }
    const double fwd = (double)mb * T * (4 * A + 2 * H + Im) * 4 + (double)T * T * 4;
    double acts, stats = 0, work = 0, dq = 0;
    int k0 = 0, k1 = c->layers;
    if (cfg->calib_mode == QD_CALIB_FP) qd_calib_pipeline_blocks(c->layers, rank, ranks, &k0, &k1);
    acts = cfg->calib_mode == QD_CALIB_FP ? 2.0 * mb * T * H * 4 + fwd : ((double)mine + 1) * mb * T * H * 4 + fwd;
    double max_in = 0, block_stats = 0, block_dq = 0, kept = 0, block_kept = 0; /* kept: AdaRound's rows */
    int cur = -1, kept_group = -1;
    for (int li = 0; li < qd_model_num_linears(m); li++) {
        const qd_linear *L = qd_model_linear(m, li);
        char name[200];
        snprintf(name, sizeof name, "%s.weight", L->name);
        int ti = qd_ckpt_find(ck, name);
        if (ti < 0 || jt[ti].kind != QD_JOB_QUANT || jt[ti].method == QD_METHOD_RTN) continue;
        if (L->layer != cur) { /* a new block */
            if (cfg->calib_mode != QD_CALIB_FP) {
                stats = fmax(stats, block_stats);
                dq = fmax(dq, block_dq);
                kept = fmax(kept, block_kept);
            }
            block_stats = block_dq = block_kept = 0;
            cur = L->layer;
        }
        int first = qd_model_group_first(m, L->input_group) == li;
        double in = L->in;
        if (cfg->calib_mode == QD_CALIB_FP) {
            if (L->layer >= k0 && L->layer < k1 && first) stats += in * in * 8 + in * 8;
        } else if (first)
            block_stats += in * in * 8 + in * 8;
        block_dq += (double)L->in * L->out * 4;
        max_in = fmax(max_in, in);
        work = fmax(work, in * in * 4 * 5 + (double)QD_GPTQ_UNIT_ROWS * in * 4 * 5); /* H, Hw, Hp, U, the kept U */
        if (jt[ti].method == QD_METHOD_ADAROUND && cfg->ada_batch > 0) {
            /* the group's rows X [rows][in], once per group: the block in hand (sequential) or this
             * rank's blocks (fp); a unit's working set: E X^T over all rows [U][rows], the drawn
             * batch [batch][in], the row indices, and about a dozen [U][in] arrays */
            const int kept_here = cfg->calib_mode == QD_CALIB_FP ? L->layer >= k0 && L->layer < k1 : 1;
            if (kept_group != L->input_group && kept_here) { /* a group's linears are consecutive */
                kept_group = L->input_group;
                if (cfg->calib_mode == QD_CALIB_FP)
                    kept += (double)rows * in * 4;
                else
                    block_kept += (double)rows * in * 4;
            }
            const double nb = fmin((double)cfg->ada_batch, (double)rows);
            work = fmax(work, (double)QD_GPTQ_UNIT_ROWS * rows * 4 + nb * in * 4 + rows * 8.0 +
                                  12.0 * QD_GPTQ_UNIT_ROWS * in * 4);
        }
    }
    if (cfg->calib_mode != QD_CALIB_FP) {
        stats = fmax(stats, block_stats);
        dq = fmax(dq, block_dq);
        kept = fmax(kept, block_kept);
    }
    stats += max_in * max_in * 8 + (double)QD_CALIB_CHUNK * max_in * 8;
    /* the process itself: MPI, HDF5 and OpenBLAS buffers, code (measured here: about 35 MB) */
    const double runtime = 40e6;
    *bytes = runtime + weights + acts + stats + work + results + dq + kept;
    char extra[96] = "";
    if (kept > 0) snprintf(extra, sizeof extra, ", AdaRound calibration rows %.1f", kept * 1e-6);
    snprintf(breakdown, cap,
             "runtime %.0f, weights %.1f, activations %.1f, statistics %.1f, GPTQ work %.1f, results %.1f, "
             "dequantized block %.1f%s MB",
             runtime * 1e-6, weights * 1e-6, acts * 1e-6, stats * 1e-6, work * 1e-6, results * 1e-6, dq * 1e-6, extra);
}

int qd_calib_job_estimate(const qd_job_config *cfg, qd_checkpoint *ck, const qd_job_tensor *jt, int ranks,
                          double *worst, char *breakdown, size_t cap)
{
    qd_model *m = NULL;
    int rc = qd_model_load_flags(cfg->model, QD_MODEL_LAZY_LINEARS, &m);
    if (rc) return rc;
    int N = cfg->nsamples, T = qd_model_cfg(m)->arch == QD_ARCH_VIT ? qd_model_tokens(m, 0) : cfg->seqlen;
    int64_t rows = (int64_t)N * T;
    qd_calib_data *d = NULL;
    if (cfg->calib &&
        qd_calib_data_open(m, cfg->calib, cfg->nsamples, cfg->seqlen, (uint64_t)cfg->calib_seed, &d) == QD_OK) {
        N = qd_calib_data_count(d);
        T = qd_calib_data_tokens(d);
        rows = qd_calib_data_real_tokens(d);
    }
    qd_calib_data_free(d);
    *worst = 0;
    for (int r = 0; r < ranks; r++) {
        double b = 0;
        char bd[512];
        estimate_rank(cfg, ck, jt, m, N, T, rows, ranks, r, &b, bd, sizeof bd);
        if (b > *worst) {
            *worst = b;
            snprintf(breakdown, cap, "%s", bd);
        }
    }
    qd_model_free(m);
    return QD_OK;
}
