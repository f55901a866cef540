/* quant/ on synthetic data: hand-computed parameters, ties, constant and all-zero groups, NaN
 * rejection, partial groups, packing round trips and layout. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qd_test.h"
#include "quant/quant.h"

static uint64_t g_rng = 99;
static uint32_t urand32(void)
{
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(g_rng >> 33);
}

int main(void)
{
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
    qd_qscheme sch = {4, 0, QD_GRAN_CHANNEL, 0, 0};
    qd_qparams p;
    CHECK_EQ(qd_quant_params(bad, 2, 3, &sch, &mm, &p), QD_ENONFINITE);
    CHECK_CONTAINS(qd_errmsg(), "Inf at [1, 1]");

    /* groups with a partial last group: cols 10, G 4 -> groups of 4, 4, 2 */
    enum { R = 3, C = 10 };
    float w[R * C];
    for (int i = 0; i < R * C; i++) w[i] = (float)((int)(urand32() % 2001) - 1000) / 500.0f;
    qd_qscheme gs = {3, 0, QD_GRAN_GROUP, 4, 0};
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
    /* float16 scales: each scale is the float16 rounding of the float32 one (halves are exact in
     * float), and the codes are chosen against the rounded scale (within half a step of it) */
    qd_qscheme g16 = gs;
    g16.scale_f16 = 1;
    qd_qparams p16;
    CHECK_EQ(qd_quant_params(w, R, C, &gs, &mm, &p), QD_OK);
    CHECK_EQ(qd_quant_params(w, R, C, &g16, &mm, &p16), QD_OK);
    for (int k = 0; k < R * 3; k++) {
        int e;
        frexpf(p.scales[k], &e); /* scale = m * 2^e, m in [0.5, 1): float16 keeps 11 bits of m */
        const float ulp = ldexpf(1.0f, e - 11), h = nearbyintf(p.scales[k] / ulp) * ulp;
        CHECK(p16.scales[k] == h && p16.zeros[k] == p.zeros[k]);
    }
    qd_rtn_quantize(w, &p16, NULL, codes);
    qd_dequantize(codes, &p16, NULL, deq);
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            const float s16 = p16.scales[r * 3 + c / 4];
            CHECK_DBL_LE(fabsf(deq[r * C + c] - w[r * C + c]), s16 * 0.5f + 2e-3f * s16 * 8.0f + 1e-6f);
        }
    qd_qparams_free(&p16);
    qd_qparams_free(&p);
    /* per tensor: same parameters on every row */
    qd_qscheme ts = {8, 1, QD_GRAN_TENSOR, 0, 0};
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
            for (int i = 0; i < n; i++)
                in[i] = (uint8_t)(i % 3 == 0 ? maxq : i % 3 == 1 ? 0 : (int)(urand32() % (maxq + 1)));
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

    /* ---- every width and mode: parameter invariants, G = 1, G > cols, bad schemes ---- */
    {
        enum { R2 = 4, C2 = 37 };
        float x[R2 * C2];
        for (int i = 0; i < R2 * C2; i++) x[i] = (float)((int)(urand32() % 4001) - 1500) / 1000.0f;
        x[5] = 0.0f;
        for (int bits = 2; bits <= 8; bits++)
            for (int sym = 0; sym < 2; sym++) {
                int64_t gss[] = {1, 5, 32, 1000};
                for (size_t k = 0; k < QD_ARRAY_LEN(gss); k++) {
                    qd_qscheme sc = {bits, sym, QD_GRAN_GROUP, gss[k], 0};
                    qd_qparams pp;
                    CHECK_EQ(qd_quant_params(x, R2, C2, &sc, &mm, &pp), QD_OK);
                    CHECK_EQ(pp.ngroups, (C2 + QD_MIN(gss[k], C2) - 1) / QD_MIN(gss[k], C2));
                    for (int64_t i = 0; i < R2 * pp.ngroups; i++) {
                        CHECK(pp.scales[i] > 0 && isfinite(pp.scales[i]));
                        CHECK(pp.zeros[i] >= 0 && pp.zeros[i] <= qd_maxq(bits));
                        if (sym) CHECK_EQ(pp.zeros[i], 1 << (bits - 1));
                    }
                    uint8_t cd[R2 * C2];
                    float dq[R2 * C2];
                    qd_rtn_quantize(x, &pp, NULL, cd);
                    qd_dequantize(cd, &pp, NULL, dq);
                    long over = 0;
                    for (int r = 0; r < R2; r++)
                        for (int c = 0; c < C2; c++) {
                            CHECK_LE(cd[r * C2 + c], qd_maxq(bits));
                            /* inside the range every value is within half a step (plus rounding
                             * of the float ops); symmetric clamps +xmax one step short */
                            float sc1 = pp.scales[r * pp.ngroups + c / pp.group_size];
                            over += fabsf(dq[r * C2 + c] - x[r * C2 + c]) > (sym ? 1.0f : 0.5f) * sc1 * 1.0001f + 1e-7f;
                        }
                    CHECK_MSG(over == 0, "bits %d sym %d G %lld: %ld values beyond the step bound", bits, sym,
                              (long long)gss[k], over);
                    if (gss[k] == 1 && !sym) { /* every group constant: exact */
                        CHECK(memcmp(dq, x, sizeof x) == 0);
                    }
                    qd_qparams_free(&pp);
                }
            }
        qd_qscheme bad_bits = {9, 0, QD_GRAN_CHANNEL, 0, 0}, bad_g = {4, 0, QD_GRAN_GROUP, 0, 0};
        qd_qparams pp;
        CHECK_EQ(qd_quant_params(x, R2, C2, &bad_bits, &mm, &pp), QD_EINVAL);
        bad_bits.bits = 1;
        CHECK_EQ(qd_quant_params(x, R2, C2, &bad_bits, &mm, &pp), QD_EINVAL);
        CHECK_EQ(qd_quant_params(x, R2, C2, &bad_g, &mm, &pp), QD_EINVAL);
        CHECK_EQ(qd_quant_params(x, 0, C2, &bad_bits, &mm, &pp), QD_EINVAL);
    }

    /* symmetric 8-bit: +xmax clamps to 255 (zero 128), -xmax is code 1 */
    {
        float v[3] = {-2.0f, 1.0f, 2.0f};
        qd_find_params_rows(v, 1, 3, 3, 8, 1, &mm, &s, &z, 1);
        CHECK_EQ(qd_quantize1(2.0f, s, z, 255), 255);
        CHECK_EQ(qd_quantize1(-2.0f, s, z, 255), 1);
        /* all-zero group: [-1, 1], asym zero rint(1 / (2/15)) = rint(7.4999996f) = 7, 0 exact */
        float zz[4] = {0};
        qd_find_params_rows(zz, 1, 4, 4, 4, 0, &mm, &s, &z, 1);
        CHECK(s == 2.0f / 15.0f);
        CHECK_EQ(z, 7);
        /* symmetric group without negative values: full symmetric range, nothing clipped */
        float pz[4] = {0.0f, 0.5f, 1.0f, 2.0f};
        qd_find_params_rows(pz, 1, 4, 4, 4, 1, &mm, &s, &z, 1);
        CHECK(s == 4.0f / 15.0f);
        CHECK_EQ(z, 8);
        CHECK_NEAR(qd_dequantize1(qd_quantize1(2.0f, s, z, 15), s, z), 2.0f, 0.5f * s);
        CHECK(qd_dequantize1(qd_quantize1(0.0f, s, z, 15), s, z) == 0.0f);
    }

    /* ---- clipping search: i = 0 is min-max; norm 2 never increases the squared error ---- */
    {
        enum { R3 = 64, C3 = 48 };
        static float x[R3 * C3];
        for (int i = 0; i < R3 * C3; i++) { /* heavy-tailed rows: most values small, a few large */
            float u = (float)(urand32() % 100000) / 100000.0f - 0.5f;
            x[i] = u * u * u * 8.0f;
        }
        qd_clip_opts one = {1, 1.0f, 2.0f}; /* a single candidate, p = 1: identical to min-max */
        qd_clip_opts mse = QD_CLIP_MSE, gm = QD_CLIP_GPTQ_MSE;
        for (int bits = 2; bits <= 8; bits++) {
            float s0[R3], s1[R3], s2[R3];
            int32_t z0[R3], z1[R3], z2[R3];
            qd_find_params_rows(x, R3, C3, C3, bits, 0, &mm, s0, z0, 1);
            qd_find_params_rows(x, R3, C3, C3, bits, 0, &one, s1, z1, 1);
            CHECK(memcmp(s0, s1, sizeof s0) == 0 && memcmp(z0, z1, sizeof z0) == 0);
            qd_find_params_rows(x, R3, C3, C3, bits, 0, &mse, s1, z1, 1);
            qd_find_params_rows(x, R3, C3, C3, bits, 1, &gm, s2, z2, 1);
            long worse = 0, better = 0;
            for (int r = 0; r < R3; r++) {
                double e0 = 0, e1 = 0;
                for (int c = 0; c < C3; c++) {
                    float v = x[r * C3 + c];
                    double d0 = (double)qd_dequantize1(qd_quantize1(v, s0[r], z0[r], qd_maxq(bits)), s0[r], z0[r]) - v;
                    double d1 = (double)qd_dequantize1(qd_quantize1(v, s1[r], z1[r], qd_maxq(bits)), s1[r], z1[r]) - v;
                    e0 += d0 * d0;
                    e1 += d1 * d1;
                }
                worse += e1 > e0;
                better += e1 < e0;
                CHECK(s1[r] <= s0[r]);            /* only shrinks */
                CHECK_EQ(z2[r], 1 << (bits - 1)); /* symmetric search keeps the zero */
            }
            CHECK_EQ(worse, 0);
            if (bits <= 4) CHECK_GT(better, R3 / 2);
        }
    }

    /* ---- row kernels and g_idx (act-order): a column permutation of the groups ---- */
    {
        enum { R4 = 3, C4 = 12, G4 = 4 };
        float x[R4 * C4];
        for (int i = 0; i < R4 * C4; i++) x[i] = (float)((int)(urand32() % 2001) - 1000) / 300.0f;
        qd_qscheme sc = {4, 0, QD_GRAN_GROUP, G4, 0};
        qd_qparams pp;
        CHECK_EQ(qd_quant_params(x, R4, C4, &sc, &mm, &pp), QD_OK);
        uint8_t c1[R4 * C4], c2[R4 * C4];
        qd_rtn_quantize(x, &pp, NULL, c1);
        for (int r = 0; r < R4; r++)
            for (int c = 0; c < C4; c++) {
                int g = c / G4;
                CHECK_EQ(c1[r * C4 + c], qd_quantize1(x[r * C4 + c], pp.scales[r * 3 + g], pp.zeros[r * 3 + g], 15));
            }
        int32_t gi[C4];
        for (int c = 0; c < C4; c++) gi[c] = c / G4;
        qd_rtn_quantize(x, &pp, gi, c2);
        CHECK(memcmp(c1, c2, sizeof c1) == 0);
        /* permute columns: x'[:, perm[k]] = x[:, k], g_idx'[perm[k]] = k / G -> same codes permuted */
        int perm[C4] = {5, 11, 0, 3, 7, 1, 9, 2, 10, 4, 8, 6};
        float xp[R4 * C4];
        int32_t gp[C4];
        for (int k = 0; k < C4; k++) {
            gp[perm[k]] = k / G4;
            for (int r = 0; r < R4; r++) xp[r * C4 + perm[k]] = x[r * C4 + k];
        }
        CHECK_EQ(qd_check_g_idx(gp, C4, 3, "t"), QD_OK);
        qd_rtn_quantize(xp, &pp, gp, c2);
        float d1[R4 * C4], d2[R4 * C4];
        qd_dequantize(c1, &pp, NULL, d1);
        qd_dequantize(c2, &pp, gp, d2);
        for (int k = 0; k < C4; k++)
            for (int r = 0; r < R4; r++) {
                CHECK_EQ(c2[r * C4 + perm[k]], c1[r * C4 + k]);
                CHECK(d2[r * C4 + perm[k]] == d1[r * C4 + k]);
            }
        gp[7] = 3;
        CHECK_EQ(qd_check_g_idx(gp, C4, 3, "layer.g_idx"), QD_EFORMAT);
        CHECK_CONTAINS(qd_errmsg(), "layer.g_idx: g_idx[7] = 3 outside [0, 3)");
        qd_qparams_free(&pp);
    }

    /* ---- packing: long random rows, unused high bits zero, the stream read bit by bit ---- */
    for (int bits = 2; bits <= 8; bits++)
        for (int n = 1; n <= 300; n += 37) {
            uint8_t in[300], pk[300], back[300];
            for (int i = 0; i < n; i++) in[i] = (uint8_t)(urand32() % (uint32_t)(qd_maxq(bits) + 1));
            int64_t nb = qd_packed_row_bytes(n, bits);
            CHECK_EQ(nb, (n * bits + 7) / 8);
            memset(pk, 0x5A, sizeof pk);
            qd_pack_row(in, n, bits, pk);
            long wrong = 0;
            for (int64_t bit = 0; bit < nb * 8; bit++) {
                int got = (pk[bit / 8] >> (bit % 8)) & 1;
                int want = bit < (int64_t)n * bits ? (in[bit / bits] >> (bit % bits)) & 1 : 0;
                wrong += got != want;
            }
            CHECK_MSG(wrong == 0, "bits %d n %d: %ld stream bits differ", bits, n, wrong);
            CHECK_EQ(pk[nb], 0x5A); /* nothing written past the row */
            qd_unpack_row(pk, n, bits, back);
            CHECK(memcmp(in, back, (size_t)n) == 0);
        }

    /* ---- metrics by hand ---- */
    {
        float a[4] = {1, -2, 3, 0}, b[4] = {1, -1, 3, 0.5f};
        qd_qerror m = qd_quant_error(a, b, 4);
        CHECK_NEAR(m.mse, 1.25 / 4, 1e-12);
        CHECK_NEAR(m.max_abs, 1.0, 0);
        CHECK_NEAR(m.rel_fro, sqrt(1.25 / 14), 1e-12);
        CHECK_NEAR(m.sqnr_db, 10 * log10(14 / 1.25), 1e-9);
        m = qd_quant_error(a, a, 4);
        CHECK(m.mse == 0 && m.rel_fro == 0 && isinf(m.sqnr_db) && m.sqnr_db > 0);
    }
    QD_TEST_MAIN_END();
}
