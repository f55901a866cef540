/* train/graph.c — forward with saved activations and backward passes of BERT and ViT (see
 * graph.h). Matrix products go through BLAS over the whole batch's rows; attention runs per item
 * and head. Weight gradients are accumulated with beta = 1 in a fixed order, so a batch's
 * gradient depends only on its items, never on the rank that computes it. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "train/graph.h"

#ifdef QD_TRAIN_F64
#define GEMM cblas_dgemm
#else
#define GEMM cblas_sgemm
#endif

typedef QD_TG(net) net;

/* Activations of one block (pointers into the cache's one buffer). */
typedef struct {
    qd_real *xq;              /* [R, H] input of query/key/value (BERT: block input; ViT: LN1 output) */
    qd_real *x1, *r1;         /* [R, H], [R]: LN1 normalized input and 1/std */
    qd_real *q, *k, *v, *ctx; /* [R, A] */
    qd_real *P;               /* [B, heads, T, T] softmax probabilities */
    qd_real *x2, *r2;         /* LN2 */
    qd_real *xi;              /* [R, H] input of the intermediate Linear */
    qd_real *u, *a;           /* [R, NI] before and after the activation */
    /* the Linears' quantized inputs (only with activation quantizers) */
    qd_real *xqf, *ctxf, *xif, *af;
} blk_cache;

struct QD_TG(cache) {
    int B, T;
    int64_t cap; /* floats */
    qd_real *buf;
    blk_cache *blk;
    qd_real *ex, *er; /* embeddings: BERT LN normalized input [R, H] and 1/std [R] */
    qd_real *patches; /* ViT [B * np, pk] */
    qd_real *hc, *hp; /* head: CLS rows [B, H]; BERT pooler output / ViT final LN [B, H] */
    qd_real *fx, *fr; /* ViT final LN normalized [B, H], 1/std [B] */
    qd_real *h;       /* [R, H] residual stream (last hidden state after forward) */
    /* backward scratch */
    qd_real *d1, *d2, *d3;      /* [R, H] */
    qd_real *dq, *dk, *dv, *dc; /* [R, A] */
    qd_real *di;                /* [R, NI] */
    qd_real *ds;                /* [T, T] */
    qd_real *da;                /* [R, max(H, NI)]: a Linear's input gradient before its quantizer */
    qd_real *dhead;             /* [B, H] x 2 */
    uint8_t *valid;             /* [R] */
    int has_mask;
};

/* ---- parameters --------------------------------------------------------------------------- */

int QD_TG(net_add)(net *n, const char *name, int role, int layer, int lin, int ndim, const int64_t *shape,
                   int trainable, int decay)
{
    if (n->np == n->cap) {
        n->cap = n->cap ? 2 * n->cap : 64;
        n->p = realloc(n->p, (size_t)n->cap * sizeof *n->p);
        QD_ASSERT(n->p);
    }
    qd_tparam *p = &n->p[n->np];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->role = role;
    p->layer = layer;
    p->lin = lin;
    p->ndim = ndim;
    p->numel = 1;
    for (int d = 0; d < ndim; d++) {
        p->shape[d] = shape[d];
        p->numel *= shape[d];
    }
    p->off = n->n;
    p->trainable = trainable;
    p->decay = decay;
    p->lr_mult = 1.0;
    n->n += p->numel;
    if (role < QD_TP_SINGLE_) n->o[role] = p->off;
    if (n->w) { /* added after allocation: grow both buffers, the new values zero */
        n->w = realloc(n->w, (size_t)n->n * sizeof *n->w);
        n->g = realloc(n->g, (size_t)n->n * sizeof *n->g);
        QD_ASSERT(n->w && n->g);
        memset(n->w + p->off, 0, (size_t)p->numel * sizeof *n->w);
        memset(n->g + p->off, 0, (size_t)p->numel * sizeof *n->g);
    }
    return n->np++;
}

int QD_TG(net_find)(const net *n, const char *name)
{
    for (int i = 0; i < n->np; i++)
        if (!strcmp(n->p[i].name, name)) return i;
    return -1;
}

static void add1(net *n, const char *pfx, const char *rest, int role, int64_t d0)
{
    char name[192];
    snprintf(name, sizeof name, "%s%s", pfx, rest);
    QD_TG(net_add)(n, name, role, -1, -1, 1, &d0, 1, 0);
}

static void add2(net *n, const char *pfx, const char *rest, int role, int64_t d0, int64_t d1, int decay)
{
    char name[192];
    int64_t s[2] = {d0, d1};
    snprintf(name, sizeof name, "%s%s", pfx, rest);
    QD_TG(net_add)(n, name, role, -1, -1, 2, s, 1, decay);
}

