/* test_train_gradcheck — the backward passes of train/graph.c against central finite differences,
 * everything in float64 (train/graph.c and loss.c compiled with QD_TRAIN_F64).
 *
 * Tiny BERT (post-LN, token types, padding masks, pooler + classifier, mean pooling)
 * and ViT (pre-LN, tanh GELU, explicit head size != hidden / heads, no q/k/v bias, final LN,
 * classifier) with random weights; the BERT once per activation a config can select (exact and
 * tanh GELU, ReLU, SiLU, quick GELU, tanh); the loss mixes cross-entropy, KL distillation against random
 * teacher logits and MSE on the pooled output, so every head and loss is in the chain. Every
 * parameter is perturbed by +-1e-5; the analytic gradient must agree to 2e-6 relative (|g| + 1e-4
 * in the denominator: the quotient's own rounding is ~1e-11 absolute). A second pass freezes the embeddings and
 * the first block: frozen gradients stay exactly 0 and the others still agree. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd_test.h"
#include "train/graph.h"

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static double urand(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) / 9007199254740992.0;
}
static double nrand(void) { return sqrt(-2 * log(urand() + 1e-300)) * cos(6.283185307179586 * urand()); }

typedef struct {
    qd_batch b;
    int32_t labels[8];
    double teacher[8 * 8];
    double target[8 * 16];
} problem;

static double loss_of(qd_tg64_net *n, const problem *pr, double *dl, double *dp)
{
    const int B = pr->b.B, L = n->c.num_labels, H = n->c.hidden;
    double logits[8 * 8], pooled[8 * 16];
    int rc = qd_tg64_forward(n, &pr->b, logits, pooled);
    QD_ASSERT(rc == 0);
    if (dl) memset(dl, 0, sizeof(double) * B * L);
    if (dp) memset(dp, 0, sizeof(double) * B * H);
    double s = 1.0 / B;
    double l = qd_tg64_loss_ce(logits, B, L, pr->labels, s, dl, NULL);
    l += 0.7 * qd_tg64_loss_kl(logits, pr->teacher, B, L, 2.0, 0.7 * s, dl) / 0.7;
    l += qd_tg64_loss_mse(pooled, pr->target, B, H, 0.5 * s, dp);
    return l;
}

/* max relative error over all parameters; *nchecked counts them */
static double check(qd_tg64_net *n, const problem *pr, const char *what)
{
    double dl[8 * 8], dp[8 * 16];
    qd_tg64_net_zero_grad(n);
    loss_of(n, pr, dl, dp);
    CHECK_EQ(qd_tg64_backward(n, &pr->b, dl, dp), 0);
    double worst = 0, gmax = 0, abs_worst = 0;
    const char *wname = "";
    int64_t checked = 0, zero_ok = 1;
    const double h = 1e-5;
    for (int i = 0; i < n->np; i++) {
        const qd_tparam *p = &n->p[i];
        for (int64_t e = 0; e < p->numel; e++) {
            double *w = n->w + p->off + e, g = n->g[p->off + e];
            if (!p->trainable) {
                zero_ok &= g == 0.0;
                continue;
            }
            double w0 = *w;
            *w = w0 + h;
            double lp = loss_of(n, pr, NULL, NULL);
            *w = w0 - h;
            double lm = loss_of(n, pr, NULL, NULL);
            *w = w0;
            double fd = (lp - lm) / (2 * h);
            /* relative where the gradient is not tiny; the quotient's own rounding (~1e-11
             * absolute: 1e-16 |loss| / h) dominates below */
            double err = fabs(fd - g) / (fabs(fd) + fabs(g) + 1e-4);
            if (err > worst) {
                worst = err;
                wname = p->name;
            }
            abs_worst = fmax(abs_worst, fabs(fd - g));
            gmax = fmax(gmax, fabs(g));
            checked++;
        }
    }
    printf("%-34s %5lld parameters: max |analytic - fd| %.2e, relative %.2e (%s), max |g| %.3g\n", what,
           (long long)checked, abs_worst, worst, wname, gmax);
    CHECK_MSG(worst < 2e-6, "%s: worst relative error %.3g at %s", what, worst, wname);
    CHECK(zero_ok);
    CHECK_GT(checked, 100);
    return worst;
}

static void randomize(qd_tg64_net *n, double sd)
{
    for (int i = 0; i < n->np; i++) {
        const qd_tparam *p = &n->p[i];
        int gain = p->role == QD_TP_ELN_G || p->role == QD_TP_FLN_G || p->role == QD_TP_LN1_G || p->role == QD_TP_LN2_G;
        for (int64_t e = 0; e < p->numel; e++) n->w[p->off + e] = (gain ? 1.0 : 0.0) + sd * nrand();
    }
}

static void freeze_lower(qd_tg64_net *n)
{
    for (int i = 0; i < n->np; i++) n->p[i].trainable = n->p[i].layer > 0 || n->p[i].role >= QD_TP_FLN_G;
}

/* Activation quantizers on every Linear input, their steps trainable, with the rounding replaced
 * by the identity: then LSQ's step gradient and the straight-through input gradient are the
 * exact derivatives (clipping included: steps small enough that part of every input clips). */
static void add_aq(qd_tg64_net *n)
{
    qd_tg64_net_aq_enable(n);
    n->aq_round = 0;
    static const char *pts[] = {"qkv_in", "ctx", "mlp_in", "act"};
    for (int k = 0; k < n->c.layers; k++)
        for (int pt = 0; pt < QD_TG_AQ_PER_BLOCK; pt++) {
            const int i = k * QD_TG_AQ_PER_BLOCK + pt;
            char name[64];
            snprintf(name, sizeof name, "aq.layer.%d.%s.log_step", k, pts[pt]);
            int64_t shape[1] = {1};
            int pi = qd_tg64_net_add(n, name, QD_TP_EXTRA, k, -1, 1, shape, 1, 0);
            n->aq[i] = n->p[pi].off;
            n->aqz[i] = (i * 7) % 11 - 5;
            n->aqg[i] = 1.0;
            n->w[n->aq[i]] = log(0.004 + 0.0015 * i);
        }
}

