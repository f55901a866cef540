/* model/config.c — config.json of every supported family read into one qd_model_config.
 *
 * The families name the same quantities differently (DistilBERT: dim / n_layers / n_heads /
 * hidden_dim / activation; CLIP: the vision tower's numbers inside vision_config) and have their
 * own defaults (as the transformers config classes): the table below says, per model_type, what
 * differs; everything else is read once. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_internal.h"

typedef struct {
    const char *type; /* model_type */
    qd_arch arch;
    qd_norm_place norm;
    qd_pos_scheme pos;
    double eps;      /* layer_norm_eps default */
    int pad;         /* pad_token_id default */
    int emb;         /* embedding_size default (0: hidden) */
    const char *act; /* hidden_act default */
} family;

static const family families[] = {
    {"bert", QD_ARCH_BERT, QD_NORM_POST, QD_POS_LEARNED, 1e-12, 0, 0, "gelu"},
    {"roberta", QD_ARCH_BERT, QD_NORM_POST, QD_POS_AFTER_PAD, 1e-12, 1, 0, "gelu"},
    {"xlm-roberta", QD_ARCH_BERT, QD_NORM_POST, QD_POS_AFTER_PAD, 1e-12, 1, 0, "gelu"},
    {"camembert", QD_ARCH_BERT, QD_NORM_POST, QD_POS_AFTER_PAD, 1e-12, 1, 0, "gelu"},
    {"distilbert", QD_ARCH_BERT, QD_NORM_POST, QD_POS_LEARNED, 1e-12, 0, 0, "gelu"},
    {"mpnet", QD_ARCH_BERT, QD_NORM_POST, QD_POS_AFTER_PAD, 1e-5, 1, 0, "gelu"},
    {"electra", QD_ARCH_BERT, QD_NORM_POST, QD_POS_LEARNED, 1e-12, 0, 128, "gelu"},
    {"albert", QD_ARCH_BERT, QD_NORM_POST, QD_POS_LEARNED, 1e-12, 0, 128, "gelu_new"},
    {"vit", QD_ARCH_VIT, QD_NORM_PRE, QD_POS_NONE, 1e-12, 0, 0, "gelu"},
    {"deit", QD_ARCH_VIT, QD_NORM_PRE, QD_POS_NONE, 1e-12, 0, 0, "gelu"},
    {"beit", QD_ARCH_VIT, QD_NORM_PRE, QD_POS_NONE, 1e-12, 0, 0, "gelu"},
    {"dinov2", QD_ARCH_VIT, QD_NORM_PRE, QD_POS_NONE, 1e-6, 0, 0, "gelu"},
    {"dinov2_with_registers", QD_ARCH_VIT, QD_NORM_PRE, QD_POS_NONE, 1e-6, 0, 0, "gelu"},
    {"clip_vision_model", QD_ARCH_VIT, QD_NORM_PRE, QD_POS_NONE, 1e-5, 0, 0, "quick_gelu"},
    {"clip", QD_ARCH_VIT, QD_NORM_PRE, QD_POS_NONE, 1e-5, 0, 0, "quick_gelu"},
};

int qd_model_type_known(const char *model_type)
{
    for (size_t i = 0; model_type && i < QD_ARRAY_LEN(families); i++)
        if (!strcmp(model_type, families[i].type)) return 1;
    return 0;
}

static const char *type_list =
    "bert, roberta, xlm-roberta, camembert, distilbert, mpnet, electra, albert, vit, deit, beit, dinov2, "
    "dinov2_with_registers, clip_vision_model, clip";

/* An integer field under any of `keys` (the first present wins); absent: def, or an error naming
 * keys[0] when def is REQUIRED. */
#define REQUIRED INT32_MIN
static int get_int(const cJSON *o, const char *path, const char *const *keys, int def, int *out)
{
    const cJSON *v = NULL;
    const char *key = keys[0];
    for (int i = 0; keys[i] && !v; i++) {
        v = cJSON_GetObjectItemCaseSensitive(o, keys[i]);
        if (v && cJSON_IsNull(v)) v = NULL;
        if (v) key = keys[i];
    }
    if (!v) {
        if (def == REQUIRED) return qd_err_set(QD_ECONFIG, "%s: field '%s' is missing", path, keys[0]);
        *out = def;
        return QD_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int)v->valuedouble)
        return qd_err_set(QD_ECONFIG, "%s: field '%s' must be an integer", path, key);
    *out = (int)v->valuedouble;
    return QD_OK;
}
#define KEYS(...) ((const char *const[]){__VA_ARGS__, NULL})

static int get_bool(const cJSON *o, const char *path, const char *key, int def, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return QD_OK;
    }
    if (!cJSON_IsBool(v)) return qd_err_set(QD_ECONFIG, "%s: field '%s' must be true or false", path, key);
    *out = cJSON_IsTrue(v);
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

