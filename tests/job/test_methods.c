/* The method table (worker/method.h): names round-trip; what each method needs from calibration;
 * RTN's unit (the reference pipeline) and its fused path write the same scales, zeros and packed
 * codes; GPTQ's and AdaRound's entries give exactly what their quant/ functions give (GPTQ with a
 * prepared factorization and act-order's g_idx; AdaRound through H and through input rows); K-means
 * gives qd_kmeans_rows' codebooks, weighted by diag H with --weighted. */
#include <stdlib.h>
#include <string.h>

#include "qd_test.h"
#include "worker/method.h"

static uint64_t g_seed = 12345;
static float rnd(void)
{
    g_seed = g_seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((g_seed >> 40) & 0xFFFFFF) / 16777216.0f * 2.0f - 1.0f;
}

enum { R = 24, C = 48, N = 96 };

static void check_rtn(qd_qscheme s, int clip_mse, int heavy)
{
    qd_method_opts o;
    qd_method_default_opts(&o);
    o.scheme = s;
    o.clip_mse = clip_mse;
    float W[R * C], W2[R * C];
    for (int i = 0; i < R * C; i++) W[i] = rnd() * (heavy && i % 17 == 0 ? 8.0f : 1.0f);
    memcpy(W2, W, sizeof W);
    const int64_t ng = qd_rtn_ngroups(&s, C), rb = qd_packed_row_bytes(C, s.bits);
    uint8_t codes[R * C], packed_ref[R * 48], packed[R * 48];
    float sc_ref[R * 8], sc[R * 8];
    int32_t z_ref[R * 8], z[R * 8];
    qd_unit_out out = {.codes = codes, .scales = sc_ref, .zeros = z_ref};
    const qd_layer_stats st = {.cols = C};
    const qd_method_def *d = qd_method_get(QD_METHOD_RTN);
    CHECK_EQ(d->quantize(&o, &st, NULL, W2, R, &out), QD_OK);
    qd_pack_matrix(codes, R, C, s.bits, packed_ref);
    qd_errsum blk[4] = {{0}};
    CHECK_EQ(d->quantize_packed(&o, W, R, C, packed, sc, z, R / 4, blk, "w", 0), QD_OK);
    CHECK(!memcmp(packed, packed_ref, (size_t)(R * rb)));
    CHECK(!memcmp(sc, sc_ref, (size_t)(R * ng) * sizeof(float)));
    CHECK(!memcmp(z, z_ref, (size_t)(R * ng) * sizeof(int32_t)));
    CHECK(blk[0].w2 > 0);
}

