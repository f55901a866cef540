/* worker/structured.c — structured pruning of heads and FFN neurons (see structured.h). */
#include "worker/structured.h"

#include <cblas.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/qd_common.h"
#include "common/qd_file.h"
#include "model/calib_data.h"
#include "model/model.h"
#include "quant/prune.h"
#include "shard/safetensors.h"
#include "shard/st_write.h"

/* Hessians of the attention-output and FFN-output inputs, per linear (NULL for the others). */
typedef struct {
    float **H;
    float *buf;
    size_t cap;
} hess;

static int on_input(void *user, const qd_model *m, int li, const float *X, int64_t rows, const uint8_t *valid)
{
    hess *h = user;
    const qd_linear *L = qd_model_linear(m, li);
    if (!h->H[li]) return 0;
    const int64_t K = L->in;
    /* padded tokens out: only the real ones say what the layer sees */
    const float *x = X;
    int64_t n = rows;
    if (valid) {
        if ((size_t)(rows * K) > h->cap) {
            free(h->buf);
            h->cap = (size_t)(rows * K);
            h->buf = malloc(h->cap * sizeof(float));
            if (!h->buf) return qd_err_set(QD_ENOMEM, "structured pruning: out of memory");
        }
        n = 0;
        for (int64_t r = 0; r < rows; r++)
            if (valid[r]) memcpy(h->buf + (n++) * K, X + r * K, (size_t)K * sizeof(float));
        x = h->buf;
    }
    if (n > 0)
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)K, (int)n, 1.0f, x, (int)K, 1.0f, h->H[li], (int)K);
    return 0;
}

/* The kept units of each layer: keep[l][u]. */
static void choose(const qd_model *m, const hess *h, int kind, int64_t unit, int64_t remove, uint8_t **keep)
{
    const qd_model_config *c = qd_model_cfg(m);
    for (int l = 0; l < c->layers; l++) {
        const qd_linear *L = qd_model_linear(m, l * QD_LIN_PER_BLOCK + kind);
        const int64_t K = L->in, nu = K / unit;
        float *H = h->H[l * QD_LIN_PER_BLOCK + kind];
        for (int64_t i = 0; i < K; i++) /* ssyrk filled the upper triangle */
            for (int64_t j = 0; j < i; j++) H[i * K + j] = H[j * K + i];
        double *imp = qd_xmalloc((size_t)nu * sizeof(double));
        qd_prune_unit_importance(L->W, L->out, K, H, unit, imp);
        keep[l] = qd_xmalloc((size_t)nu);
        qd_prune_choose_units(imp, nu, remove, keep[l]);
        free(imp);
    }
}

/* rows (or columns) of a [R, C] matrix in blocks of `unit`, those whose block is kept */
static float *take(const float *W, int64_t R, int64_t C, int cols, int64_t unit, const uint8_t *keep, int64_t *kept)
{
    const int64_t n = cols ? C : R;
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) k += keep[i / unit] != 0;
    *kept = k;
    float *o = qd_xmalloc((size_t)((cols ? R * k : k * C) > 0 ? (cols ? R * k : k * C) : 1) * sizeof(float));
    if (cols) {
        for (int64_t r = 0; r < R; r++)
            for (int64_t c = 0, j = 0; c < C; c++)
                if (keep[c / unit]) o[r * k + j++] = W[r * C + c];
    } else {
        for (int64_t r = 0, j = 0; r < R; r++)
            if (keep[r / unit]) memcpy(o + (j++) * C, W + r * C, (size_t)C * sizeof(float));
    }
    return o;
}

static int copy_file(const char *from, const char *to)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = qd_read_file(from, (size_t)1 << 30, "file", &buf, &len);
    if (rc) return rc;
    FILE *f = fopen(to, "wb");
    if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) rc = qd_err_set(QD_EIO, "%s: cannot write", to);
    free(buf);
    return rc;
}

