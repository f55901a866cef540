/* Pruning primitives (quant/prune.h) and SparseGPT (quant/sparsegpt.h) on small problems with
 * known answers: pattern parsing, exact counts and tie order, N:M groups, Wanda's scaling, mask
 * packing, structured importance against the output error it stands for, SparseGPT reducing to
 * magnitude pruning when inputs are uncorrelated, beating it when they are, the joint quantized
 * form, and row units giving the rows of the whole. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qd_test.h"
#include "quant/prune.h"
#include "quant/quant.h"
#include "quant/sparsegpt.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double urand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static float nrand(void) { return (float)(sqrt(-2 * log(urand() + 1e-300)) * cos(6.283185307179586 * urand())); }

/* H = 2/N X^T X for N random rows with correlated columns */
static void make_h(float *H, int64_t C, int64_t N, double corr)
{
    float *X = malloc((size_t)(N * C) * sizeof(float));
    for (int64_t i = 0; i < N; i++) {
        float common = nrand();
        for (int64_t j = 0; j < C; j++)
            X[i * C + j] = (float)((1 - corr) * nrand() + corr * common) * (float)(1 + (j % 5));
    }
    for (int64_t a = 0; a < C; a++)
        for (int64_t b = 0; b < C; b++) {
            double s = 0;
            for (int64_t i = 0; i < N; i++) s += (double)X[i * C + a] * X[i * C + b];
            H[a * C + b] = (float)(2.0 * s / (double)N);
        }
    free(X);
}

static void test_parse(void)
{
    qd_sparsity s;
    char buf[32];
    CHECK_EQ(qd_sparsity_parse("0.5", &s), QD_OK);
    CHECK_NEAR(s.sparsity, 0.5, 0);
    CHECK_EQ(s.n, 0);
    CHECK_EQ(qd_sparsity_parse("70%", &s), QD_OK);
    CHECK_NEAR(s.sparsity, 0.7, 1e-12);
    CHECK_EQ(qd_sparsity_parse("2:4", &s), QD_OK);
    CHECK_EQ(s.n, 2);
    CHECK_EQ(s.m, 4);
    CHECK_NEAR(qd_sparsity_fraction(&s), 0.5, 0);
    qd_sparsity_format(&s, buf, sizeof buf);
    CHECK(!strcmp(buf, "2:4"));
    CHECK_EQ(qd_sparsity_parse("4:8", &s), QD_OK);
    CHECK_EQ(s.m, 8);
    const char *bad[] = {"", "4:2", "0:4", "2:", ":4", "1.0", "-0.1", "abc", "2:4x", "0.5x", "2:128"};
    for (size_t i = 0; i < QD_ARRAY_LEN(bad); i++)
        CHECK_MSG(qd_sparsity_parse(bad[i], &s) == QD_EINVAL, "'%s'", bad[i]);
    s = (qd_sparsity){0, 2, 4};
    CHECK_EQ(qd_sparsity_check_cols(&s, 10, "t"), QD_ESHAPE);
    CHECK(strstr(qd_errmsg(), "multiple of M = 4") != NULL);
}

static void test_select(void)
{
    /* per row: exact floor count, lowest first, ties prune the lower index */
    const float sc[2][6] = {{5, 1, 3, 1, 4, 2}, {0, 0, 0, 0, 0, 0}};
    uint8_t m[12];
    qd_sparsity s = {0.5, 0, 0};
    CHECK_EQ(qd_prune_select(&sc[0][0], 2, 6, &s, QD_PRUNE_ROW, m), QD_OK);
    const uint8_t want_row[12] = {1, 0, 1, 0, 1, 0, 0, 0, 0, 1, 1, 1};
    CHECK(!memcmp(m, want_row, 12));
    s.sparsity = 0.4; /* floor(0.4 * 6) = 2 per row */
    CHECK_EQ(qd_prune_select(&sc[0][0], 2, 6, &s, QD_PRUNE_ROW, m), QD_OK);
    CHECK_EQ(qd_mask_count(m, 12), 8);
    s.sparsity = 0.5; /* layer: the 6 lowest of 12: the six zeros of row 1 */
    CHECK_EQ(qd_prune_select(&sc[0][0], 2, 6, &s, QD_PRUNE_LAYER, m), QD_OK);
    for (int i = 0; i < 12; i++) CHECK_EQ(m[i], i < 6);
    /* 2:4: the two largest of each group of 4 */
    const float g[8] = {4, 1, 3, 2, 1, 1, 1, 1};
    s = (qd_sparsity){0, 2, 4};
    CHECK_EQ(qd_prune_select(g, 1, 8, &s, QD_PRUNE_ROW, m), QD_OK);
    const uint8_t want_nm[8] = {1, 0, 1, 0, 0, 0, 1, 1};
    CHECK(!memcmp(m, want_nm, 8));
    CHECK_EQ(qd_mask_check_nm(m, 1, 8, 2, 4, "t"), QD_OK);
    m[1] = 1;
    CHECK_EQ(qd_mask_check_nm(m, 1, 8, 2, 4, "w"), QD_EFORMAT);
    CHECK(strstr(qd_errmsg(), "row 0, columns 0..3 keep 3") != NULL);
}