/* transformers' pruned_heads ({"layer": [head, ...]}): the heads each layer keeps. */
static int parse_pruned_heads(const cJSON *o, const char *path, qd_model_config *c)
{
    if (c->layers > QD_MODEL_MAX_LAYERS)
        return qd_err_set(QD_ECONFIG, "%s: num_hidden_layers %d: at most %d are supported", path, c->layers,
                          QD_MODEL_MAX_LAYERS);
    for (int l = 0; l < c->layers; l++) c->layer_heads[l] = c->heads;
    const cJSON *ph = cJSON_GetObjectItemCaseSensitive(o, "pruned_heads");
    for (const cJSON *e = cJSON_IsObject(ph) ? ph->child : NULL; e; e = e->next) {
        char *end;
        long l = strtol(e->string, &end, 10);
        if (*end || l < 0 || l >= c->layers || !cJSON_IsArray(e))
            return qd_err_set(QD_ECONFIG, "%s: pruned_heads: '%s' is not a layer below %d with a list of heads", path,
                              e->string, c->layers);
        int n = cJSON_GetArraySize(e);
        for (const cJSON *h = e->child; h; h = h->next)
            if (!cJSON_IsNumber(h) || h->valuedouble < 0 || h->valuedouble >= c->heads)
                return qd_err_set(QD_ECONFIG, "%s: pruned_heads of layer %ld: not a head below %d", path, l, c->heads);
        if (n >= c->heads)
            return qd_err_set(QD_ECONFIG, "%s: pruned_heads of layer %ld removes all %d heads", path, l, c->heads);
        c->layer_heads[l] = c->heads - n;
        c->pruned_heads |= n > 0;
    }
    return QD_OK;
}

static int parse_act(const char *path, const char *key, const char *s, qd_act *act)
{
    if (!strcmp(s, "gelu"))
        *act = QD_ACT_GELU;
    else if (!strcmp(s, "gelu_new") || !strcmp(s, "gelu_pytorch_tanh") || !strcmp(s, "gelu_fast"))
        *act = QD_ACT_GELU_TANH;
    else if (!strcmp(s, "relu"))
        *act = QD_ACT_RELU;
    else if (!strcmp(s, "silu") || !strcmp(s, "swish"))
        *act = QD_ACT_SILU;
    else if (!strcmp(s, "quick_gelu"))
        *act = QD_ACT_QUICK_GELU;
    else
        return qd_err_set(QD_EUNSUPPORTED,
                          "%s: %s '%s' is not supported (gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, relu, silu, "
                          "quick_gelu)",
                          path, key, s);
    return QD_OK;
}

/* The head named by architectures[0]: the class name's suffix decides. */
static int parse_head(const char *path, const char *arch, const char *type, qd_head_kind *head)
{
    static const struct {
        const char *suffix;
        qd_head_kind head;
    } tails[] = {
        {"ForSequenceClassification", QD_HEAD_SEQUENCE},
        {"ForTokenClassification", QD_HEAD_TOKEN},
        {"ForImageClassificationWithTeacher", QD_HEAD_IMAGE},
        {"ForImageClassification", QD_HEAD_IMAGE},
        {"ForMaskedLM", QD_HEAD_NONE},
        {"ForMaskedImageModeling", QD_HEAD_NONE},
        {"VisionModelWithProjection", QD_HEAD_NONE},
        {"ForPreTraining", QD_HEAD_NONE},
        {"Model", QD_HEAD_NONE},
    };
    size_t n = strlen(arch);
    for (size_t i = 0; i < QD_ARRAY_LEN(tails); i++) {
        size_t l = strlen(tails[i].suffix);
        if (n >= l && !strcmp(arch + n - l, tails[i].suffix)) {
            *head = tails[i].head;
            /* ELECTRA's pre-training model is its discriminator: one logit per token */
            if (!strcmp(arch, "ElectraForPreTraining")) *head = QD_HEAD_TOKEN;
            return QD_OK;
        }
    }
    return qd_err_set(QD_EUNSUPPORTED,
                      "%s: architectures '%s' (model_type '%s') is not supported: qdist runs the encoder (…Model, "
                      "…ForMaskedLM, …ForPreTraining, …ForMaskedImageModeling, CLIPVisionModelWithProjection) and the "
                      "heads …ForSequenceClassification, …ForTokenClassification, …ForImageClassification",
                      path, arch, type);
}

