/* quant/ on the real checkpoints:
 *  - the parameter finder reproduces the GPTQ reference's RTN scales/zeros bit for bit on every
 *    layer of ../shared/models/reference/gptq-reference.safetensors (settings a, c: 4/3-bit per
 *    channel; e: 2-bit groups of 16), and its RTN codes (closed form of the README), including the
 *    exact .5 tie of layer 0 attention.value row 144, column 25;
 *    The symmetric 8-bit per-channel parameters match the reference's setting d scales too;
 *  - on every 2-D weight of vit-mnist-tiny, the MSE clipping search (QD_CLIP_MSE, norm 2) gives
 *    MSE <= min-max on every row (per channel and groups of 32) and a lower mean MSE at 4, 3 and
 *    2 bits; the reference's norm-2.4 search is reported (it is not MSE-monotone row by row);
 *  - K-means codebooks per row have a lower MSE than RTN per channel at every width 2..8. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qd_test.h"
#include "quant/kmeans.h"
#include "quant/quant.h"
#include "shard/safetensors.h"

static const char *k_layers[] = {"attention.attention.query", "attention.attention.key", "attention.attention.value",
                                 "attention.output.dense",    "intermediate.dense",      "output.dense"};

static const float *get(qd_checkpoint *ck, const char *name, int64_t *r, int64_t *c)
{
    int i = qd_ckpt_find(ck, name);
    if (i < 0) return NULL;
    const qd_tensor_info *t = qd_ckpt_tensor(ck, i);
    const float *d;
    int owned;
    if (qd_ckpt_read_f32(ck, i, &d, &owned) != QD_OK) return NULL;
    if (r) *r = t->shape[0];
    if (c) *c = t->ndim > 1 ? t->shape[1] : 1;
    return d; /* F32 in the reference file: zero-copy, lives as long as ck */
}

static void reference_params(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/reference/gptq-reference.safetensors", qd_test_models_dir());
    qd_checkpoint *ck;
    CHECK_EQ(qd_ckpt_open(path, &ck), QD_OK);
    if (!ck) return;
    struct {
        const char *s;
        int bits, gs;
    } settings[] = {{"a", 4, -1}, {"c", 3, -1}, {"e", 2, 16}};
    long long total = 0, scale_mismatch = 0, zero_mismatch = 0, code_mismatch = 0;
    for (int b = 0; b < 3; b++)
        for (size_t l = 0; l < QD_ARRAY_LEN(k_layers); l++)
            for (size_t k = 0; k < QD_ARRAY_LEN(settings); k++) {
                char name[256];
                int64_t R = 0, C = 0;
                snprintf(name, sizeof name, "vit.encoder.layer.%d.%s.W", b, k_layers[l]);
                const float *W = get(ck, name, &R, &C);
                snprintf(name, sizeof name, "vit.encoder.layer.%d.%s.rtn_%s.scales", b, k_layers[l], settings[k].s);
                const float *rs = get(ck, name, NULL, NULL);
                snprintf(name, sizeof name, "vit.encoder.layer.%d.%s.rtn_%s.zeros", b, k_layers[l], settings[k].s);
                const float *rz = get(ck, name, NULL, NULL);
                CHECK(W && rs && rz);
                if (!W || !rs || !rz) continue;
                qd_qscheme sch = {settings[k].bits, 0, settings[k].gs < 0 ? QD_GRAN_CHANNEL : QD_GRAN_GROUP,
                                  settings[k].gs, 0};
                qd_qparams p;
                qd_clip_opts mm = QD_CLIP_MINMAX;
                CHECK_EQ(qd_quant_params(W, R, C, &sch, &mm, &p), QD_OK);
                for (int64_t i = 0; i < R * p.ngroups; i++) {
                    total++;
                    scale_mismatch += p.scales[i] != rs[i];
                    zero_mismatch += (float)p.zeros[i] != rz[i];
                }
                uint8_t *codes = malloc((size_t)(R * C));
                qd_rtn_quantize(W, &p, NULL, codes);
                /* closed form of the README in float ops: clamp(rint(W/s) + z, 0, maxq) */
                for (int64_t r = 0; r < R; r++)
                    for (int64_t c = 0; c < C; c++) {
                        int64_t g = c / p.group_size;
                        float q = rintf(W[r * C + c] / rs[r * p.ngroups + g]) + rz[r * p.ngroups + g];
                        q = q < 0 ? 0 : q > qd_maxq(settings[k].bits) ? (float)qd_maxq(settings[k].bits) : q;
                        code_mismatch += codes[r * C + c] != (uint8_t)q;
                    }
                if (b == 0 && l == 2 && k == 0) {
                    /* the README's tie: W/scale = -4.5 exactly -> code 4 (half to even) */
                    float ratio = W[144 * C + 25] / p.scales[144];
                    CHECK(ratio == -4.5f);
                    CHECK_EQ(codes[144 * C + 25] - p.zeros[144], -4);
                }
                free(codes);
                qd_qparams_free(&p);
            }
    /* setting d: 8-bit symmetric per channel, parameters from the original W (zero 128) */
    long long dtotal = 0, dmis = 0;
    for (int b = 0; b < 3; b++)
        for (size_t l = 0; l < QD_ARRAY_LEN(k_layers); l++) {
            char name[256];
            int64_t R = 0, C = 0;
            snprintf(name, sizeof name, "vit.encoder.layer.%d.%s.W", b, k_layers[l]);
            const float *W = get(ck, name, &R, &C);
            snprintf(name, sizeof name, "vit.encoder.layer.%d.%s.gptq_d.scales", b, k_layers[l]);
            const float *ds = get(ck, name, NULL, NULL);
            snprintf(name, sizeof name, "vit.encoder.layer.%d.%s.gptq_d.zeros", b, k_layers[l]);
            const float *dz = get(ck, name, NULL, NULL);
            CHECK(W && ds && dz);
            if (!W || !ds || !dz) continue;
            qd_qscheme sch = {8, 1, QD_GRAN_CHANNEL, 0, 0};
            qd_qparams p;
            qd_clip_opts mm = QD_CLIP_MINMAX;
            CHECK_EQ(qd_quant_params(W, R, C, &sch, &mm, &p), QD_OK);
            for (int64_t r = 0; r < R; r++) {
                dtotal++;
                dmis += p.scales[r] != ds[r] || (float)p.zeros[r] != dz[r];
            }
            qd_qparams_free(&p);
        }
    printf("reference setting d (8-bit symmetric): %lld rows, %lld parameter mismatches\n", dtotal, dmis);
    CHECK(dtotal > 0);
    CHECK_EQ(dmis, 0);
    printf("reference RTN parameters: %lld groups, %lld scale and %lld zero mismatches, %lld code mismatches\n", total,
           scale_mismatch, zero_mismatch, code_mismatch);
    CHECK(total > 0);
    CHECK_EQ(scale_mismatch, 0);
    CHECK_EQ(zero_mismatch, 0);
    CHECK_EQ(code_mismatch, 0);
    qd_ckpt_close(ck);
}

