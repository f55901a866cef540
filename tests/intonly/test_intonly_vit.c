/* Integer-only inference of the real ViT (vit-mnist-tiny) from a model file with static activation
 * scales (made by intonly_cmd.sh): usage test_intonly_vit FILE.h5 OUTDIR.
 *   - no floating-point instruction runs in the integer graph: under every rounding mode the
 *     int32 outputs are the same bits and no floating-point exception flag is raised (with the
 *     LayerNorm and softmax switched to float, flags are raised: the check can fail);
 *   - the trace of the whole forward has no float operand between the input quantization and the
 *     output dequantization;
 *   - the selected kernels (AVX2) and the scalar reference give the same int32 outputs on the
 *     whole model; the flat integer-model file round-trips them;
 *   - top-1 on all 10,000 MNIST test images within 0.5 point of FP32's 97.21 %;
 *   - writes OUTDIR/vit.qdim and OUTDIR/vit.qdiv (inputs, x86 outputs, labels) for tests/arm/. */
#include <fenv.h>
#include <stdlib.h>
#include <string.h>

#include "intonly/ivec.h"
#include "model/image.h"
#include "model/model.h"
#include "qd_test.h"
#include "runtime/intprep.h"

typedef struct {
    int n, bad, seen_in, seen_out, after_out;
    char first[64];
} trace_check;

static void on_op(void *user, const char *op, int layer, const char *in, const char *out, int64_t rows, int64_t cols)
{
    trace_check *t = user;
    if (t->n++ == 0) snprintf(t->first, sizeof t->first, "%s", op);
    if (!strcmp(op, "quantize_input")) {
        t->seen_in = 1;
        return;
    }
    if (!strcmp(op, "dequantize_output")) {
        t->seen_out = 1;
        return;
    }
    if (t->seen_out) t->after_out++;
    if (strstr(in, "f32") || strstr(out, "f32")) {
        t->bad++;
        fprintf(stderr, "float operand inside the integer graph: %s (layer %d) %s -> %s\n", op, layer, in, out);
    }
}

