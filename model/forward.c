/* model/forward.c — the FP32 forward pass of every family: embeddings, encoder blocks, heads,
 * one code path steered by qd_model_config (norm placement, activation, position scheme,
 * attention bias, layer scales, prefix tokens, head). Matrix products go through OpenBLAS sgemm;
 * the rest are plain loops over rows. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "model/model_internal.h"

/* ---- building blocks ---------------------------------------------------------------------- */

void qd_linear_f32(const float *X, int64_t rows, int in, const float *W, const float *b, int out, float *Y)
{
    if (rows <= 0) return;
    if (b) {
        for (int64_t r = 0; r < rows; r++) memcpy(Y + r * out, b, (size_t)out * sizeof *Y);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, out, in, 1.0f, X, in, W, in, b ? 1.0f : 0.0f, Y,
                out);
}

/* Mean and variance in double (two passes), as a float64 reference would; output in float. */
void qd_layernorm(const float *x, int64_t rows, int n, const float *g, const float *beta, double eps, float *y)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        double s = 0;
        for (int i = 0; i < n; i++) s += xr[i];
        double mean = s / n, v = 0;
        for (int i = 0; i < n; i++) {
            double d = xr[i] - mean;
            v += d * d;
        }
        double inv = 1.0 / sqrt(v / n + eps);
        for (int i = 0; i < n; i++) yr[i] = (float)((xr[i] - mean) * inv * g[i] + beta[i]);
    }
}

void qd_activation(qd_act act, float *x, int64_t n)
{
    switch (act) {
    case QD_ACT_GELU: /* exact (erf) GELU; erf by the kernels' rational approximation (|error| <= 3.4e-7) */
        qd_kernels()->gelu(x, n);
        break;
    case QD_ACT_GELU_TANH:
        for (int64_t i = 0; i < n; i++) {
            double v = x[i];
            x[i] = (float)(0.5 * v * (1.0 + tanh(0.79788456080286535588 * (v + 0.044715 * v * v * v))));
        }
        break;
    case QD_ACT_RELU:
        for (int64_t i = 0; i < n; i++) x[i] = x[i] > 0 ? x[i] : 0.0f;
        break;
    case QD_ACT_SILU:
        for (int64_t i = 0; i < n; i++) x[i] = (float)(x[i] / (1.0 + exp(-(double)x[i])));
        break;
    case QD_ACT_QUICK_GELU: /* CLIP: x * sigmoid(1.702 x) */
        for (int64_t i = 0; i < n; i++) x[i] = (float)(x[i] / (1.0 + exp(-1.702 * (double)x[i])));
        break;
    case QD_ACT_TANH:
        for (int64_t i = 0; i < n; i++) x[i] = tanhf(x[i]);
        break;
    }
}

/* One sgemm per item (T rows): OpenBLAS picks kernels by matrix shape, so an item's result would
 * otherwise depend on how many items share its batch. Per item, the same sample gives the same
 * bits in any micro-batch, on any rank — what makes calibration independent of the rank count. */
static int apply_linear(const qd_model *m, int li, const float *X, int64_t rows, int T, float *Y,
                        const qd_model_hooks *hk)
{
    const qd_linear *L = &m->lin[li];
    if (hk && hk->linear_apply) {
        int rc = hk->linear_apply(hk->user, m, li, X, rows, Y);
        if (rc < 0) return rc;
        if (rc == 1) return QD_OK;
    }
    QD_ASSERT(L->W); /* streamed weights: the block was loaded (qd_model_block_load) */
    for (int64_t r = 0; r < rows; r += T)
        qd_linear_f32(X + r * L->in, QD_MIN(T, rows - r), L->in, L->W, L->b, L->out, Y + r * L->out);
    return QD_OK;
}

/* Reports linear li's input to the hook, in its owner block k only (shared weights: first use). */
static int see_input(const qd_model *m, int k, int li, const float *X, int64_t rows, const uint8_t *valid,
                     const qd_model_hooks *hk)
{
    if (hk && hk->linear_input && m->lin[li].layer == k) return hk->linear_input(hk->user, m, li, X, rows, valid);
    return QD_OK;
}

static int tap(const qd_model_hooks *hk, const qd_model *m, int layer, int point, const float *x, int64_t rows,
               int64_t cols, const uint8_t *valid)
{
    if (hk && hk->tap) return hk->tap(hk->user, m, layer, point, x, rows, cols, valid);
    return QD_OK;
}

/* ---- attention and MLP -------------------------------------------------------------------- */

typedef struct {
    float *q, *k, *v, *ctx; /* [rows, A] */
    float *t1, *t2;         /* [rows, H] */
    float *inter;           /* [rows, I] */
    float *scores;          /* [T, T] */
    uint8_t *valid;         /* [rows] or NULL */
    int32_t *bucket;        /* MPNet: [2T - 1] bucket of relative position j - i + T - 1 */
} scratch;

