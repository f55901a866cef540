/* collective/h5model.h — the qdist model file (docs/FORMAT.md): the one module that creates,
 * writes, opens, validates and reads it. Nothing else in qdist touches HDF5.
 *
 * Writing (collective over the job's communicator, parallel HDF5 through MPI-IO):
 *     qd_h5m_create          OUT.partial with the root attributes (or reopen it to resume)
 *     qd_h5m_declare         one tensor record, every object created up front, same order on
 *                            every rank
 *     qd_h5m_write_rows      each rank its own rows of a dataset (independent I/O)
 *     qd_h5m_flush, qd_h5m_mark_complete   data on disk first, then the completion marks
 *     qd_h5m_finish          /run, then status = "complete" last, close, rename to OUT
 * Reading (serial, any rank): qd_h5m_open validates the whole file (below) and lists its tensor
 * records; qd_h5m_read returns one record's arrays; qd_h5m_dequantize turns a quantized one into
 * float32. eval (runtime/qmodel.c), export, inspect, resume (worker/job.c) and the service all
 * open files through qd_h5m_open, so they refuse the same files with the same messages.
 *
 * Validation (qd_h5m_open): format and format_version; status (unless QD_H5M_PARTIAL); the JSON
 * attributes parse as objects; arch agrees with model_config and is one the caller knows; every
 * record's kind, shape, attributes, dataset types and dataset shapes; values (scales finite and
 * > 0, zeros and codes within the bit width, g_idx within the groups, float data finite);
 * encoder layers all holding the same tensors; /activations, when present (its attributes, their
 * lengths, scales, zero points and outlier lists); nothing in the file that this table does not
 * name. Errors name the file, the tensor and the field.
 *
 * The file's vocabulary is one table (qd_h5m_fields): every attribute and dataset with its place,
 * type, the tensor kinds that carry it, the shape of a dataset, and the check of its values.
 * A new record type (a method's codebook, a sparse mask, activation scales) is one row there (and
 * one in docs/FORMAT.md, which tests/collective/test_h5model compares with the table); a writer
 * adds it to a record with qd_h5m_record_add, readers get it with qd_h5m_read_field.
 */
#ifndef QD_H5MODEL_H
#define QD_H5MODEL_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "quant/actq.h"
#include "quant/quant.h"

#define QD_H5M_FORMAT          "qdist"
#define QD_H5M_FORMAT_VERSION  1
#define QD_H5M_STATUS_COMPLETE "complete"
#define QD_H5M_NMETRICS        4
#define QD_H5M_METRICS_NAMES   "rel_fro_error,mse,max_abs_error,sqnr_db"
#define QD_H5M_MAX_DIMS        8
#define QD_H5M_NAME_MAX        256

/* groups, and the datasets of the built-in records */
#define QD_H5M_TENSORS         "tensors"
#define QD_H5M_RUN             "run"
#define QD_H5M_ACTIVATIONS     "activations"
#define QD_H5M_QWEIGHT         "qweight"
#define QD_H5M_SCALES          "scales"
#define QD_H5M_ZEROS           "zeros"
#define QD_H5M_G_IDX           "g_idx"
#define QD_H5M_DATA            "data"
#define QD_H5M_RAW             "raw"
#define QD_H5M_MASK            "mask"
#define QD_H5M_CODEBOOK        "codebook"
#define QD_H5M_SMOOTH          "smooth"
/* The method whose records hold codebooks (non-uniform levels) instead of scales and zeros. */
#define QD_H5M_CODEBOOK_METHOD "kmeans"
/* pruned records (docs/FORMAT.md "Sparsity"): the kept values, and N:M positions */
#define QD_H5M_NZ_QWEIGHT      "nz_qweight"
#define QD_H5M_NZ_DATA         "nz_data"
#define QD_H5M_NM_INDEX        "nm_index"