static void test_magnitude_wanda(void)
{
    const int64_t R = 16, C = 64;
    float *W = malloc(R * C * sizeof(float));
    for (int64_t i = 0; i < R * C; i++) W[i] = nrand();
    uint8_t *m = malloc(R * C);
    qd_sparsity s = {0, 4, 8};
    CHECK_EQ(qd_prune_magnitude(W, R, C, &s, QD_PRUNE_ROW, m), QD_OK);
    CHECK_EQ(qd_mask_count(m, R * C), R * C / 2);
    int worse = 0; /* every kept weight of a group at least as large as every pruned one */
    for (int64_t r = 0; r < R; r++)
        for (int64_t gr = 0; gr < C; gr += 8)
            for (int a = 0; a < 8; a++)
                for (int b = 0; b < 8; b++)
                    if (m[r * C + gr + a] && !m[r * C + gr + b])
                        worse += fabsf(W[r * C + gr + a]) < fabsf(W[r * C + gr + b]);
    CHECK_EQ(worse, 0);
    s = (qd_sparsity){0.75, 0, 0};
    CHECK_EQ(qd_prune_magnitude(W, R, C, &s, QD_PRUNE_LAYER, m), QD_OK);
    CHECK_EQ(qd_mask_count(m, R * C), R * C - (int64_t)(0.75 * R * C));
    /* Wanda: |W| * sqrt(H_jj); W = [1 2 3 4], diag = [16 1 1 0.25] -> scores 4 2 3 2: the tie
     * 2 = 2 prunes column 1 first */
    const float w4[4] = {1, 2, 3, 4};
    float H[16] = {0};
    H[0] = 16;
    H[5] = 1;
    H[10] = 1;
    H[15] = 0.25f;
    s = (qd_sparsity){0.5, 0, 0};
    CHECK_EQ(qd_prune_wanda(w4, 1, 4, H, &s, m), QD_OK);
    const uint8_t want[4] = {1, 0, 1, 0};
    CHECK(!memcmp(m, want, 4));
    H[5] = NAN;
    CHECK_EQ(qd_prune_wanda(w4, 1, 4, H, &s, m), QD_ENONFINITE);
    W[3] = INFINITY;
    CHECK_EQ(qd_prune_magnitude(W, R, C, &s, QD_PRUNE_ROW, m), QD_ENONFINITE);
    free(W);
    free(m);
}

static void test_pack(void)
{
    const int64_t R = 3, C = 13;
    uint8_t m[39], back[39], p[3 * 2];
    for (int i = 0; i < 39; i++) m[i] = (uint8_t)((i * 7 + 3) % 5 < 2);
    qd_mask_pack(m, R, C, p);
    CHECK_EQ(QD_MASK_ROW_BYTES(13), 2);
    for (int r = 0; r < 3; r++) CHECK_EQ(p[r * 2 + 1] >> 5, 0); /* unused high bits */
    CHECK_EQ(p[0] & 1, m[0]);
    CHECK_EQ((p[1] >> 4) & 1, m[12]);
    qd_mask_unpack(p, R, C, back);
    CHECK(!memcmp(m, back, 39));
}

static void test_units(void)
{
    /* importance(u) equals tr(E H E^T) with E = W restricted to the unit's columns */
    const int64_t R = 6, C = 12, unit = 3;
    float W[72], H[144], E[72];
    for (int i = 0; i < 72; i++) W[i] = nrand();
    make_h(H, C, 200, 0.3);
    double imp[4];
    qd_prune_unit_importance(W, R, C, H, unit, imp);
    for (int u = 0; u < 4; u++) {
        for (int64_t r = 0; r < R; r++)
            for (int64_t c = 0; c < C; c++) E[r * C + c] = c / unit == u ? W[r * C + c] : 0.0f;
        double q = 0;
        for (int64_t r = 0; r < R; r++)
            for (int64_t a = 0; a < C; a++)
                for (int64_t b = 0; b < C; b++) q += (double)E[r * C + a] * H[a * C + b] * E[r * C + b];
        CHECK_NEAR(imp[u], q, 1e-9 * fabs(q) + 1e-12);
    }
    uint8_t keep[4];
    const double v[4] = {3, 1, 2, 1};
    qd_prune_choose_units(v, 4, 2, keep);
    const uint8_t want[4] = {1, 0, 1, 0};
    CHECK(!memcmp(keep, want, 4));
}