/* The block's buffers live in the model object and only grow: freeing ~15 MiB after every block
 * would hand the pages back to the OS and fault them in again in the next one. */
static int scratch_init(const qd_model *m, const qd_batch *b, scratch *s)
{
    const qd_model_config *c = &m->cfg;
    int64_t rows = (int64_t)b->B * b->T, A = (int64_t)c->heads * c->head_size;
    memset(s, 0, sizeof *s);
    size_t need =
        (size_t)(rows * A * 4 + rows * c->hidden * 2 + rows * c->intermediate + (int64_t)b->T * b->T) * sizeof(float);
    qd_model *mm = (qd_model *)m;
    if (need > mm->scratch_bytes) {
        free(mm->scratch);
        mm->scratch = malloc(need);
        mm->scratch_bytes = mm->scratch ? need : 0;
        if (!mm->scratch)
            return qd_err_set(QD_ENOMEM, "forward pass: out of memory for a batch of %d x %d tokens", b->B, b->T);
    }
    s->q = mm->scratch;
    s->t1 = s->q + rows * A * 4;
    s->inter = s->t1 + rows * c->hidden * 2;
    s->scores = s->inter + rows * c->intermediate;
    s->k = s->q + rows * A;
    s->v = s->k + rows * A;
    s->ctx = s->v + rows * A;
    s->t2 = s->t1 + rows * c->hidden;
    if (b->mask) {
        s->valid = malloc((size_t)rows);
        if (!s->valid) return qd_err_set(QD_ENOMEM, "forward pass: out of memory");
        for (int64_t r = 0; r < rows; r++) s->valid[r] = b->mask[r] != 0;
    }
    return QD_OK;
}

static void scratch_free(scratch *s)
{
    free(s->valid);
    free(s->bucket);
}

/* MPNet's bucket of relative position rel = key - query (transformers' relative_position_bucket
 * with 32 buckets and max distance 128, in float32 as torch computes it): 16 buckets per
 * direction, exact below 8, logarithmic up to 128. */
int32_t qd_model_rel_bucket(int rel)
{
    const int half = 16, exact = 8;
    int n = -rel, ret = n < 0 ? half : 0;
    n = abs(n);
    if (n < exact) return ret + n;
    float v = logf((float)n / (float)exact) / (float)log(128.0 / exact) * (float)(half - exact);
    int large = exact + (int)v;
    return ret + (large < half - 1 ? large : half - 1);
}

