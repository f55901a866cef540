/* AdaRound on every quantized layer of the real ViT checkpoint (blocks 0-2 of
 * ../shared/models/reference/gptq-reference.safetensors: W and the Hessian of its real
 * calibration inputs) at 4 and 3 bits per channel, scales from the MSE clipping search: the
 * learned rounding's output error must not exceed RTN's with the same scales, and the fraction of
 * weights left soft is reported and small. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qd_test.h"
#include "quant/adaround.h"
#include "shard/safetensors.h"

static const char *k_layers[] = {"attention.attention.query", "attention.attention.key", "attention.attention.value",
                                 "attention.output.dense", "intermediate.dense", "output.dense"};

static const float *get(qd_checkpoint *ck, const char *name, int64_t *r, int64_t *c) {
    int i = qd_ckpt_find(ck, name);
    if (i < 0) {
        fprintf(stderr, "missing tensor %s\n", name);
        exit(1);
    }
    const qd_tensor_info *t = qd_ckpt_tensor(ck, i);
    const float *d;
    int owned;
    if (qd_ckpt_read_f32(ck, i, &d, &owned) != QD_OK) {
        fprintf(stderr, "%s\n", qd_errmsg());
        exit(1);
    }
    *r = t->shape[0];
    *c = t->ndim > 1 ? t->shape[1] : 1;
    return d;
}

int main(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/reference/gptq-reference.safetensors", qd_test_models_dir());
    qd_checkpoint *ck;
    if (qd_ckpt_open(path, &ck) != QD_OK) {
        fprintf(stderr, "%s\n", qd_errmsg());
        return 1;
    }
    qd_adaround_opts o;
    qd_adaround_default_opts(&o);
    o.iters = 1500; /* fewer than the default 10000 to keep the test short */
    o.lr = 1e-2f;
    o.lambda = 0.1f; /* stronger than the default so that 1500 steps end hard */
    printf("%-40s %4s %12s %12s %8s %8s %6s\n", "layer", "bits", "RTN relerr", "Ada relerr", "changed", "soft", "s");
    double worst_soft = 0;
    for (int bits = 4; bits >= 3; bits--)
        for (int b = 0; b < 3; b++)
            for (size_t l = 0; l < QD_ARRAY_LEN(k_layers); l++) {
                char name[256];
                int64_t R, C, hr, hc;
                snprintf(name, sizeof name, "vit.encoder.layer.%d.%s.W", b, k_layers[l]);
                const float *W = get(ck, name, &R, &C);
                snprintf(name, sizeof name, "vit.encoder.layer.%d.%s.H", b, k_layers[l]);
                const float *H = get(ck, name, &hr, &hc);
                CHECK_EQ(hr, C);
                qd_qscheme sch = {bits, 0, QD_GRAN_CHANNEL, 0};
                qd_qparams p;
                CHECK_EQ(qd_qparams_alloc(&p, R, C, &sch), QD_OK);
                qd_clip_opts clip = QD_CLIP_MSE_DEFAULT;
                qd_find_params_rows(W, R, C, C, bits, 0, &clip, p.scales, p.zeros, p.ngroups);
                qd_adaround_problem pb = {R, C, W, NULL, 0, H, &p};
                uint8_t *codes = malloc((size_t)(R * C));
                qd_adaround_stats st;
                CHECK_EQ(qd_adaround_quantize(&pb, &o, codes, NULL, &st), QD_OK);
                /* relative output error: tr(E H E^T) / tr(W H W^T) */
                float *zero = calloc((size_t)(R * C), sizeof(float));
                double ref = 2 * qd_adaround_rec_error(&pb, zero);
                free(zero);
                printf("%d.%-38s %4d %12.4e %12.4e %8.4f %8.5f %6.2f\n", b, k_layers[l], bits, 2 * st.rec_rtn / ref,
                       2 * st.rec_final / ref, st.changed_fraction, st.soft_fraction, st.seconds);
                CHECK_DBL_LE(st.rec_final, st.rec_rtn);
                CHECK_DBL_LE(st.soft_fraction, 0.10);
                if (st.soft_fraction > worst_soft) worst_soft = st.soft_fraction;
                free(codes);
                qd_qparams_free(&p);
            }
    printf("largest soft fraction: %.5f\n", worst_soft);
    qd_ckpt_close(ck);
    QD_TEST_MAIN_END();
}
