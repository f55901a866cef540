/* collective/h5model_read.c — opening, validating and reading a model file (see h5model.h).
 * Reading never aborts: a failing HDF5 call is a problem with the file, reported with the file,
 * tensor and field (HDF5's own error stack is silenced while a file is read). */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "collective/h5model_internal.h"
#include "quant/kmeans.h"

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
    if (t >= 0 && qd_h5m__type_is(t, type, 0) && n >= 0) {
        if (n <= cap && H5Aread(a, qd_h5m__mem_type(type), v) >= 0)
            rc = (int)n;
        else if (n > cap)
            rc = (int)n;
    }
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    H5Aclose(a);
    return rc;
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
    f->prob = qd_h5m__grow(f->prob, f->nprob, &f->capprob, sizeof *f->prob);
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
        else if (!f->strs[i] && qd_h5m__fields[qd_h5m_field_find(QD_H5M_ROOT_ATTR, text[i])].required)
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
    if (i < 0 || (u->kind_bit && !(qd_h5m__fields[i].kinds & u->kind_bit)))
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
    for (int i = 0, b = 0; i < qd_h5m__nfields && !stop(f); i++) {
        const qd_h5m_field *fd = &qd_h5m__fields[i];
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
            if (want && fd->required) problem(f, r->name, QD_EFORMAT, "dataset '%s' is missing", fd->name);
            continue;
        }
        if (!want) {
            problem(f, r->name, QD_EFORMAT, "dataset '%s' should not be there: only %s have it", fd->name,
                    fd->when ? fd->when : "other tensors");
            continue;
        }
        hid_t d = H5Dopen2(g, fd->name, H5P_DEFAULT);
        hid_t t = d >= 0 ? H5Dget_type(d) : -1, sp = d >= 0 ? H5Dget_space(d) : -1;
        hsize_t dims[QD_H5M_MAX_DIMS];
        int nd = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1, half = 0;
        if (d < 0 || t < 0 || nd < 0 || nd > QD_H5M_MAX_DIMS)
            problem(f, r->name, QD_EFORMAT, "dataset '%s' cannot be read", fd->name);
        else if (!(half = !strcmp(fd->name, QD_H5M_SCALES) && H5Tget_class(t) == H5T_FLOAT && H5Tget_size(t) == 2) &&
                 !qd_h5m__type_is(t, fd->type, 1))
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
            } else {
                r->datasets |= 1u << bit;
                if (fd->type == QD_H5M_FLOAT16) r->codebook_f32 = H5Tget_size(t) == 4;
                if (half) r->scales_f16 = 1; /* float16 scales, read as float like the levels */
            }
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
    if (r->sparsity[0] && f->nprob == base) {
        qd_sparsity pat;
        int64_t slots = -1;
        if (qd_h5m__sparsity_of(r, &pat) != QD_OK)
            problem(f, nm, QD_EFORMAT, "sparsity '%s' is not a fraction or an N:M pattern of its %lld columns",
                    r->sparsity, (long long)qd_h5m_cols(r));
        else if (get_nums(g, "nonzeros_per_row", QD_H5M_INT64, &slots, 1) != 1 || slots < 0 || slots > qd_h5m_cols(r) ||
                 (pat.n && slots != qd_sparse_row_slots(&pat, qd_h5m_cols(r), 0)))
            problem(f, nm, QD_EFORMAT, "attribute 'nonzeros_per_row' is missing or not a row's kept count (%lld)",
                    (long long)slots);
        else {
            r->nz_slots = slots;
            r->nm_n = pat.n;
            r->nm_m = pat.n ? pat.m : 0;
        }
    }
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
    f->t = qd_h5m__grow(f->t, f->n, &f->cap, sizeof *f->t);
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

/* ---- /activations ---------------------------------------------------------------------------- */

#define ACT "/" QD_H5M_ACTIVATIONS

