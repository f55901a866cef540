/* The distributed quantization job (see job.h) and the HDF5 model writer. File layout:
 * docs/FORMAT.md. */
#include "worker/job.h"

#include <fnmatch.h>
#include <hdf5.h>
#include <math.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "collective/collective.h"
#include "kernels/gemm_bf16.h"
#include "shard/select.h"
#include "collective/act_record.h"
#include "worker/act_calib.h"
#include "worker/gptq_job.h"
#include "worker/rtn_rows.h"
#include "worker/sparse_unit.h"

#define QD_FORMAT_VERSION 1

static volatile sig_atomic_t g_stop;
void qd_job_request_stop(void) { g_stop = 1; }

void qd_job_config_default(qd_job_config *c)
{
    memset(c, 0, sizeof *c);
    c->method = QD_METHOD_RTN;
    c->scheme.bits = 8;
    c->scheme.sym = 1;
    c->scheme.gran = QD_GRAN_CHANNEL;
    c->scheme.group_size = 128;
    c->shard = QD_SHARD_ROWS;
    c->nsamples = 128;
    c->seqlen = 128;
    c->microbatch = 8;
    c->damp = 0.01;
    c->block_size = 128;
    c->ada_iters = 10000;
    c->ada_lambda = 0.01;
    c->ada_beta_start = 20;
    c->ada_beta_end = 2;
    c->ada_warmup = 0.2;
    c->ada_lr = 1e-3;
    c->act_bits = 8;
    c->act_percentile = 99.99;
    c->act_outliers = 4;
    c->prune = -1;
}

static const char *gran_name(qd_granularity g)
{
    return g == QD_GRAN_TENSOR ? "tensor" : g == QD_GRAN_CHANNEL ? "channel" : "group";
}

cJSON *qd_job_config_json(const qd_job_config *c)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "method", qd_method_name(c->method));
    cJSON_AddNumberToObject(o, "bits", c->scheme.bits);
    cJSON_AddStringToObject(o, "granularity", gran_name(c->scheme.gran));
    cJSON_AddNumberToObject(o, "group_size", c->scheme.gran == QD_GRAN_GROUP ? (double)c->scheme.group_size : -1);
    cJSON_AddBoolToObject(o, "sym", c->scheme.sym);
    cJSON_AddStringToObject(o, "clip", c->clip_mse ? "mse" : "minmax");
    cJSON_AddBoolToObject(o, "include_embeddings", c->include_embeddings);
    cJSON_AddBoolToObject(o, "include_head", c->include_head);
    if (c->n_include) {
        cJSON *arr = cJSON_AddArrayToObject(o, "include");
        for (int i = 0; i < c->n_include; i++) cJSON_AddItemToArray(arr, cJSON_CreateString(c->include[i]));
    }
    if (c->n_overrides) {
        cJSON *arr = cJSON_AddArrayToObject(o, "overrides");
        for (int i = 0; i < c->n_overrides; i++) {
            const qd_override *v = &c->overrides[i];
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "pattern", v->pattern);
            if (v->skip) cJSON_AddBoolToObject(e, "skip", 1);
            if (v->method >= 0) cJSON_AddStringToObject(e, "method", qd_method_name((qd_method)v->method));
            if (v->bits >= 0) cJSON_AddNumberToObject(e, "bits", v->bits);
            if (v->gran >= 0) cJSON_AddStringToObject(e, "granularity", gran_name((qd_granularity)v->gran));
            if (v->group_size >= 0) cJSON_AddNumberToObject(e, "group_size", (double)v->group_size);
            if (v->sym >= 0) cJSON_AddBoolToObject(e, "sym", v->sym);
            if (v->clip_mse >= 0) cJSON_AddStringToObject(e, "clip", v->clip_mse ? "mse" : "minmax");
            cJSON_AddItemToArray(arr, e);
        }
    }
    int calibrated = c->method != QD_METHOD_RTN;
    for (int i = 0; i < c->n_overrides; i++) calibrated |= c->overrides[i].method > QD_METHOD_RTN;
    if (calibrated) {
        cJSON *g = cJSON_AddObjectToObject(o, "gptq");
        cJSON_AddNumberToObject(g, "damp", c->damp);
        cJSON_AddNumberToObject(g, "block_size", c->block_size);
        cJSON_AddBoolToObject(g, "act_order", c->act_order);
        cJSON_AddBoolToObject(g, "static_groups", c->static_groups);
        cJSON *a = cJSON_AddObjectToObject(o, "adaround");
        cJSON_AddNumberToObject(a, "iters", c->ada_iters);
        cJSON_AddNumberToObject(a, "lambda", c->ada_lambda);
        cJSON_AddNumberToObject(a, "beta_start", c->ada_beta_start);
        cJSON_AddNumberToObject(a, "beta_end", c->ada_beta_end);
        cJSON_AddNumberToObject(a, "warmup", c->ada_warmup);
        cJSON_AddNumberToObject(a, "lr", c->ada_lr);
        if (c->ada_batch > 0) cJSON_AddNumberToObject(a, "batch", c->ada_batch); /* absent: the Hessian form */
        int ada = c->method == QD_METHOD_ADAROUND;
        for (int i = 0; i < c->n_overrides; i++) ada |= c->overrides[i].method == QD_METHOD_ADAROUND;
        /* the Hessian form's product (the two give slightly different roundings): recorded only
         * for jobs that use AdaRound, so other files are unchanged */
        if (ada && c->ada_batch <= 0) cJSON_AddStringToObject(a, "product", c->ada_tiles ? "bf16x3" : "float");
        cJSON *k = cJSON_AddObjectToObject(o, "calibration");
        cJSON_AddStringToObject(k, "data", c->calib ? c->calib : "");
        cJSON_AddNumberToObject(k, "nsamples", c->nsamples);
        cJSON_AddNumberToObject(k, "seqlen", c->seqlen);
        cJSON_AddNumberToObject(k, "seed", c->calib_seed);
        cJSON_AddStringToObject(k, "mode", c->calib_mode == QD_CALIB_FP ? "fp" : "sequential");
        cJSON_AddNumberToObject(k, "microbatch", c->microbatch);
    }
    if (qd_sparsity_active(&c->sparsity)) { /* absent for dense jobs: their files are unchanged */
        char sp[32];
        qd_sparsity_format(&c->sparsity, sp, sizeof sp);
        cJSON *p = cJSON_AddObjectToObject(o, "sparsity");
        cJSON_AddStringToObject(p, "pattern", sp);
        cJSON_AddStringToObject(p, "method", qd_prune_method_name(qd_sparse_prune_method(c, c->method)));
        cJSON_AddBoolToObject(p, "prune_only", c->prune_only);
    }
    if (c->act_static) { /* absent for weight-only files, so they stay as they were */
        cJSON *a = cJSON_AddObjectToObject(o, "activations");
        cJSON_AddStringToObject(a, "mode", "static");
        cJSON_AddNumberToObject(a, "bits", c->act_bits);
        cJSON_AddStringToObject(a, "calib", qd_actq_method_name((qd_actq_method)c->act_calib));
        if (c->act_calib == QD_ACTQ_PERCENTILE) cJSON_AddNumberToObject(a, "percentile", c->act_percentile);
        cJSON_AddNumberToObject(a, "outliers", c->act_outliers);
        cJSON_AddStringToObject(a, "data", c->calib ? c->calib : "");
        cJSON_AddNumberToObject(a, "nsamples", c->nsamples);
        cJSON_AddNumberToObject(a, "seqlen", c->seqlen);
        cJSON_AddNumberToObject(a, "seed", c->calib_seed);
    }
    return o;
}

static int method_ok(const qd_job_config *c, qd_method m, const char *where)
{
    if (m != QD_METHOD_RTN && !c->calib)
        return qd_err_set(QD_ECONFIG,
                          "%smethod '%s' needs calibration data: --calib PATH (a text or TSV file for "
                          "BERT models, an IDX file or an image folder for ViT models)",
                          where, qd_method_name(m));
    return QD_OK;
}

