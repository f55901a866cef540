/* train/netio.c — networks from and to Hugging Face checkpoints, freezing (train.h). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/qd_file.h"
#include "shard/safetensors.h"
#include "shard/st_write.h"
#include "train/rng.h"
#include "train/train.h"

/* The checkpoint's own name of a canonical parameter name: prefix swapped ("bert." -> "" for
 * BertModel checkpoints, "vit." -> "deit." ...), LayerNorm .weight/.bias -> .gamma/.beta. */
static int find_in_ckpt(const qd_checkpoint *ck, const char *canon, const char *canon_pfx)
{
    static const char *pfxs[] = {"bert.", "vit.", "deit.", ""};
    const char *rest = canon;
    size_t pl = strlen(canon_pfx);
    int prefixed = !strncmp(canon, canon_pfx, pl);
    if (prefixed) rest = canon + pl;
    for (size_t i = 0; i < QD_ARRAY_LEN(pfxs); i++) {
        char name[256];
        if (!prefixed && *pfxs[i]) continue; /* head tensors have no prefix */
        snprintf(name, sizeof name, "%s%s", pfxs[i], rest);
        int ti = qd_ckpt_find(ck, name);
        if (ti >= 0) return ti;
        size_t n = strlen(name);
        if (strstr(name, "LayerNorm") || strstr(name, "layernorm")) {
            if (n > 7 && !strcmp(name + n - 7, ".weight")) {
                snprintf(name + n - 7, sizeof name - (n - 7), ".gamma");
                if ((ti = qd_ckpt_find(ck, name)) >= 0) return ti;
            } else if (n > 5 && !strcmp(name + n - 5, ".bias")) {
                snprintf(name + n - 5, sizeof name - (n - 5), ".beta");
                if ((ti = qd_ckpt_find(ck, name)) >= 0) return ti;
            }
        }
    }
    return -1;
}

