/* coordinator/outputs_file.c — qdist's outputs files: the writer and the reference reader of
 * `forward` and `eval` (see outputs_file.h). */
#include "coordinator/outputs_file.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/qd_common.h"

const char *qd_outputs_embedding_name(const qd_model_config *c)
{
    if (c->arch == QD_ARCH_BERT) return "sentence_embedding";
    return c->embedding_dim != c->hidden ? "image_embeds" : "pooler_output";
}

int qd_outputs_write(const char *path, qd_st_out_tensor *t, int n, const char *command, const char *const *meta)
{
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "format", QD_OUTPUTS_FORMAT);
    cJSON_AddStringToObject(m, "version", QD_OUTPUTS_VERSION);
    cJSON_AddStringToObject(m, "command", command);
    for (int k = 0; meta && meta[k]; k += 2) cJSON_AddStringToObject(m, meta[k], meta[k + 1] ? meta[k + 1] : "");
    char *txt = cJSON_PrintUnformatted(m);
    cJSON_Delete(m);
    int rc = qd_st_write(path, t, n, txt);
    free(txt);
    return rc;
}

/* rows through sample_index (tensor xi of ck), or row by row */
static int match_rows(qd_checkpoint *ck, const char *path, const char *name, int64_t N, int64_t n, int64_t *row)
{
    const int xi = qd_ckpt_find(ck, "sample_index");
    if (xi < 0) {
        if (N != n)
            return qd_err_set(QD_EMISMATCH, "%s: '%s' has %lld rows and no 'sample_index', but there are %lld here",
                              path, name, (long long)N, (long long)n);
        for (int64_t i = 0; i < n; i++) row[i] = i;
        return QD_OK;
    }
    const qd_tensor_info *x = qd_ckpt_tensor(ck, xi);
    const void *raw = NULL;
    if ((x->dtype != QD_DT_I64 && x->dtype != QD_DT_I32) || x->ndim != 1 || x->shape[0] != N)
        return qd_err_set(QD_ESHAPE, "%s: tensor 'sample_index' must be I64 or I32 [%lld], one index per row of '%s'",
                          path, (long long)N, name);
    int rc = qd_ckpt_raw(ck, xi, &raw);
    if (rc) return rc;
    for (int64_t i = 0; i < n; i++) row[i] = -1;
    for (int64_t j = 0; j < N; j++) {
        int64_t v;
        if (x->dtype == QD_DT_I64)
            memcpy(&v, (const char *)raw + 8 * j, 8);
        else {
            int32_t v32;
            memcpy(&v32, (const char *)raw + 4 * j, 4);
            v = v32;
        }
        if (v >= 0 && v < n && row[v] < 0) row[v] = j;
    }
    for (int64_t i = 0; i < n; i++)
        if (row[i] < 0)
            return qd_err_set(QD_EMISMATCH, "%s: row %lld of the %lld here has no row in '%s' (sample_index)", path,
                              (long long)i, (long long)n, name);
    return QD_OK;
}

int qd_outputs_ref_open(qd_checkpoint *ck, const char *path, const char *name, int ndim, const int64_t *shape,
                        qd_outputs_ref *r)
{
    memset(r, 0, sizeof *r);
    const int ti = qd_ckpt_find(ck, name);
    if (ti < 0) return QD_OK;
    const qd_tensor_info *t = qd_ckpt_tensor(ck, ti);
    int same = t->ndim == ndim && t->float_like;
    int64_t width = 1;
    for (int d = 1; d < ndim; d++) {
        same = same && t->shape[d] == shape[d];
        width *= shape[d];
    }
    if (!same) {
        char want[96];
        int o = snprintf(want, sizeof want, "[rows");
        for (int d = 1; d < ndim && o < (int)sizeof want; d++)
            o += snprintf(want + o, sizeof want - o, ", %lld", (long long)shape[d]);
        if (o < (int)sizeof want) snprintf(want + o, sizeof want - o, "]");
        return qd_err_set(QD_ESHAPE, "%s: tensor '%s' must be a float %s array, as computed here", path, name, want);
    }
    r->row = qd_xmalloc((size_t)(shape[0] ? shape[0] : 1) * sizeof *r->row);
    int rc = match_rows(ck, path, name, t->shape[0], shape[0], r->row);
    if (!rc) rc = t->dtype == QD_DT_F64 ? qd_ckpt_raw(ck, ti, &r->raw) : qd_ckpt_read_f32(ck, ti, &r->f32, &r->owned);
    if (rc) {
        qd_outputs_ref_free(r);
        return rc;
    }
    r->t = t;
    r->width = width;
    return QD_OK;
}

double qd_outputs_ref_at(const qd_outputs_ref *r, int64_t i, int64_t k)
{
    const int64_t at = r->row[i] * r->width + k;
    if (r->raw) { /* F64 data need not be 8-byte aligned in the file */
        double y;
        memcpy(&y, (const char *)r->raw + 8 * at, 8);
        return y;
    }
    return r->f32[at];
}

void qd_outputs_ref_free(qd_outputs_ref *r)
{
    if (r->owned) free((void *)r->f32);
    free(r->row);
    memset(r, 0, sizeof *r);
}

double qd_outputs_cosine(const float *a, const float *b, int n)
{
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : (aa == bb ? 1.0 : 0.0);
}
