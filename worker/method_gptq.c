/* worker/method_gptq.c — GPTQ (quant/gptq.h) through the Hessian of the layer's input, one
 * factorization per input shared by its Linears; with pruning, SparseGPT or a magnitude / Wanda
 * mask kept by GPTQ (worker/sparse_unit.h). Act-order records g_idx. */
#include "shard/plan.h"
#include "worker/method.h"
#include "worker/sparse_unit.h"

static qd_method_needs needs(const qd_method_opts *o)
{
    (void)o;
    return QD_NEEDS_HESSIAN;
}

static double cost(int64_t rows, int64_t cols, const qd_method_opts *o)
{
    (void)o;
    return qd_plan_cost_gptq(rows, cols);
}

/* the O(C^3) factorization once per input (none when the previous tensor prepared it), plus
 * 2 R C^2 for the rows */
static double balance_cost(int64_t rows, int64_t cols, int prep_shared, const qd_method_opts *o)
{
    (void)o;
    const double C = (double)cols;
    return (prep_shared ? 0.0 : C * C * C) + 2.0 * (double)rows * C * C;
}

static int prepare(const qd_method_opts *o, const qd_layer_stats *s, void **prep)
{
    qd_gptq_prep *p = NULL;
    int rc = qd_gptq_prepare(s->H, s->cols, &o->gptq, &p);
    *prep = p;
    return rc;
}

static int same_prep(const qd_method_opts *x, const qd_method_opts *y)
{
    const qd_gptq_opts *a = &x->gptq, *b = &y->gptq;
    return a->bits == b->bits && a->sym == b->sym && a->group_size == b->group_size && a->act_order == b->act_order &&
           a->static_groups == b->static_groups && a->damp == b->damp && a->block_size == b->block_size &&
           a->clip.grid == b->clip.grid && a->clip.maxshrink == b->clip.maxshrink && a->clip.norm == b->clip.norm;
}

static void release(void *prep) { qd_gptq_prep_free(prep); }

static int prep_parts(void *prep, void *part[QD_PREP_PARTS], size_t bytes[QD_PREP_PARTS])
{
    return qd_gptq_prep_parts(prep, part, bytes);
}

static void *prep_from_head(const void *head) { return qd_gptq_prep_from_head(head); }

/* pruning reads H beside the factor (Wanda's input norms, the mask's choice) */
static int prep_alone(const qd_method_opts *o) { return !qd_sparsity_active(&o->sp); }

static int quantize(const qd_method_opts *o, const qd_layer_stats *s, const void *prep, float *W, int64_t n,
                    qd_unit_out *out)
{
    if (qd_sparsity_active(&o->sp))
        return qd_sparse_unit(&o->sp, o->prune, &o->gptq, prep, s->H, o->prune_only, W, n, s->cols, out->codes,
                              out->scales, out->zeros, out->mask);
    qd_gptq_stats st;
    int rc = qd_gptq_quantize_prepared(prep, W, n, out->codes, out->scales, out->zeros, NULL, &st);
    if (rc) return rc;
    out->damp_used = st.damp_used;
    out->dead_columns = st.dead_columns;
    return QD_OK;
}

static int g_idx(const qd_method_opts *o, const qd_layer_stats *s, int32_t *gi)
{
    if (!o->gptq.act_order) return 0;
    qd_gptq_g_idx(s->H, s->cols, &o->gptq, gi);
    return 1;
}

const qd_method_def qd_method_gptq = {
    .name = "gptq",
    .needs = needs,
    .cost = cost,
    .balance_cost = balance_cost,
    .prepare = prepare,
    .same_prep = same_prep,
    .release = release,
    .prep_parts = prep_parts,
    .prep_from_head = prep_from_head,
    .prep_alone = prep_alone,
    .prep_head = qd_gptq_prep_head,
    .quantize = quantize,
    .g_idx = g_idx,
};
