/* model/load.c — the checkpoint's tensors bound to the model: every family's names, one set of
 * fields. What a family names differently (the encoder's module names, its embeddings, its
 * heads) is in the `names` table; what it computes differently is in qd_model_config. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/qd_file.h"
#include "model/model_internal.h"

/* A small JSON file beside the checkpoint that may be absent (NULL then, or when unreadable). */
static char *read_text(const char *path, size_t *len)
{
    char *buf = NULL;
    return qd_read_file(path, 64u << 20, "a config file", &buf, len) == QD_OK ? buf : NULL;
}

/* ---- the families' tensor names -------------------------------------------------------------- */

typedef struct {
    const char *types;       /* model_types, space-separated */
    const char *prefixes[6]; /* candidates for the encoder's prefix, tried in order ("" last) */
    const char *probe;       /* a tensor every checkpoint of the family has, after the prefix */
    const char *block;       /* printf format of block (set) k's module prefix */
    const char *lin[QD_LIN_PER_BLOCK];
    const char *ln1, *ln2;
    const char *ls1, *ls2; /* layer scales (vectors, no ".weight"), or NULL */
} names;

static const names families[] = {
    {"bert roberta xlm-roberta camembert electra",
     {"bert.", "roberta.", "electra.", ""},
     "embeddings.word_embeddings.weight",
     "encoder.layer.%d.",
     {"attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
      "intermediate.dense", "output.dense"},
     "attention.output.LayerNorm",
     "output.LayerNorm",
     NULL,
     NULL},
    {"distilbert",
     {"distilbert.", ""},
     "embeddings.word_embeddings.weight",
     "transformer.layer.%d.",
     {"attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin", "ffn.lin1", "ffn.lin2"},
     "sa_layer_norm",
     "output_layer_norm",
     NULL,
     NULL},
    {"mpnet",
     {"mpnet.", ""},
     "embeddings.word_embeddings.weight",
     "encoder.layer.%d.",
     {"attention.attn.q", "attention.attn.k", "attention.attn.v", "attention.attn.o", "intermediate.dense",
      "output.dense"},
     "attention.LayerNorm",
     "output.LayerNorm",
     NULL,
     NULL},
    {"albert",
     {"albert.", ""},
     "embeddings.word_embeddings.weight",
     "encoder.albert_layer_groups.%d.albert_layers.%d.",
     {"attention.query", "attention.key", "attention.value", "attention.dense", "ffn", "ffn_output"},
     "attention.LayerNorm",
     "full_layer_layer_norm",
     NULL,
     NULL},
    {"vit deit beit", /* BEiT: ViT's names plus layer scales (absent from ViT checkpoints) */
     {"vit.", "deit.", "beit.", "data2vec_vision.", ""},
     "embeddings.cls_token",
     "encoder.layer.%d.",
     {"attention.attention.query", "attention.attention.key", "attention.attention.value", "attention.output.dense",
      "intermediate.dense", "output.dense"},
     "layernorm_before",
     "layernorm_after",
     "lambda_1",
     "lambda_2"},
    {"dinov2 dinov2_with_registers",
     {"dinov2.", "dinov2_with_registers.", ""},
     "embeddings.cls_token",
     "encoder.layer.%d.",
     {"attention.attention.query", "attention.attention.key", "attention.attention.value", "attention.output.dense",
      "mlp.fc1", "mlp.fc2"},
     "norm1",
     "norm2",
     "layer_scale1.lambda1",
     "layer_scale2.lambda1"},
    {"clip clip_vision_model",
     {"vision_model.", "vision_model.vision_model.", ""},
     "embeddings.class_embedding",
     "encoder.layers.%d.",
     {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "mlp.fc1", "mlp.fc2"},
     "layer_norm1",
     "layer_norm2",
     NULL,
     NULL},
};

static int is_type(const char *types, const char *type)
{
    size_t n = strlen(type);
    for (const char *s = types; *s;) {
        const char *e = strchr(s, ' ');
        size_t l = e ? (size_t)(e - s) : strlen(s);
        if (l == n && !strncmp(s, type, n)) return 1;
        s += l + (e != NULL);
    }
    return 0;
}

static int has(const qd_model *m, const char *a, const char *b)
{
    char name[600];
    snprintf(name, sizeof name, "%s%s", a, b);
    return qd_ckpt_find(m->ck, name) >= 0;
}

/* ---- binding ---------------------------------------------------------------------------------- */

/* Find a tensor and check its shape and dtype: *idx its index, or -1 when optional and absent. */
static int find_checked(qd_model *m, const char *name, int ndim, const int64_t *shape, int optional, int *idx)
{
    int i = *idx = qd_ckpt_find(m->ck, name);
    if (i < 0) {
        if (optional) return QD_OK;
        return qd_err_set(QD_ENOTFOUND, "%s: tensor '%s' is missing from the checkpoint", m->dir, name);
    }
    const qd_tensor_info *t = qd_ckpt_tensor(m->ck, i);
    int ok = t->ndim == ndim;
    for (int d = 0; ok && d < ndim; d++) ok = t->shape[d] == shape[d];
    if (!ok) {
        char want[96], got[96];
        qd_shape_text(shape, ndim, want, sizeof want);
        qd_shape_text(t->shape, t->ndim, got, sizeof got);
        return qd_err_set(QD_ESHAPE, "%s: tensor '%s' has shape [%s], the config implies [%s]", m->dir, name, got,
                          want);
    }
    if (!t->float_like)
        return qd_err_set(QD_EDTYPE, "%s: tensor '%s' has dtype %s, a float type is needed", m->dir, name,
                          qd_dtype_name(t->dtype));
    return QD_OK;
}