int QD_TG(net_create)(const qd_model_config *c, net **out)
{
    *out = NULL;
    if (c->arch == QD_ARCH_VIT && c->n_prefix != 1)
        return qd_err_set(QD_EUNSUPPORTED, "training: ViT models with a distillation token (DeiT) are not supported");
    if (c->arch == QD_ARCH_BERT && c->num_labels > 0 && !c->has_pooler)
        return qd_err_set(QD_EUNSUPPORTED, "training: a BERT classification head needs a pooler");
    if (c->pruned_heads)
        return qd_err_set(QD_EUNSUPPORTED, "training: models with pruned attention heads are not supported");
    net *n = qd_xcalloc(1, sizeof *n);
    n->c = *c;
    for (int i = 0; i < QD_TP_SINGLE_; i++) n->o[i] = -1;
    const int H = c->hidden, A = c->heads * c->head_size, NI = c->intermediate, NL = c->layers * QD_LIN_PER_BLOCK;
    n->lw = qd_xcalloc((size_t)NL, sizeof *n->lw);
    n->lb = qd_xcalloc((size_t)NL, sizeof *n->lb);
    n->ln = qd_xcalloc((size_t)c->layers * 4, sizeof *n->ln);
    n->weff = qd_xcalloc((size_t)NL, sizeof *n->weff);
    n->gweff = qd_xcalloc((size_t)NL, sizeof *n->gweff);
    const char *pfx;
    if (c->arch == QD_ARCH_BERT) {
        pfx = "bert.";
        add2(n, pfx, "embeddings.word_embeddings.weight", QD_TP_WORD, c->vocab_size, H, 1);
        add2(n, pfx, "embeddings.position_embeddings.weight", QD_TP_POS, c->max_position, H, 1);
        if (c->type_vocab > 0) add2(n, pfx, "embeddings.token_type_embeddings.weight", QD_TP_TYPE, c->type_vocab, H, 1);
        add1(n, pfx, "embeddings.LayerNorm.weight", QD_TP_ELN_G, H);
        add1(n, pfx, "embeddings.LayerNorm.bias", QD_TP_ELN_B, H);
    } else {
        pfx = "vit.";
        const int np = (c->image_h / c->patch_h) * (c->image_w / c->patch_w);
        int64_t s3[3] = {1, 1, H}, s4[4] = {H, c->channels, c->patch_h, c->patch_w};
        QD_TG(net_add)(n, "vit.embeddings.cls_token", QD_TP_CLS_TOK, -1, -1, 3, s3, 1, 0);
        s3[1] = np + 1;
        QD_TG(net_add)(n, "vit.embeddings.position_embeddings", QD_TP_POS, -1, -1, 3, s3, 1, 0);
        QD_TG(net_add)(n, "vit.embeddings.patch_embeddings.projection.weight", QD_TP_PATCH_W, -1, -1, 4, s4, 1, 1);
        add1(n, pfx, "embeddings.patch_embeddings.projection.bias", QD_TP_PATCH_B, H);
    }
    snprintf(n->prefix, sizeof n->prefix, "%s", pfx);
    const int bert = c->arch == QD_ARCH_BERT;
    static const char *qkv[3] = {"query", "key", "value"};
    for (int k = 0; k < c->layers; k++) {
        char mod[192], name[224];
        for (int j = 0; j < QD_LIN_PER_BLOCK; j++) {
            int in = j == QD_LIN_O ? A : j == QD_LIN_OUT ? NI : H;
            int outd = j <= QD_LIN_V ? A : j == QD_LIN_INTER ? NI : H;
            if (j <= QD_LIN_V)
                snprintf(mod, sizeof mod, "%sencoder.layer.%d.attention.%s.%s", pfx, k, bert ? "self" : "attention",
                         qkv[j]);
            else if (j == QD_LIN_O)
                snprintf(mod, sizeof mod, "%sencoder.layer.%d.attention.output.dense", pfx, k);
            else if (j == QD_LIN_INTER)
                snprintf(mod, sizeof mod, "%sencoder.layer.%d.intermediate.dense", pfx, k);
            else
                snprintf(mod, sizeof mod, "%sencoder.layer.%d.output.dense", pfx, k);
            int li = k * QD_LIN_PER_BLOCK + j;
            int64_t s[2] = {outd, in};
            snprintf(name, sizeof name, "%s.weight", mod);
            n->lw[li] = n->p[QD_TG(net_add)(n, name, QD_TP_LIN_W, k, li, 2, s, 1, 1)].off;
            n->lb[li] = -1;
            if (j > QD_LIN_V || c->qkv_bias) {
                snprintf(name, sizeof name, "%s.bias", mod);
                n->lb[li] = n->p[QD_TG(net_add)(n, name, QD_TP_LIN_B, k, li, 1, &s[0], 1, 0)].off;
            }
        }
        for (int j = 0; j < 4; j++) {
            const char *lnm = bert ? (j < 2 ? "attention.output.LayerNorm" : "output.LayerNorm")
                                   : (j < 2 ? "layernorm_before" : "layernorm_after");
            snprintf(name, sizeof name, "%sencoder.layer.%d.%s.%s", pfx, k, lnm, j % 2 ? "bias" : "weight");
            int64_t h = H;
            n->ln[k * 4 + j] = n->p[QD_TG(net_add)(n, name, QD_TP_LN1_G + j, k, -1, 1, &h, 1, 0)].off;
        }
    }
    if (bert) {
        if (c->has_pooler) {
            add2(n, pfx, "pooler.dense.weight", QD_TP_POOL_W, H, H, 1);
            add1(n, pfx, "pooler.dense.bias", QD_TP_POOL_B, H);
        }
    } else {
        add1(n, pfx, "layernorm.weight", QD_TP_FLN_G, H);
        add1(n, pfx, "layernorm.bias", QD_TP_FLN_B, H);
    }
    if (c->num_labels > 0) {
        add2(n, "", "classifier.weight", QD_TP_CLS_W, c->num_labels, H, 1);
        add1(n, "", "classifier.bias", QD_TP_CLS_B, c->num_labels);
    }
    *out = n;
    return QD_OK;
}

static void cache_free(QD_TG(cache) * c)
{
    if (!c) return;
    free(c->buf);
    free(c->blk);
    free(c->valid);
    free(c);
}

void QD_TG(net_free)(net *n)
{
    if (!n) return;
    free(n->p);
    free(n->w);
    free(n->g);
    free(n->lw);
    free(n->lb);
    free(n->ln);
    free(n->weff);
    free(n->gweff);
    free(n->aq);
    free(n->aqz);
    free(n->aqg);
    cache_free(n->cache);
    free(n);
}

/* Buffers are allocated on first use (after every net_add). */
int QD_TG(net_alloc)(net *n)
{
    if (n->w) return QD_OK;
    n->w = calloc((size_t)n->n, sizeof *n->w);
    n->g = calloc((size_t)n->n, sizeof *n->g);
    if (!n->w || !n->g) return qd_err_set(QD_ENOMEM, "training: out of memory for %lld parameters", (long long)n->n);
    return QD_OK;
}

void QD_TG(net_aq_enable)(net *n)
{
    if (n->aq) return;
    const int np = n->c.layers * QD_TG_AQ_PER_BLOCK;
    n->aq = qd_xmalloc((size_t)np * sizeof *n->aq);
    n->aqz = qd_xcalloc((size_t)np, sizeof *n->aqz);
    n->aqg = qd_xmalloc((size_t)np * sizeof *n->aqg);
    for (int i = 0; i < np; i++) n->aq[i] = -1, n->aqg[i] = 1.0;
    n->aq_round = 1;
    cache_free(n->cache); /* the cache grows by the quantized inputs */
    n->cache = NULL;
}

void QD_TG(net_zero_grad)(net *n)
{
    if (n->g) memset(n->g, 0, (size_t)n->n * sizeof *n->g);
}

/* Floats of the cache for B x T (layout of cache_layout). */
static int64_t cache_floats(const qd_model_config *c, int B, int T, int aq, int64_t *per_block)
{
    const int64_t R = (int64_t)B * T, H = c->hidden, A = (int64_t)c->heads * c->head_size, NI = c->intermediate;
    int64_t pb = R * H * 4 + R * 2 + R * A * 4 + (int64_t)B * c->heads * T * T + R * NI * 2;
    if (aq) pb += R * H * 2 + R * A + R * NI;
    if (per_block) *per_block = pb;
    int64_t np = c->arch == QD_ARCH_VIT ? (int64_t)(c->image_h / c->patch_h) * (c->image_w / c->patch_w) : 0;
    int64_t pk = (int64_t)c->channels * c->patch_h * c->patch_w;
    int64_t rest = R * H + R                        /* embeddings LN */
                   + (int64_t)B * np * pk           /* patches */
                   + (int64_t)B * H * 4 + B         /* head */
                   + R * H                          /* h */
                   + R * H * 3 + R * A * 4 + R * NI /* backward */
                   + (int64_t)T * T + (int64_t)B * H * 2;
    if (aq) rest += R * (H > NI ? H : NI);
    return pb * c->layers + rest;
}

