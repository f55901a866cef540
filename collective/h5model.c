/* collective/h5model.c — the qdist model file (see h5model.h, docs/FORMAT.md). */
#include "collective/h5model.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <hdf5.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "collective/collective.h"
#include "common/qd_common.h"

/* ---- kinds, types ------------------------------------------------------------------------ */

const char *qd_h5m_kind_name(qd_h5m_kind k)
{
    static const char *const n[QD_H5M_NKINDS_] = {"quantized", "float", "raw"};
    return k >= 0 && k < QD_H5M_NKINDS_ ? n[k] : "?";
}

const char *qd_h5m_type_name(qd_h5m_type t)
{
    static const char *const n[] = {"string", "int64", "float64", "uint8", "int32", "float32"};
    return t >= 0 && t < (int)QD_ARRAY_LEN(n) ? n[t] : "?";
}

size_t qd_h5m_type_size(qd_h5m_type t)
{
    static const size_t s[] = {1, 8, 8, 1, 4, 4};
    return t >= 0 && t < (int)QD_ARRAY_LEN(s) ? s[t] : 0;
}

/* the type in the file, and the native type values are converted to in memory */
static hid_t file_type(qd_h5m_type t)
{
    switch (t) {
    case QD_H5M_INT64: return H5T_STD_I64LE;
    case QD_H5M_FLOAT64: return H5T_IEEE_F64LE;
    case QD_H5M_UINT8: return H5T_STD_U8LE;
    case QD_H5M_INT32: return H5T_STD_I32LE;
    case QD_H5M_FLOAT32: return H5T_IEEE_F32LE;
    default: return H5T_C_S1;
    }
}

static hid_t mem_type(qd_h5m_type t)
{
    switch (t) {
    case QD_H5M_INT64: return H5T_NATIVE_INT64;
    case QD_H5M_FLOAT64: return H5T_NATIVE_DOUBLE;
    case QD_H5M_UINT8: return H5T_NATIVE_UINT8;
    case QD_H5M_INT32: return H5T_NATIVE_INT32;
    case QD_H5M_FLOAT32: return H5T_NATIVE_FLOAT;
    default: return H5T_C_S1;
    }
}

/* Whether an HDF5 type is exactly the element type the table names (datasets), or of its class
 * (attributes: any integer for int64, any float for float64, fixed or variable strings). */
static int type_is(hid_t t, qd_h5m_type want, int exact)
{
    H5T_class_t c = H5Tget_class(t);
    size_t s = H5Tget_size(t);
    H5T_sign_t sg = c == H5T_INTEGER ? H5Tget_sign(t) : H5T_SGN_ERROR;
    switch (want) {
    case QD_H5M_STRING: return c == H5T_STRING;
    case QD_H5M_INT64: return c == H5T_INTEGER && (!exact || (s == 8 && sg == H5T_SGN_2));
    case QD_H5M_FLOAT64: return c == H5T_FLOAT && (!exact || s == 8);
    case QD_H5M_UINT8: return c == H5T_INTEGER && s == 1 && sg == H5T_SGN_NONE;
    case QD_H5M_INT32: return c == H5T_INTEGER && s == 4 && sg == H5T_SGN_2;
    case QD_H5M_FLOAT32: return c == H5T_FLOAT && s == 4;
    }
    return 0;
}

/* ---- records --------------------------------------------------------------------------------- */

int64_t qd_h5m_numel(const qd_h5m_record *r)
{
    if (r->zero_d) return 1;
    int64_t n = 1;
    for (int d = 0; d < r->ndim; d++) n *= r->shape[d];
    return n;
}

int64_t qd_h5m_group_cols(const qd_h5m_record *r)
{
    int64_t C = qd_h5m_cols(r);
    return r->group_size > 0 && r->group_size < C ? r->group_size : C;
}

static void record_base(qd_h5m_record *r, const char *name, qd_h5m_kind kind, int ndim, const int64_t *shape,
                        const char *orig_dtype)
{
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name);
    r->kind = kind;
    /* a 0-d tensor records one dimension (its shape attribute is a scalar either way) */
    r->ndim = ndim > 0 ? ndim : 1;
    r->zero_d = ndim == 0;
    for (int d = 0; d < ndim && d < QD_H5M_MAX_DIMS; d++) r->shape[d] = shape[d];
    if (ndim == 0) r->shape[0] = shape ? shape[0] : 0;
    snprintf(r->orig_dtype, sizeof r->orig_dtype, "%s", orig_dtype);
    r->group_size = -1;
    r->ngroups = 1;
}

void qd_h5m_record_quantized(qd_h5m_record *r, const char *name, int64_t rows, int64_t cols, const char *orig_dtype,
                             const char *method, const qd_qscheme *s, int act_order)
{
    const int64_t shape[2] = {rows, cols};
    record_base(r, name, QD_H5M_QUANTIZED, 2, shape, orig_dtype);
    snprintf(r->method, sizeof r->method, "%s", method);
    r->bits = s->bits;
    r->sym = s->sym;
    r->gran = s->gran;
    r->act_order = act_order;
    r->group_size = s->gran == QD_GRAN_GROUP ? QD_MIN(s->group_size, cols) : -1;
    r->ngroups = s->gran == QD_GRAN_GROUP ? (cols + r->group_size - 1) / r->group_size : 1;
    qd_h5m_record_add(r, QD_H5M_QWEIGHT);
    qd_h5m_record_add(r, QD_H5M_SCALES);
    if (!s->sym) qd_h5m_record_add(r, QD_H5M_ZEROS);
    if (act_order) qd_h5m_record_add(r, QD_H5M_G_IDX);
}

void qd_h5m_record_float(qd_h5m_record *r, const char *name, int ndim, const int64_t *shape, const char *orig_dtype)
{
    record_base(r, name, QD_H5M_FLOAT, ndim, shape, orig_dtype);
    qd_h5m_record_add(r, QD_H5M_DATA);
}

void qd_h5m_record_raw(qd_h5m_record *r, const char *name, int ndim, const int64_t *shape, const char *orig_dtype,
                       int64_t bytes)
{
    record_base(r, name, QD_H5M_RAWBYTES, ndim, shape, orig_dtype);
    r->raw_bytes = bytes;
    qd_h5m_record_add(r, QD_H5M_RAW);
}

void qd_h5m_record_sparsity(qd_h5m_record *r, const char *pattern, const char *method)
{
    snprintf(r->sparsity, sizeof r->sparsity, "%s", pattern);
    snprintf(r->prune_method, sizeof r->prune_method, "%s", method);
    qd_h5m_record_add(r, QD_H5M_MASK);
}

/* ---- the table ------------------------------------------------------------------------------- */

static int dims_qweight(const qd_h5m_record *r, int64_t *d)
{
    d[0] = qd_h5m_rows(r);
    d[1] = QD_PACKED_ROW_BYTES(qd_h5m_cols(r), r->bits);
    return 2;
}

static int dims_groups(const qd_h5m_record *r, int64_t *d)
{
    d[0] = qd_h5m_rows(r);
    d[1] = r->ngroups;
    return 2;
}

static int dims_cols(const qd_h5m_record *r, int64_t *d)
{
    d[0] = qd_h5m_cols(r);
    return 1;
}

static int dims_shape(const qd_h5m_record *r, int64_t *d)
{
    for (int k = 0; k < r->ndim; k++) d[k] = r->shape[k];
    if (r->zero_d) d[0] = 1; /* a 0-d tensor's one value */
    return r->ndim;
}

static int dims_mask(const qd_h5m_record *r, int64_t *d)
{
    d[0] = qd_h5m_rows(r);
    d[1] = (qd_h5m_cols(r) + 7) / 8;
    return 2;
}

static int dims_bytes(const qd_h5m_record *r, int64_t *d)
{
    d[0] = r->raw_bytes;
    return 1;
}

static int always(const qd_h5m_record *r) { return r != NULL; }
static int asym(const qd_h5m_record *r) { return !r->sym; }
static int act_order(const qd_h5m_record *r) { return r->act_order; }
static int pruned(const qd_h5m_record *r) { return r->sparsity[0] != 0; }