/* out [rows, H] = O(attention(Q x, K x, V x)) with block k's weights */
static int attention(const qd_model *m, int k, const qd_batch *b, const float *x, float *out, scratch *s,
                     const qd_model_hooks *hk)
{
    const qd_model_config *c = &m->cfg;
    const int l0 = m->blk[k].set * QD_LIN_PER_BLOCK;
    /* the heads this block keeps (pruned_heads); position tables index the full count */
    const int T = b->T, d = c->head_size, nh = c->layer_heads[m->blk[k].set], A = nh * d, nt = c->heads;
    const int64_t rows = (int64_t)b->B * T;
    int rc;
    if ((rc = see_input(m, k, l0 + QD_LIN_Q, x, rows, s->valid, hk))) return rc;
    if ((rc = tap(hk, m, k, QD_TAP_QKV_IN, x, rows, c->hidden, s->valid))) return rc;
    if ((rc = apply_linear(m, l0 + QD_LIN_Q, x, rows, T, s->q, hk)) ||
        (rc = apply_linear(m, l0 + QD_LIN_K, x, rows, T, s->k, hk)) ||
        (rc = apply_linear(m, l0 + QD_LIN_V, x, rows, T, s->v, hk)))
        return rc;
    if ((rc = tap(hk, m, k, QD_TAP_Q, s->q, rows, A, s->valid)) ||
        (rc = tap(hk, m, k, QD_TAP_K, s->k, rows, A, s->valid)) ||
        (rc = tap(hk, m, k, QD_TAP_V, s->v, rows, A, s->valid)))
        return rc;
    const float *table = c->relpos == QD_RELPOS_TABLE ? m->blk[k].rel_table : NULL;
    if (c->relpos == QD_RELPOS_BUCKETS && !s->bucket) {
        s->bucket = malloc((size_t)(2 * T - 1) * sizeof *s->bucket);
        if (!s->bucket) return qd_err_set(QD_ENOMEM, "forward pass: out of memory");
        for (int r = -(T - 1); r <= T - 1; r++) s->bucket[r + T - 1] = qd_model_rel_bucket(r);
    }
    const float scale = (float)(1.0 / sqrt((double)d));
    for (int bi = 0; bi < b->B; bi++) {
        const int32_t *mask = b->mask ? b->mask + (int64_t)bi * T : NULL;
        int any = 0;
        for (int t = 0; mask && t < T; t++) any |= mask[t] != 0;
        if (!any) mask = NULL; /* nothing to attend to: behave as if unmasked */
        for (int h = 0; h < nh; h++) {
            const float *Q = s->q + (int64_t)bi * T * A + (int64_t)h * d;
            const float *K = s->k + (int64_t)bi * T * A + (int64_t)h * d;
            const float *V = s->v + (int64_t)bi * T * A + (int64_t)h * d;
            float *C = s->ctx + (int64_t)bi * T * A + (int64_t)h * d;
            float *S = s->scores;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, d, scale, Q, A, K, A, 0.0f, S, T);
            const uint8_t *iv = s->valid ? s->valid + (int64_t)bi * T : NULL;
            if ((rc = tap(hk, m, k, QD_TAP_SCORES, S, T, T, iv))) return rc;
            for (int i = 0; i < T; i++) {
                float *row = S + (int64_t)i * T;
                if (s->bucket)
                    for (int j = 0; j < T; j++) row[j] += m->rel_buckets[(int64_t)s->bucket[j - i + T - 1] * nt + h];
                else if (table) {
                    const int32_t *ix = m->rel_index + (int64_t)i * T;
                    for (int j = 0; j < T; j++) row[j] += table[(int64_t)ix[j] * nt + h];
                }
                float mx = -INFINITY;
                for (int j = 0; j < T; j++) {
                    if (mask && !mask[j]) row[j] = -INFINITY; /* padding keys: probability 0 */
                    if (row[j] > mx) mx = row[j];
                }
                float sum = qd_kernels()->exp_sum(row, T, mx);
                float inv = 1.0f / sum;
                for (int j = 0; j < T; j++) row[j] *= inv;
            }
            if ((rc = tap(hk, m, k, QD_TAP_PROBS, S, T, T, iv))) return rc;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, d, T, 1.0f, S, T, V, A, 0.0f, C, A);
        }
    }
    if ((rc = see_input(m, k, l0 + QD_LIN_O, s->ctx, rows, s->valid, hk))) return rc;
    if ((rc = tap(hk, m, k, QD_TAP_CTX, s->ctx, rows, A, s->valid))) return rc;
    if ((rc = apply_linear(m, l0 + QD_LIN_O, s->ctx, rows, T, out, hk))) return rc;
    return tap(hk, m, k, QD_TAP_ATTN_OUT, out, rows, c->hidden, s->valid);
}

/* out [rows, H] = Out(act(Inter x)) with block k's weights */
static int mlp(const qd_model *m, int k, const qd_batch *b, const float *x, float *out, scratch *s,
               const qd_model_hooks *hk)
{
    const qd_model_config *c = &m->cfg;
    const int64_t rows = (int64_t)b->B * b->T;
    const int l0 = m->blk[k].set * QD_LIN_PER_BLOCK;
    int rc;
    if ((rc = see_input(m, k, l0 + QD_LIN_INTER, x, rows, s->valid, hk))) return rc;
    if ((rc = tap(hk, m, k, QD_TAP_MLP_IN, x, rows, c->hidden, s->valid))) return rc;
    if ((rc = apply_linear(m, l0 + QD_LIN_INTER, x, rows, b->T, s->inter, hk))) return rc;
    if ((rc = tap(hk, m, k, QD_TAP_INTER, s->inter, rows, c->intermediate, s->valid))) return rc;
    qd_activation(c->act, s->inter, rows * c->intermediate);
    if ((rc = see_input(m, k, l0 + QD_LIN_OUT, s->inter, rows, s->valid, hk))) return rc;
    if ((rc = tap(hk, m, k, QD_TAP_ACT, s->inter, rows, c->intermediate, s->valid))) return rc;
    if ((rc = apply_linear(m, l0 + QD_LIN_OUT, s->inter, rows, b->T, out, hk))) return rc;
    return tap(hk, m, k, QD_TAP_MLP_OUT, out, rows, c->hidden, s->valid);
}