int64_t QD_TG(activation_bytes)(const qd_model_config *c, int B, int T)
{
    return cache_floats(c, B, T, 0, NULL) * (int64_t)sizeof(qd_real) + (int64_t)B * T;
}

static int cache_layout(net *n, const qd_batch *b)
{
    const qd_model_config *c = &n->c;
    QD_TG(cache) *cc = n->cache;
    if (!cc) {
        cc = n->cache = qd_xcalloc(1, sizeof *cc);
        cc->blk = qd_xcalloc((size_t)c->layers, sizeof *cc->blk);
    }
    int64_t pb, need = cache_floats(c, b->B, b->T, n->aq != NULL, &pb);
    if (need > cc->cap) {
        free(cc->buf);
        free(cc->valid);
        cc->buf = malloc((size_t)need * sizeof *cc->buf);
        cc->valid = malloc((size_t)b->B * b->T);
        if (!cc->buf || !cc->valid) {
            cc->cap = 0;
            return qd_err_set(QD_ENOMEM, "training: out of memory for the activations of %d x %d tokens", b->B, b->T);
        }
        cc->cap = need;
    }
    cc->B = b->B;
    cc->T = b->T;
    const int64_t R = (int64_t)b->B * b->T, H = c->hidden, A = (int64_t)c->heads * c->head_size, NI = c->intermediate;
    qd_real *p = cc->buf;
#define TAKE(ptr, cnt) \
    do {               \
        (ptr) = p;     \
        p += (cnt);    \
    } while (0)
    for (int k = 0; k < c->layers; k++) {
        blk_cache *bc = &cc->blk[k];
        TAKE(bc->xq, R * H);
        TAKE(bc->x1, R * H);
        TAKE(bc->x2, R * H);
        TAKE(bc->xi, R * H);
        TAKE(bc->r1, R);
        TAKE(bc->r2, R);
        TAKE(bc->q, R * A);
        TAKE(bc->k, R * A);
        TAKE(bc->v, R * A);
        TAKE(bc->ctx, R * A);
        TAKE(bc->P, (int64_t)b->B * c->heads * b->T * b->T);
        TAKE(bc->u, R * NI);
        TAKE(bc->a, R * NI);
        bc->xqf = bc->ctxf = bc->xif = bc->af = NULL;
        if (n->aq) {
            TAKE(bc->xqf, R * H);
            TAKE(bc->xif, R * H);
            TAKE(bc->ctxf, R * A);
            TAKE(bc->af, R * NI);
        }
    }
    int64_t np = c->arch == QD_ARCH_VIT ? (int64_t)(c->image_h / c->patch_h) * (c->image_w / c->patch_w) : 0;
    int64_t pk = (int64_t)c->channels * c->patch_h * c->patch_w;
    TAKE(cc->ex, R * H);
    TAKE(cc->er, R);
    TAKE(cc->patches, (int64_t)b->B * np * pk);
    TAKE(cc->hc, (int64_t)b->B * H);
    TAKE(cc->hp, (int64_t)b->B * H);
    TAKE(cc->fx, (int64_t)b->B * H);
    TAKE(cc->fr, b->B);
    TAKE(cc->h, R * H);
    TAKE(cc->d1, R * H);
    TAKE(cc->d2, R * H);
    TAKE(cc->d3, R * H);
    TAKE(cc->dq, R * A);
    TAKE(cc->dk, R * A);
    TAKE(cc->dv, R * A);
    TAKE(cc->dc, R * A);
    TAKE(cc->di, R * NI);
    TAKE(cc->ds, (int64_t)b->T * b->T);
    TAKE(cc->dhead, (int64_t)b->B * H * 2);
    cc->da = NULL;
    if (n->aq) TAKE(cc->da, R * (H > NI ? H : NI));
#undef TAKE
    QD_ASSERT(p - cc->buf <= cc->cap);
    (void)pb;
    cc->has_mask = 0;
    for (int64_t r = 0; r < R; r++) {
        cc->valid[r] = !b->mask || b->mask[r] != 0;
        cc->has_mask |= !cc->valid[r];
    }
    return QD_OK;
}

/* ---- building blocks ---------------------------------------------------------------------- */

/* Y[R, out] = X[R, in] W[out, in]^T + b */
static void lin_fwd(const qd_real *X, int64_t R, int in, const qd_real *W, const qd_real *b, int out, qd_real *Y)
{
    if (b)
        for (int64_t r = 0; r < R; r++) memcpy(Y + r * out, b, (size_t)out * sizeof *Y);
    GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)R, out, in, 1, X, in, W, in, b ? 1 : 0, Y, out);
}

/* dX = (beta dX) + dY W; dW += dY^T X; db += column sums of dY (each when not NULL) */
static void lin_bwd(const qd_real *X, const qd_real *dY, int64_t R, int in, int out, const qd_real *W, qd_real *dX,
                    qd_real beta, qd_real *dW, qd_real *db)
{
    if (dX) GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, in, out, 1, dY, out, W, in, beta, dX, in);
    if (dW) GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, (int)R, 1, dY, out, X, in, 1, dW, in);
    if (db)
        for (int64_t r = 0; r < R; r++)
            for (int j = 0; j < out; j++) db[j] += dY[r * out + j];
}

/* LayerNorm as model/forward.c computes it; keeps x-hat and 1/std. */
static void ln_fwd(const qd_real *x, int64_t R, int n, const qd_real *g, const qd_real *beta, double eps, qd_real *y,
                   qd_real *xh, qd_real *rs)
{
    for (int64_t r = 0; r < R; r++) {
        const qd_real *xr = x + r * n;
        double s = 0;
        for (int i = 0; i < n; i++) s += xr[i];
        double mean = s / n, v = 0;
        for (int i = 0; i < n; i++) {
            double d = xr[i] - mean;
            v += d * d;
        }
        double inv = 1.0 / sqrt(v / n + eps);
        rs[r] = (qd_real)inv;
        for (int i = 0; i < n; i++) {
            double t = (xr[i] - mean) * inv;
            xh[r * n + i] = (qd_real)t;
            y[r * n + i] = (qd_real)(t * g[i] + beta[i]);
        }
    }
}

/* dx = (1/std) (dxh - mean(dxh) - xh mean(dxh xh)), dxh = dy g; dg += dy xh, db += dy.
 * dx may alias dy; accumulate: dx += instead of = . */
