/* Static activation ranges (quant/actq.h) on hand-made statistics: the parameters of a range
 * against hand-computed scales and zero points, each range method on histograms whose answer is
 * known, and the choice of outlier channels. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "qd_test.h"
#include "quant/actq.h"

static int bin_of(double x, double A) { return qd_actq_bin((float)x, (float)A); }

int main(void)
{
    float s;
    int32_t z;
    /* parameters: asymmetric int8, range widened to 0, zero point rounded away from zero */
    qd_actq_params(-1.0, 1.0, 8, &s, &z);
    CHECK_NEAR(s, 2.0 / 255.0, 1e-9);
    CHECK_EQ(z, -1); /* -128 + 127.5 = -0.5 -> -1 */
    qd_actq_params(0.0, 2.55, 8, &s, &z);
    CHECK_NEAR(s, 0.01, 1e-8);
    CHECK_EQ(z, -128);
    qd_actq_params(-3.0, 0.0, 8, &s, &z);
    CHECK_NEAR(s, 3.0 / 255.0, 1e-8);
    CHECK_EQ(z, 127);
    qd_actq_params(1.0, 2.0, 8, &s, &z); /* widened to [0, 2] */
    CHECK_NEAR(s, 2.0 / 255.0, 1e-8);
    CHECK_EQ(z, -128);
    qd_actq_params(0.0, 0.0, 8, &s, &z);
    CHECK_NEAR(s, 1.0, 0);
    CHECK_EQ(z, 0);
    qd_actq_params(-1.0, 1.0, 4, &s, &z); /* 4 bits: [-8, 7] */
    CHECK_NEAR(s, 2.0 / 15.0, 1e-8);
    CHECK_EQ(z, -1); /* -8 + 7.5 */

    /* histogram methods on A = 10: 9990 values at 0, 5 at +10, 5 at -10 */
    int64_t *h = calloc(QD_ACTQ_BINS, sizeof *h);
    h[bin_of(0.0, 10)] = 9990;
    h[bin_of(10.0, 10)] = 5;
    h[bin_of(-10.0, 10)] = 5;
    CHECK_EQ(bin_of(0.0, 10), QD_ACTQ_BINS / 2);
    CHECK_EQ(bin_of(10.0, 10), QD_ACTQ_BINS - 1);
    CHECK_EQ(bin_of(-10.0, 10), 0);
    qd_actq_stats st = {.min = -10, .max = 10, .count = 10000, .hist = h};
    double lo, hi;
    CHECK_EQ(qd_actq_range(&st, QD_ACTQ_MINMAX, 0, 8, &lo, &hi), 0);
    CHECK_NEAR(lo, -10, 0);
    CHECK_NEAR(hi, 10, 0);
    /* 99.9 %: both tails (0.1 % = 10 values) fall inside the central bin's mass */
    const double w = 20.0 / QD_ACTQ_BINS;
    CHECK_EQ(qd_actq_range(&st, QD_ACTQ_PERCENTILE, 99.9, 8, &lo, &hi), 0);
    CHECK_NEAR(lo, 0.0, 1e-12);
    CHECK_NEAR(hi, w, 1e-12); /* the upper edge of the bin [0, w) */
    /* 99.99 %: 1 value per tail, the outliers are kept */
    CHECK_EQ(qd_actq_range(&st, QD_ACTQ_PERCENTILE, 99.99, 8, &lo, &hi), 0);
    CHECK_NEAR(lo, -10, 0);
    CHECK_NEAR(hi, 10, 0);
    CHECK_EQ(qd_actq_range(&st, QD_ACTQ_PERCENTILE, 40, 8, &lo, &hi), -1);
    /* mse: with everything at 0 or ±10 no clipping is cheaper than the full range */
    CHECK_EQ(qd_actq_range(&st, QD_ACTQ_MSE, 0, 8, &lo, &hi), 0);
    CHECK_NEAR(hi, 10, 1e-9);
    /* a heavy tail: 10^6 values spread over [-1, 1] and one at 10: mse clips it (alpha < 1) */
    for (int b = 0; b < QD_ACTQ_BINS; b++) h[b] = 0;
    for (int b = bin_of(-1.0, 10); b <= bin_of(1.0, 10); b++) h[b] = 2000;
    h[bin_of(10.0, 10)] = 1;
    CHECK_EQ(qd_actq_range(&st, QD_ACTQ_MSE, 0, 8, &lo, &hi), 0);
    CHECK_MSG(hi < 10 && hi >= 1 && lo > -10 && lo <= -1, "mse range [%g, %g]", lo, hi);
    /* entropy: a Laplace-shaped histogram (scale 0.3) over [-10, 10] is clipped well inside; a
     * uniform one keeps (nearly) its whole range */
    for (int b = 0; b < QD_ACTQ_BINS; b++) h[b] = (int64_t)llround(1e6 * exp(-fabs(-10 + (b + 0.5) * w) / 0.3));
    CHECK_EQ(qd_actq_range(&st, QD_ACTQ_ENTROPY, 0, 8, &lo, &hi), 0);
    CHECK_MSG(hi < 6 && hi >= 1 && lo > -6 && lo <= -1, "entropy range [%g, %g]", lo, hi);
    for (int b = 0; b < QD_ACTQ_BINS; b++) h[b] = 100;
    CHECK_EQ(qd_actq_range(&st, QD_ACTQ_ENTROPY, 0, 8, &lo, &hi), 0);
    CHECK_MSG(hi > 9.5 && lo < -9.5, "entropy range of a uniform histogram [%g, %g]", lo, hi);
    CHECK_EQ(qd_actq_range(&st, QD_ACTQ_MSE, 0, 8, &lo, &hi), 0);
    CHECK_MSG(hi > 9.5, "mse range of a uniform histogram [%g, %g]", lo, hi);
    /* without a histogram only minmax works; nothing observed gives [0, 0] */
    st.hist = NULL;
    CHECK_EQ(qd_actq_range(&st, QD_ACTQ_MSE, 0, 8, &lo, &hi), -1);
    qd_actq_stats none = {.min = INFINITY, .max = -INFINITY};
    CHECK_EQ(qd_actq_range(&none, QD_ACTQ_MINMAX, 0, 8, &lo, &hi), 0);
    CHECK_NEAR(lo, 0, 0);
    CHECK_NEAR(hi, 0, 0);
    free(h);

    /* outlier channels: |range| 1 on six channels, 10 and 20 on two; median 1 */
    const float mn[8] = {-1, -0.5f, -1, 0, -1, -1, -10, -3}, mx[8] = {1, 1, 0.5f, 1, 1, 1, 2, 20};
    int32_t ch[8];
    CHECK_EQ(qd_actq_outliers(mn, mx, 8, 4.0, 32, ch), 2);
    CHECK_EQ(ch[0], 6);
    CHECK_EQ(ch[1], 7);
    CHECK_EQ(qd_actq_outliers(mn, mx, 8, 4.0, 1, ch), 1); /* the largest only */
    CHECK_EQ(ch[0], 7);
    CHECK_EQ(qd_actq_outliers(mn, mx, 8, 15.0, 32, ch), 1);
    CHECK_EQ(ch[0], 7);
    CHECK_EQ(qd_actq_outliers(mn, mx, 8, 0.0, 32, ch), 0);
    const float z8[8] = {0};
    CHECK_EQ(qd_actq_outliers(z8, mx, 8, 4.0, 32, ch), 1); /* |max| only: 20 is an outlier, 2 is not */
    CHECK_EQ(ch[0], 7);
    const float zero[8] = {0, 0, 0, 0, 0, 0, 0, 5};
    CHECK_EQ(qd_actq_outliers(zero, zero, 8, 4.0, 32, ch), 0); /* median 0: none */
    /* the outlier group's format: scale 0.01 · 2^e covering [-20, 20] -> e = 4 (0.16 · 255 = 40.8) */
    int32_t e, oz;
    qd_actq_outlier_params(-20, 20, 0.01f, 8, &e, &oz);
    CHECK_EQ(e, 4);
    CHECK_EQ(oz, -3);                                  /* -128 + 20 / 0.16 = -3 */
    qd_actq_outlier_params(0, 0.5, 0.01f, 8, &e, &oz); /* already covered: e = 1 at least */
    CHECK_EQ(e, 1);
    CHECK_EQ(oz, -128);
    QD_TEST_MAIN_END();
}
