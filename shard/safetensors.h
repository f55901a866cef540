/* shard/safetensors.h — a checkpoint as a table of tensors.
 *
 * Reads safetensors files (https://github.com/huggingface/safetensors format: u64 little-endian
 * header length N, N bytes of JSON header, then the data region) and sharded checkpoints
 * (a directory or a `model.safetensors.index.json` whose weight_map names the shard of every
 * tensor). Files are mmapped read-only; F32 tensors are returned zero-copy, F16/BF16 are converted
 * exactly to F32; other dtypes are described but marked non-quantizable.
 *
 * Also reads the state dicts torch.save writes (pytorch_model.bin, PyTorch >= 1.6 zip format;
 * shard/torch_zip.c), through the same API: a file is recognised by its first bytes, whatever its
 * name, and a directory without safetensors may hold pytorch_model.bin or a sharded
 * pytorch_model.bin.index.json. Their pickle is read by a restricted interpreter that executes
 * nothing; the legacy (pre-1.6, non-zip) format is rejected as unsupported.
 *
 * Validation is strict: every problem is a negative QD_E* code with qd_errmsg() naming the file
 * and the tensor (never a crash, never a read outside the mapping).
 */
#ifndef QD_SAFETENSORS_H
#define QD_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "common/qd_common.h"

#define QD_ST_MAX_DIMS   8
#define QD_ST_MAX_HEADER (100u << 20) /* 100 MiB */

typedef enum {
    QD_DT_F32 = 0,
    QD_DT_F16,
    QD_DT_BF16,
    QD_DT_F64,
    QD_DT_I8,
    QD_DT_U8,
    QD_DT_I16,
    QD_DT_I32,
    QD_DT_I64,
    QD_DT_BOOL,
    QD_DT_COUNT_
} qd_dtype;

const char *qd_dtype_name(qd_dtype dt);                  /* "F32", "BF16", ... as in the file */
size_t qd_dtype_size(qd_dtype dt);                       /* bytes per element */
int qd_dtype_from_name(const char *name, qd_dtype *out); /* QD_OK or QD_EDTYPE */

typedef struct {
    char *name; /* tensor name as in the header */
    qd_dtype dtype;
    int ndim;
    int64_t shape[QD_ST_MAX_DIMS];
    uint64_t numel;
    uint64_t nbytes; /* numel * dtype size */
    int file_index;  /* which shard file (index into qd_checkpoint.files) */
    uint64_t offset; /* absolute byte offset of the data in that file */
    int float_like;  /* F32/F16/BF16/F64: can be read as F32 and quantized */
} qd_tensor_info;

typedef enum {
    QD_FMT_SAFETENSORS = 0,
    QD_FMT_TORCH_ZIP = 1, /* torch.save zip archive (pytorch_model.bin) */
} qd_file_format;

typedef struct {
    char *path;                      /* the file */
    uint64_t size;                   /* file size in bytes */
    uint64_t header_len;             /* N from the first 8 bytes; torch: size of data.pkl */
    unsigned char header_sha256[32]; /* sha256 of the 8 + N header bytes (identifies the source);
                                      * torch: sha256 of data.pkl */
    char *metadata_json;             /* the "__metadata__" object as JSON text, or NULL; torch:
                                    * {"format":"torch-zip","archive":<folder>,"version":<v>} */
    qd_file_format format;
} qd_st_file;

typedef struct qd_checkpoint qd_checkpoint;

/* Open a checkpoint: a .safetensors file, a torch.save file (pytorch_model.bin), an index
 * (*.index.json: weight_map of tensor -> shard file, shards in either format), or a directory
 * holding, in this order of preference, model.safetensors.index.json, model.safetensors,
 * pytorch_model.bin.index.json or pytorch_model.bin. Parses and validates all headers (for torch
 * files: the zip directory and the pickle); maps data lazily. Returns QD_OK and *out, or a
 * negative code with qd_errmsg() set (QD_EUNSUPPORTED for legacy torch files, compressed entries
 * and non-contiguous tensors, QD_EPERM for a pickle that asks for anything but a state dict). */