static void ln_bwd(const qd_real *dy, const qd_real *xh, const qd_real *rs, int64_t R, int n, const qd_real *g,
                   qd_real *dg, qd_real *db, qd_real *dx, int accumulate)
{
    for (int64_t r = 0; r < R; r++) {
        const qd_real *d = dy + r * n, *x = xh + r * n;
        double s1 = 0, s2 = 0;
        for (int i = 0; i < n; i++) {
            double t = (double)d[i] * g[i];
            s1 += t;
            s2 += t * x[i];
        }
        if (dg)
            for (int i = 0; i < n; i++) dg[i] += d[i] * x[i];
        if (db)
            for (int i = 0; i < n; i++) db[i] += d[i];
        if (!dx) continue;
        double m1 = s1 / n, m2 = s2 / n, inv = rs[r];
        qd_real *o = dx + r * n;
        for (int i = 0; i < n; i++) {
            qd_real v = (qd_real)(inv * ((double)d[i] * g[i] - m1 - x[i] * m2));
            o[i] = accumulate ? o[i] + v : v;
        }
    }
}

static void act_fwd(qd_act act, const qd_real *u, qd_real *a, int64_t n)
{
#ifndef QD_TRAIN_F64
    if (act == QD_ACT_GELU) {
        memcpy(a, u, (size_t)n * sizeof *a);
        qd_kernels()->gelu(a, n);
        return;
    }
    { /* the other activations as the model's forward computes them */
        memcpy(a, u, (size_t)n * sizeof *a);
        qd_activation(act, a, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) {
        double x = u[i];
        switch (act) {
        case QD_ACT_GELU: a[i] = (qd_real)(0.5 * x * (1.0 + erf(x * 0.70710678118654752440))); break;
        case QD_ACT_GELU_TANH:
            a[i] = (qd_real)(0.5 * x * (1.0 + tanh(0.79788456080286535588 * (x + 0.044715 * x * x * x))));
            break;
        case QD_ACT_RELU: a[i] = (qd_real)(x > 0 ? x : 0); break;
        case QD_ACT_SILU: a[i] = (qd_real)(x / (1.0 + exp(-x))); break;
        case QD_ACT_QUICK_GELU: a[i] = (qd_real)(x / (1.0 + exp(-1.702 * x))); break;
        case QD_ACT_TANH: a[i] = (qd_real)tanh(x); break;
        }
    }
}

/* d = d * act'(u) */
static void act_bwd(qd_act act, const qd_real *u, qd_real *d, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        double x = u[i], g;
        switch (act) {
        case QD_ACT_GELU:
            g = 0.5 * (1.0 + erf(x * 0.70710678118654752440)) + x * 0.39894228040143267794 * exp(-0.5 * x * x);
            break;
        case QD_ACT_GELU_TANH: {
            const double k = 0.79788456080286535588;
            double t = tanh(k * (x + 0.044715 * x * x * x));
            g = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k * (1.0 + 3 * 0.044715 * x * x);
            break;
        }
        case QD_ACT_RELU: g = x > 0 ? 1.0 : 0.0; break;
        case QD_ACT_SILU: {
            double s = 1.0 / (1.0 + exp(-x));
            g = s * (1.0 + x * (1.0 - s));
            break;
        }
        case QD_ACT_QUICK_GELU: { /* x s(1.702 x): s + 1.702 x s (1 - s) */
            double s = 1.0 / (1.0 + exp(-1.702 * x));
            g = s * (1.0 + 1.702 * x * (1.0 - s));
            break;
        }
        case QD_ACT_TANH: {
            double t = tanh(x);
            g = 1.0 - t * t;
            break;
        }
        default: g = 0;
        }
        d[i] = (qd_real)(d[i] * g);
    }
}

/* row = softmax(row) in place, masked keys at 0 */
static void softmax_row(qd_real *row, int T, const int32_t *mask)
{
    qd_real mx = -INFINITY;
    for (int j = 0; j < T; j++) {
        if (mask && !mask[j]) row[j] = -INFINITY;
        if (row[j] > mx) mx = row[j];
    }
#ifdef QD_TRAIN_F64
    double sum = 0;
    for (int j = 0; j < T; j++) {
        row[j] = exp(row[j] - mx);
        sum += row[j];
    }
    double inv = 1.0 / sum;
#else
    float sum = qd_kernels()->exp_sum(row, T, mx);
    float inv = 1.0f / sum;
#endif
    for (int j = 0; j < T; j++) row[j] *= inv;
}

static const qd_real *lin_w(const net *n, int li) { return n->weff[li] ? n->weff[li] : n->w + n->lw[li]; }
static const qd_real *lin_b(const net *n, int li) { return n->lb[li] >= 0 ? n->w + n->lb[li] : NULL; }

static int trainable_off(const net *n, int64_t off)
{
    /* parameters are few: a linear scan keeps this simple */
    for (int i = 0; i < n->np; i++)
        if (n->p[i].off == off) return n->p[i].trainable;
    return 0;
}
static qd_real *grad_at(net *n, int64_t off) { return off >= 0 && trainable_off(n, off) ? n->g + off : NULL; }
static qd_real *lin_gw(net *n, int li) { return n->weff[li] ? n->gweff[li] : grad_at(n, n->lw[li]); }
static qd_real *lin_gb(net *n, int li) { return grad_at(n, n->lb[li]); }

/* ---- activation quantizers (Linear inputs) ------------------------------------------------- */

#define AQ_MIN (-128)
#define AQ_MAX 127

static int aq_on(const net *n, int k, int pt) { return n->aq && n->aq[k * QD_TG_AQ_PER_BLOCK + pt] >= 0; }

/* The quantized input of point pt of block k: xf, or x itself when that input stays float. */
static const qd_real *aq_fwd(const net *n, int k, int pt, const qd_real *x, int64_t cnt, qd_real *xf)
{
    if (!aq_on(n, k, pt)) return x;
    const int i = k * QD_TG_AQ_PER_BLOCK + pt, z = n->aqz[i];
    const double s = exp((double)n->w[n->aq[i]]);
    for (int64_t e = 0; e < cnt; e++) {
        double v = (double)x[e] / s, q = (n->aq_round ? nearbyint(v) : v) + z;
        q = q < AQ_MIN ? AQ_MIN : q > AQ_MAX ? AQ_MAX : q;
        xf[e] = (qd_real)(s * (q - z));
    }
    return xf;
}

/* d: the gradient at the quantized input; on return at x (straight through inside the range,
 * 0 outside), and the step's LSQ gradient added: d(log s) = s * sum d * (q - z - x / s) inside,
 * s * sum d * (q_end - z) at the clipped ends, times aqg. */