typedef enum { QD_H5M_QUANTIZED = 0, QD_H5M_FLOAT = 1, QD_H5M_RAWBYTES = 2, QD_H5M_NKINDS_ } qd_h5m_kind;
#define QD_H5M_K(kind) (1u << (kind))
#define QD_H5M_KALL    (QD_H5M_K(QD_H5M_QUANTIZED) | QD_H5M_K(QD_H5M_FLOAT) | QD_H5M_K(QD_H5M_RAWBYTES))
const char *qd_h5m_kind_name(qd_h5m_kind k);    /* "quantized", "float", "raw" */
const char *qd_h5m_gran_name(qd_granularity g); /* "tensor", "channel", "group" */

/* Element types, named as docs/FORMAT.md names them ("string", "int64", ...). */
typedef enum {
    QD_H5M_STRING = 0,
    QD_H5M_INT64,
    QD_H5M_FLOAT64,
    QD_H5M_UINT8,
    QD_H5M_INT32,
    QD_H5M_FLOAT32,
    QD_H5M_FLOAT16 /* IEEE half in the file, float in memory (HDF5 converts; values written are
                    * already float16 numbers, so nothing is rounded on the way) */
} qd_h5m_type;
const char *qd_h5m_type_name(qd_h5m_type t);
size_t qd_h5m_type_size(qd_h5m_type t);      /* bytes of one element in memory (string: 1) */
size_t qd_h5m_type_file_size(qd_h5m_type t); /* bytes of one element in the file */

/* ACT_ATTR: the attributes of /activations, the static activation scales of integer-only
 * inference (a group of attributes only: per-tensor arrays in one order). */
typedef enum {
    QD_H5M_ROOT_ATTR = 0,
    QD_H5M_RUN_ATTR,
    QD_H5M_TENSOR_ATTR,
    QD_H5M_TENSOR_DATASET,
    QD_H5M_ACT_ATTR
} qd_h5m_place;

/* One tensor's group, /tensors/<name>: what a writer declares and what a reader finds. */
typedef struct {
    char name[QD_H5M_NAME_MAX];
    qd_h5m_kind kind;
    int ndim; /* as recorded: a 0-d tensor records one dimension */
    int64_t shape[QD_H5M_MAX_DIMS];
    int zero_d; /* a 0-d float tensor: shape [0] recorded, one value in `data` */
    char orig_dtype[16];
    int64_t raw_bytes; /* raw: bytes of `raw` */
    /* quantized [rows = shape[0], cols = shape[1]] */
    char method[32];
    int bits, sym, act_order;
    qd_granularity gran;
    int64_t group_size; /* as recorded: G for groups (at most cols), else -1 */
    int64_t ngroups;    /* scales per row: 1, or ceil(cols / G) */
    /* pruned (docs/FORMAT.md "Sparsity"): the pattern ("0.5", "2:4") and how; "" when dense */
    char sparsity[32], prune_method[32];
    int64_t nz_slots;  /* pruned: values stored per row (nonzeros_per_row) */
    int nm_n, nm_m;    /* pruned N:M: the pattern; 0 for unstructured */
    uint32_t datasets; /* which datasets of the table the group holds (qd_h5m_record_add) */
    int scales_f16;    /* `scales` stored as float16 (docs/FORMAT.md; values read as float) */
    /* reader: completion */
    int complete, has_metrics;
    double metrics[QD_H5M_NMETRICS];
    int codebook_f32; /* reader: `codebook` stored as float32 (files written before float16 levels) */
} qd_h5m_record;

static inline int64_t qd_h5m_rows(const qd_h5m_record *r) { return r->ndim > 0 ? r->shape[0] : 1; }
static inline int64_t qd_h5m_cols(const qd_h5m_record *r) { return r->ndim > 1 ? r->shape[1] : 1; }
int64_t qd_h5m_numel(const qd_h5m_record *r);
/* Columns per group: G, or cols for per-channel and per-tensor records. */
int64_t qd_h5m_group_cols(const qd_h5m_record *r);

