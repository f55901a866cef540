/* test_train_torch — qdist's float32 backward passes at real weights against PyTorch autograd in
 * float64 (tests/reference/train-grad-reference.safetensors, made by make_train_reference.py):
 * vit-mnist-tiny on 4 MNIST images, all-MiniLM-L6-v2 with a new 2-class head on 4 SST-2
 * sentences (skipped without the checkpoint). Per parameter tensor: the gradient's norm and 17
 * sampled values (incl. its largest) must agree to 1e-3 relative; loss and logits to 1e-4.
 * The training forward must also give model/forward.c's logits (1e-5). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/image.h"
#include "qd_test.h"
#include "reference/bert_dir.h"
#include "shard/safetensors.h"
#include "train/train.h"

static qd_checkpoint *g_ref;

static const float *ref(const char *name, int64_t want)
{
    int i = qd_ckpt_find(g_ref, name);
    if (i < 0 || (want >= 0 && (int64_t)qd_ckpt_tensor(g_ref, i)->numel != want)) {
        fprintf(stderr, "reference tensor %s missing or of the wrong size\n", name);
        exit(1);
    }
    const float *p;
    int owned;
    if (qd_ckpt_read_f32(g_ref, i, &p, &owned)) exit(1);
    return p;
}

static const int32_t *ref_i32(const char *name)
{
    int i = qd_ckpt_find(g_ref, name);
    const void *p = NULL;
    if (i < 0 || qd_ckpt_raw(g_ref, i, &p)) {
        fprintf(stderr, "reference tensor %s missing\n", name);
        exit(1);
    }
    return p;
}

/* Compare every parameter's gradient with the reference; returns the worst relative error. */
static double compare_grads(const qd_tnet *n, const char *set)
{
    double worst_s = 0, worst_n = 0, floor = 0;
    const char *ws = "", *wn = "";
    int cnt = 0;
    /* errors relative to the tensor's gradient, or to 1e-4 of the largest gradient norm for
     * tensors whose true gradient is 0 (key biases: softmax ignores them) */
    for (int i = 0; i < n->np; i++) {
        char name[300];
        snprintf(name, sizeof name, "%s.grad.%s.norm", set, n->p[i].name);
        if (qd_ckpt_find(g_ref, name) >= 0) floor = fmax(floor, 1e-4 * ref(name, 1)[0]);
    }
    for (int i = 0; i < n->np; i++) {
        const qd_tparam *p = &n->p[i];
        char name[300];
        snprintf(name, sizeof name, "%s.grad.%s.norm", set, p->name);
        if (qd_ckpt_find(g_ref, name) < 0) {
            CHECK_MSG(0, "no reference gradient for %s", p->name);
            continue;
        }
        const float *rn = ref(name, 1);
        snprintf(name, sizeof name, "%s.grad.%s.samples", set, p->name);
        const float *rs = ref(name, 17);
        snprintf(name, sizeof name, "%s.grad.%s.argmax", set, p->name);
        int am = ref_i32(name)[0];
        const float *g = n->g + p->off;
        double ss = 0;
        for (int64_t e = 0; e < p->numel; e++) ss += (double)g[e] * g[e];
        double en = fabs(sqrt(ss) - rn[0]) / fmax(rn[0], floor);
        double mx = 0, d = 0;
        for (int j = 0; j < 17; j++) {
            int64_t idx = j < 16 ? (int64_t)j * p->numel / 16 : am;
            mx = fmax(mx, fabs(rs[j]));
            d = fmax(d, fabs(g[idx] - rs[j]));
        }
        double es = d / fmax(mx, floor);
        if (en > worst_n) worst_n = en, wn = p->name;
        if (es > worst_s) worst_s = es, ws = p->name;
        cnt++;
    }
    printf("%s: %d parameter tensors; gradient norm within %.2e (worst %s), sampled values within %.2e of the "
           "largest (worst %s)\n",
           set, cnt, worst_n, wn, worst_s, ws);
    CHECK_MSG(worst_n < 1e-3, "%s: gradient norm of %s off by %.3g", set, wn, worst_n);
    CHECK_MSG(worst_s < 1e-3, "%s: gradient values of %s off by %.3g", set, ws, worst_s);
    return fmax(worst_n, worst_s);
}

static void check_loss(const qd_tnet *n, const float *logits, const int32_t *labels, int B, const char *set)
{
    char name[64];
    snprintf(name, sizeof name, "%s.logits", set);
    const float *rl = ref(name, (int64_t)B * n->c.num_labels);
    double d = 0;
    for (int i = 0; i < B * n->c.num_labels; i++) d = fmax(d, fabs(logits[i] - rl[i]));
    snprintf(name, sizeof name, "%s.loss", set);
    double rloss = ref(name, 1)[0];
    double loss = qd_tg_loss_ce(logits, B, n->c.num_labels, labels, 1.0 / B, NULL, NULL);
    printf("%s: loss %.6f (PyTorch float64 %.6f), logits within %.2e\n", set, loss, rloss, d);
    CHECK_NEAR(loss, rloss, 1e-4 * fabs(rloss) + 1e-6);
    CHECK_DBL_LE(d, 1e-4);
}

