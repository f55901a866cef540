/* export/ctensors.c — a qdist model file as a compressed-tensors checkpoint (the safetensors
 * layout with `quantization_config` that the compressed-tensors package and Hugging Face
 * transformers load): the codes, scales and zero points as stored, re-laid out only.
 *
 * Per quantized Linear `m` (module name = tensor name without ".weight"):
 *   "pack-quantized" (2..7-bit symmetric): m.weight_packed I32 [out, ceil(in*b/32)] — each row's
 *       codes as one little-endian bit stream, code i at bit i*b (qdist's own row packing, padded
 *       to whole 32-bit words); m.weight_shape I64 [2] = [out, in];
 *   "int-quantized" (8-bit, and asymmetric narrower ones): m.weight I8 [out, in] = code - 2^(b-1),
 *       with asymmetric ones' m.weight_zero_point I8 [out, groups] = zero - 2^(b-1);
 *   both: m.weight_scale F32 [out, 1] (per channel or per tensor) or [out, in/G] (groups).
 * compressed-tensors dequantizes (q - zero_point) * scale with q = code - 2^(b-1) (signed), which
 * equals qdist's scale * (code - zero). Why asymmetric narrow weights are not packed:
 * pack-quantized stores their zero points packed along the output dimension ([ceil(out*b/32),
 * groups] I32), and transformers 5.23 with compressed-tensors 0.20.1 cannot load that — it sizes
 * the zero point from an uncompressed model ([out, groups]) and stops on the mismatch, for
 * checkpoints written by compressed-tensors itself as well; int-quantized loads, exact, at one
 * byte per weight. Tensors kept in float (and raw ones) are written as they
 * are. One config group per distinct scheme, its targets the modules' names as regular
 * expressions (any prefix, so the names match in both base and task models; ViT-family names also
 * as transformers 5 renames them). Every family qdist runs is written (BERT, RoBERTa, XLM-R,
 * DistilBERT, MPNet, ELECTRA, ALBERT, ViT, BEiT, CLIP vision); pruned files as they are (dense: the
 * pruned weights' codes are the zero point), their pattern in a sparsity_config of format "dense"
 * (sparsity_structure "2:4" / "unstructured", global_sparsity, the pruned Linears as targets).
 * config.json is the model's own text with quantization_config added.
 * Refused, naming the tensor or field: act-order column groups (g_idx; compressed-tensors 0.20 has
 * no g_idx), groups that do not divide the input width, quantized tensors that are not Linear
 * weights of the model, records the format does not know, DINOv2 (transformers 5.23 cannot load
 * it quantized), a model_config that already has a quantization_config. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/qd_common.h"
#include "export/export.h"
#include "model/model.h"
#include "export/outfile.h"
#include "export/source.h"
#include "shard/st_write.h"

#define MAX_SCHEMES 32

typedef struct {
    int bits, sym, packed;
    int64_t G; /* 0: per channel */
    cJSON *targets;
} scheme;

typedef struct {
    qd_xs *s;
    const char *path;
    int vit_family; /* model_type of the ViT family (module names renamed by transformers 5) */
    qd_st_out_tensor *t;
    int nt, cap;
    char **names; /* owned tensor names */
    scheme sch[MAX_SCHEMES];
    int nsch;
    /* pruned Linears (sparsity_config): their targets, weights, zeros by pattern, one N:M pattern */
    cJSON *sparse_targets;
    double sparse_weights, sparse_zeros;
    char structure[32];
    qd_export_summary *sum;
} cx;

static void add(cx *x, const char *name, qd_dtype dt, int ndim, const int64_t *shape, void *data)
{
    if (x->nt == x->cap) {
        x->cap = x->cap ? 2 * x->cap : 128;
        x->t = realloc(x->t, (size_t)x->cap * sizeof *x->t);
        x->names = realloc(x->names, (size_t)x->cap * sizeof *x->names);
        QD_ASSERT(x->t && x->names);
    }
    qd_st_out_tensor *o = &x->t[x->nt];
    memset(o, 0, sizeof *o);
    x->names[x->nt] = qd_xstrdup(name);
    o->name = x->names[x->nt];
    o->dtype = dt;
    o->ndim = ndim;
    for (int k = 0; k < ndim; k++) o->shape[k] = shape[k];
    o->data = data;
    x->nt++;
}