int qd_structured_prune(const char *model, const qd_structured_opts *o, const char *out, char *summary, size_t cap)
{
    if (!o->calib) return qd_err_set(QD_ECONFIG, "--prune-heads / --prune-ffn need calibration samples (--calib)");
    if (!(o->ffn >= 0 && o->ffn < 1)) return qd_err_set(QD_ECONFIG, "--prune-ffn must be in [0, 1), got %g", o->ffn);
    qd_model *m = NULL;
    qd_calib_data *d = NULL;
    int rc = qd_model_load(model, &m);
    if (rc) return rc;
    const qd_model_config *c = qd_model_cfg(m);
    if (c->pruned_heads || c->linear_sets != c->layers)
        rc = qd_err_set(QD_EUNSUPPORTED, "%s: structured pruning of a model with %s", model,
                        c->pruned_heads ? "heads pruned already" : "shared layers");
    else if (o->heads >= c->heads)
        rc = qd_err_set(QD_ECONFIG, "--prune-heads %d: the model has %d heads per layer", o->heads, c->heads);
    if (!rc) rc = qd_calib_data_open(m, o->calib, o->nsamples, o->seqlen, o->seed, &d);
    const int nl = qd_model_num_linears(m);
    hess h = {.H = qd_xcalloc((size_t)nl, sizeof(float *))};
    for (int li = 0; !rc && li < nl; li++) {
        const qd_linear *L = qd_model_linear(m, li);
        if ((L->kind == QD_LIN_O && o->heads > 0) || (L->kind == QD_LIN_OUT && o->ffn > 0))
            h.H[li] = qd_xcalloc((size_t)L->in * (size_t)L->in, sizeof(float));
    }
    const int n = rc ? 0 : qd_calib_data_count(d), mb = 8;
    qd_model_hooks hk = {.user = &h, .linear_input = on_input};
    for (int i = 0; !rc && i < n; i += mb) {
        qd_batch b;
        if (!(rc = qd_calib_data_batch(d, i, QD_MIN(mb, n - i), &b)))
            rc = qd_model_forward(m, &b, &hk, NULL, NULL, NULL);
    }
    uint8_t **kh = qd_xcalloc((size_t)c->layers, sizeof *kh), **kf = qd_xcalloc((size_t)c->layers, sizeof *kf);
    const int64_t ffn_rm = (int64_t)floor(o->ffn * c->intermediate);
    if (!rc && o->heads > 0) choose(m, &h, QD_LIN_O, c->head_size, o->heads, kh);
    if (!rc && ffn_rm > 0) choose(m, &h, QD_LIN_OUT, 1, ffn_rm, kf);
    /* the new checkpoint: every tensor, the pruned Linears' shrunk (F32), the rest as they are */
    qd_checkpoint *ck = NULL;
    if (!rc) rc = qd_ckpt_open(model, &ck);
    const int nt = ck ? qd_ckpt_num_tensors(ck) : 0;
    qd_st_out_tensor *t = qd_xcalloc((size_t)(nt > 0 ? nt : 1), sizeof *t);
    float **owned = qd_xcalloc((size_t)(nt > 0 ? nt : 1), sizeof *owned);
    for (int i = 0; !rc && i < nt; i++) {
        const qd_tensor_info *ti = qd_ckpt_tensor(ck, i);
        t[i].name = ti->name;
        t[i].dtype = ti->dtype;
        t[i].ndim = ti->ndim;
        memcpy(t[i].shape, ti->shape, sizeof t[i].shape);
        if ((rc = qd_ckpt_raw(ck, i, &t[i].data))) break;
        for (int li = 0; li < nl; li++) {
            const qd_linear *L = qd_model_linear(m, li);
            const int l = L->layer;
            const uint8_t *keep = L->kind <= QD_LIN_O ? kh[l] : kf[l];
            const int64_t unit = L->kind <= QD_LIN_O ? c->head_size : 1;
            if (!keep) continue;
            const size_t ln = strlen(L->name);
            if (strncmp(ti->name, L->name, ln) || ti->name[ln] != '.') continue;
            const int bias = !strcmp(ti->name + ln, ".bias"), weight = !strcmp(ti->name + ln, ".weight");
            if (!bias && !weight) continue;
            int64_t k;
            const int cols = L->kind == QD_LIN_O || L->kind == QD_LIN_OUT; /* they lose inputs */
            if (bias && cols) break;                                       /* their bias stays */
            owned[i] =
                bias ? take(L->b, L->out, 1, 0, unit, keep, &k) : take(L->W, L->out, L->in, cols, unit, keep, &k);
            t[i].dtype = QD_DT_F32;
            t[i].data = owned[i];
            if (bias)
                t[i].shape[0] = k;
            else
                t[i].shape[cols ? 1 : 0] = k;
            break;
        }
    }
    char *cfgtxt = NULL;
    if (!rc) {
        mkdir(out, 0755);
        if (!qd_is_dir(out)) rc = qd_err_set(QD_EIO, "%s: cannot create the pruned checkpoint's directory", out);
    }
    if (!rc) { /* every file of the source directory but the weights and the config */
        DIR *dir = opendir(qd_model_dir(m));
        for (struct dirent *e; !rc && dir && (e = readdir(dir));) {
            const char *nm = e->d_name;
            size_t l = strlen(nm);
            if (nm[0] == '.' || !strcmp(nm, "config.json") || (l > 12 && !strcmp(nm + l - 12, ".safetensors")) ||
                !strcmp(nm, "pytorch_model.bin") || !strcmp(nm, "model.safetensors.index.json"))
                continue;
            char *a = qd_path_join(qd_model_dir(m), nm), *b = qd_path_join(out, nm);
            struct stat st;
            if (!stat(a, &st) && S_ISREG(st.st_mode)) rc = copy_file(a, b);
            free(a);
            free(b);
        }
        if (dir) closedir(dir);
    }
    if (!rc) {
        char *p = qd_path_join(out, "model.safetensors");
        rc = qd_st_write(p, t, nt, NULL);
        free(p);
    }
    if (!rc) {
        char *p = qd_path_join(qd_model_dir(m), "config.json");
        size_t len;
        rc = qd_read_file(p, (size_t)1 << 24, "config", &cfgtxt, &len);
        free(p);
    }
    if (!rc) {
        cJSON *j = cJSON_Parse(cfgtxt);
        if (!j) rc = qd_err_set(QD_ECONFIG, "%s/config.json: not JSON", qd_model_dir(m));
        if (!rc && o->heads > 0) {
            cJSON *ph = cJSON_CreateObject();
            for (int l = 0; l < c->layers; l++) {
                cJSON *a = cJSON_CreateArray();
                for (int u = 0; u < c->heads; u++)
                    if (!kh[l][u]) cJSON_AddItemToArray(a, cJSON_CreateNumber(u));
                char key[16];
                snprintf(key, sizeof key, "%d", l);
                cJSON_AddItemToObject(ph, key, a);
            }
            cJSON_DeleteItemFromObjectCaseSensitive(j, "pruned_heads");
            cJSON_AddItemToObject(j, "pruned_heads", ph);
        }
        if (!rc && ffn_rm > 0) {
            const char *key =
                cJSON_GetObjectItemCaseSensitive(j, "intermediate_size") ? "intermediate_size" : "hidden_dim";
            cJSON_DeleteItemFromObjectCaseSensitive(j, key);
            cJSON_AddNumberToObject(j, key, (double)(c->intermediate - ffn_rm));
        }
        char *txt = j ? cJSON_Print(j) : NULL;
        char *p = qd_path_join(out, "config.json");
        FILE *f = txt ? fopen(p, "w") : NULL;
        if (!rc && (!f || fputs(txt, f) < 0 || fputs("\n", f) < 0)) rc = qd_err_set(QD_EIO, "%s: cannot write", p);
        if (f && fclose(f) != 0 && !rc) rc = qd_err_set(QD_EIO, "%s: cannot write", p);
        free(p);
        free(txt);
        cJSON_Delete(j);
    }
    if (!rc && summary)
        snprintf(summary, cap, "structured pruning: %d of %d heads and %lld of %d FFN neurons removed per layer -> %s",
                 o->heads, c->heads, (long long)ffn_rm, c->intermediate, out);
    for (int i = 0; i < nt; i++) free(owned[i]);
    free(owned);
    free(t);
    for (int l = 0; l < c->layers; l++) {
        free(kh[l]);
        free(kf[l]);
    }
    free(kh);
    free(kf);
    for (int li = 0; li < nl; li++) free(h.H[li]);
    free(h.H);
    free(h.buf);
    free(cfgtxt);
    qd_ckpt_close(ck);
    qd_calib_data_free(d);
    qd_model_free(m);
    return rc;
}