/* N(0, sd) by Box-Muller on 53-bit uniforms: the same values on every machine. */
static void init_normal(float *w, int64_t n, double sd, uint64_t *s)
{
    for (int64_t i = 0; i < n; i++) {
        double u1 = ((double)(qd_train_splitmix(s) >> 11) + 0.5) / 9007199254740992.0;
        double u2 = (double)(qd_train_splitmix(s) >> 11) / 9007199254740992.0;
        w[i] = (float)(sd * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
    }
}

int qd_tnet_load(const qd_model *m, int new_head, uint64_t seed, qd_tnet **out)
{
    *out = NULL;
    qd_model_config c = *qd_model_cfg(m);
    if (new_head > 0) {
        c.num_labels = new_head;
        if (c.arch == QD_ARCH_BERT) c.has_pooler = 1;
    }
    qd_tnet *n = NULL;
    int rc = qd_tg_net_create(&c, &n);
    if (rc) return qd_err_wrap(rc, "%s: ", qd_model_dir(m));
    if ((rc = qd_tnet_alloc(n))) goto fail;
    qd_checkpoint *ck = NULL;
    if ((rc = qd_ckpt_open(qd_model_dir(m), &ck))) goto fail;
    uint64_t s = seed ^ 0x5eedull;
    for (int i = 0; i < n->np && !rc; i++) {
        qd_tparam *p = &n->p[i];
        float *dst = n->w + p->off;
        int head = p->role == QD_TP_CLS_W || p->role == QD_TP_CLS_B;
        int pool = p->role == QD_TP_POOL_W || p->role == QD_TP_POOL_B;
        int ti = find_in_ckpt(ck, p->name, n->prefix);
        if ((new_head > 0 && head) || (pool && ti < 0 && new_head > 0)) {
            /* a new head (and pooler): N(0, initializer_range 0.02), zero bias */
            if (p->ndim == 2)
                init_normal(dst, p->numel, 0.02, &s);
            else
                memset(dst, 0, (size_t)p->numel * sizeof *dst);
            continue;
        }
        if (ti < 0) {
            rc = qd_err_set(QD_ENOTFOUND, "%s: tensor '%s' is missing from the checkpoint", qd_model_dir(m), p->name);
            break;
        }
        const qd_tensor_info *t = qd_ckpt_tensor(ck, ti);
        if ((int64_t)t->numel != p->numel) {
            rc = qd_err_set(QD_ESHAPE, "%s: tensor '%s' has %llu values, the config implies %lld", qd_model_dir(m),
                            t->name, (unsigned long long)t->numel, (long long)p->numel);
            break;
        }
        const float *src;
        int owned = 0;
        if ((rc = qd_ckpt_read_f32(ck, ti, &src, &owned))) break;
        memcpy(dst, src, (size_t)p->numel * sizeof *dst);
        if (owned) free((void *)src);
    }
    qd_ckpt_close(ck);
    if (rc) goto fail;
    *out = n;
    return QD_OK;
fail:
    qd_tg_net_free(n);
    return rc;
}

int qd_tnet_freeze(qd_tnet *n, const char *spec)
{
    int k = -1;
    if (!spec || !strcmp(spec, "none"))
        k = -2;
    else if (!strcmp(spec, "body"))
        k = n->c.layers;
    else if (!strcmp(spec, "embeddings"))
        k = 0;
    else {
        char *end;
        long v = strtol(spec, &end, 10);
        if (*end || v < 0 || v > n->c.layers)
            return qd_err_set(QD_EINVAL, "--freeze '%s': none, embeddings, body or a block count 0..%d", spec,
                              n->c.layers);
        k = (int)v;
    }
    for (int i = 0; i < n->np; i++) {
        qd_tparam *p = &n->p[i];
        if (p->role == QD_TP_EXTRA) continue; /* step sizes: their owner decides */
        int embed = p->layer < 0 && p->role <= QD_TP_PATCH_B;
        int head = p->layer < 0 && !embed;
        if (k == -2)
            p->trainable = 1;
        else if (k >= n->c.layers)
            p->trainable = head;
        else
            p->trainable = head || (!embed && p->layer >= k);
    }
    return QD_OK;
}

int64_t qd_tnet_trainable(const qd_tnet *n)
{
    int64_t t = 0;
    for (int i = 0; i < n->np; i++) t += n->p[i].trainable ? n->p[i].numel : 0;
    return t;
}

/* A file beside the checkpoint (absent or unreadable: NULL). */
static char *slurp(const char *path, size_t *len)
{
    char *b = NULL;
    size_t n = 0;
    if (qd_read_file(path, 1u << 30, "a model file", &b, &n)) return NULL;
    if (len) *len = n;
    return b;
}

static int copy_file(const char *src, const char *dst)
{
    size_t len = 0;
    char *b = slurp(src, &len);
    if (!b) return QD_OK; /* optional files */
    FILE *f = fopen(dst, "wb");
    int ok = f && fwrite(b, 1, len, f) == len;
    if (f && fclose(f)) ok = 0;
    free(b);
    return ok ? QD_OK : qd_err_set(QD_EIO, "%s: cannot write: %s", dst, strerror(errno));
}

int qd_tnet_save_hf(const qd_tnet *n, const char *src_dir, const char *dir)
{
    if (mkdir(dir, 0777) && errno != EEXIST) return qd_err_set(QD_EIO, "%s: cannot create: %s", dir, strerror(errno));
    qd_st_out_tensor *t = qd_xcalloc((size_t)n->np, sizeof *t);
    int nt = 0;
    for (int i = 0; i < n->np; i++) {
        const qd_tparam *p = &n->p[i];
        if (p->role == QD_TP_EXTRA) continue;
        t[nt].name = p->name;
        t[nt].dtype = QD_DT_F32;
        t[nt].ndim = p->ndim;
        for (int d = 0; d < p->ndim; d++) t[nt].shape[d] = p->shape[d];
        t[nt].data = n->w + p->off;
        nt++;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    int rc = qd_st_write(path, t, nt, "{\"format\":\"pt\"}");
    free(t);
    if (rc) return rc;
    /* config.json: the source's, with the head */
    snprintf(path, sizeof path, "%s/config.json", src_dir);
    char *text = slurp(path, NULL);
    cJSON *cfg = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!cfg) return qd_err_set(QD_ECONFIG, "%s: cannot read the source config", path);
    const qd_model_config *c = &n->c;
    cJSON_DeleteItemFromObjectCaseSensitive(cfg, "architectures");
    cJSON *ar = cJSON_AddArrayToObject(cfg, "architectures");
    cJSON_AddItemToArray(ar, cJSON_CreateString(c->arch == QD_ARCH_BERT ? "BertForSequenceClassification"
                                                                        : "ViTForImageClassification"));
    if (c->num_labels > 0) {
        cJSON_DeleteItemFromObjectCaseSensitive(cfg, "num_labels");
        cJSON_DeleteItemFromObjectCaseSensitive(cfg, "id2label");
        cJSON_DeleteItemFromObjectCaseSensitive(cfg, "label2id");
        cJSON_AddNumberToObject(cfg, "num_labels", c->num_labels);
        cJSON *i2l = cJSON_AddObjectToObject(cfg, "id2label"), *l2i = cJSON_AddObjectToObject(cfg, "label2id");
        for (int k = 0; k < c->num_labels; k++) {
            char key[32], lab[32];
            snprintf(key, sizeof key, "%d", k);
            snprintf(lab, sizeof lab, "LABEL_%d", k);
            cJSON_AddStringToObject(i2l, key, lab);
            cJSON_AddNumberToObject(l2i, lab, k);
        }
    }
    char *js = cJSON_Print(cfg);
    cJSON_Delete(cfg);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    int ok = f && fputs(js, f) >= 0 && fputc('\n', f) != EOF;
    if (f && fclose(f)) ok = 0;
    free(js);
    if (!ok) return qd_err_set(QD_EIO, "%s: cannot write: %s", path, strerror(errno));
    static const char *extra[] = {"vocab.txt", "tokenizer_config.json", "tokenizer.json", "special_tokens_map.json",
                                  "preprocessor_config.json"};
    for (size_t i = 0; i < QD_ARRAY_LEN(extra); i++) {
        char src[4200], dst[4200];
        snprintf(src, sizeof src, "%s/%s", src_dir, extra[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, extra[i]);
        if ((rc = copy_file(src, dst))) return rc;
    }
    return QD_OK;
}