/* The fields of a text encoder: vocabulary, positions, token types, embedding width, ALBERT's layer groups */
static int parse_text_fields(const cJSON *o, const char *path, const char *type, const family *f, qd_model_config *c)
{
    int rc;
    if ((rc = get_int(o, path, KEYS("vocab_size"), REQUIRED, &c->vocab_size)) ||
        (rc = get_int(o, path, KEYS("max_position_embeddings"), 512, &c->max_position)) ||
        (rc = get_int(o, path, KEYS("type_vocab_size"), !strcmp(type, "distilbert") ? 0 : 2, &c->type_vocab)) ||
        (rc = get_int(o, path, KEYS("pad_token_id"), f->pad, &c->pad_id)) ||
        (rc = get_int(o, path, KEYS("embedding_size"), f->emb ? f->emb : c->hidden, &c->embed_size)))
        return rc;
    if (!strcmp(type, "distilbert") || !strcmp(type, "mpnet")) c->type_vocab = 0; /* no token types */
    if (c->embed_size <= 0 || c->max_position <= 0 || c->vocab_size <= 0) {
        rc =
            qd_err_set(QD_ECONFIG, "%s: vocab_size, max_position_embeddings and embedding_size must be positive", path);
        return rc;
    }
    if (!strcmp(type, "albert")) {
        int groups = 1, inner = 1;
        if ((rc = get_int(o, path, KEYS("num_hidden_groups"), 1, &groups)) ||
            (rc = get_int(o, path, KEYS("inner_group_num"), 1, &inner)))
            return rc;
        if (groups < 1 || inner < 1 || groups > c->layers) {
            rc = qd_err_set(QD_ECONFIG,
                            "%s: num_hidden_groups %d and inner_group_num %d must be >= 1 (and groups <= "
                            "num_hidden_layers %d)",
                            path, groups, inner, c->layers);
            return rc;
        }
        /* a block is one application of one ALBERT layer: num_hidden_layers groups of inner_group_num */
        c->linear_sets = groups * inner;
        c->set_groups = groups;
        c->set_inner = inner;
        c->layers *= inner;
    }
    return QD_OK;
}