static void aq_bwd(net *n, int k, int pt, const qd_real *x, qd_real *d, int64_t cnt)
{
    if (!aq_on(n, k, pt)) return;
    const int i = k * QD_TG_AQ_PER_BLOCK + pt, z = n->aqz[i];
    const double s = exp((double)n->w[n->aq[i]]);
    double gs = 0;
    for (int64_t e = 0; e < cnt; e++) {
        double v = (double)x[e] / s, r = n->aq_round ? nearbyint(v) : v, q = r + z;
        if (q < AQ_MIN || q > AQ_MAX) {
            gs += (double)d[e] * ((q < AQ_MIN ? AQ_MIN : AQ_MAX) - z);
            d[e] = 0;
        } else
            gs += (double)d[e] * (r - v);
    }
    qd_real *g = grad_at(n, n->aq[i]);
    if (g) *g += (qd_real)(gs * s * n->aqg[i]);
}

/* ---- attention ---------------------------------------------------------------------------- */

static const int32_t *item_mask(const qd_batch *b, int bi)
{
    if (!b->mask) return NULL;
    const int32_t *m = b->mask + (int64_t)bi * b->T;
    for (int t = 0; t < b->T; t++)
        if (m[t]) return m;
    return NULL; /* nothing to attend to: as model/forward.c, behave as if unmasked */
}

static void attn_fwd(const net *n, const qd_batch *b, blk_cache *bc)
{
    const qd_model_config *c = &n->c;
    const int T = b->T, d = c->head_size, A = c->heads * d;
    const qd_real scale = (qd_real)(1.0 / sqrt((double)d));
    for (int bi = 0; bi < b->B; bi++) {
        const int32_t *mask = item_mask(b, bi);
        for (int h = 0; h < c->heads; h++) {
            int64_t o = (int64_t)bi * T * A + (int64_t)h * d;
            qd_real *S = bc->P + ((int64_t)bi * c->heads + h) * T * T;
            GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, d, scale, bc->q + o, A, bc->k + o, A, 0, S, T);
            for (int i = 0; i < T; i++) softmax_row(S + (int64_t)i * T, T, mask);
            GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, d, T, 1, S, T, bc->v + o, A, 0, bc->ctx + o, A);
        }
    }
}

/* dq, dk, dv from dctx */
static void attn_bwd(const net *n, const qd_batch *b, const blk_cache *bc, const qd_real *dctx, qd_real *dq,
                     qd_real *dk, qd_real *dv, qd_real *dS)
{
    const qd_model_config *c = &n->c;
    const int T = b->T, d = c->head_size, A = c->heads * d;
    const qd_real scale = (qd_real)(1.0 / sqrt((double)d));
    for (int bi = 0; bi < b->B; bi++)
        for (int h = 0; h < c->heads; h++) {
            int64_t o = (int64_t)bi * T * A + (int64_t)h * d;
            const qd_real *P = bc->P + ((int64_t)bi * c->heads + h) * T * T;
            /* dP = dC V^T; dV = P^T dC */
            GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, d, 1, dctx + o, A, bc->v + o, A, 0, dS, T);
            GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, T, d, T, 1, P, T, dctx + o, A, 0, dv + o, A);
            /* dS = P (dP - sum_j P dP) */
            for (int i = 0; i < T; i++) {
                qd_real *r = dS + (int64_t)i * T;
                const qd_real *p = P + (int64_t)i * T;
                double s = 0;
                for (int j = 0; j < T; j++) s += (double)p[j] * r[j];
                for (int j = 0; j < T; j++) r[j] = (qd_real)(p[j] * (r[j] - s));
            }
            /* S = scale Q K^T: dQ = scale dS K, dK = scale dS^T Q */
            GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, d, T, scale, dS, T, bc->k + o, A, 0, dq + o, A);
            GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, T, d, T, scale, dS, T, bc->q + o, A, 0, dk + o, A);
        }
}

/* ---- forward ------------------------------------------------------------------------------ */

static int embed_fwd(net *n, const qd_batch *b, qd_real *h)
{
    const qd_model_config *c = &n->c;
    QD_TG(cache) *cc = n->cache;
    const int H = c->hidden, T = b->T;
    const qd_real *w = n->w;
    if (c->arch == QD_ARCH_BERT) {
        if (T > c->max_position)
            return qd_err_set(QD_ESHAPE, "training: sequence length %d exceeds max_position_embeddings %d", T,
                              c->max_position);
        for (int bi = 0; bi < b->B; bi++)
            for (int t = 0; t < T; t++) {
                int64_t r = (int64_t)bi * T + t;
                int32_t id = b->ids[r], tt = b->type_ids ? b->type_ids[r] : 0;
                if (id < 0 || id >= c->vocab_size || tt < 0 || tt >= QD_MAX(c->type_vocab, 1))
                    return qd_err_set(QD_EINVAL,
                                      "training: token id %d / type %d at position %d of item %d is out of range", id,
                                      tt, t, bi);
                const qd_real *we = w + n->o[QD_TP_WORD] + (int64_t)id * H, *pe = w + n->o[QD_TP_POS] + (int64_t)t * H;
                const qd_real *te = n->o[QD_TP_TYPE] >= 0 ? w + n->o[QD_TP_TYPE] + (int64_t)tt * H : NULL;
                for (int i = 0; i < H; i++) h[r * H + i] = we[i] + pe[i] + (te ? te[i] : 0);
            }
        ln_fwd(h, (int64_t)b->B * T, H, w + n->o[QD_TP_ELN_G], w + n->o[QD_TP_ELN_B], c->ln_eps, h, cc->ex, cc->er);
        return QD_OK;
    }
    const int C = c->channels, gh = c->image_h / c->patch_h, gw = c->image_w / c->patch_w, np = gh * gw;
    const int pk = C * c->patch_h * c->patch_w;
    if (T != np + 1) return qd_err_set(QD_ESHAPE, "training: a ViT batch has %d tokens per image, not %d", np + 1, T);
    for (int bi = 0; bi < b->B; bi++) {
        const float *img = b->pixels + (int64_t)bi * C * c->image_h * c->image_w;
        for (int py = 0; py < gh; py++)
            for (int px = 0; px < gw; px++) {
                qd_real *row = cc->patches + (((int64_t)bi * gh + py) * gw + px) * pk;
                for (int ch = 0; ch < C; ch++)
                    for (int i = 0; i < c->patch_h; i++)
                        for (int j = 0; j < c->patch_w; j++)
                            row[((int64_t)ch * c->patch_h + i) * c->patch_w + j] =
                                img[((int64_t)ch * c->image_h + py * c->patch_h + i) * c->image_w + px * c->patch_w +
                                    j];
            }
    }
    /* patch projections into the rows after CLS: compute into d1 then scatter */
    qd_real *Y = cc->d1;
    lin_fwd(cc->patches, (int64_t)b->B * np, pk, w + n->o[QD_TP_PATCH_W], w + n->o[QD_TP_PATCH_B], H, Y);
    const qd_real *cls = w + n->o[QD_TP_CLS_TOK], *pos = w + n->o[QD_TP_POS];
    for (int bi = 0; bi < b->B; bi++) {
        qd_real *o = h + (int64_t)bi * T * H;
        for (int i = 0; i < H; i++) o[i] = cls[i] + pos[i];
        for (int p = 0; p < np; p++)
            for (int i = 0; i < H; i++)
                o[(int64_t)(p + 1) * H + i] = Y[((int64_t)bi * np + p) * H + i] + pos[(int64_t)(p + 1) * H + i];
    }
    return QD_OK;
}

