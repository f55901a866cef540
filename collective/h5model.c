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
    static const char *const n[] = {"string", "int64", "float64", "uint8", "int32", "float32", "float16"};
    return t >= 0 && t < (int)QD_ARRAY_LEN(n) ? n[t] : "?";
}

size_t qd_h5m_type_size(qd_h5m_type t)
{
    static const size_t s[] = {1, 8, 8, 1, 4, 4, 4};
    return t >= 0 && t < (int)QD_ARRAY_LEN(s) ? s[t] : 0;
}

size_t qd_h5m_type_file_size(qd_h5m_type t) { return t == QD_H5M_FLOAT16 ? 2 : qd_h5m_type_size(t); }

/* IEEE 754 binary16, little-endian: HDF5 1.10 has no predefined half type, so it is built from
 * the float32 type's description (the same layout h5py and numpy's float16 use). Made once. */
static hid_t half_type(void)
{
    static hid_t t = -1;
    if (t < 0) {
        t = H5Tcopy(H5T_IEEE_F32LE);
        if (t < 0 || H5Tset_fields(t, 15, 10, 5, 0, 10) < 0 || H5Tset_size(t, 2) < 0 || H5Tset_precision(t, 16) < 0 ||
            H5Tset_ebias(t, 15) < 0 || H5Tlock(t) < 0)
            QD_ASSERT(!"HDF5 float16 type");
    }
    return t;
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
    case QD_H5M_FLOAT16: return half_type();
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
    case QD_H5M_FLOAT32:
    case QD_H5M_FLOAT16: return H5T_NATIVE_FLOAT;
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
    case QD_H5M_FLOAT16: return c == H5T_FLOAT && (s == 2 || s == 4); /* float32: files before float16 */
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
    r->scales_f16 = s->scale_f16 && !qd_h5m_is_codebook(r);
    qd_h5m_record_add(r, QD_H5M_QWEIGHT);
    if (qd_h5m_is_codebook(r)) {
        r->sym = 1; /* levels, not a grid: no zero point */
        qd_h5m_record_add(r, QD_H5M_CODEBOOK);
    } else
        qd_h5m_record_add(r, QD_H5M_SCALES);
    if (!r->sym) qd_h5m_record_add(r, QD_H5M_ZEROS);
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

int qd_h5m__sparsity_of(const qd_h5m_record *r, qd_sparsity *sp)
{
    if (qd_sparsity_parse(r->sparsity, sp) != QD_OK) return QD_EINVAL;
    if (sp->n > 0 && qd_h5m_cols(r) % sp->m)
        return qd_err_set(QD_EINVAL, "%lld columns are not groups of %d", (long long)qd_h5m_cols(r), sp->m);
    return QD_OK;
}

int qd_h5m_record_sparsity(qd_h5m_record *r, const char *pattern, const char *method, int64_t block)
{
    snprintf(r->sparsity, sizeof r->sparsity, "%s", pattern);
    snprintf(r->prune_method, sizeof r->prune_method, "%s", method);
    qd_sparsity sp;
    if (r->ndim != 2 || qd_h5m__sparsity_of(r, &sp) != QD_OK)
        return qd_err_set(QD_EINVAL, "tensor '%s': sparsity '%s' does not fit a [%lld, %lld] tensor", r->name, pattern,
                          (long long)qd_h5m_rows(r), (long long)qd_h5m_cols(r));
    r->nm_n = sp.n;
    r->nm_m = sp.n > 0 ? sp.m : 0;
    r->nz_slots = qd_sparse_row_slots(&sp, qd_h5m_cols(r), block);
    const int b = qd_h5m__ds_bit(r->kind == QD_H5M_QUANTIZED ? QD_H5M_QWEIGHT : QD_H5M_DATA);
    r->datasets &= ~(1u << b);
    qd_h5m_record_add(r, r->kind == QD_H5M_QUANTIZED ? QD_H5M_NZ_QWEIGHT : QD_H5M_NZ_DATA);
    return qd_h5m_record_add(r, sp.n > 0 ? QD_H5M_NM_INDEX : QD_H5M_MASK);
}

int qd_h5m_is_codebook(const qd_h5m_record *r)
{
    return r->kind == QD_H5M_QUANTIZED && !strcmp(r->method, QD_H5M_CODEBOOK_METHOD);
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

static int dims_codebook(const qd_h5m_record *r, int64_t *d)
{
    d[0] = qd_h5m_rows(r);
    d[1] = r->ngroups;
    d[2] = (int64_t)1 << r->bits;
    return 3;
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

static int dims_nz_qweight(const qd_h5m_record *r, int64_t *d)
{
    d[0] = qd_h5m_rows(r);
    d[1] = QD_PACKED_ROW_BYTES(r->nz_slots, r->bits);
    return 2;
}

static int dims_nz_data(const qd_h5m_record *r, int64_t *d)
{
    d[0] = qd_h5m_rows(r);
    d[1] = r->nz_slots;
    return 2;
}

static int dims_nm_index(const qd_h5m_record *r, int64_t *d)
{
    d[0] = qd_h5m_rows(r);
    d[1] = r->nm_m ? qd_nm_index_row_bytes(qd_h5m_cols(r), r->nm_n, r->nm_m) : 0;
    return 2;
}

static int dims_bytes(const qd_h5m_record *r, int64_t *d)
{
    d[0] = r->raw_bytes;
    return 1;
}

static int always(const qd_h5m_record *r) { return r != NULL; }
static int asym(const qd_h5m_record *r) { return !r->sym; }
static int gridded(const qd_h5m_record *r) { return !qd_h5m_is_codebook(r); }
static int act_order(const qd_h5m_record *r) { return r->act_order; }
static int pruned(const qd_h5m_record *r) { return r->sparsity[0] != 0; }
static int dense(const qd_h5m_record *r) { return !pruned(r); }
static int unstructured(const qd_h5m_record *r) { return pruned(r) && !r->nm_m; }
static int n_of_m(const qd_h5m_record *r) { return pruned(r) && r->nm_m; }

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
static int check_codes(const qd_h5m_record *r, int64_t C, const void *v, int64_t n, char *w, size_t cap)
{
    const uint8_t *q = v;
    const int64_t rb = QD_PACKED_ROW_BYTES(C, r->bits), used = (C * r->bits) % 8;
    if (!used || rb == 0) return QD_OK;
    const uint8_t mask = (uint8_t)(0xFFu << used);
    for (int64_t i = rb - 1; i < n; i += rb)
        if (q[i] & mask)
            return why(QD_EFORMAT, w, cap,
                       "row %lld: bits beyond its %lld codes are set (byte 0x%02x): codes out of range",
                       (long long)(i / rb), (long long)C, q[i]);
    return QD_OK;
}

static int check_qweight(const qd_h5m_record *r, const void *v, int64_t n, char *w, size_t cap)
{
    return check_codes(r, qd_h5m_cols(r), v, n, w, cap);
}

static int check_nz_qweight(const qd_h5m_record *r, const void *v, int64_t n, char *w, size_t cap)
{
    return check_codes(r, r->nz_slots, v, n, w, cap);
}

/* One bit per column, low bit first: the unused high bits of each row's last byte are zero, and
 * a row keeps at most the values it stores. */
static int check_mask(const qd_h5m_record *r, const void *v, int64_t n, char *w, size_t cap)
{
    const uint8_t *m = v;
    const int64_t C = qd_h5m_cols(r), rb = (C + 7) / 8, used = C % 8;
    const uint8_t mask = used ? (uint8_t)(0xFFu << used) : 0;
    for (int64_t i = rb - 1; used && i < n; i += rb)
        if (m[i] & mask)
            return why(QD_EFORMAT, w, cap, "row %lld: bits beyond its %lld columns are set (byte 0x%02x)",
                       (long long)(i / rb), (long long)C, m[i]);
    for (int64_t row = 0; rb > 0 && row < n / rb; row++) {
        int64_t kept = 0;
        for (int64_t b = 0; b < rb; b++) kept += __builtin_popcount(m[row * rb + b]);
        if (kept > r->nz_slots)
            return why(QD_EFORMAT, w, cap, "row %lld keeps %lld weights; the record stores %lld per row",
                       (long long)row, (long long)kept, (long long)r->nz_slots);
    }
    return QD_OK;
}

/* N:M positions: each group's N positions below M, ascending. */
static int check_nm_index(const qd_h5m_record *r, const void *v, int64_t n, char *w, size_t cap)
{
    const int64_t slots = r->nz_slots, rb = qd_nm_index_row_bytes(qd_h5m_cols(r), r->nm_n, r->nm_m);
    const int ib = qd_nm_index_bits(r->nm_m);
    if (rb == 0) return QD_OK;
    uint8_t *pos = malloc((size_t)(slots > 0 ? slots : 1));
    if (!pos) return why(QD_EFORMAT, w, cap, "out of memory");
    int code = QD_OK;
    for (int64_t row = 0; row < n / rb && !code; row++) {
        const uint8_t *p = (const uint8_t *)v + row * rb;
        qd_unpack_row(p, slots, ib, pos);
        uint8_t spare = 0;
        if ((slots * ib) % 8) spare = p[rb - 1] & (uint8_t)(0xFFu << ((slots * ib) % 8));
        if (spare)
            code = why(QD_EFORMAT, w, cap, "row %lld: bits beyond its %lld positions are set", (long long)row,
                       (long long)slots);
        for (int64_t k = 0; k < slots && !code; k++)
            if (pos[k] >= r->nm_m || (k % r->nm_n && pos[k] <= pos[k - 1]))
                code = why(QD_EFORMAT, w, cap, "row %lld, group %lld: position %d %s (%d:%d)", (long long)row,
                           (long long)(k / r->nm_n), pos[k],
                           pos[k] >= r->nm_m ? "is beyond the group" : "is not ascending", r->nm_n, r->nm_m);
    }
    free(pos);
    return code;
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

/* Each group's levels are finite and ascending (readers may search them). */
static int check_codebook(const qd_h5m_record *r, const void *v, int64_t n, char *w, size_t cap)
{
    const float *c = v;
    const int64_t K = (int64_t)1 << r->bits;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(c[i]))
            return why(QD_ENONFINITE, w, cap, "element %lld (row %lld) is %g", (long long)i,
                       (long long)(i / (K * r->ngroups)), (double)c[i]);
        if (i % K && c[i] < c[i - 1])
            return why(QD_EFORMAT, w, cap, "row %lld, group %lld: level %lld (%g) is below the one before (%g)",
                       (long long)(i / (K * r->ngroups)), (long long)(i / K % r->ngroups), (long long)(i % K),
                       (double)c[i], (double)c[i - 1]);
    }
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

/* SmoothQuant factors: finite, within the clamp the writer applies (worker/smooth.h) */
static int check_smooth(const qd_h5m_record *r, const void *v, int64_t n, char *w, size_t cap)
{
    const float *s = v;
    (void)r;
    for (int64_t i = 0; i < n; i++)
        if (!(s[i] >= 1e-5f && s[i] <= 1e5f))
            return why(QD_EFORMAT, w, cap, "column %lld is %g; a smoothing factor is in [1e-5, 1e5]", (long long)i,
                       (double)s[i]);
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
/* A dataset a record may carry or not (nothing else in the record says which): required 0 */
#define OPTDSET(nm, ty, ki, wh, di, ch)                                                                        \
    {                                                                                                          \
        .name = nm, .place = QD_H5M_TENSOR_DATASET, .type = ty, .kinds = ki, .required = 0, .present = always, \
        .when = wh, .dims = di, .check = ch                                                                    \
    }
#define ROOT QD_H5M_ROOT_ATTR
#define RUN  QD_H5M_RUN_ATTR
#define TENS QD_H5M_TENSOR_ATTR
#define ACT  QD_H5M_ACT_ATTR
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
    ATTR("nonzeros_per_row", TENS, QD_H5M_INT64,  QK | FK, 0, 0),
    DSET(QD_H5M_QWEIGHT, QD_H5M_UINT8,   QK, dense, "tensors that are not pruned", dims_qweight, check_qweight),
    DSET(QD_H5M_SCALES,  QD_H5M_FLOAT32, QK, gridded, "tensors of methods other than kmeans", dims_groups, check_scales),
    DSET(QD_H5M_ZEROS,   QD_H5M_INT32,   QK, asym, "asymmetric tensors", dims_groups, check_zeros),
    DSET(QD_H5M_G_IDX,   QD_H5M_INT32,   QK, act_order, "tensors with act_order 1", dims_cols, check_g_idx),
    DSET(QD_H5M_DATA,    QD_H5M_FLOAT32, FK, dense, "tensors that are not pruned", dims_shape, check_finite),
    DSET(QD_H5M_RAW,     QD_H5M_UINT8,   RK, always, NULL, dims_bytes, NULL),
    DSET(QD_H5M_MASK,    QD_H5M_UINT8,   QK | FK, unstructured, "tensors pruned to a fraction", dims_mask, check_mask),
    DSET(QD_H5M_NM_INDEX, QD_H5M_UINT8,  QK | FK, n_of_m, "tensors pruned N:M", dims_nm_index, check_nm_index),
    DSET(QD_H5M_NZ_QWEIGHT, QD_H5M_UINT8, QK, pruned, "pruned tensors", dims_nz_qweight, check_nz_qweight),
    DSET(QD_H5M_NZ_DATA, QD_H5M_FLOAT32, FK, pruned, "pruned tensors", dims_nz_data, check_finite),
    ATTR("format",             ACT, QD_H5M_STRING,  0, 1, 0),
    ATTR("scheme",             ACT, QD_H5M_STRING,  0, 1, 0),
    ATTR("bits",               ACT, QD_H5M_INT64,   0, 1, 0),
    ATTR("calib",              ACT, QD_H5M_STRING,  0, 1, 0),
    ATTR("percentile",         ACT, QD_H5M_FLOAT64, 0, 1, 0),
    ATTR("calibration",        ACT, QD_H5M_STRING,  0, 1, 0),
    ATTR("names",              ACT, QD_H5M_STRING,  0, 1, 1),
    ATTR("scale",              ACT, QD_H5M_FLOAT32, 0, 1, 1),
    ATTR("zero_point",         ACT, QD_H5M_INT32,   0, 1, 1),
    ATTR("lo",                 ACT, QD_H5M_FLOAT32, 0, 1, 1),
    ATTR("hi",                 ACT, QD_H5M_FLOAT32, 0, 1, 1),
    ATTR("min",                ACT, QD_H5M_FLOAT32, 0, 1, 1),
    ATTR("max",                ACT, QD_H5M_FLOAT32, 0, 1, 1),
    ATTR("count",              ACT, QD_H5M_INT64,   0, 1, 1),
    ATTR("outlier_threshold",  ACT, QD_H5M_FLOAT64, 0, 1, 0),
    ATTR("outlier_offsets",    ACT, QD_H5M_INT32,   0, 0, 1),
    ATTR("outlier_channels",   ACT, QD_H5M_INT32,   0, 0, 1),
    ATTR("outlier_shift",      ACT, QD_H5M_INT32,   0, 0, 1),
    ATTR("outlier_zero_point", ACT, QD_H5M_INT32,   0, 0, 1),
    ATTR("outlier_lo",         ACT, QD_H5M_FLOAT32, 0, 0, 1),
    ATTR("outlier_hi",         ACT, QD_H5M_FLOAT32, 0, 0, 1),
    DSET(QD_H5M_CODEBOOK, QD_H5M_FLOAT16, QK, qd_h5m_is_codebook, "tensors of method kmeans", dims_codebook, check_codebook),
    OPTDSET(QD_H5M_SMOOTH, QD_H5M_FLOAT32, QK, "tensors of a job with smooth (quant_config)", dims_cols, check_smooth),
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
            const int f32 = fd->type == QD_H5M_FLOAT16 && r->codebook_f32; /* an older file's levels */
            const int f16 = r->scales_f16 && !strcmp(fd->name, QD_H5M_SCALES);
            bytes += n * (int64_t)(f32 ? 4 : f16 ? 2 : qd_h5m_type_file_size(fd->type));
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
