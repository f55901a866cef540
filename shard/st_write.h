/* shard/st_write.h — writing safetensors files (exported checkpoints, generated test models).
 * Tensors are written in name order with an 8-byte aligned, space-padded JSON header. */
#ifndef QD_ST_WRITE_H
#define QD_ST_WRITE_H

#include <stdint.h>

#include "shard/safetensors.h"

typedef struct {
    const char *name;
    qd_dtype dtype;
    int ndim;
    int64_t shape[QD_ST_MAX_DIMS];
    const void *data; /* numel * dtype size bytes, little-endian */
} qd_st_out_tensor;

/* Writes `path` (via path.tmp + rename). metadata_json: a JSON object of strings or NULL.
 * QD_OK or QD_EIO/QD_EINVAL with qd_errmsg() naming the file. */
int qd_st_write(const char *path, qd_st_out_tensor *t, int n, const char *metadata_json);

#endif
