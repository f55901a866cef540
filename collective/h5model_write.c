/* collective/h5model_write.c — the model file's writer (see h5model.h): created collectively
 * through parallel HDF5, every object up front in the same order on every rank, each rank its own
 * rows, completion marks after a flush, the status last and the rename. Every HDF5 call is
 * checked. Writes of data and the flushes and closes that put it on disk can fail for reasons
 * outside the program (disk full, quota, I/O error): those end the job with an error naming the
 * file, after which no completion mark and no status is written, and the partial file is kept for
 * --resume once space is freed. Any other failure is a bug (QD_H5_CHECK aborts the job on all
 * ranks). */
#define _GNU_SOURCE /* fallocate */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "collective/collective.h"
#include "collective/h5model_internal.h"

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
    hid_t a = QD_H5_CHECK(H5Acreate2(obj, name, qd_h5m__file_type(type), sp, H5P_DEFAULT, H5P_DEFAULT));
    QD_H5_CHECK(H5Awrite(a, qd_h5m__mem_type(type), v));
    QD_H5_CHECK(H5Aclose(a));
    QD_H5_CHECK(H5Sclose(sp));
}

static void attr_i64(hid_t obj, const char *name, int64_t v) { attr_num(obj, name, QD_H5M_INT64, &v, 1); }

/* a 1-D array attribute, even of one value (the per-tensor arrays of /activations) */
static void attr_vec(hid_t obj, const char *name, qd_h5m_type type, const void *v, int n)
{
    hsize_t d = (hsize_t)n;
    hid_t sp = QD_H5_CHECK(H5Screate_simple(1, &d, NULL));
    hid_t a = QD_H5_CHECK(H5Acreate2(obj, name, qd_h5m__file_type(type), sp, H5P_DEFAULT, H5P_DEFAULT));
    QD_H5_CHECK(H5Awrite(a, qd_h5m__mem_type(type), v));
    QD_H5_CHECK(H5Aclose(a));
    QD_H5_CHECK(H5Sclose(sp));
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
    int failed;  /* a write, flush or close failed (this rank; agreed by sync_status) */
    int created; /* made by this run (not resumed): nothing in it is worth keeping yet */
    int discard; /* remove it when abandoned (its space could not be reserved) */
    char fail_msg[4800];
};

/* A write that the system refused: recorded (the first one), reported at the next agreement. */
static void write_failed(qd_h5m_writer *w, int err, const char *what)
{
    if (w->failed) return;
    w->failed = 1;
    snprintf(w->fail_msg, sizeof w->fail_msg, "%s: %s failed%s%s; the file is not complete (free space, then resume)",
             w->partial, what, err ? ": " : "", err ? strerror(err) : "");
}

/* An HDF5 call that may fail for reasons outside the program, without HDF5's error stack on
 * stderr (the message names the file and what was written); errno as the call left it. */
#define TRY_IO(call, err)                          \
    ({                                             \
        H5E_auto2_t efn_;                          \
        void *edata_;                              \
        H5Eget_auto2(H5E_DEFAULT, &efn_, &edata_); \
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);     \
        errno = 0;                                 \
        __typeof__(call) r_ = (call);              \
        *(err) = errno;                            \
        H5Eset_auto2(H5E_DEFAULT, efn_, edata_);   \
        r_;                                        \
    })

/* Every rank learns whether any rank's write failed (collective); QD_EIO with that rank's
 * message, which then marks every rank's writer failed. */
static int sync_status(qd_h5m_writer *w)
{
    int st = w->failed ? qd_err_set(QD_EIO, "%s", w->fail_msg) : QD_OK;
    char msg[1024];
    st = qd_coll_agree_msg(w->comm, st, msg, sizeof msg, NULL);
    if (st && !w->failed) {
        w->failed = 1;
        snprintf(w->fail_msg, sizeof w->fail_msg, "%s", msg);
    }
    return st;
}