/* A tensor as F32, read and checked (non-finite values are an error naming the element). */
static int read_checked(qd_model *m, int i, const float **out, int *owned, int scan)
{
    const qd_tensor_info *t = qd_ckpt_tensor(m->ck, i);
    const float *p;
    int rc = qd_ckpt_read_f32(m->ck, i, &p, owned);
    if (rc) return qd_err_wrap(rc, "%s: ", m->dir);
    /* A NaN or Inf weight makes every output NaN; say where it is. */
    for (uint64_t k = 0; scan && k < t->numel; k++)
        if (!(p[k] - p[k] == 0.0f)) {
            if (*owned) free((void *)p);
            return qd_err_set(QD_ENONFINITE, "%s: tensor '%s' holds a non-finite value at element %llu", m->dir,
                              t->name, (unsigned long long)k);
        }
    *out = p;
    return QD_OK;
}

/* Find a tensor, check its shape, return it as F32 (zero-copy when possible). scan: check every
 * value is finite. */
static int bind_(qd_model *m, const char *name, int ndim, const int64_t *shape, const float **out, int optional,
                 int scan)
{
    int i;
    *out = NULL;
    int rc = find_checked(m, name, ndim, shape, optional, &i);
    if (rc || i < 0) return rc;
    const float *p;
    int owned = 0;
    if ((rc = read_checked(m, i, &p, &owned, scan))) return rc;
    if (owned) {
        if (m->n_owned == m->cap_owned) {
            m->cap_owned = m->cap_owned ? 2 * m->cap_owned : 64;
            m->owned = realloc(m->owned, (size_t)m->cap_owned * sizeof *m->owned);
            QD_ASSERT(m->owned);
        }
        m->owned[m->n_owned++] = (float *)p;
        qd_ckpt_forget(m->ck, i); /* converted: the file's pages are not needed again */
    }
    *out = p;
    return QD_OK;
}

/* Tensor `a b` (two name parts, so callers need no buffer) of the given shape. */
static int bindn(qd_model *m, const char *a, const char *b, int ndim, const int64_t *shape, const float **out,
                 int optional)
{
    char name[1100];
    snprintf(name, sizeof name, "%s%s", a, b);
    return bind_(m, name, ndim, shape, out, optional, 1);
}
static int bind1(qd_model *m, const char *a, const char *b, int64_t n, const float **out, int optional)
{
    return bindn(m, a, b, 1, &n, out, optional);
}
static int bind2(qd_model *m, const char *a, const char *b, int64_t r, int64_t c, const float **out, int optional)
{
    int64_t s[2] = {r, c};
    return bindn(m, a, b, 2, s, out, optional);
}

/* LayerNorm weight/bias of module `a b`, accepting the old gamma/beta names. */
static int bind_ln(qd_model *m, const char *a, const char *b, int n, const float **g, const float **beta)
{
    char mod[512], w[520];
    snprintf(mod, sizeof mod, "%s%s", a, b);
    snprintf(w, sizeof w, "%s.weight", mod);
    int old = qd_ckpt_find(m->ck, w) < 0 && has(m, mod, ".gamma");
    int rc = bind1(m, mod, old ? ".gamma" : ".weight", n, g, 0);
    return rc ? rc : bind1(m, mod, old ? ".beta" : ".bias", n, beta, 0);
}

/* A Linear `mod` [out, in] of set `set`, used first by block `layer`. Its bias is bound when the
 * checkpoint has it. */
static int add_linear(qd_model *m, const char *mod, int layer, int kind, int in, int out, int group)
{
    QD_ASSERT(m->n_lin < m->cap_lin);
    qd_linear *L = &m->lin[m->n_lin];
    memset(L, 0, sizeof *L);
    size_t len = strlen(mod);
    if (len >= sizeof L->name)
        return qd_err_set(QD_EINVAL, "%s: module name '%s' is longer than %zu characters", m->dir, mod,
                          sizeof L->name - 1);
    memcpy(L->name, mod, len + 1);
    L->layer = L->last_layer = layer;
    L->kind = kind;
    L->in = in;
    L->out = out;
    L->input_group = group;
    char name[sizeof L->name + 8];
    snprintf(name, sizeof name, "%s.weight", L->name);
    int64_t shape[2] = {out, in};
    int rc;
    if (m->flags & QD_MODEL_STREAM_LINEARS) { /* checked now, read by qd_model_block_load */
        L->W = NULL;
        rc = find_checked(m, name, 2, shape, 0, &m->lin_tensor[m->n_lin]);
    } else
        rc = bind_(m, name, 2, shape, &L->W, 0, !(m->flags & QD_MODEL_LAZY_LINEARS));
    if (rc) return rc;
    if ((rc = bind1(m, mod, ".bias", out, &L->b, 1))) return rc;
    m->n_lin++;
    return QD_OK;
}

