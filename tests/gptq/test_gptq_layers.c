/* GPTQ against RTN on every encoder Linear of the real checkpoints, with Hessians from real
 * calibration data (ViT: 128 MNIST test images; BERT all-MiniLM-L6-v2 when fetched: 128 SST-2
 * sentences of at most 64 tokens): at 4 and 3 bits, asymmetric per channel, the same min-max
 * scales finder, GPTQ's relative output error tr(D H D^T) / tr(W H W^T) (D = W - Q) is below
 * RTN's on every layer. Prints the per-layer table. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qd_test.h"
#include "qd_test_calib.h"
#include "quant/gptq.h"
#include "quant/quant.h"
#include "reference/bert_dir.h"

static int run_model(const char *dir, const char *data, int seqlen)
{
    qd_model *m = NULL;
    qd_calib *c = NULL;
    if (qd_test_calib_collect(dir, data, 128, seqlen, &m, &c, NULL)) return 1;
    const qd_model_config *cfg = qd_model_cfg(m);
    printf("%s (%d layers):\n%-52s %5s %12s %12s %8s\n", dir, cfg->layers, "layer", "bits", "RTN", "GPTQ", "RTN/GPTQ");
    double worst_ratio = 1e30;
    for (int li = 0; li < qd_model_num_linears(m); li++) {
        const qd_linear *L = qd_model_linear(m, li);
        const int64_t R = L->out, C = L->in;
        qd_calib_group *g = qd_calib_find(c, L->input_group);
        float *H = malloc((size_t)(C * C) * sizeof(float));
        CHECK_EQ(qd_calib_hessian_f32(g, H), 0);
        for (int bits = 4; bits >= 3; bits--) {
            qd_qscheme s = {.bits = bits, .sym = 0, .gran = QD_GRAN_CHANNEL, .group_size = C};
            qd_qparams p;
            CHECK_EQ(qd_quant_params(L->W, R, C, &s, &QD_CLIP_MINMAX, &p), 0);
            uint8_t *codes = malloc((size_t)(R * C));
            float *Qr = malloc((size_t)(R * C) * sizeof(float)), *Qg = malloc((size_t)(R * C) * sizeof(float));
            qd_rtn_quantize(L->W, &p, NULL, codes);
            qd_dequantize(codes, &p, NULL, Qr);
            qd_gptq_opts o;
            qd_gptq_default_opts(&o);
            o.bits = bits;
            o.sym = 0;
            memcpy(Qg, L->W, (size_t)(R * C) * sizeof(float));
            float *sc = malloc((size_t)R * sizeof(float));
            int32_t *zr = malloc((size_t)R * sizeof(int32_t));
            CHECK_EQ(qd_gptq_quantize(Qg, R, C, H, &o, codes, sc, zr, NULL, NULL), 0);
            double er = qd_output_rel_error(L->W, Qr, H, R, C), eg = qd_output_rel_error(L->W, Qg, H, R, C);
            printf("%-52s %5d %12.4e %12.4e %8.2f\n", L->name, bits, er, eg, er / eg);
            CHECK_MSG(eg < er, "%s %d-bit: GPTQ %.4e >= RTN %.4e", L->name, bits, eg, er);
            if (er / eg < worst_ratio) worst_ratio = er / eg;
            qd_qparams_free(&p);
            free(codes);
            free(Qr);
            free(Qg);
            free(sc);
            free(zr);
        }
        free(H);
    }
    printf("smallest RTN/GPTQ error ratio: %.2f\n\n", worst_ratio);
    qd_calib_free(c);
    qd_model_free(m);
    return 0;
}

int main(void)
{
    int rc =
        run_model(QD_TEST_MODELS_DIR "/vit-mnist-tiny", QD_TEST_MODELS_DIR "/data/mnist/t10k-images-idx3-ubyte.gz", 0);
    const char *bert = qd_test_bert_dir();
    if (bert)
        rc |= run_model(bert, QD_TEST_MODELS_DIR "/data/sst2/dev.tsv", 64);
    else
        printf("BERT checkpoint not fetched: ViT only\n");
    printf("%d checks, %d failures\n", qd_test_checks_, qd_test_failures_);
    return rc ? 1 : qd_test_failures_;
}