/* squared error of every row of W after RTN with parameters from (scheme, clip) */
static void row_sse(const float *W, int64_t R, int64_t C, const qd_qscheme *sch, const qd_clip_opts *clip, double *sse)
{
    qd_qparams p;
    CHECK_EQ(qd_quant_params(W, R, C, sch, clip, &p), QD_OK);
    uint8_t *codes = malloc((size_t)(R * C));
    float *q = malloc((size_t)(R * C) * sizeof(float));
    qd_rtn_quantize(W, &p, NULL, codes);
    qd_dequantize(codes, &p, NULL, q);
    for (int64_t r = 0; r < R; r++) sse[r] = qd_quant_error(W + r * C, q + r * C, C).mse * (double)C;
    free(codes);
    free(q);
    qd_qparams_free(&p);
}

/* The `mse` clipping option (norm 2): MSE <= min-max on every row of every 2-D weight, per
 * channel and in groups of 32, and a lower mean at 4 and 3 bits. The reference's norm-2.4 search
 * is reported alongside (it minimizes another norm, so a row may get a higher MSE). */
static void clip_search(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/vit-mnist-tiny/model.safetensors", qd_test_models_dir());
    qd_checkpoint *ck;
    CHECK_EQ(qd_ckpt_open(path, &ck), QD_OK);
    if (!ck) return;
    for (int gi = 0; gi < 2; gi++)
        for (int bits = 8; bits >= 2; bits--) {
            double sum_mm = 0, sum_mse = 0, sum_24 = 0;
            long long rows = 0, worse = 0, worse24 = 0, mats = 0;
            for (int i = 0; i < qd_ckpt_num_tensors(ck); i++) {
                const qd_tensor_info *t = qd_ckpt_tensor(ck, i);
                if (t->ndim != 2 || !t->float_like) continue;
                mats++;
                int64_t R = t->shape[0], C = t->shape[1];
                const float *W;
                int owned;
                CHECK_EQ(qd_ckpt_read_f32(ck, i, &W, &owned), QD_OK);
                qd_qscheme sch = {bits, 0, gi ? QD_GRAN_GROUP : QD_GRAN_CHANNEL, 32, 0};
                qd_clip_opts mm = QD_CLIP_MINMAX, mse = QD_CLIP_MSE, g24 = QD_CLIP_GPTQ_MSE;
                double *ea = malloc((size_t)R * sizeof(double)), *eb = malloc((size_t)R * sizeof(double)),
                       *ec = malloc((size_t)R * sizeof(double));
                row_sse(W, R, C, &sch, &mm, ea);
                row_sse(W, R, C, &sch, &mse, eb);
                if (!gi)
                    row_sse(W, R, C, &sch, &g24, ec); /* pow() is slow: per channel only */
                else
                    memcpy(ec, ea, (size_t)R * sizeof(double));
                for (int64_t r = 0; r < R; r++) {
                    worse += eb[r] > ea[r];
                    worse24 += ec[r] > ea[r];
                    sum_mm += ea[r] / (double)C;
                    sum_mse += eb[r] / (double)C;
                    sum_24 += ec[r] / (double)C;
                    rows++;
                }
                free(ea);
                free(eb);
                free(ec);
                if (owned) free((void *)W);
            }
            printf("%d-bit %s over %lld matrices, %lld rows: mean MSE min-max %.4e, mse search %.4e (%.1f%% lower, "
                   "%lld rows worse)",
                   bits, gi ? "group 32" : "per channel", mats, rows, sum_mm / rows, sum_mse / rows,
                   100 * (1 - sum_mse / sum_mm), worse);
            if (!gi) printf("; norm-2.4 search %.4e (%lld rows worse)", sum_24 / rows, worse24);
            printf("\n");
            CHECK_EQ(worse, 0);
            if (bits <= 4) CHECK_DBL_LT(sum_mse, sum_mm);
        }
    qd_ckpt_close(ck);
}

