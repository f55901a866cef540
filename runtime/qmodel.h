/* runtime/qmodel.h — a qdist model file (docs/FORMAT.md) run with integer kernels.
 *
 * Every encoder Linear of the FP32 model is looked up in the file and replaced, through the
 * forward pass's linear_apply hook, by the best kernel its scheme allows:
 *   int8    8-bit symmetric per output channel: int8 weights (q - 128) x int8 activations
 *           quantized per token on the fly (kernels/gemm.h qd_gemm_s8_f32);
 *   int4    4-bit, per channel or in groups along the input (no act-order permutation, or one
 *           equal to the natural group order): packed 4-bit weights x int8 per-token activations
 *           (qd_gemm_w4_s8), or x float activations with --w4-float-act (qd_gemm_w4_f32);
 *   dequant anything else (other widths, act-order files): the dequantized weights in float.
 * Outlier activations: per-token int8 loses the small values of a row when one channel is far
 * larger; columns with a value above a threshold are taken out and multiplied in float with their
 * dequantized weight columns (LLM.int8()'s decomposition; a handful of columns per product).
 * With fake_quant every Linear runs its dequantized weights in float, which separates the error
 * of the quantized weights from the error of the integer activations.
 * Tensors the file keeps in float (embeddings, norms, biases) come from the FP32 model.
 */
#ifndef QD_QMODEL_H
#define QD_QMODEL_H

#include <stdint.h>

#include "model/model.h"

typedef enum { QD_QL_FLOAT = 0, QD_QL_INT8, QD_QL_INT4_S8, QD_QL_INT4_F32, QD_QL_DEQUANT, QD_QL_KINDS_ } qd_ql_kind;

typedef struct qd_qmodel qd_qmodel;

/* outlier > 0: activation columns holding a value above it are multiplied in float, the rest in
 * int8 (mixed-precision decomposition, as LLM.int8()); 0: everything in int8. */
int qd_qmodel_load(const char *h5path, const qd_model *m, int fake_quant, int w4_float_act, float outlier,
                   qd_qmodel **out);
/* Mean number of outlier columns per int8 product so far. */
double qd_qmodel_outlier_cols(const qd_qmodel *q);
void qd_qmodel_free(qd_qmodel *q);
qd_model_hooks qd_qmodel_hooks(qd_qmodel *q);
/* Linears per kernel kind, and the bytes their weights take in memory (packed codes, scales,
 * zeros; float weights at 4 bytes a value). */
void qd_qmodel_counts(const qd_qmodel *q, int counts[QD_QL_KINDS_]);
uint64_t qd_qmodel_weight_bytes(const qd_qmodel *q);
/* The file's tensor data (collective/h5model.h qd_h5m_tensor_bytes): bytes of its quantized
 * records and of the others. */
void qd_qmodel_tensor_bytes(const qd_qmodel *q, double *quantized, double *kept);
const char *qd_ql_kind_name(qd_ql_kind k);

#endif