/* inputs: the batch must carry the model's inputs (embeddings); blocks need only the shape and mask */
static int check_batch(const qd_model *m, const qd_batch *b, int inputs)
{
    const qd_model_config *c = &m->cfg;
    if (b->B <= 0 || b->T <= 0) return qd_err_set(QD_EINVAL, "forward pass: empty batch (%d x %d)", b->B, b->T);
    if (c->arch == QD_ARCH_VIT) {
        if (inputs && !b->pixels) return qd_err_set(QD_EINVAL, "%s: a vision batch needs pixel values", m->dir);
        if (b->T != qd_model_tokens(m, 0))
            return qd_err_set(QD_ESHAPE, "%s: a vision batch has %d tokens per image, not %d", m->dir,
                              qd_model_tokens(m, 0), b->T);
    } else {
        if (inputs && !b->ids) return qd_err_set(QD_EINVAL, "%s: a text batch needs token ids", m->dir);
        int longest = c->pos == QD_POS_AFTER_PAD ? c->max_position - c->pad_id - 1 : c->max_position;
        if (c->pos != QD_POS_NONE && b->T > longest)
            return qd_err_set(QD_ESHAPE,
                              "%s: sequence length %d exceeds the %d positions of max_position_embeddings %d", m->dir,
                              b->T, longest, c->max_position);
    }
    return QD_OK;
}

/* x [n] *= s [n] per row: a layer scale on a residual branch */
static void scale_rows(float *x, int64_t rows, int n, const float *s)
{
    for (int64_t r = 0; r < rows; r++)
        for (int i = 0; i < n; i++) x[r * n + i] *= s[i];
}

int qd_model_block(const qd_model *m, int k, const qd_batch *b, float *h, const qd_model_hooks *hk)
{
    const qd_model_config *c = &m->cfg;
    QD_ASSERT(k >= 0 && k < c->layers);
    int rc = check_batch(m, b, 0);
    if (rc) return rc;
    const int H = c->hidden;
    const int64_t rows = (int64_t)b->B * b->T;
    const qd_block_w *w = &m->blk[k];
    scratch s;
    if ((rc = scratch_init(m, b, &s))) return rc;
    if (c->norm == QD_NORM_POST) {
        /* a = LN1(h + attn(h)); h = LN2(a + mlp(a)) */
        if ((rc = attention(m, k, b, h, s.t1, &s, hk))) goto out;
        for (int64_t i = 0; i < rows * H; i++) s.t1[i] += h[i];
        if ((rc = tap(hk, m, k, QD_TAP_RES1, s.t1, rows, H, s.valid))) goto out;
        qd_layernorm(s.t1, rows, H, w->ln1_g, w->ln1_b, c->ln_eps, s.t2);
        if ((rc = mlp(m, k, b, s.t2, s.t1, &s, hk))) goto out;
        for (int64_t i = 0; i < rows * H; i++) s.t1[i] += s.t2[i];
        if ((rc = tap(hk, m, k, QD_TAP_RES2, s.t1, rows, H, s.valid))) goto out;
        qd_layernorm(s.t1, rows, H, w->ln2_g, w->ln2_b, c->ln_eps, h);
    } else {
        /* h += s1 * attn(LN1 h); h += s2 * mlp(LN2 h) (s = 1 without layer scales) */
        qd_layernorm(h, rows, H, w->ln1_g, w->ln1_b, c->ln_eps, s.t1);
        if ((rc = attention(m, k, b, s.t1, s.t2, &s, hk))) goto out;
        if (w->ls1) scale_rows(s.t2, rows, H, w->ls1);
        for (int64_t i = 0; i < rows * H; i++) h[i] += s.t2[i];
        if ((rc = tap(hk, m, k, QD_TAP_RES1, h, rows, H, s.valid))) goto out;
        qd_layernorm(h, rows, H, w->ln2_g, w->ln2_b, c->ln_eps, s.t1);
        if ((rc = mlp(m, k, b, s.t1, s.t2, &s, hk))) goto out;
        if (w->ls2) scale_rows(s.t2, rows, H, w->ls2);
        for (int64_t i = 0; i < rows * H; i++) h[i] += s.t2[i];
        if ((rc = tap(hk, m, k, QD_TAP_RES2, h, rows, H, s.valid))) goto out;
    }
    rc = tap(hk, m, k, QD_TAP_OUT, h, rows, H, s.valid);
out:
    scratch_free(&s);
    return rc;
}

/* ---- embeddings --------------------------------------------------------------------------- */

/* Row `id` of the word table streamed from the checkpoint, checked finite. */
static int word_row(const qd_model *m, int32_t id, float *row)
{
    const int E = m->cfg.embed_size;
    int rc = qd_ckpt_read_rows_f32(m->ck, m->word_emb_ti, id, 1, row);
    for (int i = 0; i < E && !rc; i++)
        if (!isfinite(row[i]))
            rc = qd_err_set(QD_ENONFINITE, "%s: tensor '%s' holds a non-finite value at [%d, %d]", m->dir,
                            qd_ckpt_tensor(m->ck, m->word_emb_ti)->name, id, i);
    return rc;
}