/* The linear sets and the blocks' norms, layer scales and bias tables. */
static int load_blocks(qd_model *m, const names *nm, const char *pfx)
{
    qd_model_config *c = &m->cfg;
    const int H = c->hidden, I = c->intermediate;
    const int albert = !strcmp(c->model_type, "albert");
    if (c->pruned_heads &&
        (albert || c->relpos != QD_RELPOS_NONE || !strcmp(c->model_type, "beit") || !strcmp(c->model_type, "mpnet")))
        return qd_err_set(QD_ECONFIG, "%s: pruned_heads: not supported for %s (shared or per-head position weights)",
                          m->dir, c->model_type);
    char blk[160], mod[220];
    int rc;
    /* block k runs set blk[k].set. ALBERT: application i < num_hidden_layers of group
     * g = floor(i / (num_hidden_layers / num_hidden_groups)), each of its inner_group_num layers in
     * turn (as transformers computes it, in floating point); everything else runs set k. */
    for (int k = 0; k < c->layers; k++) {
        if (albert) {
            int i = k / c->set_inner, j = k % c->set_inner, L = c->layers / c->set_inner;
            int g = (int)(i / ((double)L / c->set_groups));
            m->blk[k].set = g * c->set_inner + j;
        } else
            m->blk[k].set = k;
    }
    for (int s = 0; s < c->linear_sets; s++) {
        int first = -1, last = -1;
        for (int k = 0; k < c->layers; k++)
            if (m->blk[k].set == s) {
                if (first < 0) first = k;
                last = k;
            }
        if (first < 0) first = last = c->layers - 1; /* a set no block runs (never in practice) */
        if (albert)
            snprintf(blk, sizeof blk, "%sencoder.albert_layer_groups.%d.albert_layers.%d.", pfx, s / c->set_inner,
                     s % c->set_inner);
        else {
            char f[64];
            snprintf(f, sizeof f, "%%s%s", nm->block);
            snprintf(blk, sizeof blk, f, pfx, s);
        }
        static const int in_of[QD_LIN_PER_BLOCK] = {0, 0, 0, 1, 0, 2}, out_of[QD_LIN_PER_BLOCK] = {1, 1, 1, 0, 2, 0};
        const int dims[3] = {H, c->layer_heads[s] * c->head_size, I};
        for (int j = 0; j < QD_LIN_PER_BLOCK; j++) {
            snprintf(mod, sizeof mod, "%s%s", blk, nm->lin[j]);
            static const int grp[QD_LIN_PER_BLOCK] = {0, 0, 0, 1, 2, 3};
            if ((rc = add_linear(m, mod, first, j, dims[in_of[j]], dims[out_of[j]], 4 * s + grp[j]))) return rc;
            m->lin[m->n_lin - 1].last_layer = last;
        }
        /* query and value carry a bias when the config says so; BEiT's key never does */
        for (int j = 0; j < 3; j++) {
            const qd_linear *L = &m->lin[m->n_lin - QD_LIN_PER_BLOCK + j];
            if (!c->qkv_bias && L->b)
                return qd_err_set(QD_ECONFIG, "%s: tensor '%s.bias' exists but qkv_bias is false", m->dir, L->name);
            if (c->qkv_bias && !L->b && !(j == 1 && !strcmp(c->model_type, "beit")))
                return qd_err_set(QD_ENOTFOUND, "%s: tensor '%s.bias' is missing from the checkpoint", m->dir, L->name);
        }
        for (int k = 0; k < c->layers; k++) {
            if (m->blk[k].set != s) continue;
            qd_block_w *bw = &m->blk[k];
            if ((rc = bind_ln(m, blk, nm->ln1, H, &bw->ln1_g, &bw->ln1_b)) ||
                (rc = bind_ln(m, blk, nm->ln2, H, &bw->ln2_g, &bw->ln2_b)))
                return rc;
            if (nm->ls1 && has(m, blk, nm->ls1)) {
                if ((rc = bind1(m, blk, nm->ls1, H, &bw->ls1, 0)) || (rc = bind1(m, blk, nm->ls2, H, &bw->ls2, 0)))
                    return rc;
                c->layer_scale = 1;
            }
            if (!strcmp(c->model_type, "beit")) {
                const char *tab = "attention.attention.relative_position_bias.relative_position_bias_table";
                if (has(m, blk, tab)) {
                    if ((rc = bind2(m, blk, tab, m->rel_rows, c->heads, &bw->rel_table, 0))) return rc;
                    c->relpos = QD_RELPOS_TABLE;
                }
            }
        }
    }
    for (int k = 1; k < c->layers; k++)
        if (!m->blk[k].ls1 != !m->blk[0].ls1)
            return qd_err_set(QD_ENOTFOUND, "%s: layer scales of block %d do not match block 0's", m->dir, k);
    return QD_OK;
}

/* ---- embeddings ------------------------------------------------------------------------------- */