/* Whether a 2-D ".weight" is a Linear layer's in transformers' modules: any such tensor of the
 * encoders qdist runs (every family of model/) except the embedding tables ("...embeddings.*":
 * word, position, token-type, patch position) and MPNet's relative-position table, which are
 * nn.Embedding. (ELECTRA's "embeddings_project" and ALBERT's "embedding_hidden_mapping_in" are
 * Linears.) The test checks that transformers quantizes exactly the modules this names. */
static int is_linear_weight(const qd_xs_tensor *t)
{
    const size_t n = strlen(t->name);
    return t->ndim == 2 && n > 7 && !strcmp(t->name + n - 7, ".weight") && !strstr(t->name, "embeddings.") &&
           !strstr(t->name, "relative_attention_bias");
}

/* Module names of the ViT family as transformers 5 instantiates them: it renames the checkpoint's
 * keys while loading (its conversion mapping for ViT, BEiT and DINOv2: q_proj, o_proj, mlp.fc1,
 * "layers." for "encoder.layer." in ViT and BEiT), and the quantized keys with them, so a target must
 * name the module under the new name as well; substitutions in the order transformers applies them. */
static const char *const vit_renames[][2] = {
    {"encoder.layer.", "layers."},
    {"attention.attention.query", "attention.q_proj"},
    {"attention.attention.key", "attention.k_proj"},
    {"attention.attention.value", "attention.v_proj"},
    {"attention.output.dense", "attention.o_proj"},
    {"intermediate.dense", "mlp.fc1"},
    {"output.dense", "mlp.fc2"},
};

/* m with every substitution k of vit_renames from `first` on applied (out: at least 2 * strlen(m)) */
static void vit_rename(const char *m, size_t first, char *out, size_t cap)
{
    snprintf(out, cap, "%s", m);
    for (size_t k = first; k < QD_ARRAY_LEN(vit_renames); k++) {
        char *p = strstr(out, vit_renames[k][0]);
        if (!p) continue;
        char tail[512];
        snprintf(tail, sizeof tail, "%s", p + strlen(vit_renames[k][0]));
        snprintf(p, cap - (size_t)(p - out), "%s%s", vit_renames[k][1], tail);
    }
}

/* appends m (without ".weight") to the regex at o with dots escaped; returns the new end */
static char *escape_into(char *o, const char *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (m[i] == '.') *o++ = '\\';
        *o++ = m[i];
    }
    *o = 0;
    return o;
}

/* "re:(.*\.)?(encoder\.layer\.0\.attention\.self\.query)$" for "bert.encoder.layer.0...query.weight":
 * without the base model's prefix (the first name component transformers strips when a task
 * checkpoint is loaded into the base model), so that one target matches in both; ViT-family models
 * get the names transformers renames their modules to as alternatives (with and without the
 * "layers." renaming: DINOv2 keeps "encoder.layer."). */
static char *target_regex(const char *weight, int vit_family)
{
    const char *m = weight;
    static const char *prefixes[] = {"bert.",    "vit.",    "roberta.", "distilbert.", "mpnet.",
                                     "electra.", "albert.", "beit.",    "dinov2.",     "deit."};
    for (size_t i = 0; i < QD_ARRAY_LEN(prefixes); i++)
        if (!strncmp(m, prefixes[i], strlen(prefixes[i]))) {
            m += strlen(prefixes[i]);
            break;
        }
    char alt[2][512];
    const size_t n = strlen(m) - strlen(".weight");
    char *r = qd_xmalloc(8 * n + 64), *o = r;
    o += sprintf(o, "re:(.*\\.)?(");
    o = escape_into(o, m, n);
    if (vit_family) {
        char base[512];
        snprintf(base, sizeof base, "%.*s", (int)n, m);
        vit_rename(base, 0, alt[0], sizeof alt[0]);
        vit_rename(base, 1, alt[1], sizeof alt[1]);
        for (int k = 0; k < 2; k++)
            if (strcmp(alt[k], base) && (k == 0 || strcmp(alt[1], alt[0]))) {
                *o++ = '|';
                o = escape_into(o, alt[k], strlen(alt[k]));
            }
    }
    strcpy(o, ")$");
    return r;
}