const char *qd_h5m_partial_path(const qd_h5m_writer *w) { return w->partial; }
hid_t qd_h5m__file_id(const qd_h5m_writer *w) { return w->file; }

static hid_t make_dset(hid_t g, const char *name, qd_h5m_type type, int nd, const int64_t *dims)
{
    hsize_t hd[QD_H5M_MAX_DIMS];
    for (int k = 0; k < nd; k++) hd[k] = (hsize_t)dims[k];
    hid_t sp = QD_H5_CHECK(H5Screate_simple(nd, hd, NULL));
    /* no attributes on a dataset: an object header of just its messages (about 120 bytes less) */
    hid_t dcpl = QD_H5_CHECK(H5Pcreate(H5P_DATASET_CREATE));
    QD_H5_CHECK(H5Pset_dset_no_attrs_hint(dcpl, 1));
    hid_t d = QD_H5_CHECK(H5Dcreate2(g, name, qd_h5m__file_type(type), sp, H5P_DEFAULT, dcpl, H5P_DEFAULT));
    QD_H5_CHECK(H5Pclose(dcpl));
    QD_H5_CHECK(H5Sclose(sp));
    return d;
}

void qd_h5m_write_activations(qd_h5m_writer *w, const qd_actrec *r)
{
    if (!w->created) return;
    /* every attribute in the group's object header: with the 1.8 object format as the lower bound,
     * past 8 of them (the default) HDF5 moves them to dense storage (a fractal heap), which parallel
     * HDF5 then fails to size (H5Fget_filesize in qd_h5m_reserve); files are written in the default
     * format for that reason, and this keeps the group safe under either. ~20 attributes of a few
     * KiB fit the 64 KiB header. */
    hid_t gcpl = QD_H5_CHECK(H5Pcreate(H5P_GROUP_CREATE));
    QD_H5_CHECK(H5Pset_attr_phase_change(gcpl, 64, 0));
    hid_t g = QD_H5_CHECK(H5Gcreate2(w->file, QD_H5M_ACTIVATIONS, H5P_DEFAULT, gcpl, H5P_DEFAULT));
    QD_H5_CHECK(H5Pclose(gcpl));
    attr_str(g, "format", "static-activations");
    attr_str(g, "scheme", "asymmetric");
    attr_str(g, "calib", qd_actq_method_name(r->method));
    attr_str(g, "calibration", r->calibration ? r->calibration : "{}");
    attr_i64(g, "bits", r->bits);
    attr_num(g, "percentile", QD_H5M_FLOAT64, &r->percentile, 1);
    attr_num(g, "outlier_threshold", QD_H5M_FLOAT64, &r->outlier_threshold, 1);
    /* per tensor, in one order: names as fixed-length strings */
    const int n = r->n;
    hsize_t d = (hsize_t)n;
    hid_t st = QD_H5_CHECK(H5Tcopy(H5T_C_S1));
    QD_H5_CHECK(H5Tset_size(st, QD_ACTQ_NAME_LEN));
    hid_t sp = QD_H5_CHECK(H5Screate_simple(1, &d, NULL));
    hid_t a = QD_H5_CHECK(H5Acreate2(g, "names", st, sp, H5P_DEFAULT, H5P_DEFAULT));
    QD_H5_CHECK(H5Awrite(a, st, r->name));
    QD_H5_CHECK(H5Aclose(a));
    QD_H5_CHECK(H5Sclose(sp));
    QD_H5_CHECK(H5Tclose(st));
    attr_vec(g, "scale", QD_H5M_FLOAT32, r->scale, n);
    attr_vec(g, "zero_point", QD_H5M_INT32, r->zero_point, n);
    attr_vec(g, "lo", QD_H5M_FLOAT32, r->lo, n);
    attr_vec(g, "hi", QD_H5M_FLOAT32, r->hi, n);
    attr_vec(g, "min", QD_H5M_FLOAT32, r->min, n);
    attr_vec(g, "max", QD_H5M_FLOAT32, r->max, n);
    attr_vec(g, "count", QD_H5M_INT64, r->count, n);
    /* static outlier channels: offsets into one list of channel indices; no list when no tensor
     * has any */
    if (r->out_off[n] > 0) {
        attr_vec(g, "outlier_offsets", QD_H5M_INT32, r->out_off, n + 1);
        attr_vec(g, "outlier_channels", QD_H5M_INT32, r->out_ch, r->out_off[n]);
        attr_vec(g, "outlier_shift", QD_H5M_INT32, r->out_shift, n);
        attr_vec(g, "outlier_zero_point", QD_H5M_INT32, r->out_zp, n);
        attr_vec(g, "outlier_lo", QD_H5M_FLOAT32, r->out_lo, n);
        attr_vec(g, "outlier_hi", QD_H5M_FLOAT32, r->out_hi, n);
    }
    QD_H5_CHECK(H5Gclose(g));
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
    /* Groups index their links by a version 1 B-tree of symbol-table nodes (object headers as
     * before: readers of every HDF5 1.8+ and parallel files unchanged). The default node sizes
     * (32 children, 8 links a leaf) cost about 870 bytes for each tensor's group of 1-4 datasets;
     * 4 children and 4 links a leaf cost about 260, the /tensors group splitting into more nodes. */
    hid_t fcpl = QD_H5_CHECK(H5Pcreate(H5P_FILE_CREATE));
    QD_H5_CHECK(H5Pset_sym_k(fcpl, 2, 2));
    w->file = resume ? H5Fopen(w->partial, H5F_ACC_RDWR, fapl) : H5Fcreate(w->partial, H5F_ACC_TRUNC, fcpl, fapl);
    QD_H5_CHECK(H5Pclose(fcpl));
    H5Eset_auto2(H5E_DEFAULT, efn, edata);
    QD_H5_CHECK(H5Pclose(fapl));
    st = w->file < 0 ? qd_err_set(QD_EIO, "%s: cannot %s the output file", w->partial, resume ? "open" : "create")
                     : QD_OK;
    if ((st = qd_coll_agree_msg(comm, st, msg, sizeof msg, NULL))) {
        if (w->file >= 0) H5Fclose(w->file);
        free(w);
        return st;
    }
    w->created = !resume;
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
    w->t = qd_h5m__grow(w->t, w->n, &w->cap, sizeof *w->t);
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
        /* a tensor's group names a few short datasets: a heap of their size, not the default */
        hid_t gcpl = QD_H5_CHECK(H5Pcreate(H5P_GROUP_CREATE));
        QD_H5_CHECK(H5Pset_local_heap_size_hint(gcpl, 48));
        x->g = QD_H5_CHECK(H5Gcreate2(w->tg, r->name, H5P_DEFAULT, gcpl, H5P_DEFAULT));
        QD_H5_CHECK(H5Pclose(gcpl));
        attr_str(x->g, "kind", qd_h5m_kind_name(r->kind));
        if (r->sparsity[0]) {
            attr_str(x->g, "sparsity", r->sparsity);
            attr_str(x->g, "prune_method", r->prune_method);
            attr_i64(x->g, "nonzeros_per_row", r->nz_slots);
        }
        attr_num(x->g, "shape", QD_H5M_INT64, r->shape, r->ndim);
        attr_str(x->g, "orig_dtype", r->orig_dtype);
        if (r->kind == QD_H5M_QUANTIZED) {
            attr_str(x->g, "method", r->method);
            attr_i64(x->g, "bits", r->bits);
            attr_str(x->g, "granularity", qd_h5m_gran_name(r->gran));
            attr_i64(x->g, "group_size", r->group_size);
            attr_i64(x->g, "sym", r->sym);
            attr_i64(x->g, "act_order", r->act_order);
        }
    }
    /* its datasets, in table order */
    for (int i = 0, b = 0; i < qd_h5m__nfields; i++) {
        const qd_h5m_field *fd = &qd_h5m__fields[i];
        if (fd->place != QD_H5M_TENSOR_DATASET) continue;
        if (r->datasets >> b & 1u) {
            int64_t dims[QD_H5M_MAX_DIMS];
            int nd = fd->dims(r, dims);
            x->ds[b] = resuming
                           ? QD_H5_CHECK(H5Dopen2(x->g, fd->name, H5P_DEFAULT))
                           : make_dset(x->g, fd->name,
                                       r->scales_f16 && !strcmp(fd->name, QD_H5M_SCALES) ? QD_H5M_FLOAT16 : fd->type,
                                       nd, dims);
        }
        b++;
    }
    return w->n++;
}