static int load_text_embeddings(qd_model *m, const char *pfx)
{
    qd_model_config *c = &m->cfg;
    const int E = c->embed_size;
    int rc;
    char e[64];
    snprintf(e, sizeof e, "%sembeddings.", pfx);
    char wname[96];
    snprintf(wname, sizeof wname, "%sword_embeddings.weight", e);
    const int64_t ws[2] = {c->vocab_size, E};
    if (m->flags & QD_MODEL_STREAM_EMBEDDINGS)
        rc = find_checked(m, wname, 2, ws, 0, &m->word_emb_ti);
    else
        rc = bind_(m, wname, 2, ws, &m->word_emb, 0, !(m->flags & QD_MODEL_LAZY_EMBEDDINGS));
    if (rc || (rc = bind2(m, e, "position_embeddings.weight", c->max_position, E, &m->pos_emb, 0))) return rc;
    if (c->type_vocab > 0 && (rc = bind2(m, e, "token_type_embeddings.weight", c->type_vocab, E, &m->type_emb, 0)))
        return rc;
    if ((rc = bind_ln(m, e, "LayerNorm", E, &m->emb_ln_g, &m->emb_ln_b))) return rc;
    if (c->pos == QD_POS_AFTER_PAD && (c->pad_id < 0 || c->pad_id >= c->max_position))
        return qd_err_set(QD_ECONFIG, "%s: pad_token_id %d: positions count from it, so it must be below %d", m->dir,
                          c->pad_id, c->max_position);
    if (E != c->hidden) { /* the factorised embedding's projection to the hidden width */
        const char *proj =
            !strcmp(c->model_type, "albert") ? "encoder.embedding_hidden_mapping_in" : "embeddings_project";
        char mod[96];
        snprintf(mod, sizeof mod, "%s%s", pfx, proj);
        if ((rc = bind2(m, mod, ".weight", c->hidden, E, &m->emb_proj_W, 0)) ||
            (rc = bind1(m, mod, ".bias", c->hidden, &m->emb_proj_b, 0)))
            return rc;
    } else if (!strcmp(c->model_type, "albert")) {
        char mod[96];
        snprintf(mod, sizeof mod, "%sencoder.embedding_hidden_mapping_in", pfx);
        if ((rc = bind2(m, mod, ".weight", c->hidden, E, &m->emb_proj_W, 0)) ||
            (rc = bind1(m, mod, ".bias", c->hidden, &m->emb_proj_b, 0)))
            return rc;
    }
    if (!strcmp(c->model_type, "mpnet")) {
        char mod[96];
        snprintf(mod, sizeof mod, "%sencoder.relative_attention_bias.weight", pfx);
        int i = qd_ckpt_find(m->ck, mod);
        if (i < 0) return qd_err_set(QD_ENOTFOUND, "%s: tensor '%s' is missing from the checkpoint", m->dir, mod);
        /* transformers always looks up 32 buckets (its default), whatever the config says */
        int64_t rows = qd_ckpt_tensor(m->ck, i)->shape[0];
        if (rows < 32)
            return qd_err_set(QD_ESHAPE, "%s: tensor '%s' has %lld rows; MPNet's attention reads 32 buckets", m->dir,
                              mod, (long long)rows);
        if ((rc = bind2(m, mod, "", rows, c->heads, &m->rel_buckets, 0))) return rc;
        c->relpos = QD_RELPOS_BUCKETS;
    }
    return QD_OK;
}

/* The position embeddings at the input's patch grid: as stored when the grids agree, else
 * resampled (DINOv2; the others take only their own size). */
static int vision_positions(qd_model *m)
{
    qd_model_config *c = &m->cfg;
    free(m->pos_resampled);
    m->pos_resampled = NULL;
    m->vis_pos = m->pos_emb;
    if (!m->pos_emb) return QD_OK;
    const int gh = c->image_h / c->patch_h, gw = c->image_w / c->patch_w, H = c->hidden;
    /* transformers keeps the table when the counts agree and the image is square */
    if (gh * gw == c->pos_grid_h * c->pos_grid_w && c->image_h == c->image_w) return QD_OK;
    const int cls = m->pos_has_cls;
    float *p = malloc(((size_t)cls + (size_t)gh * gw) * (size_t)H * sizeof *p);
    if (!p) return qd_err_set(QD_ENOMEM, "%s: out of memory for the position embeddings", m->dir);
    memcpy(p, m->pos_emb, (size_t)cls * H * sizeof *p);
    qd_resample_bicubic(m->pos_emb + (size_t)cls * H, H, c->pos_grid_h, c->pos_grid_w, gh, gw, m->pos_aa,
                        p + (size_t)cls * H);
    m->pos_resampled = p;
    m->vis_pos = p;
    return QD_OK;
}

int qd_model_set_image_size(qd_model *m, int h, int w)
{
    qd_model_config *c = &m->cfg;
    if (c->arch != QD_ARCH_VIT) return qd_err_set(QD_EINVAL, "%s: a text model takes no image size", m->dir);
    if (h == c->image_h && w == c->image_w) return QD_OK;
    if (h <= 0 || w <= 0 || h % c->patch_h || w % c->patch_w)
        return qd_err_set(QD_ESHAPE, "%s: images of %dx%d are not a whole number of %dx%d patches", m->dir, h, w,
                          c->patch_h, c->patch_w);
    if (strncmp(c->model_type, "dinov2", 6))
        return qd_err_set(QD_EUNSUPPORTED, "%s: %s takes %dx%d images only (position embeddings of a %dx%d grid)",
                          m->dir, c->model_type, c->image_h, c->image_w, c->pos_grid_h, c->pos_grid_w);
    c->image_h = h;
    c->image_w = w;
    return vision_positions(m);
}

/* BEiT's relative position index for the CLS token + a gh x gw grid: [T, T] into a table of
 * (2gh-1)(2gw-1) + 3 rows (the last three: CLS to token, token to CLS, CLS to CLS). */
static void beit_index(qd_model *m)
{
    const int gh = m->cfg.pos_grid_h, gw = m->cfg.pos_grid_w, np = gh * gw, T = np + 1;
    const int nrel = (2 * gh - 1) * (2 * gw - 1) + 3;
    int32_t *ix = qd_xmalloc((size_t)T * T * sizeof *ix);
    for (int i = 0; i < T; i++)
        for (int j = 0; j < T; j++) {
            int32_t v;
            if (i == 0 && j == 0)
                v = nrel - 1;
            else if (i == 0)
                v = nrel - 3;
            else if (j == 0)
                v = nrel - 2;
            else {
                int yi = (i - 1) / gw, xi = (i - 1) % gw, yj = (j - 1) / gw, xj = (j - 1) % gw;
                v = (yi - yj + gh - 1) * (2 * gw - 1) + (xi - xj + gw - 1);
            }
            ix[(size_t)i * T + j] = v;
        }
    m->rel_index = ix;
    m->rel_rows = nrel;
}

