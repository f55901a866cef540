/* AdaRound (see adaround.h). */
#include "quant/adaround.h"

#include "kernels/ada_coef.h"
#include "kernels/gemm_bf16.h"
#include "kernels/kernels.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ZETA  1.1f
#define GAMMA (-0.1f)

/* Hessian mode computes the gradient product G = -E H in bfloat16 AMX tiles where the CPU has
 * them (E and H each split into two bfloat16 parts: kernels/gemm_bf16.h); the final
 * rounding is judged with the float H either way. Without tiles it keeps G from step to step:
 * E changes only where h moved, so G += -(E_new - E_old) H through the sparse kernel when few
 * weights moved, and one sgemm recomputes it when many did or every ADA_REFRESH steps (bounding
 * the drift of the incremental sums). A sparse term costs 2 C flops at a lower rate than
 * sgemm's; sparse_max is the moved fraction above which the sgemm is cheaper (qd_adaround_opts;
 * bench_adaround). */
#define ADA_REFRESH 100

void qd_adaround_default_opts(qd_adaround_opts *o)
{
    o->iters = 10000;
    o->lambda = 0.01f;
    o->beta_start = 20.0f;
    o->beta_end = 2.0f;
    o->warmup = 0.2f;
    o->lr = 1e-3f;
    o->batch = 256;
    o->seed = 0;
    o->sparse_max = 0.2f;
    o->tiles = 1;
}

/* Per-element constants of the problem: scale, zero, floor(W/s), and the affine form of the
 * error in h: E = W - s (clamp(fl + h + z, 0, maxq) - z) = c0 - sm h, with sm = s where
 * fl + z is in [0, maxq - 1] (the code moves with h) and sm = 0 (E constant) elsewhere. */
typedef struct {
    float *s, *z, *fl, *c0, *sm;
    int maxq;
} consts;

static void consts_init(const qd_adaround_problem *pb, consts *k)
{
    const qd_qparams *p = pb->p;
    int64_t n = pb->R * pb->C;
    k->s = qd_xmalloc((size_t)n * sizeof(float));
    k->z = qd_xmalloc((size_t)n * sizeof(float));
    k->fl = qd_xmalloc((size_t)n * sizeof(float));
    k->c0 = qd_xmalloc((size_t)n * sizeof(float));
    k->sm = qd_xmalloc((size_t)n * sizeof(float));
    k->maxq = qd_maxq(p->bits);
    int64_t gs = p->group_size > 0 ? p->group_size : pb->C;
    for (int64_t r = 0; r < pb->R; r++)
        for (int64_t c = 0; c < pb->C; c++) {
            int64_t g = c / gs;
            float s = p->scales[r * p->ngroups + g];
            int64_t i = r * pb->C + c;
            k->s[i] = s;
            k->z[i] = (float)p->zeros[r * p->ngroups + g];
            k->fl[i] = floorf(pb->W[i] / s);
            float lo = k->fl[i] + k->z[i];
            if (lo >= 0.0f && lo <= (float)(k->maxq - 1)) {
                k->sm[i] = s;
                k->c0[i] = (float)((double)pb->W[i] - (double)s * (double)k->fl[i]);
            } else {
                float q = lo < 0.0f ? 0.0f : (float)k->maxq;
                k->sm[i] = 0.0f;
                k->c0[i] = (float)((double)pb->W[i] - (double)s * ((double)q - (double)k->z[i]));
            }
        }
}

static void consts_free(consts *k)
{
    free(k->s);
    free(k->z);
    free(k->fl);
    free(k->c0);
    free(k->sm);
}

static inline float sigmoidf_(float v) { return 1.0f / (1.0f + expf(-v)); }

static inline float hfun(float v)
{
    float h = sigmoidf_(v) * (ZETA - GAMMA) + GAMMA;
    return h < 0.0f ? 0.0f : h > 1.0f ? 1.0f : h;
}

static inline float clampq(float x, int maxq) { return x < 0.0f ? 0.0f : x > (float)maxq ? (float)maxq : x; }

/* Reconstruction for E = W - W~: returns rec (when need_rec; else 0) and dL/dW~ into gw (if not
 * NULL). H mode: out = -E H (gw, or work_y), rec = -tr(E out^T) / 2. */