static int embed_text(const qd_model *m, const qd_batch *b, float *h, const qd_model_hooks *hk)
{
    const qd_model_config *c = &m->cfg;
    const int H = c->hidden, E = c->embed_size, T = b->T;
    const int64_t rows = (int64_t)b->B * T;
    float *e = h;
    if (m->emb_proj_W) { /* the narrower embedding, projected afterwards */
        e = malloc((size_t)rows * (size_t)E * sizeof *e);
        if (!e) return qd_err_set(QD_ENOMEM, "%s: out of memory for the embeddings", m->dir);
    }
    int rc = QD_OK;
    float *wrow = NULL; /* a streamed table's row (QD_MODEL_STREAM_EMBEDDINGS) */
    if (!m->word_emb && !(wrow = malloc((size_t)E * sizeof *wrow)))
        rc = qd_err_set(QD_ENOMEM, "%s: out of memory for the embeddings", m->dir);
    for (int bi = 0; bi < b->B && !rc; bi++) {
        int count = 0; /* non-padding tokens so far (QD_POS_AFTER_PAD) */
        for (int t = 0; t < T; t++) {
            int64_t r = (int64_t)bi * T + t;
            int32_t id = b->ids[r], tt = b->type_ids ? b->type_ids[r] : 0;
            if (id < 0 || id >= c->vocab_size) {
                rc = qd_err_set(QD_EINVAL, "%s: token id %d at position %d of item %d is outside the vocabulary (%d)",
                                m->dir, id, t, bi, c->vocab_size);
                break;
            }
            if (tt < 0 || tt >= QD_MAX(c->type_vocab, 1)) {
                rc = qd_err_set(QD_EINVAL, "%s: token type %d at position %d of item %d is outside type_vocab_size %d",
                                m->dir, tt, t, bi, c->type_vocab);
                break;
            }
            int p = t;
            if (c->pos == QD_POS_AFTER_PAD) p = id == c->pad_id ? c->pad_id : c->pad_id + ++count;
            const float *we = wrow, *pe = m->pos_emb + (int64_t)p * E;
            if (wrow && (rc = word_row(m, id, wrow))) break;
            if (!wrow) we = m->word_emb + (int64_t)id * E;
            const float *te = m->type_emb ? m->type_emb + (int64_t)tt * E : NULL;
            float *o = e + r * E;
            for (int i = 0; i < E; i++) o[i] = we[i] + pe[i] + (te ? te[i] : 0.0f);
        }
    }
    if (wrow) { /* the rows read: the table's pages are not needed again */
        free(wrow);
        qd_ckpt_forget(m->ck, m->word_emb_ti);
    }
    /* taps: the embedding sum before and after its LayerNorm (padding rows not counted) */
    uint8_t *valid = NULL;
    if (!rc && hk && hk->tap && b->mask) {
        valid = qd_xmalloc((size_t)rows);
        for (int64_t r = 0; r < rows; r++) valid[r] = b->mask[r] != 0;
    }
    if (!rc) rc = tap(hk, m, -1, QD_TAP_M_EMBED, e, rows, E, valid);
    if (!rc) {
        qd_layernorm(e, rows, E, m->emb_ln_g, m->emb_ln_b, c->ln_eps, e);
        rc = tap(hk, m, -1, QD_TAP_M_EMBED_NORM, e, rows, E, valid);
        if (m->emb_proj_W)
            for (int bi = 0; bi < b->B; bi++) /* per item, as every product of the forward pass */
                qd_linear_f32(e + (int64_t)bi * T * E, T, E, m->emb_proj_W, m->emb_proj_b, H, h + (int64_t)bi * T * H);
    }
    free(valid);
    if (e != h) free(e);
    return rc;
}