static int why(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int why(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    return QD_EFORMAT;
}

/* The unused high bits of each row's last byte are zero (docs/FORMAT.md "Packing"): anything
 * else is a code beyond the row's columns. */
static int check_qweight(const qd_h5m_record *r, const void *v, int64_t n, char *w, size_t cap)
{
    const uint8_t *q = v;
    const int64_t C = qd_h5m_cols(r), rb = QD_PACKED_ROW_BYTES(C, r->bits), used = (C * r->bits) % 8;
    if (!used) return QD_OK;
    const uint8_t mask = (uint8_t)(0xFFu << used);
    for (int64_t i = rb - 1; i < n; i += rb)
        if (q[i] & mask)
            return why(w, cap, "row %lld: bits beyond its %lld codes are set (byte 0x%02x): codes out of range",
                       (long long)(i / rb), (long long)C, q[i]);
    return QD_OK;
}

/* One bit per column, low bit first: the unused high bits of each row's last byte are zero. */
static int check_mask(const qd_h5m_record *r, const void *v, int64_t n, char *w, size_t cap)
{
    const uint8_t *m = v;
    const int64_t C = qd_h5m_cols(r), rb = (C + 7) / 8, used = C % 8;
    if (!used) return QD_OK;
    const uint8_t mask = (uint8_t)(0xFFu << used);
    for (int64_t i = rb - 1; i < n; i += rb)
        if (m[i] & mask)
            return why(w, cap, "row %lld: bits beyond its %lld columns are set (byte 0x%02x)", (long long)(i / rb),
                       (long long)C, m[i]);
    return QD_OK;
}

static int check_scales(const qd_h5m_record *r, const void *v, int64_t n, char *w, size_t cap)
{
    const float *s = v;
    for (int64_t i = 0; i < n; i++)
        if (!(s[i] > 0 && isfinite(s[i])))
            return why(w, cap, "element %lld (row %lld) is %g; a scale must be a finite number > 0", (long long)i,
                       (long long)(i / r->ngroups), (double)s[i]);
    return QD_OK;
}

static int check_zeros(const qd_h5m_record *r, const void *v, int64_t n, char *w, size_t cap)
{
    const int32_t *z = v;
    const int32_t maxq = (1 << r->bits) - 1;
    for (int64_t i = 0; i < n; i++)
        if (z[i] < 0 || z[i] > maxq)
            return why(w, cap, "element %lld (row %lld) is %d, outside [0, %d] for %d bits", (long long)i,
                       (long long)(i / r->ngroups), z[i], maxq, r->bits);
    return QD_OK;
}

static int check_g_idx(const qd_h5m_record *r, const void *v, int64_t n, char *w, size_t cap)
{
    const int32_t *g = v;
    for (int64_t i = 0; i < n; i++)
        if (g[i] < 0 || g[i] >= r->ngroups)
            return why(w, cap, "column %lld is in group %d, outside [0, %lld)", (long long)i, g[i],
                       (long long)r->ngroups);
    return QD_OK;
}

static int check_finite(const qd_h5m_record *r, const void *v, int64_t n, char *w, size_t cap)
{
    const float *x = v;
    (void)r;
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return why(w, cap, "element %lld is %g", (long long)i, (double)x[i]);
    return QD_OK;
}

#define QK      QD_H5M_K(QD_H5M_QUANTIZED)
#define FK      QD_H5M_K(QD_H5M_FLOAT)
#define RK      QD_H5M_K(QD_H5M_RAWBYTES)
/* clang-format off */
static const qd_h5m_field k_fields[] = {
    /* name              place                  type            kinds      req vec present    dims          check */
    {"format",           QD_H5M_ROOT_ATTR,      QD_H5M_STRING,  0,          1, 0, NULL,      NULL,         NULL},
    {"format_version",   QD_H5M_ROOT_ATTR,      QD_H5M_INT64,   0,          1, 0, NULL,      NULL,         NULL},
    {"qdist_version",    QD_H5M_ROOT_ATTR,      QD_H5M_STRING,  0,          1, 0, NULL,      NULL,         NULL},
    {"status",           QD_H5M_ROOT_ATTR,      QD_H5M_STRING,  0,          0, 0, NULL,      NULL,         NULL},
    {"arch",             QD_H5M_ROOT_ATTR,      QD_H5M_STRING,  0,          1, 0, NULL,      NULL,         NULL},
    {"model_config",     QD_H5M_ROOT_ATTR,      QD_H5M_STRING,  0,          1, 0, NULL,      NULL,         NULL},
    {"quant_config",     QD_H5M_ROOT_ATTR,      QD_H5M_STRING,  0,          1, 0, NULL,      NULL,         NULL},
    {"source",           QD_H5M_ROOT_ATTR,      QD_H5M_STRING,  0,          1, 0, NULL,      NULL,         NULL},
    {"calibration",      QD_H5M_ROOT_ATTR,      QD_H5M_STRING,  0,          1, 0, NULL,      NULL,         NULL},
    {"created",          QD_H5M_RUN_ATTR,       QD_H5M_STRING,  0,          1, 0, NULL,      NULL,         NULL},
    {"ranks",            QD_H5M_RUN_ATTR,       QD_H5M_INT64,   0,          1, 0, NULL,      NULL,         NULL},
    {"shard",            QD_H5M_RUN_ATTR,       QD_H5M_STRING,  0,          1, 0, NULL,      NULL,         NULL},
    {"resumed_tensors",  QD_H5M_RUN_ATTR,       QD_H5M_INT64,   0,          1, 0, NULL,      NULL,         NULL},
    {"seconds",          QD_H5M_RUN_ATTR,       QD_H5M_FLOAT64, 0,          1, 0, NULL,      NULL,         NULL},
    {"kind",             QD_H5M_TENSOR_ATTR,    QD_H5M_STRING,  QD_H5M_KALL, 1, 0, NULL,     NULL,         NULL},
    {"shape",            QD_H5M_TENSOR_ATTR,    QD_H5M_INT64,   QD_H5M_KALL, 1, 1, NULL,     NULL,         NULL},
    {"orig_dtype",       QD_H5M_TENSOR_ATTR,    QD_H5M_STRING,  QD_H5M_KALL, 1, 0, NULL,     NULL,         NULL},
    {"method",           QD_H5M_TENSOR_ATTR,    QD_H5M_STRING,  QK,         1, 0, NULL,      NULL,         NULL},
    {"bits",             QD_H5M_TENSOR_ATTR,    QD_H5M_INT64,   QK,         1, 0, NULL,      NULL,         NULL},
    {"granularity",      QD_H5M_TENSOR_ATTR,    QD_H5M_STRING,  QK,         1, 0, NULL,      NULL,         NULL},
    {"group_size",       QD_H5M_TENSOR_ATTR,    QD_H5M_INT64,   QK,         1, 0, NULL,      NULL,         NULL},
    {"sym",              QD_H5M_TENSOR_ATTR,    QD_H5M_INT64,   QK,         1, 0, NULL,      NULL,         NULL},
    {"act_order",        QD_H5M_TENSOR_ATTR,    QD_H5M_INT64,   QK,         1, 0, NULL,      NULL,         NULL},
    {"complete",         QD_H5M_TENSOR_ATTR,    QD_H5M_INT64,   QD_H5M_KALL, 0, 0, NULL,     NULL,         NULL},
    {"metrics",          QD_H5M_TENSOR_ATTR,    QD_H5M_FLOAT64, QK,         0, 1, NULL,      NULL,         NULL},
    {"metrics_names",    QD_H5M_TENSOR_ATTR,    QD_H5M_STRING,  QK,         0, 0, NULL,      NULL,         NULL},
    {"sparsity",         QD_H5M_TENSOR_ATTR,    QD_H5M_STRING,  QK | FK,    0, 0, NULL,      NULL,         NULL},
    {"prune_method",     QD_H5M_TENSOR_ATTR,    QD_H5M_STRING,  QK | FK,    0, 0, NULL,      NULL,         NULL},
    {QD_H5M_QWEIGHT,     QD_H5M_TENSOR_DATASET, QD_H5M_UINT8,   QK,         1, 0, always,    dims_qweight, check_qweight},
    {QD_H5M_SCALES,      QD_H5M_TENSOR_DATASET, QD_H5M_FLOAT32, QK,         1, 0, always,    dims_groups,  check_scales},
    {QD_H5M_ZEROS,       QD_H5M_TENSOR_DATASET, QD_H5M_INT32,   QK,         1, 0, asym,      dims_groups,  check_zeros},
    {QD_H5M_G_IDX,       QD_H5M_TENSOR_DATASET, QD_H5M_INT32,   QK,         1, 0, act_order, dims_cols,    check_g_idx},
    {QD_H5M_DATA,        QD_H5M_TENSOR_DATASET, QD_H5M_FLOAT32, FK,         1, 0, always,    dims_shape,   check_finite},
    {QD_H5M_RAW,         QD_H5M_TENSOR_DATASET, QD_H5M_UINT8,   RK,         1, 0, always,    dims_bytes,   NULL},
    {QD_H5M_MASK,        QD_H5M_TENSOR_DATASET, QD_H5M_UINT8,   QK | FK,    1, 0, pruned,    dims_mask,    check_mask},
};
/* clang-format on */
#define NFIELDS ((int)QD_ARRAY_LEN(k_fields))

const qd_h5m_field *qd_h5m_fields(int *n)
{
    *n = NFIELDS;
    return k_fields;
}

int qd_h5m_field_find(qd_h5m_place place, const char *name)
{
    for (int i = 0; i < NFIELDS; i++)
        if (k_fields[i].place == place && !strcmp(k_fields[i].name, name)) return i;
    return -1;
}

/* bit of a dataset in qd_h5m_record.datasets: its index among the table's datasets */
static int ds_bit(const char *name)
{
    int b = 0;
    for (int i = 0; i < NFIELDS; i++)
        if (k_fields[i].place == QD_H5M_TENSOR_DATASET) {
            if (!strcmp(k_fields[i].name, name)) return b;
            b++;
        }
    return -1;
}

int qd_h5m_record_add(qd_h5m_record *r, const char *dataset)
{
    int i = qd_h5m_field_find(QD_H5M_TENSOR_DATASET, dataset), b = ds_bit(dataset);
    if (i < 0 || !(k_fields[i].kinds & QD_H5M_K(r->kind)) || b >= 32)
        return qd_err_set(QD_EINVAL, "tensor '%s': '%s' is not a dataset of %s records (collective/h5model.c)", r->name,
                          dataset, qd_h5m_kind_name(r->kind));
    r->datasets |= 1u << b;
    return QD_OK;
}

int qd_h5m_record_has(const qd_h5m_record *r, const char *dataset)
{
    int b = ds_bit(dataset);
    return b >= 0 && (r->datasets >> b & 1u);
}

static const char *gran_name(qd_granularity g)
{
    return g == QD_GRAN_TENSOR ? "tensor" : g == QD_GRAN_CHANNEL ? "channel" : "group";
}

/* ---- attributes (writer: every call checked) ------------------------------------------------- */

static void attr_str(hid_t obj, const char *name, const char *val)
{
    hid_t t = QD_H5_CHECK(H5Tcopy(H5T_C_S1));
    QD_H5_CHECK(H5Tset_size(t, strlen(val) + 1));
    QD_H5_CHECK(H5Tset_strpad(t, H5T_STR_NULLTERM));
    hid_t sp = QD_H5_CHECK(H5Screate(H5S_SCALAR));
    hid_t a = QD_H5_CHECK(H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT));
    QD_H5_CHECK(H5Awrite(a, t, val));
    QD_H5_CHECK(H5Aclose(a));
    QD_H5_CHECK(H5Sclose(sp));
    QD_H5_CHECK(H5Tclose(t));
}

