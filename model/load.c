/* model/load.c — config.json parsing and weight binding for the BERT and ViT families. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/model_internal.h"

/* ---- config.json -------------------------------------------------------------------------- */

static char *read_text(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return NULL;
    }
    long n = ftell(f);
    if (n < 0 || n > (64L << 20)) {
        fclose(f);
        errno = EFBIG;
        return NULL;
    }
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    if (!buf) {
        fclose(f);
        return NULL;
    }
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    buf[got] = 0;
    *len = got;
    return buf;
}

/* An integer field: absent -> def (or error when def < -1e9 sentinel, i.e. required). */
#define REQUIRED INT32_MIN
static int get_int(const cJSON *root, const char *path, const char *key, int def, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) {
        if (def == REQUIRED) return qd_err_set(QD_ECONFIG, "%s: field '%s' is missing", path, key);
        *out = def;
        return QD_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int)v->valuedouble)
        return qd_err_set(QD_ECONFIG, "%s: field '%s' must be an integer", path, key);
    *out = (int)v->valuedouble;
    return QD_OK;
}

/* image_size / patch_size: an integer or a [h, w] pair. */
static int get_hw(const cJSON *root, const char *path, const char *key, int def, int *h, int *w)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v) {
        *h = *w = def;
        return def > 0 ? QD_OK : qd_err_set(QD_ECONFIG, "%s: field '%s' is missing", path, key);
    }
    if (cJSON_IsNumber(v) && v->valuedouble == (double)(int)v->valuedouble && v->valuedouble > 0) {
        *h = *w = (int)v->valuedouble;
        return QD_OK;
    }
    if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 2) {
        const cJSON *a = cJSON_GetArrayItem(v, 0), *b = cJSON_GetArrayItem(v, 1);
        if (cJSON_IsNumber(a) && cJSON_IsNumber(b) && a->valuedouble >= 1 && b->valuedouble >= 1) {
            *h = (int)a->valuedouble;
            *w = (int)b->valuedouble;
            return QD_OK;
        }
    }
    return qd_err_set(QD_ECONFIG, "%s: field '%s' must be a positive integer or [height, width]", path, key);
}

static int parse_act(const char *path, const char *s, qd_act *act)
{
    if (!strcmp(s, "gelu"))
        *act = QD_ACT_GELU;
    else if (!strcmp(s, "gelu_new") || !strcmp(s, "gelu_pytorch_tanh") || !strcmp(s, "gelu_fast"))
        *act = QD_ACT_GELU_TANH;
    else if (!strcmp(s, "relu"))
        *act = QD_ACT_RELU;
    else if (!strcmp(s, "silu") || !strcmp(s, "swish"))
        *act = QD_ACT_SILU;
    else
        return qd_err_set(QD_EUNSUPPORTED,
                          "%s: hidden_act '%s' is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu, silu)", path,
                          s);
    return QD_OK;
}

