/* K-means codebooks on synthetic data: exact on few distinct values, sorted codebooks and
 * nearest-centroid codes, determinism (same seed, same bits), Lloyd's optimality conditions
 * (every centroid is the weighted mean of its members), weights pulling centroids, input
 * validation; codebooks per group (qd_kmeans_rows): hand-computed levels (plain, column-weighted,
 * linear start), the same bits whichever rows are quantized together, dequantization. */
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
        qd_kmeans_opts o = {bits, 1, 100, 7, QD_KMEANS_PLUSPLUS, 0};
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
        qd_kmeans_opts o = {3, 0, 50, 1, QD_KMEANS_PLUSPLUS, 0};
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
        qd_kmeans_opts o = {bits, 1, 100, 3, QD_KMEANS_PLUSPLUS, 0};
        CHECK_GE(qd_kmeans_quantize(w, R, C, NULL, &o, cb, codes), 0);
        static float q[R * C];
        for (int i = 0; i < R * C; i++) q[i] = cb[(i / C) * K + codes[i]];
        double ek = qd_quant_error(w, q, R * C).mse;
        qd_qscheme s = {bits, 0, QD_GRAN_CHANNEL, 0, 0};
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
        qd_kmeans_opts o = {2, 1, 100, 5, QD_KMEANS_PLUSPLUS, 0};
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
        qd_kmeans_opts o = {9, 1, 10, 1, QD_KMEANS_PLUSPLUS, 0};
        CHECK_EQ(qd_kmeans_quantize(w, R, C, NULL, &o, cb, codes), QD_EINVAL);
        float bad[4] = {0, 1, INFINITY, 2};
        o.bits = 2;
        CHECK_EQ(qd_kmeans_quantize(bad, 2, 2, NULL, &o, cb, codes), QD_ENONFINITE);
        CHECK_CONTAINS(qd_errmsg(), "Inf at [1, 0]");
    }
    /* groups, by hand: 1 bit over {0, 0, 1, 1, 5, 5, 6, 6} -> levels {0.5, 5.5}, for either start;
     * with column weights {1, 1, 3, 3, ...} the low level moves to (0 + 0 + 3 + 3) / 8 = 0.75 */
    {
        const float x[16] = {0, 0, 1, 1, 5, 5, 6, 6, /* group 1: */ -2, -2, -2, -2, 4, 4, 4, 8};
        const float colw[8] = {1, 1, 3, 3, 1, 1, 1, 1};
        float lv[4], back[16];
        uint8_t cd[16];
        for (int init = 0; init < 2; init++) {
            qd_kmeans_opts o = {1, 0, 50, 11, (qd_kmeans_init)init, 0};
            CHECK_GE(qd_kmeans_rows(x, 2, 8, 8, NULL, &o, lv, cd), 1);
            CHECK(lv[0] == 0.5f && lv[1] == 5.5f);
            /* second row: {-2 x4, 4, 4, 4, 8}: from k-means++ or a linear start at {-2, 8}, Lloyd
             * settles on {-2, 5} */
            CHECK(lv[2] == -2.0f && lv[3] == 5.0f);
            const uint8_t want[16] = {0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1};
            CHECK(!memcmp(cd, want, 16));
            qd_kmeans_dequantize(cd, 2, 8, 8, 1, lv, back);
            CHECK(back[0] == 0.5f && back[15] == 5.0f && back[8] == -2.0f);
        }
        qd_kmeans_opts o = {1, 0, 50, 11, QD_KMEANS_LINEAR, 0};
        CHECK_GE(qd_kmeans_rows(x, 1, 8, 8, colw, &o, lv, cd), 1);
        CHECK(lv[0] == 0.75f && lv[1] == 5.5f);
        /* two groups of 4 in one row of 8: 1 bit each -> {0, 1} and {5, 6}: exact */
        CHECK_GE(qd_kmeans_rows(x, 1, 8, 4, NULL, &o, lv, cd), 1);
        CHECK(lv[0] == 0.0f && lv[1] == 1.0f && lv[2] == 5.0f && lv[3] == 6.0f);
        qd_kmeans_dequantize(cd, 1, 8, 4, 1, lv, back);
        CHECK(!memcmp(back, x, 8 * sizeof(float)));
        /* a last group shorter than G: 10 columns in groups of 4 */
        float y[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, ly[6], by[10];
        uint8_t cy[10];
        CHECK_GE(qd_kmeans_rows(y, 1, 10, 4, NULL, &o, ly, cy), 1);
        qd_kmeans_dequantize(cy, 1, 10, 4, 1, ly, by);
        CHECK(ly[4] == 9.0f && ly[5] == 10.0f && by[8] == 9.0f && by[9] == 10.0f);
    }
    /* the same bits whether rows are quantized all at once or one at a time (any split over ranks) */
    for (int G = 16; G <= C; G += C - 16) {
        qd_kmeans_opts o = {3, 0, 100, 42, QD_KMEANS_PLUSPLUS, 0};
        const int64_t ng = qd_kmeans_ngroups(C, G);
        static float all[R * 8 * 13], one[R * 8 * 13], colw[C];
        static uint8_t ca[R * C], c1[R * C];
        for (int c = 0; c < C; c++) colw[c] = (float)(1 + c % 5);
        CHECK_GE(qd_kmeans_rows(w, R, C, G, colw, &o, all, ca), 1);
        for (int r = 0; r < R; r++)
            CHECK_GE(qd_kmeans_rows(w + r * C, 1, C, G, colw, &o, one + r * ng * 8, c1 + r * C), 1);
        CHECK(!memcmp(all, one, (size_t)(R * ng * 8) * sizeof(float)) && !memcmp(ca, c1, (size_t)(R * C)));
        long unsorted = 0;
        for (int64_t i = 0; i < R * ng * 8; i++) unsorted += i % 8 && all[i] < all[i - 1];
        CHECK_EQ(unsorted, 0);
        /* another seed gives other levels (the seed is used) */
        o.seed = 43;
        CHECK_GE(qd_kmeans_rows(w, R, C, G, colw, &o, one, c1), 1);
        CHECK(memcmp(all, one, (size_t)(R * ng * 8) * sizeof(float)) != 0);
    }
    /* float16 rounding, by hand: 11 significant bits, ties to even, subnormals in steps of 2^-24 */
    CHECK(qd_kmeans_round_fp16(1.0f) == 1.0f && qd_kmeans_round_fp16(0.0f) == 0.0f);
    CHECK(qd_kmeans_round_fp16(1.0f + 0x1p-11f) == 1.0f);               /* tie: to even */
    CHECK(qd_kmeans_round_fp16(1.0f + 3 * 0x1p-11f) == 1.0f + 0x1p-9f); /* tie: to even, up */
    CHECK(qd_kmeans_round_fp16(1.0f + 0x1p-11f + 0x1p-20f) == 1.0f + 0x1p-10f);
    CHECK(qd_kmeans_round_fp16(-0.1f) == -0.0999755859375f); /* numpy: float16(-0.1) */
    CHECK(qd_kmeans_round_fp16(3e-6f) == 50 * 0x1p-24f);     /* subnormal: 2.98e-6 */
    CHECK(qd_kmeans_round_fp16(0x1p-26f) == 0.0f && qd_kmeans_round_fp16(65504.0f) == 65504.0f);
    CHECK(isinf(qd_kmeans_round_fp16(65520.0f)) && qd_kmeans_round_fp16(65519.0f) == 65504.0f);
    /* fp16 levels: each a float16 number, ascending, every code the nearest rounded level */
    {
        qd_kmeans_opts o = {4, 0, 100, 42, QD_KMEANS_PLUSPLUS, 1};
        static float lv[R * 4 * 16];
        static uint8_t cd[R * C];
        CHECK_GE(qd_kmeans_rows(w, R, C, 64, NULL, &o, lv, cd), 1);
        const int64_t ng = qd_kmeans_ngroups(C, 64);
        long bad = 0;
        for (int64_t i = 0; i < R * ng * 16; i++)
            bad += qd_kmeans_round_fp16(lv[i]) != lv[i] || (i % 16 && lv[i] < lv[i - 1]);
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) {
                const float x = w[r * C + c], *l = lv + (r * ng + c / 64) * 16;
                for (int k = 0; k < 16; k++) bad += fabsf(x - l[k]) < fabsf(x - l[cd[r * C + c]]);
            }
        CHECK_EQ(bad, 0);
    }
    QD_TEST_MAIN_END();
}
