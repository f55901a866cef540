/* coordinator/sweep_layers.h — the per-layer output error of qdist sweep's cells: the FP32
 * model runs a few samples once, each Linear's input X is kept, and for a cell's file every
 * stored Linear weight W' is scored by the relative error of its output on those inputs,
 *   ||X (W' - W)^T||_F / ||X W^T + b||_F,
 * the error the layer itself adds (inputs are the FP32 model's, so errors do not accumulate from
 * the layers before it). */
#ifndef QD_SWEEP_LAYERS_H
#define QD_SWEEP_LAYERS_H

#include <cjson/cJSON.h>

typedef struct qd_sweep_inputs qd_sweep_inputs;

/* Loads the model and runs nsamples of `data` (selected as calibration selects them: seed 0)
 * through it, keeping every Linear input (at most max_rows real tokens per input). QD_OK or a
 * negative code with qd_errmsg() naming the model or the data. */
int qd_sweep_inputs_collect(const char *model, const char *data, int nsamples, int max_rows, qd_sweep_inputs **out);
void qd_sweep_inputs_free(qd_sweep_inputs *in);

/* {tensor name: relative output error} of every Linear weight the file stores (quantized or
 * float), in the model's order; an empty object when the file cannot be read. */
cJSON *qd_sweep_output_errors(const qd_sweep_inputs *in, const char *h5);

#endif