void qd_h5m_write_rows(qd_h5m_writer *w, int ti, const char *dataset, int64_t r0, int64_t n, const void *values)
{
    QD_ASSERT(ti >= 0 && ti < w->n);
    const int b = qd_h5m__ds_bit(dataset), i = qd_h5m_field_find(QD_H5M_TENSOR_DATASET, dataset);
    QD_ASSERT(b >= 0 && i >= 0 && w->t[ti].ds[b] >= 0);
    if (n <= 0 || w->failed) return;
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
    int err = 0;
    if (TRY_IO(H5Dwrite(d, qd_h5m__mem_type(qd_h5m__fields[i].type), ms, fs, H5P_DEFAULT, values), &err) < 0) {
        char what[QD_H5M_NAME_MAX + 64];
        snprintf(what, sizeof what, "writing tensor '%s' (%s)", w->t[ti].r.name, dataset);
        write_failed(w, err, what);
    }
    QD_H5_CHECK(H5Sclose(ms));
    QD_H5_CHECK(H5Sclose(fs));
}

int qd_h5m_read_rows(qd_h5m_writer *w, int ti, const char *dataset, int64_t r0, int64_t n, void *values)
{
    QD_ASSERT(ti >= 0 && ti < w->n);
    const int b = qd_h5m__ds_bit(dataset), i = qd_h5m_field_find(QD_H5M_TENSOR_DATASET, dataset);
    QD_ASSERT(b >= 0 && i >= 0 && w->t[ti].ds[b] >= 0);
    if (n <= 0) return QD_OK;
    hid_t d = w->t[ti].ds[b];
    hid_t fs = QD_H5_CHECK(H5Dget_space(d));
    int nd = QD_H5_CHECK(H5Sget_simple_extent_ndims(fs));
    hsize_t dims[QD_H5M_MAX_DIMS], start[QD_H5M_MAX_DIMS] = {0};
    QD_H5_CHECK(H5Sget_simple_extent_dims(fs, dims, NULL));
    start[0] = (hsize_t)r0;
    dims[0] = (hsize_t)n;
    QD_H5_CHECK(H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, dims, NULL));
    hid_t ms = QD_H5_CHECK(H5Screate_simple(nd, dims, NULL));
    int err = 0, rc = QD_OK;
    if (TRY_IO(H5Dread(d, qd_h5m__mem_type(qd_h5m__fields[i].type), ms, fs, H5P_DEFAULT, values), &err) < 0)
        rc = qd_err_set(QD_EIO, "%s: reading tensor '%s' (%s) back failed%s%s", w->partial, w->t[ti].r.name, dataset,
                        err ? ": " : "", err ? strerror(err) : "");
    QD_H5_CHECK(H5Sclose(ms));
    QD_H5_CHECK(H5Sclose(fs));
    return rc;
}

