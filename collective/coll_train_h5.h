/* collective/coll_train_h5.h — the quantized tensors of a qdist model file (docs/FORMAT.md) as
 * quantization-aware training reads and rewrites them: unpacked codes, scales, zero points.
 * Read through the model file's reader and written through its writer (collective/h5model.h), on
 * one rank (the training ranks hold identical results). */
#ifndef QD_COLL_TRAIN_H5_H
#define QD_COLL_TRAIN_H5_H

#include <stdint.h>

#include "common/qd_common.h"
#include "quant/actq.h"

typedef struct {
    int bits, sym;
    int64_t out, in, G, ng; /* G: columns per group (in for per channel / tensor) */
    uint8_t *codes;         /* [out, in] unpacked */
    float *scales;          /* [out, ng] */
    int32_t *zeros;         /* [out, ng]; 2^(bits-1) for symmetric schemes */
    int32_t *g_idx;         /* [in] group of each column (act-order), or NULL: c / G */
    uint8_t *mask;          /* pruned records: [out, in], 1 = kept (pruned codes are the zero
                             * point's); NULL for dense records */
    char method[32];
} qd_coll_qtensor;

/* The record of tensor `name` (e.g. "...query.weight"). QD_ENOTFOUND when the file has no such
 * tensor or keeps it in float; QD_EFORMAT naming the file and tensor when it is malformed. */
int qd_coll_qtensor_read(const char *h5path, const char *name, qd_coll_qtensor *q);
void qd_coll_qtensor_free(qd_coll_qtensor *q);

/* Write out_h5 through the model file's writer (collective/h5model.h; OUT.partial, then the
 * completion marks and the rename; on MPI_COMM_SELF: call it on one rank): the records of src_h5
 * in the same order, every dataset copied, except that the n tensors names[i] get new codes and
 * scales from q[i] (same scheme and shape; zero points unchanged; pruned records keep their
 * pattern, the codes written through q[i].mask), metrics[i] (4 values, FORMAT.md) and the
 * attribute method = method; the root attribute quant_config gains "training": training_json;
 * /activations is act when not NULL (learned activation steps), else copied; /run records the training's rank count and seconds. */
int qd_coll_qfile_rewrite(const char *src_h5, const char *out_h5, const char *const *names, const qd_coll_qtensor *q,
                          const double (*metrics)[4], int n, const char *method, const char *training_json,
                          const qd_actrec *act, int ranks, double seconds);

/* The static activation record (/activations) of the file; QD_ENOTFOUND when it has none. */
int qd_coll_actrec_read(const char *h5path, qd_actrec *r);

#endif
