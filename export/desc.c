/* export/desc.c — the model description of a qdist file (see desc.h). Names follow the
 * checkpoint conventions model/load.c binds (Hugging Face BERT and ViT). */
#include "export/desc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const qd_xs *s;
    qd_xdesc *d;
    const char *path;
} ctx;

static int has(const ctx *c, const char *name) { return qd_xs_find(c->s, name) >= 0; }

/* tensor `name` must exist with the given shape (its kind may be anything but raw) */
static int need(const ctx *c, const char *name, int ndim, const int64_t *shape)
{
    int i = qd_xs_find(c->s, name);
    if (i < 0) return qd_err_set(QD_ENOTFOUND, "%s: tensor '%s' is missing from the model file", c->path, name);
    const qd_xs_tensor *t = qd_xs_tensor_at(c->s, i);
    int ok = t->ndim == ndim && t->kind != QD_XS_RAW;
    for (int k = 0; ok && k < ndim; k++) ok = t->shape[k] == shape[k];
    if (!ok) {
        char want[96], got[96];
        qd_shape_text(shape, ndim, want, sizeof want);
        qd_shape_text(t->shape, t->ndim, got, sizeof got);
        return qd_err_set(QD_ESHAPE, "%s: tensor '%s' has shape [%s]%s, the model configuration implies [%s]", c->path,
                          name, got, t->kind == QD_XS_RAW ? " and is not a float tensor" : "", want);
    }
    return QD_OK;
}

static int need1(const ctx *c, const char *name, int64_t n) { return need(c, name, 1, &n); }

/* a LayerNorm's weight/bias names (or the old gamma/beta ones) */
static int norm(const ctx *c, const char *mod, int64_t n, char *w, char *b)
{
    snprintf(w, QD_XD_NAME, "%s.weight", mod);
    snprintf(b, QD_XD_NAME, "%s.bias", mod);
    char g[QD_XD_NAME];
    snprintf(g, sizeof g, "%s.gamma", mod);
    if (!has(c, w) && has(c, g)) {
        snprintf(w, QD_XD_NAME, "%s.gamma", mod);
        snprintf(b, QD_XD_NAME, "%s.beta", mod);
    }
    int rc = need1(c, w, n);
    return rc ? rc : need1(c, b, n);
}

static int linear(const ctx *c, const char *mod, int in, int out, int bias, qd_xd_linear *l)
{
    snprintf(l->w, sizeof l->w, "%s.weight", mod);
    snprintf(l->b, sizeof l->b, "%s.bias", mod);
    l->in = in;
    l->out = out;
    int64_t shape[2] = {out, in};
    int rc = need(c, l->w, 2, shape);
    if (rc) return rc;
    if (!bias && !has(c, l->b)) {
        l->b[0] = 0;
        return QD_OK;
    }
    return need1(c, l->b, out);
}

/* The module names of one family's encoder blocks, under "<pfx><layer>.<k>.": query, key, value,
 * attention output, intermediate, output, the LayerNorm after attention (ViT: before it) and the
 * one after the MLP (ViT: before it). */
typedef struct {
    const char *layer, *lin[QD_LIN_PER_BLOCK], *ln1, *ln2;
    int albert; /* "<pfx>encoder.albert_layer_groups.<g>.albert_layers.<j>.", shared by blocks */
} block_names;

static const block_names bert_names = {"encoder.layer",
                                       {"attention.self.query", "attention.self.key", "attention.self.value",
                                        "attention.output.dense", "intermediate.dense", "output.dense"},
                                       "attention.output.LayerNorm",
                                       "output.LayerNorm",
                                       0};
static const block_names vit_names = {"encoder.layer",
                                      {"attention.attention.query", "attention.attention.key",
                                       "attention.attention.value", "attention.output.dense", "intermediate.dense",
                                       "output.dense"},
                                      "layernorm_before",
                                      "layernorm_after",
                                      0};
static const block_names dinov2_names = {"encoder.layer",
                                         {"attention.attention.query", "attention.attention.key",
                                          "attention.attention.value", "attention.output.dense", "mlp.fc1", "mlp.fc2"},
                                         "norm1",
                                         "norm2",
                                         0};
static const block_names clip_names = {
    "encoder.layers",
    {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "mlp.fc1", "mlp.fc2"},
    "layer_norm1",
    "layer_norm2",
    0};
