/* SparseGPT against the IST-DASLab reference's results (tests/reference/sparsegpt-reference.safetensors,
 * made by make_sparsegpt_reference.py) on the 18 real layers of blocks 0-2 of vit-mnist-tiny (W and
 * H from ../shared/models/reference/gptq-reference.safetensors), five settings: 50 % unstructured,
 * 2:4, 4:8, 50 % jointly with 4-bit and 2:4 jointly with 8-bit quantization. For every
 * (layer, setting): >= 99 % of the mask equal to the reference's, the relative output error
 * tr(E H E^T) / tr(W H W^T) and the reference's own "error" within 5 %, and (50 %) the pruned
 * weights within 5 % (relative Frobenius: the few mask flips move the updates of their rows). Then on every layer SparseGPT's output error is below
 * magnitude pruning's (per row and per layer) and Wanda's at 50 %, 2:4 and 4:8. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qd_test.h"
#include "quant/prune.h"
#include "quant/sparsegpt.h"
#include "shard/safetensors.h"

static const char *k_layers[] = {"attention.attention.query", "attention.attention.key", "attention.attention.value",
                                 "attention.output.dense",    "intermediate.dense",      "output.dense"};

static const void *get(qd_checkpoint *ck, const char *name)
{
    int i = qd_ckpt_find(ck, name);
    const void *d = NULL;
    if (i < 0 || qd_ckpt_raw(ck, i, &d) != QD_OK) {
        fprintf(stderr, "missing %s\n", name);
        exit(1);
    }
    return d;
}

static double rel_err(const float *W, const float *Q, const float *H, int64_t R, int64_t C)
{
    return qd_output_rel_error(W, Q, H, R, C);
}

int main(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/reference/gptq-reference.safetensors", qd_test_models_dir());
    qd_checkpoint *src, *ref;
    if (qd_ckpt_open(path, &src) != QD_OK) {
        fprintf(stderr, "%s\n", qd_errmsg());
        return 1;
    }
    snprintf(path, sizeof path, "%s/tests/reference/sparsegpt-reference.safetensors", QD_TEST_SOURCE_DIR);
    if (qd_ckpt_open(path, &ref) != QD_OK) {
        fprintf(stderr, "%s\n", qd_errmsg());
        return 1;
    }
    struct {
        const char *s;
        qd_sparsity sp;
        int bits, sym;
    } S[] = {{"u50", {0.5, 0, 0}, 0, 0},
             {"nm24", {0, 2, 4}, 0, 0},
             {"nm48", {0, 4, 8}, 0, 0},
             {"u50q4", {0.5, 0, 0}, 4, 0},
             {"nm24q8", {0, 2, 4}, 8, 1}};
    printf("%-30s %-6s %8s %11s %11s %7s %9s\n", "layer", "set", "mask=", "relerr", "reference", "ratio", "err ratio");
    double worst_match = 1, worst_rel = 0, worst_err = 0, worst_w = 0;
    int beaten = 0, comparisons = 0;
    double min_gain = INFINITY;
    for (int b = 0; b < 3; b++)
        for (size_t l = 0; l < QD_ARRAY_LEN(k_layers); l++) {
            char n[256];
            snprintf(n, sizeof n, "vit.encoder.layer.%d.%s.W", b, k_layers[l]);
            const qd_tensor_info *t = qd_ckpt_tensor(src, qd_ckpt_find(src, n));
            const int64_t R = t->shape[0], C = t->shape[1];
            const float *W0 = get(src, n);
            snprintf(n, sizeof n, "vit.encoder.layer.%d.%s.H", b, k_layers[l]);
            const float *H = get(src, n);
            float *W = malloc((size_t)(R * C) * sizeof(float));
            uint8_t *mask = malloc((size_t)(R * C)), *rmask = malloc((size_t)(R * C)), *codes = malloc((size_t)(R * C));
            float *sc = malloc((size_t)R * sizeof(float));
            int32_t *zr = malloc((size_t)R * sizeof(int32_t));
            for (size_t k = 0; k < QD_ARRAY_LEN(S); k++) {
                memcpy(W, W0, (size_t)(R * C) * sizeof(float));
                qd_sparsegpt_opts o;
                qd_sparsegpt_default_opts(&o);
                o.sp = S[k].sp;
                o.quantize = S[k].bits > 0;
                o.bits = S[k].bits ? S[k].bits : 4;
                o.sym = S[k].sym;
                qd_sparsegpt_stats st;
                CHECK_EQ(qd_sparsegpt_prune(W, R, C, H, &o, mask, codes, sc, zr, &st), QD_OK);
                snprintf(n, sizeof n, "vit.encoder.layer.%d.%s.%s.mask", b, k_layers[l], S[k].s);
                qd_mask_unpack(get(ref, n), R, C, rmask);
                int64_t same = 0;
                for (int64_t i = 0; i < R * C; i++) same += mask[i] == rmask[i];
                double match = (double)same / (double)(R * C);
                double rel = rel_err(W0, W, H, R, C);
                snprintf(n, sizeof n, "vit.encoder.layer.%d.%s.%s.out_relerr", b, k_layers[l], S[k].s);
                double ref_rel = *(const double *)get(ref, n);
                snprintf(n, sizeof n, "vit.encoder.layer.%d.%s.%s.error", b, k_layers[l], S[k].s);
                double ref_err = *(const double *)get(ref, n);
                printf("%d.%-28s %-6s %7.3f%% %11.4e %11.4e %7.4f %9.4f\n", b, k_layers[l], S[k].s, 100 * match, rel,
                       ref_rel, rel / ref_rel, st.error / ref_err);
                CHECK_DBL_LE(0.99, match);
                CHECK_DBL_LE(fabs(rel / ref_rel - 1), 0.05);
                CHECK_DBL_LE(fabs(st.error / ref_err - 1), 0.05);
                if (S[k].sp.n) CHECK_EQ(qd_mask_check_nm(mask, R, C, S[k].sp.n, S[k].sp.m, n), QD_OK);
                worst_match = fmin(worst_match, match);
                worst_rel = fmax(worst_rel, fabs(rel / ref_rel - 1));
                worst_err = fmax(worst_err, fabs(st.error / ref_err - 1));
                for (int64_t i = 0; i < R * C; i++)
                    if (!mask[i]) CHECK_MSG(W[i] == 0.0f, "pruned weight %lld is %g", (long long)i, (double)W[i]);
                if (k == 0) { /* the weights themselves */
                    snprintf(n, sizeof n, "vit.encoder.layer.%d.%s.u50.W", b, k_layers[l]);
                    const float *RW = get(ref, n);
                    double d = 0, s = 0;
                    for (int64_t i = 0; i < R * C; i++) {
                        d += ((double)W[i] - RW[i]) * ((double)W[i] - RW[i]);
                        s += (double)RW[i] * RW[i];
                    }
                    worst_w = fmax(worst_w, sqrt(d / s));
                    CHECK_DBL_LE(sqrt(d / s), 0.05);
                }
                if (S[k].bits) continue;
                /* SparseGPT below magnitude (row and layer) and Wanda with the same pattern */
                const char *names[] = {"magnitude/row", "magnitude/layer", "wanda"};
                for (int m = 0; m < 3; m++) {
                    float *Wm = malloc((size_t)(R * C) * sizeof(float));
                    memcpy(Wm, W0, (size_t)(R * C) * sizeof(float));
                    if (m < 2)
                        CHECK_EQ(qd_prune_magnitude(W0, R, C, &S[k].sp, m ? QD_PRUNE_LAYER : QD_PRUNE_ROW, mask),
                                 QD_OK);
                    else
                        CHECK_EQ(qd_prune_wanda(W0, R, C, H, &S[k].sp, mask), QD_OK);
                    qd_prune_apply(Wm, mask, R * C);
                    CHECK_NEAR((double)qd_mask_count(mask, R * C) / (double)(R * C), 0.5, 1e-3);
                    double e = rel_err(W0, Wm, H, R, C);
                    comparisons++;
                    if (!(rel < e)) {
                        beaten++;
                        fprintf(stderr, "%d.%s %s: SparseGPT %.4e >= %s %.4e\n", b, k_layers[l], S[k].s, rel, names[m],
                                e);
                    }
                    min_gain = fmin(min_gain, e / rel);
                    free(Wm);
                }
            }
            free(W);
            free(mask);
            free(rmask);
            free(codes);
            free(sc);
            free(zr);
        }
    printf("worst: mask equal %.3f%%, relerr off by %.2f%%, error off by %.2f%%, u50 weights %.2e; "
           "SparseGPT lower than magnitude/Wanda in %d of %d, by %.2fx at least\n",
           100 * worst_match, 100 * worst_rel, 100 * worst_err, worst_w, comparisons - beaten, comparisons, min_gain);
    CHECK_EQ(beaten, 0);
    qd_ckpt_close(src);
    qd_ckpt_close(ref);
    QD_TEST_MAIN_END();
}
