/* model/inputs.c — pre-tokenized / preprocessed inputs from safetensors (see inputs.h). */
#include <stdlib.h>
#include <string.h>

#include "model/inputs.h"
#include "shard/safetensors.h"

/* An integer [N, T] tensor as int32, or NULL when absent (*rc set on a bad one). */
static int32_t *read_ids(qd_checkpoint *ck, const char *path, const char *name, int *n, int *T, int *rc)
{
    int i = qd_ckpt_find(ck, name);
    if (i < 0) return NULL;
    const qd_tensor_info *t = qd_ckpt_tensor(ck, i);
    if (t->ndim != 2 || (t->dtype != QD_DT_I32 && t->dtype != QD_DT_I64)) {
        *rc = qd_err_set(QD_EFORMAT, "%s: tensor '%s' must be I32 or I64 [items, tokens], not %s with %d dimensions",
                         path, name, qd_dtype_name(t->dtype), t->ndim);
        return NULL;
    }
    if (*n >= 0 && (t->shape[0] != *n || t->shape[1] != *T)) {
        *rc = qd_err_set(QD_ESHAPE, "%s: tensor '%s' is [%lld, %lld], input_ids [%d, %d]", path, name,
                         (long long)t->shape[0], (long long)t->shape[1], *n, *T);
        return NULL;
    }
    if (t->shape[0] <= 0 || t->shape[1] <= 0 || t->shape[0] * t->shape[1] > (1LL << 30)) {
        *rc = qd_err_set(QD_ESHAPE, "%s: tensor '%s' has an empty or huge shape", path, name);
        return NULL;
    }
    *n = (int)t->shape[0];
    *T = (int)t->shape[1];
    const void *p;
    if ((*rc = qd_ckpt_raw(ck, i, &p))) return NULL;
    int32_t *out = qd_xmalloc((size_t)t->numel * sizeof *out);
    for (uint64_t k = 0; k < t->numel; k++) {
        int64_t v;
        if (t->dtype == QD_DT_I32) {
            int32_t x;
            memcpy(&x, (const char *)p + 4 * k, 4);
            v = x;
        } else
            memcpy(&v, (const char *)p + 8 * k, 8);
        if (v < INT32_MIN || v > INT32_MAX) {
            *rc = qd_err_set(QD_EINVAL, "%s: tensor '%s' holds %lld at element %llu", path, name, (long long)v,
                             (unsigned long long)k);
            free(out);
            return NULL;
        }
        out[k] = (int32_t)v;
    }
    return out;
}

int qd_inputs_read(const char *path, qd_inputs *in)
{
    memset(in, 0, sizeof *in);
    qd_checkpoint *ck = NULL;
    int rc = qd_ckpt_open(path, &ck);
    if (rc) return rc;
    int px = qd_ckpt_find(ck, "pixel_values");
    if (px >= 0) {
        const qd_tensor_info *t = qd_ckpt_tensor(ck, px);
        if (t->ndim != 4 || !t->float_like || t->numel == 0) {
            rc = qd_err_set(QD_EFORMAT, "%s: tensor 'pixel_values' must be a float [N, C, H, W], not %s with %d dims",
                            path, qd_dtype_name(t->dtype), t->ndim);
            goto out;
        }
        const float *p;
        int owned = 0;
        if ((rc = qd_ckpt_read_f32(ck, px, &p, &owned))) goto out;
        in->n = (int)t->shape[0];
        in->C = (int)t->shape[1];
        in->H = (int)t->shape[2];
        in->W = (int)t->shape[3];
        in->pixels = qd_xmalloc((size_t)t->numel * sizeof(float));
        memcpy(in->pixels, p, (size_t)t->numel * sizeof(float));
        if (owned) free((void *)p);
        goto out;
    }
    int n = -1, T = -1;
    in->ids = read_ids(ck, path, "input_ids", &n, &T, &rc);
    if (rc) goto out;
    if (!in->ids) {
        rc = qd_err_set(QD_EFORMAT, "%s: neither 'input_ids' nor 'pixel_values' is in the file", path);
        goto out;
    }
    in->n = n;
    in->T = T;
    in->mask = read_ids(ck, path, "attention_mask", &n, &T, &rc);
    if (!rc) in->type_ids = read_ids(ck, path, "token_type_ids", &n, &T, &rc);
out:
    qd_ckpt_close(ck);
    if (rc) qd_inputs_free(in);
    return rc;
}

void qd_inputs_free(qd_inputs *in)
{
    free(in->ids);
    free(in->mask);
    free(in->type_ids);
    free(in->pixels);
    memset(in, 0, sizeof *in);
}

int qd_inputs_check(const qd_inputs *in, const qd_model *m, const char *path)
{
    const qd_model_config *c = qd_model_cfg(m);
    if (c->arch == QD_ARCH_BERT) {
        if (!in->ids) return qd_err_set(QD_EINVAL, "%s: a text model needs 'input_ids'", path);
        for (int64_t k = 0; k < (int64_t)in->n * in->T; k++)
            if (in->ids[k] < 0 || in->ids[k] >= c->vocab_size)
                return qd_err_set(QD_EINVAL, "%s: input_ids holds %d (item %lld), outside the vocabulary (%d)", path,
                                  in->ids[k], (long long)(k / in->T), c->vocab_size);
        return QD_OK;
    }
    if (!in->pixels) return qd_err_set(QD_EINVAL, "%s: a vision model needs 'pixel_values'", path);
    if (in->C != c->channels)
        return qd_err_set(QD_ESHAPE, "%s: pixel_values has %d channels, the model takes %d", path, in->C, c->channels);
    if (in->H != c->image_h || in->W != c->image_w)
        return qd_err_set(QD_ESHAPE, "%s: pixel_values are %dx%d, the model takes %dx%d", path, in->H, in->W,
                          c->image_h, c->image_w);
    return QD_OK;
}

qd_batch qd_inputs_batch(const qd_inputs *in, const qd_model *m, int first, int n)
{
    qd_batch b = {.B = n};
    if (in->ids) {
        int64_t o = (int64_t)first * in->T;
        b.T = in->T;
        b.ids = in->ids + o;
        b.mask = in->mask ? in->mask + o : NULL;
        b.type_ids = in->type_ids ? in->type_ids + o : NULL;
    } else {
        b.T = qd_model_tokens(m, 0);
        b.pixels = in->pixels + (int64_t)first * in->C * in->H * in->W;
    }
    return b;
}