static const block_names distilbert_names = {
    "transformer.layer",
    {"attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin", "ffn.lin1", "ffn.lin2"},
    "sa_layer_norm",
    "output_layer_norm",
    0};

static const block_names mpnet_names = {"encoder.layer",
                                        {"attention.attn.q", "attention.attn.k", "attention.attn.v", "attention.attn.o",
                                         "intermediate.dense", "output.dense"},
                                        "attention.LayerNorm",
                                        "output.LayerNorm",
                                        0};

static const block_names albert_names = {
    "",
    {"attention.query", "attention.key", "attention.value", "attention.dense", "ffn", "ffn_output"},
    "attention.LayerNorm",
    "full_layer_layer_norm",
    1};

/* The module prefix of block k. ALBERT: application i = k / inner of group
 * g = floor(i / (L / groups)), L = layers / inner, its layer j = k % inner (model/load.c's sets). */
static void block_prefix(const ctx *c, const char *pfx, const block_names *bn, int k, char *out, size_t cap)
{
    const qd_model_config *m = &c->d->cfg;
    if (!bn->albert) {
        snprintf(out, cap, "%s%s.%d.", pfx, bn->layer, k);
        return;
    }
    const int inner = m->set_inner > 0 ? m->set_inner : 1, groups = m->set_groups > 0 ? m->set_groups : 1;
    const int i = k / inner, j = k % inner, L = m->layers / inner;
    const int g = (int)(i / ((double)L / groups));
    snprintf(out, cap, "%sencoder.albert_layer_groups.%d.albert_layers.%d.", pfx, g, j);
}

/* BEiT's layer scales (lambda_1, lambda_2: both or neither) and relative position table of the
 * block with module prefix bp: its own, else the shared one (model/load.c) */
static int beit_block(const ctx *c, const char *bp, qd_xd_block *b)
{
    const qd_xdesc *d = c->d;
    const int64_t H = d->cfg.hidden;
    int rc;
    const char *tab = "attention.attention.relative_position_bias.relative_position_bias_table";
    if (snprintf(b->ls1, QD_XD_NAME, "%slambda_1", bp) >= QD_XD_NAME ||
        snprintf(b->ls2, QD_XD_NAME, "%slambda_2", bp) >= QD_XD_NAME ||
        snprintf(b->rel_table, QD_XD_NAME, "%s%s", bp, tab) >= QD_XD_NAME)
        return qd_err_set(QD_EFORMAT, "%s: tensor names under '%s' are too long", c->path, bp);
    if (!has(c, b->ls1) && !has(c, b->ls2))
        b->ls1[0] = b->ls2[0] = 0;
    else if ((rc = need1(c, b->ls1, H)) || (rc = need1(c, b->ls2, H)))
        return rc;
    if (!has(c, b->rel_table)) snprintf(b->rel_table, QD_XD_NAME, "%s", d->rel_bias);
    if (!b->rel_table[0]) return QD_OK;
    const int64_t rs[2] = {d->rel_rows, d->cfg.heads};
    return need(c, b->rel_table, 2, rs);
}

static int blocks(const ctx *c, const char *pfx, const block_names *bn)
{
    const qd_model_config *m = &c->d->cfg;
    const int beit = !strcmp(m->model_type, "beit");
    const int H = m->hidden, I = m->intermediate, A = m->heads * m->head_size;
    const int in[QD_LIN_PER_BLOCK] = {H, H, H, A, H, I}, out[QD_LIN_PER_BLOCK] = {A, A, A, H, I, H};
    char mod[QD_XD_NAME], bp[QD_XD_NAME];
    int rc;
    for (int k = 0; k < m->layers; k++) {
        qd_xd_block *b = &c->d->blk[k];
        block_prefix(c, pfx, bn, k, bp, sizeof bp);
        for (int j = 0; j < QD_LIN_PER_BLOCK; j++) {
            snprintf(mod, sizeof mod, "%s%s", bp, bn->lin[j]);
            const int bias = j >= QD_LIN_Q && j <= QD_LIN_V ? m->qkv_bias && !(beit && j == QD_LIN_K) : 1;
            if ((rc = linear(c, mod, in[j], out[j], bias, &b->lin[j]))) return rc;
        }
        snprintf(mod, sizeof mod, "%s%s", bp, bn->ln1);
        if ((rc = norm(c, mod, H, b->ln1_w, b->ln1_b))) return rc;
        snprintf(mod, sizeof mod, "%s%s", bp, bn->ln2);
        if ((rc = norm(c, mod, H, b->ln2_w, b->ln2_b))) return rc;
        if (beit && (rc = beit_block(c, bp, b))) return rc;
        if (!strncmp(m->model_type, "dinov2", 6)) {
            if (snprintf(b->ls1, QD_XD_NAME, "%slayer_scale1.lambda1", bp) >= QD_XD_NAME ||
                snprintf(b->ls2, QD_XD_NAME, "%slayer_scale2.lambda1", bp) >= QD_XD_NAME)
                return qd_err_set(QD_EFORMAT, "%s: tensor names under '%s' are too long", c->path, bp);
            if ((rc = need1(c, b->ls1, H)) || (rc = need1(c, b->ls2, H))) return rc;
        }
    }
    return QD_OK;
}

