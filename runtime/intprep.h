/* runtime/intprep.h — builds the integer-only model (runtime/intmodel.h) from a checkpoint, its
 * qdist model file and the file's static activation scales (/activations, written by
 * `qdist quantize --activations static`).
 *
 * Weights: every encoder Linear must be quantized per output channel with integer codes that fit
 * int8 after the zero point (8-bit symmetric, or up to 7 bits); a Linear the file keeps in float
 * is quantized here (symmetric int8 per channel, round to nearest), as are the ViT patch
 * embedding and classifier, which the file keeps in float by default. Biases, embeddings,
 * position tables and LayerNorm parameters become integers in the scales of the tensors they
 * meet. Errors name the file, the tensor and what was expected. */
#ifndef QD_INTPREP_H
#define QD_INTPREP_H

#include "model/model.h"
#include "runtime/intmodel.h"

/* m: the checkpoint (QD_MODEL_LAZY_LINEARS is enough: encoder Linear weights come from the file).
 * float_ops: QD_IFLOAT_* stages to run in float. The result is packed for qd_intops(). */
int qd_imodel_build(const qd_model *m, const char *h5path, int float_ops, qd_imodel **out);

#endif
