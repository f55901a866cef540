/* The ViT forward pass against the float64 reference of ../shared/models/reference
 * (vit-forward-reference.safetensors, 16 MNIST test images): every block's residual stream,
 * the final LayerNorm of CLS and the logits within the tolerances stated in its README, and the
 * predicted labels exactly. Also the hooks: linear_input sees every input group once per block
 * with the right shape, and a linear_apply that recomputes the FP32 product changes nothing. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "qd_test.h"
#include "shard/safetensors.h"

static const float *ref_tensor(qd_checkpoint *ck, const char *name, uint64_t numel)
{
    int i = qd_ckpt_find(ck, name);
    if (i < 0) {
        fprintf(stderr, "reference tensor %s missing\n", name);
        exit(1);
    }
    const qd_tensor_info *t = qd_ckpt_tensor(ck, i);
    if (t->numel != numel) {
        fprintf(stderr, "reference tensor %s: %llu elements, expected %llu\n", name, (unsigned long long)t->numel,
                (unsigned long long)numel);
        exit(1);
    }
    const void *p;
    if (qd_ckpt_raw(ck, i, &p)) exit(1);
    return p;
}

static double max_abs_diff(const float *a, const float *b, int64_t n, double *maxval)
{
    double d = 0, mv = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (!(e <= d)) d = e; /* NaN propagates as a failure */
        if (fabs(b[i]) > mv) mv = fabs(b[i]);
    }
    if (maxval) *maxval = mv;
    return d;
}

typedef struct {
    int calls[64];
    int64_t rows;
    int bad;
} hook_state;

static int on_input(void *user, const qd_model *m, int li, const float *X, int64_t rows, const uint8_t *valid)
{
    hook_state *s = user;
    (void)X;
    (void)valid;
    const qd_linear *L = qd_model_linear(m, li);
    if (rows != s->rows || L->input_group < 0 || L->input_group >= 64)
        s->bad++;
    else
        s->calls[L->input_group]++;
    return 0;
}

static int apply_fp32(void *user, const qd_model *m, int li, const float *X, int64_t rows, float *Y)
{
    (void)user;
    const qd_linear *L = qd_model_linear(m, li);
    /* the same product, written out in double: differs from sgemm only by rounding */
    for (int64_t r = 0; r < rows; r++)
        for (int o = 0; o < L->out; o++) {
            double acc = L->b ? L->b[o] : 0.0;
            for (int i = 0; i < L->in; i++) acc += (double)X[r * L->in + i] * L->W[(int64_t)o * L->in + i];
            Y[r * L->out + o] = (float)acc;
        }
    return 1;
}