/* the classifier's label count from its weight, when there is one */
static int classifier(const ctx *c, const char *name, int in)
{
    char w[QD_XD_NAME];
    snprintf(w, sizeof w, "%s.weight", name);
    int i = qd_xs_find(c->s, w);
    if (i < 0) return QD_OK;
    const qd_xs_tensor *t = qd_xs_tensor_at(c->s, i);
    if (t->ndim != 2) return qd_err_set(QD_ESHAPE, "%s: tensor '%s' is not a matrix [labels, %d]", c->path, w, in);
    c->d->cfg.num_labels = (int)t->shape[0];
    c->d->has_classifier = 1;
    return linear(c, name, in, (int)t->shape[0], 1, &c->d->classifier);
}

/* label count of Linear `name` [labels, in] */
static int head_linear(const ctx *c, const char *name, int in, qd_xd_linear *L)
{
    char w[QD_XD_NAME];
    snprintf(w, sizeof w, "%s.weight", name);
    int i = qd_xs_find(c->s, w);
    if (i < 0) return qd_err_set(QD_ENOTFOUND, "%s: tensor '%s' is missing", c->path, w);
    const qd_xs_tensor *t = qd_xs_tensor_at(c->s, i);
    if (t->ndim != 2) return qd_err_set(QD_ESHAPE, "%s: tensor '%s' is not a matrix [labels, %d]", c->path, w, in);
    return linear(c, name, in, (int)t->shape[0], 1, L);
}

/* the heads of text models without a pooler, by their modules' names (transformers'):
 * RobertaClassificationHead (classifier.dense, tanh, classifier.out_proj on <s>), DistilBERT's
 * pre_classifier (ReLU) and classifier on [CLS], token classification (classifier on every token),
 * ELECTRA's discriminator (dense, the model's activation, dense_prediction on every token) */
static int text_head(const ctx *c, int H)
{
    qd_xdesc *d = c->d;
    int rc;
    if (has(c, "classifier.dense.weight") && has(c, "classifier.out_proj.weight")) {
        d->head = QD_XD_HEAD_FIRST;
        d->has_head_pre = 1;
        d->head_act = QD_XD_ACT_TANH;
        if ((rc = linear(c, "classifier.dense", H, H, 1, &d->head_pre))) return rc;
        rc = head_linear(c, "classifier.out_proj", H, &d->head_out);
    } else if (has(c, "pre_classifier.weight") && has(c, "classifier.weight")) {
        d->head = QD_XD_HEAD_FIRST;
        d->has_head_pre = 1;
        d->head_act = QD_XD_ACT_RELU;
        if ((rc = linear(c, "pre_classifier", H, H, 1, &d->head_pre))) return rc;
        rc = head_linear(c, "classifier", H, &d->head_out);
    } else if (has(c, "discriminator_predictions.dense.weight")) {
        d->head = QD_XD_HEAD_EACH_SQUEEZE;
        d->has_head_pre = 1;
        d->head_act = QD_XD_ACT_MODEL;
        if ((rc = linear(c, "discriminator_predictions.dense", H, H, 1, &d->head_pre))) return rc;
        rc = linear(c, "discriminator_predictions.dense_prediction", H, 1, 1, &d->head_out);
    } else if (has(c, "classifier.weight")) {
        d->head = QD_XD_HEAD_EACH;
        rc = head_linear(c, "classifier", H, &d->head_out);
    } else
        return QD_OK;
    if (!rc) d->cfg.num_labels = d->head_out.out;
    return rc;
}

