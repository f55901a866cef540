/* collective/h5_records.c — tensor records of a finished qdist model file (see h5_records.h). */
#include "collective/h5_records.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/qd_common.h"

struct qd_recfile {
    char path[4096];
    hid_t f, tensors;
    qd_rec *rec;
    int n, cap;
    char *attrs[8]; /* root strings, read on first use: names in root_names */
};

static const char *root_names[8] = {"model_config", "quant_config", "arch",          "source",
                                    "calibration",  "created",      "qdist_version", "status"};

/* A fixed- or variable-length string attribute, malloc'd; NULL when absent or not a string. */
static char *attr_text(hid_t obj, const char *name)
{
    if (H5Aexists(obj, name) <= 0) return NULL;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT), t = H5Aget_type(a);
    char *out = NULL;
    if (H5Tget_class(t) == H5T_STRING) {
        if (H5Tis_variable_str(t)) {
            char *v = NULL;
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, H5T_VARIABLE);
            H5Tset_cset(mt, H5Tget_cset(t)); /* h5py writes UTF-8 */
            if (H5Aread(a, mt, &v) >= 0 && v) {
                out = qd_xstrdup(v);
                H5free_memory(v);
            }
            H5Tclose(mt);
        } else {
            size_t n = H5Tget_size(t);
            out = qd_xcalloc(n + 1, 1);
            if (H5Aread(a, t, out) < 0) out[0] = 0;
        }
    }
    H5Tclose(t);
    H5Aclose(a);
    return out;
}

static void attr_copy(hid_t obj, const char *name, char *buf, size_t cap)
{
    char *s = attr_text(obj, name);
    snprintf(buf, cap, "%s", s ? s : "");
    free(s);
}

static int64_t attr_int(hid_t obj, const char *name, int64_t dflt)
{
    if (H5Aexists(obj, name) <= 0) return dflt;
    int64_t v = dflt;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (H5Aread(a, H5T_NATIVE_INT64, &v) < 0) v = dflt;
    H5Aclose(a);
    return v;
}

/* datasets every consumer of the format knows (docs/FORMAT.md) */
static int known_dataset(const char *n)
{
    static const char *k[] = {"qweight", "scales", "zeros", "g_idx", "data", "raw", "mask"};
    for (size_t i = 0; i < QD_ARRAY_LEN(k); i++)
        if (!strcmp(n, k[i])) return 1;
    return 0;
}

static herr_t on_dataset(hid_t g, const char *name, const H5L_info_t *info, void *op)
{
    (void)g;
    (void)info;
    qd_rec *r = op;
    if (!strcmp(name, "zeros")) r->has_zeros = 1;
    if (!strcmp(name, "g_idx")) r->has_g_idx = 1;
    if (!strcmp(name, "mask")) r->has_mask = 1;
    if (!known_dataset(name)) {
        size_t l = strlen(r->unknown);
        snprintf(r->unknown + l, sizeof r->unknown - l, "%s'%s'", l ? ", " : "", name);
    }
    return 0;
}

static herr_t on_tensor(hid_t tg, const char *name, const H5L_info_t *info, void *op)
{
    (void)info;
    qd_recfile *f = op;
    hid_t g = H5Gopen2(tg, name, H5P_DEFAULT);
    if (g < 0) return -1;
    if (f->n == f->cap) {
        f->cap = f->cap ? 2 * f->cap : 64;
        f->rec = realloc(f->rec, (size_t)f->cap * sizeof *f->rec);
        QD_ASSERT(f->rec);
    }
    qd_rec *r = &f->rec[f->n++];
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name);
    char kind[32];
    attr_copy(g, "kind", kind, sizeof kind);
    if (!strcmp(kind, "quantized"))
        r->kind = QD_REC_QUANTIZED;
    else if (!strcmp(kind, "float"))
        r->kind = QD_REC_FLOAT;
    else if (!strcmp(kind, "raw"))
        r->kind = QD_REC_RAW;
    else
        snprintf(r->unknown, sizeof r->unknown, "kind '%s'", kind);
    if (H5Aexists(g, "shape") > 0) {
        hid_t a = H5Aopen(g, "shape", H5P_DEFAULT), sp = H5Aget_space(a);
        hssize_t k = H5Sget_simple_extent_npoints(sp);
        if (k > 0 && k <= QD_REC_MAX_DIMS && H5Aread(a, H5T_NATIVE_INT64, r->shape) >= 0) r->ndim = (int)k;
        H5Sclose(sp);
        H5Aclose(a);
    }
    attr_copy(g, "orig_dtype", r->orig_dtype, sizeof r->orig_dtype);
    attr_copy(g, "method", r->method, sizeof r->method);
    attr_copy(g, "granularity", r->granularity, sizeof r->granularity);
    r->bits = (int)attr_int(g, "bits", 0);
    r->sym = (int)attr_int(g, "sym", 1);
    r->act_order = (int)attr_int(g, "act_order", 0);
    r->group_size = attr_int(g, "group_size", -1);
    if (!r->unknown[0]) H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, on_dataset, r);
    H5Gclose(g);
    return 0;
}