static void block_fwd(net *n, int k, const qd_batch *b, qd_real *h)
{
    const qd_model_config *c = &n->c;
    QD_TG(cache) *cc = n->cache;
    blk_cache *bc = &cc->blk[k];
    const int H = c->hidden, A = c->heads * c->head_size, NI = c->intermediate;
    const int64_t R = (int64_t)b->B * b->T, RH = R * H;
    const int l0 = k * QD_LIN_PER_BLOCK;
    const qd_real *w = n->w;
    const qd_real *g1 = w + n->ln[k * 4], *b1 = w + n->ln[k * 4 + 1], *g2 = w + n->ln[k * 4 + 2],
                  *b2 = w + n->ln[k * 4 + 3];
    qd_real *t = cc->d1;
    if (c->arch == QD_ARCH_BERT)
        memcpy(bc->xq, h, (size_t)RH * sizeof *h);
    else
        ln_fwd(h, R, H, g1, b1, c->ln_eps, bc->xq, bc->x1, bc->r1);
    const qd_real *xq = aq_fwd(n, k, QD_TG_AQ_QKV, bc->xq, RH, bc->xqf);
    lin_fwd(xq, R, H, lin_w(n, l0 + QD_LIN_Q), lin_b(n, l0 + QD_LIN_Q), A, bc->q);
    lin_fwd(xq, R, H, lin_w(n, l0 + QD_LIN_K), lin_b(n, l0 + QD_LIN_K), A, bc->k);
    lin_fwd(xq, R, H, lin_w(n, l0 + QD_LIN_V), lin_b(n, l0 + QD_LIN_V), A, bc->v);
    attn_fwd(n, b, bc);
    lin_fwd(aq_fwd(n, k, QD_TG_AQ_CTX, bc->ctx, R * A, bc->ctxf), R, A, lin_w(n, l0 + QD_LIN_O),
            lin_b(n, l0 + QD_LIN_O), H, t);
    if (c->arch == QD_ARCH_BERT) {
        for (int64_t i = 0; i < RH; i++) t[i] += h[i];
        ln_fwd(t, R, H, g1, b1, c->ln_eps, bc->xi, bc->x1, bc->r1);
    } else {
        for (int64_t i = 0; i < RH; i++) h[i] += t[i];
        ln_fwd(h, R, H, g2, b2, c->ln_eps, bc->xi, bc->x2, bc->r2);
    }
    lin_fwd(aq_fwd(n, k, QD_TG_AQ_MLP, bc->xi, RH, bc->xif), R, H, lin_w(n, l0 + QD_LIN_INTER),
            lin_b(n, l0 + QD_LIN_INTER), NI, bc->u);
    act_fwd(c->act, bc->u, bc->a, R * NI);
    lin_fwd(aq_fwd(n, k, QD_TG_AQ_ACT, bc->a, R * NI, bc->af), R, NI, lin_w(n, l0 + QD_LIN_OUT),
            lin_b(n, l0 + QD_LIN_OUT), H, t);
    if (c->arch == QD_ARCH_BERT) {
        for (int64_t i = 0; i < RH; i++) t[i] += bc->xi[i];
        ln_fwd(t, R, H, g2, b2, c->ln_eps, h, bc->x2, bc->r2);
    } else {
        for (int64_t i = 0; i < RH; i++) h[i] += t[i];
    }
}

int QD_TG(forward)(net *n, const qd_batch *b, qd_real *logits, qd_real *pooled)
{
    const qd_model_config *c = &n->c;
    if (b->B <= 0 || b->T <= 0) return qd_err_set(QD_EINVAL, "training: empty batch (%d x %d)", b->B, b->T);
    if (c->arch == QD_ARCH_BERT ? !b->ids : !b->pixels)
        return qd_err_set(QD_EINVAL, "training: the batch lacks the model's inputs");
    int rc;
    if ((rc = QD_TG(net_alloc)(n)) || (rc = cache_layout(n, b))) return rc;
    QD_TG(cache) *cc = n->cache;
    const int H = c->hidden, T = b->T, L = c->num_labels;
    if ((rc = embed_fwd(n, b, cc->h))) return rc;
    for (int k = 0; k < c->layers; k++) block_fwd(n, k, b, cc->h);
    const qd_real *w = n->w;
    for (int bi = 0; bi < b->B; bi++)
        memcpy(cc->hc + (int64_t)bi * H, cc->h + (int64_t)bi * T * H, (size_t)H * sizeof *cc->h);
    if (c->arch == QD_ARCH_VIT) {
        ln_fwd(cc->hc, b->B, H, w + n->o[QD_TP_FLN_G], w + n->o[QD_TP_FLN_B], c->ln_eps, cc->hp, cc->fx, cc->fr);
        if (pooled) memcpy(pooled, cc->hp, (size_t)b->B * H * sizeof *pooled);
    } else {
        if (c->has_pooler) {
            lin_fwd(cc->hc, b->B, H, w + n->o[QD_TP_POOL_W], w + n->o[QD_TP_POOL_B], H, cc->hp);
            for (int64_t i = 0; i < (int64_t)b->B * H; i++) cc->hp[i] = (qd_real)tanh((double)cc->hp[i]);
        }
        if (pooled) /* mask-weighted mean of the last hidden state, in double as model/ */
            for (int bi = 0; bi < b->B; bi++) {
                double cnt = 0;
                for (int t = 0; t < T; t++) cnt += cc->valid[(int64_t)bi * T + t];
                for (int i = 0; i < H; i++) {
                    double s = 0;
                    for (int t = 0; t < T; t++)
                        if (cc->valid[(int64_t)bi * T + t]) s += cc->h[((int64_t)bi * T + t) * H + i];
                    pooled[(int64_t)bi * H + i] = (qd_real)(s / (cnt > 0 ? cnt : 1e-9));
                }
            }
    }
    if (logits) {
        if (L <= 0 || n->o[QD_TP_CLS_W] < 0)
            return qd_err_set(QD_EUNSUPPORTED, "training: the model has no classification head");
        if (c->arch == QD_ARCH_BERT && !c->has_pooler)
            return qd_err_set(QD_EUNSUPPORTED, "training: the model has no pooler");
        lin_fwd(cc->hp, b->B, H, w + n->o[QD_TP_CLS_W], w + n->o[QD_TP_CLS_B], L, logits);
    }
    return QD_OK;
}