static int bert(const ctx *c)
{
    qd_xdesc *d = c->d;
    qd_model_config *m = &d->cfg;
    static const char *const bases[] = {"bert.", "roberta.", "distilbert.", "electra.", "albert.", "mpnet."};
    const char *pfx = "";
    char probe[QD_XD_NAME];
    for (size_t k = 0; k < QD_ARRAY_LEN(bases); k++) {
        snprintf(probe, sizeof probe, "%sembeddings.word_embeddings.weight", bases[k]);
        if (has(c, probe)) pfx = bases[k];
    }
    const int distil = !strcmp(m->model_type, "distilbert"), albert = !strcmp(m->model_type, "albert");
    const int mpnet = !strcmp(m->model_type, "mpnet");
    const int64_t H = m->hidden, E = m->embed_size > 0 ? m->embed_size : H;
    int rc;
    snprintf(d->word_emb, sizeof d->word_emb, "%sembeddings.word_embeddings.weight", pfx);
    snprintf(d->pos_emb, sizeof d->pos_emb, "%sembeddings.position_embeddings.weight", pfx);
    int64_t s[2] = {m->vocab_size, E};
    if ((rc = need(c, d->word_emb, 2, s))) return rc;
    s[0] = m->max_position;
    if ((rc = need(c, d->pos_emb, 2, s))) return rc;
    if (m->type_vocab > 0) {
        snprintf(d->type_emb, sizeof d->type_emb, "%sembeddings.token_type_embeddings.weight", pfx);
        s[0] = m->type_vocab;
        if ((rc = need(c, d->type_emb, 2, s))) return rc;
    }
    char mod[QD_XD_NAME];
    snprintf(mod, sizeof mod, "%sembeddings.LayerNorm", pfx);
    if ((rc = norm(c, mod, E, d->emb_ln_w, d->emb_ln_b))) return rc;
    if (E != H) { /* ELECTRA's and ALBERT's small embeddings, projected to the hidden width */
        snprintf(mod, sizeof mod, albert ? "%sencoder.embedding_hidden_mapping_in" : "%sembeddings_project", pfx);
        if ((rc = linear(c, mod, (int)E, (int)H, 1, &d->emb_proj))) return rc;
        d->has_emb_proj = 1;
    }
    const block_names *bn = distil ? &distilbert_names : albert ? &albert_names : mpnet ? &mpnet_names : &bert_names;
    if ((rc = blocks(c, pfx, bn))) return rc;
    if (mpnet) { /* the relative position buckets (model/load.c): 32 rows read, whatever the config says */
        snprintf(d->rel_bias, sizeof d->rel_bias, "%sencoder.relative_attention_bias.weight", pfx);
        int i = qd_xs_find(c->s, d->rel_bias);
        int64_t rs[2] = {i >= 0 && qd_xs_tensor_at(c->s, i)->ndim == 2 ? qd_xs_tensor_at(c->s, i)->shape[0] : 32,
                         m->heads};
        if (rs[0] < 32) rs[0] = 32;
        if ((rc = need(c, d->rel_bias, 2, rs))) return rc;
    }
    snprintf(mod, sizeof mod, albert ? "%spooler.weight" : "%spooler.dense.weight", pfx);
    if (has(c, mod)) {
        snprintf(mod, sizeof mod, albert ? "%spooler" : "%spooler.dense", pfx);
        if ((rc = linear(c, mod, (int)H, (int)H, 1, &d->pooler))) return rc;
        d->has_pooler = m->has_pooler = 1;
    }
    if (d->has_pooler) return classifier(c, "classifier", (int)H); /* BERT, ALBERT: on tanh(pooler) */
    return text_head(c, (int)H);
}