static int run(qd_imodel *im, const int8_t *patches, int n, int T, int np, int pk, int32_t *out)
{
    const int B = 100;
    for (int s = 0; s < n; s += B) {
        const int k = n - s < B ? n - s : B;
        qd_ibatch b = {.B = k, .T = T};
        int rc = qd_imodel_run(im, &b, patches + (size_t)s * np * pk, out + (size_t)s * im->cfg.num_labels, NULL, NULL,
                               NULL);
        if (rc) {
            fprintf(stderr, "%s\n", qd_errmsg());
            return rc;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: test_intonly_vit FILE.h5 OUTDIR\n");
        return 2;
    }
    qd_model *m = NULL;
    if (qd_model_load_flags(QD_TEST_MODELS_DIR "/vit-mnist-tiny", QD_MODEL_LAZY_LINEARS, &m)) {
        fprintf(stderr, "%s\n", qd_errmsg());
        return 1;
    }
    qd_imodel *im = NULL;
    if (qd_imodel_build(m, argv[1], 0, &im)) {
        fprintf(stderr, "%s\n", qd_errmsg());
        return 1;
    }
    qd_dataset *ds = NULL;
    qd_preprocess pp;
    CHECK_EQ(qd_dataset_open(QD_TEST_MODELS_DIR "/data/mnist/t10k-images-idx3-ubyte.gz", NULL, &ds), 0);
    CHECK_EQ(qd_preprocess_for_model(m, &pp), 0);
    const qd_imodel_cfg *c = &im->cfg;
    const int N = qd_dataset_count(ds), L = c->num_labels, T = qd_model_tokens(m, 0);
    const int np = T - c->n_prefix, pk = c->channels * c->patch_h * c->patch_w;
    const size_t item = qd_preprocess_numel(&pp);
    float *pix = malloc(item * sizeof(float));
    int8_t *patches = malloc((size_t)N * np * pk);
    int32_t *out = malloc((size_t)N * L * sizeof(int32_t)), *o2 = malloc((size_t)N * L * sizeof(int32_t));
    int32_t *labels = malloc((size_t)N * sizeof(int32_t));
    /* the input quantization, in the default rounding mode */
    for (int i = 0; i < N; i++) {
        CHECK_EQ(qd_dataset_image(ds, i, &pp, pix), 0);
        qd_imodel_quantize_input(im, 1, pix, patches + (size_t)i * np * pk);
        labels[i] = qd_dataset_label(ds, i);
    }
    double t0 = qd_now();
    CHECK_EQ(run(im, patches, N, T, np, pk, out), 0);
    const double dt = qd_now() - t0;
    int correct = 0;
    for (int i = 0; i < N; i++) {
        int best = 0;
        for (int j = 1; j < L; j++)
            if (out[i * L + j] * (double)im->cls_head.real[j] > out[i * L + best] * (double)im->cls_head.real[best])
                best = j;
        correct += best == labels[i];
    }
    printf("integer-only (%s) MNIST top-1: %d/%d = %.2f %% (FP32: 97.21 %%), %.0f images/s\n", im->ops->isa, correct, N,
           100.0 * correct / N, N / dt);
    CHECK_GE(correct, 9721 - 50);

    /* no floating point in the integer graph: same bits in every rounding mode, no exception flag */
    const int n = 40;
    const int modes[3] = {FE_UPWARD, FE_DOWNWARD, FE_TOWARDZERO};
    for (int k = 0; k < 3; k++) {
        feclearexcept(FE_ALL_EXCEPT);
        fesetround(modes[k]);
        CHECK_EQ(run(im, patches, n, T, np, pk, o2), 0);
        const int flags = fetestexcept(FE_ALL_EXCEPT);
        fesetround(FE_TONEAREST);
        CHECK_MSG(flags == 0, "rounding mode %d: floating-point flags 0x%x raised by the integer graph", k, flags);
        CHECK_MSG(!memcmp(out, o2, (size_t)n * L * sizeof(int32_t)), "rounding mode %d changed the outputs", k);
    }
    /* the same checks see float stages when there are some */
    im->float_ops = QD_IFLOAT_LAYERNORM | QD_IFLOAT_SOFTMAX;
    feclearexcept(FE_ALL_EXCEPT);
    CHECK_EQ(run(im, patches, n, T, np, pk, o2), 0);
    const int fflags = fetestexcept(FE_ALL_EXCEPT);
    fesetround(FE_UPWARD);
    int32_t *o3 = malloc((size_t)n * L * sizeof(int32_t));
    CHECK_EQ(run(im, patches, n, T, np, pk, o3), 0);
    fesetround(FE_TONEAREST);
    printf("with float LayerNorm and softmax: flags 0x%x, outputs %s under rounding upward\n", fflags,
           memcmp(o2, o3, (size_t)n * L * sizeof(int32_t)) ? "change" : "do not change");
    CHECK_MSG(fflags & FE_INEXACT, "float stages raised no inexact flag: the check above could not fail");
    free(o3);
    im->float_ops = 0;

    /* the trace of a whole forward call */
    trace_check tc = {0};
    qd_ibatch b = {.B = 2, .T = T};
    float pix2[2 * 784], logits[20];
    CHECK_EQ(qd_dataset_image(ds, 0, &pp, pix2), 0);
    CHECK_EQ(qd_dataset_image(ds, 1, &pp, pix2 + item), 0);
    b.pixels = pix2;
    CHECK_EQ(qd_imodel_forward(im, &b, logits, NULL, NULL, on_op, &tc), 0);
    printf("trace: %d operations, first '%s'\n", tc.n, tc.first);
    CHECK_EQ(tc.bad, 0);
    CHECK(tc.seen_in && tc.seen_out && !strcmp(tc.first, "quantize_input"));
    CHECK_EQ(tc.after_out, 0);
    CHECK_GE(tc.n, 6 * 14); /* 14 operations per block at least */

    /* the scalar reference on the whole model: the same bits */
    const int nr = 200;
    CHECK_EQ(qd_imodel_pack_ops(im, qd_intops_table_for("ref")), 0);
    CHECK_EQ(run(im, patches, nr, T, np, pk, o2), 0);
    CHECK_MSG(!memcmp(out, o2, (size_t)nr * L * sizeof(int32_t)), "the reference kernels give other outputs");
    CHECK_EQ(qd_imodel_pack(im), 0);

    /* the flat file for AArch64: saved, read back, same outputs */
    char path[4096];
    snprintf(path, sizeof path, "%s/vit.qdim", argv[2]);
    CHECK_EQ(qd_imodel_save(im, path), 0);
    qd_imodel *im2 = NULL;
    CHECK_EQ(qd_imodel_load(path, &im2), 0);
    if (im2) {
        CHECK_EQ(run(im2, patches, nr, T, np, pk, o2), 0);
        CHECK_MSG(!memcmp(out, o2, (size_t)nr * L * sizeof(int32_t)), "the saved model gives other outputs");
        qd_imodel_free(im2);
    }
    qd_ivec v = {N, np, pk, L, patches, out, labels};
    snprintf(path, sizeof path, "%s/vit.qdiv", argv[2]);
    CHECK_EQ(qd_ivec_write(path, &v), 0);

    free(pix);
    free(patches);
    free(out);
    free(o2);
    free(labels);
    qd_dataset_free(ds);
    qd_imodel_free(im);
    qd_model_free(m);
    QD_TEST_MAIN_END();
}