/* ---- backward ----------------------------------------------------------------------------- */

static int any_trainable(const net *n, int below_layer, int embeddings)
{
    for (int i = 0; i < n->np; i++) {
        const qd_tparam *p = &n->p[i];
        if (!p->trainable) continue;
        if (p->layer >= 0 && p->layer < below_layer) return 1;
        if (embeddings && p->layer < 0 && p->role <= QD_TP_PATCH_B) return 1;
    }
    for (int li = 0; li < below_layer * QD_LIN_PER_BLOCK; li++)
        if (n->weff[li] && n->gweff[li]) return 1;
    return 0;
}

/* dh: gradient at the block's output; on return, at its input (when need_dx). */
static void block_bwd(net *n, int k, const qd_batch *b, qd_real *dh, int need_dx)
{
    const qd_model_config *c = &n->c;
    QD_TG(cache) *cc = n->cache;
    const blk_cache *bc = &cc->blk[k];
    const int H = c->hidden, A = c->heads * c->head_size, NI = c->intermediate;
    const int64_t R = (int64_t)b->B * b->T, RH = R * H;
    const int l0 = k * QD_LIN_PER_BLOCK;
    const qd_real *g1 = n->w + n->ln[k * 4], *g2 = n->w + n->ln[k * 4 + 2];
    qd_real *dg1 = grad_at(n, n->ln[k * 4]), *db1 = grad_at(n, n->ln[k * 4 + 1]);
    qd_real *dg2 = grad_at(n, n->ln[k * 4 + 2]), *db2 = grad_at(n, n->ln[k * 4 + 3]);
    qd_real *dt = cc->d2, *dx = cc->d3;
    const int bert = c->arch == QD_ARCH_BERT;
    /* MLP: BERT h = LN2(xi + Out(act(Inter xi))); ViT h = h2 + Out(act(Inter LN2(h2))) */
    if (bert)
        ln_bwd(dh, bc->x2, bc->r2, R, H, g2, dg2, db2, dt, 0); /* dt = d(xi + mlp) */
    else
        memcpy(dt, dh, (size_t)RH * sizeof *dt); /* d(mlp) = dh; d(h2) = dh + ... */
    const int aqq = aq_on(n, k, QD_TG_AQ_QKV), aqc = aq_on(n, k, QD_TG_AQ_CTX), aqm = aq_on(n, k, QD_TG_AQ_MLP),
              aqa = aq_on(n, k, QD_TG_AQ_ACT);
    lin_bwd(aqa ? bc->af : bc->a, dt, R, NI, H, lin_w(n, l0 + QD_LIN_OUT), cc->di, 0, lin_gw(n, l0 + QD_LIN_OUT),
            lin_gb(n, l0 + QD_LIN_OUT));
    aq_bwd(n, k, QD_TG_AQ_ACT, bc->a, cc->di, R * NI);
    act_bwd(c->act, bc->u, cc->di, R * NI);
    const qd_real *xi = aqm ? bc->xif : bc->xi;
    /* dxi: BERT residual dt plus the intermediate's input gradient; ViT into dx then LN2 */
    if (bert) {
        memcpy(dx, dt, (size_t)RH * sizeof *dx);
        if (aqm) { /* the quantizer sees the Linear's part of the gradient only, not the residual's */
            lin_bwd(xi, cc->di, R, H, NI, lin_w(n, l0 + QD_LIN_INTER), cc->da, 0, lin_gw(n, l0 + QD_LIN_INTER),
                    lin_gb(n, l0 + QD_LIN_INTER));
            aq_bwd(n, k, QD_TG_AQ_MLP, bc->xi, cc->da, RH);
            for (int64_t i = 0; i < RH; i++) dx[i] += cc->da[i];
        } else
            lin_bwd(xi, cc->di, R, H, NI, lin_w(n, l0 + QD_LIN_INTER), dx, 1, lin_gw(n, l0 + QD_LIN_INTER),
                    lin_gb(n, l0 + QD_LIN_INTER));
        /* dx = d(a) = d(LN1 out); through LN1: dt = d(attn_out + x) */
        ln_bwd(dx, bc->x1, bc->r1, R, H, g1, dg1, db1, dt, 0);
    } else {
        lin_bwd(xi, cc->di, R, H, NI, lin_w(n, l0 + QD_LIN_INTER), dx, 0, lin_gw(n, l0 + QD_LIN_INTER),
                lin_gb(n, l0 + QD_LIN_INTER));
        aq_bwd(n, k, QD_TG_AQ_MLP, bc->xi, dx, RH);
        /* dt = d(h2) = dh + LN2'(dx) */
        memcpy(dt, dh, (size_t)RH * sizeof *dt);
        ln_bwd(dx, bc->x2, bc->r2, R, H, g2, dg2, db2, dt, 1);
    }
    /* dt: gradient at (attention output + residual) */
    lin_bwd(aqc ? bc->ctxf : bc->ctx, dt, R, A, H, lin_w(n, l0 + QD_LIN_O), cc->dc, 0, lin_gw(n, l0 + QD_LIN_O),
            lin_gb(n, l0 + QD_LIN_O));
    aq_bwd(n, k, QD_TG_AQ_CTX, bc->ctx, cc->dc, R * A);
    attn_bwd(n, b, bc, cc->dc, cc->dq, cc->dk, cc->dv, cc->ds);
    /* query/key/value: input xq; dx = d(xq) (always with a quantizer: its step needs it) */
    int need_dxq = need_dx || aqq;
    qd_real *dxq = need_dxq ? dx : NULL;
    const qd_real *xq = aqq ? bc->xqf : bc->xq;
    lin_bwd(xq, cc->dq, R, H, A, lin_w(n, l0 + QD_LIN_Q), dxq, 0, lin_gw(n, l0 + QD_LIN_Q), lin_gb(n, l0 + QD_LIN_Q));
    lin_bwd(xq, cc->dk, R, H, A, lin_w(n, l0 + QD_LIN_K), dxq, 1, lin_gw(n, l0 + QD_LIN_K), lin_gb(n, l0 + QD_LIN_K));
    lin_bwd(xq, cc->dv, R, H, A, lin_w(n, l0 + QD_LIN_V), dxq, 1, lin_gw(n, l0 + QD_LIN_V), lin_gb(n, l0 + QD_LIN_V));
    if (aqq) aq_bwd(n, k, QD_TG_AQ_QKV, bc->xq, dx, RH);
    if (bert) {
        /* block input gradient = residual dt + d(xq) */
        if (need_dx)
            for (int64_t i = 0; i < RH; i++) dh[i] = dt[i] + dx[i];
    } else {
        /* LN1 weights need their gradient even when the input's is not needed */
        if (need_dx) {
            memcpy(dh, dt, (size_t)RH * sizeof *dh);
            ln_bwd(dx, bc->x1, bc->r1, R, H, g1, dg1, db1, dh, 1);
        }
    }
    if (!need_dx && !bert && (dg1 || db1)) {
        /* the LN1 parameter gradients still need d(xq) (already there with a quantizer) */
        if (!aqq) {
            lin_bwd(bc->xq, cc->dq, R, H, A, lin_w(n, l0 + QD_LIN_Q), dx, 0, NULL, NULL);
            lin_bwd(bc->xq, cc->dk, R, H, A, lin_w(n, l0 + QD_LIN_K), dx, 1, NULL, NULL);
            lin_bwd(bc->xq, cc->dv, R, H, A, lin_w(n, l0 + QD_LIN_V), dx, 1, NULL, NULL);
        }
        ln_bwd(dx, bc->x1, bc->r1, R, H, g1, dg1, db1, NULL, 0);
    }
}