static double rec_and_grad(const qd_adaround_problem *pb, const float *E, const int64_t *rows, int64_t nb, float *gw,
                           float *work_x, float *work_y, int need_rec)
{
    const int64_t R = pb->R, C = pb->C;
    double rec = 0;
    if (pb->X) {
        const float *Xb = pb->X;
        if (rows) {
            for (int64_t i = 0; i < nb; i++) memcpy(work_x + i * C, pb->X + rows[i] * C, (size_t)C * sizeof(float));
            Xb = work_x;
        } else
            nb = pb->N;
        /* Y = E Xb^T  [R][nb] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)R, (int)nb, (int)C, 1.0f, E, (int)C, Xb, (int)C, 0.0f,
                    work_y, (int)nb);
        if (need_rec) {
            for (int64_t i = 0; i < R * nb; i++) rec += (double)work_y[i] * work_y[i];
            rec /= (double)nb;
        }
        /* d rec / d W~ = -2/nb * Y Xb */
        if (gw)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, (int)C, (int)nb, -2.0f / (float)nb, work_y,
                        (int)nb, Xb, (int)C, 0.0f, gw, (int)C);
    } else {
        /* rec = tr(E H E^T) / 2; d rec / d W~ = -E H */
        float *out = gw ? gw : work_y;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, (int)C, (int)C, -1.0f, E, (int)C, pb->H, (int)C,
                    0.0f, out, (int)C);
        if (need_rec) {
            for (int64_t i = 0; i < R * C; i++) rec += (double)E[i] * out[i];
            rec *= -0.5;
        }
    }
    return rec;
}

static size_t work_y_len(const qd_adaround_problem *pb, int64_t nb)
{
    return (size_t)pb->R * (size_t)(pb->X ? nb : pb->C);
}

/* the loss and its gradient through the step kernel (no Adam update) */
static double loss_impl(const qd_adaround_problem *pb, const consts *k, const float *V, const int64_t *rows, int64_t nb,
                        float beta, float lambda, float *grad)
{
    const int64_t n = pb->R * pb->C, nbe = rows ? nb : pb->N;
    float *buf = qd_xcalloc((size_t)n * 8, sizeof(float));
    float *Vc = buf, *mm = buf + n, *vv = buf + 2 * n, *a = buf + 3 * n, *b = buf + 4 * n, *E = buf + 5 * n,
          *reg = buf + 6 * n, *gw = buf + 7 * n;
    memcpy(Vc, V, (size_t)n * sizeof(float));
    float *wx = pb->X && rows ? qd_xmalloc((size_t)nb * (size_t)pb->C * sizeof(float)) : NULL;
    float *wy = qd_xmalloc(work_y_len(pb, nbe) * sizeof(float));
    qd_ada_step s = {.n = n,
                     .c0 = k->c0,
                     .sm = k->sm,
                     .V = Vc,
                     .m = mm,
                     .v = vv,
                     .a = a,
                     .b = b,
                     .E = E,
                     .reg = reg,
                     .lrc1 = 0,
                     .ic2 = 1,
                     .beta = beta,
                     .lambda = lambda};
    qd_kernels()->adaround_step(&s, NULL);
    double rec = rec_and_grad(pb, E, rows, nb, gw, wx, wy, 1);
    double rs = 0;
    for (int64_t i = 0; i < n; i++) rs += reg[i];
    if (grad)
        for (int64_t i = 0; i < n; i++) grad[i] = fmaf(gw[i], a[i], b[i]);
    free(buf);
    free(wx);
    free(wy);
    return rec + (double)lambda * rs;
}

double qd_adaround_loss(const qd_adaround_problem *pb, const float *V, const int64_t *rows, int64_t nb, float beta,
                        float lambda, float *grad)
{
    consts k;
    consts_init(pb, &k);
    double L = loss_impl(pb, &k, V, rows, nb, beta, lambda, grad);
    consts_free(&k);
    return L;
}

