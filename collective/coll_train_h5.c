/* collective/coll_train_h5.c — quantized records of a qdist model file for training
 * (coll_train_h5.h). */
#include "collective/coll_train_h5.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collective/h5model.h"
#include "quant/quant.h"

void qd_coll_qtensor_free(qd_coll_qtensor *q)
{
    if (!q) return;
    free(q->codes);
    free(q->scales);
    free(q->zeros);
    free(q->g_idx);
    memset(q, 0, sizeof *q);
}

static hid_t open_checked(const char *path, unsigned mode)
{
    H5E_auto2_t fn;
    void *data;
    H5Eget_auto2(H5E_DEFAULT, &fn, &data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, mode, H5P_DEFAULT);
    H5Eset_auto2(H5E_DEFAULT, fn, data);
    return f;
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
    v.scales = NULL;
    v.zeros = NULL;
    v.g_idx = NULL;
    qd_h5m_values_free(&v);
    return QD_OK;
}

static int set_text(hid_t obj, const char *name, const char *val)
{
    if (H5Aexists(obj, name) > 0 && H5Adelete(obj, name) < 0) return -1;
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(val) + 1);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = a < 0 ? -1 : H5Awrite(a, t, val);
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    return e < 0 ? -1 : 0;
}

static int write_ds(hid_t g, const char *name, hid_t memtype, const void *buf)
{
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
    if (d < 0) return -1;
    herr_t e = H5Dwrite(d, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    H5Dclose(d);
    return e < 0 ? -1 : 0;
}

static int copy_bytes(const char *src, const char *dst)
{
    FILE *a = fopen(src, "rb"), *b = a ? fopen(dst, "wb") : NULL;
    if (!a || !b) {
        if (a) fclose(a);
        return qd_err_set(QD_EIO, "%s: cannot copy to %s: %s", src, dst, strerror(errno));
    }
    char buf[1 << 16];
    size_t k;
    int ok = 1;
    while ((k = fread(buf, 1, sizeof buf, a)) > 0) ok &= fwrite(buf, 1, k, b) == k;
    ok &= !ferror(a);
    fclose(a);
    if (fclose(b)) ok = 0;
    return ok ? QD_OK : qd_err_set(QD_EIO, "%s: write failed", dst);
}

int qd_coll_qfile_rewrite(const char *src, const char *out, const char *const *names, const qd_coll_qtensor *q,
                          const double (*metrics)[4], int n, const char *method, const char *training_json)
{
    char partial[4200];
    snprintf(partial, sizeof partial, "%s.partial", out);
    qd_h5m *m = NULL; /* the source, validated */
    int rc = open_model(src, &m);
    if (rc || (rc = copy_bytes(src, partial))) return rc;
    char *qc = qd_xstrdup(qd_h5m_info_of(m)->quant_config);
    hid_t f = open_checked(partial, H5F_ACC_RDWR);
    if (f < 0) {
        free(qc);
        return qd_err_set(QD_EIO, "%s: cannot open for writing", partial);
    }
    for (int i = 0; i < n && !rc; i++) {
        char gp[512];
        snprintf(gp, sizeof gp, "tensors/%s", names[i]);
        hid_t g = H5Gopen2(f, gp, H5P_DEFAULT);
        if (g < 0) {
            rc = qd_err_set(QD_ENOTFOUND, "%s: no tensor '%s'", src, names[i]);
            break;
        }
        const qd_coll_qtensor *t = &q[i];
        uint8_t *packed = qd_xmalloc((size_t)(t->out * qd_packed_row_bytes(t->in, t->bits)));
        qd_pack_matrix(t->codes, t->out, t->in, t->bits, packed);
        int e = write_ds(g, "qweight", H5T_NATIVE_UINT8, packed) ||
                write_ds(g, "scales", H5T_NATIVE_FLOAT, t->scales) || set_text(g, "method", method);
        free(packed);
        if (!e && metrics && H5Aexists(g, "metrics") > 0) {
            hid_t a = H5Aopen(g, "metrics", H5P_DEFAULT);
            e = a < 0 || H5Awrite(a, H5T_NATIVE_DOUBLE, metrics[i]) < 0;
            if (a >= 0) H5Aclose(a);
        }
        H5Gclose(g);
        if (e) rc = qd_err_set(QD_EHDF5, "%s: cannot rewrite tensor '%s'", partial, names[i]);
    }
    if (!rc) {
        cJSON *j = cJSON_Parse(qc), *tr = cJSON_Parse(training_json ? training_json : "{}");
        if (!j) j = cJSON_CreateObject();
        cJSON_DeleteItemFromObjectCaseSensitive(j, "training");
        cJSON_AddItemToObject(j, "training", tr ? tr : cJSON_CreateObject());
        char *txt = cJSON_PrintUnformatted(j);
        cJSON_Delete(j);
        if (set_text(f, "quant_config", txt)) rc = qd_err_set(QD_EHDF5, "%s: cannot write quant_config", partial);
        free(txt);
    }
    free(qc);
    if (H5Fclose(f) < 0 && !rc) rc = qd_err_set(QD_EHDF5, "%s: close failed", partial);
    if (!rc && rename(partial, out))
        rc = qd_err_set(QD_EIO, "%s: cannot rename to %s: %s", partial, out, strerror(errno));
    if (rc) remove(partial);
    return rc;
}