static void run_backward(qd_tnet *n, const qd_batch *b, const int32_t *labels, float *logits)
{
    const int L = n->c.num_labels;
    float *dl = calloc((size_t)b->B * L, sizeof *dl);
    qd_tg_net_zero_grad(n);
    CHECK_EQ(qd_tg_forward(n, b, logits, NULL), 0);
    qd_tg_loss_ce(logits, b->B, L, labels, 1.0 / b->B, dl, NULL);
    CHECK_EQ(qd_tg_backward(n, b, dl, NULL), 0);
    free(dl);
}

static void test_vit(void)
{
    char dir[4200], data[4200];
    snprintf(dir, sizeof dir, "%s/vit-mnist-tiny", QD_TEST_MODELS_DIR);
    snprintf(data, sizeof data, "%s/data/mnist/t10k-images-idx3-ubyte.gz", QD_TEST_MODELS_DIR);
    qd_model *m = NULL;
    qd_tnet *n = NULL;
    qd_tdata *d = NULL;
    CHECK_EQ(qd_model_load(dir, &m), 0);
    CHECK_EQ(qd_tnet_load(m, 0, 0, &n), 0);
    CHECK_EQ(qd_tdata_open(m, data, 0, 4, 0, &d), 0);
    if (!m || !n || !d) return;
    int idx[4] = {0, 1, 2, 3};
    qd_batch b;
    int32_t *lab, labels[4];
    CHECK_EQ(qd_tdata_batch(d, idx, 4, &b, &lab), 0);
    b.T = qd_model_tokens(m, 0);
    const int32_t *rl = ref_i32("vit.labels");
    for (int i = 0; i < 4; i++) labels[i] = rl[i];
    CHECK_EQ(labels[0], (lab[0] + 1) % 10);
    float logits[40], mlog[40];
    run_backward(n, &b, labels, logits);
    /* the training forward against model/forward.c */
    CHECK_EQ(qd_model_forward(m, &b, NULL, NULL, mlog, NULL), 0);
    double dm = 0;
    for (int i = 0; i < 40; i++) dm = fmax(dm, fabs(mlog[i] - logits[i]));
    printf("vit: training forward vs model/forward.c: logits within %.2e\n", dm);
    CHECK_DBL_LE(dm, 1e-5);
    check_loss(n, logits, labels, 4, "vit");
    compare_grads(n, "vit");
    qd_tdata_free(d);
    qd_tg_net_free(n);
    qd_model_free(m);
}

static void test_bert(void)
{
    const char *dir = qd_test_bert_dir();
    if (!dir) {
        printf("bert: SKIPPED (no all-MiniLM-L6-v2 checkpoint: deploy/fetch-models.sh)\n");
        return;
    }
    qd_model *m = NULL;
    qd_tnet *n = NULL;
    CHECK_EQ(qd_model_load(dir, &m), 0);
    CHECK_EQ(qd_tnet_load(m, 2, 0, &n), 0);
    if (!m || !n) return;
    int ci = qd_tg_net_find(n, "classifier.weight"), cb = qd_tg_net_find(n, "classifier.bias");
    CHECK(ci >= 0 && cb >= 0);
    memcpy(n->w + n->p[ci].off, ref("bert.classifier.weight", n->p[ci].numel), (size_t)n->p[ci].numel * sizeof(float));
    memset(n->w + n->p[cb].off, 0, (size_t)n->p[cb].numel * sizeof(float));
    int i = qd_ckpt_find(g_ref, "bert.input_ids");
    const qd_tensor_info *t = qd_ckpt_tensor(g_ref, i);
    qd_batch b = {0};
    b.B = (int)t->shape[0];
    b.T = (int)t->shape[1];
    b.ids = ref_i32("bert.input_ids");
    b.mask = ref_i32("bert.attention_mask");
    const int32_t *labels = ref_i32("bert.labels");
    float logits[16];
    run_backward(n, &b, labels, logits);
    check_loss(n, logits, labels, b.B, "bert");
    compare_grads(n, "bert");
    qd_tg_net_free(n);
    qd_model_free(m);
}

int main(void)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/tests/reference/train-grad-reference.safetensors", QD_TEST_SOURCE_DIR);
    if (qd_ckpt_open(path, &g_ref)) {
        fprintf(stderr, "%s\n", qd_errmsg());
        return 1;
    }
    test_vit();
    test_bert();
    qd_ckpt_close(g_ref);
    printf("%d checks, %d failed\n", qd_test_checks_, qd_test_failures_);
    return qd_test_failures_;
}