/* n values; one value is written as a scalar */
static void attr_num(hid_t obj, const char *name, qd_h5m_type type, const void *v, int n)
{
    hsize_t d = (hsize_t)n;
    hid_t sp = QD_H5_CHECK(n == 1 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &d, NULL));
    hid_t a = QD_H5_CHECK(H5Acreate2(obj, name, file_type(type), sp, H5P_DEFAULT, H5P_DEFAULT));
    QD_H5_CHECK(H5Awrite(a, mem_type(type), v));
    QD_H5_CHECK(H5Aclose(a));
    QD_H5_CHECK(H5Sclose(sp));
}

static void attr_i64(hid_t obj, const char *name, int64_t v) { attr_num(obj, name, QD_H5M_INT64, &v, 1); }

/* ---- attributes (reader: failures are returned) ---------------------------------------------- */

/* A string attribute (fixed or variable length), malloc'd; NULL when absent or not a string. */
static char *get_str(hid_t obj, const char *name)
{
    if (H5Aexists(obj, name) <= 0) return NULL;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return NULL;
    hid_t t = H5Aget_type(a);
    char *out = NULL;
    if (t >= 0 && H5Tget_class(t) == H5T_STRING) {
        if (H5Tis_variable_str(t) > 0) {
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, H5T_VARIABLE);
            char *vs = NULL;
            if (H5Aread(a, mt, &vs) >= 0 && vs) out = qd_xstrdup(vs);
            if (vs) H5free_memory(vs);
            H5Tclose(mt);
        } else {
            size_t n = H5Tget_size(t);
            out = qd_xcalloc(n + 1, 1);
            if (H5Aread(a, t, out) < 0) {
                free(out);
                out = NULL;
            }
        }
    }
    if (t >= 0) H5Tclose(t);
    H5Aclose(a);
    return out;
}

/* Up to cap numbers of a numeric attribute (converted to `type`); returns how many it holds,
 * -1 when absent, -2 when not of the type's class. */
static int get_nums(hid_t obj, const char *name, qd_h5m_type type, void *v, int cap)
{
    if (H5Aexists(obj, name) <= 0) return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    int rc = -2;
    if (t >= 0 && type_is(t, type, 0) && n >= 0) {
        if (n <= cap && H5Aread(a, mem_type(type), v) >= 0)
            rc = (int)n;
        else if (n > cap)
            rc = (int)n;
    }
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    H5Aclose(a);
    return rc;
}

/* ---- writer ---------------------------------------------------------------------------------- */

typedef struct {
    qd_h5m_record r;
    hid_t g;
    hid_t ds[32]; /* by dataset bit */
} wrec;

struct qd_h5m_writer {
    MPI_Comm comm;
    int rank;
    char out[4096], partial[4200];
    hid_t file, tg;
    wrec *t;
    int n, cap;
};

const char *qd_h5m_partial_path(const qd_h5m_writer *w) { return w->partial; }