/* Records with the datasets their kind always has: quantized (qweight, scales, zeros when
 * asymmetric; ngroups from the scheme), float (data) and raw (raw). */
void qd_h5m_record_quantized(qd_h5m_record *r, const char *name, int64_t rows, int64_t cols, const char *orig_dtype,
                             const char *method, const qd_qscheme *s, int act_order);
void qd_h5m_record_float(qd_h5m_record *r, const char *name, int ndim, const int64_t *shape, const char *orig_dtype);
void qd_h5m_record_raw(qd_h5m_record *r, const char *name, int ndim, const int64_t *shape, const char *orig_dtype,
                       int64_t bytes);
/* A pruned record (quantized and float 2-D records): its pattern ("0.5", "2:4"), method, and the
 * packed datasets instead of the dense ones: the kept values (nz_qweight / nz_data, slots per
 * row from qd_sparse_row_slots with `block`, the columns an unstructured fraction is pruned per)
 * and the bitmask (`mask`, unstructured) or the N:M positions (`nm_index`). QD_OK, or QD_EINVAL
 * for a pattern that does not parse or does not fit the columns. */
int qd_h5m_record_sparsity(qd_h5m_record *r, const char *pattern, const char *method, int64_t block);
/* Whether a quantized record stores a codebook per group (`codebook` [rows][ngroups][2^bits],
 * no scales or zeros): records of method QD_H5M_CODEBOOK_METHOD. */
int qd_h5m_is_codebook(const qd_h5m_record *r);
/* A further dataset of the field table (e.g. QD_H5M_G_IDX); QD_OK or QD_EINVAL for a name the
 * table does not have for this kind. */
int qd_h5m_record_add(qd_h5m_record *r, const char *dataset);
int qd_h5m_record_has(const qd_h5m_record *r, const char *dataset);

/* Bytes of record r's datasets: their shapes as the table gives them (which the reader checks)
 * times their element sizes; the file stores them uncompressed. What quantize and eval print as
 * "tensor data" (the file's own size adds the HDF5 structure and attributes). */
int64_t qd_h5m_record_bytes(const qd_h5m_record *r);

/* ---- the vocabulary of the file ------------------------------------------------------------- */
typedef struct qd_h5m_field {
    const char *name;
    qd_h5m_place place;
    qd_h5m_type type;
    unsigned kinds; /* tensor fields: the kinds that may carry it (QD_H5M_K bits) */
    int required;   /* every such group (or the root, /run) must have it; datasets: see present */
    int vector;     /* attributes: a 1-D array (shape, metrics) rather than a scalar */
    /* datasets: whether a record must carry it, its shape, and the check of its values (NULL:
     * none; else QD_OK, or QD_EFORMAT / QD_ENONFINITE with a message naming the element, which
     * the reader prefixes with the file, tensor and field) */
    int (*present)(const qd_h5m_record *r);
    const char *when;                                   /* the records that carry it, in words (messages) */
    int (*dims)(const qd_h5m_record *r, int64_t *dims); /* returns ndim */
    int (*check)(const qd_h5m_record *r, const void *values, int64_t n, char *why, size_t cap);
} qd_h5m_field;

/* The table: every attribute and dataset a qdist file may hold. */
const qd_h5m_field *qd_h5m_fields(int *n);
/* Index of a field by place and name, or -1. */
int qd_h5m_field_find(qd_h5m_place place, const char *name);

/* ---- writing (collective) ------------------------------------------------------------------ */
typedef struct qd_h5m_writer qd_h5m_writer;

/* The root attributes a job records (format, format_version and qdist_version are added). */
typedef struct {
    const char *arch, *model_config, *quant_config, *source, *calibration;
} qd_h5m_header;

/* Creates OUT.partial (resume: reopens it after checking that its format, quant_config and
 * source equal h's). Collective over comm; every rank returns the same status, with the
 * failing rank's message. */