/* want values of a 1-D numeric attribute of /activations into out */
static int act_vec(qd_h5m *f, hid_t g, const char *name, qd_h5m_type type, int want, void *out)
{
    char probe[8];
    int k = get_nums(g, name, type, probe, 0);
    if (k == -1) return problem(f, NULL, QD_EFORMAT, ACT ": attribute '%s' is missing", name);
    if (k == -2) return problem(f, NULL, QD_EFORMAT, ACT ": attribute '%s' is not %s", name, qd_h5m_type_name(type));
    if (k != want)
        return problem(f, NULL, QD_EFORMAT, ACT ": attribute '%s' has %d values; the record needs %d", name, k, want);
    if (get_nums(g, name, type, out, want) != want)
        return problem(f, NULL, QD_EFORMAT, ACT ": attribute '%s' cannot be read", name);
    return QD_OK;
}

static int act_names(qd_h5m *f, hid_t g, qd_actrec *r)
{
    if (H5Aexists(g, "names") <= 0) return problem(f, NULL, QD_EFORMAT, ACT ": attribute 'names' is missing");
    hid_t a = H5Aopen(g, "names", H5P_DEFAULT), t = a >= 0 ? H5Aget_type(a) : -1, sp = a >= 0 ? H5Aget_space(a) : -1;
    const hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    int rc = QD_OK;
    if (t < 0 || H5Tget_class(t) != H5T_STRING || H5Tis_variable_str(t) != 0)
        rc = problem(f, NULL, QD_EFORMAT, ACT ": attribute 'names' is not an array of fixed-length strings");
    else if (n < 1 || n > 1000000)
        rc = problem(f, NULL, QD_EFORMAT, ACT ": attribute 'names' lists %lld tensors", (long long)n);
    else {
        qd_actrec_alloc(r, (int)n);
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, QD_ACTQ_NAME_LEN);
        if (H5Aread(a, mt, r->name) < 0) rc = problem(f, NULL, QD_EFORMAT, ACT ": attribute 'names' cannot be read");
        H5Tclose(mt);
        for (int i = 0; i < r->n; i++) r->name[i][QD_ACTQ_NAME_LEN - 1] = 0;
    }
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    return rc;
}

/* The static outlier channels (absent: none) and their checks. */
static int act_outliers(qd_h5m *f, hid_t g, qd_actrec *r)
{
    const int n = r->n;
    if (H5Aexists(g, "outlier_offsets") <= 0) return QD_OK;
    int rc = act_vec(f, g, "outlier_offsets", QD_H5M_INT32, n + 1, r->out_off);
    for (int i = 0; !rc && i < n; i++)
        if (r->out_off[0] != 0 || r->out_off[i + 1] < r->out_off[i] || r->out_off[i + 1] - r->out_off[i] > 64)
            rc = problem(f, NULL, QD_EFORMAT,
                         ACT ": outlier_offsets must start at 0 and grow by 0 to 64 per tensor (tensor %d: %d to %d)",
                         i, r->out_off[i], r->out_off[i + 1]);
    if (rc) return rc;
    free(r->out_ch);
    r->out_ch = qd_xcalloc((size_t)QD_MAX(r->out_off[n], 1), sizeof(int32_t));
    if (r->out_off[n] > 0 && (rc = act_vec(f, g, "outlier_channels", QD_H5M_INT32, r->out_off[n], r->out_ch)))
        return rc;
    if ((rc = act_vec(f, g, "outlier_shift", QD_H5M_INT32, n, r->out_shift)) ||
        (rc = act_vec(f, g, "outlier_zero_point", QD_H5M_INT32, n, r->out_zp)) ||
        (rc = act_vec(f, g, "outlier_lo", QD_H5M_FLOAT32, n, r->out_lo)) ||
        (rc = act_vec(f, g, "outlier_hi", QD_H5M_FLOAT32, n, r->out_hi)))
        return rc;
    for (int i = 0; i < n; i++) {
        if (r->out_off[i + 1] == r->out_off[i]) continue;
        if (r->out_shift[i] < 1 || r->out_shift[i] > 24)
            return problem(f, NULL, QD_EFORMAT, ACT ": tensor '%s' has outlier_shift %d, outside [1, 24]", r->name[i],
                           r->out_shift[i]);
        for (int j = r->out_off[i]; j < r->out_off[i + 1]; j++)
            if (r->out_ch[j] < 0 || (j > r->out_off[i] && r->out_ch[j] <= r->out_ch[j - 1]))
                return problem(f, NULL, QD_EFORMAT, ACT ": tensor '%s': outlier channels are not increasing (%d)",
                               r->name[i], r->out_ch[j]);
    }
    return QD_OK;
}