/* preprocessor_config.json's crop_size (else size): the input size of models that resample their
 * position embeddings (DINOv2 is trained at 518 but run at 224). 0 when absent. */
static void preprocessor_size(const char *dir, int *h, int *w)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/preprocessor_config.json", dir);
    size_t len = 0;
    char *t = read_text(path, &len);
    *h = *w = 0;
    if (!t) return;
    cJSON *o = cJSON_ParseWithLength(t, len);
    free(t);
    static const char *keys[] = {"crop_size", "size"};
    for (int i = 0; i < 2 && o && !*h; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, keys[i]);
        if (cJSON_IsNumber(v) && v->valuedouble >= 1)
            *h = *w = (int)v->valuedouble;
        else if (cJSON_IsObject(v)) {
            const cJSON *a = cJSON_GetObjectItemCaseSensitive(v, "height"),
                        *b = cJSON_GetObjectItemCaseSensitive(v, "width");
            if (cJSON_IsNumber(a) && cJSON_IsNumber(b) && a->valuedouble >= 1 && b->valuedouble >= 1) {
                *h = (int)a->valuedouble;
                *w = (int)b->valuedouble;
            }
        }
    }
    cJSON_Delete(o);
}

static int load_vision_embeddings(qd_model *m, const char *pfx)
{
    qd_model_config *c = &m->cfg;
    const int H = c->hidden, np = c->pos_grid_h * c->pos_grid_w;
    const int clip = !strncmp(c->model_type, "clip", 4);
    int rc;
    char e[64];
    snprintf(e, sizeof e, "%sembeddings.", pfx);
    int64_t s3[3] = {1, 1, H}, s4[4] = {H, c->channels, c->patch_h, c->patch_w};
    if (clip) {
        if ((rc = bind1(m, e, "class_embedding", H, &m->cls_tok, 0)) ||
            (rc = bindn(m, e, "patch_embedding.weight", 4, s4, &m->patch_W, 0)) ||
            (rc = bind2(m, e, "position_embedding.weight", np + 1, H, &m->pos_emb, 0)) ||
            (rc = bind_ln(m, pfx, "pre_layrnorm", H, &m->emb_ln_g, &m->emb_ln_b)))
            return rc;
        m->pos_has_cls = 1;
        return QD_OK;
    }
    if ((rc = bindn(m, e, "cls_token", 3, s3, &m->cls_tok, 0)) ||
        (rc = bindn(m, e, "patch_embeddings.projection.weight", 4, s4, &m->patch_W, 0)) ||
        (rc = bind1(m, e, "patch_embeddings.projection.bias", H, &m->patch_b, 0)))
        return rc;
    if (has(m, e, "distillation_token")) {
        c->n_prefix = 2;
        if ((rc = bindn(m, e, "distillation_token", 3, s3, &m->dist_tok, 0))) return rc;
    }
    if (c->n_registers > 0) {
        s3[1] = c->n_registers;
        if ((rc = bindn(m, e, "register_tokens", 3, s3, &m->reg_tok, 0))) return rc;
    }
    /* learned positions for CLS (+ distillation) and the patches; BEiT may have none */
    const int npos = (c->n_prefix - c->n_registers) + np;
    s3[1] = npos;
    if ((rc = bindn(m, e, "position_embeddings", 3, s3, &m->pos_emb, !strcmp(c->model_type, "beit")))) return rc;
    m->pos_has_cls = c->n_prefix - c->n_registers;
    m->pos_aa = !strcmp(c->model_type, "dinov2_with_registers");
    if (!strncmp(c->model_type, "dinov2", 6)) {
        int ih, iw;
        preprocessor_size(m->dir, &ih, &iw);
        if (ih > 0 && ih % c->patch_h == 0 && iw % c->patch_w == 0) {
            c->image_h = ih;
            c->image_w = iw;
        }
    }
    if (!strcmp(c->model_type, "beit")) { /* beit_index ran before the blocks were bound */
        const char *tab = "encoder.relative_position_bias.relative_position_bias_table";
        if (has(m, pfx, tab)) {
            const float *shared = NULL;
            if ((rc = bind2(m, pfx, tab, m->rel_rows, c->heads, &shared, 0))) return rc;
            for (int k = 0; k < c->layers; k++) m->blk[k].rel_table = shared;
            c->relpos = QD_RELPOS_TABLE;
        }
    }
    return QD_OK;
}

/* ---- heads ------------------------------------------------------------------------------------ */

/* A head's out (and optional pre) Linear; num_labels from the out weight's rows. */
static int bind_head(qd_model *m, const char *pre, qd_act act, const char *out, qd_head_src src, int in)
{
    qd_model_config *c = &m->cfg;
    int rc;
    char w[160];
    snprintf(w, sizeof w, "%s.weight", out);
    int i = qd_ckpt_find(m->ck, w);
    if (i < 0)
        return qd_err_set(QD_ENOTFOUND, "%s: tensor '%s' (the %s head's output) is missing from the checkpoint", m->dir,
                          w, c->architecture[0] ? c->architecture : c->model_type);
    const qd_tensor_info *t = qd_ckpt_tensor(m->ck, i);
    c->num_labels = t->ndim == 2 ? (int)t->shape[0] : 0;
    if (c->num_labels <= 0) return qd_err_set(QD_ESHAPE, "%s: tensor '%s' is not a [labels, %d] matrix", m->dir, w, in);
    qd_head *hd = &m->head;
    hd->src = src;
    hd->in = in;
    hd->pre_act = act;
    if (pre &&
        ((rc = bind2(m, pre, ".weight", in, in, &hd->pre_W, 0)) || (rc = bind1(m, pre, ".bias", in, &hd->pre_b, 0))))
        return rc;
    if ((rc = bind2(m, out, ".weight", c->num_labels, in, &hd->out_W, 0)) ||
        (rc = bind1(m, out, ".bias", c->num_labels, &hd->out_b, 0)))
        return rc;
    return QD_OK;
}