static void fill_targets(problem *pr, int L, int H)
{
    for (int i = 0; i < pr->b.B; i++) pr->labels[i] = (int32_t)(urand() * L) % L;
    for (int i = 0; i < pr->b.B * L; i++) pr->teacher[i] = 2 * nrand();
    for (int i = 0; i < pr->b.B * H; i++) pr->target[i] = nrand();
}

static void test_bert(qd_act act, const char *act_name, int with_frozen)
{
    qd_model_config c = {0};
    c.arch = QD_ARCH_BERT;
    c.hidden = 8;
    c.layers = 2;
    c.heads = 2;
    c.head_size = 4;
    c.intermediate = 12;
    c.act = act;
    c.ln_eps = 1e-12;
    c.qkv_bias = 1;
    c.vocab_size = 23;
    c.max_position = 10;
    c.type_vocab = 2;
    c.has_pooler = 1;
    c.num_labels = 3;
    qd_tg64_net *n = NULL;
    CHECK_EQ(qd_tg64_net_create(&c, &n), 0);
    if (!n) return;
    /* materialise the buffers, then fill */
    problem pr;
    memset(&pr, 0, sizeof pr);
    static int32_t ids[3 * 6], tt[3 * 6], mask[3 * 6];
    for (int i = 0; i < 18; i++) {
        ids[i] = 1 + (int32_t)(urand() * 22) % 22;
        tt[i] = (i % 6) >= 3;
        mask[i] = 1;
    }
    mask[6 + 4] = mask[6 + 5] = 0; /* item 1: two padding tokens */
    ids[6 + 4] = ids[6 + 5] = 0;
    pr.b.B = 3;
    pr.b.T = 6;
    pr.b.ids = ids;
    pr.b.type_ids = tt;
    pr.b.mask = mask;
    fill_targets(&pr, c.num_labels, c.hidden);
    double l0 = 0;
    {
        double lg[24], po[48];
        qd_tg64_forward(n, &pr.b, lg, po); /* allocates */
        randomize(n, 0.5);
        l0 = loss_of(n, &pr, NULL, NULL);
    }
    CHECK(isfinite(l0));
    char what[96];
    snprintf(what, sizeof what, "BERT (%s), all parameters", act_name);
    check(n, &pr, what);
    if (with_frozen) {
        freeze_lower(n);
        snprintf(what, sizeof what, "BERT (%s), lower frozen", act_name);
        check(n, &pr, what);
        add_aq(n);
        snprintf(what, sizeof what, "BERT (%s), activation quantizers", act_name);
        check(n, &pr, what);
        /* with the identity for round, a step's gradient comes from clipped values only: every
         * quantizer clipped some, so both sides of the range were checked */
        for (int i = 0; i < c.layers * QD_TG_AQ_PER_BLOCK; i++) CHECK(n->g[n->aq[i]] != 0.0);
    }
    qd_tg64_net_free(n);
}

static void test_vit(void)
{
    qd_model_config c = {0};
    c.arch = QD_ARCH_VIT;
    c.hidden = 8;
    c.layers = 2;
    c.heads = 2;
    c.head_size = 3; /* A = 6 != hidden */
    c.intermediate = 10;
    c.act = QD_ACT_GELU_TANH;
    c.ln_eps = 1e-5;
    c.qkv_bias = 0;
    c.image_h = c.image_w = 8;
    c.patch_h = c.patch_w = 4;
    c.channels = 2;
    c.n_prefix = 1;
    c.num_labels = 4;
    qd_tg64_net *n = NULL;
    CHECK_EQ(qd_tg64_net_create(&c, &n), 0);
    if (!n) return;
    problem pr;
    memset(&pr, 0, sizeof pr);
    static float px[3 * 2 * 8 * 8];
    for (int i = 0; i < 3 * 128; i++) px[i] = (float)nrand();
    pr.b.B = 3;
    pr.b.T = 5;
    pr.b.pixels = px;
    fill_targets(&pr, c.num_labels, c.hidden);
    double lg[16], po[32];
    qd_tg64_forward(n, &pr.b, lg, po);
    randomize(n, 0.5);
    check(n, &pr, "ViT, all parameters");
    freeze_lower(n);
    check(n, &pr, "ViT, embeddings + block 0 frozen");
    add_aq(n);
    check(n, &pr, "ViT, activation quantizers");
    qd_tg64_net_free(n);
}

int main(void)
{
    /* every activation a config can select (model/config.c: hidden_act / hidden_act of the
     * vision config), each through the whole BERT: a wrong derivative fails its own check */
    static const struct {
        qd_act act;
        const char *name;
    } acts[] = {{QD_ACT_GELU, "gelu erf"}, {QD_ACT_GELU_TANH, "gelu tanh"},   {QD_ACT_RELU, "relu"},
                {QD_ACT_SILU, "silu"},     {QD_ACT_QUICK_GELU, "quick_gelu"}, {QD_ACT_TANH, "tanh"}};
    _Static_assert(QD_ACT_TANH == 5, "a new activation: add it to acts[]");
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++) test_bert(acts[i].act, acts[i].name, i == 0);
    test_vit();
    printf("%d checks, %d failed\n", qd_test_checks_, qd_test_failures_);
    return qd_test_failures_;
}