int qd_model_parse_config(const char *path, const char *text, size_t len, qd_model_config *c)
{
    memset(c, 0, sizeof *c);
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return qd_err_set(QD_ECONFIG, "%s: not a JSON object", path);
    }
    int rc = QD_OK;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    const char *type = cJSON_IsString(mt) ? mt->valuestring : NULL;
    if (!type) {
        /* fall back to the architecture name */
        const cJSON *ar = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "architectures"), 0);
        if (cJSON_IsString(ar)) {
            if (!strncmp(ar->valuestring, "Bert", 4))
                type = "bert";
            else if (!strncmp(ar->valuestring, "ViT", 3))
                type = "vit";
            else if (!strncmp(ar->valuestring, "DeiT", 4))
                type = "deit";
        }
    }
    if (!type) {
        rc = qd_err_set(QD_ECONFIG, "%s: field 'model_type' is missing", path);
        goto out;
    }
    snprintf(c->model_type, sizeof c->model_type, "%s", type);
    if (!strcmp(type, "bert"))
        c->arch = QD_ARCH_BERT;
    else if (!strcmp(type, "vit") || !strcmp(type, "deit"))
        c->arch = QD_ARCH_VIT;
    else {
        rc = qd_err_set(QD_EUNSUPPORTED, "%s: model_type '%s' is not supported (bert, vit, deit)", path, type);
        goto out;
    }
    if ((rc = get_int(root, path, "hidden_size", REQUIRED, &c->hidden)) ||
        (rc = get_int(root, path, "num_hidden_layers", REQUIRED, &c->layers)) ||
        (rc = get_int(root, path, "num_attention_heads", REQUIRED, &c->heads)) ||
        (rc = get_int(root, path, "intermediate_size", REQUIRED, &c->intermediate)))
        goto out;
    if (c->hidden <= 0 || c->layers <= 0 || c->heads <= 0 || c->intermediate <= 0) {
        rc = qd_err_set(
            QD_ECONFIG,
            "%s: hidden_size, num_hidden_layers, num_attention_heads and intermediate_size must be positive", path);
        goto out;
    }
    int hs = 0;
    if ((rc = get_int(root, path, "attention_head_size", 0, &hs))) goto out;
    if (hs > 0)
        c->head_size = hs;
    else if (c->hidden % c->heads) {
        rc = qd_err_set(QD_ECONFIG, "%s: hidden_size %d is not a multiple of num_attention_heads %d", path, c->hidden,
                        c->heads);
        goto out;
    } else
        c->head_size = c->hidden / c->heads;

    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    if (act && !cJSON_IsString(act)) {
        rc = qd_err_set(QD_ECONFIG, "%s: field 'hidden_act' must be a string", path);
        goto out;
    }
    if ((rc = parse_act(path, act ? act->valuestring : "gelu", &c->act))) goto out;
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(root, "layer_norm_eps");
    c->ln_eps = c->arch == QD_ARCH_BERT ? 1e-12 : 1e-12; /* both families default to 1e-12 in HF */
    if (eps) {
        if (!cJSON_IsNumber(eps) || !(eps->valuedouble > 0)) {
            rc = qd_err_set(QD_ECONFIG, "%s: field 'layer_norm_eps' must be a positive number", path);
            goto out;
        }
        c->ln_eps = eps->valuedouble;
    }
    const cJSON *qb = cJSON_GetObjectItemCaseSensitive(root, "qkv_bias");
    c->qkv_bias = qb ? cJSON_IsTrue(qb) : 1;
    if (qb && !cJSON_IsBool(qb)) {
        rc = qd_err_set(QD_ECONFIG, "%s: field 'qkv_bias' must be true or false", path);
        goto out;
    }
    const cJSON *pe = cJSON_GetObjectItemCaseSensitive(root, "position_embedding_type");
    if (pe && cJSON_IsString(pe) && strcmp(pe->valuestring, "absolute")) {
        rc = qd_err_set(QD_EUNSUPPORTED, "%s: position_embedding_type '%s' is not supported (absolute)", path,
                        pe->valuestring);
        goto out;
    }
    if (c->arch == QD_ARCH_BERT) {
        if ((rc = get_int(root, path, "vocab_size", REQUIRED, &c->vocab_size)) ||
            (rc = get_int(root, path, "max_position_embeddings", 512, &c->max_position)) ||
            (rc = get_int(root, path, "type_vocab_size", 2, &c->type_vocab)))
            goto out;
    } else {
        if ((rc = get_hw(root, path, "image_size", 224, &c->image_h, &c->image_w)) ||
            (rc = get_hw(root, path, "patch_size", 16, &c->patch_h, &c->patch_w)) ||
            (rc = get_int(root, path, "num_channels", 3, &c->channels)))
            goto out;
        if (c->image_h % c->patch_h || c->image_w % c->patch_w) {
            rc = qd_err_set(QD_ECONFIG, "%s: image_size %dx%d is not a multiple of patch_size %dx%d", path, c->image_h,
                            c->image_w, c->patch_h, c->patch_w);
            goto out;
        }
        c->n_prefix = 1;
    }
out:
    cJSON_Delete(root);
    return rc;
}

/* ---- weights ------------------------------------------------------------------------------ */