static int load_text_heads(qd_model *m, const char *pfx)
{
    qd_model_config *c = &m->cfg;
    const int H = c->hidden;
    const char *t = c->model_type;
    int rc;
    /* the pooler: BERT, MPNet "pooler.dense", ALBERT "pooler" */
    const char *pool = !strcmp(t, "albert") ? "pooler" : "pooler.dense";
    char mod[96];
    snprintf(mod, sizeof mod, "%s%s", pfx, pool);
    if ((rc = bind2(m, mod, ".weight", H, H, &m->pool_W, 1))) return rc;
    if (m->pool_W) {
        if ((rc = bind1(m, mod, ".bias", H, &m->pool_b, 0))) return rc;
        c->has_pooler = 1;
        m->pooled_src = QD_SRC_POOLER;
    }
    /* without `architectures`, a classifier in the checkpoint makes a sequence head (as before) */
    if (!c->architecture[0] && qd_ckpt_find(m->ck, "classifier.weight") >= 0) c->head = QD_HEAD_SEQUENCE;
    const int roberta_like =
        !strcmp(t, "roberta") || !strcmp(t, "xlm-roberta") || !strcmp(t, "camembert") || !strcmp(t, "mpnet");
    if (c->head == QD_HEAD_SEQUENCE) {
        if (roberta_like) return bind_head(m, "classifier.dense", QD_ACT_TANH, "classifier.out_proj", QD_SRC_FIRST, H);
        if (!strcmp(t, "electra"))
            return bind_head(m, "classifier.dense", QD_ACT_GELU, "classifier.out_proj", QD_SRC_FIRST, H);
        if (!strcmp(t, "distilbert")) return bind_head(m, "pre_classifier", QD_ACT_RELU, "classifier", QD_SRC_FIRST, H);
        if (!c->has_pooler)
            return qd_err_set(QD_ENOTFOUND, "%s: a sequence classifier reads the pooler, and '%s%s.weight' is missing",
                              m->dir, pfx, pool);
        return bind_head(m, NULL, QD_ACT_GELU, "classifier", QD_SRC_POOLER, H);
    }
    if (c->head == QD_HEAD_TOKEN) {
        if (!strcmp(c->architecture, "ElectraForPreTraining"))
            return bind_head(m, "discriminator_predictions.dense", c->act, "discriminator_predictions.dense_prediction",
                             QD_SRC_EACH, H);
        return bind_head(m, NULL, QD_ACT_GELU, "classifier", QD_SRC_EACH, H);
    }
    if (c->head == QD_HEAD_IMAGE)
        return qd_err_set(QD_EUNSUPPORTED, "%s: architectures '%s' is an image head on a text model", m->dir,
                          c->architecture);
    return QD_OK;
}

static int load_vision_heads(qd_model *m, const char *pfx)
{
    qd_model_config *c = &m->cfg;
    const int H = c->hidden;
    const char *t = c->model_type;
    int rc;
    /* final LayerNorm: ViT/DeiT/DINOv2 "layernorm" on the sequence, CLIP "post_layernorm" on CLS
     * only, BEiT "layernorm" unless it mean-pools (then "pooler.layernorm" on the patch mean) */
    if (!strncmp(t, "clip", 4)) {
        if ((rc = bind_ln(m, pfx, "post_layernorm", H, &m->final_ln_g, &m->final_ln_b))) return rc;
        m->pooled_src = QD_SRC_FIRST_NORM;
        if (qd_ckpt_find(m->ck, "visual_projection.weight") >= 0) {
            int i = qd_ckpt_find(m->ck, "visual_projection.weight");
            int64_t P = qd_ckpt_tensor(m->ck, i)->shape[0];
            if ((rc = bind2(m, "visual_projection", ".weight", P, H, &m->proj_W, 0))) return rc;
            c->embedding_dim = (int)P;
        }
    } else if (!strcmp(t, "beit") && c->pool == QD_POOL_MEAN) {
        char mod[96];
        snprintf(mod, sizeof mod, "%spooler.layernorm", pfx);
        if ((rc = bind_ln(m, mod, "", H, &m->pool_ln_g, &m->pool_ln_b))) return rc;
        m->pooled_src = QD_SRC_MEAN_PATCH_NORM;
    } else {
        if ((rc = bind_ln(m, pfx, "layernorm", H, &m->final_ln_g, &m->final_ln_b))) return rc;
        m->final_norm_seq = 1;
        m->pooled_src = QD_SRC_FIRST_NORM;
    }
    if (!c->architecture[0] &&
        (qd_ckpt_find(m->ck, "classifier.weight") >= 0 || qd_ckpt_find(m->ck, "cls_classifier.weight") >= 0))
        c->head = QD_HEAD_IMAGE;
    if (c->head == QD_HEAD_NONE) return QD_OK;
    if (c->head != QD_HEAD_IMAGE)
        return qd_err_set(QD_EUNSUPPORTED, "%s: architectures '%s' is a text head on a vision model", m->dir,
                          c->architecture);
    if (!strncmp(t, "clip", 4)) return bind_head(m, NULL, QD_ACT_GELU, "classifier", QD_SRC_MEAN_PATCH, H);
    if (!strncmp(t, "dinov2", 6)) return bind_head(m, NULL, QD_ACT_GELU, "classifier", QD_SRC_CLS_MEAN_NORM, 2 * H);
    if (!strcmp(t, "beit")) return bind_head(m, NULL, QD_ACT_GELU, "classifier", m->pooled_src, H);
    /* ViT: classifier on CLS; DeiT with teacher: the mean of cls_classifier and
     * distillation_classifier (on the distillation token) */
    if (qd_ckpt_find(m->ck, "cls_classifier.weight") >= 0) {
        if (c->n_prefix != 2)
            return qd_err_set(QD_ENOTFOUND, "%s: 'cls_classifier.weight' without a distillation token", m->dir);
        if ((rc = bind_head(m, NULL, QD_ACT_GELU, "cls_classifier", QD_SRC_FIRST_NORM, H))) return rc;
        return (rc = bind2(m, "distillation_classifier", ".weight", c->num_labels, H, &m->head.dist_W, 0))
                   ? rc
                   : bind1(m, "distillation_classifier", ".bias", c->num_labels, &m->head.dist_b, 0);
    }
    return bind_head(m, NULL, QD_ACT_GELU, "classifier", QD_SRC_FIRST_NORM, H);
}