/* The fields of a vision encoder: image and patch sizes, channels, prefix tokens, pooling */
static int parse_image_fields(const cJSON *o, const char *path, const char *type, qd_model_config *c)
{
    int rc;
    if ((rc = get_hw(o, path, "image_size", 224, &c->image_h, &c->image_w)) ||
        (rc = get_hw(o, path, "patch_size", 16, &c->patch_h, &c->patch_w)) ||
        (rc = get_int(o, path, KEYS("num_channels"), 3, &c->channels)))
        return rc;
    if (c->image_h % c->patch_h || c->image_w % c->patch_w) {
        rc = qd_err_set(QD_ECONFIG, "%s: image_size %dx%d is not a multiple of patch_size %dx%d", path, c->image_h,
                        c->image_w, c->patch_h, c->patch_w);
        return rc;
    }
    c->pos_grid_h = c->image_h / c->patch_h;
    c->pos_grid_w = c->image_w / c->patch_w;
    c->n_prefix = 1;
    if (!strcmp(type, "dinov2_with_registers")) {
        if ((rc = get_int(o, path, KEYS("num_register_tokens"), 4, &c->n_registers))) return rc;
        if (c->n_registers < 0) {
            rc = qd_err_set(QD_ECONFIG, "%s: num_register_tokens must be >= 0", path);
            return rc;
        }
        c->n_prefix += c->n_registers;
    }
    if (!strcmp(type, "beit")) {
        int mean = 1;
        if ((rc = get_bool(o, path, "use_mean_pooling", 1, &mean))) return rc;
        c->pool = mean ? QD_POOL_MEAN : QD_POOL_CLS;
    } else
        c->pool = QD_POOL_CLS;
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
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    const cJSON *ar = cJSON_IsArray(archs) ? cJSON_GetArrayItem(archs, 0) : NULL;
    if (archs && !cJSON_IsNull(archs) && (!cJSON_IsArray(archs) || (ar && !cJSON_IsString(ar)))) {
        rc = qd_err_set(QD_ECONFIG, "%s: field 'architectures' must be a list of class names", path);
        goto out;
    }
    if (!type && ar) { /* fall back to the architecture name */
        if (!strncmp(ar->valuestring, "Bert", 4))
            type = "bert";
        else if (!strncmp(ar->valuestring, "ViT", 3))
            type = "vit";
        else if (!strncmp(ar->valuestring, "DeiT", 4))
            type = "deit";
    }
    if (!type) {
        rc = qd_err_set(QD_ECONFIG, "%s: field 'model_type' is missing", path);
        goto out;
    }
    const family *f = NULL;
    for (size_t i = 0; i < QD_ARRAY_LEN(families) && !f; i++)
        if (!strcmp(type, families[i].type)) f = &families[i];
    if (!f) {
        rc = qd_err_set(QD_EUNSUPPORTED, "%s: model_type '%s' is not supported (%s)", path, type, type_list);
        goto out;
    }
    snprintf(c->model_type, sizeof c->model_type, "%s", type);
    if (ar) snprintf(c->architecture, sizeof c->architecture, "%s", ar->valuestring);
    c->arch = f->arch;
    c->norm = f->norm;
    c->pos = f->pos;
    if (ar && (rc = parse_head(path, ar->valuestring, type, &c->head))) goto out;

    /* CLIP: the vision tower's numbers are in vision_config */
    const cJSON *o = root;
    if (!strcmp(type, "clip")) {
        o = cJSON_GetObjectItemCaseSensitive(root, "vision_config");
        if (!cJSON_IsObject(o)) {
            rc = qd_err_set(QD_ECONFIG,
                            "%s: field 'vision_config' is missing (a CLIP config holds the vision tower there)", path);
            goto out;
        }
    }
    if ((rc = get_int(o, path, KEYS("hidden_size", "dim"), REQUIRED, &c->hidden)) ||
        (rc = get_int(o, path, KEYS("num_hidden_layers", "n_layers"), REQUIRED, &c->layers)) ||
        (rc = get_int(o, path, KEYS("num_attention_heads", "n_heads"), REQUIRED, &c->heads)))
        goto out;
    if (!strncmp(type, "dinov2", 6) && !cJSON_GetObjectItemCaseSensitive(o, "intermediate_size")) {
        /* DINOv2 gives the MLP width as a ratio */
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(o, "mlp_ratio");
        double ratio = cJSON_IsNumber(r) ? r->valuedouble : 4.0;
        c->intermediate = (int)(c->hidden * ratio);
    } else if ((rc = get_int(o, path, KEYS("intermediate_size", "hidden_dim"), REQUIRED, &c->intermediate)))
        goto out;
    if (c->hidden <= 0 || c->layers <= 0 || c->heads <= 0 || c->intermediate <= 0) {
        rc = qd_err_set(
            QD_ECONFIG,
            "%s: hidden_size, num_hidden_layers, num_attention_heads and intermediate_size must be positive", path);
        goto out;
    }
    int hs = 0;
    if ((rc = get_int(o, path, KEYS("attention_head_size"), 0, &hs))) goto out;
    if (hs > 0)
        c->head_size = hs;
    else if (c->hidden % c->heads) {
        rc = qd_err_set(QD_ECONFIG, "%s: hidden_size %d is not a multiple of num_attention_heads %d", path, c->hidden,
                        c->heads);
        goto out;
    } else
        c->head_size = c->hidden / c->heads;
    if ((rc = parse_pruned_heads(o, path, c))) goto out;

    const char *act_key = cJSON_GetObjectItemCaseSensitive(o, "hidden_act") ? "hidden_act" : "activation";
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(o, act_key);
    if (act && !cJSON_IsString(act)) {
        rc = qd_err_set(QD_ECONFIG, "%s: field '%s' must be a string", path, act_key);
        goto out;
    }
    if ((rc = parse_act(path, act_key, act ? act->valuestring : f->act, &c->act))) goto out;
    c->ln_eps = f->eps;
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(o, "layer_norm_eps");
    if (!strcmp(type, "distilbert")) eps = NULL; /* DistilBERT's LayerNorms are fixed at 1e-12 */
    if (eps) {
        if (!cJSON_IsNumber(eps) || !(eps->valuedouble > 0)) {
            rc = qd_err_set(QD_ECONFIG, "%s: field 'layer_norm_eps' must be a positive number", path);
            goto out;
        }
        c->ln_eps = eps->valuedouble;
    }
    if ((rc = get_bool(o, path, "qkv_bias", 1, &c->qkv_bias))) goto out;
    const cJSON *pe = cJSON_GetObjectItemCaseSensitive(o, "position_embedding_type");
    if (pe && cJSON_IsString(pe) && strcmp(pe->valuestring, "absolute")) {
        rc = qd_err_set(QD_EUNSUPPORTED, "%s: position_embedding_type '%s' is not supported (absolute)", path,
                        pe->valuestring);
        goto out;
    }
    int swiglu = 0;
    if ((rc = get_bool(o, path, "use_swiglu_ffn", 0, &swiglu))) goto out;
    if (swiglu) {
        rc = qd_err_set(QD_EUNSUPPORTED, "%s: use_swiglu_ffn = true is not supported (DINOv2's SwiGLU MLP)", path);
        goto out;
    }
    c->linear_sets = c->set_groups = c->layers;
    c->set_inner = 1;
    if ((rc = c->arch == QD_ARCH_BERT ? parse_text_fields(o, path, type, f, c) : parse_image_fields(o, path, type, c)))
        goto out;
out:
    cJSON_Delete(root);
    return rc;
}
