/* collective/coll_train_h5.c — quantized records of a qdist model file for training
 * (coll_train_h5.h). */
#include "collective/coll_train_h5.h"

#include <cjson/cJSON.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "collective/h5model.h"
#include "quant/actq.h"
#include "quant/prune.h"
#include "quant/quant.h"

void qd_coll_qtensor_free(qd_coll_qtensor *q)
{
    if (!q) return;
    free(q->codes);
    free(q->scales);
    free(q->zeros);
    free(q->g_idx);
    free(q->mask);
    memset(q, 0, sizeof *q);
}

/* The file, opened and validated by the model file's reader once for a run of reads of the same
 * path (training reads every Linear's record in turn). */
static qd_h5m *g_file;

static int open_model(const char *path, qd_h5m **f)
{
    if (g_file && !strcmp(qd_h5m_path(g_file), path)) {
        *f = g_file;
        return QD_OK;
    }
    qd_h5m_close(g_file);
    g_file = NULL;
    int rc = qd_h5m_open(path, NULL, &g_file);
    *f = g_file;
    return rc;
}

int qd_coll_actrec_read(const char *path, qd_actrec *r)
{
    memset(r, 0, sizeof *r);
    qd_h5m *f = NULL;
    int rc = open_model(path, &f);
    return rc ? rc : qd_h5m_read_activations(f, r);
}

int qd_coll_qtensor_read(const char *path, const char *name, qd_coll_qtensor *q)
{
    memset(q, 0, sizeof *q);
    qd_h5m *f = NULL;
    int rc = open_model(path, &f);
    if (rc) return rc;
    const int i = qd_h5m_find(f, name);
    if (i < 0) return qd_err_set(QD_ENOTFOUND, "%s: no tensor '%s'", path, name);
    const qd_h5m_record *r = qd_h5m_tensor(f, i);
    if (r->kind != QD_H5M_QUANTIZED) return qd_err_set(QD_ENOTFOUND, "%s: tensor '%s' is kept in float", path, name);
    if (qd_h5m_is_codebook(r))
        return qd_err_set(QD_EFORMAT, "%s: tensor '%s' holds K-means codebooks, which have no step sizes to train",
                          path, name);
    qd_h5m_values v;
    if ((rc = qd_h5m_read(f, i, &v))) return rc;
    snprintf(q->method, sizeof q->method, "%s", r->method);
    q->bits = r->bits;
    q->sym = r->sym;
    q->out = qd_h5m_rows(r);
    q->in = qd_h5m_cols(r);
    q->G = qd_h5m_group_cols(r);
    q->ng = r->ngroups;
    q->codes = qd_xmalloc((size_t)(q->out * q->in > 0 ? q->out * q->in : 1));
    qd_unpack_matrix(v.qweight, q->out, q->in, q->bits, q->codes);
    q->scales = v.scales;
    q->zeros = v.zeros; /* symmetric records: 2^(bits-1) */
    q->g_idx = v.g_idx;
    if (v.mask) { /* pruned: the kept weights (the others stay at the zero point's code) */
        q->mask = qd_xmalloc((size_t)(q->out * q->in) + 1);
        qd_mask_unpack(v.mask, q->out, q->in, q->mask);
    }
    v.scales = NULL;
    v.zeros = NULL;
    v.g_idx = NULL;
    qd_h5m_values_free(&v);
    return QD_OK;
}

/* One dataset of source record si copied whole into record ti of the writer. */
static int copy_dataset(qd_h5m *src, int si, qd_h5m_writer *w, int ti, const qd_h5m_field *fd)
{
    void *vals = NULL;
    int64_t n = 0, d[QD_H5M_MAX_DIMS];
    int rc = qd_h5m_read_field(src, si, fd->name, &vals, &n);
    if (!rc && fd->dims(qd_h5m_tensor(src, si), d) > 0) qd_h5m_write_rows(w, ti, fd->name, 0, d[0], vals);
    free(vals);
    return rc;
}

/* Record ti from the trained values t: codes (dense, or through the mask when pruned) and
 * scales; every other dataset (zeros, g_idx) as the source has it. */