int qd_job_config_validate(const qd_job_config *c)
{
    int rc = method_ok(c, c->method, "");
    if (rc) return rc;
    for (int i = 0; i < c->n_overrides; i++)
        if (c->overrides[i].method >= 0) {
            char where[QD_PATTERN_MAX + 32];
            snprintf(where, sizeof where, "override '%s': ", c->overrides[i].pattern);
            if ((rc = method_ok(c, (qd_method)c->overrides[i].method, where))) return rc;
        }
    if (!qd_valid_bits(c->scheme.bits)) return qd_err_set(QD_ECONFIG, "bits must be 2..8, got %d", c->scheme.bits);
    if (c->act_static && !c->calib)
        return qd_err_set(QD_ECONFIG, "--activations static needs calibration data: --calib PATH (a text or TSV file "
                                      "for BERT models, an IDX file or an image folder for ViT models)");
    if (c->act_static && (!qd_valid_bits(c->act_bits) || !(c->act_percentile > 50 && c->act_percentile <= 100) ||
                          !(c->act_outliers >= 0)))
        return qd_err_set(QD_ECONFIG, "act_bits must be 2..8, act_percentile in (50, 100] and act_outliers >= 0");
    if (c->scheme.gran == QD_GRAN_GROUP && c->scheme.group_size < 1)
        return qd_err_set(QD_ECONFIG, "group_size must be >= 1");
    if (c->method != QD_METHOD_RTN && c->scheme.gran == QD_GRAN_TENSOR)
        return qd_err_set(QD_ECONFIG, "method '%s' works per channel or per group, not per tensor",
                          qd_method_name(c->method));
    if (c->ada_iters < 1 || !(c->ada_lambda >= 0) || !(c->ada_beta_start > 0) || !(c->ada_beta_end > 0) ||
        !(c->ada_warmup >= 0 && c->ada_warmup < 1) || !(c->ada_lr > 0))
        return qd_err_set(QD_ECONFIG,
                          "adaround: iters >= 1, lambda >= 0, beta > 0, warmup in [0, 1) and lr > 0 are needed");
    if (c->ada_batch < 0)
        return qd_err_set(QD_ECONFIG,
                          "adaround: batch (calibration rows per step) must be >= 0 (0: the Hessian form), got %d",
                          c->ada_batch);
    if (c->nsamples < 0) return qd_err_set(QD_ECONFIG, "nsamples must be >= 0");
    if (c->seqlen < 3) return qd_err_set(QD_ECONFIG, "seqlen must be >= 3");
    if (c->microbatch < 1) return qd_err_set(QD_ECONFIG, "microbatch must be >= 1");
    if (!(c->damp > 0 && c->damp < 1)) return qd_err_set(QD_ECONFIG, "damp must be in (0, 1), got %g", c->damp);
    if (c->block_size < 1) return qd_err_set(QD_ECONFIG, "block_size must be >= 1");
    return qd_sparse_config_validate(c);
}

/* ---- the work table ------------------------------------------------------------------ */

/* The scheme of a tensor selected for quantization: the first matching override applies.
 * Returns 0 if an override keeps the tensor float. */
static int resolve_scheme(const qd_job_config *cfg, const char *name, qd_job_tensor *jt)
{
    jt->method = cfg->method;
    jt->scheme = cfg->scheme;
    jt->clip_mse = cfg->clip_mse;
    for (int i = 0; i < cfg->n_overrides; i++) {
        const qd_override *v = &cfg->overrides[i];
        if (fnmatch(v->pattern, name, 0) != 0) continue;
        if (v->skip) return 0;
        if (v->method >= 0) jt->method = (qd_method)v->method;
        if (v->bits >= 0) jt->scheme.bits = v->bits;
        if (v->sym >= 0) jt->scheme.sym = v->sym;
        if (v->gran >= 0) jt->scheme.gran = (qd_granularity)v->gran;
        if (v->group_size >= 0) {
            jt->scheme.group_size = v->group_size;
            if (v->gran < 0) jt->scheme.gran = QD_GRAN_GROUP;
        }
        if (v->clip_mse >= 0) jt->clip_mse = v->clip_mse;
        break;
    }
    return 1;
}

static int should_quantize(const qd_job_config *cfg, const qd_tensor_info *t)
{
    if (!t->float_like || t->ndim != 2 || t->numel == 0) return 0;
    if (qd_shard_default_quantizable(t)) return 1;
    const char *n = t->name;
    size_t len = strlen(n);
    int is_weight = len > 7 && !strcmp(n + len - 7, ".weight");
    if (cfg->include_embeddings && strstr(n, "embed") && is_weight) return 1;
    if (cfg->include_head && (strstr(n, "pooler") || strstr(n, "classifier")) && is_weight) return 1;
    for (int i = 0; i < cfg->n_include; i++)
        if (fnmatch(cfg->include[i], n, 0) == 0) return 1;
    return 0;
}

qd_plan_cost_opts qd_job_cost_opts(const qd_job_config *cfg)
{
    return (qd_plan_cost_opts){.ada_iters = cfg->ada_iters, .ada_batch = cfg->ada_batch};
}

void qd_job_table(const qd_job_config *cfg, const qd_checkpoint *ck, qd_job_tensor *jt, qd_plan_item *pi)
{
    int n = qd_ckpt_num_tensors(ck);
    const qd_plan_cost_opts co = qd_job_cost_opts(cfg);
    for (int i = 0; i < n; i++) {
        const qd_tensor_info *t = qd_ckpt_tensor(ck, i);
        qd_job_tensor *j = &jt[i];
        memset(j, 0, sizeof *j);
        j->kind = should_quantize(cfg, t) && resolve_scheme(cfg, t->name, j) ? QD_JOB_QUANT
                  : t->float_like                                            ? QD_JOB_FLOAT
                                                                             : QD_JOB_RAW;
        j->rows = t->ndim ? t->shape[0] : 1;
        j->cols = j->rows ? (int64_t)t->numel / j->rows : 0;
        j->blk_rows = j->rows > 0 ? (j->rows + QD_JOB_MAX_BLOCKS - 1) / QD_JOB_MAX_BLOCKS : 1;
        j->nblk = j->rows > 0 ? (int)((j->rows + j->blk_rows - 1) / j->blk_rows) : 1;
        if (j->kind == QD_JOB_QUANT) {
            j->sp = cfg->sparsity;
            j->prune = qd_sparse_prune_method(cfg, j->method);
        }
        j->splittable = t->numel > 0 && j->nblk > 1 &&
                        (j->kind == QD_JOB_FLOAT || (j->kind == QD_JOB_QUANT && j->scheme.gran != QD_GRAN_TENSOR));
        double numel = (double)t->numel;
        qd_plan_item *p = &pi[i];
        if (j->kind == QD_JOB_QUANT) {
            p->cost = qd_plan_cost(j->method, j->rows, j->cols, &co);
            /* the input as mapped (+ an F32 copy for other dtypes), the packed codes, the scales */
            p->mem = numel * (double)qd_dtype_size(t->dtype) + (t->dtype == QD_DT_F32 ? 0 : 4 * numel) +
                     numel * j->scheme.bits / 8 + (double)j->rows * (double)qd_rtn_ngroups(&j->scheme, j->cols) * 8;
        } else {
            p->cost = qd_plan_cost_copy((int64_t)t->numel);
            p->mem = (double)t->nbytes + (j->kind == QD_JOB_FLOAT && t->dtype != QD_DT_F32 ? 4 * numel : 0);
        }
        p->block = qd_shard_block_index(t->name);
        p->parts = j->splittable ? j->nblk : 1;
    }
}

/* ---- small HDF5 helpers (every call checked) ------------------------------------------- */

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