static int embed_vision(const qd_model *m, const qd_batch *b, float *h, const qd_model_hooks *hk)
{
    const qd_model_config *c = &m->cfg;
    const int H = c->hidden, T = b->T, C = c->channels;
    const int gh = c->image_h / c->patch_h, gw = c->image_w / c->patch_w, np = gh * gw;
    const int pk = C * c->patch_h * c->patch_w;
    const int R = c->n_registers, lead = c->n_prefix - R; /* CLS (+ DIST): tokens with positions */
    float *P = malloc((size_t)np * (size_t)pk * sizeof(float));
    float *Y = malloc((size_t)np * (size_t)H * sizeof(float));
    if (!P || !Y) {
        free(P);
        free(Y);
        return qd_err_set(QD_ENOMEM, "%s: out of memory for patches", m->dir);
    }
    const float *pos = m->vis_pos;
    for (int bi = 0; bi < b->B; bi++) {
        const float *img = b->pixels + (int64_t)bi * C * c->image_h * c->image_w;
        /* Conv2d with stride = kernel = patch as a GEMM: one row per patch, (c, i, j) order as the weight */
        for (int py = 0; py < gh; py++)
            for (int px = 0; px < gw; px++) {
                float *row = P + ((int64_t)py * gw + px) * pk;
                for (int ch = 0; ch < C; ch++)
                    for (int i = 0; i < c->patch_h; i++)
                        memcpy(row + ((int64_t)ch * c->patch_h + i) * c->patch_w,
                               img + ((int64_t)ch * c->image_h + py * c->patch_h + i) * c->image_w + px * c->patch_w,
                               (size_t)c->patch_w * sizeof(float));
            }
        qd_linear_f32(P, np, pk, m->patch_W, m->patch_b, H, Y);
        /* tokens: [CLS, (DIST,) registers..., patches]; positions on all but the registers */
        float *o = h + (int64_t)bi * T * H;
        for (int i = 0; i < H; i++) o[i] = m->cls_tok[i] + (pos ? pos[i] : 0.0f);
        if (m->dist_tok)
            for (int i = 0; i < H; i++) o[H + i] = m->dist_tok[i] + (pos ? pos[H + i] : 0.0f);
        for (int r = 0; r < R; r++) memcpy(o + (int64_t)(lead + r) * H, m->reg_tok + (int64_t)r * H, H * sizeof(float));
        for (int p = 0; p < np; p++) {
            float *op = o + (int64_t)(c->n_prefix + p) * H;
            const float *y = Y + (int64_t)p * H, *pe = pos ? pos + (int64_t)(lead + p) * H : NULL;
            for (int i = 0; i < H; i++) op[i] = y[i] + (pe ? pe[i] : 0.0f);
        }
    }
    if (m->emb_ln_g) qd_layernorm(h, (int64_t)b->B * T, H, m->emb_ln_g, m->emb_ln_b, c->ln_eps, h);
    free(P);
    free(Y);
    int rc = tap(hk, m, -1, QD_TAP_M_INPUT, b->pixels, b->B, (int64_t)C * c->image_h * c->image_w, NULL);
    return rc ? rc : tap(hk, m, -1, QD_TAP_M_EMBED, h, (int64_t)b->B * T, H, NULL);
}

int qd_model_embed_hooks(const qd_model *m, const qd_batch *b, float *h, const qd_model_hooks *hk)
{
    int rc = check_batch(m, b, 1);
    if (rc) return rc;
    return m->cfg.arch == QD_ARCH_BERT ? embed_text(m, b, h, hk) : embed_vision(m, b, h, hk);
}

int qd_model_embed(const qd_model *m, const qd_batch *b, float *h) { return qd_model_embed_hooks(m, b, h, NULL); }

/* ---- heads -------------------------------------------------------------------------------- */

int qd_model_final_norm(const qd_model *m, const qd_batch *b, const float *h, float *out)
{
    const qd_model_config *c = &m->cfg;
    int64_t rows = (int64_t)b->B * b->T;
    if (m->final_norm_seq)
        qd_layernorm(h, rows, c->hidden, m->final_ln_g, m->final_ln_b, c->ln_eps, out);
    else
        memcpy(out, h, (size_t)(rows * c->hidden) * sizeof *out);
    return QD_OK;
}

/* mean over tokens [t0, T) of item bi (all real: vision) into o [H] */
static void mean_tokens(const float *h, int bi, int T, int t0, int H, float *o)
{
    for (int i = 0; i < H; i++) {
        double s = 0;
        for (int t = t0; t < T; t++) s += h[((int64_t)bi * T + t) * H + i];
        o[i] = (float)(s / (T - t0));
    }
}

/* x [B, width] (token heads: [B * T, H]) as source `src` reads it from h. */
static void gather(const qd_model *m, const qd_batch *b, const float *h, qd_head_src src, float *x)
{
    const qd_model_config *c = &m->cfg;
    const int H = c->hidden, T = b->T, B = b->B;
    switch (src) {
    case QD_SRC_NONE: break;
    case QD_SRC_EACH: memcpy(x, h, (size_t)B * T * H * sizeof *x); break;
    case QD_SRC_FIRST:
    case QD_SRC_FIRST_NORM:
    case QD_SRC_POOLER:
        for (int bi = 0; bi < B; bi++) memcpy(x + (int64_t)bi * H, h + (int64_t)bi * T * H, (size_t)H * sizeof *x);
        if (src == QD_SRC_FIRST_NORM) qd_layernorm(x, B, H, m->final_ln_g, m->final_ln_b, c->ln_eps, x);
        if (src == QD_SRC_POOLER) {
            float *t = qd_xmalloc((size_t)B * H * sizeof *t);
            qd_linear_f32(x, B, H, m->pool_W, m->pool_b, H, t);
            for (int64_t i = 0; i < (int64_t)B * H; i++) x[i] = tanhf(t[i]);
            free(t);
        }
        break;
    case QD_SRC_MEAN_PATCH:
    case QD_SRC_MEAN_PATCH_NORM:
        for (int bi = 0; bi < B; bi++) mean_tokens(h, bi, T, c->n_prefix, H, x + (int64_t)bi * H);
        if (src == QD_SRC_MEAN_PATCH_NORM) qd_layernorm(x, B, H, m->pool_ln_g, m->pool_ln_b, c->ln_eps, x);
        break;
    case QD_SRC_CLS_MEAN_NORM: {
        float *n = qd_xmalloc((size_t)T * H * sizeof *n);
        for (int bi = 0; bi < B; bi++) {
            qd_layernorm(h + (int64_t)bi * T * H, T, H, m->final_ln_g, m->final_ln_b, c->ln_eps, n);
            memcpy(x + (int64_t)bi * 2 * H, n, (size_t)H * sizeof *x);
            mean_tokens(n, 0, T, c->n_prefix, H, x + (int64_t)bi * 2 * H + H);
        }
        free(n);
        break;
    }
    }
}

