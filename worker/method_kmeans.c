/* worker/method_kmeans.c — K-means codebooks (quant/kmeans.h): 2^bits levels per output channel
 * or per group, found by k-means (k-means++ or linear start, seeded), the codes index them. With
 * --weighted the centroids minimise the error weighted by the Hessian diagonal of the layer's
 * input (SqueezeLLM's sensitivity weighting), which needs calibration; else nothing. */
#include <stdlib.h>

#include "shard/plan.h"
#include "worker/method.h"

static qd_method_needs needs(const qd_method_opts *o) { return o->km_weighted ? QD_NEEDS_HESSIAN : QD_NEEDS_NOTHING; }

/* Lloyd's iterations over K levels: ~ rows * cols * bits (the binary search of the nearest level)
 * per iteration, and k-means++ seeding ~ rows * cols * K */
static double cost(int64_t rows, int64_t cols, const qd_method_opts *o)
{
    const double K = (double)(1 << o->scheme.bits);
    return qd_plan_cost_rtn(rows, cols) * (K + (double)o->km.max_iters * o->scheme.bits);
}

static int quantize(const qd_method_opts *o, const qd_layer_stats *s, const void *prep, float *W, int64_t n,
                    qd_unit_out *out)
{
    (void)prep;
    const int64_t C = s->cols;
    float *colw = NULL;
    if (o->km_weighted && s->H) { /* diag H: how much an error in each input column costs */
        colw = qd_xmalloc((size_t)C * sizeof(float));
        for (int64_t c = 0; c < C; c++) colw[c] = s->H[c * C + c] > 0 ? s->H[c * C + c] : 0.0f;
    }
    qd_kmeans_opts k = o->km;
    k.bits = o->scheme.bits;
    k.fp16 = 1; /* the file stores float16 levels: eval and export see exactly these */
    int rc = qd_kmeans_rows(W, n, C, qd_scheme_group_cols(&o->scheme, C), colw, &k, out->codebook, out->codes);
    free(colw);
    return rc < 0 ? rc : QD_OK;
}

const qd_method_def qd_method_kmeans = {
    .name = "kmeans",
    .codebook = 1,
    .needs = needs,
    .cost = cost,
    .quantize = quantize,
};
