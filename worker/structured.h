/* worker/structured.h — structured pruning before quantization: whole attention heads and FFN
 * neurons removed by importance, the matrices shrunk for real.
 *
 * The FP32 model runs the calibration samples; the inputs of every block's attention output and
 * FFN output Linears give their Hessians H = sum x x^T, and a unit's importance is the output
 * energy its inputs carry through that Linear (quant/prune.h qd_prune_unit_importance). Each
 * layer loses its `heads` least important heads and floor(ffn * intermediate) least important
 * neurons (the same count in every layer, so intermediate_size stays one number). The result is a
 * checkpoint directory: query/key/value rows and biases of the removed heads, attention-output
 * columns, intermediate rows and biases, FFN-output columns gone; config.json with transformers'
 * `pruned_heads` ({"layer": [original head indices]}, which model/ and transformers both load)
 * and the new intermediate_size; every other file of the source directory copied. A quantization
 * job then runs on that directory like on any other.
 */
#ifndef QD_STRUCTURED_H
#define QD_STRUCTURED_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int heads;         /* heads removed per layer (0: none) */
    double ffn;        /* fraction of FFN neurons removed per layer, [0, 1) */
    const char *calib; /* calibration samples (model/calib_data.h) */
    int nsamples, seqlen;
    uint64_t seed;
} qd_structured_opts;

/* Whether o asks for anything. */
static inline int qd_structured_active(const qd_structured_opts *o) { return o->heads > 0 || o->ffn > 0; }

/* Prunes the checkpoint directory `model` into directory `out` (created; its files replaced).
 * One process. QD_OK, or an error naming the file, option or tensor. summary (may be NULL)
 * receives one line: what was removed. */
int qd_structured_prune(const char *model, const qd_structured_opts *o, const char *out, char *summary, size_t cap);

#endif