/* K-means codebooks (per row) against uniform RTN per channel at the same bits, every 2-D weight */
static void kmeans_vs_rtn(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/vit-mnist-tiny/model.safetensors", qd_test_models_dir());
    qd_checkpoint *ck;
    CHECK_EQ(qd_ckpt_open(path, &ck), QD_OK);
    if (!ck) return;
    for (int bits = 8; bits >= 2; bits--) {
        double se_k = 0, se_r = 0;
        long worse = 0, mats = 0;
        for (int i = 0; i < qd_ckpt_num_tensors(ck); i++) {
            const qd_tensor_info *t = qd_ckpt_tensor(ck, i);
            if (t->ndim != 2 || !t->float_like) continue;
            int64_t R = t->shape[0], C = t->shape[1];
            const float *W;
            int owned;
            CHECK_EQ(qd_ckpt_read_f32(ck, i, &W, &owned), QD_OK);
            int K = 1 << bits;
            float *cb = malloc((size_t)(R * K) * sizeof(float)), *q = malloc((size_t)(R * C) * sizeof(float));
            uint8_t *codes = malloc((size_t)(R * C));
            qd_kmeans_opts ko = {bits, 1, 100, 1234, QD_KMEANS_PLUSPLUS, 0};
            CHECK(qd_kmeans_quantize(W, R, C, NULL, &ko, cb, codes) >= 0);
            for (int64_t r = 0; r < R; r++)
                for (int64_t c = 0; c < C; c++) q[r * C + c] = cb[r * K + codes[r * C + c]];
            double ek = qd_quant_error(W, q, R * C).mse;
            qd_qscheme sch = {bits, 0, QD_GRAN_CHANNEL, 0, 0};
            qd_qparams p;
            qd_clip_opts mm = QD_CLIP_MINMAX;
            CHECK_EQ(qd_quant_params(W, R, C, &sch, &mm, &p), QD_OK);
            qd_rtn_quantize(W, &p, NULL, codes);
            qd_dequantize(codes, &p, NULL, q);
            double er = qd_quant_error(W, q, R * C).mse;
            worse += ek > er;
            se_k += ek;
            se_r += er;
            mats++;
            qd_qparams_free(&p);
            free(cb);
            free(q);
            free(codes);
            if (owned) free((void *)W);
        }
        printf("%d-bit over %ld matrices: mean MSE K-means (per row) %.4e vs RTN per channel %.4e (%.1fx lower)\n",
               bits, mats, se_k / mats, se_r / mats, se_r / se_k);
        CHECK_EQ(worse, 0);
    }
    /* deterministic */
    float w[64], cb1[8], cb2[8];
    uint8_t c1[64], c2[64];
    for (int i = 0; i < 64; i++) w[i] = sinf((float)i * 0.7f);
    qd_kmeans_opts ko = {3, 0, 50, 9, QD_KMEANS_PLUSPLUS, 0};
    qd_kmeans_quantize(w, 1, 64, NULL, &ko, cb1, c1);
    qd_kmeans_quantize(w, 1, 64, NULL, &ko, cb2, c2);
    CHECK(memcmp(cb1, cb2, sizeof cb1) == 0 && memcmp(c1, c2, sizeof c1) == 0);
    qd_ckpt_close(ck);
}

int main(void)
{
    reference_params();
    clip_search();
    kmeans_vs_rtn();
    QD_TEST_MAIN_END();
}
