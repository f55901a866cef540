/* collective/h5_records.h — a finished qdist model file (docs/FORMAT.md) read as a list of tensor
 * records, serially and without HDF5 types in the interface, for the exporters (export/). Checks
 * format, format_version and status; a record's attributes are read as the file states them, its
 * datasets on demand. Datasets and kinds this reader does not know are listed in the record
 * (`unknown`), so that a consumer can refuse what it cannot carry instead of dropping it. */
#ifndef QD_H5_RECORDS_H
#define QD_H5_RECORDS_H

#include <stdint.h>

#define QD_REC_MAX_DIMS 8

typedef enum { QD_REC_QUANTIZED = 0, QD_REC_FLOAT, QD_REC_RAW } qd_rec_kind;

typedef struct {
    char name[256];
    qd_rec_kind kind;
    int ndim;
    int64_t shape[QD_REC_MAX_DIMS];
    char orig_dtype[16];
    /* quantized records */
    char method[32], granularity[16];
    int bits, sym, act_order;
    int64_t group_size; /* as recorded: G, or -1 */
    int has_zeros, has_g_idx, has_mask;
    /* what this reader does not know: unknown datasets (", "-separated), or an unknown kind */
    char unknown[160];
} qd_rec;

typedef enum { QD_REC_U8 = 0, QD_REC_I32, QD_REC_F32 } qd_rec_type;

typedef struct qd_recfile qd_recfile;

/* QD_OK, or QD_ENOENT / QD_EFORMAT naming the file and what is wrong (not HDF5, not a qdist
 * model, another format version, an unfinished file). */
int qd_recfile_open(const char *path, qd_recfile **out);
void qd_recfile_close(qd_recfile *f);
const char *qd_recfile_path(const qd_recfile *f);
/* A root string attribute (model_config, quant_config, arch, source, ...); "" when absent. */
const char *qd_recfile_attr(const qd_recfile *f, const char *name);
int qd_recfile_count(const qd_recfile *f);
const qd_rec *qd_recfile_rec(const qd_recfile *f, int i);
int qd_recfile_find(const qd_recfile *f, const char *name); /* index or -1 */
/* Dataset `ds` of record i converted to `type`, malloc'd, *n elements; QD_ENOTFOUND when the
 * record has no such dataset, QD_EFORMAT when it cannot be read. */
int qd_recfile_read(qd_recfile *f, int i, const char *ds, qd_rec_type type, void **values, int64_t *n);

#endif
