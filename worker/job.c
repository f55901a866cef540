/* The distributed quantization job (see job.h) and the HDF5 model writer. File layout:
 * docs/FORMAT.md. */
#include "worker/job.h"

#include <hdf5.h>
#include <math.h>
#include <fnmatch.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "collective/collective.h"
#include "shard/safetensors.h"
#include "shard/select.h"

#define QD_FORMAT_VERSION 1

static volatile sig_atomic_t g_stop;
void qd_job_request_stop(void) { g_stop = 1; }

void qd_job_config_default(qd_job_config *c) {
    memset(c, 0, sizeof *c);
    c->method = QD_METHOD_RTN;
    c->scheme.bits = 8;
    c->scheme.sym = 1;
    c->scheme.gran = QD_GRAN_CHANNEL;
    c->scheme.group_size = 128;
    c->shard = QD_SHARD_TENSOR;
}

static const char *gran_name(qd_granularity g) {
    return g == QD_GRAN_TENSOR ? "tensor" : g == QD_GRAN_CHANNEL ? "channel" : "group";
}
static const char *method_name(qd_method m) {
    return m == QD_METHOD_RTN ? "rtn" : m == QD_METHOD_GPTQ ? "gptq" : "adaround";
}

cJSON *qd_job_config_json(const qd_job_config *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "method", method_name(c->method));
    cJSON_AddNumberToObject(o, "bits", c->scheme.bits);
    cJSON_AddStringToObject(o, "granularity", gran_name(c->scheme.gran));
    cJSON_AddNumberToObject(o, "group_size", c->scheme.gran == QD_GRAN_GROUP ? (double)c->scheme.group_size : -1);
    cJSON_AddBoolToObject(o, "sym", c->scheme.sym);
    cJSON_AddStringToObject(o, "clip", c->clip_mse ? "mse" : "minmax");
    cJSON_AddBoolToObject(o, "include_embeddings", c->include_embeddings);
    cJSON_AddBoolToObject(o, "include_head", c->include_head);
    if (c->n_overrides) {
        cJSON *arr = cJSON_AddArrayToObject(o, "overrides");
        for (int i = 0; i < c->n_overrides; i++) {
            const qd_override *v = &c->overrides[i];
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "pattern", v->pattern);
            if (v->skip) cJSON_AddBoolToObject(e, "skip", 1);
            if (v->bits >= 0) cJSON_AddNumberToObject(e, "bits", v->bits);
            if (v->gran >= 0) cJSON_AddStringToObject(e, "granularity", gran_name((qd_granularity)v->gran));
            if (v->group_size >= 0) cJSON_AddNumberToObject(e, "group_size", (double)v->group_size);
            if (v->sym >= 0) cJSON_AddBoolToObject(e, "sym", v->sym);
            if (v->clip_mse >= 0) cJSON_AddStringToObject(e, "clip", v->clip_mse ? "mse" : "minmax");
            cJSON_AddItemToArray(arr, e);
        }
    }
    return o;
}

/* ---- small HDF5 helpers (every call checked) ------------------------------------------- */

static void attr_str(hid_t obj, const char *name, const char *val) {
    hid_t t = QD_H5_CHECK(H5Tcopy(H5T_C_S1));
    QD_H5_CHECK(H5Tset_size(t, strlen(val) + 1));
    QD_H5_CHECK(H5Tset_strpad(t, H5T_STR_NULLTERM));
    hid_t sp = QD_H5_CHECK(H5Screate(H5S_SCALAR));
    hid_t a = QD_H5_CHECK(H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT));
    QD_H5_CHECK(H5Awrite(a, t, val));
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
}

static void attr_i64s(hid_t obj, const char *name, const int64_t *v, int n) {
    hsize_t d = (hsize_t)n;
    hid_t sp = QD_H5_CHECK(n == 1 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &d, NULL));
    hid_t a = QD_H5_CHECK(H5Acreate2(obj, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT));
    QD_H5_CHECK(H5Awrite(a, H5T_NATIVE_INT64, v));
    H5Aclose(a);
    H5Sclose(sp);
}

