/* The job's fused RTN path (worker/rtn_rows.c) against the reference pipeline of quant/
 * (qd_quant_params + qd_rtn_quantize + qd_pack_matrix + qd_quant_error): the same scales, zeros
 * and packed bytes bit for bit, the same error sums within rounding, on random data, on rows
 * built to hit the edge cases (constant, zero, ties at half steps, huge outliers, one column,
 * short last groups) and on every 2-D weight of the real ViT checkpoint. Also: row ranges
 * quantized separately give the same bytes and the same block sums as the whole tensor, and a
 * NaN is reported with its row in the whole tensor. Prints the speed of both paths. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qd_test.h"
#include "shard/safetensors.h"
#include "worker/rtn_rows.h"

static uint64_t g_s = 7;
static float urand(void)
{
    g_s = g_s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((g_s >> 11) * (1.0 / 9007199254740992.0));
}

static int g_cases;

/* one comparison; returns the number of mismatching bytes/values */
static void compare(const char *what, const float *w, int64_t R, int64_t C, const qd_qscheme *s,
                    const qd_clip_opts *clip)
{
    qd_qparams p;
    int rc = qd_quant_params(w, R, C, s, clip, &p);
    CHECK_EQ(rc, QD_OK);
    if (rc) return;
    int64_t rb = qd_packed_row_bytes(C, s->bits), ng = qd_rtn_ngroups(s, C);
    CHECK_EQ(ng, p.ngroups);
    uint8_t *codes = malloc((size_t)(R * C)), *ref = malloc((size_t)(R * rb)), *got = malloc((size_t)(R * rb));
    float *deq = malloc((size_t)(R * C) * sizeof(float));
    qd_rtn_quantize(w, &p, NULL, codes);
    qd_pack_matrix(codes, R, C, s->bits, ref);
    qd_dequantize(codes, &p, NULL, deq);
    qd_qerror e = qd_quant_error(w, deq, R * C);
    float *sc = malloc((size_t)(R * ng) * sizeof(float));
    int32_t *z = malloc((size_t)(R * ng) * sizeof(int32_t));
    int64_t br = (R + 15) / 16;
    qd_errsum blk[16];
    memset(blk, 0, sizeof blk);
    CHECK_EQ(qd_rtn_rows(w, R, C, s, clip, got, sc, z, br, blk, what, 0), QD_OK);
    int bad_s = memcmp(sc, p.scales, (size_t)(R * ng) * sizeof(float)) != 0;
    int bad_z = memcmp(z, p.zeros, (size_t)(R * ng) * sizeof(int32_t)) != 0;
    int bad_q = memcmp(got, ref, (size_t)(R * rb)) != 0;
    CHECK_MSG(!bad_s && !bad_z && !bad_q,
              "%s: %lldx%lld bits %d sym %d gran %d G %lld clip %d: scales %s, zeros %s, codes %s", what, (long long)R,
              (long long)C, s->bits, s->sym, s->gran, (long long)s->group_size, clip->grid, bad_s ? "DIFFER" : "ok",
              bad_z ? "DIFFER" : "ok", bad_q ? "DIFFER" : "ok");
    double e2 = 0, w2 = 0, mx = 0;
    for (int b = 0; b < 16; b++) {
        e2 += blk[b].err2;
        w2 += blk[b].w2;
        if (blk[b].max_abs > mx) mx = blk[b].max_abs;
    }
    CHECK_NEAR(e2 / (double)(R * C), e.mse, 1e-9 * e.mse + 1e-30);
    CHECK_NEAR(mx, e.max_abs, 0.0);
    if (w2 > 0 && e.rel_fro > 0) CHECK_NEAR(sqrt(e2 / w2), e.rel_fro, 1e-9 * e.rel_fro);

    /* the same rows in block-aligned ranges, as the row sharding splits them */
    if (s->gran != QD_GRAN_TENSOR && R >= 3) {
        uint8_t *got2 = malloc((size_t)(R * rb));
        qd_errsum blk2[16];
        memset(blk2, 0, sizeof blk2);
        int64_t cut = br * (R / br / 2 > 0 ? R / br / 2 : 1);
        if (cut >= R) cut = 0;
        if (cut) {
            CHECK_EQ(qd_rtn_rows(w, cut, C, s, clip, got2, sc, z, br, blk2, what, 0), QD_OK);
            CHECK_EQ(qd_rtn_rows(w + cut * C, R - cut, C, s, clip, got2 + cut * rb, sc + cut * ng, z + cut * ng, br,
                                 blk2 + cut / br, what, cut),
                     QD_OK);
            CHECK(memcmp(got2, ref, (size_t)(R * rb)) == 0);
            CHECK(memcmp(blk, blk2, sizeof blk) == 0);
        }
        free(got2);
    }
    g_cases++;
    free(codes);
    free(ref);
    free(got);
    free(deq);
    free(sc);
    free(z);
    qd_qparams_free(&p);
}

