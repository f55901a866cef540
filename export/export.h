/* export/export.h — a qdist model file written for other runtimes, its quantized weights carried
 * as they are (codes, scales, zero points, groups), never re-quantized:
 *
 *   ONNX (qd_export_onnx): the model's forward pass (export/desc.h) as an ONNX graph that ONNX
 *   Runtime runs; each quantized Linear in one of three forms (qd_onnx_ops):
 *     QDQ      DequantizeLinear of the stored codes (per output channel; blocked along the input,
 *              opset 21, for groups), then MatMul in float — what `qdist eval --fake-quant` runs;
 *     NBITS    com.microsoft MatMulNBits for 2-, 4- and 8-bit weights whose groups it can block
 *              (power-of-two blocks of at least 16), QDQ for the rest;
 *     INTEGER  8-bit symmetric per-channel weights as MatMulInteger on int8 activations
 *              quantized per token at run time (absmax / 127, round half to even), input columns
 *              above the outlier threshold multiplied in float — what `qdist eval` runs; other
 *              weights as QDQ.
 *   K-means codebook weights take one form whatever the option: their levels gathered by the codes
 *   (Gather of the flat codebook at code + row and group offsets), then MatMul in float — exactly
 *   the weights `qdist eval` looks up.
 *     QOPERATOR integer operators on the file's static activation scales (/activations, written by
 *              `quantize --activations static`): each Linear's input QuantizeLinear'd at its
 *              recorded scale and zero point (outlier channels apart, at scale * 2^shift), then
 *              MatMulInteger with the int8 weight codes (symmetric per channel only), q/k/v as
 *              int8, Q K^T and P V as MatMulInteger (P as u8 at 1/256), float between (LayerNorm,
 *              GELU, softmax, residuals) — `qdist eval --integer-only` with float stages. The
 *              ViT classifier and patch projection, float in the file, are made int8 per row as
 *              qdist's integer graph makes them (absmax / 127).
 *   Act-order records whose groups are not in column order gather the input columns into group
 *   order first. Float tensors stay float.
 *
 *   compressed-tensors (qd_export_ctensors): the safetensors layout of the compressed-tensors
 *   package (pack-quantized for symmetric 2..7-bit, int-quantized for 8-bit and asymmetric
 *   narrower weights) that transformers loads.
 *
 * Every exporter reads the file through export/source.h, checks everything before it writes, and
 * writes through export/outfile.h: an error leaves no output file. Errors name the file and the
 * tensor and say why a target cannot take it. */
#ifndef QD_EXPORT_H
#define QD_EXPORT_H

#include <stdint.h>

typedef enum { QD_ONNX_QDQ = 0, QD_ONNX_NBITS, QD_ONNX_INTEGER, QD_ONNX_QOPERATOR } qd_onnx_ops;

typedef struct {
    int opset; /* 17 .. 23 (QD_ONNX_OPSET_MIN/MAX); groups in QDQ form need 21 */
    qd_onnx_ops ops;
    float outlier; /* INTEGER: activation columns above this run in float; 0: none */
} qd_onnx_opts;

#define QD_ONNX_OPSET_MIN     17
#define QD_ONNX_OPSET_MAX     23
#define QD_ONNX_OPSET_DEFAULT 21

/* What an export wrote: Linears per form, and the file's size. */
typedef struct {
    int linears_float, linears_qdq, linears_blocked, linears_nbits, linears_integer, linears_gather, act_order_gathers;
    int64_t bytes;
} qd_export_summary;

const char *qd_onnx_ops_name(qd_onnx_ops o); /* "qdq", "nbits", "integer" */
int qd_onnx_ops_parse(const char *s, qd_onnx_ops *o);

/* Writes DIR/model.safetensors and DIR/config.json (export/ctensors.c): a compressed-tensors
 * checkpoint that transformers loads with AutoModel.from_pretrained. Summary: linears_integer
 * counts int-quantized Linears, linears_nbits pack-quantized ones. */
int qd_export_ctensors(const char *model_file, const char *out_dir, qd_export_summary *sum);

/* Writes `out` (one .tflite file, export/tflite.c): an integer-only INT8 ViT for LiteRT, its
 * activation scales from `ranges_json` ({"name": [min, max], ...}; a file's /activations has
 * none for the int8 LayerNorm lowering's intermediates). */
int qd_export_tflite(const char *model_file, const char *ranges_json, const char *out, qd_export_summary *sum);

/* Writes `out` (one .onnx file). QD_OK, or an error with qd_errmsg() naming the file, tensor and
 * reason; `out` is then not created. */
int qd_export_onnx(const char *model_file, const char *out, const qd_onnx_opts *o, qd_export_summary *sum);

#endif