static int head_logits(const qd_model *m, const qd_batch *b, const float *h, float *logits)
{
    const qd_model_config *c = &m->cfg;
    const qd_head *hd = &m->head;
    const int H = c->hidden, L = c->num_labels;
    const int64_t n = hd->src == QD_SRC_EACH ? (int64_t)b->B * b->T : b->B;
    float *x = malloc((size_t)n * hd->in * sizeof *x), *y = malloc((size_t)n * QD_MAX(hd->in, L) * sizeof *y);
    if (!x || !y) {
        free(x);
        free(y);
        return qd_err_set(QD_ENOMEM, "%s: out of memory", m->dir);
    }
    gather(m, b, h, hd->src, x);
    if (hd->pre_W) {
        qd_linear_f32(x, n, hd->in, hd->pre_W, hd->pre_b, hd->in, y);
        qd_activation(hd->pre_act, y, n * hd->in);
        memcpy(x, y, (size_t)n * hd->in * sizeof *x);
    }
    qd_linear_f32(x, n, hd->in, hd->out_W, hd->out_b, L, logits);
    if (hd->dist_W) { /* DeiT: the distillation head on token 1, averaged with the CLS head */
        for (int bi = 0; bi < b->B; bi++)
            memcpy(x + (int64_t)bi * H, h + ((int64_t)bi * b->T + 1) * H, (size_t)H * sizeof *x);
        qd_layernorm(x, b->B, H, m->final_ln_g, m->final_ln_b, c->ln_eps, x);
        qd_linear_f32(x, b->B, H, hd->dist_W, hd->dist_b, L, y);
        for (int64_t i = 0; i < (int64_t)b->B * L; i++) logits[i] = (logits[i] + y[i]) * 0.5f;
    }
    free(x);
    free(y);
    return QD_OK;
}

int qd_model_head(const qd_model *m, const qd_batch *b, const float *h, float *pooled, float *logits)
{
    const qd_model_config *c = &m->cfg;
    if (logits && c->head == QD_HEAD_NONE)
        return qd_err_set(QD_EUNSUPPORTED, "%s: the checkpoint has no classification head", m->dir);
    if (pooled && m->pooled_src == QD_SRC_NONE)
        return qd_err_set(QD_EUNSUPPORTED, "%s: the checkpoint has no pooler", m->dir);
    if (pooled) gather(m, b, h, m->pooled_src, pooled);
    return logits ? head_logits(m, b, h, logits) : QD_OK;
}

void qd_model_mean_pool(const qd_model *m, const qd_batch *b, const float *h, float *out)
{
    const int H = m->cfg.hidden, T = b->T;
    double *s = qd_xmalloc((size_t)H * sizeof *s);
    for (int bi = 0; bi < b->B; bi++) {
        float *o = out + (int64_t)bi * H;
        double n = 0;
        for (int i = 0; i < H; i++) s[i] = 0;
        for (int t = 0; t < T; t++) {
            int64_t r = (int64_t)bi * T + t;
            if (b->mask && !b->mask[r]) continue;
            n += 1;
            for (int i = 0; i < H; i++) s[i] += h[r * H + i];
        }
        for (int i = 0; i < H; i++) o[i] = (float)(s[i] / (n > 0 ? n : 1e-9));
    }
    free(s);
}

int qd_model_embedding(const qd_model *m, const qd_batch *b, const float *h, float *out)
{
    const qd_model_config *c = &m->cfg;
    const int H = c->hidden;
    if (c->arch == QD_ARCH_BERT) {
        if (c->pool == QD_POOL_CLS)
            for (int bi = 0; bi < b->B; bi++)
                memcpy(out + (int64_t)bi * H, h + (int64_t)bi * b->T * H, (size_t)H * sizeof *out);
        else
            qd_model_mean_pool(m, b, h, out);
        return QD_OK;
    }
    if (!m->proj_W) return qd_model_head(m, b, h, out, NULL);
    float *p = malloc((size_t)b->B * H * sizeof *p);
    if (!p) return qd_err_set(QD_ENOMEM, "%s: out of memory", m->dir);
    int rc = qd_model_head(m, b, h, p, NULL);
    if (!rc) qd_linear_f32(p, b->B, H, m->proj_W, NULL, c->embedding_dim, out);
    free(p);
    return rc;
}