/* 1_Pooling/config.json (sentence-transformers): CLS or mean pooling of text embeddings. */
static void text_pooling(qd_model *m)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/1_Pooling/config.json", m->dir);
    size_t len = 0;
    char *t = read_text(path, &len);
    m->cfg.pool = QD_POOL_MEAN;
    if (!t) return;
    cJSON *o = cJSON_ParseWithLength(t, len);
    free(t);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "pooling_mode_cls_token")) &&
        !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "pooling_mode_mean_tokens")))
        m->cfg.pool = QD_POOL_CLS;
    cJSON_Delete(o);
}

/* ---- the model -------------------------------------------------------------------------------- */

static int load_family(qd_model *m)
{
    qd_model_config *c = &m->cfg;
    const names *nm = NULL;
    for (size_t i = 0; i < QD_ARRAY_LEN(families) && !nm; i++)
        if (is_type(families[i].types, c->model_type)) nm = &families[i];
    QD_ASSERT(nm); /* config.c accepts only the types above */
    const char *pfx = NULL;
    for (int i = 0; i < 6 && nm->prefixes[i] && !pfx; i++)
        if (has(m, nm->prefixes[i], nm->probe)) pfx = nm->prefixes[i];
    if (!pfx)
        return qd_err_set(QD_ENOTFOUND,
                          "%s: tensor '%s%s' (or without the '%s' prefix) is missing: not a %s checkpoint", m->dir,
                          nm->prefixes[0], nm->probe, nm->prefixes[0], c->model_type);
    snprintf(m->prefix, sizeof m->prefix, "%s", pfx);
    int rc;
    if (c->arch == QD_ARCH_BERT) {
        if ((rc = load_text_embeddings(m, pfx)) || (rc = load_blocks(m, nm, pfx)) || (rc = load_text_heads(m, pfx)))
            return rc;
        text_pooling(m);
        c->embedding_dim = c->hidden;
        return QD_OK;
    }
    if (!strcmp(c->model_type, "beit")) beit_index(m); /* the table size its blocks are checked against */
    if ((rc = load_vision_embeddings(m, pfx)) || (rc = load_blocks(m, nm, pfx)) || (rc = load_vision_heads(m, pfx)) ||
        (rc = vision_positions(m)))
        return rc;
    if (!c->embedding_dim) c->embedding_dim = c->hidden;
    return QD_OK;
}

int qd_model_load(const char *path, qd_model **out) { return qd_model_load_flags(path, 0, out); }

int qd_model_load_flags(const char *path, unsigned flags, qd_model **out)
{
    *out = NULL;
    qd_model *m = qd_xcalloc(1, sizeof *m);
    m->flags = flags;
    struct stat st;
    if (stat(path, &st) != 0) {
        free(m);
        return qd_err_set(QD_ENOENT, "%s: %s", path, strerror(errno));
    }
    int rc = qd_ckpt_open(path, &m->ck);
    if (rc) {
        free(m);
        return rc;
    }
    snprintf(m->dir, sizeof m->dir, "%s", qd_ckpt_dir(m->ck));
    char cpath[sizeof m->dir + 16];
    snprintf(cpath, sizeof cpath, "%s/config.json", m->dir);
    size_t len = 0;
    char *text = NULL;
    if ((rc = qd_read_file(cpath, 64u << 20, "a model config", &text, &len))) {
        qd_err_wrap(rc, "cannot read the model config");
        goto fail;
    }
    rc = qd_model_parse_config(cpath, text, len, &m->cfg);
    free(text);
    if (rc) goto fail;
    m->blk = qd_xcalloc((size_t)m->cfg.layers, sizeof *m->blk);
    m->cap_lin = m->cfg.linear_sets * QD_LIN_PER_BLOCK;
    m->lin = qd_xcalloc((size_t)m->cap_lin, sizeof *m->lin);
    m->lin_tensor = qd_xcalloc((size_t)m->cap_lin, sizeof *m->lin_tensor);
    m->lin_buf = qd_xcalloc((size_t)m->cap_lin, sizeof *m->lin_buf);
    if ((rc = load_family(m))) goto fail;
    *out = m;
    return QD_OK;
fail:
    qd_model_free(m);
    return rc;
}

