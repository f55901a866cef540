/* quant/adaround.h — AdaRound: adaptive rounding learned per layer (Nagel et al., ICML 2020,
 * "Up or Down? Adaptive Rounding for Post-Training Quantization").
 *
 * For a Linear with weights W [R][C], fixed quantization parameters (scale, zero per row or per
 * group, e.g. from the MSE clipping search) and calibration inputs, each weight chooses to round
 * down or up: W~ = s * (clamp(floor(W/s) + h(V) + z, 0, maxq) - z) with the rectified sigmoid
 *     h(V) = clip(sigmoid(V) * (zeta - gamma) + gamma, 0, 1),  zeta = 1.1, gamma = -0.1,
 * initialised so that h(V) equals the fractional part of W/s. The loss is
 *     ||W X^T - W~ X^T||_F^2 / N  +  lambda * sum(1 - |2 h(V) - 1|^beta)
 * (the regulariser is off for the first `warmup` fraction of the iterations, then beta anneals
 * linearly from beta_start to beta_end), minimised with Adam over V; the result is the hard
 * rounding h(V) >= 0.5.
 *
 * The reconstruction term depends on the inputs only through X^T X, so a layer can be given
 * either its calibration rows X [N][C] (mini-batches of `batch` rows drawn with a fixed seed) or
 * its Hessian H = 2/N X^T X [C][C] (the statistic GPTQ uses; then every step uses all the data
 * and costs 2 R C^2). Gradients are derived by hand; matrix products go through OpenBLAS, or, in
 * Hessian mode on CPUs with AMX, through bfloat16 tiles with split operands (kernels/gemm_bf16.h:
 * within ~2^-15 of the terms; the final rounding and the RTN comparison use float products).
 * Rows are independent in the loss, so a layer can be solved in units of rows (the job's 64-row
 * units, the same for any number of ranks).
 */
#ifndef QD_ADAROUND_H
#define QD_ADAROUND_H

#include <stdint.h>

#include "quant/quant.h"

typedef struct {
    int iters;        /* Adam steps (default 10000) */
    float lambda;     /* regulariser weight (default 0.01) */
    float beta_start; /* (default 20) */
    float beta_end;   /* (default 2) */
    float warmup;     /* fraction of iterations without the regulariser (default 0.2) */
    float lr;         /* Adam learning rate (default 1e-3) */
    int batch;        /* calibration rows per step in X mode (default 256) */
    uint64_t seed;    /* mini-batch sampling (default 0) */
    float sparse_max; /* Hessian mode: moved fraction of the weights up to which the gradient
                         * product is updated sparsely (default 0.2; 0: a full product every step) */
    int tiles;        /* Hessian mode: 1 (default) = the gradient product in bfloat16 AMX tiles
                         * where the CPU has them (kernels/gemm_bf16.h; about 3x an sgemm at
                         * 1536 columns), 0 = always float sgemm */
} qd_adaround_opts;

void qd_adaround_default_opts(qd_adaround_opts *o);

typedef struct {
    double rec_rtn;          /* ||(W - RTN(W)) X^T||^2 / N with the same scales (all data) */
    double rec_final;        /* the same for the learned rounding */
    double soft_fraction;    /* weights whose h(V) is neither 0 nor 1 (within 1e-3) at the end */
    double up_fraction;      /* weights rounded up */
    double changed_fraction; /* codes differing from RTN */
    int64_t rows_rtn;        /* rows that kept RTN because the learned rounding was worse there */
    int64_t dense_steps;     /* steps whose gradient product was a full sgemm (the others: sparse
                           * updates of the moved weights, Hessian mode only) */
    double seconds;
} qd_adaround_stats;

/* One layer's problem. Exactly one of X (with N rows) and H is used: X when non-NULL. */
typedef struct {
    int64_t R, C;
    const float *W; /* [R][C] */
    const float *X; /* [N][C] calibration rows, or NULL */
    int64_t N;
    const float *H;      /* [C][C] = 2/N X^T X, used when X is NULL */
    const qd_qparams *p; /* scales/zeros per row or group (p->rows == R, p->cols == C) */
} qd_adaround_problem;

/* Learns the rounding and writes codes [R][C] (unsigned, original layout) and, if Wq is not
 * NULL, the dequantized weights. Deterministic for a given seed. QD_OK, or QD_ENONFINITE /
 * QD_EINVAL with qd_errmsg() set. */
int qd_adaround_quantize(const qd_adaround_problem *pb, const qd_adaround_opts *o, uint8_t *codes, float *Wq,
                         qd_adaround_stats *st);

/* The loss at V (rec + lambda * reg with the given beta; lambda = 0 skips the regulariser) and,
 * if grad is not NULL, its gradient with respect to V. rows: the mini-batch (indices into X) or
 * NULL for all rows; ignored in H mode. Exposed for tests (finite differences). */
double qd_adaround_loss(const qd_adaround_problem *pb, const float *V, const int64_t *rows, int64_t nb, float beta,
                        float lambda, float *grad);

/* V such that h(V) equals the fractional part of W/s (the initial point). */
void qd_adaround_init_v(const qd_adaround_problem *pb, float *V);

/* ||(W - Q) X^T||^2 / N for a dequantized Q (all data; X or H mode). */
double qd_adaround_rec_error(const qd_adaround_problem *pb, const float *Q);

#endif
