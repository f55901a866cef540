/* coordinator/outputs_file.h — qdist's outputs files: what `qdist forward --save-outputs` and
 * `qdist eval --save-outputs` write and what the --reference of both reads, so that another
 * runtime can be run on the same inputs and either command can score the other's outputs (or
 * another runtime's). One format (docs/eval.md, "Outputs files"): a safetensors file whose
 * outputs are named as transformers names them (logits, pooler_output, sentence_embedding,
 * image_embeds, last_hidden_state, hidden.K), all F32, with `__metadata__` format =
 * "qdist-outputs", version = "1"; optionally the inputs that produced them, sample_index [N] and
 * labels [N]. */
#ifndef QD_OUTPUTS_FILE_H
#define QD_OUTPUTS_FILE_H

#include <stdint.h>

#include "model/model.h"
#include "shard/safetensors.h"
#include "shard/st_write.h"

#define QD_OUTPUTS_FORMAT  "qdist-outputs"
#define QD_OUTPUTS_VERSION "1"

/* transformers' name of qd_model_embedding's vectors for this model: sentence_embedding (text),
 * image_embeds (vision with a projection), pooler_output (vision). */
const char *qd_outputs_embedding_name(const qd_model_config *c);

/* Writes `path`: the tensors t[0 .. n) and the metadata format, version, command, then the pairs
 * meta[0] = meta[1], meta[2] = meta[3], ... up to a NULL key (a NULL value is written as "").
 * QD_OK, or an error naming the file. */
int qd_outputs_write(const char *path, qd_st_out_tensor *t, int n, const char *command, const char *const *meta);

/* A reference tensor, its rows matched to ours. */
typedef struct {
    const qd_tensor_info *t; /* NULL: the file has no such tensor */
    int64_t width;           /* values per row: the product of the dimensions after the first */
    int64_t *row;            /* [n]: the reference row of our row i */
    const void *raw;         /* F64 data (read as doubles, unaligned) */
    const float *f32;        /* other float dtypes, as F32 */
    int owned;
} qd_outputs_ref;

/* Opens tensor `name` of the reference file ck (`path` for messages) for our n rows of shape
 * shape[0 .. ndim) (shape[0] = n): a float tensor with the same dimensions after the first, whose
 * rows are matched to ours through the file's sample_index [N] (I64 or I32; any order, extra rows
 * ignored, each of ours present) or, without one, row by row (N = n). QD_OK with r->t NULL when the
 * file has no tensor `name`; QD_OK; or an error naming the file and the tensor. */
int qd_outputs_ref_open(qd_checkpoint *ck, const char *path, const char *name, int ndim, const int64_t *shape,
                        qd_outputs_ref *r);
/* Value k of the reference row matched to our row i. */
double qd_outputs_ref_at(const qd_outputs_ref *r, int64_t i, int64_t k);
void qd_outputs_ref_free(qd_outputs_ref *r);

/* Cosine of two rows (1 for two zero rows, 0 for one). */
double qd_outputs_cosine(const float *a, const float *b, int n);

#endif
