/* collective/coll_train_h5.c — quantized records of a qdist model file for training
 * (coll_train_h5.h). */
#include "collective/coll_train_h5.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collective/h5_read.h"
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

static int check_file(hid_t f, const char *path)
{
    char *fmt = qd_h5_attr_text(f, "format"), *st = qd_h5_attr_text(f, "status");
    int ok = fmt && !strcmp(fmt, "qdist") && qd_h5_attr_int(f, "format_version", 0) == 1;
    int done = st && !strcmp(st, "complete");
    free(fmt);
    free(st);
    if (!ok) return qd_err_set(QD_EFORMAT, "%s: not a qdist model file (format 'qdist', version 1)", path);
    if (!done) return qd_err_set(QD_EFORMAT, "%s: the file is unfinished (no status 'complete')", path);
    return QD_OK;
}

int qd_coll_qtensor_read(const char *path, const char *name, qd_coll_qtensor *q)
{
    memset(q, 0, sizeof *q);
    hid_t f = open_checked(path, H5F_ACC_RDONLY);
    if (f < 0) return qd_err_set(QD_ENOENT, "%s: cannot open as HDF5", path);
    int rc = check_file(f, path);
    char gp[512];
    snprintf(gp, sizeof gp, "tensors/%s", name);
    if (!rc && H5Lexists(f, "tensors", H5P_DEFAULT) > 0 && H5Lexists(f, gp, H5P_DEFAULT) <= 0)
        rc = qd_err_set(QD_ENOTFOUND, "%s: no tensor '%s'", path, name);
    if (rc) {
        H5Fclose(f);
        return rc;
    }
    hid_t g = H5Gopen2(f, gp, H5P_DEFAULT);
    char *kind = qd_h5_attr_text(g, "kind"), *method = qd_h5_attr_text(g, "method");
    if (!kind || strcmp(kind, "quantized")) {
        rc = qd_err_set(QD_ENOTFOUND, "%s: tensor '%s' is kept in float", path, name);
        goto out;
    }
    snprintf(q->method, sizeof q->method, "%s", method ? method : "");
    int64_t shape[2] = {0, 0};
    if (H5Aexists(g, "shape") > 0) {
        hid_t a = H5Aopen(g, "shape", H5P_DEFAULT), sp = H5Aget_space(a);
        if (H5Sget_simple_extent_npoints(sp) == 2) H5Aread(a, H5T_NATIVE_INT64, shape);
        H5Sclose(sp);
        H5Aclose(a);
    }
    q->bits = (int)qd_h5_attr_int(g, "bits", 0);
    q->sym = (int)qd_h5_attr_int(g, "sym", 1);
    q->out = shape[0];
    q->in = shape[1];
    int64_t gs = qd_h5_attr_int(g, "group_size", -1);
    q->G = gs > 0 && gs < q->in ? gs : q->in;
    q->ng = q->in > 0 ? (q->in + q->G - 1) / q->G : 0;
    if (!qd_valid_bits(q->bits) || q->out <= 0 || q->in <= 0) {
        rc = qd_err_set(QD_EFORMAT, "%s: tensor '%s': bits %d, shape [%lld, %lld]", path, name, q->bits,
                        (long long)q->out, (long long)q->in);
        goto out;
    }
    size_t np = 0, ns = 0, nz = 0, ngi = 0;
    uint8_t *packed = qd_h5_read_ds(g, "qweight", H5T_NATIVE_UINT8, 1, &np);
    q->scales = qd_h5_read_ds(g, "scales", H5T_NATIVE_FLOAT, 4, &ns);
    q->zeros = q->sym ? NULL : qd_h5_read_ds(g, "zeros", H5T_NATIVE_INT32, 4, &nz);
    q->g_idx = qd_h5_read_ds(g, "g_idx", H5T_NATIVE_INT32, 4, &ngi);
    const int64_t rb = qd_packed_row_bytes(q->in, q->bits), nsc = q->out * q->ng;
    if (!packed || (int64_t)np != q->out * rb || !q->scales || (int64_t)ns != nsc ||
        (!q->sym && (!q->zeros || (int64_t)nz != nsc)) || (q->g_idx && (int64_t)ngi != q->in)) {
        free(packed);
        rc = qd_err_set(QD_EFORMAT, "%s: tensor '%s': datasets missing or of the wrong size", path, name);
        goto out;
    }
    if (q->g_idx && (rc = qd_check_g_idx(q->g_idx, q->in, q->ng, name))) {
        free(packed);
        goto out;
    }
    if (!q->zeros) {
        q->zeros = qd_xmalloc((size_t)nsc * sizeof *q->zeros);
        for (int64_t i = 0; i < nsc; i++) q->zeros[i] = 1 << (q->bits - 1);
    }
    for (int64_t i = 0; i < nsc; i++)
        if (!(q->scales[i] >= 0 && q->scales[i] < 3.4e38f)) {
            free(packed);
            rc = qd_err_set(QD_ENONFINITE, "%s: tensor '%s': scale %lld is not finite and non-negative", path, name,
                            (long long)i);
            goto out;
        }
    q->codes = qd_xmalloc((size_t)(q->out * q->in));
    qd_unpack_matrix(packed, q->out, q->in, q->bits, q->codes);
    free(packed);
out:
    free(kind);
    free(method);
    H5Gclose(g);
    H5Fclose(f);
    if (rc) qd_coll_qtensor_free(q);
    return rc;
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
    int rc = copy_bytes(src, partial);
    if (rc) return rc;
    hid_t f = open_checked(partial, H5F_ACC_RDWR);
    if (f < 0) return qd_err_set(QD_EIO, "%s: cannot open for writing", partial);
    if ((rc = check_file(f, src))) goto out;
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
        char *qc = qd_h5_attr_text(f, "quant_config");
        cJSON *j = qc ? cJSON_Parse(qc) : NULL, *tr = cJSON_Parse(training_json ? training_json : "{}");
        free(qc);
        if (!j) j = cJSON_CreateObject();
        cJSON_DeleteItemFromObjectCaseSensitive(j, "training");
        cJSON_AddItemToObject(j, "training", tr ? tr : cJSON_CreateObject());
        char *txt = cJSON_PrintUnformatted(j);
        cJSON_Delete(j);
        if (set_text(f, "quant_config", txt)) rc = qd_err_set(QD_EHDF5, "%s: cannot write quant_config", partial);
        free(txt);
    }
out:
    if (H5Fclose(f) < 0 && !rc) rc = qd_err_set(QD_EHDF5, "%s: close failed", partial);
    if (!rc && rename(partial, out))
        rc = qd_err_set(QD_EIO, "%s: cannot rename to %s: %s", partial, out, strerror(errno));
    if (rc) remove(partial);
    return rc;
}
