/* quant/ on synthetic data: hand-computed parameters, ties, constant and all-zero groups, NaN
 * rejection, partial groups, packing round trips and layout. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qd_test.h"
#include "quant/quant.h"

static uint64_t g_rng = 99;
static uint32_t urand32(void) {
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(g_rng >> 33);
}

int main(void) {
    /* hand-computed: row [-1, 0.5, 2], 4-bit asym: xmin -1, xmax 2, scale 0.2, zero 5 */
    float row[3] = {-1.0f, 0.5f, 2.0f};
    float s;
    int32_t z;
    qd_clip_opts mm = QD_CLIP_MINMAX;
    qd_find_params_rows(row, 1, 3, 3, 4, 0, &mm, &s, &z, 1);
    CHECK_NEAR(s, 0.2f, 1e-7);
    CHECK_EQ(z, 5);
    /* symmetric 8-bit: zero 128, scale 2*2/255 */
    qd_find_params_rows(row, 1, 3, 3, 8, 1, &mm, &s, &z, 1);
    CHECK_EQ(z, 128);
    CHECK_NEAR(s, 4.0f / 255.0f, 1e-8);
    /* positive-only row: range widened to include 0 */
    float pos[2] = {1.0f, 3.0f};
    qd_find_params_rows(pos, 1, 2, 2, 2, 0, &mm, &s, &z, 1);
    CHECK_NEAR(s, 1.0f, 0);
    CHECK_EQ(z, 0);

    /* round half to even: x/scale = -4.5 exactly -> -4, and 2.5 -> 2 */
    CHECK_EQ(qd_quantize1(-4.5f, 1.0f, 8, 15), 4);
    CHECK_EQ(qd_quantize1(2.5f, 1.0f, 0, 15), 2);
    CHECK_EQ(qd_quantize1(3.5f, 1.0f, 0, 15), 4);
    CHECK_EQ(qd_quantize1(100.0f, 1.0f, 0, 15), 15); /* clamped */
    CHECK_EQ(qd_quantize1(-100.0f, 1.0f, 3, 15), 0);

    /* constant and all-zero groups reconstruct exactly, for every bit width and both modes */
    float consts[] = {0.0f, 0.3f, -0.7f, 1e-30f, 123.456f, -3.0f, 0.1f};
    for (int bits = 2; bits <= 8; bits++)
        for (int sym = 0; sym < 2; sym++)
            for (size_t k = 0; k < QD_ARRAY_LEN(consts); k++) {
                float g[5];
                for (int i = 0; i < 5; i++) g[i] = consts[k];
                qd_find_params_rows(g, 1, 5, 5, bits, sym, &mm, &s, &z, 1);
                CHECK(s > 0 && isfinite(s));
                float back = qd_dequantize1(qd_quantize1(g[0], s, z, qd_maxq(bits)), s, z);
                CHECK_MSG(back == consts[k], "bits %d sym %d const %g -> %g", bits, sym, consts[k], back);
            }

    /* NaN / Inf rejected with the position */
    float bad[6] = {0, 1, 2, 3, NAN, 5};
    CHECK_EQ(qd_check_finite(bad, 2, 3, "layer.w"), QD_ENONFINITE);
    CHECK_CONTAINS(qd_errmsg(), "layer.w: NaN at [1, 1]");
    bad[4] = INFINITY;
    qd_qscheme sch = {4, 0, QD_GRAN_CHANNEL, 0};
    qd_qparams p;
    CHECK_EQ(qd_quant_params(bad, 2, 3, &sch, &mm, &p), QD_ENONFINITE);
    CHECK_CONTAINS(qd_errmsg(), "Inf at [1, 1]");

    /* groups with a partial last group: cols 10, G 4 -> groups of 4, 4, 2 */
    enum { R = 3, C = 10 };
    float w[R * C];
    for (int i = 0; i < R * C; i++) w[i] = (float)((int)(urand32() % 2001) - 1000) / 500.0f;
    qd_qscheme gs = {3, 0, QD_GRAN_GROUP, 4};
    CHECK_EQ(qd_quant_params(w, R, C, &gs, &mm, &p), QD_OK);
    CHECK_EQ(p.ngroups, 3);
    for (int r = 0; r < R; r++) {
        float s2;
        int32_t z2;
        qd_find_params_rows(w + r * C + 8, 1, 2, C, 3, 0, &mm, &s2, &z2, 1);
        CHECK(p.scales[r * 3 + 2] == s2);
        CHECK_EQ(p.zeros[r * 3 + 2], z2);
    }
    uint8_t codes[R * C];
    float deq[R * C];
    qd_rtn_quantize(w, &p, NULL, codes);
    qd_dequantize(codes, &p, NULL, deq);
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            int g = c / 4;
            CHECK_DBL_LE(fabsf(deq[r * C + c] - w[r * C + c]), p.scales[r * 3 + g] * 0.5f + 1e-6f);
        }
    qd_qerror e = qd_quant_error(w, deq, R * C);
    CHECK(e.mse > 0 && e.rel_fro > 0 && e.rel_fro < 0.5 && e.sqnr_db > 5 && e.max_abs > 0);
    qd_qparams_free(&p);
    /* per tensor: same parameters on every row */
    qd_qscheme ts = {8, 1, QD_GRAN_TENSOR, 0};
    CHECK_EQ(qd_quant_params(w, R, C, &ts, &mm, &p), QD_OK);
    CHECK_EQ(p.ngroups, 1);
    CHECK(p.scales[0] == p.scales[2] && p.zeros[0] == 128);
    qd_qparams_free(&p);

    /* packing: layout by hand, then round trips of random and edge values for bits 2..8 */
    uint8_t c4[3] = {0x1, 0xF, 0x7}, out[4] = {0};
    qd_pack_row(c4, 3, 4, out);
    CHECK_EQ(out[0], 0xF1);
    CHECK_EQ(out[1], 0x07);
    uint8_t c3[8] = {1, 2, 3, 4, 5, 6, 7, 0}, o3[3];
    qd_pack_row(c3, 8, 3, o3);
    CHECK_EQ(qd_packed_row_bytes(8, 3), 3);
    /* bits: 001 010 011 100 101 110 111 000, little-endian stream */
    uint32_t stream = o3[0] | (uint32_t)o3[1] << 8 | (uint32_t)o3[2] << 16;
    for (int i = 0; i < 8; i++) CHECK_EQ((stream >> (3 * i)) & 7, c3[i]);
    for (int bits = 2; bits <= 8; bits++)
        for (int n = 1; n <= 67; n += 3) {
            uint8_t in[67], pk[67], back[67];
            int maxq = qd_maxq(bits);
            for (int i = 0; i < n; i++) in[i] = (uint8_t)(i % 3 == 0 ? maxq : i % 3 == 1 ? 0 : (int)(urand32() % (maxq + 1)));
            memset(pk, 0xAA, sizeof pk);
            qd_pack_row(in, n, bits, pk);
            qd_unpack_row(pk, n, bits, back);
            CHECK_MSG(memcmp(in, back, (size_t)n) == 0, "round trip bits %d n %d", bits, n);
        }
    uint8_t mat[5 * 7], pm[5 * 7], bm[5 * 7];
    for (int i = 0; i < 35; i++) mat[i] = (uint8_t)(urand32() % 32);
    qd_pack_matrix(mat, 5, 7, 5, pm);
    qd_unpack_matrix(pm, 5, 7, 5, bm);
    CHECK(memcmp(mat, bm, 35) == 0);
    QD_TEST_MAIN_END();
}