int qd_h5m_flush(qd_h5m_writer *w)
{
    int err = 0;
    if (!w->failed && TRY_IO(H5Fflush(w->file, H5F_SCOPE_GLOBAL), &err) < 0) write_failed(w, err, "flushing");
    return sync_status(w);
}

int qd_h5m_sync(qd_h5m_writer *w) { return sync_status(w); }

int qd_h5m_reserve(qd_h5m_writer *w)
{
    /* every dataset is allocated at declaration (parallel HDF5 allocates early): its storage,
     * what is in the file now and room (256 KiB and 1.6 %) for the marks, /run and the status is all the file will
     * ever need. Reserved without changing the file's size (the blocks past the end are given
     * back when it is finished). */
    long long data = 0;
    for (int i = 0; i < w->n; i++)
        for (int b = 0; b < 32; b++)
            if (w->t[i].ds[b] >= 0) data += (long long)H5Dget_storage_size(w->t[i].ds[b]);
    hsize_t now = 0;
    QD_H5_CHECK(H5Fget_filesize(w->file, &now));
    /* the size reported may or may not count the allocated datasets yet */
    const long long base = (long long)now >= data ? (long long)now : (long long)now + data;
    const long long need = base + (1 << 18) + base / 64;
    int st = QD_OK;
    if (w->rank == 0) {
        int fd = open(w->partial, O_RDWR);
        int e = fd < 0 ? errno : fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)need) ? errno : 0;
        if (e == EOPNOTSUPP || e == ENOSYS) e = 0; /* a file system without it: writes report it */
        if (e) {
            if (w->created && fd >= 0 && ftruncate(fd, 0) == 0) w->discard = 1; /* give back what it got */
            st = qd_err_set(QD_EIO, "%s: cannot reserve the %lld bytes the file needs: %s", w->partial, need,
                            strerror(e));
        }
        if (fd >= 0) close(fd);
    }
    char msg[1024];
    st = qd_coll_agree_msg(w->comm, st, msg, sizeof msg, NULL);
    if (st) {
        w->failed = 1;
        snprintf(w->fail_msg, sizeof w->fail_msg, "%s", msg);
    }
    return st;
}