/* values v[i] (< 2^bits) as little-endian 32-bit words, value i at bit i*bits */
static void pack_words(const uint8_t *v, int64_t n, int bits, int32_t *out)
{
    uint32_t *w = (uint32_t *)out;
    for (int64_t i = 0; i < n; i++) {
        const uint64_t bit = (uint64_t)i * (uint64_t)bits, val = v[i];
        w[bit / 32] |= (uint32_t)(val << (bit % 32));
        if (bit % 32 + (uint64_t)bits > 32) w[bit / 32 + 1] |= (uint32_t)(val >> (32 - bit % 32));
    }
}

static int quantized(cx *x, int i, const qd_xs_tensor *t)
{
    const char *name = t->name;
    if (!is_linear_weight(t))
        return qd_err_set(QD_EUNSUPPORTED,
                          "%s: tensor '%s' is quantized but is not a Linear weight of the model: compressed-tensors "
                          "checkpoints carry quantized Linear layers only",
                          x->path, name);
    const int64_t R = t->shape[0], C = t->shape[1], ng = t->ngroups, off = 1 << (t->bits - 1);
    if (ng > 1 && C % t->G)
        return qd_err_set(QD_EUNSUPPORTED,
                          "%s: tensor '%s': groups of %lld do not divide its %lld inputs; compressed-tensors needs "
                          "equal groups",
                          x->path, name, (long long)t->G, (long long)C);
    qd_xs_quant q;
    int rc = qd_xs_read_quant(x->s, i, &q);
    if (rc) return rc;
    if (q.g_idx) {
        qd_xs_quant_free(&q);
        return qd_err_set(QD_EUNSUPPORTED,
                          "%s: tensor '%s': act-order column groups (g_idx) cannot be expressed in compressed-tensors "
                          "(no g_idx in its layout); quantize without --act-order, or with --static-groups",
                          x->path, name);
    }
    const size_t base = strlen(name) - strlen(".weight");
    char nm[300];
    int64_t sh[2];
    const int packed = t->bits < 8 && t->sym;
    /* codes */
    if (!packed) {
        int8_t *w = qd_xmalloc((size_t)(R * C));
        for (int64_t k = 0; k < R * C; k++) w[k] = (int8_t)((int)q.codes[k] - off);
        snprintf(nm, sizeof nm, "%.*s.weight", (int)base, name);
        sh[0] = R;
        sh[1] = C;
        add(x, nm, QD_DT_I8, 2, sh, w);
    } else {
        const int64_t words = (C * t->bits + 31) / 32;
        int32_t *p = qd_xcalloc((size_t)(R * words), sizeof *p);
        for (int64_t r = 0; r < R; r++) pack_words(q.codes + r * C, C, t->bits, p + r * words);
        snprintf(nm, sizeof nm, "%.*s.weight_packed", (int)base, name);
        sh[0] = R;
        sh[1] = words;
        add(x, nm, QD_DT_I32, 2, sh, p);
        int64_t *shape = qd_xmalloc(2 * sizeof *shape);
        shape[0] = R;
        shape[1] = C;
        snprintf(nm, sizeof nm, "%.*s.weight_shape", (int)base, name);
        sh[0] = 2;
        add(x, nm, QD_DT_I64, 1, sh, shape);
    }
    /* scales and zero points, [out, groups] */
    snprintf(nm, sizeof nm, "%.*s.weight_scale", (int)base, name);
    sh[0] = R;
    sh[1] = ng;
    add(x, nm, QD_DT_F32, 2, sh, q.scales);
    q.scales = NULL;
    if (!t->sym) {
        snprintf(nm, sizeof nm, "%.*s.weight_zero_point", (int)base, name);
        int8_t *z = qd_xmalloc((size_t)(R * ng));
        for (int64_t k = 0; k < R * ng; k++) z[k] = (int8_t)(q.zeros[k] - off);
        add(x, nm, QD_DT_I8, 2, sh, z);
    }
    /* its scheme */
    const int64_t G = ng > 1 ? t->G : 0;
    int k = 0;
    while (k < x->nsch && !(x->sch[k].bits == t->bits && x->sch[k].sym == t->sym && x->sch[k].G == G)) k++;
    /* (bits, sym) decide the format: one scheme, one format */
    if (k == x->nsch) {
        if (x->nsch == MAX_SCHEMES) {
            qd_xs_quant_free(&q);
            return qd_err_set(QD_EUNSUPPORTED, "%s: more than %d distinct quantization schemes", x->path, MAX_SCHEMES);
        }
        x->sch[k] = (scheme){.bits = t->bits, .sym = t->sym, .packed = packed, .G = G, .targets = cJSON_CreateArray()};
        x->nsch++;
    }
    char *re = target_regex(name, x->vit_family);
    cJSON_AddItemToArray(x->sch[k].targets, cJSON_CreateString(re));
    free(re);
    qd_xs_quant_free(&q);
    if (packed)
        x->sum->linears_nbits++;
    else
        x->sum->linears_integer++;
    return QD_OK;
}

