/* runtime/qmodel.h — the Linears of a qdist model file (docs/FORMAT.md), packed once at load for
 * the inference engine (runtime/engine.h).
 *
 * Every encoder Linear of the FP32 model is looked up in the file and packed for the best kernel
 * its scheme allows (kernels/gemm.h, in the layout of the selected kernel table):
 *   int8    8-bit symmetric per output channel: int8 weights x u8-coded activations quantized
 *           per token on the fly (qd_gemm_u8_f32: vpdpbusd, AMX tiles or AVX2 by CPU);
 *   int8 2:4  the same, pruned 2:4 (docs/FORMAT.md "Sparsity"): packed twice where the CPU has the
 *           vector 2:4 kernel (kernels/gemm_u8_24.h, AVX-512 VNNI + VBMI): for the dense int8 GEMM
 *           above and in the compact 2:4 form (1 byte per kept value + 2-bit positions); the
 *           engine runs each call on the one that is faster for its row count (runtime/engine.c,
 *           QD_ENGINE_24_ROWS). Both give the same bits. Elsewhere the dense GEMM alone;
 *   int4    4-bit, per channel or in groups along the input (no act-order permutation, or one
 *           equal to the natural group order): packed 4-bit weights x u8-coded activations
 *           (qd_gemm_u8w4_f32), or x float activations with w4_float_act (qd_gemm_w4_f32);
 *   codebook K-means records (levels per channel or group): by default every weight is looked up
 *           once at load (kernels.h lut_row) and the looked-up rows are packed for the FP32 GEMM
 *           (QD_QL_LUT: the product of the levels in float); with QD_CODEBOOK_KERNEL=int8 every
 *           row's levels are snapped to an int8 grid (scale max|level| / 127) and packed for the
 *           int8 GEMM (QD_QL_CB_INT8: the snapping adds at most half a step of that grid to each
 *           level);
 *   dequant anything else (other widths, act-order files), and every Linear with fake_quant: the
 *           dequantized weights, packed for the FP32 GEMM.
 *   float   a Linear the file keeps in float: the file's values (a pruned model's zeros) packed
 *           for the FP32 GEMM.
 * A Linear quantized with SmoothQuant scale migration carries its factors s (weights W diag(s) in
 * the file): the engine divides its input columns by s before quantizing them. The packed codes
 * are all the engine keeps: the outlier columns of the mixed-precision path read single columns
 * back out of them (qd_gemm_w8_column / qd_gemm_w4_column).
 */
#ifndef QD_QMODEL_H
#define QD_QMODEL_H

#include <stdint.h>

#include "kernels/gemm.h"
#include "kernels/gemm_u8_24.h"
#include "model/model.h"

typedef enum {
    QD_QL_FLOAT = 0,
    QD_QL_INT8,
    QD_QL_INT4_S8,
    QD_QL_INT4_F32,
    QD_QL_DEQUANT,
    QD_QL_LUT,
    QD_QL_CB_INT8,
    QD_QL_INT8_24,
    QD_QL_KINDS_
} qd_ql_kind;

typedef struct {
    qd_ql_kind kind;
    qd_gemm_w8 *w8;   /* INT8, INT8_24 */
    qd_gemm_u24 *w24; /* INT8_24 where the vector 2:4 kernel exists: the compact 2:4 form */
    qd_gemm_w4 *w4;   /* INT4_S8 (inference layout), INT4_F32 (int16-pair layout) */
    qd_gemm_wf *wf;   /* DEQUANT */
    float *smooth;    /* [in] SmoothQuant factors of the file, or NULL */
    uint64_t bytes;   /* held by the packed objects above (float Linears: 4 bytes a weight) */
} qd_qlinear;

/* Quantized word embeddings of the file (--quantize-embeddings): rows of `bits` (8 or 4) codes, a
 * scale and zero per row, dequantized on lookup. */
typedef struct {
    int bits;
    int64_t rows, cols, row_bytes;
    uint8_t *codes; /* [rows][row_bytes], the file's packing */
    float *scales;  /* [rows] */
    int32_t *zeros; /* [rows] */
    uint64_t bytes;
} qd_qembed;

typedef struct qd_qmodel qd_qmodel;

/* outlier: the mixed-precision threshold of qd_qmodel_hooks (> 0: activation columns holding a
 * value above it are multiplied in float; 0: every column in int8); engines take their own. */
int qd_qmodel_load(const char *h5path, const qd_model *m, int fake_quant, int w4_float_act, float outlier,
                   qd_qmodel **out);
void qd_qmodel_free(qd_qmodel *q);
/* Hooks that swap the file's products into the model's own forward pass (qd_model_forward), on a
 * one-thread engine (runtime/engine.h qd_engine_hooks) made on first use; a failure to make it
 * aborts the forward pass with its error. Mean outlier columns per product so far. */
qd_model_hooks qd_qmodel_hooks(qd_qmodel *q);
double qd_qmodel_outlier_cols(const qd_qmodel *q);
const qd_qlinear *qd_qmodel_linear(const qd_qmodel *q, int li);
/* The file's quantized word embeddings, or NULL when it keeps them in float. */
const qd_qembed *qd_qmodel_embedding(const qd_qmodel *q);
/* The position and token-type tables when the file quantized them, dequantized once at load
 * ([max_position, hidden], [type_vocab, hidden]); NULL when it keeps them in float. */
const float *qd_qmodel_position_embedding(const qd_qmodel *q);
const float *qd_qmodel_type_embedding(const qd_qmodel *q);
/* Linears per kernel kind, and the bytes their packed weights take in memory. */
void qd_qmodel_counts(const qd_qmodel *q, int counts[QD_QL_KINDS_]);
uint64_t qd_qmodel_weight_bytes(const qd_qmodel *q);
/* The file's tensor data (collective/h5model.h qd_h5m_tensor_bytes): bytes of its quantized
 * records and of the others. */
void qd_qmodel_tensor_bytes(const qd_qmodel *q, double *quantized, double *kept);
const char *qd_ql_kind_name(qd_ql_kind k);

#endif