void qd_h5m_mark_complete(qd_h5m_writer *w, int ti, const double *metrics)
{
    QD_ASSERT(ti >= 0 && ti < w->n);
    if (w->failed) return; /* agreed (flush, sync): data that did not reach the disk is never marked */
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
    int err = 0;
    if (TRY_IO(H5Fclose(w->file), &err) < 0) write_failed(w, err, "closing (writing the last data)");
    free(w->t);
}

int qd_h5m_finish(qd_h5m_writer *w, const qd_h5m_run *run)
{
    int st = sync_status(w);
    if (st) { /* no status on a file whose data did not all reach the disk */
        qd_h5m_abandon(w);
        return st;
    }
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
    if ((st = sync_status(w))) { /* the close did not write everything: not renamed */
        free(w);
        return st;
    }
    if (w->rank == 0) { /* the blocks reserved past the end (qd_h5m_reserve) given back */
        struct stat sb;
        int lost = stat(w->partial, &sb) == 0 && truncate(w->partial, sb.st_size) != 0;
        (void)lost; /* only space would be lost */
    }
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
    if (w->rank == 0 && w->discard) unlink(w->partial); /* nothing of value: no space was reserved */
    free(w);
}

int qd_h5m_write_pruned_rows(qd_h5m_writer *w, int ti, int64_t r0, int64_t n, const void *dense, const uint8_t *mask)
{
    QD_ASSERT(ti >= 0 && ti < w->n);
    const qd_h5m_record *r = &w->t[ti].r;
    if (n <= 0) return QD_OK;
    qd_sparsity sp;
    if (qd_h5m__sparsity_of(r, &sp)) return qd_err_set(QD_EINVAL, "tensor '%s': sparsity '%s'", r->name, r->sparsity);
    const int quant = r->kind == QD_H5M_QUANTIZED;
    const int64_t C = qd_h5m_cols(r), S = r->nz_slots;
    const size_t esz = quant ? 1 : sizeof(float);
    uint8_t *vals = malloc((size_t)(n * S) * esz + 1), *pos = sp.n ? malloc((size_t)(n * S) + 1) : NULL;
    const int64_t ob = quant ? QD_PACKED_ROW_BYTES(S, r->bits) : 0;
    const int64_t mb = sp.n ? qd_nm_index_row_bytes(C, sp.n, sp.m) : QD_MASK_ROW_BYTES(C);
    uint8_t *packed = malloc((size_t)(n * (ob > mb ? ob : mb)) + 1);
    int rc = vals && packed && (!sp.n || pos) ? QD_OK : qd_err_set(QD_ENOMEM, "tensor '%s': out of memory", r->name);
    if (!rc && (rc = qd_sparse_gather(dense, esz, mask, n, C, &sp, S, vals, pos)))
        qd_err_wrap(rc, "tensor '%s' rows [%lld, %lld): ", r->name, (long long)r0, (long long)(r0 + n));
    if (!rc) {
        if (quant) {
            for (int64_t i = 0; i < n; i++) qd_pack_row(vals + i * S, S, r->bits, packed + i * ob);
            qd_h5m_write_rows(w, ti, QD_H5M_NZ_QWEIGHT, r0, n, packed);
        } else
            qd_h5m_write_rows(w, ti, QD_H5M_NZ_DATA, r0, n, vals);
        if (sp.n) {
            for (int64_t i = 0; i < n; i++) qd_pack_row(pos + i * S, S, qd_nm_index_bits(sp.m), packed + i * mb);
            qd_h5m_write_rows(w, ti, QD_H5M_NM_INDEX, r0, n, packed);
        } else {
            qd_mask_pack(mask, n, C, packed);
            qd_h5m_write_rows(w, ti, QD_H5M_MASK, r0, n, packed);
        }
    }
    free(vals);
    free(pos);
    free(packed);
    return rc;
}

