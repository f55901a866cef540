/* worker/method_adaround.c — AdaRound (quant/adaround.h): scales from the MSE clipping search (per
 * channel or per group), rounding learned against the Hessian of the layer's input, or, with a
 * batch (the mini-batch form), against mini-batches of its calibration rows drawn with the
 * calibration seed. Rows are independent given H or X, and every unit draws the same batches. */
#include "shard/plan.h"
#include "worker/method.h"

static qd_method_needs needs(const qd_method_opts *o) { return o->ada_batch > 0 ? QD_NEEDS_ROWS : QD_NEEDS_HESSIAN; }

/* a step costs one product with H in the Hessian form (rows*cols*cols), two with the mini-batch
 * in the other (E X_b^T and its product with X_b); there is no factorization */
static double cost(int64_t rows, int64_t cols, const qd_method_opts *o)
{
    return o->ada_batch > 0 ? 2.0 * qd_plan_cost_adaround(rows, cols, o->ada.iters, o->ada_batch)
                            : qd_plan_cost_adaround(rows, cols, o->ada.iters, (int)cols);
}

static double balance_cost(int64_t rows, int64_t cols, int prep_shared, const qd_method_opts *o)
{
    (void)prep_shared;
    return cost(rows, cols, o);
}

static int quantize(const qd_method_opts *o, const qd_layer_stats *s, const void *prep, float *W, int64_t n,
                    qd_unit_out *out)
{
    (void)prep;
    const int64_t C = s->cols;
    int rc = qd_check_finite(W, n, C, "weight");
    if (rc) return rc;
    const int64_t G = qd_scheme_group_cols(&o->scheme, C), ng = (C + G - 1) / G;
    const qd_clip_opts mse = QD_CLIP_MSE;
    for (int64_t gi = 0; gi < ng; gi++)
        qd_find_params_rows(W + gi * G, n, QD_MIN(G, C - gi * G), C, o->scheme.bits, o->scheme.sym, &mse,
                            out->scales + gi, out->zeros + gi, ng);
    qd_qparams p = {.rows = n,
                    .cols = C,
                    .ngroups = ng,
                    .group_size = G,
                    .bits = o->scheme.bits,
                    .sym = o->scheme.sym,
                    .gran = G < C ? QD_GRAN_GROUP : QD_GRAN_CHANNEL,
                    .scales = out->scales,
                    .zeros = out->zeros};
    const int rows_form = needs(o) == QD_NEEDS_ROWS;
    qd_adaround_problem pb = {.R = n,
                              .C = C,
                              .W = W,
                              .X = rows_form ? s->X : NULL,
                              .N = rows_form ? s->N : 0,
                              .H = rows_form ? NULL : s->H,
                              .p = &p};
    qd_adaround_opts a = o->ada;
    if (rows_form) a.batch = o->ada_batch;
    return qd_adaround_quantize(&pb, &a, out->codes, NULL, NULL);
}

const qd_method_def qd_method_adaround = {
    .name = "adaround",
    .needs = needs,
    .cost = cost,
    .balance_cost = balance_cost,
    .quantize = quantize,
};