static void embed_bwd(net *n, const qd_batch *b, qd_real *dh)
{
    const qd_model_config *c = &n->c;
    QD_TG(cache) *cc = n->cache;
    const int H = c->hidden, T = b->T;
    const int64_t R = (int64_t)b->B * T;
    if (c->arch == QD_ARCH_BERT) {
        ln_bwd(dh, cc->ex, cc->er, R, H, n->w + n->o[QD_TP_ELN_G], grad_at(n, n->o[QD_TP_ELN_G]),
               grad_at(n, n->o[QD_TP_ELN_B]), cc->d2, 0);
        qd_real *gw = grad_at(n, n->o[QD_TP_WORD]), *gp = grad_at(n, n->o[QD_TP_POS]),
                *gt = grad_at(n, n->o[QD_TP_TYPE]);
        for (int64_t r = 0; r < R; r++) {
            const qd_real *d = cc->d2 + r * H;
            int32_t id = b->ids[r], tt = b->type_ids ? b->type_ids[r] : 0;
            int t = (int)(r % T);
            if (gw)
                for (int i = 0; i < H; i++) gw[(int64_t)id * H + i] += d[i];
            if (gp)
                for (int i = 0; i < H; i++) gp[(int64_t)t * H + i] += d[i];
            if (gt)
                for (int i = 0; i < H; i++) gt[(int64_t)tt * H + i] += d[i];
        }
        return;
    }
    const int np = T - 1, pk = c->channels * c->patch_h * c->patch_w;
    qd_real *gc = grad_at(n, n->o[QD_TP_CLS_TOK]), *gp = grad_at(n, n->o[QD_TP_POS]);
    for (int bi = 0; bi < b->B; bi++) {
        const qd_real *d = dh + (int64_t)bi * T * H;
        if (gc)
            for (int i = 0; i < H; i++) gc[i] += d[i];
        if (gp)
            for (int64_t i = 0; i < (int64_t)T * H; i++) gp[i] += d[i];
    }
    qd_real *gW = grad_at(n, n->o[QD_TP_PATCH_W]), *gB = grad_at(n, n->o[QD_TP_PATCH_B]);
    if (gW || gB) {
        qd_real *dY = cc->d2; /* patch rows only */
        for (int bi = 0; bi < b->B; bi++)
            memcpy(dY + (int64_t)bi * np * H, dh + ((int64_t)bi * T + 1) * H, (size_t)np * H * sizeof *dY);
        lin_bwd(cc->patches, dY, (int64_t)b->B * np, pk, H, NULL, NULL, 0, gW, gB);
    }
}

int QD_TG(backward)(net *n, const qd_batch *b, const qd_real *dlogits, const qd_real *dpooled)
{
    const qd_model_config *c = &n->c;
    QD_TG(cache) *cc = n->cache;
    if (!cc || cc->B != b->B || cc->T != b->T) return qd_err_set(QD_EINVAL, "training: backward without its forward");
    const int H = c->hidden, T = b->T, L = c->num_labels;
    const int64_t R = (int64_t)b->B * T;
    qd_real *dh = cc->d1;
    memset(dh, 0, (size_t)(R * H) * sizeof *dh);
    qd_real *dhc = cc->dhead, *dhp = cc->dhead + (int64_t)b->B * H;
    memset(dhc, 0, (size_t)b->B * H * sizeof *dhc);
    memset(dhp, 0, (size_t)b->B * H * sizeof *dhp);
    if (dlogits)
        lin_bwd(cc->hp, dlogits, b->B, H, L, n->w + n->o[QD_TP_CLS_W], dhp, 0, grad_at(n, n->o[QD_TP_CLS_W]),
                grad_at(n, n->o[QD_TP_CLS_B]));
    if (c->arch == QD_ARCH_VIT) {
        if (dpooled)
            for (int64_t i = 0; i < (int64_t)b->B * H; i++) dhp[i] += dpooled[i];
        ln_bwd(dhp, cc->fx, cc->fr, b->B, H, n->w + n->o[QD_TP_FLN_G], grad_at(n, n->o[QD_TP_FLN_G]),
               grad_at(n, n->o[QD_TP_FLN_B]), dhc, 0);
    } else {
        if (dlogits) {
            for (int64_t i = 0; i < (int64_t)b->B * H; i++)
                dhp[i] = (qd_real)(dhp[i] * (1.0 - (double)cc->hp[i] * cc->hp[i]));
            lin_bwd(cc->hc, dhp, b->B, H, H, n->w + n->o[QD_TP_POOL_W], dhc, 0, grad_at(n, n->o[QD_TP_POOL_W]),
                    grad_at(n, n->o[QD_TP_POOL_B]));
        }
        if (dpooled)
            for (int bi = 0; bi < b->B; bi++) {
                double cnt = 0;
                for (int t = 0; t < T; t++) cnt += cc->valid[(int64_t)bi * T + t];
                double inv = 1.0 / (cnt > 0 ? cnt : 1e-9);
                for (int t = 0; t < T; t++)
                    if (cc->valid[(int64_t)bi * T + t])
                        for (int i = 0; i < H; i++)
                            dh[((int64_t)bi * T + t) * H + i] = (qd_real)(dpooled[(int64_t)bi * H + i] * inv);
            }
    }
    for (int bi = 0; bi < b->B; bi++)
        for (int i = 0; i < H; i++) dh[(int64_t)bi * T * H + i] += dhc[(int64_t)bi * H + i];
    for (int k = c->layers - 1; k >= 0; k--) {
        if (!any_trainable(n, k + 1, 1)) break;
        block_bwd(n, k, b, dh, any_trainable(n, k, 1));
    }
    if (any_trainable(n, 0, 1)) embed_bwd(n, b, dh);
    return QD_OK;
}