int qd_h5m_map_floats(const char *path, void (*fn)(float *v, int64_t n, void *user), void *user)
{
    qd_h5m *f = NULL;
    int rc = qd_h5m_open(path, NULL, &f); /* validated first: only well-formed float records change */
    if (rc) return rc;
    int n = 0;
    char(*names)[QD_H5M_NAME_MAX] = qd_xcalloc((size_t)qd_h5m_num_tensors(f) + 1, sizeof *names);
    for (int i = 0; i < qd_h5m_num_tensors(f); i++) {
        const qd_h5m_record *r = qd_h5m_tensor(f, i);
        if (r->kind == QD_H5M_FLOAT && qd_h5m_record_has(r, QD_H5M_DATA))
            snprintf(names[n++], sizeof names[0], "%s", r->name);
    }
    qd_h5m_close(f); /* HDF5 opens a file once per process: read-only first, then for writing */
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    if (file < 0) rc = qd_err_set(QD_EIO, "%s: cannot open for writing", path);
    for (int i = 0; i < n && !rc; i++) {
        char name[QD_H5M_NAME_MAX + 64];
        snprintf(name, sizeof name, "/%s/%s/%s", QD_H5M_TENSORS, names[i], QD_H5M_DATA);
        hid_t d = H5Dopen2(file, name, H5P_DEFAULT);
        hid_t sp = d >= 0 ? H5Dget_space(d) : -1;
        const hssize_t k = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
        float *v = k >= 0 ? malloc((size_t)(k > 0 ? k : 1) * sizeof(float)) : NULL;
        if (!v || H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0)
            rc = qd_err_set(QD_EIO, "%s: tensor '%s': cannot read %s", path, names[i], QD_H5M_DATA);
        else {
            fn(v, (int64_t)k, user);
            if (H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0)
                rc = qd_err_set(QD_EIO, "%s: tensor '%s': cannot write %s", path, names[i], QD_H5M_DATA);
        }
        free(v);
        if (sp >= 0) H5Sclose(sp);
        if (d >= 0) H5Dclose(d);
    }
    if (file >= 0 && H5Fclose(file) < 0 && !rc) rc = qd_err_set(QD_EIO, "%s: closing", path);
    free(names);
    return rc;
}