static void all_schemes(const char *what, const float *w, int64_t R, int64_t C, int with_clip)
{
    static const int64_t groups[] = {32, 128, 48};
    for (int bits = 2; bits <= 8; bits++)
        for (int sym = 0; sym <= 1; sym++) {
            qd_qscheme s = {bits, sym, QD_GRAN_CHANNEL, 0, 0};
            compare(what, w, R, C, &s, &QD_CLIP_MINMAX);
            s.gran = QD_GRAN_TENSOR;
            compare(what, w, R, C, &s, &QD_CLIP_MINMAX);
            s.gran = QD_GRAN_GROUP;
            s.group_size = groups[bits % 3];
            compare(what, w, R, C, &s, &QD_CLIP_MINMAX);
            if (with_clip && (bits == 3 || bits == 4)) {
                qd_clip_opts mse = {100, 0.8f, 2.0f};
                compare(what, w, R, C, &s, &mse);
                s.gran = QD_GRAN_CHANNEL;
                compare(what, w, R, C, &s, &mse);
            }
        }
}

int main(void)
{
    /* random rows, with edge-case rows mixed in */
    enum { R = 37, C = 150 };
    float *w = malloc(sizeof(float) * R * C);
    for (int i = 0; i < R * C; i++) w[i] = (urand() - 0.4f) * 0.1f;
    for (int c = 0; c < C; c++) {
        w[1 * C + c] = 0.0f;                             /* all zero */
        w[2 * C + c] = 0.03125f;                         /* constant positive */
        w[3 * C + c] = -0.7f;                            /* constant negative */
        w[4 * C + c] = (float)(c % 17 - 8) * 0.5f;       /* exact half steps: ties */
        w[5 * C + c] = c == 77 ? 1e6f : urand() * 1e-3f; /* one huge outlier */
        w[6 * C + c] = -urand();                         /* all negative */
        w[7 * C + c] = c % 2 ? -0.0f : 0.0f;             /* signed zeros */
        w[8 * C + c] = urand() * 1e-30f;                 /* tiny */
    }
    all_schemes("random", w, R, C, 1);
    all_schemes("one column", w, R, 1, 0);
    all_schemes("one row", w + 4 * C, 1, C, 0);

    /* a NaN is reported with its position in the whole tensor */
    w[20 * C + 5] = NAN;
    qd_qscheme s8 = {8, 1, QD_GRAN_CHANNEL, 0, 0};
    uint8_t *buf = malloc((size_t)R * C);
    float sc[R];
    int32_t z[R];
    qd_errsum blk[16] = {{0}};
    CHECK_EQ(qd_rtn_rows(w + 16 * C, 8, C, &s8, &QD_CLIP_MINMAX, buf, sc, z, 4, blk, "t.weight", 16), QD_ENONFINITE);
    CHECK_CONTAINS(qd_errmsg(), "t.weight: NaN at [20, 5]");
    free(buf);
    free(w);

    /* every 2-D weight of the real checkpoint */
    char path[1024];
    snprintf(path, sizeof path, "%s/vit-mnist-tiny", qd_test_models_dir());
    qd_checkpoint *ck;
    CHECK_EQ(qd_ckpt_open(path, &ck), QD_OK);
    int nreal = 0;
    for (int i = 0; i < qd_ckpt_num_tensors(ck); i++) {
        const qd_tensor_info *t = qd_ckpt_tensor(ck, i);
        if (t->ndim != 2 || !t->float_like) continue;
        const float *x;
        int owned;
        CHECK_EQ(qd_ckpt_read_f32(ck, i, &x, &owned), QD_OK);
        float *xc = malloc((size_t)t->numel * sizeof(float)); /* aligned copy */
        memcpy(xc, x, (size_t)t->numel * sizeof(float));
        qd_qscheme s = {8, 1, QD_GRAN_CHANNEL, 0, 0};
        compare(t->name, xc, t->shape[0], t->shape[1], &s, &QD_CLIP_MINMAX);
        s = (qd_qscheme){4, 0, QD_GRAN_GROUP, 32, 0};
        compare(t->name, xc, t->shape[0], t->shape[1], &s, &QD_CLIP_MINMAX);
        s = (qd_qscheme){3, 0, QD_GRAN_CHANNEL, 0, 0};
        compare(t->name, xc, t->shape[0], t->shape[1], &s, &QD_CLIP_MSE_DEFAULT);
        free(xc);
        if (owned) free((void *)x);
        nreal++;
    }
    qd_ckpt_close(ck);
    CHECK_EQ(nreal, 37);
    printf("%d comparisons with the reference\n", g_cases);

    /* speed on a BERT-sized matrix, 8-bit per channel, both paths */
    enum { BR = 3072, BC = 768 };
    float *b = malloc(sizeof(float) * BR * BC);
    for (int i = 0; i < BR * BC; i++) b[i] = urand() - 0.5f;
    uint8_t *out = malloc((size_t)BR * BC), *codes = malloc((size_t)BR * BC);
    float *deq = malloc(sizeof(float) * BR * BC), *bs = malloc(sizeof(float) * BR * 24);
    int32_t *bz = malloc(sizeof(int32_t) * BR * 24);
    for (int bits = 8; bits >= 4; bits -= 4) {
        qd_qscheme s =
            bits == 8 ? (qd_qscheme){8, 1, QD_GRAN_CHANNEL, 0, 0} : (qd_qscheme){4, 0, QD_GRAN_GROUP, 128, 0};
        double t0 = qd_now();
        int reps = 5;
        for (int k = 0; k < reps; k++) {
            qd_qparams p;
            qd_quant_params(b, BR, BC, &s, &QD_CLIP_MINMAX, &p);
            qd_rtn_quantize(b, &p, NULL, codes);
            qd_pack_matrix(codes, BR, BC, s.bits, out);
            qd_dequantize(codes, &p, NULL, deq);
            qd_quant_error(b, deq, (int64_t)BR * BC);
            qd_qparams_free(&p);
        }
        double t1 = qd_now();
        for (int k = 0; k < reps; k++) {
            qd_errsum e[16] = {{0}};
            qd_rtn_rows(b, BR, BC, &s, &QD_CLIP_MINMAX, out, bs, bz, BR / 16, e, "bench", 0);
        }
        double t2 = qd_now(), gb = 4.0 * BR * BC * reps * 1e-9;
        printf("%d-bit %s: reference %.2f GB/s, fused %.2f GB/s (%.1fx)\n", bits,
               bits == 8 ? "per channel" : "g128 asym", gb / (t1 - t0), gb / (t2 - t1), (t1 - t0) / (t2 - t1));
    }
    free(b);
    free(out);
    free(codes);
    free(deq);
    free(bs);
    free(bz);
    QD_TEST_MAIN_END();
}