/* A pruned Linear: its target, and its zeros as its pattern implies them ("2:4": half, "0.5": half). */
static void note_sparse(cx *x, const qd_xs_tensor *t)
{
    if (!t->pruned || !is_linear_weight(t)) return;
    int n = 0, m = 0;
    double frac = 0;
    const int nm = sscanf(t->sparsity, "%d:%d", &n, &m) == 2 && m > 0;
    if (nm)
        frac = (double)(m - n) / m;
    else
        frac = atof(t->sparsity);
    if (!x->sparse_targets) {
        x->sparse_targets = cJSON_CreateArray();
        snprintf(x->structure, sizeof x->structure, "%s", nm ? t->sparsity : "unstructured");
    } else if (strcmp(x->structure, nm ? t->sparsity : "unstructured"))
        snprintf(x->structure, sizeof x->structure, "unstructured");
    const double w = (double)qd_xs_numel(t);
    x->sparse_weights += w;
    x->sparse_zeros += w * frac;
    char *re = target_regex(t->name, x->vit_family);
    cJSON_AddItemToArray(x->sparse_targets, cJSON_CreateString(re));
    free(re);
}

/* config.json: the model's configuration with the quantization_config compressed-tensors reads.
 * The configuration's text is kept byte for byte and the new key spliced in before its closing
 * brace: printed again by a JSON library, 1.0 becomes 1, which transformers' typed configurations
 * refuse (CLIP's initializer_factor). */