static int clip(const ctx *c)
{
    qd_xdesc *d = c->d;
    qd_model_config *m = &d->cfg;
    const int64_t H = m->hidden, np = (int64_t)(m->image_h / m->patch_h) * (m->image_w / m->patch_w);
    const char *pfx = "vision_model.";
    int rc;
    char name[QD_XD_NAME];
    d->clip = 1;
    snprintf(d->cls_token, sizeof d->cls_token, "%sembeddings.class_embedding", pfx);
    snprintf(d->pos_emb, sizeof d->pos_emb, "%sembeddings.position_embedding.weight", pfx);
    snprintf(d->patch_w, sizeof d->patch_w, "%sembeddings.patch_embedding.weight", pfx);
    const int64_t s2[2] = {np + 1, H}, s4[4] = {H, m->channels, m->patch_h, m->patch_w};
    if ((rc = need1(c, d->cls_token, H)) || (rc = need(c, d->pos_emb, 2, s2)) || (rc = need(c, d->patch_w, 4, s4)))
        return rc;
    snprintf(name, sizeof name, "%spre_layrnorm", pfx);
    if ((rc = norm(c, name, H, d->pre_ln_w, d->pre_ln_b))) return rc;
    if ((rc = blocks(c, pfx, &clip_names))) return rc;
    snprintf(name, sizeof name, "%spost_layernorm", pfx);
    if ((rc = norm(c, name, H, d->final_ln_w, d->final_ln_b))) return rc;
    int i = qd_xs_find(c->s, "visual_projection.weight");
    if (i >= 0) {
        const qd_xs_tensor *t = qd_xs_tensor_at(c->s, i);
        if (t->ndim != 2)
            return qd_err_set(QD_ESHAPE, "%s: tensor 'visual_projection.weight' is not a matrix", c->path);
        if ((rc = linear(c, "visual_projection", (int)H, (int)t->shape[0], 0, &d->proj))) return rc;
        d->has_proj = 1;
    }
    return classifier(c, "classifier", (int)H);
}

static int vit(const ctx *c)
{
    qd_xdesc *d = c->d;
    qd_model_config *m = &d->cfg;
    const int beit = !strcmp(m->model_type, "beit"), dino = !strncmp(m->model_type, "dinov2", 6);
    if (!strncmp(m->model_type, "clip", 4)) return clip(c);
    const char *pfx = has(c, "vit.embeddings.cls_token")      ? "vit."
                      : has(c, "beit.embeddings.cls_token")   ? "beit."
                      : has(c, "dinov2.embeddings.cls_token") ? "dinov2."
                      : has(c, "embeddings.cls_token")        ? ""
                                                              : NULL;
    if (!pfx) {
        if (has(c, "deit.embeddings.cls_token"))
            return qd_err_set(QD_EUNSUPPORTED, "%s: DeiT models are not supported by the export yet", c->path);
        return qd_err_set(QD_ENOTFOUND,
                          "%s: tensor 'vit.embeddings.cls_token' (or without the 'vit.' prefix) is missing", c->path);
    }
    char name[QD_XD_NAME];
    snprintf(name, sizeof name, "%sembeddings.distillation_token", pfx);
    if (has(c, name))
        return qd_err_set(QD_EUNSUPPORTED, "%s: a distillation token ('%s') is not supported by the export yet",
                          c->path, name);
    const int64_t H = m->hidden, np = (int64_t)(m->image_h / m->patch_h) * (m->image_w / m->patch_w);
    int rc;
    snprintf(d->cls_token, sizeof d->cls_token, "%sembeddings.cls_token", pfx);
    snprintf(d->pos_emb, sizeof d->pos_emb, "%sembeddings.position_embeddings", pfx);
    snprintf(d->patch_w, sizeof d->patch_w, "%sembeddings.patch_embeddings.projection.weight", pfx);
    snprintf(d->patch_b, sizeof d->patch_b, "%sembeddings.patch_embeddings.projection.bias", pfx);
    int64_t s3[3] = {1, 1, H}, s4[4] = {H, m->channels, m->patch_h, m->patch_w};
    if ((rc = need(c, d->cls_token, 3, s3))) return rc;
    s3[1] = np + 1;
    if (beit && !has(c, d->pos_emb)) /* BEiT: relative positions only */
        d->pos_emb[0] = 0;
    else if ((rc = need(c, d->pos_emb, 3, s3)))
        return rc;
    if ((rc = need(c, d->patch_w, 4, s4)) || (rc = need1(c, d->patch_b, H))) return rc;
    if (beit) { /* model/load.c beit_index: (2 gh - 1)(2 gw - 1) patch offsets and 3 for CLS */
        const int gh = m->image_h / m->patch_h, gw = m->image_w / m->patch_w;
        d->rel_rows = (2 * gh - 1) * (2 * gw - 1) + 3;
        snprintf(d->rel_bias, sizeof d->rel_bias, "%sencoder.relative_position_bias.relative_position_bias_table", pfx);
        if (!has(c, d->rel_bias)) d->rel_bias[0] = 0;
    }
    if (dino) {
        if (has(c, "dinov2.encoder.layer.0.mlp.weights_in.weight") || has(c, "encoder.layer.0.mlp.weights_in.weight"))
            return qd_err_set(QD_EUNSUPPORTED, "%s: DINOv2's SwiGLU MLP (mlp.weights_in) is not exported yet", c->path);
        d->dinov2 = 1;
        d->pos_aa = !strcmp(m->model_type, "dinov2_with_registers");
        if (m->n_registers > 0) {
            snprintf(d->reg_tokens, sizeof d->reg_tokens, "%sembeddings.register_tokens", pfx);
            const int64_t rs[3] = {1, m->n_registers, H};
            if ((rc = need(c, d->reg_tokens, 3, rs))) return rc;
        }
    }
    if ((rc = blocks(c, pfx, dino ? &dinov2_names : &vit_names))) return rc;
    if (dino && has(c, "classifier.weight")) { /* on [CLS, patch mean]: 2 H inputs */
        d->cls_mean = 1;
        snprintf(name, sizeof name, "%slayernorm", pfx);
        if ((rc = norm(c, name, H, d->final_ln_w, d->final_ln_b))) return rc;
        if ((rc = head_linear(c, "classifier", (int)(2 * H), &d->classifier))) return rc;
        d->has_classifier = 1;
        m->num_labels = d->classifier.out;
        return QD_OK;
    }
    if (beit && m->pool == QD_POOL_MEAN) {
        d->mean_pool = 1;
        snprintf(name, sizeof name, "%spooler.layernorm", pfx);
        if ((rc = norm(c, name, H, d->pool_ln_w, d->pool_ln_b))) return rc;
    } else {
        snprintf(name, sizeof name, "%slayernorm", pfx);
        if ((rc = norm(c, name, H, d->final_ln_w, d->final_ln_b))) return rc;
    }
    return classifier(c, "classifier", (int)H);
}