static hid_t make_dset(hid_t g, const char *name, qd_h5m_type type, int nd, const int64_t *dims)
{
    hsize_t hd[QD_H5M_MAX_DIMS];
    for (int k = 0; k < nd; k++) hd[k] = (hsize_t)dims[k];
    hid_t sp = QD_H5_CHECK(H5Screate_simple(nd, hd, NULL));
    hid_t d = QD_H5_CHECK(H5Dcreate2(g, name, file_type(type), sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    QD_H5_CHECK(H5Sclose(sp));
    return d;
}

/* Rank 0 checks an existing partial file against the job before every rank reopens it. */
static int check_resumable(const char *partial, const qd_h5m_header *h)
{
    qd_h5m *f = NULL;
    const qd_h5m_open_opts o = {.flags = QD_H5M_PARTIAL};
    int rc = qd_h5m_open(partial, &o, &f);
    if (rc) return qd_err_wrap(rc, "--resume");
    const qd_h5m_info *in = qd_h5m_info_of(f);
    if (strcmp(in->quant_config, h->quant_config))
        rc = qd_err_set(QD_EMISMATCH, "--resume: %s was written with other settings (%s; now %s)", partial,
                        in->quant_config, h->quant_config);
    else if (strcmp(in->source, h->source))
        rc = qd_err_set(QD_EMISMATCH, "--resume: %s was written from another checkpoint (%s; now %s)", partial,
                        in->source, h->source);
    qd_h5m_close(f);
    return rc;
}

int qd_h5m_create(MPI_Comm comm, const char *out, const qd_h5m_header *h, int resume, qd_h5m_writer **wout)
{
    *wout = NULL;
    qd_h5m_writer *w = qd_xcalloc(1, sizeof *w);
    w->comm = comm;
    w->rank = qd_coll_rank(comm);
    snprintf(w->out, sizeof w->out, "%s", out);
    snprintf(w->partial, sizeof w->partial, "%s.partial", out);
    w->file = w->tg = -1;
    char msg[1024];
    int st = resume && w->rank == 0 ? check_resumable(w->partial, h) : QD_OK;
    if ((st = qd_coll_agree_msg(comm, st, msg, sizeof msg, NULL))) {
        free(w);
        return st;
    }
    hid_t fapl = QD_H5_CHECK(H5Pcreate(H5P_FILE_ACCESS));
    QD_H5_CHECK(H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL));
    /* metadata written collectively (every rank creates the same objects anyway) */
    QD_H5_CHECK(H5Pset_coll_metadata_write(fapl, 1));
    H5E_auto2_t efn;
    void *edata;
    H5Eget_auto2(H5E_DEFAULT, &efn, &edata);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    w->file =
        resume ? H5Fopen(w->partial, H5F_ACC_RDWR, fapl) : H5Fcreate(w->partial, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Eset_auto2(H5E_DEFAULT, efn, edata);
    QD_H5_CHECK(H5Pclose(fapl));
    st = w->file < 0 ? qd_err_set(QD_EIO, "%s: cannot %s the output file", w->partial, resume ? "open" : "create")
                     : QD_OK;
    if ((st = qd_coll_agree_msg(comm, st, msg, sizeof msg, NULL))) {
        if (w->file >= 0) H5Fclose(w->file);
        free(w);
        return st;
    }
    if (resume)
        w->tg = QD_H5_CHECK(H5Gopen2(w->file, QD_H5M_TENSORS, H5P_DEFAULT));
    else {
        attr_str(w->file, "format", QD_H5M_FORMAT);
        attr_i64(w->file, "format_version", QD_H5M_FORMAT_VERSION);
        attr_str(w->file, "qdist_version", QD_VERSION);
        attr_str(w->file, "arch", h->arch);
        attr_str(w->file, "model_config", h->model_config);
        attr_str(w->file, "quant_config", h->quant_config);
        attr_str(w->file, "source", h->source);
        attr_str(w->file, "calibration", h->calibration);
        w->tg = QD_H5_CHECK(H5Gcreate2(w->file, QD_H5M_TENSORS, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    }
    *wout = w;
    return QD_OK;
}

int qd_h5m_declare(qd_h5m_writer *w, qd_h5m_record *r)
{
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->t = realloc(w->t, (size_t)w->cap * sizeof *w->t);
        QD_ASSERT(w->t);
    }
    wrec *x = &w->t[w->n];
    memset(x, 0, sizeof *x);
    x->r = *r;
    for (int b = 0; b < 32; b++) x->ds[b] = -1;
    const int resuming = H5Lexists(w->tg, r->name, H5P_DEFAULT) > 0;
    if (resuming) {
        x->g = QD_H5_CHECK(H5Gopen2(w->tg, r->name, H5P_DEFAULT));
        r->complete = QD_H5_CHECK(H5Aexists(x->g, "complete")) > 0;
        if (r->complete && r->kind == QD_H5M_QUANTIZED) {
            hid_t a = QD_H5_CHECK(H5Aopen(x->g, "metrics", H5P_DEFAULT));
            QD_H5_CHECK(H5Aread(a, H5T_NATIVE_DOUBLE, r->metrics));
            QD_H5_CHECK(H5Aclose(a));
            r->has_metrics = 1;
        }
        x->r = *r;
    } else {
        x->g = QD_H5_CHECK(H5Gcreate2(w->tg, r->name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
        attr_str(x->g, "kind", qd_h5m_kind_name(r->kind));
        if (r->sparsity[0]) {
            attr_str(x->g, "sparsity", r->sparsity);
            attr_str(x->g, "prune_method", r->prune_method);
        }
        attr_num(x->g, "shape", QD_H5M_INT64, r->shape, r->ndim);
        attr_str(x->g, "orig_dtype", r->orig_dtype);
        if (r->kind == QD_H5M_QUANTIZED) {
            attr_str(x->g, "method", r->method);
            attr_i64(x->g, "bits", r->bits);
            attr_str(x->g, "granularity", gran_name(r->gran));
            attr_i64(x->g, "group_size", r->group_size);
            attr_i64(x->g, "sym", r->sym);
            attr_i64(x->g, "act_order", r->act_order);
        }
    }
    /* its datasets, in table order */
    for (int i = 0, b = 0; i < NFIELDS; i++) {
        const qd_h5m_field *fd = &k_fields[i];
        if (fd->place != QD_H5M_TENSOR_DATASET) continue;
        if (r->datasets >> b & 1u) {
            int64_t dims[QD_H5M_MAX_DIMS];
            int nd = fd->dims(r, dims);
            x->ds[b] = resuming ? QD_H5_CHECK(H5Dopen2(x->g, fd->name, H5P_DEFAULT))
                                : make_dset(x->g, fd->name, fd->type, nd, dims);
        }
        b++;
    }
    return w->n++;
}

void qd_h5m_write_rows(qd_h5m_writer *w, int ti, const char *dataset, int64_t r0, int64_t n, const void *values)
{
    QD_ASSERT(ti >= 0 && ti < w->n);
    const int b = ds_bit(dataset), i = qd_h5m_field_find(QD_H5M_TENSOR_DATASET, dataset);
    QD_ASSERT(b >= 0 && i >= 0 && w->t[ti].ds[b] >= 0);
    if (n <= 0) return;
    hid_t d = w->t[ti].ds[b];
    hid_t fs = QD_H5_CHECK(H5Dget_space(d));
    int nd = QD_H5_CHECK(H5Sget_simple_extent_ndims(fs));
    hsize_t dims[QD_H5M_MAX_DIMS], start[QD_H5M_MAX_DIMS] = {0};
    QD_H5_CHECK(H5Sget_simple_extent_dims(fs, dims, NULL));
    for (int k = 1; k < nd; k++)
        if (dims[k] == 0) {
            QD_H5_CHECK(H5Sclose(fs));
            return;
        }
    start[0] = (hsize_t)r0;
    dims[0] = (hsize_t)n;
    QD_H5_CHECK(H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, dims, NULL));
    hid_t ms = QD_H5_CHECK(H5Screate_simple(nd, dims, NULL));
    QD_H5_CHECK(H5Dwrite(d, mem_type(k_fields[i].type), ms, fs, H5P_DEFAULT, values));
    QD_H5_CHECK(H5Sclose(ms));
    QD_H5_CHECK(H5Sclose(fs));
}

void qd_h5m_flush(qd_h5m_writer *w) { QD_H5_CHECK(H5Fflush(w->file, H5F_SCOPE_GLOBAL)); }

void qd_h5m_mark_complete(qd_h5m_writer *w, int ti, const double *metrics)
{
    QD_ASSERT(ti >= 0 && ti < w->n);
    wrec *x = &w->t[ti];
    if (x->r.kind == QD_H5M_QUANTIZED && metrics) {
        attr_num(x->g, "metrics", QD_H5M_FLOAT64, metrics, QD_H5M_NMETRICS);
        attr_str(x->g, "metrics_names", QD_H5M_METRICS_NAMES);
    }
    attr_i64(x->g, "complete", 1);
}

static void close_all(qd_h5m_writer *w)
{
    for (int i = 0; i < w->n; i++) {
        for (int b = 0; b < 32; b++)
            if (w->t[i].ds[b] >= 0) QD_H5_CHECK(H5Dclose(w->t[i].ds[b]));
        QD_H5_CHECK(H5Gclose(w->t[i].g));
    }
    QD_H5_CHECK(H5Gclose(w->tg));
    QD_H5_CHECK(H5Fclose(w->file));
    free(w->t);
}

int qd_h5m_finish(qd_h5m_writer *w, const qd_h5m_run *run)
{
    /* run bookkeeping (differs between runs): its own group, excluded when comparing files;
     * rank 0's clock for the values that differ between ranks */
    hid_t g = QD_H5_CHECK(H5Gcreate2(w->file, QD_H5M_RUN, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    char when[64];
    snprintf(when, sizeof when, "%s", run->created);
    double secs = run->seconds;
    qd_coll_bcast(w->comm, when, sizeof when, 0);
    qd_coll_bcast(w->comm, &secs, sizeof secs, 0);
    attr_str(g, "created", when);
    attr_i64(g, "ranks", run->ranks);
    attr_str(g, "shard", run->shard);
    attr_i64(g, "resumed_tensors", run->resumed_tensors);
    attr_num(g, "seconds", QD_H5M_FLOAT64, &secs, 1);
    QD_H5_CHECK(H5Gclose(g));
    attr_str(w->file, "status", QD_H5M_STATUS_COMPLETE);
    close_all(w);
    qd_coll_barrier(w->comm);
    int st = QD_OK;
    if (w->rank == 0 && rename(w->partial, w->out) != 0)
        st = qd_err_set(QD_EIO, "cannot rename %s to %s", w->partial, w->out);
    char msg[1024];
    st = qd_coll_agree_msg(w->comm, st, msg, sizeof msg, NULL);
    free(w);
    return st;
}

void qd_h5m_abandon(qd_h5m_writer *w)
{
    close_all(w);
    qd_coll_barrier(w->comm);
    free(w);
}

/* ---- reader ---------------------------------------------------------------------------------- */

struct qd_h5m {
    char *path;
    hid_t file, tg;
    unsigned flags;
    int (*arch_known)(const char *);
    qd_h5m_info info;
    char *strs[8]; /* the info's strings */
    qd_h5m_record *t;
    int n, cap;
    qd_h5m_problem *prob;
    int nprob, capprob;
    int first_rc;
};

const char *qd_h5m_path(const qd_h5m *f) { return f->path; }
const qd_h5m_info *qd_h5m_info_of(const qd_h5m *f) { return &f->info; }
int qd_h5m_num_tensors(const qd_h5m *f) { return f->n; }
const qd_h5m_record *qd_h5m_tensor(const qd_h5m *f, int i) { return i >= 0 && i < f->n ? &f->t[i] : NULL; }
int qd_h5m_num_problems(const qd_h5m *f) { return f->nprob; }
const qd_h5m_problem *qd_h5m_problem_at(const qd_h5m *f, int i) { return i >= 0 && i < f->nprob ? &f->prob[i] : NULL; }

int qd_h5m_find(const qd_h5m *f, const char *name)
{
    int lo = 0, hi = f->n - 1; /* the records are in name order (strcmp order, as HDF5's index) */
    while (lo <= hi) {
        int mid = (lo + hi) / 2, c = strcmp(f->t[mid].name, name);
        if (!c) return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

/* Records a problem with the file; returns its code. The first one is also the error returned
 * by a strict open. */
static int problem(qd_h5m *f, const char *tensor, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int problem(qd_h5m *f, const char *tensor, int code, const char *fmt, ...)
{
    if (f->nprob == f->capprob) {
        f->capprob = f->capprob ? 2 * f->capprob : 16;
        f->prob = realloc(f->prob, (size_t)f->capprob * sizeof *f->prob);
        QD_ASSERT(f->prob);
    }
    qd_h5m_problem *p = &f->prob[f->nprob++];
    snprintf(p->tensor, sizeof p->tensor, "%s", tensor ? tensor : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->what, sizeof p->what, fmt, ap);
    va_end(ap);
    if (!f->first_rc) {
        f->first_rc = code;
        if (tensor)
            qd_err_set(code, "%s: tensor '%s': %s", f->path, tensor, p->what);
        else
            qd_err_set(code, "%s: %s", f->path, p->what);
    }
    return code;
}

/* strict opens stop at the first problem */
static int stop(const qd_h5m *f) { return f->first_rc && !(f->flags & QD_H5M_LENIENT); }

static int json_object(const char *text)
{
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    int ok = cJSON_IsObject(j);
    cJSON_Delete(j);
    return ok;
}

static int check_root(qd_h5m *f)
{
    hid_t r = f->file;
    static const char *const text[] = {"qdist_version", "status", "arch",       "model_config",
                                       "quant_config",  "source", "calibration"};
    for (int i = 0; i < (int)QD_ARRAY_LEN(text); i++) {
        f->strs[i] = get_str(r, text[i]);
        if (!f->strs[i] && H5Aexists(r, text[i]) > 0)
            problem(f, NULL, QD_EFORMAT, "root attribute '%s' is not a string", text[i]);
        else if (!f->strs[i] && k_fields[qd_h5m_field_find(QD_H5M_ROOT_ATTR, text[i])].required)
            problem(f, NULL, QD_EFORMAT, "root attribute '%s' is missing", text[i]);
        if (!f->strs[i]) f->strs[i] = qd_xstrdup("");
    }
    f->info.qdist_version = f->strs[0];
    f->info.status = f->strs[1];
    f->info.arch = f->strs[2];
    f->info.model_config = f->strs[3];
    f->info.quant_config = f->strs[4];
    f->info.source = f->strs[5];
    f->info.calibration = f->strs[6];
    if (stop(f)) return f->first_rc;
    int64_t v = -1;
    int k = get_nums(r, "format_version", QD_H5M_INT64, &v, 1);
    f->info.format_version = k == 1 ? v : -1;
    if (k != 1)
        problem(f, NULL, QD_EFORMAT, "root attribute 'format_version' is %s", k == -1 ? "missing" : "not one integer");
    else if (v != QD_H5M_FORMAT_VERSION)
        problem(f, NULL, QD_EFORMAT, "format_version %lld is not supported (this qdist reads version %d)", (long long)v,
                QD_H5M_FORMAT_VERSION);
    if (!(f->flags & QD_H5M_PARTIAL) && strcmp(f->info.status, QD_H5M_STATUS_COMPLETE))
        problem(f, NULL, QD_EFORMAT, "status is '%s', not '%s': the job that wrote it did not finish", f->info.status,
                QD_H5M_STATUS_COMPLETE);
    static const char *const json[] = {"model_config", "quant_config", "source", "calibration"};
    for (int i = 0; i < 4 && !stop(f); i++)
        if (!json_object(f->strs[3 + i]))
            problem(f, NULL, QD_EFORMAT, "root attribute '%s' is not a JSON object", json[i]);
    if (stop(f)) return f->first_rc;
    /* arch: model_config's model_type ("unknown" when it has none), and one qdist runs */
    cJSON *mc = cJSON_Parse(f->info.model_config);
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(mc, "model_type");
    const char *want = cJSON_IsString(mt) ? mt->valuestring : "unknown";
    if (strcmp(f->info.arch, want))
        problem(f, NULL, QD_EFORMAT, "arch '%s' does not match model_config's model_type '%s'", f->info.arch, want);
    else if (f->arch_known && !f->arch_known(f->info.arch))
        problem(f, NULL, QD_EUNSUPPORTED, "arch '%s' is not an architecture qdist runs", f->info.arch);
    cJSON_Delete(mc);
    return f->first_rc;
}

/* Attributes and datasets of a group that the table does not name for it. */
typedef struct {
    qd_h5m *f;
    const char *tensor;
    qd_h5m_place place;
    unsigned kind_bit;
} unknown_ctx;

static herr_t on_attr(hid_t loc, const char *name, const H5A_info_t *ai, void *op)
{
    (void)loc;
    (void)ai;
    unknown_ctx *u = op;
    int i = qd_h5m_field_find(u->place, name);
    if (i < 0 || (u->kind_bit && !(k_fields[i].kinds & u->kind_bit)))
        problem(u->f, u->tensor, QD_EFORMAT, "attribute '%s' is not part of the format", name);
    return stop(u->f) ? 1 : 0;
}

static void check_attr_names(qd_h5m *f, hid_t obj, const char *tensor, qd_h5m_place place, unsigned kind_bit)
{
    unknown_ctx u = {f, tensor, place, kind_bit};
    hsize_t idx = 0;
    H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_INC, &idx, on_attr, &u);
}

static int parse_kind(const char *s, qd_h5m_kind *k)
{
    for (int i = 0; i < QD_H5M_NKINDS_; i++)
        if (s && !strcmp(s, qd_h5m_kind_name((qd_h5m_kind)i))) {
            *k = (qd_h5m_kind)i;
            return 1;
        }
    return 0;
}

/* The attributes of a quantized record. */
static void parse_quant_attrs(qd_h5m *f, hid_t g, qd_h5m_record *r)
{
    const char *nm = r->name;
    const int base = f->nprob;
    if (r->ndim != 2) {
        problem(f, nm, QD_EFORMAT, "shape has %d dimensions; quantized tensors have 2", r->ndim);
        return;
    }
    char *m = get_str(g, "method"), *gr = get_str(g, "granularity");
    snprintf(r->method, sizeof r->method, "%s", m ? m : "");
    int64_t v[4];
    const char *ints[4] = {"bits", "group_size", "sym", "act_order"};
    for (int i = 0; i < 4; i++)
        if (get_nums(g, ints[i], QD_H5M_INT64, &v[i], 1) != 1) {
            problem(f, nm, QD_EFORMAT, "attribute '%s' is missing or not one integer", ints[i]);
            v[i] = 0;
        }
    r->bits = (int)v[0];
    r->group_size = v[1];
    r->sym = (int)v[2];
    r->act_order = (int)v[3];
    if (f->nprob > base) goto out;
    if (!m || !m[0])
        problem(f, nm, QD_EFORMAT, "attribute 'method' is missing");
    else if (!qd_valid_bits(r->bits))
        problem(f, nm, QD_EFORMAT, "bits %d is outside 2..8", r->bits);
    else if ((r->sym != 0 && r->sym != 1) || (r->act_order != 0 && r->act_order != 1))
        problem(f, nm, QD_EFORMAT, "sym and act_order must be 0 or 1 (%d, %d)", r->sym, r->act_order);
    else if (!gr || (strcmp(gr, "tensor") && strcmp(gr, "channel") && strcmp(gr, "group")))
        problem(f, nm, QD_EFORMAT, "granularity '%s' is not tensor, channel or group", gr ? gr : "");
    if (f->nprob > base) goto out;
    r->gran = !strcmp(gr, "tensor") ? QD_GRAN_TENSOR : !strcmp(gr, "channel") ? QD_GRAN_CHANNEL : QD_GRAN_GROUP;
    const int64_t C = r->shape[1];
    if (r->gran == QD_GRAN_GROUP && !(r->group_size >= 1 && r->group_size <= C))
        problem(f, nm, QD_EFORMAT, "group_size %lld is outside [1, %lld] for granularity group",
                (long long)r->group_size, (long long)C);
    else if (r->gran != QD_GRAN_GROUP && r->group_size != -1)
        problem(f, nm, QD_EFORMAT, "group_size %lld must be -1 for granularity %s", (long long)r->group_size, gr);
    r->ngroups = r->gran == QD_GRAN_GROUP && r->group_size >= 1 ? (C + r->group_size - 1) / r->group_size : 1;
out:
    free(m);
    free(gr);
}

/* One record's datasets: present as the table says, of the table's type and shape. */
static void check_datasets(qd_h5m *f, hid_t g, qd_h5m_record *r)
{
    for (int i = 0, b = 0; i < NFIELDS && !stop(f); i++) {
        const qd_h5m_field *fd = &k_fields[i];
        if (fd->place != QD_H5M_TENSOR_DATASET) continue;
        const int bit = b++;
        const int here = H5Lexists(g, fd->name, H5P_DEFAULT) > 0;
        if (!(fd->kinds & QD_H5M_K(r->kind))) {
            if (here)
                problem(f, r->name, QD_EFORMAT, "dataset '%s' does not belong to a %s tensor", fd->name,
                        qd_h5m_kind_name(r->kind));
            continue;
        }
        const int want = fd->present(r);
        if (!here) {
            if (want) problem(f, r->name, QD_EFORMAT, "dataset '%s' is missing", fd->name);
            continue;
        }
        if (!want) {
            problem(f, r->name, QD_EFORMAT, "dataset '%s' should not be there (%s)", fd->name,
                    fd->present == asym        ? "symmetric tensors have no zeros"
                    : fd->present == act_order ? "act_order is 0"
                                               : "the tensor has no sparsity attribute");
            continue;
        }
        hid_t d = H5Dopen2(g, fd->name, H5P_DEFAULT);
        hid_t t = d >= 0 ? H5Dget_type(d) : -1, sp = d >= 0 ? H5Dget_space(d) : -1;
        hsize_t dims[QD_H5M_MAX_DIMS];
        int nd = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
        if (d < 0 || t < 0 || nd < 0 || nd > QD_H5M_MAX_DIMS)
            problem(f, r->name, QD_EFORMAT, "dataset '%s' cannot be read", fd->name);
        else if (!type_is(t, fd->type, 1))
            problem(f, r->name, QD_EFORMAT, "dataset '%s' holds %s%zu values; the format stores %s", fd->name,
                    H5Tget_class(t) == H5T_FLOAT     ? "float"
                    : H5Tget_class(t) == H5T_INTEGER ? "integer"
                                                     : "non-numeric",
                    8 * H5Tget_size(t), qd_h5m_type_name(fd->type));
        else {
            H5Sget_simple_extent_dims(sp, dims, NULL);
            int64_t want_d[QD_H5M_MAX_DIMS];
            int wn = fd->dims(r, want_d), same = wn == nd;
            for (int k = 0; same && k < nd; k++) same = (int64_t)dims[k] == want_d[k];
            if (!same) {
                char got[128] = "", exp[128] = "";
                for (int k = 0; k < nd; k++)
                    snprintf(got + strlen(got), sizeof got - strlen(got), "%s%llu", k ? ", " : "",
                             (unsigned long long)dims[k]);
                for (int k = 0; k < wn; k++)
                    snprintf(exp + strlen(exp), sizeof exp - strlen(exp), "%s%lld", k ? ", " : "",
                             (long long)want_d[k]);
                problem(f, r->name, QD_EFORMAT, "dataset '%s' has shape [%s]; the record needs [%s]", fd->name, got,
                        exp);
            } else
                r->datasets |= 1u << bit;
        }
        if (sp >= 0) H5Sclose(sp);
        if (t >= 0) H5Tclose(t);
        if (d >= 0) H5Dclose(d);
    }
}

static void check_links(qd_h5m *f, hid_t g, const char *tensor);

/* Elements of a dataset, or -1 when it is absent. */
static int64_t ds_points(hid_t g, const char *name)
{
    if (H5Lexists(g, name, H5P_DEFAULT) <= 0) return -1;
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT), sp = d >= 0 ? H5Dget_space(d) : -1;
    int64_t n = sp >= 0 ? (int64_t)H5Sget_simple_extent_npoints(sp) : -1;
    if (sp >= 0) H5Sclose(sp);
    if (d >= 0) H5Dclose(d);
    return n;
}

/* One tensor group: its record, checked. */
static void parse_record(qd_h5m *f, hid_t g, qd_h5m_record *r)
{
    const char *nm = r->name;
    const int base = f->nprob;
    char *kind = get_str(g, "kind"), *dt = get_str(g, "orig_dtype");
    if (!parse_kind(kind, &r->kind))
        problem(f, nm, QD_EFORMAT, "kind '%s' is not quantized, float or raw", kind ? kind : "(missing)");
    snprintf(r->orig_dtype, sizeof r->orig_dtype, "%s", dt ? dt : "");
    free(kind);
    free(dt);
    if (f->nprob > base) return;
    if (!r->orig_dtype[0]) problem(f, nm, QD_EFORMAT, "attribute 'orig_dtype' is missing");
    int k = get_nums(g, "shape", QD_H5M_INT64, r->shape, QD_H5M_MAX_DIMS);
    if (k < 1 || k > QD_H5M_MAX_DIMS) {
        problem(f, nm, QD_EFORMAT, "attribute 'shape' is missing or not 1 to %d integers", QD_H5M_MAX_DIMS);
        return;
    }
    r->ndim = k;
    for (int d = 0; d < k; d++)
        if (r->shape[d] < 0) problem(f, nm, QD_EFORMAT, "shape[%d] is %lld", d, (long long)r->shape[d]);
    r->group_size = -1;
    r->ngroups = 1;
    if (r->kind == QD_H5M_QUANTIZED) parse_quant_attrs(f, g, r);
    char *sp = get_str(g, "sparsity"), *pm = get_str(g, "prune_method");
    if ((sp != NULL) != (pm != NULL) || (sp && (!sp[0] || !pm[0])))
        problem(f, nm, QD_EFORMAT, "attributes 'sparsity' and 'prune_method' go together, non-empty");
    else if (sp && r->ndim != 2)
        problem(f, nm, QD_EFORMAT, "a pruned tensor has 2 dimensions, not %d", r->ndim);
    snprintf(r->sparsity, sizeof r->sparsity, "%s", sp ? sp : "");
    snprintf(r->prune_method, sizeof r->prune_method, "%s", pm ? pm : "");
    free(sp);
    free(pm);
    if (r->kind == QD_H5M_RAWBYTES) r->raw_bytes = QD_MAX(ds_points(g, QD_H5M_RAW), 0);
    /* a 0-d float tensor records shape [0] and holds one value */
    if (r->kind == QD_H5M_FLOAT && k == 1 && r->shape[0] == 0 && ds_points(g, QD_H5M_DATA) == 1) r->zero_d = 1;
    if (f->nprob > base) return;
    int64_t c = 0;
    r->complete = get_nums(g, "complete", QD_H5M_INT64, &c, 1) == 1 && c == 1;
    if (r->kind == QD_H5M_QUANTIZED) {
        int nmet = get_nums(g, "metrics", QD_H5M_FLOAT64, r->metrics, QD_H5M_NMETRICS);
        r->has_metrics = nmet == QD_H5M_NMETRICS;
        char *names = get_str(g, "metrics_names");
        if (r->complete && (!r->has_metrics || !names || strcmp(names, QD_H5M_METRICS_NAMES)))
            problem(f, nm, QD_EFORMAT, "a complete tensor needs metrics (float64[4]) and metrics_names '%s'",
                    QD_H5M_METRICS_NAMES);
        free(names);
    }
    if (!(f->flags & QD_H5M_PARTIAL) && !r->complete)
        problem(f, nm, QD_EFORMAT, "not marked complete in a finished file");
    check_attr_names(f, g, nm, QD_H5M_TENSOR_ATTR, QD_H5M_K(r->kind));
    check_datasets(f, g, r);
    check_links(f, g, nm);
}

/* Links of a tensor group that are not datasets of the table. */
typedef struct {
    qd_h5m *f;
    const char *tensor;
} link_ctx;

static herr_t on_link(hid_t g, const char *name, const H5L_info_t *info, void *op)
{
    (void)g;
    (void)info;
    link_ctx *c = op;
    if (qd_h5m_field_find(QD_H5M_TENSOR_DATASET, name) < 0)
        problem(c->f, c->tensor, QD_EFORMAT, "'%s' is not a dataset of the format", name);
    return stop(c->f) ? 1 : 0;
}

static void check_links(qd_h5m *f, hid_t g, const char *tensor)
{
    link_ctx c = {f, tensor};
    hsize_t idx = 0;
    H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, on_link, &c);
}

static herr_t on_tensor(hid_t tg, const char *name, const H5L_info_t *info, void *op)
{
    (void)info;
    qd_h5m *f = op;
    if (f->n == f->cap) {
        f->cap = f->cap ? 2 * f->cap : 64;
        f->t = realloc(f->t, (size_t)f->cap * sizeof *f->t);
        QD_ASSERT(f->t);
    }
    qd_h5m_record *r = &f->t[f->n];
    memset(r, 0, sizeof *r);
    if (strlen(name) >= sizeof r->name) {
        problem(f, NULL, QD_EFORMAT, "tensor name '%.60s...' is longer than %d bytes", name, QD_H5M_NAME_MAX - 1);
        return stop(f) ? 1 : 0;
    }
    snprintf(r->name, sizeof r->name, "%s", name);
    f->n++;
    H5O_info_t oi;
    if (H5Oget_info_by_name(tg, name, &oi, H5P_DEFAULT) < 0 || oi.type != H5O_TYPE_GROUP) {
        problem(f, name, QD_EFORMAT, "not a group");
        return stop(f) ? 1 : 0;
    }
    hid_t g = H5Gopen2(tg, name, H5P_DEFAULT);
    if (g < 0) {
        problem(f, name, QD_EFORMAT, "cannot be opened");
        return stop(f) ? 1 : 0;
    }
    const int before = f->nprob;
    parse_record(f, g, r);
    H5Gclose(g);
    if (f->nprob > before) r->complete = 0; /* not to be trusted */
    return stop(f) ? 1 : 0;
}

/* ---- missing tensors: every encoder layer holds the same tensors ----------------------------- */

/* "<prefix>.layer.<k>.<suffix>" (or ".layers."): *k, and the split points. */
static int layer_name(const char *name, int *k, size_t *pre_len, const char **suffix)
{
    for (const char *p = name; (p = strstr(p, ".layer")); p++) {
        const char *q = p + 6;
        if (*q == 's') q++;
        if (*q != '.' || !isdigit((unsigned char)q[1])) continue;
        char *end;
        long v = strtol(q + 1, &end, 10);
        if (*end != '.' || v < 0 || v > 100000) continue;
        *k = (int)v;
        *pre_len = (size_t)(q - name);
        *suffix = end + 1;
        return 1;
    }
    return 0;
}

static int ends_with_n(const char *s, size_t n, const char *tail)
{
    size_t t = strlen(tail);
    return n >= t && !strncmp(s + n - t, tail, t);
}

static void check_layers(qd_h5m *f)
{
    cJSON *mc = cJSON_Parse(f->info.model_config);
    const cJSON *nl = cJSON_GetObjectItemCaseSensitive(mc, "num_hidden_layers");
    const int cfg_layers = cJSON_IsNumber(nl) && nl->valuedouble > 0 ? (int)nl->valuedouble : 0;
    cJSON_Delete(mc);
    for (int i = 0; i < f->n && !stop(f); i++) {
        int k;
        size_t pl;
        const char *suf;
        if (!layer_name(f->t[i].name, &k, &pl, &suf)) continue;
        /* the first tensor (in name order) of each (prefix, suffix) checks the whole family */
        int first = 1, top = 0;
        for (int j = 0; j < f->n; j++) {
            int k2;
            size_t pl2;
            const char *suf2;
            if (!layer_name(f->t[j].name, &k2, &pl2, &suf2) || pl2 != pl || strncmp(f->t[j].name, f->t[i].name, pl) ||
                strcmp(suf, suf2))
                continue;
            if (j < i) first = 0;
            top = QD_MAX(top, k2 + 1);
        }
        if (!first) continue;
        /* encoder stacks have num_hidden_layers layers (shared-layer models name theirs otherwise) */
        const char *pre = f->t[i].name;
        if (cfg_layers > top && (ends_with_n(pre, pl, "encoder.layer") || ends_with_n(pre, pl, "encoder.layers")))
            top = cfg_layers;
        for (int kk = 0; kk < top && !stop(f); kk++) {
            char want[QD_H5M_NAME_MAX * 2];
            snprintf(want, sizeof want, "%.*s.%d.%s", (int)pl, pre, kk, suf);
            if (qd_h5m_find(f, want) < 0)
                problem(f, want, QD_ENOTFOUND, "missing: layer %d has no such tensor while other layers of %d do", kk,
                        top);
        }
    }
}

/* ---- values ---------------------------------------------------------------------------------- */

static void *read_ds(hid_t g, const char *name, qd_h5m_type type, int64_t *count)
{
    *count = 0;
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
    if (d < 0) return NULL;
    hid_t sp = H5Dget_space(d);
    hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    if (sp >= 0) H5Sclose(sp);
    void *buf = n >= 0 ? malloc((size_t)(n > 0 ? n : 1) * qd_h5m_type_size(type)) : NULL;
    if (buf && n > 0 && H5Dread(d, mem_type(type), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        free(buf);
        buf = NULL;
    }
    H5Dclose(d);
    if (buf) *count = n;
    return buf;
}

static hid_t open_tensor(const qd_h5m *f, int i) { return H5Gopen2(f->tg, f->t[i].name, H5P_DEFAULT); }

int qd_h5m_read_field(qd_h5m *f, int i, const char *dataset, void **values, int64_t *n)
{
    *values = NULL;
    *n = 0;
    int fi = qd_h5m_field_find(QD_H5M_TENSOR_DATASET, dataset);
    if (i < 0 || i >= f->n || fi < 0 || !qd_h5m_record_has(&f->t[i], dataset))
        return qd_err_set(QD_ENOTFOUND, "%s: tensor '%s' has no dataset '%s'", f->path,
                          i >= 0 && i < f->n ? f->t[i].name : "?", dataset);
    hid_t g = open_tensor(f, i);
    void *v = g >= 0 ? read_ds(g, dataset, k_fields[fi].type, n) : NULL;
    if (g >= 0) H5Gclose(g);
    if (!v) return qd_err_set(QD_EIO, "%s: tensor '%s': dataset '%s' cannot be read", f->path, f->t[i].name, dataset);
    *values = v;
    return QD_OK;
}

/* Reads every dataset of record i and checks its values. */
static void check_values(qd_h5m *f, int i)
{
    const qd_h5m_record *r = &f->t[i];
    hid_t g = open_tensor(f, i);
    for (int fi = 0; fi < NFIELDS && !stop(f) && g >= 0; fi++) {
        const qd_h5m_field *fd = &k_fields[fi];
        if (fd->place != QD_H5M_TENSOR_DATASET || !fd->check || !qd_h5m_record_has(r, fd->name)) continue;
        int64_t n;
        void *v = read_ds(g, fd->name, fd->type, &n);
        char w[400];
        if (!v)
            problem(f, r->name, QD_EIO, "dataset '%s' cannot be read", fd->name);
        else if (fd->check(r, v, n, w, sizeof w))
            problem(f, r->name, fd->check == check_finite || fd->check == check_scales ? QD_ENONFINITE : QD_EFORMAT,
                    "dataset '%s': %s", fd->name, w);
        free(v);
    }
    if (g >= 0) H5Gclose(g);
}

int qd_h5m_read(qd_h5m *f, int i, qd_h5m_values *v)
{
    memset(v, 0, sizeof *v);
    QD_ASSERT(i >= 0 && i < f->n);
    const qd_h5m_record *r = &f->t[i];
    int64_t n;
    int rc = QD_OK;
    if (r->kind == QD_H5M_QUANTIZED) {
        if (!(rc = qd_h5m_read_field(f, i, QD_H5M_QWEIGHT, (void **)&v->qweight, &n)) &&
            !(rc = qd_h5m_read_field(f, i, QD_H5M_SCALES, (void **)&v->scales, &n))) {
            if (r->sym) {
                const int64_t ns = qd_h5m_rows(r) * r->ngroups;
                v->zeros = qd_xmalloc((size_t)(ns > 0 ? ns : 1) * sizeof *v->zeros);
                for (int64_t k = 0; k < ns; k++) v->zeros[k] = 1 << (r->bits - 1);
            } else
                rc = qd_h5m_read_field(f, i, QD_H5M_ZEROS, (void **)&v->zeros, &n);
        }
        if (!rc && r->act_order) rc = qd_h5m_read_field(f, i, QD_H5M_G_IDX, (void **)&v->g_idx, &n);
    } else if (r->kind == QD_H5M_FLOAT)
        rc = qd_h5m_read_field(f, i, QD_H5M_DATA, (void **)&v->data, &n);
    else
        rc = qd_h5m_read_field(f, i, QD_H5M_RAW, (void **)&v->raw, &n);
    if (!rc && r->sparsity[0]) rc = qd_h5m_read_field(f, i, QD_H5M_MASK, (void **)&v->mask, &n);
    if (rc) qd_h5m_values_free(v);
    return rc;
}

void qd_h5m_values_free(qd_h5m_values *v)
{
    free(v->qweight);
    free(v->scales);
    free(v->zeros);
    free(v->g_idx);
    free(v->mask);
    free(v->data);
    free(v->raw);
    memset(v, 0, sizeof *v);
}

void qd_h5m_dequantize(const qd_h5m_record *r, const qd_h5m_values *v, float *out)
{
    const int64_t R = qd_h5m_rows(r), C = qd_h5m_cols(r), G = qd_h5m_group_cols(r);
    uint8_t *codes = qd_xmalloc((size_t)(R * C > 0 ? R * C : 1));
    qd_unpack_matrix(v->qweight, R, C, r->bits, codes);
    qd_qparams p = {.rows = R,
                    .cols = C,
                    .ngroups = r->ngroups,
                    .group_size = G,
                    .bits = r->bits,
                    .sym = r->sym,
                    .gran = G < C ? QD_GRAN_GROUP : QD_GRAN_CHANNEL,
                    .scales = v->scales,
                    .zeros = v->zeros};
    qd_dequantize(codes, &p, v->g_idx, out);
    free(codes);
}

/* ---- open ------------------------------------------------------------------------------------ */

static int open_file(qd_h5m *f)
{
    if (access(f->path, F_OK) != 0) return qd_err_set(QD_ENOENT, "%s: no such file", f->path);
    f->file = H5Fopen(f->path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f->file < 0) return qd_err_set(QD_EFORMAT, "%s: not an HDF5 file (or unreadable)", f->path);
    char *fmt = get_str(f->file, "format");
    int ok = fmt && !strcmp(fmt, QD_H5M_FORMAT);
    int rc = ok ? QD_OK
                : qd_err_set(QD_EFORMAT, "%s: not a qdist model (root attribute format is '%s', not '%s')", f->path,
                             fmt ? fmt : "(missing)", QD_H5M_FORMAT);
    free(fmt);
    return rc;
}

static void validate(qd_h5m *f)
{
    if (check_root(f) && stop(f)) return;
    check_attr_names(f, f->file, NULL, QD_H5M_ROOT_ATTR, 0);
    if (stop(f)) return;
    if (H5Lexists(f->file, QD_H5M_RUN, H5P_DEFAULT) > 0) {
        hid_t run = H5Gopen2(f->file, QD_H5M_RUN, H5P_DEFAULT);
        if (run >= 0) {
            check_attr_names(f, run, NULL, QD_H5M_RUN_ATTR, 0);
            H5Gclose(run);
        }
    }
    f->tg = H5Lexists(f->file, QD_H5M_TENSORS, H5P_DEFAULT) > 0 ? H5Gopen2(f->file, QD_H5M_TENSORS, H5P_DEFAULT) : -1;
    if (f->tg < 0) {
        problem(f, NULL, QD_EFORMAT, "the group /%s is missing", QD_H5M_TENSORS);
        return;
    }
    hsize_t idx = 0;
    H5Literate(f->tg, H5_INDEX_NAME, H5_ITER_INC, &idx, on_tensor, f);
    if (stop(f)) return;
    check_layers(f);
    /* values: every record whose structure is sound (resume: those marked complete) */
    for (int i = 0; i < f->n && !stop(f); i++) {
        const int sound = f->t[i].datasets != 0 && (f->t[i].complete || !(f->flags & QD_H5M_PARTIAL));
        if (sound) {
            const int before = f->nprob;
            check_values(f, i);
            if (f->nprob > before) f->t[i].complete = 0;
        }
    }
}

int qd_h5m_open(const char *path, const qd_h5m_open_opts *o, qd_h5m **out)
{
    *out = NULL;
    qd_h5m *f = qd_xcalloc(1, sizeof *f);
    f->path = qd_xstrdup(path);
    f->file = f->tg = -1;
    f->flags = o ? o->flags : 0;
    f->arch_known = o ? o->arch_known : NULL;
    H5E_auto2_t efn;
    void *edata;
    H5Eget_auto2(H5E_DEFAULT, &efn, &edata);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    int rc = open_file(f);
    if (!rc) {
        validate(f);
        if (!(f->flags & QD_H5M_LENIENT)) rc = f->first_rc;
    }
    H5Eset_auto2(H5E_DEFAULT, efn, edata);
    if (rc) {
        char msg[2048];
        snprintf(msg, sizeof msg, "%s", qd_errmsg());
        qd_h5m_close(f);
        return qd_err_set(rc, "%s", msg);
    }
    *out = f;
    return QD_OK;
}

void qd_h5m_close(qd_h5m *f)
{
    if (!f) return;
    if (f->tg >= 0) H5Gclose(f->tg);
    if (f->file >= 0) H5Fclose(f->file);
    for (int i = 0; i < (int)QD_ARRAY_LEN(f->strs); i++) free(f->strs[i]);
    free(f->t);
    free(f->prob);
    free(f->path);
    free(f);
}