static char *config_json(cx *x, int *err)
{
    *err = 0;
    const char *text = qd_xs_model_config(x->s);
    cJSON *root = cJSON_Parse(text);
    size_t end = strlen(text);
    while (end > 0 && strchr(" \t\r\n", text[end - 1])) end--;
    if (!cJSON_IsObject(root) || end == 0 || text[end - 1] != '}') {
        cJSON_Delete(root);
        *err = qd_err_set(QD_EFORMAT, "%s: model_config is not a JSON object", x->path);
        return NULL;
    }
    if (cJSON_GetObjectItemCaseSensitive(root, "quantization_config")) {
        cJSON_Delete(root);
        *err = qd_err_set(QD_EUNSUPPORTED,
                          "%s: model_config already has a quantization_config (the source checkpoint was quantized)",
                          x->path);
        return NULL;
    }
    const int empty = cJSON_GetArraySize(root) == 0;
    cJSON_Delete(root);
    size_t body = end - 1; /* the text before the closing brace, without its trailing blanks */
    while (body > 0 && strchr(" \t\r\n", text[body - 1])) body--;
    int has8 = 0, hasp = 0;
    for (int k = 0; k < x->nsch; k++) *(x->sch[k].packed ? &hasp : &has8) = 1;
    cJSON *qc = cJSON_CreateObject(), *groups = cJSON_CreateObject();
    for (int k = 0; k < x->nsch; k++) {
        const scheme *s = &x->sch[k];
        cJSON *g = cJSON_CreateObject(), *w = cJSON_CreateObject();
        cJSON_AddItemToObject(g, "targets", s->targets);
        cJSON_AddNumberToObject(w, "num_bits", s->bits);
        cJSON_AddStringToObject(w, "type", "int");
        cJSON_AddBoolToObject(w, "symmetric", s->sym);
        cJSON_AddStringToObject(w, "strategy", s->G ? "group" : "channel");
        if (s->G)
            cJSON_AddNumberToObject(w, "group_size", (double)s->G);
        else
            cJSON_AddNullToObject(w, "group_size");
        cJSON_AddBoolToObject(w, "dynamic", 0);
        if (!s->sym) cJSON_AddStringToObject(w, "zp_dtype", "torch.int8");
        cJSON_AddItemToObject(g, "weights", w);
        cJSON_AddNullToObject(g, "input_activations");
        cJSON_AddNullToObject(g, "output_activations");
        cJSON_AddStringToObject(g, "format", s->packed ? "pack-quantized" : "int-quantized");
        char gn[32];
        snprintf(gn, sizeof gn, "group_%d", k);
        cJSON_AddItemToObject(groups, gn, g);
    }
    x->nsch = 0; /* the targets now belong to the JSON tree */
    cJSON_AddItemToObject(qc, "config_groups", groups);
    cJSON_AddStringToObject(qc, "quant_method", "compressed-tensors");
    cJSON_AddStringToObject(qc, "format", has8 && hasp ? "mixed-precision" : has8 ? "int-quantized" : "pack-quantized");
    cJSON_AddStringToObject(qc, "quantization_status", "compressed");
    cJSON_AddItemToObject(qc, "ignore", cJSON_CreateArray());
    cJSON_AddNullToObject(qc, "kv_cache_scheme");
    if (x->sparse_targets) {
        /* "dense": the zeros stay in the weights (compressed-tensors decompresses nothing); the
         * structure tells loaders which sparse kernels the weights allow */
        cJSON *sp = cJSON_CreateObject();
        cJSON_AddStringToObject(sp, "format", "dense");
        cJSON_AddStringToObject(sp, "sparsity_structure", x->structure);
        cJSON_AddNumberToObject(sp, "global_sparsity", x->sparse_zeros / x->sparse_weights);
        cJSON_AddItemToObject(sp, "targets", x->sparse_targets);
        cJSON_AddItemToObject(sp, "ignore", cJSON_CreateArray());
        cJSON_AddItemToObject(qc, "sparsity_config", sp);
        x->sparse_targets = NULL; /* now the JSON tree's */
    }
    char *q = cJSON_Print(qc);
    cJSON_Delete(qc);
    const size_t n = body + strlen(q) + 64;
    char *txt = qd_xmalloc(n);
    snprintf(txt, n, "%.*s%s\n  \"quantization_config\": %s\n}", (int)body, text, empty ? "" : ",", q);
    free(q);
    return txt;
}