static int write_trained(qd_h5m *src, int si, qd_h5m_writer *w, int ti, const qd_coll_qtensor *t)
{
    const qd_h5m_record *r = qd_h5m_tensor(src, si);
    int rc = QD_OK, nf;
    const qd_h5m_field *fields = qd_h5m_fields(&nf);
    for (int k = 0; k < nf && !rc; k++) {
        const qd_h5m_field *fd = &fields[k];
        if (fd->place != QD_H5M_TENSOR_DATASET || !qd_h5m_record_has(r, fd->name)) continue;
        if (!strcmp(fd->name, QD_H5M_QWEIGHT)) {
            uint8_t *packed = qd_xmalloc((size_t)(t->out * qd_packed_row_bytes(t->in, t->bits)) + 1);
            qd_pack_matrix(t->codes, t->out, t->in, t->bits, packed);
            qd_h5m_write_rows(w, ti, QD_H5M_QWEIGHT, 0, t->out, packed);
            free(packed);
        } else if (!strcmp(fd->name, QD_H5M_NZ_QWEIGHT)) {
            if (!t->mask) return qd_err_set(QD_EINVAL, "tensor '%s': pruned in the file but no mask", r->name);
            rc = qd_h5m_write_pruned_rows(w, ti, 0, t->out, t->codes, t->mask);
        } else if (!strcmp(fd->name, QD_H5M_MASK) || !strcmp(fd->name, QD_H5M_NM_INDEX))
            continue; /* written with nz_qweight */
        else if (!strcmp(fd->name, QD_H5M_SCALES))
            qd_h5m_write_rows(w, ti, QD_H5M_SCALES, 0, t->out, t->scales);
        else
            rc = copy_dataset(src, si, w, ti, fd);
    }
    return rc;
}

int qd_coll_qfile_rewrite(const char *src_path, const char *out, const char *const *names, const qd_coll_qtensor *q,
                          const double (*metrics)[4], int n, const char *method, const char *training_json,
                          const qd_actrec *act_new, int ranks, double seconds)
{
    qd_h5m *src = NULL; /* the source, validated */
    int rc = open_model(src_path, &src);
    if (rc) return rc;
    const qd_h5m_info *info = qd_h5m_info_of(src);
    cJSON *j = cJSON_Parse(info->quant_config), *tr = cJSON_Parse(training_json ? training_json : "{}");
    if (!j) j = cJSON_CreateObject();
    cJSON_DeleteItemFromObjectCaseSensitive(j, "training");
    cJSON_AddItemToObject(j, "training", tr ? tr : cJSON_CreateObject());
    char *qc = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    const qd_h5m_header h = {.arch = info->arch,
                             .model_config = info->model_config,
                             .quant_config = qc,
                             .source = info->source,
                             .calibration = info->calibration};
    qd_h5m_writer *w = NULL;
    rc = qd_h5m_create(MPI_COMM_SELF, out, &h, 0, &w);
    free(qc);
    if (rc) return rc;
    qd_actrec act;
    if (act_new)
        qd_h5m_write_activations(w, act_new);
    else if (qd_h5m_read_activations(src, &act) == QD_OK) {
        qd_h5m_write_activations(w, &act);
        qd_actrec_free(&act);
    }
    const int nt = qd_h5m_num_tensors(src);
    int *which = qd_xmalloc((size_t)(nt > 0 ? nt : 1) * sizeof *which); /* index into names, or -1 */
    for (int i = 0; i < nt; i++) {
        which[i] = -1;
        for (int k = 0; k < n; k++)
            if (!strcmp(names[k], qd_h5m_tensor(src, i)->name)) which[i] = k;
        qd_h5m_record r = *qd_h5m_tensor(src, i);
        r.complete = 0;
        if (which[i] >= 0) snprintf(r.method, sizeof r.method, "%s", method);
        if (qd_h5m_declare(w, &r) != i) rc = qd_err_set(QD_EHDF5, "%s: cannot declare tensor '%s'", out, r.name);
    }
    for (int k = 0; k < n && !rc; k++) {
        int found = 0;
        for (int i = 0; i < nt; i++) found |= which[i] == k;
        if (!found) rc = qd_err_set(QD_ENOTFOUND, "%s: no tensor '%s'", src_path, names[k]);
    }
    if (!rc) rc = qd_h5m_reserve(w);
    for (int i = 0; i < nt && !rc; i++) {
        const qd_h5m_record *r = qd_h5m_tensor(src, i);
        if (which[i] >= 0)
            rc = write_trained(src, i, w, i, &q[which[i]]);
        else {
            int nf;
            const qd_h5m_field *fields = qd_h5m_fields(&nf);
            for (int k = 0; k < nf && !rc; k++)
                if (fields[k].place == QD_H5M_TENSOR_DATASET && qd_h5m_record_has(r, fields[k].name))
                    rc = copy_dataset(src, i, w, i, &fields[k]);
        }
    }
    if (!rc) rc = qd_h5m_flush(w);
    for (int i = 0; i < nt && !rc; i++) {
        const qd_h5m_record *r = qd_h5m_tensor(src, i);
        const double *met = which[i] >= 0 && metrics ? metrics[which[i]] : r->has_metrics ? r->metrics : NULL;
        qd_h5m_mark_complete(w, i, r->kind == QD_H5M_QUANTIZED ? met : NULL);
    }
    free(which);
    if (rc) {
        qd_h5m_abandon(w);
        remove(qd_h5m_partial_path(w));
        return rc;
    }
    char when[32];
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    const qd_h5m_run run = {
        .created = when, .shard = "training", .ranks = ranks, .resumed_tensors = 0, .seconds = seconds};
    return qd_h5m_finish(w, &run);
}