int qd_model_forward(const qd_model *m, const qd_batch *b, const qd_model_hooks *hk, float *pooled, float *logits,
                     float *hidden)
{
    const qd_model_config *c = &m->cfg;
    int64_t n = (int64_t)b->B * b->T * c->hidden;
    float *h = malloc((size_t)n * sizeof(float));
    if (!h) return qd_err_set(QD_ENOMEM, "%s: out of memory for a batch of %d x %d tokens", m->dir, b->B, b->T);
    int rc = qd_model_embed(m, b, h);
    if (!rc && hidden) memcpy(hidden, h, (size_t)n * sizeof(float));
    for (int k = 0; !rc && k < c->layers; k++) {
        rc = qd_model_block(m, k, b, h, hk);
        if (!rc && hidden) memcpy(hidden + (int64_t)(k + 1) * n, h, (size_t)n * sizeof(float));
    }
    if (!rc && (pooled || logits)) rc = qd_model_head(m, b, h, pooled, logits);
    free(h);
    return rc;
}

/* ---- accessors for inference engines ------------------------------------------------------ */

void qd_model_get_tensors(const qd_model *m, qd_model_tensors *t)
{
    *t = (qd_model_tensors){.word_emb = m->word_emb,
                            .pos_emb = m->pos_emb,
                            .type_emb = m->type_emb,
                            .emb_ln_g = m->emb_ln_g,
                            .emb_ln_b = m->emb_ln_b,
                            .emb_proj_W = m->emb_proj_W,
                            .emb_proj_b = m->emb_proj_b,
                            .cls_tok = m->cls_tok,
                            .dist_tok = m->dist_tok,
                            .reg_tok = m->reg_tok,
                            .patch_W = m->patch_W,
                            .patch_b = m->patch_b,
                            .vis_pos = m->vis_pos,
                            .vis_pos_has_prefix = m->pos_has_cls,
                            .final_ln_g = m->final_ln_g,
                            .final_ln_b = m->final_ln_b,
                            .pool_W = m->pool_W,
                            .pool_b = m->pool_b,
                            .proj_W = m->proj_W,
                            .pooled_src = m->pooled_src,
                            .head_src = m->head.src,
                            .head_in = m->head.in,
                            .head_pre_W = m->head.pre_W,
                            .head_pre_b = m->head.pre_b,
                            .head_pre_act = m->head.pre_act,
                            .head_out_W = m->head.out_W,
                            .head_out_b = m->head.out_b,
                            .head_dist_W = m->head.dist_W,
                            .head_dist_b = m->head.dist_b};
    if (m->cfg.arch == QD_ARCH_BERT)
        snprintf(t->word_emb_name, sizeof t->word_emb_name, "%sembeddings.word_embeddings.weight", m->prefix);
}

void qd_model_block_norms(const qd_model *m, int k, const float **ln1_g, const float **ln1_b, const float **ln2_g,
                          const float **ln2_b)
{
    QD_ASSERT(k >= 0 && k < m->cfg.layers);
    *ln1_g = m->blk[k].ln1_g;
    *ln1_b = m->blk[k].ln1_b;
    *ln2_g = m->blk[k].ln2_g;
    *ln2_b = m->blk[k].ln2_b;
}

int qd_model_block_set(const qd_model *m, int k)
{
    QD_ASSERT(k >= 0 && k < m->cfg.layers);
    return m->blk[k].set;
}

void qd_model_block_scales(const qd_model *m, int k, const float **ls1, const float **ls2)
{
    QD_ASSERT(k >= 0 && k < m->cfg.layers);
    *ls1 = m->blk[k].ls1;
    *ls2 = m->blk[k].ls2;
}

const float *qd_model_rel_buckets(const qd_model *m)
{
    return m->cfg.relpos == QD_RELPOS_BUCKETS ? m->rel_buckets : NULL;
}

const float *qd_model_block_rel_table(const qd_model *m, int k)
{
    QD_ASSERT(k >= 0 && k < m->cfg.layers);
    return m->cfg.relpos == QD_RELPOS_TABLE ? m->blk[k].rel_table : NULL;
}

const int32_t *qd_model_rel_index(const qd_model *m) { return m->cfg.relpos == QD_RELPOS_TABLE ? m->rel_index : NULL; }