/* Parses and checks the group g (/activations) into r; problems are recorded, the first code
 * returned (r freed then). */
static int parse_activations(qd_h5m *f, hid_t g, qd_actrec *r)
{
    memset(r, 0, sizeof *r);
    char *fmt = get_str(g, "format"), *scheme = get_str(g, "scheme"), *calib = get_str(g, "calib");
    int rc = QD_OK;
    if (!fmt || strcmp(fmt, "static-activations"))
        rc = problem(f, NULL, QD_EFORMAT, ACT ": format is '%s', not 'static-activations'", fmt ? fmt : "(missing)");
    else if (!scheme || strcmp(scheme, "asymmetric"))
        rc = problem(f, NULL, QD_EFORMAT, ACT ": scheme is '%s', not 'asymmetric'", scheme ? scheme : "(missing)");
    else if (!calib || qd_actq_method_from_name(calib, &r->method))
        rc = problem(f, NULL, QD_EFORMAT, ACT ": calib '%s' is not minmax, percentile, mse or entropy",
                     calib ? calib : "(missing)");
    free(fmt);
    free(scheme);
    free(calib);
    if (rc) return rc;
    int64_t bits = 0;
    r->calibration = get_str(g, "calibration");
    if (!json_object(r->calibration))
        rc = problem(f, NULL, QD_EFORMAT, ACT ": attribute 'calibration' is not a JSON object");
    else if (get_nums(g, "bits", QD_H5M_INT64, &bits, 1) != 1 || !qd_valid_bits((int)bits))
        rc = problem(f, NULL, QD_EFORMAT, ACT ": attribute 'bits' is missing or outside 2..8");
    else if (get_nums(g, "percentile", QD_H5M_FLOAT64, &r->percentile, 1) != 1 ||
             get_nums(g, "outlier_threshold", QD_H5M_FLOAT64, &r->outlier_threshold, 1) != 1 ||
             !(r->outlier_threshold >= 0))
        rc = problem(f, NULL, QD_EFORMAT,
                     ACT ": attributes 'percentile' and 'outlier_threshold' (>= 0) need one float64 each");
    char *calibration = r->calibration;
    r->calibration = NULL; /* qd_actrec_alloc below starts from zero */
    const qd_actq_method method = r->method;
    const double pct = r->percentile, thr = r->outlier_threshold;
    if (!rc) rc = act_names(f, g, r);
    r->calibration = calibration;
    r->method = method;
    r->percentile = pct;
    r->outlier_threshold = thr;
    r->bits = (int)bits;
    const int n = r->n;
    if (!rc) {
        const struct {
            const char *name;
            qd_h5m_type type;
            void *out;
        } arr[] = {{"scale", QD_H5M_FLOAT32, r->scale}, {"zero_point", QD_H5M_INT32, r->zero_point},
                   {"lo", QD_H5M_FLOAT32, r->lo},       {"hi", QD_H5M_FLOAT32, r->hi},
                   {"min", QD_H5M_FLOAT32, r->min},     {"max", QD_H5M_FLOAT32, r->max},
                   {"count", QD_H5M_INT64, r->count}};
        for (size_t i = 0; !rc && i < QD_ARRAY_LEN(arr); i++)
            rc = act_vec(f, g, arr[i].name, arr[i].type, n, arr[i].out);
    }
    for (int i = 0; !rc && i < n; i++)
        if (!(r->scale[i] > 0 && isfinite(r->scale[i])) || r->zero_point[i] < -32768 || r->zero_point[i] > 32767)
            rc = problem(f, NULL, QD_ENONFINITE, ACT ": tensor '%s' has scale %g and zero point %d", r->name[i],
                         (double)r->scale[i], r->zero_point[i]);
    if (!rc) rc = act_outliers(f, g, r);
    if (rc) qd_actrec_free(r);
    return rc;
}