int qd_recfile_open(const char *path, qd_recfile **out)
{
    *out = NULL;
    H5E_auto2_t efn;
    void *edata;
    H5Eget_auto2(H5E_DEFAULT, &efn, &edata);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    qd_recfile *f = qd_xcalloc(1, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s", path);
    f->tensors = -1;
    int rc = QD_OK;
    FILE *probe = fopen(path, "rb");
    if (!probe) {
        rc = qd_err_set(QD_ENOENT, "%s: cannot open the model file", path);
        f->f = -1;
        goto out;
    }
    fclose(probe);
    f->f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f->f < 0) {
        rc = qd_err_set(QD_EFORMAT, "%s: not an HDF5 file (or unreadable)", path);
        goto out;
    }
    char fmt[32], status[32];
    attr_copy(f->f, "format", fmt, sizeof fmt);
    attr_copy(f->f, "status", status, sizeof status);
    int64_t ver = attr_int(f->f, "format_version", -1);
    if (strcmp(fmt, "qdist"))
        rc = qd_err_set(QD_EFORMAT, "%s: not a qdist model (attribute 'format' is '%s')", path, fmt);
    else if (ver != 1)
        rc = qd_err_set(QD_EFORMAT, "%s: unsupported format version %lld (this qdist reads version 1)", path,
                        (long long)ver);
    else if (strcmp(status, "complete"))
        rc = qd_err_set(QD_EFORMAT, "%s: the model is incomplete (status '%s'); finish it with quantize --resume", path,
                        status);
    else if (H5Lexists(f->f, "tensors", H5P_DEFAULT) <= 0 || (f->tensors = H5Gopen2(f->f, "tensors", H5P_DEFAULT)) < 0)
        rc = qd_err_set(QD_EFORMAT, "%s: the group /tensors is missing", path);
    else if (H5Literate(f->tensors, H5_INDEX_NAME, H5_ITER_INC, NULL, on_tensor, f) < 0)
        rc = qd_err_set(QD_EFORMAT, "%s: cannot read the records of /tensors", path);
out:
    H5Eset_auto2(H5E_DEFAULT, efn, edata);
    if (rc) {
        qd_recfile_close(f);
        return rc;
    }
    *out = f;
    return QD_OK;
}

void qd_recfile_close(qd_recfile *f)
{
    if (!f) return;
    if (f->tensors >= 0) H5Gclose(f->tensors);
    if (f->f >= 0) H5Fclose(f->f);
    for (size_t i = 0; i < QD_ARRAY_LEN(f->attrs); i++) free(f->attrs[i]);
    free(f->rec);
    free(f);
}

const char *qd_recfile_path(const qd_recfile *f) { return f->path; }
int qd_recfile_count(const qd_recfile *f) { return f->n; }
const qd_rec *qd_recfile_rec(const qd_recfile *f, int i)
{
    QD_ASSERT(i >= 0 && i < f->n);
    return &f->rec[i];
}

int qd_recfile_find(const qd_recfile *f, const char *name)
{
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->rec[i].name, name)) return i;
    return -1;
}

const char *qd_recfile_attr(const qd_recfile *f, const char *name)
{
    for (size_t i = 0; i < QD_ARRAY_LEN(root_names); i++)
        if (!strcmp(root_names[i], name)) {
            qd_recfile *m = (qd_recfile *)f;
            if (!m->attrs[i]) {
                H5E_auto2_t efn;
                void *edata;
                H5Eget_auto2(H5E_DEFAULT, &efn, &edata);
                H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
                char *s = attr_text(f->f, name);
                H5Eset_auto2(H5E_DEFAULT, efn, edata);
                m->attrs[i] = s ? s : qd_xstrdup("");
            }
            return m->attrs[i];
        }
    return "";
}

int qd_recfile_read(qd_recfile *f, int i, const char *ds, qd_rec_type type, void **values, int64_t *n)
{
    *values = NULL;
    *n = 0;
    const qd_rec *r = qd_recfile_rec(f, i);
    H5E_auto2_t efn;
    void *edata;
    H5Eget_auto2(H5E_DEFAULT, &efn, &edata);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    int rc = QD_OK;
    hid_t g = H5Gopen2(f->tensors, r->name, H5P_DEFAULT), d = -1;
    if (g < 0 || H5Lexists(g, ds, H5P_DEFAULT) <= 0) {
        rc = qd_err_set(QD_ENOTFOUND, "%s: tensor '%s' has no dataset '%s'", f->path, r->name, ds);
        goto out;
    }
    d = H5Dopen2(g, ds, H5P_DEFAULT);
    hid_t sp = d >= 0 ? H5Dget_space(d) : -1;
    hssize_t cnt = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    if (sp >= 0) H5Sclose(sp);
    static const size_t el[] = {1, 4, 4};
    hid_t mt = type == QD_REC_U8 ? H5T_NATIVE_UINT8 : type == QD_REC_I32 ? H5T_NATIVE_INT32 : H5T_NATIVE_FLOAT;
    void *buf = cnt >= 0 ? malloc((size_t)(cnt > 0 ? cnt : 1) * el[type]) : NULL;
    if (!buf || (cnt > 0 && H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)) {
        free(buf);
        rc = qd_err_set(QD_EFORMAT, "%s: tensor '%s': dataset '%s' cannot be read", f->path, r->name, ds);
        goto out;
    }
    *values = buf;
    *n = cnt;
out:
    if (d >= 0) H5Dclose(d);
    if (g >= 0) H5Gclose(g);
    H5Eset_auto2(H5E_DEFAULT, efn, edata);
    return rc;
}