int qd_export_ctensors(const char *model_file, const char *out_dir, qd_export_summary *sum)
{
    memset(sum, 0, sizeof *sum);
    qd_xs *s;
    int rc = qd_xs_open(model_file, &s);
    if (rc) return rc;
    cx x = {.s = s, .path = model_file, .sum = sum};
    {
        qd_model_config mc;
        char where[4200];
        snprintf(where, sizeof where, "%s: model_config", model_file);
        const char *cfg = qd_xs_model_config(s);
        if ((rc = qd_model_parse_config(where, cfg, strlen(cfg), &mc))) {
            qd_xs_close(s);
            return rc;
        }
        x.vit_family = mc.arch == QD_ARCH_VIT;
        /* transformers 5.23's key conversion for DINOv2 (splitting a SwiGLU mlp.weights_in) stops on
         * any quantized DINOv2 checkpoint, even one without that MLP: a file nobody can load */
        if (!strncmp(mc.model_type, "dinov2", 6)) {
            qd_xs_close(s);
            return qd_err_set(QD_EUNSUPPORTED,
                              "%s: model_config: model_type '%s': transformers (5.23) cannot load compressed-tensors "
                              "checkpoints of DINOv2 (its weight conversion of mlp.weights_in fails on quantized "
                              "keys); export the dequantized safetensors (no --format) instead",
                              model_file, mc.model_type);
        }
    }
    for (int i = 0; i < qd_xs_count(s) && !rc; i++) {
        const qd_xs_tensor *t = qd_xs_tensor_at(s, i);
        if (t->unknown[0]) {
            rc = qd_err_set(QD_EUNSUPPORTED,
                            "%s: tensor '%s' holds %s, which the compressed-tensors export cannot carry", model_file,
                            t->name, t->unknown);
        } else if (t->codebook) {
            rc = qd_err_set(QD_EUNSUPPORTED,
                            "%s: tensor '%s': K-means codebook weights (%d-bit codes indexing levels per group) "
                            "have no compressed-tensors layout, whose formats all dequantize a uniform grid "
                            "(scale * (q - zero)); export it to ONNX (a Gather of the levels) or dequantized "
                            "(no --format)",
                            model_file, t->name, t->bits);
        } else if (t->kind == QD_XS_QUANT) {
            rc = quantized(&x, i, t);
            note_sparse(&x, t);
        } else if (t->kind == QD_XS_FLOAT) {
            float *v;
            if (!(rc = qd_xs_read_float(s, i, &v))) {
                add(&x, t->name, QD_DT_F32, t->ndim, t->shape, v);
                sum->linears_float += is_linear_weight(t);
                note_sparse(&x, t);
            }
        } else {
            uint8_t *b;
            int64_t n;
            qd_dtype dt;
            if (qd_dtype_from_name(t->orig_dtype, &dt) != QD_OK)
                rc = qd_err_set(QD_EFORMAT, "%s: tensor '%s': orig_dtype '%s' is not a safetensors dtype", model_file,
                                t->name, t->orig_dtype);
            else if (!(rc = qd_xs_read_raw(s, i, &b, &n)))
                add(&x, t->name, dt, t->ndim, t->shape, b);
        }
    }
    char *cfg = NULL;
    if (!rc) cfg = config_json(&x, &rc);
    qd_xout_dir dir;
    if (!rc) rc = qd_xout_dir_open(&dir, out_dir);
    if (!rc) {
        char p[4400];
        snprintf(p, sizeof p, "%s/model.safetensors", dir.tmp);
        rc = qd_st_write(p, x.t, x.nt, "{\"format\":\"pt\",\"producer\":\"qdist\"}");
        qd_xout f;
        snprintf(p, sizeof p, "%s/config.json", dir.tmp);
        if (!rc && !(rc = qd_xout_open(&f, p))) {
            qd_xout_write(&f, cfg, strlen(cfg));
            qd_xout_write(&f, "\n", 1);
            rc = qd_xout_commit(&f);
        }
        if (!rc) {
            snprintf(p, sizeof p, "%s/model.safetensors", dir.tmp);
            FILE *fp = fopen(p, "rb");
            if (fp) {
                fseek(fp, 0, SEEK_END);
                sum->bytes = ftell(fp);
                fclose(fp);
            }
            rc = qd_xout_dir_commit(&dir);
        } else
            qd_xout_dir_abort(&dir);
    }
    free(cfg);
    for (int k = 0; k < x.nsch; k++) cJSON_Delete(x.sch[k].targets);
    cJSON_Delete(x.sparse_targets);
    for (int i = 0; i < x.nt; i++) {
        free(x.names[i]);
        free((void *)x.t[i].data);
    }
    free(x.t);
    free(x.names);
    qd_xs_close(s);
    return rc;
}
