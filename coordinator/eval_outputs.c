/* coordinator/eval_outputs.c — eval's outputs file and reference scoring (see eval_outputs.h). */
#include "coordinator/eval_outputs.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/qd_common.h"
#include "shard/safetensors.h"
#include "shard/st_write.h"

#define QD_EVAL_OUTPUTS_VERSION "1"

double qd_eval_cosine(const float *a, const float *b, int n)
{
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : (aa == bb ? 1.0 : 0.0);
}

static int64_t *widen(const int32_t *v, int64_t n)
{
    int64_t *w = qd_xmalloc((size_t)(n ? n : 1) * sizeof *w);
    for (int64_t i = 0; i < n; i++) w[i] = v[i];
    return w;
}

int qd_eval_outputs_save(const char *path, const qd_eval_outputs *o)
{
    const int64_t n = o->n, nt = (int64_t)o->n * o->T;
    int64_t *index = qd_xmalloc((size_t)(n ? n : 1) * sizeof *index), *lab = NULL, *ids = NULL, *mask = NULL,
            *tt = NULL;
    for (int64_t i = 0; i < n; i++) index[i] = i;
    qd_st_out_tensor t[7];
    int k = 0;
    t[k++] = (qd_st_out_tensor){"fp32", QD_DT_F32, 2, {n, o->dim}, o->fp32};
    t[k++] = (qd_st_out_tensor){"quantized", QD_DT_F32, 2, {n, o->dim}, o->quantized};
    t[k++] = (qd_st_out_tensor){"sample_index", QD_DT_I64, 1, {n}, index};
    if (o->labels) {
        lab = qd_xmalloc((size_t)(n ? n : 1) * sizeof *lab);
        for (int64_t i = 0; i < n; i++) lab[i] = o->labels[i];
        t[k++] = (qd_st_out_tensor){"labels", QD_DT_I64, 1, {n}, lab};
    }
    if (o->input_ids) {
        ids = widen(o->input_ids, nt);
        mask = widen(o->attention_mask, nt);
        tt = widen(o->token_type_ids, nt);
        t[k++] = (qd_st_out_tensor){"input_ids", QD_DT_I64, 2, {n, o->T}, ids};
        t[k++] = (qd_st_out_tensor){"attention_mask", QD_DT_I64, 2, {n, o->T}, mask};
        t[k++] = (qd_st_out_tensor){"token_type_ids", QD_DT_I64, 2, {n, o->T}, tt};
    }
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "format", "qdist-eval-outputs");
    cJSON_AddStringToObject(m, "format_version", QD_EVAL_OUTPUTS_VERSION);
    cJSON_AddStringToObject(m, "output", o->output);
    cJSON_AddStringToObject(m, "inputs", o->input_ids ? "text" : "images");
    cJSON_AddStringToObject(m, "model", o->model ? o->model : "");
    cJSON_AddStringToObject(m, "quantized_file", o->quantized_file ? o->quantized_file : "");
    cJSON_AddStringToObject(m, "data", o->data ? o->data : "");
    cJSON_AddStringToObject(m, "runtime", o->runtime ? o->runtime : "");
    char *meta = cJSON_PrintUnformatted(m);
    cJSON_Delete(m);
    int rc = qd_st_write(path, t, k, meta);
    free(meta);
    free(index);
    free(lab);
    free(ids);
    free(mask);
    free(tt);
    return rc;
}

static void match(const float *ours, const float *ref, const int64_t *row, int n, int dim, int classify,
                  qd_eval_match *m)
{
    double cs = 0, cmin = 1, mx = 0;
    int agree = 0;
    for (int i = 0; i < n; i++) {
        const float *a = ours + (size_t)i * dim, *b = ref + (size_t)row[i] * dim;
        double c = qd_eval_cosine(a, b, dim);
        cs += c;
        if (c < cmin) cmin = c;
        int pa = 0, pb = 0;
        for (int j = 0; j < dim; j++) {
            double d = fabs((double)a[j] - b[j]);
            if (!(d <= mx)) mx = d; /* NaN propagates */
            if (a[j] > a[pa]) pa = j;
            if (b[j] > b[pb]) pb = j;
        }
        agree += pa == pb;
    }
    m->cos_mean = n ? cs / n : 0;
    m->cos_min = n ? cmin : 0;
    m->max_abs = mx;
    m->agreement = classify && n ? (double)agree / n : -1;
}