static void check_activations(qd_h5m *f)
{
    if (H5Lexists(f->file, QD_H5M_ACTIVATIONS, H5P_DEFAULT) <= 0) return;
    hid_t g = H5Gopen2(f->file, QD_H5M_ACTIVATIONS, H5P_DEFAULT);
    if (g < 0) {
        problem(f, NULL, QD_EFORMAT, ACT " is not a group");
        return;
    }
    check_attr_names(f, g, NULL, QD_H5M_ACT_ATTR, 0);
    qd_actrec r;
    if (!stop(f) && !parse_activations(f, g, &r)) qd_actrec_free(&r);
    H5Gclose(g);
}

int qd_h5m_read_activations(qd_h5m *f, qd_actrec *r)
{
    memset(r, 0, sizeof *r);
    if (H5Lexists(f->file, QD_H5M_ACTIVATIONS, H5P_DEFAULT) <= 0)
        return qd_err_set(QD_ENOTFOUND,
                          "%s: no static activation scales (quantize with --activations static --calib DATA)", f->path);
    hid_t g = H5Gopen2(f->file, QD_H5M_ACTIVATIONS, H5P_DEFAULT);
    if (g < 0) return qd_err_set(QD_EFORMAT, "%s: " ACT " cannot be opened", f->path);
    const int before = f->nprob;
    int rc = parse_activations(f, g, r);
    H5Gclose(g);
    if (rc) qd_err_set(rc, "%s: %s", f->path, f->prob[before].what);
    return rc;
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
    if (buf && n > 0 && H5Dread(d, qd_h5m__mem_type(type), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
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
    void *v = g >= 0 ? read_ds(g, dataset, qd_h5m__fields[fi].type, n) : NULL;
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
    for (int fi = 0; fi < qd_h5m__nfields && !stop(f) && g >= 0; fi++) {
        const qd_h5m_field *fd = &qd_h5m__fields[fi];
        if (fd->place != QD_H5M_TENSOR_DATASET || !fd->check || !qd_h5m_record_has(r, fd->name)) continue;
        int64_t n;
        void *v = read_ds(g, fd->name, fd->type, &n);
        char w[400];
        int code;
        if (!v)
            problem(f, r->name, QD_EIO, "dataset '%s' cannot be read", fd->name);
        else if ((code = fd->check(r, v, n, w, sizeof w)))
            problem(f, r->name, code, "dataset '%s': %s", fd->name, w);
        free(v);
    }
    if (g >= 0) H5Gclose(g);
}

/* A pruned record's packed values, dense: qweight (pruned weights at the zero point's code) or
 * data (zeros), and the packed mask. The scales, zeros and g_idx are in v already. */
static int read_pruned(qd_h5m *f, int i, qd_h5m_values *v)
{
    const qd_h5m_record *r = &f->t[i];
    const int quant = r->kind == QD_H5M_QUANTIZED;
    const int64_t R = qd_h5m_rows(r), C = qd_h5m_cols(r), S = r->nz_slots, G = quant ? qd_h5m_group_cols(r) : 1;
    const qd_sparsity sp = {.n = r->nm_n, .m = r->nm_m};
    void *nz = NULL, *idx = NULL;
    int64_t n;
    int rc = qd_h5m_read_field(f, i, quant ? QD_H5M_NZ_QWEIGHT : QD_H5M_NZ_DATA, &nz, &n);
    if (!rc) rc = qd_h5m_read_field(f, i, sp.n ? QD_H5M_NM_INDEX : QD_H5M_MASK, &idx, &n);
    const size_t esz = quant ? 1 : sizeof(float);
    uint8_t *vals = quant ? malloc((size_t)(R * S) + 1) : nz, *pos = sp.n ? malloc((size_t)(R * S) + 1) : NULL;
    uint8_t *mask = malloc((size_t)(R * C) + 1), *dense = malloc((size_t)(R * C) * esz + 1);
    if (!rc && (!vals || (sp.n && !pos) || !mask || !dense))
        rc = qd_err_set(QD_ENOMEM, "%s: tensor '%s': out of memory", f->path, r->name);
    if (!rc) {
        if (quant) {
            const int64_t rb = QD_PACKED_ROW_BYTES(S, r->bits);
            for (int64_t k = 0; k < R; k++) qd_unpack_row((uint8_t *)nz + k * rb, S, r->bits, vals + k * S);
            for (int64_t k = 0; k < R; k++) /* pruned weights: the zero point's code */
                for (int64_t c = 0; c < C; c++) {
                    const int64_t g = v->g_idx ? v->g_idx[c] : c / G;
                    dense[k * C + c] = (uint8_t)v->zeros[k * r->ngroups + g];
                }
        } else
            memset(dense, 0, (size_t)(R * C) * esz);
        if (sp.n) {
            const int64_t ib = qd_nm_index_row_bytes(C, sp.n, sp.m);
            for (int64_t k = 0; k < R; k++)
                qd_unpack_row((uint8_t *)idx + k * ib, S, qd_nm_index_bits(sp.m), pos + k * S);
        } else
            qd_mask_unpack(idx, R, C, mask);
        if ((rc = qd_sparse_scatter(vals, esz, pos, R, C, &sp, S, dense, mask)))
            qd_err_wrap(rc, "%s: tensor '%s': ", f->path, r->name);
    }
    if (!rc) {
        v->mask = malloc((size_t)(R * QD_MASK_ROW_BYTES(C)) + 1);
        if (quant) v->qweight = malloc((size_t)(R * QD_PACKED_ROW_BYTES(C, r->bits)) + 1);
        if (!v->mask || (quant && !v->qweight)) rc = qd_err_set(QD_ENOMEM, "%s: out of memory", f->path);
    }
    if (!rc) {
        qd_mask_pack(mask, R, C, v->mask);
        if (quant)
            qd_pack_matrix(dense, R, C, r->bits, v->qweight);
        else {
            v->data = (float *)dense;
            dense = NULL;
        }
    }
    if (quant) free(vals);
    free(nz);
    free(idx);
    free(pos);
    free(mask);
    free(dense);
    return rc;
}

int qd_h5m_read(qd_h5m *f, int i, qd_h5m_values *v)
{
    memset(v, 0, sizeof *v);
    QD_ASSERT(i >= 0 && i < f->n);
    const qd_h5m_record *r = &f->t[i];
    int64_t n;
    int rc = QD_OK;
    if (r->kind == QD_H5M_QUANTIZED) {
        if (!(rc = r->sparsity[0] ? QD_OK : qd_h5m_read_field(f, i, QD_H5M_QWEIGHT, (void **)&v->qweight, &n)) &&
            !(rc = qd_h5m_read_field(f, i, qd_h5m_is_codebook(r) ? QD_H5M_CODEBOOK : QD_H5M_SCALES,
                                     qd_h5m_is_codebook(r) ? (void **)&v->codebook : (void **)&v->scales, &n))) {
            if (r->sym) {
                const int64_t ns = qd_h5m_rows(r) * r->ngroups;
                v->zeros = qd_xmalloc((size_t)(ns > 0 ? ns : 1) * sizeof *v->zeros);
                for (int64_t k = 0; k < ns; k++) v->zeros[k] = 1 << (r->bits - 1);
            } else
                rc = qd_h5m_read_field(f, i, QD_H5M_ZEROS, (void **)&v->zeros, &n);
        }
        if (!rc && r->act_order) rc = qd_h5m_read_field(f, i, QD_H5M_G_IDX, (void **)&v->g_idx, &n);
    } else if (r->kind == QD_H5M_FLOAT && !r->sparsity[0])
        rc = qd_h5m_read_field(f, i, QD_H5M_DATA, (void **)&v->data, &n);
    else if (r->kind == QD_H5M_RAWBYTES)
        rc = qd_h5m_read_field(f, i, QD_H5M_RAW, (void **)&v->raw, &n);
    if (!rc && r->sparsity[0]) rc = read_pruned(f, i, v);
    if (rc) qd_h5m_values_free(v);
    return rc;
}

void qd_h5m_values_free(qd_h5m_values *v)
{
    free(v->qweight);
    free(v->scales);
    free(v->codebook);
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
    if (v->codebook) {
        qd_kmeans_dequantize(codes, R, C, G, r->bits, v->codebook, out);
        free(codes);
        return;
    }
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
    check_activations(f);
    if (stop(f)) return;
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
