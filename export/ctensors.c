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
 * expressions (any prefix, so the names match in both base and task models).
 * Refused, naming the tensor: act-order column groups (g_idx; compressed-tensors 0.20 has no
 * g_idx), groups that do not divide the input width, quantized tensors that are not Linear
 * weights of the model, records the format does not know. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/qd_common.h"
#include "export/desc.h"
#include "export/export.h"
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
    const qd_xdesc *d;
    const char *path;
    qd_st_out_tensor *t;
    int nt, cap;
    char **names; /* owned tensor names */
    scheme sch[MAX_SCHEMES];
    int nsch;
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

static int is_linear_weight(const qd_xdesc *d, const char *name)
{
    for (int k = 0; k < d->cfg.layers; k++)
        for (int j = 0; j < QD_LIN_PER_BLOCK; j++)
            if (!strcmp(d->blk[k].lin[j].w, name)) return 1;
    return (d->has_pooler && !strcmp(d->pooler.w, name)) || (d->has_classifier && !strcmp(d->classifier.w, name));
}

/* "re:(.*\.)?encoder\.layer\.0\.attention\.self\.query$" for "bert.encoder.layer.0...query.weight" */
static char *target_regex(const char *weight)
{
    const char *m = weight;
    static const char *prefixes[] = {"bert.", "vit."};
    for (size_t i = 0; i < QD_ARRAY_LEN(prefixes); i++)
        if (!strncmp(m, prefixes[i], strlen(prefixes[i]))) m += strlen(prefixes[i]);
    size_t n = strlen(m) - strlen(".weight");
    char *r = qd_xmalloc(2 * n + 16), *o = r;
    o += sprintf(o, "re:(.*\\.)?");
    for (size_t i = 0; i < n; i++) {
        if (m[i] == '.') *o++ = '\\';
        *o++ = m[i];
    }
    strcpy(o, "$");
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
    if (!is_linear_weight(x->d, name))
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
    char *re = target_regex(name);
    cJSON_AddItemToArray(x->sch[k].targets, cJSON_CreateString(re));
    free(re);
    qd_xs_quant_free(&q);
    if (packed)
        x->sum->linears_nbits++;
    else
        x->sum->linears_integer++;
    return QD_OK;
}

/* config.json: the model's configuration with the quantization_config compressed-tensors reads */
static char *config_json(cx *x, int *err)
{
    *err = 0;
    cJSON *root = cJSON_Parse(qd_xs_model_config(x->s));
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        *err = qd_err_set(QD_EFORMAT, "%s: model_config is not a JSON object", x->path);
        return NULL;
    }
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
    cJSON_DeleteItemFromObjectCaseSensitive(root, "quantization_config");
    cJSON_AddItemToObject(root, "quantization_config", qc);
    char *txt = cJSON_Print(root);
    cJSON_Delete(root);
    return txt;
}

int qd_export_ctensors(const char *model_file, const char *out_dir, qd_export_summary *sum)
{
    memset(sum, 0, sizeof *sum);
    qd_xs *s;
    int rc = qd_xs_open(model_file, &s);
    if (rc) return rc;
    qd_xdesc d;
    if ((rc = qd_xdesc_build(s, &d))) {
        qd_xs_close(s);
        return rc;
    }
    cx x = {.s = s, .d = &d, .path = model_file, .sum = sum};
    for (int i = 0; i < qd_xs_count(s) && !rc; i++) {
        const qd_xs_tensor *t = qd_xs_tensor_at(s, i);
        if (t->unknown[0]) {
            rc = qd_err_set(QD_EUNSUPPORTED,
                            "%s: tensor '%s' holds %s, which the compressed-tensors export cannot carry", model_file,
                            t->name, t->unknown);
        } else if (t->kind == QD_XS_QUANT) {
            rc = quantized(&x, i, t);
        } else if (t->kind == QD_XS_FLOAT) {
            float *v;
            if (!(rc = qd_xs_read_float(s, i, &v))) {
                add(&x, t->name, QD_DT_F32, t->ndim, t->shape, v);
                sum->linears_float += is_linear_weight(&d, t->name);
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
    for (int i = 0; i < x.nt; i++) {
        free(x.names[i]);
        free((void *)x.t[i].data);
    }
    free(x.t);
    free(x.names);
    qd_xdesc_free(&d);
    qd_xs_close(s);
    return rc;
}