int qd_xdesc_build(const qd_xs *s, qd_xdesc *d)
{
    memset(d, 0, sizeof *d);
    const char *path = qd_xs_path(s), *cfg = qd_xs_model_config(s);
    if (!cfg[0]) return qd_err_set(QD_EFORMAT, "%s: the file records no model_config", path);
    char where[4200];
    snprintf(where, sizeof where, "%s: model_config", path);
    int rc = qd_model_parse_config(where, cfg, strlen(cfg), &d->cfg);
    if (rc) return rc;
    /* qdist runs more families (model/config.c); the exporters build BERT (and RoBERTa's positions
     * counted after the padding id) and ViT graphs */
    static const char *const types[] = {"bert",
                                        "roberta",
                                        "xlm-roberta",
                                        "camembert",
                                        "distilbert",
                                        "electra",
                                        "albert",
                                        "mpnet",
                                        "vit",
                                        "beit",
                                        "dinov2",
                                        "dinov2_with_registers",
                                        "clip_vision_model",
                                        "clip"};
    int known = 0;
    for (size_t k = 0; k < QD_ARRAY_LEN(types); k++) known |= !strcmp(d->cfg.model_type, types[k]);
    if (!known)
        return qd_err_set(QD_EUNSUPPORTED,
                          "%s: model_config: model_type '%s' is not supported by this export yet (bert, roberta, "
                          "xlm-roberta, camembert, distilbert, electra, albert, mpnet, vit, beit, dinov2, "
                          "dinov2_with_registers, clip_vision_model, clip)",
                          path, d->cfg.model_type);
    if (d->cfg.act != QD_ACT_GELU && d->cfg.act != QD_ACT_GELU_TANH && d->cfg.act != QD_ACT_RELU &&
        d->cfg.act != QD_ACT_SILU && d->cfg.act != QD_ACT_QUICK_GELU)
        return qd_err_set(QD_EUNSUPPORTED,
                          "%s: the export writes GELU, tanh-GELU, quick GELU, ReLU and SiLU MLPs, not this model's",
                          path);
    d->cfg.num_labels = 0;
    d->cfg.n_prefix = d->cfg.arch == QD_ARCH_VIT ? 1 : 0;
    d->blk = qd_xcalloc((size_t)d->cfg.layers, sizeof *d->blk);
    ctx c = {.s = s, .d = d, .path = path};
    rc = d->cfg.arch == QD_ARCH_BERT  ? bert(&c)
         : d->cfg.arch == QD_ARCH_VIT ? vit(&c)
                                      : qd_err_set(QD_EUNSUPPORTED, "%s: unknown architecture", path);
    if (rc) qd_xdesc_free(d);
    return rc;
}

void qd_xdesc_free(qd_xdesc *d)
{
    free(d->blk);
    d->blk = NULL;
}