static void attr_i64s(hid_t obj, const char *name, const int64_t *v, int n)
{
    hsize_t d = (hsize_t)n;
    hid_t sp = QD_H5_CHECK(n == 1 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &d, NULL));
    hid_t a = QD_H5_CHECK(H5Acreate2(obj, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT));
    QD_H5_CHECK(H5Awrite(a, H5T_NATIVE_INT64, v));
    QD_H5_CHECK(H5Aclose(a));
    QD_H5_CHECK(H5Sclose(sp));
}

static void attr_i64(hid_t obj, const char *name, int64_t v) { attr_i64s(obj, name, &v, 1); }

static void attr_f64s(hid_t obj, const char *name, const double *v, int n)
{
    hsize_t d = (hsize_t)n;
    hid_t sp = QD_H5_CHECK(n == 1 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &d, NULL));
    hid_t a = QD_H5_CHECK(H5Acreate2(obj, name, H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT));
    QD_H5_CHECK(H5Awrite(a, H5T_NATIVE_DOUBLE, v));
    QD_H5_CHECK(H5Aclose(a));
    QD_H5_CHECK(H5Sclose(sp));
}

/* a fixed-length string attribute, malloc'd ("" if absent) */
static char *read_attr_str(hid_t obj, const char *name)
{
    if (H5Aexists(obj, name) <= 0) return qd_xstrdup("");
    hid_t a = QD_H5_CHECK(H5Aopen(obj, name, H5P_DEFAULT));
    hid_t t = QD_H5_CHECK(H5Aget_type(a));
    size_t n = H5Tget_size(t);
    char *b = qd_xcalloc(n + 1, 1);
    if (H5Tget_class(t) == H5T_STRING && !H5Tis_variable_str(t)) QD_H5_CHECK(H5Aread(a, t, b));
    QD_H5_CHECK(H5Tclose(t));
    QD_H5_CHECK(H5Aclose(a));
    return b;
}

static hid_t make_dset(hid_t g, const char *name, hid_t ftype, int nd, const hsize_t *dims)
{
    hid_t sp = QD_H5_CHECK(H5Screate_simple(nd, dims, NULL));
    hid_t d = QD_H5_CHECK(H5Dcreate2(g, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    QD_H5_CHECK(H5Sclose(sp));
    return d;
}

/* Writes rows [r0, r0 + n) (along the first dimension, all of the others) of dataset d from
 * buf (independent I/O: each rank writes its own hyperslab). */
static void write_rows(hid_t d, hid_t memtype, int64_t r0, int64_t n, const void *buf)
{
    if (n <= 0) return;
    hid_t fs = QD_H5_CHECK(H5Dget_space(d));
    int nd = QD_H5_CHECK(H5Sget_simple_extent_ndims(fs));
    hsize_t dims[QD_ST_MAX_DIMS], start[QD_ST_MAX_DIMS] = {0};
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
    QD_H5_CHECK(H5Dwrite(d, memtype, ms, fs, H5P_DEFAULT, buf));
    QD_H5_CHECK(H5Sclose(ms));
    QD_H5_CHECK(H5Sclose(fs));
}

static char *read_text_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n < 0 || n > (64 << 20)) {
        fclose(f);
        return NULL;
    }
    char *b = qd_xmalloc((size_t)n + 1);
    size_t got = fread(b, 1, (size_t)n, f);
    b[got] = 0;
    fclose(f);
    return b;
}

/* ---- the job ---------------------------------------------------------------------------- */

typedef struct {
    qd_job_tensor j;
    int ti;
    hid_t g, dq, ds, dz, dd;
    qd_errsum blk[QD_JOB_MAX_BLOCKS];
    int pieces_total, pieces_done;
    int complete;  /* marked complete in the file (resumed) */
    int last_rank; /* rank of its last piece */
    double m[4];   /* rel_fro, mse, max_abs, sqnr_db */
    double seconds;
    const qd_gptq_result *cq; /* precomputed codes of a calibrated method, or NULL */
    hid_t dg;                 /* g_idx dataset (act-order) */
    hid_t dm;                 /* mask dataset (pruned tensors) */
} item;

/* one rank's report of one piece */
typedef struct {
    int piece; /* -1: none */
    int status;
    double seconds;                   /* wall time of the piece */
    double cpu;                       /* CPU time of the piece (user + system, this thread) */
    qd_errsum blk[QD_JOB_MAX_BLOCKS]; /* absolute block index of the tensor */
} piece_rec;

/* rows [r0, r1) of a piece */
static void piece_rows(const item *it, const qd_plan_piece *p, int64_t *r0, int64_t *r1)
{
    if (!it->j.splittable || (p->part0 == 0 && p->part1 >= it->j.nblk)) {
        *r0 = 0;
        *r1 = it->j.rows;
        return;
    }
    *r0 = (int64_t)p->part0 * it->j.blk_rows;
    *r1 = QD_MIN((int64_t)p->part1 * it->j.blk_rows, it->j.rows);
}

/* rows [r0, r0 + n) of a float tensor as F32: zero-copy from the mapping when the source is
 * aligned F32, else converted into *buf (the caller frees) */
static int input_rows(qd_checkpoint *ck, int ti, int64_t r0, int64_t n, int64_t cols, const float **x, float **buf)
{
    const qd_tensor_info *t = qd_ckpt_tensor(ck, ti);
    *buf = NULL;
    if (t->dtype == QD_DT_F32) {
        const void *raw;
        int rc = qd_ckpt_raw(ck, ti, &raw);
        if (rc) return rc;
        if ((uintptr_t)raw % _Alignof(float) == 0) {
            *x = (const float *)raw + r0 * cols;
            return QD_OK;
        }
    }
    *buf = malloc((size_t)(n * cols > 0 ? n * cols : 1) * sizeof(float));
    if (!*buf)
        return qd_err_set(QD_ENOMEM, "tensor '%s': out of memory for %lld values", t->name, (long long)(n * cols));
    int rc = qd_ckpt_read_rows_f32(ck, ti, r0, n, *buf);
    *x = *buf;
    return rc;
}

/* Rows [r0, r0 + n) of a pruned tensor's mask dataset, from an unpacked mask or packed rows. */
static int write_mask_rows(item *it, int64_t r0, int64_t n, const uint8_t *mask, const uint8_t *packed)
{
    if (it->dm < 0) return QD_OK;
    uint8_t *p = (uint8_t *)packed;
    if (!packed) {
        p = malloc((size_t)(n * QD_MASK_ROW_BYTES(it->j.cols)) + 1);
        if (!p) return qd_err_set(QD_ENOMEM, "out of memory for mask rows");
        qd_mask_pack(mask, n, it->j.cols, p);
    }
    write_rows(it->dm, H5T_NATIVE_UINT8, r0, n, p);
    if (!packed) free(p);
    return QD_OK;
}