static void test_sparsegpt(void)
{
    const int64_t R = 32, C = 64;
    float *W0 = malloc(R * C * sizeof(float)), *W = malloc(R * C * sizeof(float)), *H = malloc(C * C * sizeof(float));
    uint8_t *m = malloc(R * C), *mm = malloc(R * C), *codes = malloc(R * C);
    for (int64_t i = 0; i < R * C; i++) W0[i] = nrand();
    /* uncorrelated inputs of equal scale: SparseGPT is magnitude pruning, weights untouched */
    memset(H, 0, C * C * sizeof(float));
    for (int64_t j = 0; j < C; j++) H[j * C + j] = 2.0f;
    qd_sparsegpt_opts o;
    qd_sparsegpt_default_opts(&o);
    o.scope = QD_PRUNE_ROW;
    o.sp = (qd_sparsity){0.5, 0, 0};
    memcpy(W, W0, R * C * sizeof(float));
    qd_sparsegpt_stats st;
    CHECK_EQ(qd_sparsegpt_prune(W, R, C, H, &o, m, NULL, NULL, NULL, &st), QD_OK);
    CHECK_EQ(qd_prune_magnitude(W0, R, C, &o.sp, QD_PRUNE_ROW, mm), QD_OK);
    CHECK(!memcmp(m, mm, R * C));
    CHECK_EQ(st.kept, R * C / 2);
    int same = 1;
    for (int64_t i = 0; i < R * C; i++) same &= W[i] == (m[i] ? W0[i] : 0.0f);
    CHECK(same);
    /* correlated inputs: lower output error than magnitude and Wanda, for every pattern */
    make_h(H, C, 400, 0.6);
    const qd_sparsity pats[3] = {{0.5, 0, 0}, {0, 2, 4}, {0, 4, 8}};
    for (int k = 0; k < 3; k++) {
        o.sp = pats[k];
        o.scope = QD_PRUNE_LAYER;
        memcpy(W, W0, R * C * sizeof(float));
        CHECK_EQ(qd_sparsegpt_prune(W, R, C, H, &o, m, NULL, NULL, NULL, &st), QD_OK);
        double e = qd_output_rel_error(W0, W, H, R, C);
        if (pats[k].n) CHECK_EQ(qd_mask_check_nm(m, R, C, pats[k].n, pats[k].m, "sparsegpt"), QD_OK);
        CHECK_EQ(qd_mask_count(m, R * C), R * C / 2);
        qd_prune_magnitude(W0, R, C, &pats[k], QD_PRUNE_ROW, mm);
        memcpy(W, W0, R * C * sizeof(float));
        qd_prune_apply(W, mm, R * C);
        double em = qd_output_rel_error(W0, W, H, R, C);
        qd_prune_wanda(W0, R, C, H, &pats[k], mm);
        memcpy(W, W0, R * C * sizeof(float));
        qd_prune_apply(W, mm, R * C);
        double ew = qd_output_rel_error(W0, W, H, R, C);
        printf("pattern %d: sparsegpt %.4f magnitude %.4f wanda %.4f\n", k, e, em, ew);
        CHECK_DBL_LE(e * 1.2, em);
        CHECK_DBL_LE(e * 1.2, ew);
    }
    /* joint 4-bit, g16: pruned weights are code == zero (value 0), others on the grid; below
     * magnitude pruning followed by RTN of the same groups */
    o.sp = (qd_sparsity){0, 2, 4};
    o.quantize = 1;
    o.bits = 4;
    o.group_size = 16;
    float *sc = malloc(R * 4 * sizeof(float));
    int32_t *zr = malloc(R * 4 * sizeof(int32_t));
    memcpy(W, W0, R * C * sizeof(float));
    CHECK_EQ(qd_sparsegpt_prune(W, R, C, H, &o, m, codes, sc, zr, &st), QD_OK);
    int bad = 0;
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < C; c++) {
            int64_t g = c / 16, i = r * C + c;
            if (!m[i]) bad += codes[i] != zr[r * 4 + g] || W[i] != 0.0f;
            bad += W[i] != qd_dequantize1(codes[i], sc[r * 4 + g], zr[r * 4 + g]);
        }
    CHECK_EQ(bad, 0);
    double ej = qd_output_rel_error(W0, W, H, R, C);
    qd_prune_magnitude(W0, R, C, &o.sp, QD_PRUNE_ROW, mm);
    float *Wm = malloc(R * C * sizeof(float));
    memcpy(Wm, W0, R * C * sizeof(float));
    qd_prune_apply(Wm, mm, R * C);
    qd_qscheme sch = {4, 0, QD_GRAN_GROUP, 16, 0};
    qd_qparams p;
    qd_clip_opts mn = QD_CLIP_MINMAX;
    CHECK_EQ(qd_quant_params(Wm, R, C, &sch, &mn, &p), QD_OK);
    qd_rtn_quantize(Wm, &p, NULL, codes);
    qd_dequantize(codes, &p, NULL, W);
    double er = qd_output_rel_error(W0, W, H, R, C);
    printf("2:4 + 4-bit g16: sparsegpt+gptq %.4f, magnitude+rtn %.4f\n", ej, er);
    CHECK_DBL_LE(ej * 1.2, er);
    qd_qparams_free(&p);
    /* unstructured + 4-bit g16 with a diagonal Hessian (no updates): every group's scale and zero
     * are those of its kept weights alone (the pruned ones end as 0 and must not widen the grid) */
    {
        float *Hd = calloc((size_t)(C * C), sizeof(float)), *Wk = malloc(R * C * sizeof(float));
        float *s2 = malloc(R * 4 * sizeof(float));
        int32_t *z2 = malloc(R * 4 * sizeof(int32_t));
        for (int64_t c = 0; c < C; c++) Hd[c * C + c] = 1.0f + (float)(c % 5);
        qd_sparsegpt_opts ou = o;
        ou.sp = (qd_sparsity){0.5, 0, 0};
        memcpy(W, W0, R * C * sizeof(float));
        CHECK_EQ(qd_sparsegpt_prune(W, R, C, Hd, &ou, m, codes, sc, zr, &st), QD_OK);
        memcpy(Wk, W0, R * C * sizeof(float));
        qd_prune_apply(Wk, m, R * C);
        for (int64_t g = 0; g < 4; g++) qd_find_params_rows(Wk + 16 * g, R, 16, C, 4, 0, &mn, s2 + g, z2 + g, 4);
        CHECK(!memcmp(sc, s2, R * 4 * sizeof(float)) && !memcmp(zr, z2, R * 4 * sizeof(int32_t)));
        free(Hd);
        free(Wk);
        free(s2);
        free(z2);
    }
    /* row units: N:M and per-row scope give each row what the whole layer gives it */
    o.quantize = 0;
    qd_gptq_prep *prep;
    CHECK_EQ(qd_sparsegpt_prepare(H, C, &o, &prep), QD_OK);
    memcpy(W, W0, R * C * sizeof(float));
    CHECK_EQ(qd_sparsegpt_prune_prepared(prep, &o, W, R, C, m, NULL, NULL, NULL, NULL), QD_OK);
    memcpy(Wm, W0, R * C * sizeof(float));
    CHECK_EQ(qd_sparsegpt_prune_prepared(prep, &o, Wm, 8, C, mm, NULL, NULL, NULL, NULL), QD_OK);
    CHECK_EQ(qd_sparsegpt_prune_prepared(prep, &o, Wm + 8 * C, R - 8, C, mm + 8 * C, NULL, NULL, NULL, NULL), QD_OK);
    CHECK(!memcmp(m, mm, R * C));
    double md = 0;
    for (int64_t i = 0; i < R * C; i++) md = fmax(md, fabs((double)W[i] - Wm[i]));
    CHECK_DBL_LE(md, 1e-5);
    qd_gptq_prep_free(prep);
    /* errors */
    o.sp = (qd_sparsity){0, 2, 3};
    CHECK_EQ(qd_sparsegpt_prune(W, R, C, H, &o, m, NULL, NULL, NULL, NULL), QD_ESHAPE);
    free(W0);
    free(W);
    free(Wm);
    free(H);
    free(m);
    free(mm);
    free(codes);
    free(sc);
    free(zr);
}

int main(void)
{
    test_parse();
    test_select();
    test_magnitude_wanda();
    test_pack();
    test_units();
    test_sparsegpt();
    QD_TEST_MAIN_END();
}