/* Find a tensor, check its shape, return it as F32 (zero-copy when possible). */
static int bind_(qd_model *m, const char *name, int ndim, const int64_t *shape, const float **out, int optional,
                 int scan);
static int bind(qd_model *m, const char *name, int ndim, const int64_t *shape, const float **out, int optional)
{
    return bind_(m, name, ndim, shape, out, optional, 1);
}

static int bind_(qd_model *m, const char *name, int ndim, const int64_t *shape, const float **out, int optional,
                 int scan)
{
    int i = qd_ckpt_find(m->ck, name);
    if (i < 0) {
        if (optional) {
            *out = NULL;
            return QD_OK;
        }
        return qd_err_set(QD_ENOTFOUND, "%s: tensor '%s' is missing from the checkpoint", m->dir, name);
    }
    const qd_tensor_info *t = qd_ckpt_tensor(m->ck, i);
    int ok = t->ndim == ndim;
    for (int d = 0; ok && d < ndim; d++) ok = t->shape[d] == shape[d];
    if (!ok) {
        char want[96] = "", got[96] = "";
        size_t wl = 0, gl = 0;
        for (int d = 0; d < ndim; d++)
            wl += (size_t)snprintf(want + wl, sizeof want - wl, "%s%lld", d ? "," : "", (long long)shape[d]);
        for (int d = 0; d < t->ndim && gl < sizeof got; d++)
            gl += (size_t)snprintf(got + gl, sizeof got - gl, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        return qd_err_set(QD_ESHAPE, "%s: tensor '%s' has shape [%s], the config implies [%s]", m->dir, name, got,
                          want);
    }
    if (!t->float_like)
        return qd_err_set(QD_EDTYPE, "%s: tensor '%s' has dtype %s, a float type is needed", m->dir, name,
                          qd_dtype_name(t->dtype));
    const float *p;
    int owned = 0;
    int rc = qd_ckpt_read_f32(m->ck, i, &p, &owned);
    if (rc) return qd_err_wrap(rc, "%s: ", m->dir);
    if (owned) {
        if (m->n_owned == m->cap_owned) {
            m->cap_owned = m->cap_owned ? 2 * m->cap_owned : 64;
            m->owned = realloc(m->owned, (size_t)m->cap_owned * sizeof *m->owned);
            QD_ASSERT(m->owned);
        }
        m->owned[m->n_owned++] = (float *)p;
    }
    /* A NaN or Inf weight makes every output NaN; say where it is. */
    for (uint64_t k = 0; scan && k < t->numel; k++)
        if (!(p[k] - p[k] == 0.0f))
            return qd_err_set(QD_ENONFINITE, "%s: tensor '%s' holds a non-finite value at element %llu", m->dir, name,
                              (unsigned long long)k);
    *out = p;
    return QD_OK;
}

static int bind1(qd_model *m, const char *name, int64_t n, const float **out, int optional)
{
    return bind(m, name, 1, &n, out, optional);
}

/* LayerNorm weight/bias, accepting the old gamma/beta names. */
static int bind_ln(qd_model *m, const char *mod, int n, const float **g, const float **b)
{
    char a[256], c[256];
    snprintf(a, sizeof a, "%s.weight", mod);
    snprintf(c, sizeof c, "%s.gamma", mod);
    int rc;
    if (qd_ckpt_find(m->ck, a) < 0 && qd_ckpt_find(m->ck, c) >= 0) {
        if ((rc = bind1(m, c, n, g, 0))) return rc;
        snprintf(c, sizeof c, "%s.beta", mod);
        return bind1(m, c, n, b, 0);
    }
    if ((rc = bind1(m, a, n, g, 0))) return rc;
    snprintf(a, sizeof a, "%s.bias", mod);
    return bind1(m, a, n, b, 0);
}

static int add_linear(qd_model *m, const char *mod, int layer, int kind, int in, int out, int group, int with_bias)
{
    QD_ASSERT(m->n_lin < m->cap_lin);
    qd_linear *L = &m->lin[m->n_lin];
    memset(L, 0, sizeof *L);
    snprintf(L->name, sizeof L->name, "%s", mod);
    L->layer = layer;
    L->kind = kind;
    L->in = in;
    L->out = out;
    L->input_group = group;
    char name[200];
    snprintf(name, sizeof name, "%s.weight", mod);
    int64_t shape[2] = {out, in};
    int rc = bind_(m, name, 2, shape, &L->W, 0, !(m->flags & QD_MODEL_LAZY_LINEARS));
    if (rc) return rc;
    snprintf(name, sizeof name, "%s.bias", mod);
    if ((rc = bind1(m, name, out, &L->b, !with_bias))) return rc;
    m->n_lin++;
    return QD_OK;
}

static int has_prefix_tensor(const qd_model *m, const char *prefix, const char *rest)
{
    char name[256];
    snprintf(name, sizeof name, "%s%s", prefix, rest);
    return qd_ckpt_find(m->ck, name) >= 0;
}

/* The encoder blocks, named as both families name them: pfx + "encoder.layer.K." + attention.<attn>.
 * {query,key,value}, attention.output.dense, intermediate.dense, output.dense, and the two
 * LayerNorms ln1 / ln2 (BERT: after attention / after the MLP; ViT: before each). */
static int load_blocks(qd_model *m, const char *pfx, const char *attn, const char *ln1, const char *ln2)
{
    const qd_model_config *c = &m->cfg;
    const int H = c->hidden, I = c->intermediate, A = c->heads * c->head_size;
    char mod[200];
    int rc;
    for (int k = 0; k < c->layers; k++) {
        qd_block_w *bw = &m->blk[k];
        int g0 = 4 * k;
        static const char *qkv[3] = {"query", "key", "value"};
        for (int j = 0; j < 3; j++) {
            snprintf(mod, sizeof mod, "%sencoder.layer.%d.attention.%s.%s", pfx, k, attn, qkv[j]);
            if ((rc = add_linear(m, mod, k, QD_LIN_Q + j, H, A, g0, c->qkv_bias))) return rc;
        }
        snprintf(mod, sizeof mod, "%sencoder.layer.%d.attention.output.dense", pfx, k);
        if ((rc = add_linear(m, mod, k, QD_LIN_O, A, H, g0 + 1, 1))) return rc;
        snprintf(mod, sizeof mod, "%sencoder.layer.%d.intermediate.dense", pfx, k);
        if ((rc = add_linear(m, mod, k, QD_LIN_INTER, H, I, g0 + 2, 1))) return rc;
        snprintf(mod, sizeof mod, "%sencoder.layer.%d.output.dense", pfx, k);
        if ((rc = add_linear(m, mod, k, QD_LIN_OUT, I, H, g0 + 3, 1))) return rc;
        snprintf(mod, sizeof mod, "%sencoder.layer.%d.%s", pfx, k, ln1);
        if ((rc = bind_ln(m, mod, H, &bw->ln1_g, &bw->ln1_b))) return rc;
        snprintf(mod, sizeof mod, "%sencoder.layer.%d.%s", pfx, k, ln2);
        if ((rc = bind_ln(m, mod, H, &bw->ln2_g, &bw->ln2_b))) return rc;
    }
    return QD_OK;
}

static int load_bert(qd_model *m)
{
    qd_model_config *c = &m->cfg;
    /* BertModel checkpoints have no prefix; BertFor* checkpoints put the encoder under "bert." */
    const char *pfx = has_prefix_tensor(m, "bert.", "embeddings.word_embeddings.weight") ? "bert." : "";
    if (!has_prefix_tensor(m, pfx, "embeddings.word_embeddings.weight"))
        return qd_err_set(
            QD_ENOTFOUND,
            "%s: tensor 'bert.embeddings.word_embeddings.weight' (or without the 'bert.' prefix) is missing", m->dir);
    snprintf(m->prefix, sizeof m->prefix, "%s", pfx);
    int H = c->hidden;
    char mod[200];
    int rc;
    int64_t s2[2];
    s2[0] = c->vocab_size;
    s2[1] = H;
    snprintf(mod, sizeof mod, "%sembeddings.word_embeddings.weight", pfx);
    if ((rc = bind(m, mod, 2, s2, &m->word_emb, 0))) return rc;
    s2[0] = c->max_position;
    snprintf(mod, sizeof mod, "%sembeddings.position_embeddings.weight", pfx);
    if ((rc = bind(m, mod, 2, s2, &m->pos_emb, 0))) return rc;
    s2[0] = c->type_vocab;
    snprintf(mod, sizeof mod, "%sembeddings.token_type_embeddings.weight", pfx);
    if (c->type_vocab > 0 && (rc = bind(m, mod, 2, s2, &m->type_emb, 0))) return rc;
    snprintf(mod, sizeof mod, "%sembeddings.LayerNorm", pfx);
    if ((rc = bind_ln(m, mod, H, &m->emb_ln_g, &m->emb_ln_b))) return rc;

    if ((rc = load_blocks(m, pfx, "self", "attention.output.LayerNorm", "output.LayerNorm"))) return rc;
    s2[0] = H;
    s2[1] = H;
    snprintf(mod, sizeof mod, "%spooler.dense.weight", pfx);
    if ((rc = bind(m, mod, 2, s2, &m->pool_W, 1))) return rc;
    if (m->pool_W) {
        snprintf(mod, sizeof mod, "%spooler.dense.bias", pfx);
        if ((rc = bind1(m, mod, H, &m->pool_b, 0))) return rc;
        c->has_pooler = 1;
    }
    int ci = qd_ckpt_find(m->ck, "classifier.weight");
    if (ci >= 0) {
        const qd_tensor_info *t = qd_ckpt_tensor(m->ck, ci);
        if (!c->has_pooler)
            return qd_err_set(QD_ENOTFOUND,
                              "%s: the checkpoint has 'classifier.weight' but no pooler ('%spooler.dense.weight')",
                              m->dir, pfx);
        c->num_labels = t->ndim == 2 ? (int)t->shape[0] : 0;
        s2[0] = c->num_labels;
        s2[1] = H;
        if ((rc = bind(m, "classifier.weight", 2, s2, &m->cls_W, 0)) ||
            (rc = bind1(m, "classifier.bias", c->num_labels, &m->cls_b, 0)))
            return rc;
    }
    return QD_OK;
}

static int load_vit(qd_model *m)
{
    qd_model_config *c = &m->cfg;
    const char *pfx = NULL;
    static const char *cands[] = {"vit.", "deit.", ""};
    for (size_t i = 0; i < QD_ARRAY_LEN(cands) && !pfx; i++)
        if (has_prefix_tensor(m, cands[i], "embeddings.cls_token")) pfx = cands[i];
    if (!pfx)
        return qd_err_set(QD_ENOTFOUND,
                          "%s: tensor 'vit.embeddings.cls_token' (or with prefix 'deit.' or none) is missing", m->dir);
    snprintf(m->prefix, sizeof m->prefix, "%s", pfx);
    int H = c->hidden;
    char mod[200];
    int rc;
    if (has_prefix_tensor(m, pfx, "embeddings.distillation_token")) c->n_prefix = 2;
    int np = (c->image_h / c->patch_h) * (c->image_w / c->patch_w);
    int64_t s3[3] = {1, 1, H};
    snprintf(mod, sizeof mod, "%sembeddings.cls_token", pfx);
    if ((rc = bind(m, mod, 3, s3, &m->cls_tok, 0))) return rc;
    if (c->n_prefix == 2) {
        snprintf(mod, sizeof mod, "%sembeddings.distillation_token", pfx);
        if ((rc = bind(m, mod, 3, s3, &m->dist_tok, 0))) return rc;
    }
    s3[1] = np + c->n_prefix;
    snprintf(mod, sizeof mod, "%sembeddings.position_embeddings", pfx);
    if ((rc = bind(m, mod, 3, s3, &m->pos_emb, 0))) return rc;
    int64_t s4[4] = {H, c->channels, c->patch_h, c->patch_w};
    snprintf(mod, sizeof mod, "%sembeddings.patch_embeddings.projection.weight", pfx);
    if ((rc = bind(m, mod, 4, s4, &m->patch_W, 0))) return rc;
    snprintf(mod, sizeof mod, "%sembeddings.patch_embeddings.projection.bias", pfx);
    if ((rc = bind1(m, mod, H, &m->patch_b, 0))) return rc;

    if ((rc = load_blocks(m, pfx, "attention", "layernorm_before", "layernorm_after"))) return rc;
    snprintf(mod, sizeof mod, "%slayernorm", pfx);
    if ((rc = bind_ln(m, mod, H, &m->final_ln_g, &m->final_ln_b))) return rc;

    /* heads: classifier on CLS, or DeiT's pair (cls_classifier + distillation_classifier) */
    const char *hw = qd_ckpt_find(m->ck, "classifier.weight") >= 0       ? "classifier"
                     : qd_ckpt_find(m->ck, "cls_classifier.weight") >= 0 ? "cls_classifier"
                                                                         : NULL;
    if (hw) {
        snprintf(mod, sizeof mod, "%s.weight", hw);
        const qd_tensor_info *t = qd_ckpt_tensor(m->ck, qd_ckpt_find(m->ck, mod));
        c->num_labels = t->ndim == 2 ? (int)t->shape[0] : 0;
        int64_t s2[2] = {c->num_labels, H};
        if ((rc = bind(m, mod, 2, s2, &m->cls_W, 0))) return rc;
        snprintf(mod, sizeof mod, "%s.bias", hw);
        if ((rc = bind1(m, mod, c->num_labels, &m->cls_b, 0))) return rc;
        if (!strcmp(hw, "cls_classifier")) {
            if (c->n_prefix != 2)
                return qd_err_set(QD_ENOTFOUND, "%s: 'cls_classifier.weight' without a distillation token", m->dir);
            if ((rc = bind(m, "distillation_classifier.weight", 2, s2, &m->dist_W, 0)) ||
                (rc = bind1(m, "distillation_classifier.bias", c->num_labels, &m->dist_b, 0)))
                return rc;
        }
    }
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
    char *text = read_text(cpath, &len);
    if (!text) {
        rc = qd_err_set(QD_ENOENT, "%s: cannot read the model config: %s", cpath, strerror(errno));
        goto fail;
    }
    rc = qd_model_parse_config(cpath, text, len, &m->cfg);
    free(text);
    if (rc) goto fail;
    m->blk = qd_xcalloc((size_t)m->cfg.layers, sizeof *m->blk);
    m->cap_lin = m->cfg.layers * QD_LIN_PER_BLOCK;
    m->lin = qd_xcalloc((size_t)m->cap_lin, sizeof *m->lin);
    rc = m->cfg.arch == QD_ARCH_BERT ? load_bert(m) : load_vit(m);
    if (rc) goto fail;
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
    free(m->lin);
    free(m->blk);
    free(m->scratch);
    qd_ckpt_close(m->ck);
    free(m);
}

const qd_model_config *qd_model_cfg(const qd_model *m) { return &m->cfg; }
int qd_model_num_linears(const qd_model *m) { return m->n_lin; }
const qd_linear *qd_model_linear(const qd_model *m, int li)
{
    QD_ASSERT(li >= 0 && li < m->n_lin);
    return &m->lin[li];
}
const char *qd_model_dir(const qd_model *m) { return m->dir; }

void qd_model_tensors_get(const qd_model *m, qd_model_tensors *t)
{
    *t = (qd_model_tensors){m->word_emb, m->pos_emb, m->type_emb, m->emb_ln_g,   m->emb_ln_b,   m->cls_tok,
                            m->dist_tok, m->patch_W, m->patch_b,  m->final_ln_g, m->final_ln_b, m->pool_W,
                            m->pool_b,   m->cls_W,   m->cls_b,    m->dist_W,     m->dist_b};
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

int qd_model_num_groups(const qd_model *m) { return m->cfg.layers * 4; }
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