int qd_ckpt_open(const char *path, qd_checkpoint **out);
void qd_ckpt_close(qd_checkpoint *ck);

/* The directory of the checkpoint (where config.json lives). */
const char *qd_ckpt_dir(const qd_checkpoint *ck);
int qd_ckpt_num_files(const qd_checkpoint *ck);
const qd_st_file *qd_ckpt_file(const qd_checkpoint *ck, int i);

/* Tensors, sorted by name (deterministic order for every rank). */
int qd_ckpt_num_tensors(const qd_checkpoint *ck);
const qd_tensor_info *qd_ckpt_tensor(const qd_checkpoint *ck, int i);
/* Index of a tensor by name, or -1. */
int qd_ckpt_find(const qd_checkpoint *ck, const char *name);

/* The raw bytes of a tensor inside the mapping (mapped on first use). */
int qd_ckpt_raw(qd_checkpoint *ck, int i, const void **data);
/* A tensor as F32. For F32 data this points into the mapping (zero-copy, *owned = 0); for
 * F16/BF16/F64 it is a new buffer the caller frees (*owned = 1). Non-float dtypes: QD_EDTYPE. */
int qd_ckpt_read_f32(qd_checkpoint *ck, int i, const float **data, int *owned);
/* Copy rows [row0, row0+nrows) of a tensor viewed as [shape[0], numel/shape[0]] into dst (F32). */
int qd_ckpt_read_rows_f32(qd_checkpoint *ck, int i, int64_t row0, int64_t nrows, float *dst);
/* Drops the pages of tensor i that reading it brought into this process (they are read again
 * from the file when used again): a pass that goes tensor after tensor keeps its resident memory
 * to the tensors in hand instead of the whole checkpoint. Pointers from qd_ckpt_raw stay valid. */
void qd_ckpt_forget(qd_checkpoint *ck, int i);

/* Exact conversions used by the reader (exposed for tests and kernels). */
float qd_f16_to_f32(uint16_t h);
float qd_bf16_to_f32(uint16_t b);
uint16_t qd_f32_to_f16(float f);  /* round to nearest even, for export */
uint16_t qd_f32_to_bf16(float f); /* round to nearest even */

/* Parse one safetensors header from memory (used by the reader and by the fuzzer): `buf` holds
 * the whole file (or its first `len` bytes with `file_size` the real size). On success *tensors is
 * a malloc'd array of *ntensors entries sorted by name (free with qd_st_free_tensors) and
 * *metadata a malloc'd JSON string or NULL. `fname` is used in error messages. */
int qd_st_parse_header(const char *fname, const unsigned char *buf, size_t len, uint64_t file_size,
                       qd_tensor_info **tensors, int *ntensors, char **metadata, uint64_t *header_len);
void qd_st_free_tensors(qd_tensor_info *t, int n);

/* What the first bytes of a file are: a zip archive (QD_PT_ZIP: "PK\3\4" or an empty archive's
 * "PK\5\6"), the legacy torch.save pickle (QD_PT_LEGACY: its 14-byte magic), or neither. */
enum { QD_PT_NONE = 0, QD_PT_ZIP = 1, QD_PT_LEGACY = 2 };
int qd_pt_sniff(const unsigned char *head, size_t n);

/* Parse a torch.save state dict held whole in memory (`buf`, `len` bytes: the mapped file; used
 * by the reader and by tests). On success *tensors is a malloc'd array of *ntensors entries
 * sorted by name with offsets into buf (free with qd_st_free_tensors), *metadata a malloc'd JSON
 * object, and *pickle_off / *pickle_len locate data.pkl; any out pointer may be NULL. `fname`
 * is used in error messages. */
int qd_pt_parse(const char *fname, const unsigned char *buf, size_t len, qd_tensor_info **tensors, int *ntensors,
                char **metadata, uint64_t *pickle_off, uint64_t *pickle_len);

#endif