void qd_adaround_init_v(const qd_adaround_problem *pb, float *V)
{
    consts k;
    consts_init(pb, &k);
    for (int64_t i = 0; i < pb->R * pb->C; i++) {
        float rest = pb->W[i] / k.s[i] - k.fl[i];
        /* sigmoid(V) = (rest - gamma) / (zeta - gamma), kept strictly inside (0, 1) */
        float p = (rest - GAMMA) / (ZETA - GAMMA);
        p = p < 1e-6f ? 1e-6f : p > 1.0f - 1e-6f ? 1.0f - 1e-6f : p;
        V[i] = logf(p / (1.0f - p));
    }
    consts_free(&k);
}

/* per-row ||(w_r - q_r) X^T||^2 / N into out[R] (rows are independent in the loss) */
static void rec_rows(const qd_adaround_problem *pb, const float *Q, double *out)
{
    const int64_t R = pb->R, C = pb->C, n = R * C;
    float *E = qd_xmalloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) E[i] = pb->W[i] - Q[i];
    int64_t cols = pb->X ? pb->N : C;
    float *wy = qd_xmalloc(work_y_len(pb, pb->N) * sizeof(float));
    rec_and_grad(pb, E, NULL, pb->N, NULL, NULL, wy, 0); /* X: E X^T; H: -E H */
    for (int64_t r = 0; r < R; r++) {
        double acc = 0;
        for (int64_t j = 0; j < cols; j++)
            acc += pb->X ? (double)wy[r * cols + j] * wy[r * cols + j] : (double)E[r * C + j] * wy[r * C + j];
        out[r] = pb->X ? acc / (double)pb->N : -0.5 * acc;
    }
    free(E);
    free(wy);
}

double qd_adaround_rec_error(const qd_adaround_problem *pb, const float *Q)
{
    int64_t n = pb->R * pb->C;
    float *E = qd_xmalloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) E[i] = pb->W[i] - Q[i];
    float *wy = qd_xmalloc(work_y_len(pb, pb->N) * sizeof(float));
    double r = rec_and_grad(pb, E, NULL, pb->N, NULL, NULL, wy, 1);
    free(E);
    free(wy);
    return r;
}

/* splitmix64: the mini-batch sampler's generator (fixed seed, same draws everywhere) */
static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* partial Fisher-Yates: nb distinct rows of N in rows[0, nb) */
static const int64_t *sample_rows(int64_t N, int64_t nb, uint64_t *rng, int64_t *rows)
{
    for (int64_t i = 0; i < N; i++) rows[i] = i;
    for (int64_t i = 0; i < nb; i++) {
        int64_t j = i + (int64_t)(splitmix64(rng) % (uint64_t)(N - i));
        int64_t t = rows[i];
        rows[i] = rows[j];
        rows[j] = t;
    }
    return rows;
}

/* The weights a step moved, as rows of (column, -dE) (dptr [R + 1], didx/dval [max_nz]) for the
 * sparse update of the next product. 0 when more than max_nz moved: the next product is dense. */
static int moved_weights(const float *E, const float *Eold, int64_t R, int64_t C, int64_t max_nz, int64_t *dptr,
                         int32_t *didx, float *dval)
{
    int64_t k = 0;
    for (int64_t r = 0; r < R; r++) {
        dptr[r] = k;
        const float *e = E + r * C, *eo = Eold + r * C;
        for (int64_t c = 0; c < C; c++) {
            const float d = e[c] - eo[c];
            if (d != 0.0f) {
                if (k == max_nz) return 0;
                didx[k] = (int32_t)c;
                dval[k++] = -d;
            }
        }
    }
    dptr[R] = k;
    return 1;
}

/* Hard rounding of the learned V, and the RTN comparison with the same scales: codes, Wq (may be
 * NULL) and the statistics. */
