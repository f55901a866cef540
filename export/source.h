/* export/source.h — a qdist model file as the exporters read it: its tensor records, its model
 * configuration, and each record's values (float data, or quantized codes with their scales,
 * zero points and column groups). The one place in export/ that reads model files.
 *
 * Quantized values come back unpacked: codes[r][c] in [0, 2^bits - 1], scales and zeros
 * [rows][ngroups] (symmetric records get zero = 2^(bits-1) filled in), g_idx [cols] only for
 * act-order records whose column order differs from c / G; codebook records (K-means) come with
 * codebook [rows][ngroups][2^bits] instead of scales and zeros. The values are checked before they are
 * handed out: zero points within the bit width, scales finite and positive, g_idx within the
 * groups, float data finite; errors name the file and the tensor. */
#ifndef QD_EXPORT_SOURCE_H
#define QD_EXPORT_SOURCE_H

#include <stdint.h>

#include "quant/actq.h"

#define QD_XS_MAX_DIMS 8

typedef enum { QD_XS_FLOAT = 0, QD_XS_QUANT, QD_XS_RAW } qd_xs_kind;

typedef struct {
    const char *name;
    qd_xs_kind kind;
    int ndim;
    int64_t shape[QD_XS_MAX_DIMS];
    const char *orig_dtype; /* the checkpoint's dtype ("F32", "I64", ...) */
    /* quantized [rows = shape[0], cols = shape[1]] */
    const char *method;
    int bits, sym, act_order;
    int64_t G;            /* columns per group: group size, or cols (per channel, per tensor) */
    int64_t ngroups;      /* scales per row */
    int per_tensor;       /* one scale for the whole tensor (granularity "tensor") */
    int pruned;           /* has a sparsity mask (the values hold its zeros already) */
    const char *sparsity; /* pruned: the pattern ("0.5", "2:4"), else "" */
    int codebook;         /* non-uniform levels per group (K-means): W = codebook[r][g][q] */
    /* records this exporter does not know how to carry ("" when none): unknown datasets or kind */
    const char *unknown;
} qd_xs_tensor;

typedef struct {
    uint8_t *codes;  /* [rows][cols] */
    float *scales;   /* [rows][ngroups]; NULL for codebook records */
    int32_t *zeros;  /* [rows][ngroups]; NULL for codebook records */
    float *codebook; /* codebook records: [rows][ngroups][2^bits], else NULL */
    int32_t *g_idx;  /* [cols] or NULL: group of column c is c / G */
} qd_xs_quant;

typedef struct qd_xs qd_xs;

int qd_xs_open(const char *path, qd_xs **out);
void qd_xs_close(qd_xs *s);
const char *qd_xs_path(const qd_xs *s);
/* Root records: the model's config.json text, the quantization settings (JSON). */
const char *qd_xs_model_config(const qd_xs *s);
const char *qd_xs_quant_config(const qd_xs *s);
int qd_xs_count(const qd_xs *s);
const qd_xs_tensor *qd_xs_tensor_at(const qd_xs *s, int i);
int qd_xs_find(const qd_xs *s, const char *name); /* index or -1 */
int64_t qd_xs_numel(const qd_xs_tensor *t);

/* Float values of tensor i (float records as stored; quantized ones dequantized), malloc'd. */
int qd_xs_read_float(qd_xs *s, int i, float **out);
/* The bytes of a raw record (non-float tensors kept byte for byte; orig_dtype says how to view
 * them), malloc'd, *n bytes. */
int qd_xs_read_raw(qd_xs *s, int i, uint8_t **out, int64_t *n);
/* The quantized values of record i (see above); free with qd_xs_quant_free. */
int qd_xs_read_quant(qd_xs *s, int i, qd_xs_quant *q);
void qd_xs_quant_free(qd_xs_quant *q);
/* The file's static activation scales (/activations), read on first use and owned by s; NULL with
 * an error naming the file when it has none. */
const qd_actrec *qd_xs_activations(qd_xs *s);
/* Index of activation tensor `name` in r ("layer.3.qkv_in"), or -1. */
int qd_xs_act_find(const qd_actrec *r, const char *name);

#endif