/* Quantizes (or copies) one piece and writes it; error sums go to rec->blk. */
static int process_piece(qd_checkpoint *ck, item *it, const qd_plan_piece *p, piece_rec *rec)
{
    const qd_tensor_info *t = qd_ckpt_tensor(ck, it->ti);
    double t0 = qd_now();
    int rc = QD_OK;
    if (it->j.kind == QD_JOB_RAW) {
        const void *raw;
        if ((rc = qd_ckpt_raw(ck, it->ti, &raw))) return rc;
        write_rows(it->dd, H5T_NATIVE_UINT8, 0, (int64_t)t->nbytes, raw);
        rec->seconds = qd_now() - t0;
        return QD_OK;
    }
    int64_t r0, r1;
    piece_rows(it, p, &r0, &r1);
    int64_t n = r1 - r0, C = it->j.cols;
    if (t->numel == 0 || n == 0) return QD_OK;
    const float *x = NULL;
    float *buf = NULL;
    if ((rc = input_rows(ck, it->ti, r0, n, C, &x, &buf))) {
        free(buf);
        return rc;
    }
    if (it->j.kind == QD_JOB_FLOAT && it->cq && it->cq->fweight) { /* pruned, kept in float */
        write_rows(it->dd, H5T_NATIVE_FLOAT, r0, n, it->cq->fweight + r0 * C);
        rc = write_mask_rows(it, r0, n, it->cq->mask + r0 * C, NULL);
        free(buf);
        rec->seconds = qd_now() - t0;
        return rc;
    }
    if (it->j.kind == QD_JOB_FLOAT) {
        if (!qd_all_finite(x, n * C)) {
            for (int64_t i = 0; i < n * C; i++)
                if (!isfinite(x[i])) {
                    rc = qd_err_set(QD_ENONFINITE, "tensor '%s': %s at flat index %lld", t->name,
                                    isnan(x[i]) ? "NaN" : "Inf", (long long)(r0 * C + i));
                    break;
                }
        } else
            write_rows(it->dd, H5T_NATIVE_FLOAT, r0, n, x);
        free(buf);
        rec->seconds = qd_now() - t0;
        return rc;
    }
    const qd_qscheme *s = &it->j.scheme;
    int64_t rb = qd_packed_row_bytes(C, s->bits), ng = qd_rtn_ngroups(s, C);
    uint8_t *packed = malloc((size_t)(n * rb));
    float *sc = malloc((size_t)(n * ng) * sizeof(float));
    int32_t *z = malloc((size_t)(n * ng) * sizeof(int32_t));
    if (!packed || !sc || !z)
        rc = qd_err_set(QD_ENOMEM, "tensor '%s': out of memory for rows [%lld, %lld)", t->name, (long long)r0,
                        (long long)r1);
    qd_clip_opts clip = it->j.clip_mse ? (qd_clip_opts){100, 0.8f, 2.0f} : QD_CLIP_MINMAX;
    if (!rc && it->cq) {
        /* codes computed beforehand (GPTQ): pack, copy parameters, error sums per block in row order */
        const qd_gptq_result *cq = it->cq;
        int64_t gs = s->gran == QD_GRAN_GROUP && s->group_size < C ? s->group_size : C;
        for (int64_t r = 0; r < n && !rc; r++) {
            const uint8_t *q = cq->codes + (r0 + r) * C;
            qd_pack_row(q, C, s->bits, packed + r * rb);
            memcpy(sc + r * ng, cq->scales + (r0 + r) * ng, (size_t)ng * sizeof(float));
            memcpy(z + r * ng, cq->zeros + (r0 + r) * ng, (size_t)ng * sizeof(int32_t));
            qd_errsum *b = &rec->blk[(r0 + r) / it->j.blk_rows];
            const float *w = x + r * C;
            for (int64_t c = 0; c < C; c++) {
                int64_t g = cq->g_idx ? cq->g_idx[c] : c / gs;
                double d = (double)w[c] - qd_dequantize1(q[c], sc[r * ng + g], z[r * ng + g]);
                b->err2 += d * d;
                b->w2 += (double)w[c] * w[c];
                if (fabs(d) > b->max_abs) b->max_abs = fabs(d);
            }
        }
        if (!rc && cq->g_idx && r0 == 0 && it->dg >= 0) write_rows(it->dg, H5T_NATIVE_INT32, 0, C, cq->g_idx);
        if (!rc && cq->mask) rc = write_mask_rows(it, r0, n, cq->mask + r0 * C, NULL);
    } else if (!rc) {
        char what[QD_PATTERN_MAX + 16];
        snprintf(what, sizeof what, "tensor '%s'", t->name);
        const float *xq = x;
        float *pruned = NULL;
        if (qd_sparsity_active(&it->j.sp)) { /* magnitude per row, then RTN of what is kept */
            uint8_t *pm = malloc((size_t)(n * QD_MASK_ROW_BYTES(C)));
            pruned = malloc((size_t)(n * C) * sizeof(float));
            if (!pm || !pruned)
                rc = qd_err_set(QD_ENOMEM, "%s: out of memory for its pruned rows", what);
            else if ((rc = qd_sparse_rtn_rows(&it->j, x, n, C, pruned, pm)))
                qd_err_wrap(rc, "%s: ", what);
            else
                rc = write_mask_rows(it, r0, n, NULL, pm);
            xq = pruned;
            free(pm);
        }
        if (!rc)
            rc = qd_rtn_rows(xq, n, C, s, &clip, packed, sc, z, it->j.blk_rows, rec->blk + r0 / it->j.blk_rows, what,
                             r0);
        free(pruned);
    }
    if (!rc) {
        write_rows(it->dq, H5T_NATIVE_UINT8, r0, n, packed);
        write_rows(it->ds, H5T_NATIVE_FLOAT, r0, n, sc);
        if (it->dz >= 0) write_rows(it->dz, H5T_NATIVE_INT32, r0, n, z);
    }
    free(packed);
    free(sc);
    free(z);
    free(buf);
    rec->seconds = qd_now() - t0;
    return rc;
}

/* metrics of a finished tensor from its block sums, added in block order */
static void finish_metrics(item *it, const qd_tensor_info *t)
{
    double e2 = 0, w2 = 0, mx = 0;
    for (int b = 0; b < it->j.nblk; b++) {
        e2 += it->blk[b].err2;
        w2 += it->blk[b].w2;
        if (it->blk[b].max_abs > mx) mx = it->blk[b].max_abs;
    }
    it->m[0] = w2 > 0 ? sqrt(e2 / w2) : 0;
    it->m[1] = t->numel ? e2 / (double)t->numel : 0;
    it->m[2] = mx;
    it->m[3] = e2 > 0 ? 10.0 * log10(w2 / e2) : 999.0;
}

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int env_int(const char *name, int dflt)
{
    const char *v = getenv(name);
    return v && *v ? atoi(v) : dflt;
}

static void emit_kv(const qd_job_hooks *h, const char *type, cJSON *o)
{
    qd_job_emit(h, type, o);
    cJSON_Delete(o);
}

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

/* the progress display of rank 0 */
typedef struct {
    int mode; /* QD_PROGRESS_BAR / LINES / NONE */
    double t0;
    int shown;
} progress;

static void progress_tensor(progress *pg, const char *name, const item *it, int done, int total, int64_t pieces)
{
    if (pg->mode == QD_PROGRESS_NONE) return;
    double el = qd_now() - pg->t0, eta = done ? el * (total - done) / done : 0;
    if (pg->mode == QD_PROGRESS_BAR) {
        char bar[31];
        int fill = total ? 30 * done / total : 30;
        for (int k = 0; k < 30; k++) bar[k] = k < fill ? '#' : '.';
        bar[30] = 0;
        printf("\r[%s] %4d/%-4d %5.1f%%  %6.1f s  ETA %6.1f s  %-44.44s", bar, done, total,
               total ? 100.0 * done / total : 100.0, el, eta, name);
        pg->shown = 1;
    } else if (it->j.kind == QD_JOB_QUANT) {
        printf("[%d/%d] %s  %s %d-bit  rel.err %.3e  %s %d  %.3f s  ETA %.1f s\n", done, total, name,
               qd_method_name(it->j.method), it->j.scheme.bits, it->m[0], pieces > 1 ? "pieces, last on rank" : "rank",
               it->last_rank, it->seconds, eta);
    } else
        printf("[%d/%d] %s  kept as float  rank %d  %.3f s\n", done, total, name, it->last_rank, it->seconds);
    fflush(stdout);
}

