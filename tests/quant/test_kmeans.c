/* K-means codebooks on synthetic data: exact on few distinct values, sorted codebooks and
 * nearest-centroid codes, determinism (same seed, same bits), Lloyd's optimality conditions
 * (every centroid is the weighted mean of its members), weights pulling centroids, input
 * validation. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qd_test.h"
#include "quant/kmeans.h"
#include "quant/quant.h"

static uint64_t g_s = 2024;
static double urand(void)
{
    g_s = g_s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(g_s >> 11) / 9007199254740992.0;
}

int main(void)
{
    enum { R = 8, C = 200 };
    static float w[R * C], wt[R * C], cb[R * 256], cb2[R * 256];
    static uint8_t codes[R * C], codes2[R * C];
    for (int i = 0; i < R * C; i++) w[i] = (float)((urand() - 0.5) * (urand() < 0.1 ? 8.0 : 1.0));

    for (int bits = 1; bits <= 8; bits++) {
        int K = 1 << bits;
        qd_kmeans_opts o = {bits, 1, 100, 7};
        int it = qd_kmeans_quantize(w, R, C, NULL, &o, cb, codes);
        CHECK_GE(it, 1);
        long unsorted = 0, not_nearest = 0, not_mean = 0;
        for (int r = 0; r < R; r++) {
            const float *c = cb + r * K;
            for (int k = 1; k < K; k++) unsorted += c[k] < c[k - 1];
            double sx[256] = {0}, sn[256] = {0};
            for (int j = 0; j < C; j++) {
                float x = w[r * C + j];
                int q = codes[r * C + j];
                CHECK_LT(q, K);
                for (int k = 0; k < K; k++) not_nearest += fabsf(x - c[k]) < fabsf(x - c[q]) * (1 - 1e-6f);
                sx[q] += x;
                sn[q] += 1;
            }
            /* converged (it < limit): each used centroid is its members' mean (to float rounding) */
            if (it < o.max_iters)
                for (int k = 0; k < K; k++)
                    if (sn[k] > 0) not_mean += fabs(sx[k] / sn[k] - c[k]) > 1e-6 * (1 + fabs(c[k]));
        }
        CHECK_EQ(unsorted, 0);
        CHECK_EQ(not_nearest, 0);
        CHECK_MSG(not_mean == 0, "bits %d: %ld centroids are not the mean of their members (iters %d)", bits, not_mean,
                  it);
        /* deterministic */
        qd_kmeans_quantize(w, R, C, NULL, &o, cb2, codes2);
        CHECK(memcmp(cb, cb2, (size_t)(R * K) * sizeof(float)) == 0 && memcmp(codes, codes2, sizeof codes) == 0);
    }

    /* few distinct values (<= K): reconstruction is exact, also per tensor and for constants */
    {
        float v[64];
        float vals[5] = {-1.5f, 0.0f, 0.25f, 1e-7f, 3.0f};
        for (int i = 0; i < 64; i++) v[i] = vals[(i * 7) % 5];
        uint8_t cd[64];
        float c8[8];
        qd_kmeans_opts o = {3, 0, 50, 1};
        CHECK_GE(qd_kmeans_quantize(v, 1, 64, NULL, &o, c8, cd), 0);
        for (int i = 0; i < 64; i++) CHECK(c8[cd[i]] == v[i]);
        for (int i = 0; i < 64; i++) v[i] = -0.3f;
        CHECK_GE(qd_kmeans_quantize(v, 1, 64, NULL, &o, c8, cd), 0);
        for (int i = 0; i < 64; i++) CHECK(c8[cd[i]] == -0.3f);
        /* 8 distinct values, two of them adjacent floats: still exact (midpoints in double) */
        for (int i = 0; i < 64; i++) v[i] = nextafterf(1.0f, 2.0f) * (float)(1 + i % 6) / 8.0f; /* 6 values */
        v[0] = 1.0f;
        v[1] = nextafterf(1.0f, 2.0f);
        CHECK_GE(qd_kmeans_quantize(v, 1, 64, NULL, &o, c8, cd), 0);
        long inexact = 0;
        for (int i = 0; i < 64; i++) inexact += c8[cd[i]] != v[i];
        CHECK_EQ(inexact, 0);
    }

    /* K-means never does worse than uniform min-max RTN per row on this data (2..4 bits) */
    for (int bits = 2; bits <= 4; bits++) {
        int K = 1 << bits;
        qd_kmeans_opts o = {bits, 1, 100, 3};
        CHECK_GE(qd_kmeans_quantize(w, R, C, NULL, &o, cb, codes), 0);
        static float q[R * C];
        for (int i = 0; i < R * C; i++) q[i] = cb[(i / C) * K + codes[i]];
        double ek = qd_quant_error(w, q, R * C).mse;
        qd_qscheme s = {bits, 0, QD_GRAN_CHANNEL, 0};
        qd_qparams p;
        qd_clip_opts mm = QD_CLIP_MINMAX;
        CHECK_EQ(qd_quant_params(w, R, C, &s, &mm, &p), QD_OK);
        qd_rtn_quantize(w, &p, NULL, codes);
        qd_dequantize(codes, &p, NULL, q);
        CHECK_DBL_LT(ek, qd_quant_error(w, q, R * C).mse);
        qd_qparams_free(&p);
    }

    /* weights: heavy weight on the first 20 values of each row lowers their error */
    {
        for (int i = 0; i < R * C; i++) wt[i] = (i % C) < 20 ? 100.0f : 1.0f;
        qd_kmeans_opts o = {2, 1, 100, 5};
        double e_u = 0, e_w = 0, tw_u = 0, tw_w = 0;
        CHECK_GE(qd_kmeans_quantize(w, R, C, NULL, &o, cb, codes), 0);
        CHECK_GE(qd_kmeans_quantize(w, R, C, wt, &o, cb2, codes2), 0);
        for (int i = 0; i < R * C; i++) {
            double du = w[i] - cb[(i / C) * 4 + codes[i]], dw = w[i] - cb2[(i / C) * 4 + codes2[i]];
            if (i % C < 20) {
                e_u += du * du;
                e_w += dw * dw;
            }
            tw_u += wt[i] * du * du;
            tw_w += wt[i] * dw * dw;
        }
        printf("2-bit: heavy-weighted values' SSE %.4g unweighted vs %.4g weighted; weighted objective %.4g vs %.4g\n",
               e_u, e_w, tw_u, tw_w);
        CHECK_DBL_LT(e_w, e_u);
        CHECK_DBL_LT(tw_w, tw_u);
        /* all-zero weights: fitted unweighted */
        memset(wt, 0, sizeof wt);
        CHECK_GE(qd_kmeans_quantize(w, R, C, wt, &o, cb2, codes2), 0);
        CHECK(memcmp(cb, cb2, (size_t)(R * 4) * sizeof(float)) == 0);
        wt[3] = -1.0f;
        CHECK_EQ(qd_kmeans_quantize(w, R, C, wt, &o, cb2, codes2), QD_EINVAL);
        CHECK_CONTAINS(qd_errmsg(), "weight [0, 3]");
    }

    /* validation */
    {
        qd_kmeans_opts o = {9, 1, 10, 1};
        CHECK_EQ(qd_kmeans_quantize(w, R, C, NULL, &o, cb, codes), QD_EINVAL);
        float bad[4] = {0, 1, INFINITY, 2};
        o.bits = 2;
        CHECK_EQ(qd_kmeans_quantize(bad, 2, 2, NULL, &o, cb, codes), QD_ENONFINITE);
        CHECK_CONTAINS(qd_errmsg(), "Inf at [1, 0]");
    }
    QD_TEST_MAIN_END();
}
