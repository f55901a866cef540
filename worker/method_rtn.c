/* worker/method_rtn.c — round to nearest (quant/quant.h): needs no calibration; in the job it runs
 * fused into the file's layout (worker/rtn_rows.h), which gives the reference's bits. */
#include <stdlib.h>
#include <string.h>

#include "shard/plan.h"
#include "worker/method.h"

static qd_method_needs needs(const qd_method_opts *o)
{
    (void)o;
    return QD_NEEDS_NOTHING;
}

static double cost(int64_t rows, int64_t cols, const qd_method_opts *o)
{
    (void)o;
    return qd_plan_cost_rtn(rows, cols);
}

static qd_clip_opts clip_of(const qd_method_opts *o) { return o->clip_mse ? QD_CLIP_MSE : QD_CLIP_MINMAX; }

/* The reference pipeline: parameters of the unit's rows (per tensor: the unit must be the whole
 * tensor), then codes. */
static int quantize(const qd_method_opts *o, const qd_layer_stats *s, const void *prep, float *W, int64_t n,
                    qd_unit_out *out)
{
    (void)prep;
    const qd_clip_opts clip = clip_of(o);
    qd_qparams p;
    int rc = qd_quant_params(W, n, s->cols, &o->scheme, &clip, &p);
    if (rc) return rc;
    qd_rtn_quantize(W, &p, NULL, out->codes);
    memcpy(out->scales, p.scales, (size_t)(n * p.ngroups) * sizeof(float));
    memcpy(out->zeros, p.zeros, (size_t)(n * p.ngroups) * sizeof(int32_t));
    qd_qparams_free(&p);
    return QD_OK;
}

static int quantize_packed(const qd_method_opts *o, const float *x, int64_t n, int64_t cols, uint8_t *packed,
                           float *scales, int32_t *zeros, int64_t blk_rows, qd_errsum *blk, const char *what,
                           int64_t row0)
{
    const qd_clip_opts clip = clip_of(o);
    return qd_rtn_rows(x, n, cols, &o->scheme, &clip, packed, scales, zeros, blk_rows, blk, what, row0);
}

const qd_method_def qd_method_rtn = {
    .name = "rtn",
    .per_tensor = 1,
    .needs = needs,
    .cost = cost,
    .quantize = quantize,
    .quantize_packed = quantize_packed,
};