static void finish(const qd_adaround_problem *pb, const consts *k, const float *V, uint8_t *codes, float *Wq,
                   int64_t dense_steps, double t0, qd_adaround_stats *st)
{
    const int64_t R = pb->R, C = pb->C, n = R * C;
    int64_t soft = 0;
    float *Qr = qd_xmalloc((size_t)n * sizeof(float));
    float *Qa = Wq ? Wq : qd_xmalloc((size_t)n * sizeof(float));
    uint8_t *cr = qd_xmalloc((size_t)n);
    for (int64_t i = 0; i < n; i++) {
        float h = hfun(V[i]);
        soft += h > 1e-3f && h < 1.0f - 1e-3f;
        int q = (int)clampq(k->fl[i] + (h >= 0.5f ? 1.0f : 0.0f) + k->z[i], k->maxq);
        int qr = (int)clampq(rintf(pb->W[i] / k->s[i]) + k->z[i], k->maxq);
        codes[i] = (uint8_t)q;
        cr[i] = (uint8_t)qr;
        Qa[i] = k->s[i] * ((float)q - k->z[i]);
        Qr[i] = k->s[i] * ((float)qr - k->z[i]);
    }
    /* Rows are independent in the loss: a row whose learned rounding reconstructs worse than
     * rounding to nearest (possible when the optimiser has not converged) keeps RTN, so the
     * result is never worse than RTN, row by row. */
    double *ea = qd_xmalloc((size_t)R * sizeof(double)), *er = qd_xmalloc((size_t)R * sizeof(double));
    rec_rows(pb, Qa, ea);
    rec_rows(pb, Qr, er);
    int64_t fallback = 0, up = 0, changed = 0;
    double tot_a = 0, tot_r = 0;
    for (int64_t r = 0; r < R; r++) {
        if (ea[r] > er[r]) {
            fallback++;
            memcpy(codes + r * C, cr + r * C, (size_t)C);
            memcpy(Qa + r * C, Qr + r * C, (size_t)C * sizeof(float));
            ea[r] = er[r];
        }
        tot_a += ea[r];
        tot_r += er[r];
    }
    for (int64_t i = 0; i < n; i++) {
        up += (float)codes[i] > clampq(k->fl[i] + k->z[i], k->maxq);
        changed += codes[i] != cr[i];
    }
    if (st) {
        st->rec_rtn = tot_r;
        st->rec_final = tot_a;
        st->soft_fraction = (double)soft / (double)n;
        st->up_fraction = (double)up / (double)n;
        st->changed_fraction = (double)changed / (double)n;
        st->rows_rtn = fallback;
        st->dense_steps = dense_steps;
        st->seconds = qd_now() - t0;
    }
    free(ea);
    free(er);
    free(cr);
    if (!Wq) free(Qa);
    free(Qr);
}