int main(void)
{
    qd_model *m = NULL;
    int rc = qd_model_load(QD_TEST_MODELS_DIR "/vit-mnist-tiny", &m);
    if (rc) {
        fprintf(stderr, "load: %s\n", qd_errmsg());
        return 1;
    }
    const qd_model_config *c = qd_model_cfg(m);
    CHECK_EQ(c->arch, QD_ARCH_VIT);
    CHECK_EQ(c->hidden, 64);
    CHECK_EQ(c->head_size, 64);
    CHECK_EQ(c->heads, 4);
    CHECK_EQ(c->qkv_bias, 0);
    CHECK_EQ(c->act, QD_ACT_RELU);
    CHECK_NEAR(c->ln_eps, 1e-5, 1e-12);
    CHECK_EQ(c->num_labels, 10);
    CHECK_EQ(qd_model_num_linears(m), 36);
    CHECK_EQ(qd_model_find_linear(m, "vit.encoder.layer.2.output.dense.weight"), 2 * 6 + QD_LIN_OUT);
    CHECK_EQ(qd_model_linear(m, QD_LIN_Q)->out, 256);
    CHECK_EQ(qd_model_linear(m, QD_LIN_O)->in, 256);
    CHECK(qd_model_linear(m, QD_LIN_Q)->b == NULL);

    qd_checkpoint *ref = NULL;
    if (qd_ckpt_open(QD_TEST_MODELS_DIR "/reference/vit-forward-reference.safetensors", &ref)) {
        fprintf(stderr, "reference: %s\n", qd_errmsg());
        return 1;
    }
    const int B = 16, T = qd_model_tokens(m, 0), H = 64, L = 10;
    CHECK_EQ(T, 50);
    const float *pix = ref_tensor(ref, "pixel_values", (uint64_t)B * 28 * 28);
    const int32_t *pred = (const int32_t *)ref_tensor(ref, "pred", B);
    qd_batch b = {.B = B, .T = T, .pixels = pix};
    int64_t n = (int64_t)B * T * H;
    float *hidden = malloc((size_t)(7 * n) * sizeof(float));
    float logits[16 * 10], pooled[16 * 64];
    rc = qd_model_forward(m, &b, NULL, pooled, logits, hidden);
    CHECK_MSG(rc == 0, "forward: %s", qd_errmsg());
    for (int k = 0; k <= 6; k++) {
        char name[32];
        snprintf(name, sizeof name, "hidden.%d", k);
        double mv, d = max_abs_diff(hidden + k * n, ref_tensor(ref, name, (uint64_t)n), n, &mv);
        printf("%-20s max|diff| %.3g (max|value| %.3g)\n", name, d, mv);
        CHECK_MSG(d <= 1e-3 || d <= 2e-5 * mv, "%s: max abs diff %.3g", name, d);
    }
    double d = max_abs_diff(pooled, ref_tensor(ref, "final_layernorm_cls", (uint64_t)B * H), (int64_t)B * H, NULL);
    printf("%-20s max|diff| %.3g\n", "final_layernorm_cls", d);
    CHECK_DBL_LE(d, 5e-5);
    d = max_abs_diff(logits, ref_tensor(ref, "logits", (uint64_t)B * L), (int64_t)B * L, NULL);
    printf("%-20s max|diff| %.3g\n", "logits", d);
    CHECK_DBL_LE(d, 5e-5);
    for (int i = 0; i < B; i++) {
        int best = 0;
        for (int j = 1; j < L; j++)
            if (logits[i * L + j] > logits[i * L + best]) best = j;
        CHECK_EQ(best, pred[i]);
    }

    /* hooks: every input group seen once per block; a replacement product gives the same logits */
    hook_state hs = {.rows = (int64_t)B * T};
    qd_model_hooks hk = {.user = &hs, .linear_input = on_input, .linear_apply = apply_fp32};
    float logits2[16 * 10];
    rc = qd_model_forward(m, &b, &hk, NULL, logits2, NULL);
    CHECK_EQ(rc, 0);
    CHECK_EQ(hs.bad, 0);
    CHECK_EQ(qd_model_num_groups(m), 24);
    for (int g = 0; g < qd_model_num_groups(m); g++) CHECK_EQ(hs.calls[g], 1);
    d = max_abs_diff(logits2, logits, (int64_t)B * L, NULL);
    CHECK_DBL_LE(d, 1e-4);

    /* staged = whole */
    float *h = malloc((size_t)n * sizeof(float));
    CHECK_EQ(qd_model_embed(m, &b, h), 0);
    for (int k = 0; k < c->layers; k++) CHECK_EQ(qd_model_block(m, k, &b, h, NULL), 0);
    CHECK(memcmp(h, hidden + 6 * n, (size_t)n * sizeof(float)) == 0);

    /* a wrong token count is an error naming the model */
    qd_batch bad = b;
    bad.T = 49;
    CHECK_EQ(qd_model_forward(m, &bad, NULL, NULL, logits2, NULL), QD_ESHAPE);
    CHECK(strstr(qd_errmsg(), "vit-mnist-tiny") != NULL);

    free(h);
    free(hidden);
    qd_ckpt_close(ref);
    qd_model_free(m);
    printf("%d checks, %d failures\n", qd_test_checks_, qd_test_failures_);
    return qd_test_failures_;
}