int qd_h5m_create(MPI_Comm comm, const char *out, const qd_h5m_header *h, int resume, qd_h5m_writer **w);
const char *qd_h5m_partial_path(const qd_h5m_writer *w);
/* Declares the next tensor record (collective, in the same order on every rank): creates its
 * group, attributes and datasets, or, resuming, opens them and sets r->complete and r->metrics
 * from the file. Returns its index. */
int qd_h5m_declare(qd_h5m_writer *w, qd_h5m_record *r);
/* After the last declaration: the disk space of the whole file reserved up front (collective), so
 * that a full disk ends the job here, before any work, rather than halfway. QD_OK, or QD_EIO naming
 * the file and the size; then qd_h5m_abandon (a file created by this run is removed). */
int qd_h5m_reserve(qd_h5m_writer *w);
/* Rows [r0, r0 + n) along the first dimension of one of record ti's datasets, from values of
 * the field's type (independent I/O: each rank writes its own rows). */
void qd_h5m_write_rows(qd_h5m_writer *w, int ti, const char *dataset, int64_t r0, int64_t n, const void *values);
/* Rows [r0, r0 + n) of pruned record ti from its dense rows: codes [n][cols] unpacked (quantized;
 * packed into nz_qweight) or floats [n][cols] (float; nz_data), and mask [n][cols] (1 = kept).
 * Independent, like qd_h5m_write_rows. QD_OK, or QD_EFORMAT when a row keeps more than the
 * pattern allows. */
int qd_h5m_write_pruned_rows(qd_h5m_writer *w, int ti, int64_t r0, int64_t n, const void *dense, const uint8_t *mask);
/* Rows [r0, r0 + n) of one of record ti's datasets read back into values (the field's type),
 * independent I/O: a resumed job reads the tensors a previous run completed instead of computing
 * them again. QD_OK, or QD_EIO naming the file and the tensor. */
int qd_h5m_read_rows(qd_h5m_writer *w, int ti, const char *dataset, int64_t r0, int64_t n, void *values);
/* Everything written so far on disk (collective). QD_OK, or, on every rank, QD_EIO naming the
 * file when a write or the flush failed on any rank (disk full, I/O error): the file then gets no
 * further completion mark and no status; close it with qd_h5m_abandon. */
int qd_h5m_flush(qd_h5m_writer *w);
/* The same agreement without a flush (collective). */
int qd_h5m_sync(qd_h5m_writer *w);
/* Marks record ti complete, with its metrics (quantized records; NULL otherwise). Collective:
 * the same marks in the same order on every rank, after the flush that wrote their data. */
void qd_h5m_mark_complete(qd_h5m_writer *w, int ti, const double *metrics);

/* Writes the static activation scales (/activations, docs/FORMAT.md) of a job run with
 * --activations static. Collective, the same record on every rank, after qd_h5m_create; a resumed
 * file already holds them (written when it was created; quant_config compared), so nothing is
 * written then. */
void qd_h5m_write_activations(qd_h5m_writer *w, const qd_actrec *r);

/* Bookkeeping of the run (/run; differs between runs of the same job). */
typedef struct {
    const char *created, *shard;
    int64_t ranks, resumed_tensors;
    double seconds;
} qd_h5m_run;
/* Writes /run and status = "complete", closes the file and renames it to OUT (rank 0).
 * Collective; agreed status: after a failed write (qd_h5m_flush) or a failed close no status is
 * written and nothing is renamed. Frees w. */
int qd_h5m_finish(qd_h5m_writer *w, const qd_h5m_run *run);
/* Closes without finishing: OUT.partial stays for --resume. Collective. Frees w. */
void qd_h5m_abandon(qd_h5m_writer *w);

/* ---- reading and validation ---------------------------------------------------------------- */
typedef struct qd_h5m qd_h5m;

enum {
    QD_H5M_PARTIAL = 1, /* a file without status "complete" (resume); values of records not
                         * marked complete are not checked */
    QD_H5M_LENIENT = 2, /* record problems (qd_h5m_problem) instead of failing on the first;
                         * fails only when the file is not a qdist model at all (inspect) */
};