int main(void)
{
    for (int m = 0; m < QD_METHOD_COUNT_; m++) {
        qd_method back;
        CHECK_EQ(qd_method_from_name(qd_method_name((qd_method)m), &back), 0);
        CHECK_EQ(back, m);
        CHECK(qd_method_get((qd_method)m)->quantize != NULL && qd_method_get((qd_method)m)->needs != NULL);
    }
    qd_method unknown;
    CHECK_EQ(qd_method_from_name("kmeans-not-yet", &unknown), -1);
    CHECK_STREQ(qd_method_name(QD_METHOD_COUNT_), "unknown");
    {
        qd_method_opts k;
        qd_method_default_opts(&k);
        const qd_method_def *km = qd_method_get(QD_METHOD_KMEANS);
        CHECK(km->codebook && !km->per_tensor && !km->quantize_packed);
        CHECK_EQ(km->needs(&k), QD_NEEDS_NOTHING);
        k.km_weighted = 1;
        CHECK_EQ(km->needs(&k), QD_NEEDS_HESSIAN);
        k.scheme = (qd_qscheme){3, 1, QD_GRAN_GROUP, 16, 0};
        static float W[R * C], W2[R * C], H[C * C], diag[C], cb[R * 3 * 8], cb_ref[R * 3 * 8];
        static uint8_t codes[R * C], codes_ref[R * C];
        for (int i = 0; i < R * C; i++) W[i] = rnd();
        for (int i = 0; i < C * C; i++) H[i] = 0.01f * rnd();
        for (int c = 0; c < C; c++) H[c * C + c] = diag[c] = 1.0f + (float)(c % 7);
        memcpy(W2, W, sizeof W);
        const qd_layer_stats st = {.cols = C, .H = H};
        qd_unit_out out = {.codes = codes, .codebook = cb};
        CHECK_EQ(km->quantize(&k, &st, NULL, W2, R, &out), QD_OK);
        qd_kmeans_opts ko = k.km;
        ko.bits = 3;
        ko.fp16 = 1; /* the file's levels are float16 numbers */
        CHECK_GE(qd_kmeans_rows(W, R, C, 16, diag, &ko, cb_ref, codes_ref), 1);
        for (int i = 0; i < R * 3 * 8; i++) CHECK(qd_kmeans_round_fp16(cb[i]) == cb[i]);
        CHECK(!memcmp(cb, cb_ref, sizeof cb) && !memcmp(codes, codes_ref, sizeof codes));
        CHECK_EQ(qd_method_codebook_row(QD_METHOD_KMEANS, &k.scheme, C), 3 * 8);
        CHECK_EQ(qd_method_codebook_row(QD_METHOD_RTN, &k.scheme, C), 0);
    }

    qd_method_opts o;
    qd_method_default_opts(&o);
    CHECK_EQ(qd_method_get(QD_METHOD_RTN)->needs(&o), QD_NEEDS_NOTHING);
    CHECK_EQ(qd_method_get(QD_METHOD_GPTQ)->needs(&o), QD_NEEDS_HESSIAN);
    CHECK_EQ(qd_method_get(QD_METHOD_ADAROUND)->needs(&o), QD_NEEDS_HESSIAN);
    o.ada_batch = 64;
    CHECK_EQ(qd_method_get(QD_METHOD_ADAROUND)->needs(&o), QD_NEEDS_ROWS);
    CHECK(!qd_method_calibrated(QD_METHOD_RTN) && qd_method_calibrated(QD_METHOD_GPTQ) &&
          qd_method_calibrated(QD_METHOD_ADAROUND));
    CHECK(qd_method_get(QD_METHOD_RTN)->per_tensor && !qd_method_get(QD_METHOD_GPTQ)->per_tensor);

    check_rtn((qd_qscheme){8, 1, QD_GRAN_CHANNEL, 128, 0}, 0, 0);
    check_rtn((qd_qscheme){4, 0, QD_GRAN_GROUP, 16, 0}, 1, 1);
    check_rtn((qd_qscheme){3, 0, QD_GRAN_TENSOR, 0, 0}, 0, 1);
    check_rtn((qd_qscheme){2, 1, QD_GRAN_GROUP, 20, 0}, 1, 0);

    /* a layer: W [R][C], inputs X [N][C] with correlated columns, H = 2/N X^T X */
    static float W[R * C], X[N * C], H[C * C];
    for (int i = 0; i < R * C; i++) W[i] = rnd();
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) X[n * C + c] = rnd() + 0.5f * (c ? X[n * C + c - 1] : 0.0f);
    for (int a = 0; a < C; a++)
        for (int b = 0; b < C; b++) {
            double s = 0;
            for (int n = 0; n < N; n++) s += (double)X[n * C + a] * X[n * C + b];
            H[a * C + b] = (float)(2.0 * s / N);
        }
    const qd_layer_stats st = {.cols = C, .H = H, .X = X, .N = N};
    uint8_t c1[R * C], c2[R * C];
    float s1[R * 3], s2[R * 3], w1[R * C], w2[R * C];
    int32_t z1[R * 3], z2[R * 3], g1[C], g2[C];

    /* GPTQ: 4-bit asymmetric groups of 16 with act-order */
    qd_method_default_opts(&o);
    o.scheme = (qd_qscheme){4, 0, QD_GRAN_GROUP, 16, 0};
    o.gptq.bits = 4;
    o.gptq.sym = 0;
    o.gptq.group_size = 16;
    o.gptq.act_order = 1;
    const qd_method_def *gd = qd_method_get(QD_METHOD_GPTQ);
    void *prep = NULL;
    CHECK_EQ(gd->prepare(&o, &st, &prep), QD_OK);
    memcpy(w1, W, sizeof w1);
    qd_unit_out out = {.codes = c1, .scales = s1, .zeros = z1};
    CHECK_EQ(gd->quantize(&o, &st, prep, w1, R, &out), QD_OK);
    qd_gptq_prep *ref = NULL;
    CHECK_EQ(qd_gptq_prepare(H, C, &o.gptq, &ref), QD_OK);
    memcpy(w2, W, sizeof w2);
    CHECK_EQ(qd_gptq_quantize_prepared(ref, w2, R, c2, s2, z2, NULL, NULL), QD_OK);
    CHECK(!memcmp(c1, c2, sizeof c1) && !memcmp(s1, s2, sizeof s1) && !memcmp(z1, z2, sizeof z1));
    CHECK_EQ(gd->g_idx(&o, &st, g1), 1);
    qd_gptq_g_idx(H, C, &o.gptq, g2);
    CHECK(!memcmp(g1, g2, sizeof g1));
    o.gptq.act_order = 0;
    CHECK_EQ(gd->g_idx(&o, &st, g1), 0);
    CHECK(gd->same_prep(&o, &o));
    gd->release(prep);
    qd_gptq_prep_free(ref);

    /* AdaRound: 3-bit per channel, 30 steps, through H and through the rows */
    const qd_method_def *ad = qd_method_get(QD_METHOD_ADAROUND);
    for (int form = 0; form < 2; form++) {
        qd_method_default_opts(&o);
        o.scheme = (qd_qscheme){3, 0, QD_GRAN_CHANNEL, 128, 0};
        o.ada.iters = 30;
        o.ada_batch = form ? 32 : 0;
        o.ada.tiles = 0;
        memcpy(w1, W, sizeof w1);
        out = (qd_unit_out){.codes = c1, .scales = s1, .zeros = z1};
        CHECK_EQ(ad->quantize(&o, &st, NULL, w1, R, &out), QD_OK);
        /* the same through quant/ directly */
        const qd_clip_opts mse = QD_CLIP_MSE;
        qd_find_params_rows(W, R, C, C, 3, 0, &mse, s2, z2, 1);
        qd_qparams p = {R, C, 1, C, 3, 0, QD_GRAN_CHANNEL, s2, z2};
        qd_adaround_problem pb = {
            .R = R, .C = C, .W = W, .X = form ? X : NULL, .N = form ? N : 0, .H = form ? NULL : H, .p = &p};
        qd_adaround_opts a;
        qd_adaround_default_opts(&a);
        a.iters = 30;
        a.tiles = 0;
        if (form) a.batch = 32;
        CHECK_EQ(qd_adaround_quantize(&pb, &a, c2, NULL, NULL), QD_OK);
        CHECK(!memcmp(c1, c2, sizeof c1) && !memcmp(s1, s2, (size_t)R * sizeof(float)));
    }
    QD_TEST_MAIN_END();
}
