/* AdaRound on small problems: the hand-derived gradient against finite differences (X mode and
 * H mode), the learned rounding against exhaustive search over every up/down choice, and the
 * three ways to the Hessian-mode gradient product against each other. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qd_test.h"
#include "quant/adaround.h"

static uint64_t g_rng = 12345;
static double urand(void)
{ /* [0,1) */
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(g_rng >> 11) / 9007199254740992.0;
}
static float nrand(void)
{
    double u = urand() + 1e-12, v = urand();
    return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

/* per-row asymmetric params by plain min-max (the test does not depend on the clip search) */
static void params_rows(const float *W, int64_t R, int64_t C, int bits, qd_qparams *p)
{
    memset(p, 0, sizeof *p);
    p->rows = R;
    p->cols = C;
    p->ngroups = 1;
    p->group_size = C;
    p->bits = bits;
    p->gran = QD_GRAN_CHANNEL;
    p->scales = malloc((size_t)R * sizeof(float));
    p->zeros = malloc((size_t)R * sizeof(int32_t));
    int maxq = qd_maxq(bits);
    for (int64_t r = 0; r < R; r++) {
        float lo = 0, hi = 0;
        for (int64_t c = 0; c < C; c++) {
            lo = fminf(lo, W[r * C + c]);
            hi = fmaxf(hi, W[r * C + c]);
        }
        p->scales[r] = (hi - lo) / (float)maxq;
        p->zeros[r] = (int32_t)rintf(-lo / p->scales[r]);
    }
}

/* H = 2/N X^T X in double, rounded to float */
static void hessian(const float *X, int N, int C, float *H)
{
    for (int a = 0; a < C; a++)
        for (int b = 0; b < C; b++) {
            double acc = 0;
            for (int i = 0; i < N; i++) acc += (double)X[i * C + a] * X[i * C + b];
            H[a * C + b] = (float)(2.0 * acc / N);
        }
}

static void check_gradient(int hmode)
{
    enum { R = 3, C = 6, N = 9 };
    float W[R * C], X[N * C], H[C * C], V[R * C], g[R * C];
    for (int i = 0; i < R * C; i++) W[i] = nrand();
    for (int i = 0; i < N * C; i++) X[i] = nrand();
    hessian(X, N, C, H);
    qd_qparams p;
    params_rows(W, R, C, 3, &p);
    qd_adaround_problem pb = {R, C, W, hmode ? NULL : X, N, H, &p};
    qd_adaround_init_v(&pb, V);
    /* move V off the initial point, staying where h is strictly inside (0,1) */
    for (int i = 0; i < R * C; i++) V[i] = 0.8f * nrand();
    int64_t rows[4] = {0, 3, 5, 8};
    for (int with_reg = 0; with_reg < 2; with_reg++) {
        float lam = with_reg ? 0.05f : 0.0f, beta = 4.0f;
        qd_adaround_loss(&pb, V, hmode ? NULL : rows, 4, beta, lam, g);
        double worst = 0;
        for (int i = 0; i < R * C; i++) {
            float save = V[i];
            double h = 1e-3;
            V[i] = save + (float)h;
            double lp = qd_adaround_loss(&pb, V, hmode ? NULL : rows, 4, beta, lam, NULL);
            V[i] = save - (float)h;
            double lm = qd_adaround_loss(&pb, V, hmode ? NULL : rows, 4, beta, lam, NULL);
            V[i] = save;
            double fd = (lp - lm) / (2 * h);
            double err = fabs(fd - g[i]) / (fabs(fd) + fabs(g[i]) + 1e-3);
            if (err > worst) worst = err;
        }
        printf("gradient check (%s, lambda %.2f): worst relative difference %.2e\n", hmode ? "H" : "X", lam, worst);
        CHECK_DBL_LE(worst, 2e-2);
    }
    free(p.scales);
    free(p.zeros);
}

/* rec of one row for a given up/down mask (X mode) */
static double row_rec(const float *w, const float *X, int N, int C, float s, float z, int maxq, unsigned mask, float *q)
{
    for (int c = 0; c < C; c++) {
        float v = floorf(w[c] / s) + (float)((mask >> c) & 1) + z;
        v = v < 0 ? 0 : v > maxq ? (float)maxq : v;
        q[c] = s * (v - z);
    }
    double rec = 0;
    for (int i = 0; i < N; i++) {
        double y = 0;
        for (int c = 0; c < C; c++) y += (double)(w[c] - q[c]) * X[i * C + c];
        rec += y * y;
    }
    return rec / N;
}

static void check_exhaustive(void)
{
    enum { R = 24, C = 8, N = 32 };
    float W[R * C], X[N * C], Q[R * C], q[C];
    uint8_t codes[R * C];
    /* correlated inputs make the choice matter */
    for (int i = 0; i < N; i++) {
        float common = nrand();
        for (int c = 0; c < C; c++) X[i * C + c] = 0.7f * common + 0.5f * nrand();
    }
    for (int i = 0; i < R * C; i++) W[i] = nrand();
    qd_qparams p;
    params_rows(W, R, C, 3, &p);
    qd_adaround_problem pb = {R, C, W, X, N, NULL, &p};
    qd_adaround_opts o;
    qd_adaround_default_opts(&o);
    o.iters = 3000;
    o.lr = 1e-2f;
    o.lambda = 0.1f;
    o.batch = N;
    qd_adaround_stats st;
    CHECK_EQ(qd_adaround_quantize(&pb, &o, codes, Q, &st), QD_OK);
    int match = 0, worse_than_rtn = 0;
    double sum_best = 0, sum_ada = 0, sum_rtn = 0;
    for (int r = 0; r < R; r++) {
        const float *w = W + r * C;
        float s = p.scales[r], z = (float)p.zeros[r];
        int maxq = qd_maxq(3);
        double best = INFINITY;
        unsigned best_mask = 0, rtn_mask = 0, ada_mask = 0;
        for (unsigned m = 0; m < (1u << C); m++) {
            double e = row_rec(w, X, N, C, s, z, maxq, m, q);
            if (e < best - 1e-12) {
                best = e;
                best_mask = m;
            }
        }
        for (int c = 0; c < C; c++) {
            float fl = floorf(w[c] / s);
            if (rintf(w[c] / s) > fl) rtn_mask |= 1u << c;
            float c0 = fminf(fmaxf(fl + z, 0), (float)maxq), c1 = fminf(fmaxf(fl + 1 + z, 0), (float)maxq);
            if ((float)codes[r * C + c] == c1 && c1 != c0) ada_mask |= 1u << c;
        }
        double e_ada = row_rec(w, X, N, C, s, z, maxq, ada_mask, q);
        double e_rtn = row_rec(w, X, N, C, s, z, maxq, rtn_mask, q);
        match += fabs(e_ada - best) <= 1e-9 * (1 + best) || ada_mask == best_mask;
        worse_than_rtn += e_ada > e_rtn * (1 + 1e-6) + 1e-12;
        sum_best += best;
        sum_ada += e_ada;
        sum_rtn += e_rtn;
    }
    printf("exhaustive: %d/%d rows optimal; total rec: best %.5f, adaround %.5f, rtn %.5f; soft %.4f\n", match, R,
           sum_best, sum_ada, sum_rtn, st.soft_fraction);
    CHECK_GT(2 * match, R);      /* most rows reach the exhaustive optimum */
    CHECK_EQ(worse_than_rtn, 0); /* and none is worse than rounding to nearest */
    CHECK_DBL_LE(st.soft_fraction, 0.02);
    CHECK_NEAR(st.rec_final, sum_ada, 1e-4 * (1 + sum_ada));
    free(p.scales);
    free(p.zeros);
}

/* The Hessian form's three ways to the gradient product — a float sgemm every step, sgemm plus
 * sparse updates from the moved weights, and the bfloat16 tiles where the CPU has them — solve
 * the same problem: near-equal losses and almost the same codes, all far below RTN. */
static void check_products(void)
{
    enum { R = 40, C = 96, N = 400 };
    float *W = malloc(sizeof(float) * R * C), *X = malloc(sizeof(float) * N * C), *H = malloc(sizeof(float) * C * C);
    for (int i = 0; i < R * C; i++) W[i] = 0.1f * nrand();
    /* correlated inputs (16 latent factors plus noise, a few outlier channels), as a layer's
     * activations are: with a diagonal H rounding to nearest would already be optimal */
    float M[16 * C];
    for (int i = 0; i < 16 * C; i++) M[i] = nrand();
    for (int i = 0; i < N; i++) {
        float z[16];
        for (int k = 0; k < 16; k++) z[k] = nrand();
        for (int c = 0; c < C; c++) {
            float acc = 0.3f * nrand();
            for (int k = 0; k < 16; k++) acc += z[k] * M[k * C + c];
            X[i * C + c] = acc * (c < 4 ? 6.0f : 1.0f);
        }
    }
    hessian(X, N, C, H);
    qd_qparams p;
    params_rows(W, R, C, 4, &p);
    qd_adaround_problem pb = {R, C, W, NULL, N, H, &p};
    uint8_t *codes[3];
    qd_adaround_stats st[3];
    for (int k = 0; k < 3; k++) {
        qd_adaround_opts o;
        qd_adaround_default_opts(&o);
        o.iters = 2000;
        o.lr = 1e-2f;
        o.sparse_max = k == 0 ? 0.0f : 0.2f;
        o.tiles = k == 2;
        codes[k] = malloc((size_t)R * C);
        CHECK_EQ(qd_adaround_quantize(&pb, &o, codes[k], NULL, &st[k]), QD_OK);
        printf("product %d: rec %.6g (RTN %.6g), dense steps %lld of 2000, soft %.4f\n", k, st[k].rec_final,
               st[k].rec_rtn, (long long)st[k].dense_steps, st[k].soft_fraction);
        CHECK_DBL_LE(st[k].rec_final, 0.7 * st[k].rec_rtn);
    }
    CHECK_EQ(st[0].dense_steps, 2000);
    CHECK_LT(st[1].dense_steps, 2000); /* the sparse updates were used */
    /* the sparse updates differ from the sgemm's sums by float rounding only; the tiles' product
     * is within ~2^-15 of the terms, a perturbation that the non-convex search can follow to a
     * nearby rounding of about the same loss */
    for (int k = 1; k < 3; k++) {
        int same = 0;
        for (int i = 0; i < R * C; i++) same += codes[k][i] == codes[0][i];
        printf("product %d: %d of %d codes equal to the sgemm run's\n", k, same, R * C);
        CHECK_GE(100 * same, (k == 1 ? 99 : 95) * R * C);
        CHECK_NEAR(st[k].rec_final, st[0].rec_final, (k == 1 ? 0.01 : 0.05) * st[0].rec_final);
    }
    for (int k = 0; k < 3; k++) free(codes[k]);
    free(W), free(X), free(H), free(p.scales), free(p.zeros);
}

int main(void)
{
    check_gradient(0);
    check_gradient(1);
    check_exhaustive();
    check_products();
    QD_TEST_MAIN_END();
}
