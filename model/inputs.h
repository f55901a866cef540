/* model/inputs.h — model inputs prepared elsewhere (another runtime's tokenizer or image
 * pipeline), read from a safetensors file, so that qdist and another runtime can be run on the
 * very same inputs:
 *   text:   input_ids [N, T] (I32 or I64), attention_mask [N, T] (optional: all ones),
 *           token_type_ids [N, T] (optional: all zeros);
 *   images: pixel_values [N, C, H, W] (F32, F16, BF16 or F64), preprocessed.
 * Errors name the file and the tensor. */
#ifndef QD_INPUTS_H
#define QD_INPUTS_H

#include <stdint.h>

#include "model/model.h"

typedef struct {
    int n, T;                       /* items; tokens per item (text) */
    int32_t *ids, *mask, *type_ids; /* [n, T]; mask and type_ids NULL when absent */
    float *pixels;                  /* [n, C, H, W] */
    int C, H, W;
} qd_inputs;

int qd_inputs_read(const char *path, qd_inputs *out);
void qd_inputs_free(qd_inputs *in);
/* QD_OK when the inputs suit the model (ids for text models, pixels of its channel count for
 * vision models; ids inside the vocabulary), else QD_EINVAL naming the file. */
int qd_inputs_check(const qd_inputs *in, const qd_model *m, const char *path);
/* Items [first, first + n) as a batch (pointers into `in`). */
qd_batch qd_inputs_batch(const qd_inputs *in, const qd_model *m, int first, int n);

#endif