/* Options of qd_h5m_open. arch_known: whether qdist can run a model_type (model/); NULL: any. */
typedef struct {
    unsigned flags;
    int (*arch_known)(const char *model_type);
} qd_h5m_open_opts;

/* Opens and validates path. QD_OK, QD_ENOENT / QD_EFORMAT (not a qdist model), or, strict,
 * QD_EFORMAT / QD_ENONFINITE / QD_EMISMATCH naming the file, tensor and field. */
int qd_h5m_open(const char *path, const qd_h5m_open_opts *o, qd_h5m **out);
void qd_h5m_close(qd_h5m *f);
const char *qd_h5m_path(const qd_h5m *f);

/* Root attributes ("" when absent); status is "" for an unfinished file. */
typedef struct {
    int64_t format_version;
    const char *qdist_version, *status, *arch, *model_config, *quant_config, *source, *calibration;
} qd_h5m_info;
const qd_h5m_info *qd_h5m_info_of(const qd_h5m *f);

/* Tensor records in name order. */
int qd_h5m_num_tensors(const qd_h5m *f);
const qd_h5m_record *qd_h5m_tensor(const qd_h5m *f, int i);
int qd_h5m_find(const qd_h5m *f, const char *name); /* index or -1 */

/* qd_h5m_record_bytes summed over the file's records: quantized ones (codes, scales, zeros,
 * g_idx, masks) and the others (tensors kept as float or raw). */
void qd_h5m_tensor_bytes(const qd_h5m *f, double *quantized, double *kept);

/* Problems a lenient open found: where ("" for the root, else the tensor name) and what. */
typedef struct {
    char tensor[QD_H5M_NAME_MAX];
    char what[512];
} qd_h5m_problem;
int qd_h5m_num_problems(const qd_h5m *f);
const qd_h5m_problem *qd_h5m_problem_at(const qd_h5m *f, int i);

/* The static activation scales (validated by qd_h5m_open like the rest). QD_OK; QD_ENOTFOUND
 * when the file has none (quantized without --activations static). Free with qd_actrec_free. */
int qd_h5m_read_activations(qd_h5m *f, qd_actrec *r);

/* The arrays of one record, malloc'd (free with qd_h5m_values_free). A pruned record's packed
 * values come back dense: qweight with the zero point's code where pruned, data with zeros. */
typedef struct {
    uint8_t *qweight; /* [rows][ceil(cols*bits/8)] packed codes */
    float *scales;    /* [rows][ngroups]; NULL for codebook records */
    float *codebook;  /* codebook records: [rows][ngroups][2^bits], ascending; else NULL */
    int32_t *zeros;   /* [rows][ngroups]; symmetric records: 2^(bits-1) */
    int32_t *g_idx;   /* [cols], or NULL */
    uint8_t *mask;    /* pruned: [rows][ceil(cols/8)] bits, 1 = kept; else NULL (N:M: every slot) */
    float *data;      /* float: numel values */
    uint8_t *raw;     /* raw: raw_bytes */
} qd_h5m_values;
int qd_h5m_read(qd_h5m *f, int i, qd_h5m_values *v);
void qd_h5m_values_free(qd_h5m_values *v);
/* Any dataset of record i, in its field's type (malloc'd; *n elements). */
int qd_h5m_read_field(qd_h5m *f, int i, const char *dataset, void **values, int64_t *n);
/* W = scales * (q - zeros) of a quantized record (codebook records: codebook[r][g][q]), out
 * [rows][cols]. */
void qd_h5m_dequantize(const qd_h5m_record *r, const qd_h5m_values *v, float *out);

/* Rewrites the `data` of every float record of a complete file in place: fn(values, n, user)
 * changes them (e.g. rounds them to float16 for a reference model of that precision). Serial,
 * one process; QD_OK or a negative code naming the file and tensor. */
int qd_h5m_map_floats(const char *path, void (*fn)(float *v, int64_t n, void *user), void *user);

#endif