int qd_eval_reference_score(const char *path, const char *tensor, const qd_eval_outputs *o, qd_eval_ref_scores *s)
{
    memset(s, 0, sizeof *s);
    qd_checkpoint *ck = NULL;
    int rc = qd_ckpt_open(path, &ck);
    if (rc) return qd_err_wrap(rc, "--reference");
    const char *name = tensor ? tensor : qd_ckpt_find(ck, "outputs") >= 0 ? "outputs" : "quantized";
    snprintf(s->tensor, sizeof s->tensor, "%s", name);
    int ti = qd_ckpt_find(ck, name), xi = qd_ckpt_find(ck, "sample_index"), owned = 0;
    const float *ref = NULL;
    int64_t *row = qd_xmalloc((size_t)(o->n ? o->n : 1) * sizeof *row);
    const qd_tensor_info *t = ti >= 0 ? qd_ckpt_tensor(ck, ti) : NULL;
    if (!t)
        rc = tensor ? qd_err_set(QD_ENOTFOUND, "%s: no tensor '%s'", path, tensor)
                    : qd_err_set(QD_ENOTFOUND, "%s: no tensor 'outputs' (or 'quantized') holding the reference outputs",
                                 path);
    else if (!t->float_like || t->ndim != 2 || t->shape[1] != o->dim)
        rc = qd_err_set(QD_ESHAPE, "%s: tensor '%s' must be a float [samples, %d] array (the %s of each sample)", path,
                        name, o->dim, o->output);
    else
        rc = qd_ckpt_read_f32(ck, ti, &ref, &owned);
    const int64_t N = t ? t->shape[0] : 0;
    if (!rc && xi >= 0) { /* rows by sample index */
        const qd_tensor_info *x = qd_ckpt_tensor(ck, xi);
        const void *raw = NULL;
        if ((x->dtype != QD_DT_I64 && x->dtype != QD_DT_I32) || x->ndim != 1 || x->shape[0] != N)
            rc = qd_err_set(QD_ESHAPE, "%s: tensor 'sample_index' must be I64 or I32 [%lld], one index per row of '%s'",
                            path, (long long)N, name);
        else
            rc = qd_ckpt_raw(ck, xi, &raw);
        for (int i = 0; i < o->n; i++) row[i] = -1;
        for (int64_t j = 0; j < N && !rc; j++) {
            int64_t v;
            if (x->dtype == QD_DT_I64)
                memcpy(&v, (const char *)raw + 8 * j, 8);
            else {
                int32_t v32;
                memcpy(&v32, (const char *)raw + 4 * j, 4);
                v = v32;
            }
            if (v >= 0 && v < o->n && row[v] < 0) row[v] = j;
        }
        for (int i = 0; i < o->n && !rc; i++)
            if (row[i] < 0)
                rc = qd_err_set(QD_EMISMATCH, "%s: sample %d of the %d evaluated has no row in '%s' (sample_index)",
                                path, i, o->n, name);
    } else if (!rc) { /* row by row */
        if (N != o->n)
            rc = qd_err_set(QD_EMISMATCH, "%s: '%s' has %lld rows and no 'sample_index', but %d samples were evaluated",
                            path, name, (long long)N, o->n);
        for (int i = 0; i < o->n; i++) row[i] = i;
    }
    if (!rc) {
        s->n = o->n;
        match(o->quantized, ref, row, o->n, o->dim, o->classify, &s->quantized);
        match(o->fp32, ref, row, o->n, o->dim, o->classify, &s->fp32);
    }
    if (owned) free((void *)ref);
    free(row);
    qd_ckpt_close(ck);
    return rc;
}