int qd_job_run(const qd_job_config *cfg_in, MPI_Comm comm, const qd_job_hooks *hooks)
{
    int rank, size;
    QD_MPI_CHECK(MPI_Comm_rank(comm, &rank));
    QD_MPI_CHECK(MPI_Comm_size(comm, &size));
    /* AdaRound's Hessian product: the bfloat16 tiles only if every rank has them (hosts may
     * differ), so that a unit's result does not depend on which rank computed it */
    qd_job_config cfg_job = *cfg_in;
    cfg_job.ada_tiles = qd_gemm_bf16_available();
    QD_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &cfg_job.ada_tiles, 1, MPI_INT, MPI_MIN, comm));
    const qd_job_config *cfg = &cfg_job;
    double t_start = qd_now();
    char msg[1024] = "";
    char partial[4096];
    snprintf(partial, sizeof partial, "%s.partial", cfg->out);
    g_stop = 0;
    struct sigaction sa, old_term, old_int;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGINT, &sa, &old_int);

    /* open and validate on every rank; agree */
    qd_checkpoint *ck = NULL;
    int st = qd_job_config_validate(cfg);
    if (st == QD_OK) st = qd_ckpt_open(cfg->model, &ck);
    if (st == QD_OK && !cfg->overwrite && !cfg->resume && access(cfg->out, F_OK) == 0)
        st = qd_err_set(QD_EEXIST, "%s exists (use --overwrite to replace it)", cfg->out);
    if (st == QD_OK && cfg->resume && access(cfg->out, F_OK) == 0 && !cfg->overwrite)
        st = qd_err_set(QD_EEXIST, "%s is already complete (nothing to resume; --overwrite to redo it)", cfg->out);
    if (st == QD_OK && !cfg->resume && !cfg->overwrite && access(partial, F_OK) == 0)
        st = qd_err_set(QD_EEXIST, "%s exists from an interrupted run: --resume continues it, --overwrite starts again",
                        partial);
    st = qd_coll_agree_msg(comm, st, msg, sizeof msg, NULL);
    if (st) {
        if (ck) qd_ckpt_close(ck);
        goto out_sig;
    }
    if (rank == 0) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", cfg->model);
        cJSON_AddStringToObject(o, "out", cfg->out);
        cJSON_AddNumberToObject(o, "ranks", size);
        emit_kv(hooks, "started", o);
    }

    /* the work table and the plan: the same on every rank (deterministic) */
    int n = qd_ckpt_num_tensors(ck), nz = n ? n : 1, nq = 0;
    item *items = qd_xcalloc((size_t)nz, sizeof(item));
    qd_job_tensor *jt = qd_xcalloc((size_t)nz, sizeof *jt);
    qd_plan_item *pi = qd_xcalloc((size_t)nz, sizeof *pi);
    qd_job_table(cfg, ck, jt, pi);
    for (int i = 0; i < n; i++) {
        items[i].j = jt[i];
        items[i].ti = i;
        items[i].g = items[i].dq = items[i].ds = items[i].dz = items[i].dd = items[i].dg = items[i].dm = -1;
        nq += jt[i].kind == QD_JOB_QUANT;
    }
    free(jt);
    qd_plan plan;
    QD_ASSERT_EQ(qd_plan_make(pi, n, size, cfg->shard, &plan), 0);
    free(pi);
    for (int q = 0; q < plan.npieces; q++) items[plan.pieces[q].item].pieces_total++;
    progress pg = {cfg->quiet                          ? QD_PROGRESS_NONE
                   : cfg->progress == QD_PROGRESS_AUTO ? QD_PROGRESS_LINES
                                                       : (int)cfg->progress,
                   t_start, 0};
    if (rank == 0) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "tensors_total", n);
        cJSON_AddNumberToObject(o, "tensors_quantized", nq);
        cJSON_AddNumberToObject(o, "pieces", plan.npieces);
        cJSON_AddNumberToObject(o, "ranks", size);
        cJSON_AddStringToObject(o, "shard", qd_shard_mode_name(cfg->shard));
        cJSON_AddNumberToObject(o, "balance", plan.balance);
        emit_kv(hooks, "plan", o);
        if (!cfg->quiet)
            printf("%s: %d tensors (%d to quantize: %s %d-bit %s%s, %s), %d rank%s, sharding by %s (%d pieces), "
                   "balance max/mean %.3f\n",
                   cfg->model, n, nq, qd_method_name(cfg->method), cfg->scheme.bits, gran_name(cfg->scheme.gran),
                   cfg->scheme.gran == QD_GRAN_GROUP ? " groups" : "", cfg->scheme.sym ? "symmetric" : "asymmetric",
                   size, size == 1 ? "" : "s", qd_shard_mode_name(cfg->shard), plan.npieces, plan.balance);
    }

    /* calibrated methods: calibration and GPTQ on all ranks before anything is written */
    qd_gptq_results gres = {0};
    qd_actrec actrec = {0};
    {
        qd_job_tensor *jt2 = qd_xcalloc((size_t)nz, sizeof *jt2);
        for (int i = 0; i < n; i++) jt2[i] = items[i].j;
        if (qd_job_needs_calibration(jt2, n)) {
            st = qd_gptq_job_run(cfg, comm, ck, jt2, rank == 0 && !cfg->quiet, &gres);
            if (st == QD_OK) {
                struct rusage ru;
                getrusage(RUSAGE_SELF, &ru);
                double v[2] = {(double)ru.ru_maxrss * 1024.0, gres.estimate_bytes}, mx[2];
                QD_MPI_CHECK(MPI_Allreduce(v, mx, 2, MPI_DOUBLE, MPI_MAX, comm));
                if (rank == 0 && !cfg->quiet)
                    printf("calibrated phase: %.1f s, peak RSS %.1f MB on the busiest rank (estimate %.1f MB: %s)\n",
                           gres.seconds, mx[0] * 1e-6, mx[1] * 1e-6, gres.estimate_text);
            }
            if (st) {
                snprintf(msg, sizeof msg, "%s", qd_errmsg());
                free(jt2);
                if (rank == 0) {
                    cJSON *o = cJSON_CreateObject();
                    cJSON_AddStringToObject(o, "code", qd_errname(st));
                    cJSON_AddStringToObject(o, "message", msg);
                    emit_kv(hooks, "failed", o);
                }
                goto out_free;
            }
            for (int i = 0; i < n; i++)
                if (gres.t[i].codes) {
                    items[i].cq = &gres.t[i];
                    if (gres.t[i].fweight) items[i].j.kind = QD_JOB_FLOAT; /* pruned, kept in float */
                }
        }
        free(jt2);
    }

    /* static activation scales: calibrated on all ranks (same record everywhere), written with the
     * file's other objects below */
    if (cfg->act_static) {
        st = qd_act_job_run(cfg, comm, &actrec);
        if (st) {
            snprintf(msg, sizeof msg, "%s", qd_errmsg());
            goto out_free;
        }
    }

    /* what the file records about the job; compared when resuming */
    cJSON *qc = qd_job_config_json(cfg);
    char *qct = cJSON_PrintUnformatted(qc);
    cJSON_Delete(qc);
    char *srct;
    {
        cJSON *src = cJSON_CreateObject();
        const char *base = strrchr(qd_ckpt_dir(ck), '/');
        cJSON_AddStringToObject(src, "name", base ? base + 1 : qd_ckpt_dir(ck));
        cJSON *files = cJSON_AddArrayToObject(src, "files");
        for (int f = 0; f < qd_ckpt_num_files(ck); f++) {
            const qd_st_file *sf = qd_ckpt_file(ck, f);
            char hex[65];
            for (int b = 0; b < 32; b++) snprintf(hex + 2 * b, 3, "%02x", sf->header_sha256[b]);
            cJSON *fo = cJSON_CreateObject();
            const char *fb = strrchr(sf->path, '/');
            cJSON_AddStringToObject(fo, "file", fb ? fb + 1 : sf->path);
            cJSON_AddStringToObject(fo, "header_sha256", hex);
            cJSON_AddItemToArray(files, fo);
        }
        srct = cJSON_PrintUnformatted(src);
        cJSON_Delete(src);
    }

    /* create (or, resuming, reopen) the file and every object collectively, in the same order on
     * every rank */
    int resuming = cfg->resume && access(partial, F_OK) == 0, nresumed = 0;
    int res_all = 0;
    QD_MPI_CHECK(MPI_Allreduce(&resuming, &res_all, 1, MPI_INT, MPI_MIN, comm));
    resuming = res_all;
    if (cfg->resume && !resuming && rank == 0 && !cfg->quiet)
        printf("--resume: no %s, starting from the beginning\n", partial);
    hid_t fapl = QD_H5_CHECK(H5Pcreate(H5P_FILE_ACCESS));
    QD_H5_CHECK(H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL));
    /* metadata written collectively (every rank creates the same objects anyway) */
    QD_H5_CHECK(H5Pset_coll_metadata_write(fapl, 1));
    H5E_auto2_t efn;
    void *edata;
    H5Eget_auto2(H5E_DEFAULT, &efn, &edata);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t file = resuming ? H5Fopen(partial, H5F_ACC_RDWR, fapl) : H5Fcreate(partial, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Eset_auto2(H5E_DEFAULT, efn, edata);
    QD_H5_CHECK(H5Pclose(fapl));
    st = file < 0 ? qd_err_set(QD_EIO, "%s: cannot %s the output file", partial, resuming ? "open" : "create") : QD_OK;
    if (st == QD_OK && resuming) {
        char *ff = read_attr_str(file, "format"), *fq = read_attr_str(file, "quant_config"),
             *fs = read_attr_str(file, "source");
        if (strcmp(ff, "qdist"))
            st = qd_err_set(QD_EFORMAT, "--resume: %s is not a qdist model", partial);
        else if (strcmp(fq, qct))
            st =
                qd_err_set(QD_EMISMATCH, "--resume: %s was written with other settings (%s; now %s)", partial, fq, qct);
        else if (strcmp(fs, srct))
            st = qd_err_set(QD_EMISMATCH, "--resume: %s was written from another checkpoint (%s; now %s)", partial, fs,
                            srct);
        free(ff);
        free(fq);
        free(fs);
    }
    st = qd_coll_agree_msg(comm, st, msg, sizeof msg, NULL);
    if (st) {
        if (file >= 0) H5Fclose(file);
        free(qct);
        free(srct);
        goto out_free;
    }
    hid_t tg;
    if (!resuming) {
        attr_str(file, "format", "qdist");
        attr_i64(file, "format_version", QD_FORMAT_VERSION);
        attr_str(file, "qdist_version", QD_VERSION);
        char path[4096];
        snprintf(path, sizeof path, "%s/config.json", qd_ckpt_dir(ck));
        char *cfgtxt = read_text_file(path);
        cJSON *mc = cfgtxt ? cJSON_Parse(cfgtxt) : NULL;
        const cJSON *mt = mc ? cJSON_GetObjectItemCaseSensitive(mc, "model_type") : NULL;
        attr_str(file, "arch", cJSON_IsString(mt) ? mt->valuestring : "unknown");
        attr_str(file, "model_config", cfgtxt ? cfgtxt : "{}");
        cJSON_Delete(mc);
        free(cfgtxt);
        attr_str(file, "quant_config", qct);
        attr_str(file, "source", srct);
        attr_str(file, "calibration", gres.calibration_json ? gres.calibration_json : "{\"method\":\"none\"}");
        tg = QD_H5_CHECK(H5Gcreate2(file, "tensors", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
        if (cfg->act_static) qd_coll_actrec_write(file, &actrec);
    } else
        tg = QD_H5_CHECK(H5Gopen2(file, "tensors", H5P_DEFAULT));
    free(qct);
    free(srct);
    for (int i = 0; i < n; i++) {
        const qd_tensor_info *t = qd_ckpt_tensor(ck, i);
        item *it = &items[i];
        int quant = it->j.kind == QD_JOB_QUANT;
        if (resuming) {
            it->g = QD_H5_CHECK(H5Gopen2(tg, t->name, H5P_DEFAULT));
            if (quant) {
                it->dq = QD_H5_CHECK(H5Dopen2(it->g, "qweight", H5P_DEFAULT));
                it->ds = QD_H5_CHECK(H5Dopen2(it->g, "scales", H5P_DEFAULT));
                if (!it->j.scheme.sym) it->dz = QD_H5_CHECK(H5Dopen2(it->g, "zeros", H5P_DEFAULT));
                if (it->cq && it->cq->g_idx) it->dg = QD_H5_CHECK(H5Dopen2(it->g, "g_idx", H5P_DEFAULT));
            } else
                it->dd = QD_H5_CHECK(H5Dopen2(it->g, it->j.kind == QD_JOB_FLOAT ? "data" : "raw", H5P_DEFAULT));
            if (qd_sparsity_active(&it->j.sp)) it->dm = QD_H5_CHECK(H5Dopen2(it->g, "mask", H5P_DEFAULT));
            if (QD_H5_CHECK(H5Aexists(it->g, "complete")) > 0) {
                it->complete = 1;
                nresumed++;
                if (quant) {
                    hid_t a = QD_H5_CHECK(H5Aopen(it->g, "metrics", H5P_DEFAULT));
                    QD_H5_CHECK(H5Aread(a, H5T_NATIVE_DOUBLE, it->m));
                    QD_H5_CHECK(H5Aclose(a));
                }
            }
            continue;
        }
        it->g = QD_H5_CHECK(H5Gcreate2(tg, t->name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
        attr_str(it->g, "kind", quant ? "quantized" : it->j.kind == QD_JOB_FLOAT ? "float" : "raw");
        if (qd_sparsity_active(&it->j.sp)) { /* docs/FORMAT.md "Sparsity" */
            char sp[32];
            qd_sparsity_format(&it->j.sp, sp, sizeof sp);
            attr_str(it->g, "sparsity", sp);
            attr_str(it->g, "prune_method", qd_prune_method_name(it->j.prune));
            hsize_t dm[2] = {(hsize_t)it->j.rows, (hsize_t)QD_MASK_ROW_BYTES(it->j.cols)};
            it->dm = make_dset(it->g, "mask", H5T_STD_U8LE, 2, dm);
        }
        attr_i64s(it->g, "shape", t->shape, t->ndim > 0 ? t->ndim : 1);
        attr_str(it->g, "orig_dtype", qd_dtype_name(t->dtype));
        if (quant) {
            const qd_qscheme *s = &it->j.scheme;
            int64_t ng = qd_rtn_ngroups(s, it->j.cols);
            attr_str(it->g, "method", qd_method_name(it->j.method));
            attr_i64(it->g, "bits", s->bits);
            attr_str(it->g, "granularity", gran_name(s->gran));
            attr_i64(it->g, "group_size", s->gran == QD_GRAN_GROUP ? QD_MIN(s->group_size, it->j.cols) : -1);
            attr_i64(it->g, "sym", s->sym);
            attr_i64(it->g, "act_order", it->cq && it->cq->g_idx ? 1 : 0);
            hsize_t dq[2] = {(hsize_t)it->j.rows, (hsize_t)qd_packed_row_bytes(it->j.cols, s->bits)};
            hsize_t dsz[2] = {(hsize_t)it->j.rows, (hsize_t)ng};
            it->dq = make_dset(it->g, "qweight", H5T_STD_U8LE, 2, dq);
            it->ds = make_dset(it->g, "scales", H5T_IEEE_F32LE, 2, dsz);
            if (!s->sym) it->dz = make_dset(it->g, "zeros", H5T_STD_I32LE, 2, dsz);
            if (it->cq && it->cq->g_idx) {
                hsize_t dgi = (hsize_t)it->j.cols;
                it->dg = make_dset(it->g, "g_idx", H5T_STD_I32LE, 1, &dgi);
            }
        } else {
            hsize_t dims[QD_ST_MAX_DIMS], one = (hsize_t)t->nbytes;
            for (int d = 0; d < t->ndim; d++) dims[d] = (hsize_t)t->shape[d];
            if (it->j.kind == QD_JOB_FLOAT) {
                if (t->ndim == 0) dims[0] = 1;
                it->dd = make_dset(it->g, "data", H5T_IEEE_F32LE, t->ndim ? t->ndim : 1, dims);
            } else
                it->dd = make_dset(it->g, "raw", H5T_STD_U8LE, 1, &one);
        }
    }
    if (resuming && rank == 0 && !cfg->quiet)
        printf("resuming %s: %d of %d tensors already complete\n", partial, nresumed, n);

    /* this rank's pieces, in plan order, skipping tensors already complete */
    int *mine = qd_xcalloc((size_t)(plan.npieces ? plan.npieces : 1), sizeof(int)), nmine = 0, maxmine = 0;
    for (int q = 0; q < plan.npieces; q++)
        if (plan.pieces[q].owner == rank && !items[plan.pieces[q].item].complete) mine[nmine++] = q;
    QD_MPI_CHECK(MPI_Allreduce(&nmine, &maxmine, 1, MPI_INT, MPI_MAX, comm));
    /* test hooks: QD_FAULT_RANK=R with QD_FAULT_AFTER=K fails rank R's piece K+1 with an error;
     * with QD_FAULT_SIGNAL_AFTER=K it raises SIGTERM after K pieces (preemption);
     * QD_FAULT_SLOW_MS=M makes every piece take at least M ms (cancel and progress tests) */
    int fault_rank = env_int("QD_FAULT_RANK", -1);
    int fault = fault_rank == rank ? env_int("QD_FAULT_AFTER", -1) : -1;
    int sig_after = fault_rank == rank ? env_int("QD_FAULT_SIGNAL_AFTER", -1) : -1;
    if (sig_after >= 0) fault = -1;
    long slow_ms = env_int("QD_FAULT_SLOW_MS", 0);
    /* completion marks are written (after a flush) at most every mark_every seconds and at the
     * end: a crash loses at most that much work. QD_CHECKPOINT_SECONDS overrides (0: every
     * round). */
    const char *ck_env = getenv("QD_CHECKPOINT_SECONDS");
    double mark_every = ck_env ? atof(ck_env) : 2.0, last_mark = qd_now();
    int *pending = qd_xcalloc((size_t)nz, sizeof(int)), npending = 0, done = nresumed, stopped = 0;
    MPI_Datatype rt;
    QD_MPI_CHECK(MPI_Type_contiguous((int)sizeof(piece_rec), MPI_BYTE, &rt));
    QD_MPI_CHECK(MPI_Type_commit(&rt));
    /* A round: each rank works through its next pieces for about round_s seconds (at most RB),
     * then all ranks exchange what they did. Rounds are the points where an error, a stop
     * request or a checkpoint is agreed; slicing by time rather than by piece keeps ranks with
     * unequal pieces from waiting on each other. */
    enum { RB = 128 };
    const char *rs_env = getenv("QD_ROUND_SECONDS");
    double round_s = rs_env ? atof(rs_env) : 0.25;
    piece_rec *mine_recs = qd_xcalloc(RB, sizeof(piece_rec));
    piece_rec *recs = qd_xcalloc((size_t)size * RB, sizeof(piece_rec));
    double *rank_cpu = qd_xcalloc((size_t)size, sizeof(double)); /* work CPU seconds per rank */
    int next = 0, any_left = maxmine > 0;
    while (any_left && st == QD_OK) {
        int nme = 0, my_st = QD_OK;
        double r0 = qd_now();
        while (next < nmine && nme < RB && my_st == QD_OK && !g_stop && (nme == 0 || qd_now() - r0 < round_s)) {
            const qd_plan_piece *p = &plan.pieces[mine[next]];
            item *it = &items[p->item];
            piece_rec *me = &mine_recs[nme++];
            memset(me, 0, sizeof *me);
            me->piece = mine[next];
            double c0 = thread_cpu();
            if (fault >= 0 && next >= fault)
                me->status = qd_err_set(QD_EIO, "tensor '%s': injected fault (QD_FAULT_RANK=%d QD_FAULT_AFTER=%d)",
                                        qd_ckpt_tensor(ck, it->ti)->name, rank, fault);
            else
                me->status = process_piece(ck, it, p, me);
            me->cpu = thread_cpu() - c0;
            if (slow_ms > 0) {
                struct timespec ts = {slow_ms / 1000, (slow_ms % 1000) * 1000000L};
                nanosleep(&ts, NULL);
            }
            my_st = me->status;
            next++;
            if (sig_after >= 0 && next == sig_after) raise(SIGTERM); /* test hook: preemption */
        }
        for (int q = nme; q < RB; q++) mine_recs[q].piece = -1;
        if (my_st) qd_err_wrap(my_st, "rank %d", rank);
        st = qd_coll_agree_msg(comm, my_st, msg, sizeof msg, NULL);
        if (st) break;
        QD_MPI_CHECK(MPI_Allgather(mine_recs, RB, rt, recs, RB, rt, comm));
        for (int q = 0; q < size * RB; q++) {
            const piece_rec *rc = &recs[q];
            if (rc->piece < 0) continue;
            const qd_plan_piece *p = &plan.pieces[rc->piece];
            item *it = &items[p->item];
            for (int b = 0; b < QD_JOB_MAX_BLOCKS; b++) {
                it->blk[b].err2 += rc->blk[b].err2;
                it->blk[b].w2 += rc->blk[b].w2;
                if (rc->blk[b].max_abs > it->blk[b].max_abs) it->blk[b].max_abs = rc->blk[b].max_abs;
            }
            it->seconds += rc->seconds;
            rank_cpu[q / RB] += rc->cpu;
            it->last_rank = q / RB;
            if (++it->pieces_done < it->pieces_total) continue;
            if (it->j.kind == QD_JOB_QUANT) finish_metrics(it, qd_ckpt_tensor(ck, it->ti));
            pending[npending++] = p->item;
            done++;
            if (rank == 0) {
                const char *name = qd_ckpt_tensor(ck, it->ti)->name;
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "tensor", name);
                cJSON_AddNumberToObject(o, "rank", it->last_rank);
                cJSON_AddNumberToObject(o, "pieces", it->pieces_total);
                cJSON_AddStringToObject(o, "method",
                                        it->j.kind == QD_JOB_QUANT ? qd_method_name(it->j.method) : "copy");
                cJSON_AddNumberToObject(o, "seconds", it->seconds);
                if (it->j.kind == QD_JOB_QUANT) cJSON_AddNumberToObject(o, "rel_error", it->m[0]);
                cJSON_AddNumberToObject(o, "tensors_done", done);
                cJSON_AddNumberToObject(o, "tensors_total", n);
                emit_kv(hooks, "tensor", o);
                progress_tensor(&pg, name, it, done, n, it->pieces_total);
            }
        }
        /* stop (signal, cancel), checkpoint and "anything left" decisions: everyone's flags and
         * rank 0's clock, combined so that every rank takes the same branch */
        int flags[3] = {g_stop ||
                            (rank == 0 && hooks && hooks->cancel_requested && hooks->cancel_requested(hooks->ctx)),
                        rank == 0 && qd_now() - last_mark >= mark_every, next < nmine};
        int any[3];
        QD_MPI_CHECK(MPI_Allreduce(flags, any, 3, MPI_INT, MPI_MAX, comm));
        any_left = any[2];
        if (any[1] || !any_left || any[0]) {
            /* data on disk first, then the completion marks (collective, same values everywhere).
             * The marks reach the file with the next flush or the close. At the end the close
             * writes everything, and a file that has not been closed stays OUT.partial, so the
             * final flush (an fsync through MPI-IO: ~0.1 s per 200 MB) is left out. */
            if (any[1] || any[0]) QD_H5_CHECK(H5Fflush(file, H5F_SCOPE_GLOBAL));
            for (int q = 0; q < npending; q++) {
                item *it = &items[pending[q]];
                if (it->j.kind == QD_JOB_QUANT) {
                    attr_f64s(it->g, "metrics", it->m, 4);
                    attr_str(it->g, "metrics_names", "rel_fro_error,mse,max_abs_error,sqnr_db");
                }
                attr_i64(it->g, "complete", 1);
            }
            npending = 0;
            last_mark = qd_now();
        }
        if (any[0] && any_left) {
            stopped = 1;
            break;
        }
    }
    free(mine_recs);
    free(recs);
    if (rank == 0 && pg.shown) printf("\n");
    QD_MPI_CHECK(MPI_Type_free(&rt));

    /* the end: run bookkeeping, then the status (collective, same values on every rank) */
    if (st == QD_OK && !stopped) {
        /* run bookkeeping (differs between runs): its own group, excluded when comparing files */
        hid_t run = QD_H5_CHECK(H5Gcreate2(file, "run", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
        char when[64];
        time_t now = time(NULL);
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
        QD_MPI_CHECK(MPI_Bcast(when, (int)sizeof when, MPI_CHAR, 0, comm));
        attr_str(run, "created", when);
        attr_i64(run, "ranks", size);
        attr_str(run, "shard", qd_shard_mode_name(cfg->shard));
        attr_i64(run, "resumed_tensors", nresumed);
        double secs = qd_now() - t_start;
        QD_MPI_CHECK(MPI_Bcast(&secs, 1, MPI_DOUBLE, 0, comm));
        attr_f64s(run, "seconds", &secs, 1);
        QD_H5_CHECK(H5Gclose(run));
        attr_str(file, "status", "complete");
    }

    for (int i = 0; i < n; i++) {
        item *it = &items[i];
        if (it->dq >= 0) QD_H5_CHECK(H5Dclose(it->dq));
        if (it->ds >= 0) QD_H5_CHECK(H5Dclose(it->ds));
        if (it->dz >= 0) QD_H5_CHECK(H5Dclose(it->dz));
        if (it->dd >= 0) QD_H5_CHECK(H5Dclose(it->dd));
        if (it->dg >= 0) QD_H5_CHECK(H5Dclose(it->dg));
        if (it->dm >= 0) QD_H5_CHECK(H5Dclose(it->dm));
        if (it->g >= 0) QD_H5_CHECK(H5Gclose(it->g));
    }
    QD_H5_CHECK(H5Gclose(tg));
    QD_H5_CHECK(H5Fclose(file));
    QD_MPI_CHECK(MPI_Barrier(comm));
    if (st == QD_OK && stopped) {
        st = hooks && hooks->cancel_requested && !g_stop ? QD_ECANCELED : QD_EINTR;
        qd_err_set(st, "stopped after %d of %d tensors; the partial file %s is kept", done, n, partial);
    } else if (st == QD_OK && rank == 0 && rename(partial, cfg->out) != 0)
        st = qd_err_set(QD_EIO, "cannot rename %s to %s", partial, cfg->out);
    st = qd_coll_agree_msg(comm, st, msg, sizeof msg, NULL);

    if (rank == 0 && st == QD_OK) {
        int64_t nqt = 0, nft = 0, params = 0, qparams = 0;
        double bin = 0, bout = 0, qin = 0, sum_e = 0, max_e = 0;
        for (int i = 0; i < n; i++) {
            const qd_tensor_info *t = qd_ckpt_tensor(ck, i);
            const item *it = &items[i];
            params += (int64_t)t->numel;
            bin += (double)t->nbytes;
            if (it->j.kind == QD_JOB_QUANT) {
                const qd_qscheme *sc = &it->j.scheme;
                int64_t ng = qd_rtn_ngroups(sc, it->j.cols);
                nqt++;
                qparams += (int64_t)t->numel;
                qin += (double)t->nbytes;
                bout += (double)(it->j.rows * qd_packed_row_bytes(it->j.cols, sc->bits)) +
                        (double)(it->j.rows * ng) * (sc->sym ? 4 : 8);
                sum_e += it->m[0];
                if (it->m[0] > max_e) max_e = it->m[0];
            } else {
                nft++;
                bout += it->j.kind == QD_JOB_FLOAT ? 4.0 * (double)t->numel : (double)t->nbytes;
            }
        }
        double secs = qd_now() - t_start, cpu_max = 0, cpu_sum = 0;
        for (int r = 0; r < size; r++) {
            cpu_sum += rank_cpu[r];
            if (rank_cpu[r] > cpu_max) cpu_max = rank_cpu[r];
        }
        struct stat sb;
        double fbytes = stat(cfg->out, &sb) == 0 ? (double)sb.st_size : 0;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "tensors_quantized", (double)nqt);
        cJSON_AddNumberToObject(o, "tensors_kept", (double)nft);
        cJSON_AddNumberToObject(o, "tensors_resumed", nresumed);
        cJSON_AddNumberToObject(o, "parameters", (double)params);
        cJSON_AddNumberToObject(o, "parameters_quantized", (double)qparams);
        cJSON_AddNumberToObject(o, "bytes_in", bin);
        cJSON_AddNumberToObject(o, "bytes_out", bout);
        cJSON_AddNumberToObject(o, "file_bytes", fbytes);
        cJSON_AddNumberToObject(o, "compression", bout > 0 ? bin / bout : 0);
        cJSON_AddNumberToObject(o, "mean_rel_error", nqt ? sum_e / (double)nqt : 0);
        cJSON_AddNumberToObject(o, "max_rel_error", max_e);
        cJSON_AddNumberToObject(o, "seconds", secs);
        cJSON_AddNumberToObject(o, "gb_per_s", secs > 0 ? bin / secs * 1e-9 : 0);
        cJSON_AddNumberToObject(o, "quantized_gb_per_s", secs > 0 ? qin / secs * 1e-9 : 0);
        cJSON_AddNumberToObject(o, "work_cpu_seconds", cpu_sum);
        cJSON_AddNumberToObject(o, "work_cpu_seconds_max_rank", cpu_max);
        emit_kv(hooks, "finished", o);
        if (!cfg->quiet) {
            printf("wrote %s\n", cfg->out);
            printf("  tensors    %lld quantized, %lld kept as float%s\n", (long long)nqt, (long long)nft,
                   nresumed ? " (some from the resumed file)" : "");
            printf("  parameters %lld (%lld quantized)\n", (long long)params, (long long)qparams);
            printf("  bytes      %.0f in, %.0f out: %.2fx smaller (file %.0f bytes)\n", bin, bout,
                   bout > 0 ? bin / bout : 0, fbytes);
            printf("  rel. error mean %.3e, max %.3e (Frobenius, per tensor)\n", nqt ? sum_e / (double)nqt : 0, max_e);
            printf("  time       %.2f s on %d rank%s: %.2f GB/s of input, %.2f GB/s of quantized input\n", secs, size,
                   size == 1 ? "" : "s", secs > 0 ? bin / secs * 1e-9 : 0, secs > 0 ? qin / secs * 1e-9 : 0);
            printf("  work CPU   %.2f s in all, %.2f s on the busiest rank: %.2f GB/s per CPU-second", cpu_sum, cpu_max,
                   cpu_sum > 0 ? bin / cpu_sum * 1e-9 : 0);
            if (size > 1)
                printf(", parallel efficiency %.0f%% of the CPU time",
                       cpu_max > 0 ? 100.0 * cpu_sum / (size * cpu_max) : 0);
            printf("\n");
        }
    } else if (rank == 0 && st != QD_OK) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "code", qd_errname(st));
        cJSON_AddStringToObject(o, "message", msg);
        emit_kv(hooks, "failed", o);
    }
    free(mine);
    free(pending);
    free(rank_cpu);
out_free:
    qd_gptq_results_free(&gres);
    qd_actrec_free(&actrec);
    qd_plan_free(&plan);
    free(items);
    qd_ckpt_close(ck);
out_sig:
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGINT, &old_int, NULL);
    if (st) qd_err_set(st, "%s", msg);
    return st;
}
