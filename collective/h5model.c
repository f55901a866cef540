/* collective/h5model.c — the model file's vocabulary: kinds, element types, tensor records, and
 * the table of every attribute and dataset with its shape and value check (see h5model.h).
 * Writing: h5model_write.c; reading and validation: h5model_read.c. */
#include "collective/h5model_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
hid_t qd_h5m__file_type(qd_h5m_type t)
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

hid_t qd_h5m__mem_type(qd_h5m_type t)
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
int qd_h5m__type_is(hid_t t, qd_h5m_type want, int exact)
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

void *qd_h5m__grow(void *p, int n, int *cap, size_t size)
{
    if (n < *cap) return p;
    *cap = *cap ? 2 * *cap : 64;
    p = realloc(p, (size_t)*cap * size);
    QD_ASSERT(p);
    return p;
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

/* A check's verdict: the message in buf, and the code (QD_EFORMAT, or QD_ENONFINITE for values
 * that are not finite numbers). */
static int why(int code, char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int why(int code, char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    return code;
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
            return why(QD_EFORMAT, w, cap,
                       "row %lld: bits beyond its %lld codes are set (byte 0x%02x): codes out of range",
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
            return why(QD_EFORMAT, w, cap, "row %lld: bits beyond its %lld columns are set (byte 0x%02x)",
                       (long long)(i / rb), (long long)C, m[i]);
    return QD_OK;
}

static int check_scales(const qd_h5m_record *r, const void *v, int64_t n, char *w, size_t cap)
{
    const float *s = v;
    for (int64_t i = 0; i < n; i++)
        if (!(s[i] > 0 && isfinite(s[i])))
            return why(QD_ENONFINITE, w, cap, "element %lld (row %lld) is %g; a scale must be a finite number > 0",
                       (long long)i, (long long)(i / r->ngroups), (double)s[i]);
    return QD_OK;
}

static int check_zeros(const qd_h5m_record *r, const void *v, int64_t n, char *w, size_t cap)
{
    const int32_t *z = v;
    const int32_t maxq = (1 << r->bits) - 1;
    for (int64_t i = 0; i < n; i++)
        if (z[i] < 0 || z[i] > maxq)
            return why(QD_EFORMAT, w, cap, "element %lld (row %lld) is %d, outside [0, %d] for %d bits", (long long)i,
                       (long long)(i / r->ngroups), z[i], maxq, r->bits);
    return QD_OK;
}

static int check_g_idx(const qd_h5m_record *r, const void *v, int64_t n, char *w, size_t cap)
{
    const int32_t *g = v;
    for (int64_t i = 0; i < n; i++)
        if (g[i] < 0 || g[i] >= r->ngroups)
            return why(QD_EFORMAT, w, cap, "column %lld is in group %d, outside [0, %lld)", (long long)i, g[i],
                       (long long)r->ngroups);
    return QD_OK;
}

static int check_finite(const qd_h5m_record *r, const void *v, int64_t n, char *w, size_t cap)
{
    const float *x = v;
    (void)r;
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return why(QD_ENONFINITE, w, cap, "element %lld is %g", (long long)i, (double)x[i]);
    return QD_OK;
}

#define QK QD_H5M_K(QD_H5M_QUANTIZED)
#define FK QD_H5M_K(QD_H5M_FLOAT)
#define RK QD_H5M_K(QD_H5M_RAWBYTES)
/* An attribute: name, place, type, the tensor kinds that carry it, required, a 1-D array. */
#define ATTR(nm, pl, ty, ki, rq, ve)                                                   \
    {                                                                                  \
        .name = nm, .place = pl, .type = ty, .kinds = ki, .required = rq, .vector = ve \
    }
/* A tensor dataset: name, type, kinds, when a record carries it (and in words), shape, check. */
#define DSET(nm, ty, ki, pr, wh, di, ch)                                                                               \
    {                                                                                                                  \
        .name = nm, .place = QD_H5M_TENSOR_DATASET, .type = ty, .kinds = ki, .required = 1, .present = pr, .when = wh, \
        .dims = di, .check = ch                                                                                        \
    }
#define ROOT QD_H5M_ROOT_ATTR
#define RUN  QD_H5M_RUN_ATTR
#define TENS QD_H5M_TENSOR_ATTR
/* clang-format off */
const qd_h5m_field qd_h5m__fields[] = {
    ATTR("format",          ROOT, QD_H5M_STRING,  0, 1, 0),
    ATTR("format_version",  ROOT, QD_H5M_INT64,   0, 1, 0),
    ATTR("qdist_version",   ROOT, QD_H5M_STRING,  0, 1, 0),
    ATTR("status",          ROOT, QD_H5M_STRING,  0, 0, 0),
    ATTR("arch",            ROOT, QD_H5M_STRING,  0, 1, 0),
    ATTR("model_config",    ROOT, QD_H5M_STRING,  0, 1, 0),
    ATTR("quant_config",    ROOT, QD_H5M_STRING,  0, 1, 0),
    ATTR("source",          ROOT, QD_H5M_STRING,  0, 1, 0),
    ATTR("calibration",     ROOT, QD_H5M_STRING,  0, 1, 0),
    ATTR("created",         RUN,  QD_H5M_STRING,  0, 1, 0),
    ATTR("ranks",           RUN,  QD_H5M_INT64,   0, 1, 0),
    ATTR("shard",           RUN,  QD_H5M_STRING,  0, 1, 0),
    ATTR("resumed_tensors", RUN,  QD_H5M_INT64,   0, 1, 0),
    ATTR("seconds",         RUN,  QD_H5M_FLOAT64, 0, 1, 0),
    ATTR("kind",            TENS, QD_H5M_STRING,  QD_H5M_KALL, 1, 0),
    ATTR("shape",           TENS, QD_H5M_INT64,   QD_H5M_KALL, 1, 1),
    ATTR("orig_dtype",      TENS, QD_H5M_STRING,  QD_H5M_KALL, 1, 0),
    ATTR("method",          TENS, QD_H5M_STRING,  QK, 1, 0),
    ATTR("bits",            TENS, QD_H5M_INT64,   QK, 1, 0),
    ATTR("granularity",     TENS, QD_H5M_STRING,  QK, 1, 0),
    ATTR("group_size",      TENS, QD_H5M_INT64,   QK, 1, 0),
    ATTR("sym",             TENS, QD_H5M_INT64,   QK, 1, 0),
    ATTR("act_order",       TENS, QD_H5M_INT64,   QK, 1, 0),
    ATTR("complete",        TENS, QD_H5M_INT64,   QD_H5M_KALL, 0, 0),
    ATTR("metrics",         TENS, QD_H5M_FLOAT64, QK, 0, 1),
    ATTR("metrics_names",   TENS, QD_H5M_STRING,  QK, 0, 0),
    ATTR("sparsity",        TENS, QD_H5M_STRING,  QK | FK, 0, 0),
    ATTR("prune_method",    TENS, QD_H5M_STRING,  QK | FK, 0, 0),
    DSET(QD_H5M_QWEIGHT, QD_H5M_UINT8,   QK, always, NULL, dims_qweight, check_qweight),
    DSET(QD_H5M_SCALES,  QD_H5M_FLOAT32, QK, always, NULL, dims_groups, check_scales),
    DSET(QD_H5M_ZEROS,   QD_H5M_INT32,   QK, asym, "asymmetric tensors", dims_groups, check_zeros),
    DSET(QD_H5M_G_IDX,   QD_H5M_INT32,   QK, act_order, "tensors with act_order 1", dims_cols, check_g_idx),
    DSET(QD_H5M_DATA,    QD_H5M_FLOAT32, FK, always, NULL, dims_shape, check_finite),
    DSET(QD_H5M_RAW,     QD_H5M_UINT8,   RK, always, NULL, dims_bytes, NULL),
    DSET(QD_H5M_MASK,    QD_H5M_UINT8,   QK | FK, pruned, "pruned tensors (with sparsity)", dims_mask, check_mask),
};
/* clang-format on */
const int qd_h5m__nfields = (int)QD_ARRAY_LEN(qd_h5m__fields);
#define NFIELDS qd_h5m__nfields

const qd_h5m_field *qd_h5m_fields(int *n)
{
    *n = NFIELDS;
    return qd_h5m__fields;
}

int qd_h5m_field_find(qd_h5m_place place, const char *name)
{
    for (int i = 0; i < NFIELDS; i++)
        if (qd_h5m__fields[i].place == place && !strcmp(qd_h5m__fields[i].name, name)) return i;
    return -1;
}

/* bit of a dataset in qd_h5m_record.datasets: its index among the table's datasets */
int qd_h5m__ds_bit(const char *name)
{
    int b = 0;
    for (int i = 0; i < NFIELDS; i++)
        if (qd_h5m__fields[i].place == QD_H5M_TENSOR_DATASET) {
            if (!strcmp(qd_h5m__fields[i].name, name)) return b;
            b++;
        }
    return -1;
}

int qd_h5m_record_add(qd_h5m_record *r, const char *dataset)
{
    int i = qd_h5m_field_find(QD_H5M_TENSOR_DATASET, dataset), b = qd_h5m__ds_bit(dataset);
    if (i < 0 || !(qd_h5m__fields[i].kinds & QD_H5M_K(r->kind)) || b >= 32)
        return qd_err_set(QD_EINVAL, "tensor '%s': '%s' is not a dataset of %s records (collective/h5model.c)", r->name,
                          dataset, qd_h5m_kind_name(r->kind));
    r->datasets |= 1u << b;
    return QD_OK;
}

int qd_h5m_record_has(const qd_h5m_record *r, const char *dataset)
{
    int b = qd_h5m__ds_bit(dataset);
    return b >= 0 && (r->datasets >> b & 1u);
}

int64_t qd_h5m_record_bytes(const qd_h5m_record *r)
{
    int64_t bytes = 0;
    for (int i = 0, b = 0; i < NFIELDS; i++) {
        const qd_h5m_field *fd = &qd_h5m__fields[i];
        if (fd->place != QD_H5M_TENSOR_DATASET) continue;
        if (r->datasets >> b++ & 1u) {
            int64_t d[QD_H5M_MAX_DIMS], n = 1;
            const int nd = fd->dims(r, d);
            for (int k = 0; k < nd; k++) n *= d[k];
            bytes += n * (int64_t)qd_h5m_type_size(fd->type);
        }
    }
    return bytes;
}

void qd_h5m_tensor_bytes(const qd_h5m *f, double *quantized, double *kept)
{
    *quantized = *kept = 0;
    for (int i = 0; i < qd_h5m_num_tensors(f); i++) {
        const qd_h5m_record *r = qd_h5m_tensor(f, i);
        *(r->kind == QD_H5M_QUANTIZED ? quantized : kept) += (double)qd_h5m_record_bytes(r);
    }
}

const char *qd_h5m_gran_name(qd_granularity g)
{
    return g == QD_GRAN_TENSOR ? "tensor" : g == QD_GRAN_CHANNEL ? "channel" : "group";
}