static void attr_i64(hid_t obj, const char *name, int64_t v) { attr_i64s(obj, name, &v, 1); }

static void attr_f64(hid_t obj, const char *name, double v) {
    hid_t sp = QD_H5_CHECK(H5Screate(H5S_SCALAR));
    hid_t a = QD_H5_CHECK(H5Acreate2(obj, name, H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT));
    QD_H5_CHECK(H5Awrite(a, H5T_NATIVE_DOUBLE, &v));
    H5Aclose(a);
    H5Sclose(sp);
}

/* a fixed-length string attribute, malloc'd ("" if absent) */
static char *read_attr_str(hid_t obj, const char *name) {
    if (H5Aexists(obj, name) <= 0) return qd_xstrdup("");
    hid_t a = QD_H5_CHECK(H5Aopen(obj, name, H5P_DEFAULT));
    hid_t t = QD_H5_CHECK(H5Aget_type(a));
    size_t n = H5Tget_size(t);
    char *b = qd_xcalloc(n + 1, 1);
    if (H5Tget_class(t) == H5T_STRING && !H5Tis_variable_str(t)) QD_H5_CHECK(H5Aread(a, t, b));
    H5Tclose(t);
    H5Aclose(a);
    return b;
}

static hid_t make_dset(hid_t g, const char *name, hid_t ftype, int nd, const hsize_t *dims) {
    hid_t sp = QD_H5_CHECK(H5Screate_simple(nd, dims, NULL));
    hid_t d = QD_H5_CHECK(H5Dcreate2(g, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Sclose(sp);
    return d;
}

static char *read_text_file(const char *path) {
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

enum { KIND_QUANT = 0, KIND_FLOAT = 1, KIND_RAW = 2 };

typedef struct {
    int ti;               /* tensor index in the checkpoint */
    int kind;
    int64_t rows, cols;   /* quantized tensors: [out, in] */
    qd_qscheme scheme;    /* the job's, or a matching override's */
    int clip_mse;
    hid_t g, dq, ds, dz, dd;
    double m[4];          /* rel_fro, mse, max_abs, sqnr_db */
    double seconds;
    int owner;
} item;

/* one rank's report of a round */
typedef struct {
    int item;             /* -1: idle this round */
    int status;
    double m[4];
    double seconds;
} round_rec;

/* The scheme of a tensor selected for quantization: the first matching override applies.
 * Returns 0 if an override keeps the tensor float. */
static int resolve_scheme(const qd_job_config *cfg, const char *name, qd_qscheme *s, int *clip_mse) {
    *s = cfg->scheme;
    *clip_mse = cfg->clip_mse;
    for (int i = 0; i < cfg->n_overrides; i++) {
        const qd_override *v = &cfg->overrides[i];
        if (fnmatch(v->pattern, name, 0) != 0) continue;
        if (v->skip) return 0;
        if (v->bits >= 0) s->bits = v->bits;
        if (v->sym >= 0) s->sym = v->sym;
        if (v->gran >= 0) s->gran = (qd_granularity)v->gran;
        if (v->group_size >= 0) {
            s->group_size = v->group_size;
            if (v->gran < 0) s->gran = QD_GRAN_GROUP;
        }
        if (v->clip_mse >= 0) *clip_mse = v->clip_mse;
        break;
    }
    return 1;
}

static int should_quantize(const qd_job_config *cfg, const qd_tensor_info *t) {
    if (!t->float_like || t->ndim != 2) return 0;
    if (qd_shard_default_quantizable(t)) return 1;
    const char *n = t->name;
    size_t len = strlen(n);
    int is_weight = len > 7 && !strcmp(n + len - 7, ".weight");
    if (cfg->include_embeddings && strstr(n, "embed") && is_weight) return 1;
    if (cfg->include_head && (strstr(n, "pooler") || strstr(n, "classifier")) && is_weight) return 1;
    return 0;
}

/* Quantize (or copy) one item and write its datasets; sets it->m. */
static int process_item(qd_checkpoint *ck, const qd_job_config *cfg, item *it) {
    const qd_tensor_info *t = qd_ckpt_tensor(ck, it->ti);
    double t0 = qd_now();
    if (it->kind == KIND_RAW) {
        const void *raw;
        int rc = qd_ckpt_raw(ck, it->ti, &raw);
        if (rc) return rc;
        if (t->nbytes) QD_H5_CHECK(H5Dwrite(it->dd, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw));
        it->seconds = qd_now() - t0;
        return QD_OK;
    }
    const float *w;
    int owned = 0;
    int rc = qd_ckpt_read_f32(ck, it->ti, &w, &owned);
    if (rc) return rc;
    if (it->kind == KIND_FLOAT) {
        rc = qd_check_finite(w, 1, (int64_t)t->numel, t->name);
        if (!rc && t->numel) QD_H5_CHECK(H5Dwrite(it->dd, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, w));
        if (owned) free((void *)w);
        it->seconds = qd_now() - t0;
        return rc;
    }
    int64_t R = it->rows, C = it->cols;
    qd_qparams p;
    qd_clip_opts clip = it->clip_mse ? (qd_clip_opts){100, 0.8f, 2.0f} : QD_CLIP_MINMAX;
    rc = qd_quant_params(w, R, C, &it->scheme, &clip, &p);
    if (rc) {
        qd_err_wrap(rc, "tensor '%s'", t->name);
        if (owned) free((void *)w);
        return rc;
    }
    uint8_t *codes = qd_xmalloc((size_t)(R * C));
    float *deq = qd_xmalloc((size_t)(R * C) * sizeof(float));
    qd_rtn_quantize(w, &p, NULL, codes);
    qd_dequantize(codes, &p, NULL, deq);
    qd_qerror e = qd_quant_error(w, deq, R * C);
    it->m[0] = e.rel_fro;
    it->m[1] = e.mse;
    it->m[2] = e.max_abs;
    it->m[3] = isinf(e.sqnr_db) ? 999.0 : e.sqnr_db;
    int64_t rb = qd_packed_row_bytes(C, p.bits);
    uint8_t *packed = qd_xmalloc((size_t)(R * rb));
    qd_pack_matrix(codes, R, C, p.bits, packed);
    QD_H5_CHECK(H5Dwrite(it->dq, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, packed));
    QD_H5_CHECK(H5Dwrite(it->ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, p.scales));
    if (it->dz >= 0) QD_H5_CHECK(H5Dwrite(it->dz, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, p.zeros));
    free(packed);
    free(codes);
    free(deq);
    qd_qparams_free(&p);
    if (owned) free((void *)w);
    it->seconds = qd_now() - t0;
    return QD_OK;
}

static int fault_after(int rank) {
    const char *r = getenv("QD_FAULT_RANK"), *k = getenv("QD_FAULT_AFTER");
    if (!r || !k || atoi(r) != rank) return -1;
    return atoi(k);
}

static void emit_kv(const qd_job_hooks *h, const char *type, cJSON *o) {
    qd_job_emit(h, type, o);
    cJSON_Delete(o);
}

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

int qd_job_run(const qd_job_config *cfg, MPI_Comm comm, const qd_job_hooks *hooks) {
    int rank, size;
    QD_MPI_CHECK(MPI_Comm_rank(comm, &rank));
    QD_MPI_CHECK(MPI_Comm_size(comm, &size));
    double t_start = qd_now();
    char msg[1024];
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
    int st = qd_ckpt_open(cfg->model, &ck);
    if (st == QD_OK && !cfg->overwrite && access(cfg->out, F_OK) == 0)
        st = qd_err_set(QD_EEXIST, "%s exists (use --overwrite to replace it)", cfg->out);
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

    /* the work list and the plan: the same on every rank (deterministic) */
    int n = qd_ckpt_num_tensors(ck);
    item *items = qd_xcalloc((size_t)(n ? n : 1), sizeof(item));
    qd_plan_item *pi = qd_xcalloc((size_t)(n ? n : 1), sizeof(qd_plan_item));
    int *owner = qd_xcalloc((size_t)(n ? n : 1), sizeof(int));
    int nq = 0;
    for (int i = 0; i < n; i++) {
        const qd_tensor_info *t = qd_ckpt_tensor(ck, i);
        item *it = &items[i];
        it->ti = i;
        it->kind = should_quantize(cfg, t) && resolve_scheme(cfg, t->name, &it->scheme, &it->clip_mse)
                       ? KIND_QUANT : t->float_like ? KIND_FLOAT : KIND_RAW;
        it->rows = t->ndim ? t->shape[0] : 1;
        it->cols = it->rows ? (int64_t)t->numel / it->rows : 0;
        it->g = it->dq = it->ds = it->dz = it->dd = -1;
        nq += it->kind == KIND_QUANT;
        pi[i].cost = it->kind == KIND_QUANT ? qd_plan_cost_rtn(it->rows, it->cols) : qd_plan_cost_copy((int64_t)t->numel);
        pi[i].mem = (double)t->numel * 4.0 * (it->kind == KIND_QUANT ? 2.5 : 1.0);
        pi[i].block = qd_shard_block_index(t->name);
    }
    qd_plan_assign(pi, n, size, cfg->shard, owner);
    double *load = qd_xcalloc((size_t)size, sizeof(double));
    double balance = qd_plan_balance(pi, n, size, owner, load);
    for (int i = 0; i < n; i++) items[i].owner = owner[i];
    if (rank == 0) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "tensors_total", n);
        cJSON_AddNumberToObject(o, "tensors_quantized", nq);
        cJSON_AddNumberToObject(o, "ranks", size);
        cJSON_AddStringToObject(o, "shard", cfg->shard == QD_SHARD_LAYER ? "layer" : "tensor");
        cJSON_AddNumberToObject(o, "balance", balance);
        emit_kv(hooks, "plan", o);
        if (!cfg->quiet)
            qd_log(QD_LOG_INFO, "%s: %d tensors (%d to quantize, %d-bit %s%s, %s), %d rank%s, sharding by %s, balance max/mean %.3f",
                   cfg->model, n, nq, cfg->scheme.bits, gran_name(cfg->scheme.gran),
                   cfg->scheme.gran == QD_GRAN_GROUP ? " groups" : "", cfg->scheme.sym ? "symmetric" : "asymmetric",
                   size, size == 1 ? "" : "s", cfg->shard == QD_SHARD_LAYER ? "layer" : "tensor", balance);
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
        qd_log(QD_LOG_INFO, "--resume: no %s, starting from the beginning", partial);
    hid_t fapl = QD_H5_CHECK(H5Pcreate(H5P_FILE_ACCESS));
    QD_H5_CHECK(H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL));
    H5E_auto2_t efn;
    void *edata;
    H5Eget_auto2(H5E_DEFAULT, &efn, &edata);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t file = resuming ? H5Fopen(partial, H5F_ACC_RDWR, fapl) : H5Fcreate(partial, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Eset_auto2(H5E_DEFAULT, efn, edata);
    H5Pclose(fapl);
    st = file < 0 ? qd_err_set(QD_EIO, "%s: cannot %s the output file", partial, resuming ? "open" : "create") : QD_OK;
    if (st == QD_OK && resuming) {
        char *fq = read_attr_str(file, "quant_config"), *fs = read_attr_str(file, "source");
        if (strcmp(fq, qct))
            st = qd_err_set(QD_EMISMATCH, "--resume: %s was written with other settings (%s; now %s)", partial, fq, qct);
        else if (strcmp(fs, srct))
            st = qd_err_set(QD_EMISMATCH, "--resume: %s was written from another checkpoint (%s)", partial, fs);
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
        attr_str(file, "calibration", "{\"method\":\"none\"}");
        tg = QD_H5_CHECK(H5Gcreate2(file, "tensors", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    } else
        tg = QD_H5_CHECK(H5Gopen2(file, "tensors", H5P_DEFAULT));
    free(qct);
    free(srct);
    int *done_flag = qd_xcalloc((size_t)(n ? n : 1), sizeof(int));
    for (int i = 0; i < n; i++) {
        const qd_tensor_info *t = qd_ckpt_tensor(ck, i);
        item *it = &items[i];
        if (resuming) {
            it->g = QD_H5_CHECK(H5Gopen2(tg, t->name, H5P_DEFAULT));
            if (it->kind == KIND_QUANT) {
                it->dq = QD_H5_CHECK(H5Dopen2(it->g, "qweight", H5P_DEFAULT));
                it->ds = QD_H5_CHECK(H5Dopen2(it->g, "scales", H5P_DEFAULT));
                if (!it->scheme.sym) it->dz = QD_H5_CHECK(H5Dopen2(it->g, "zeros", H5P_DEFAULT));
            } else
                it->dd = QD_H5_CHECK(H5Dopen2(it->g, it->kind == KIND_FLOAT ? "data" : "raw", H5P_DEFAULT));
            if (H5Aexists(it->g, "complete") > 0) {
                done_flag[i] = 1;
                nresumed++;
                if (it->kind == KIND_QUANT) {
                    hid_t a = QD_H5_CHECK(H5Aopen(it->g, "metrics", H5P_DEFAULT));
                    QD_H5_CHECK(H5Aread(a, H5T_NATIVE_DOUBLE, it->m));
                    H5Aclose(a);
                }
            }
            continue;
        }
        it->g = QD_H5_CHECK(H5Gcreate2(tg, t->name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
        attr_str(it->g, "kind", it->kind == KIND_QUANT ? "quantized" : it->kind == KIND_FLOAT ? "float" : "raw");
        attr_i64s(it->g, "shape", t->shape, t->ndim > 0 ? t->ndim : 1);
        attr_str(it->g, "orig_dtype", qd_dtype_name(t->dtype));
        if (it->kind == KIND_QUANT) {
            int64_t G = it->scheme.gran == QD_GRAN_GROUP ? QD_MIN(it->scheme.group_size, it->cols) : it->cols;
            int64_t ng = (it->cols + G - 1) / G;
            attr_str(it->g, "method", method_name(cfg->method));
            attr_i64(it->g, "bits", it->scheme.bits);
            attr_str(it->g, "granularity", gran_name(it->scheme.gran));
            attr_i64(it->g, "group_size", it->scheme.gran == QD_GRAN_GROUP ? G : -1);
            attr_i64(it->g, "sym", it->scheme.sym);
            attr_i64(it->g, "act_order", 0);
            hsize_t dq[2] = {(hsize_t)it->rows, (hsize_t)qd_packed_row_bytes(it->cols, it->scheme.bits)};
            hsize_t dsz[2] = {(hsize_t)it->rows, (hsize_t)ng};
            it->dq = make_dset(it->g, "qweight", H5T_STD_U8LE, 2, dq);
            it->ds = make_dset(it->g, "scales", H5T_IEEE_F32LE, 2, dsz);
            if (!it->scheme.sym) it->dz = make_dset(it->g, "zeros", H5T_STD_I32LE, 2, dsz);
        } else {
            hsize_t dims[QD_ST_MAX_DIMS], one = (hsize_t)t->nbytes;
            for (int d = 0; d < t->ndim; d++) dims[d] = (hsize_t)t->shape[d];
            if (it->kind == KIND_FLOAT) {
                if (t->ndim == 0) dims[0] = 1;
                it->dd = make_dset(it->g, "data", H5T_IEEE_F32LE, t->ndim ? t->ndim : 1, dims);
            } else
                it->dd = make_dset(it->g, "raw", H5T_STD_U8LE, 1, &one);
        }
    }
    if (resuming && rank == 0 && !cfg->quiet)
        qd_log(QD_LOG_INFO, "resuming %s: %d of %d tensors already complete", partial, nresumed, n);

    int *mine = qd_xcalloc((size_t)(n ? n : 1), sizeof(int)), nmine = 0, maxmine = 0;
    for (int i = 0; i < n; i++)
        if (owner[i] == rank && !done_flag[i]) mine[nmine++] = i;
    QD_MPI_CHECK(MPI_Allreduce(&nmine, &maxmine, 1, MPI_INT, MPI_MAX, comm));
    round_rec *recs = qd_xcalloc((size_t)size, sizeof(round_rec));
    int fault = fault_after(rank), done = nresumed, stopped = 0;
    const char *sig_env = getenv("QD_FAULT_SIGNAL_AFTER");
    int sig_after = sig_env && getenv("QD_FAULT_RANK") && atoi(getenv("QD_FAULT_RANK")) == rank ? atoi(sig_env) : -1;
    if (sig_after >= 0) fault = -1;
    /* test hook: QD_FAULT_SLOW_MS=M makes every tensor take at least M ms (to test cancel and
     * progress on a model that quantizes in milliseconds) */
    /* completion marks are written (after a flush) at most every mark_every seconds and at the
     * end: a crash loses at most that much work. QD_CHECKPOINT_SECONDS overrides (0: every
     * round). */
    const char *ck_env = getenv("QD_CHECKPOINT_SECONDS");
    double mark_every = ck_env ? atof(ck_env) : 2.0, last_mark = qd_now();
    int *pending = qd_xcalloc((size_t)(n ? n : 1), sizeof(int)), npending = 0;
    const char *slow_env = getenv("QD_FAULT_SLOW_MS");
    long slow_ms = slow_env ? atol(slow_env) : 0;
    MPI_Datatype rt;
    QD_MPI_CHECK(MPI_Type_contiguous((int)sizeof(round_rec), MPI_BYTE, &rt));
    QD_MPI_CHECK(MPI_Type_commit(&rt));
    int tty = isatty(STDOUT_FILENO);
    /* A round: each rank works through its next tensors for about round_s seconds (at most RB),
     * then all ranks exchange what they did. Rounds are the points where an error, a stop
     * request or a checkpoint is agreed; slicing by time rather than by tensor keeps ranks with
     * unequal tensors from waiting on each other. */
    enum { RB = 32 };
    const char *rs_env = getenv("QD_ROUND_SECONDS");
    double round_s = rs_env ? atof(rs_env) : 0.25;
    round_rec *mine_recs = qd_xcalloc(RB, sizeof(round_rec));
    free(recs);
    recs = qd_xcalloc((size_t)size * RB, sizeof(round_rec));
    int next = 0, any_left = maxmine > 0;
    while (any_left && st == QD_OK) {
        int nme = 0, my_st = QD_OK;
        double r0 = qd_now();
        while (next < nmine && nme < RB && my_st == QD_OK && !g_stop && (nme == 0 || qd_now() - r0 < round_s)) {
            item *it = &items[mine[next]];
            round_rec *me = &mine_recs[nme++];
            memset(me, 0, sizeof *me);
            me->item = mine[next];
            if (fault >= 0 && next >= fault)
                me->status = qd_err_set(QD_EIO, "tensor '%s': injected fault (QD_FAULT_RANK=%d QD_FAULT_AFTER=%d)",
                                        qd_ckpt_tensor(ck, it->ti)->name, rank, fault);
            else
                me->status = process_item(ck, cfg, it);
            if (slow_ms > 0) {
                struct timespec ts = {slow_ms / 1000, (slow_ms % 1000) * 1000000L};
                nanosleep(&ts, NULL);
            }
            memcpy(me->m, it->m, sizeof me->m);
            me->seconds = it->seconds;
            my_st = me->status;
            next++;
            if (sig_after >= 0 && next == sig_after) raise(SIGTERM); /* test hook: preemption */
        }
        for (int q = nme; q < RB; q++) mine_recs[q].item = -1;
        st = qd_coll_agree_msg(comm, my_st, msg, sizeof msg, NULL);
        QD_MPI_CHECK(MPI_Allgather(mine_recs, RB, rt, recs, RB, rt, comm));
        if (st) break;
        for (int q = 0; q < size * RB; q++) {
            if (recs[q].item < 0) continue;
            int r = q / RB;
            item *it = &items[recs[q].item];
            pending[npending++] = recs[q].item;
            memcpy(it->m, recs[q].m, sizeof it->m);
            it->seconds = recs[q].seconds;
            done++;
            if (rank == 0) {
                const char *name = qd_ckpt_tensor(ck, it->ti)->name;
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "tensor", name);
                cJSON_AddNumberToObject(o, "rank", r);
                cJSON_AddStringToObject(o, "method", it->kind == KIND_QUANT ? method_name(cfg->method) : "copy");
                cJSON_AddNumberToObject(o, "seconds", it->seconds);
                if (it->kind == KIND_QUANT) cJSON_AddNumberToObject(o, "rel_error", it->m[0]);
                cJSON_AddNumberToObject(o, "tensors_done", done);
                cJSON_AddNumberToObject(o, "tensors_total", n);
                emit_kv(hooks, "tensor", o);
                if (!cfg->quiet && it->kind == KIND_QUANT) {
                    double el = qd_now() - t_start, eta = el * (n - done) / done;
                    if (tty)
                        printf("\r[%3d/%3d] %5.1f%%  ETA %5.1f s  %-60.60s", done, n, 100.0 * done / n, eta, name);
                    else
                        printf("[%d/%d] %s  rank %d  rel.err %.3e  %.3f s\n", done, n, name, r, it->m[0], it->seconds);
                    fflush(stdout);
                }
            }
        }
        /* stop (signal, cancel), checkpoint and "anything left" decisions: everyone's flags and
         * rank 0's clock, combined so that every rank takes the same branch */
        int flags[3] = {g_stop || (rank == 0 && hooks && hooks->cancel_requested && hooks->cancel_requested(hooks->ctx)),
                        rank == 0 && qd_now() - last_mark >= mark_every, next < nmine};
        int any[3];
        QD_MPI_CHECK(MPI_Allreduce(flags, any, 3, MPI_INT, MPI_MAX, comm));
        any_left = any[2];
        if (any[1] || !any_left || any[0]) {
            /* data on disk first, then the completion marks (collective, same values everywhere) */
            QD_H5_CHECK(H5Fflush(file, H5F_SCOPE_GLOBAL));
            for (int q = 0; q < npending; q++) {
                item *it = &items[pending[q]];
                if (it->kind == KIND_QUANT) {
                    hsize_t four = 4;
                    hid_t sp = QD_H5_CHECK(H5Screate_simple(1, &four, NULL));
                    hid_t a = QD_H5_CHECK(H5Acreate2(it->g, "metrics", H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT));
                    QD_H5_CHECK(H5Awrite(a, H5T_NATIVE_DOUBLE, it->m));
                    H5Aclose(a);
                    H5Sclose(sp);
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
    if (rank == 0 && tty && !cfg->quiet) printf("\n");
    QD_MPI_CHECK(MPI_Type_free(&rt));

    /* the end: run bookkeeping, then the status (collective, same values on every rank) */
    if (st == QD_OK && !stopped) {
        /* run bookkeeping (differs between runs): its own group, excluded when comparing files */
        hid_t run = QD_H5_CHECK(H5Gcreate2(file, "run", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
        char when[64];
        time_t now = time(NULL);
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
        attr_str(run, "created", when);
        attr_i64(run, "ranks", size);
        attr_f64(run, "seconds", qd_now() - t_start);
        H5Gclose(run);
        attr_str(file, "status", "complete");
    }

    for (int i = 0; i < n; i++) {
        item *it = &items[i];
        if (it->dq >= 0) H5Dclose(it->dq);
        if (it->ds >= 0) H5Dclose(it->ds);
        if (it->dz >= 0) H5Dclose(it->dz);
        if (it->dd >= 0) H5Dclose(it->dd);
        if (it->g >= 0) H5Gclose(it->g);
    }
    H5Gclose(tg);
    QD_H5_CHECK(H5Fclose(file));
    QD_MPI_CHECK(MPI_Barrier(comm));
    if (st == QD_OK && stopped) {
        st = hooks && hooks->cancel_requested && !g_stop ? QD_ECANCELED : QD_EINTR;
        qd_err_set(st, "stopped after %d of %d tensors; the partial file %s is kept", done, n, partial);
    } else if (st == QD_OK && rank == 0 && rename(partial, cfg->out) != 0)
        st = qd_err_set(QD_EIO, "cannot rename %s to %s", partial, cfg->out);
    st = qd_coll_agree_msg(comm, st, msg, sizeof msg, NULL);

    if (rank == 0 && st == QD_OK) {
        int64_t nqp = 0, nfp = 0, params = 0;
        double bin = 0, bout = 0, qin = 0, sum_e = 0, max_e = 0;
        for (int i = 0; i < n; i++) {
            const qd_tensor_info *t = qd_ckpt_tensor(ck, i);
            params += (int64_t)t->numel;
            bin += (double)t->nbytes;
            if (items[i].kind == KIND_QUANT) {
                const qd_qscheme *sc = &items[i].scheme;
                int64_t G = sc->gran == QD_GRAN_GROUP ? QD_MIN(sc->group_size, items[i].cols) : items[i].cols;
                int64_t ng = (items[i].cols + G - 1) / G;
                nqp++;
                qin += (double)t->nbytes;
                bout += (double)(items[i].rows * qd_packed_row_bytes(items[i].cols, sc->bits)) +
                        (double)(items[i].rows * ng) * (sc->sym ? 4 : 8);
                sum_e += items[i].m[0];
                if (items[i].m[0] > max_e) max_e = items[i].m[0];
            } else {
                nfp++;
                bout += items[i].kind == KIND_FLOAT ? 4.0 * (double)t->numel : (double)t->nbytes;
            }
        }
        double secs = qd_now() - t_start;
        struct stat sb;
        double fbytes = stat(cfg->out, &sb) == 0 ? (double)sb.st_size : 0;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "tensors_quantized", (double)nqp);
        cJSON_AddNumberToObject(o, "tensors_kept", (double)nfp);
        cJSON_AddNumberToObject(o, "parameters", (double)params);
        cJSON_AddNumberToObject(o, "bytes_in", bin);
        cJSON_AddNumberToObject(o, "bytes_out", bout);
        cJSON_AddNumberToObject(o, "file_bytes", fbytes);
        cJSON_AddNumberToObject(o, "compression", bout > 0 ? bin / bout : 0);
        cJSON_AddNumberToObject(o, "mean_rel_error", nqp ? sum_e / (double)nqp : 0);
        cJSON_AddNumberToObject(o, "max_rel_error", max_e);
        cJSON_AddNumberToObject(o, "seconds", secs);
        cJSON_AddNumberToObject(o, "gb_per_s", secs > 0 ? qin / secs * 1e-9 : 0);
        emit_kv(hooks, "finished", o);
        if (!cfg->quiet) {
            printf("wrote %s\n", cfg->out);
            printf("  tensors    %lld quantized, %lld kept\n", (long long)nqp, (long long)nfp);
            printf("  parameters %lld\n", (long long)params);
            printf("  bytes      %.0f in, %.0f out (%.2fx smaller; file %.0f bytes)\n", bin, bout, bout > 0 ? bin / bout : 0, fbytes);
            printf("  rel. error mean %.3e, max %.3e (Frobenius, per tensor)\n", nqp ? sum_e / (double)nqp : 0, max_e);
            printf("  time       %.2f s on %d rank%s, %.2f GB/s of quantized input\n", secs, size, size == 1 ? "" : "s",
                   secs > 0 ? qin / secs * 1e-9 : 0);
        }
    } else if (rank == 0 && st != QD_OK) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "code", qd_errname(st));
        cJSON_AddStringToObject(o, "message", msg);
        emit_kv(hooks, "failed", o);
    }
    free(mine);
    free(recs);
    free(done_flag);
    free(pending);
out_free:
    free(load);
    free(items);
    free(pi);
    free(owner);
    qd_ckpt_close(ck);
out_sig:
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGINT, &old_int, NULL);
    if (st) qd_err_set(st, "%s", msg);
    return st;
}