void qd_model_free(qd_model *m)
{
    if (!m) return;
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    for (int i = 0; m->lin_buf && i < m->n_lin; i++) free(m->lin_buf[i]);
    free(m->lin_buf);
    free(m->lin_tensor);
    free(m->lin);
    free(m->blk);
    free(m->scratch);
    free(m->pos_resampled);
    free(m->rel_index);
    qd_ckpt_close(m->ck);
    free(m);
}

/* ---- streamed Linear weights ------------------------------------------------------------------ */

int qd_model_block_load(qd_model *m, int layer)
{
    QD_ASSERT(layer >= 0 && layer < m->cfg.layers);
    if (!(m->flags & QD_MODEL_STREAM_LINEARS)) return QD_OK;
    const int s = m->blk[layer].set;
    for (int j = 0; j < QD_LIN_PER_BLOCK; j++) {
        const int li = s * QD_LIN_PER_BLOCK + j;
        qd_linear *L = &m->lin[li];
        if (L->W) continue; /* a set some earlier block runs too */
        int owned = 0;
        int rc = read_checked(m, m->lin_tensor[li], &L->W, &owned, 1);
        if (rc) return rc;
        m->lin_buf[li] = owned ? (float *)L->W : NULL;
        if (owned) qd_ckpt_forget(m->ck, m->lin_tensor[li]);
    }
    return QD_OK;
}

void qd_model_block_release(qd_model *m, int layer)
{
    QD_ASSERT(layer >= 0 && layer < m->cfg.layers);
    if (!(m->flags & QD_MODEL_STREAM_LINEARS)) return;
    const int s = m->blk[layer].set;
    for (int k = layer + 1; k < m->cfg.layers; k++)
        if (m->blk[k].set == s) return; /* a later block runs these weights again */
    for (int j = 0; j < QD_LIN_PER_BLOCK; j++) {
        const int li = s * QD_LIN_PER_BLOCK + j;
        free(m->lin_buf[li]);
        m->lin_buf[li] = NULL;
        m->lin[li].W = NULL;
        qd_ckpt_forget(m->ck, m->lin_tensor[li]);
    }
}

const qd_model_config *qd_model_cfg(const qd_model *m) { return &m->cfg; }
int qd_model_num_linears(const qd_model *m) { return m->n_lin; }
const qd_linear *qd_model_linear(const qd_model *m, int li)
{
    QD_ASSERT(li >= 0 && li < m->n_lin);
    return &m->lin[li];
}
const char *qd_model_dir(const qd_model *m) { return m->dir; }

void qd_model_int_tensors_get(const qd_model *m, qd_model_int_tensors *t)
{
    *t = (qd_model_int_tensors){.word_emb = m->word_emb,
                                .pos_emb = m->pos_emb,
                                .type_emb = m->type_emb,
                                .emb_ln_g = m->emb_ln_g,
                                .emb_ln_b = m->emb_ln_b,
                                .cls_tok = m->cls_tok,
                                .dist_tok = m->dist_tok,
                                .patch_W = m->patch_W,
                                .patch_b = m->patch_b,
                                .final_ln_g = m->final_ln_g,
                                .final_ln_b = m->final_ln_b,
                                .pool_W = m->pool_W,
                                .pool_b = m->pool_b,
                                .cls_W = m->head.out_W,
                                .cls_b = m->head.out_b,
                                .dist_W = m->head.dist_W,
                                .dist_b = m->head.dist_b,
                                .head_cls_norm = m->head.src == QD_SRC_FIRST_NORM && !m->head.pre_W,
                                .pos_has_cls = m->pos_has_cls};
}

int qd_model_find_linear(const qd_model *m, const char *name)
{
    size_t n = strlen(name);
    for (int i = 0; i < m->n_lin; i++) {
        const char *ln = m->lin[i].name;
        size_t l = strlen(ln);
        if (!strcmp(ln, name)) return i;
        if (n == l + 7 && !strncmp(name, ln, l) && !strcmp(name + l, ".weight")) return i;
    }
    return -1;
}

int qd_model_num_groups(const qd_model *m) { return m->cfg.linear_sets * 4; }
int qd_model_group_first(const qd_model *m, int group)
{
    QD_ASSERT(group >= 0 && group < qd_model_num_groups(m));
    int k = group / 4, j = group % 4;
    return k * QD_LIN_PER_BLOCK + (j == 0 ? QD_LIN_Q : j == 1 ? QD_LIN_O : j == 2 ? QD_LIN_INTER : QD_LIN_OUT);
}

int qd_model_tokens(const qd_model *m, int text_len)
{
    const qd_model_config *c = &m->cfg;
    if (c->arch == QD_ARCH_VIT) return c->n_prefix + (c->image_h / c->patch_h) * (c->image_w / c->patch_w);
    return text_len;
}

int64_t qd_model_logits_per_item(const qd_model *m, int T)
{
    const qd_model_config *c = &m->cfg;
    if (c->head == QD_HEAD_NONE) return 0;
    return c->head == QD_HEAD_TOKEN ? (int64_t)T * c->num_labels : c->num_labels;
}

void qd_model_release_linears(const qd_model *m)
{
    const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    for (int li = 0; li < m->n_lin; li++) {
        const qd_linear *L = &m->lin[li];
        int owned = 0;
        for (int i = 0; i < m->n_owned && !owned; i++) owned = m->owned[i] == L->W;
        if (owned || !L->W) continue; /* a converted copy of ours, not the mapping */
        /* whole pages inside the tensor only: its neighbours may share the first and last page */
        const uintptr_t a = ((uintptr_t)L->W + pg - 1) / pg * pg,
                        b = ((uintptr_t)(L->W + (size_t)L->in * (size_t)L->out)) / pg * pg;
        if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
    }
}