int qd_adaround_quantize(const qd_adaround_problem *pb, const qd_adaround_opts *o, uint8_t *codes, float *Wq,
                         qd_adaround_stats *st)
{
    double t0 = qd_now();
    const int64_t R = pb->R, C = pb->C, n = R * C;
    if (!pb->X && !pb->H) return qd_err_set(QD_EINVAL, "adaround: neither calibration rows nor a Hessian given");
    if (pb->X && pb->N < 1) return qd_err_set(QD_EINVAL, "adaround: no calibration rows");
    if (o->iters < 0 || o->batch < 1 || !(o->lr > 0) || o->warmup < 0 || o->warmup > 1)
        return qd_err_set(QD_EINVAL, "adaround: invalid options (iters %d, batch %d, lr %g, warmup %g)", o->iters,
                          o->batch, o->lr, o->warmup);
    int rc = qd_check_finite(pb->W, R, C, "weight");
    if (rc) return rc;
    if (pb->X && (rc = qd_check_finite(pb->X, pb->N, C, "calibration input"))) return rc;
    if (!pb->X && (rc = qd_check_finite(pb->H, C, C, "Hessian"))) return rc;

    consts k;
    consts_init(pb, &k);
    int64_t nb = pb->X ? (o->batch < pb->N ? o->batch : pb->N) : 0;
    float *V = qd_xmalloc((size_t)n * sizeof(float));
    float *m = qd_xcalloc((size_t)n, sizeof(float));
    float *v2 = qd_xcalloc((size_t)n, sizeof(float));
    float *E = qd_xmalloc((size_t)n * sizeof(float));
    float *gw = qd_xmalloc((size_t)n * sizeof(float));
    float *ga = qd_xmalloc((size_t)n * sizeof(float));
    float *gb = qd_xmalloc((size_t)n * sizeof(float));
    float *wx = pb->X ? qd_xmalloc((size_t)nb * (size_t)C * sizeof(float)) : NULL;
    float *wy = pb->X ? qd_xmalloc(work_y_len(pb, nb > pb->N ? nb : pb->N) * sizeof(float)) : NULL;
    int64_t *rows = pb->X ? qd_xmalloc((size_t)pb->N * sizeof(int64_t)) : NULL;
    /* Hessian mode: E before the step, and the moved weights as rows of (column, -dE) */
    const int64_t max_nz = (int64_t)((double)(o->sparse_max > 0 ? o->sparse_max : 0) * (double)n);

    float *Eold = pb->X ? NULL : qd_xmalloc((size_t)n * sizeof(float));
    int64_t *dptr = pb->X ? NULL : qd_xmalloc((size_t)(R + 1) * sizeof(int64_t));
    int32_t *didx = pb->X ? NULL : qd_xmalloc((size_t)(max_nz + 1) * sizeof(int32_t));
    float *dval = pb->X ? NULL : qd_xmalloc((size_t)(max_nz + 1) * sizeof(float));
    int have_delta = 0, since_dense = 0;
    /* at least 64 columns: below that the tiles' padding costs more than they save */
    qd_gemm_bf16 *tiles = !pb->X && o->tiles && C >= 64 ? qd_gemm_bf16_create(pb->H, C, C) : NULL;
    int64_t dense_steps = 0;
    qd_adaround_init_v(pb, V);

    /* Each step: dL/dW~ at V from the current E (sgemm), then one fused pass (the step kernel)
     * does the gradient, Adam, and h, E and the gradient coefficients at the new V, with the
     * regulariser of the next iteration (none during the warm-up). */
    uint64_t rng = o->seed ^ 0x5ADA0000ull;
    const double b1 = QD_ADA_B1, b2 = QD_ADA_B2;
    double b1t = 1, b2t = 1;
    const int warm = (int)(o->warmup * (float)o->iters);
    const qd_kernel_table *kt = qd_kernels();
    qd_ada_step s = {.n = n, .c0 = k.c0, .sm = k.sm, .V = V, .m = m, .v = v2, .a = ga, .b = gb, .E = E, .reg = NULL};
    for (int it = 0; it <= o->iters; it++) {
        /* the regulariser at iteration it: off in the warm-up, then beta anneals linearly */
        float beta = o->beta_start, lam = 0.0f;
        if (it >= warm) {
            float rel = o->iters > warm ? (float)(it - warm) / (float)(o->iters - warm) : 1.0f;
            beta = o->beta_end + (o->beta_start - o->beta_end) * (1.0f - rel);
            lam = o->lambda;
        }
        s.beta = beta;
        s.lambda = lam;
        if (it == 0) { /* E and the coefficients at the initial V */
            kt->adaround_step(&s, NULL);
            continue;
        }
        const int64_t *bi = pb->X && nb < pb->N ? sample_rows(pb->N, nb, &rng, rows) : NULL;
        if (tiles) {
            if (qd_gemm_bf16_run(tiles, E, R, C, -1.0f, gw, C)) { /* workspace: fall back to sgemm */
                qd_gemm_bf16_free(tiles);
                tiles = NULL;
                rec_and_grad(pb, E, NULL, 0, gw, wx, wy, 0);
            }
            dense_steps++;
        } else if (pb->X || !have_delta || since_dense >= ADA_REFRESH) {
            rec_and_grad(pb, E, bi, bi ? nb : pb->N, gw, wx, wy, 0);
            since_dense = 0;
            dense_steps++;
        } else {
            kt->ada_sparse_update(dptr, didx, dval, R, pb->H, C, gw, C);
            since_dense++;
        }
        b1t *= b1;
        b2t *= b2;
        s.lrc1 = (float)((double)o->lr / (1.0 - b1t));
        s.ic2 = (float)(1.0 / (1.0 - b2t));
        if (Eold && !tiles) memcpy(Eold, E, (size_t)n * sizeof(float));
        kt->adaround_step(&s, gw);
        if (Eold && !tiles && max_nz > 0) have_delta = moved_weights(E, Eold, R, C, max_nz, dptr, didx, dval);
    }

    finish(pb, &k, V, codes, Wq, dense_steps, t0, st);
    free(V);
    free(m);
    free(v2);
    free(E);
    free(gw);
    free(ga);
    free(gb);
    free(wx);
    free(wy);
    free(rows);
    qd_gemm_bf16_free(tiles);
    free(Eold);
    free(dptr);
    free(didx);
    free(dval);
    consts_free(&k);
    return QD_OK;
}
