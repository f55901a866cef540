/* runtime/engine.h — qdist's inference engine: a BERT- or ViT-family encoder run from its FP32
 * checkpoint (model/) with every encoder Linear either in float or from a qdist model file
 * (runtime/qmodel.h: int8, 4-bit or dequantized), on the kernels of the CPU it runs on.
 *
 * What makes it fast, and where each piece lives:
 *   - weights are packed once, at creation, in the layout of the selected kernel table (AMX /
 *     vpdpbusd bytes, AVX2 int16 pairs, FP32 16-channel panels); float Linears are packed too, so
 *     the FP32 model's mapped weights are never read during a run;
 *   - a batch runs ragged: the valid tokens of every sequence are packed row after row, nothing is
 *     padded (a sentence at batch 1 costs its own length), attention runs per sequence and head;
 *   - the query, key and value products share one quantized input (quantized once) and write one
 *     row of [q | k | v]; LayerNorm takes the residual add; GELU runs in place;
 *   - every buffer lives in the engine and only grows: after the first batches of a size, a run
 *     allocates nothing (the kernels keep per-thread scratch the same way);
 *   - `threads` workers split each GEMM by rows (many rows) or by output columns (few rows), the
 *     attention by (sequence, head), the row-wise pieces by rows; results do not depend on the
 *     thread count.
 * Int8 activations are quantized per token, dynamically; with `outlier` > 0, input columns that
 * hold a value above it are taken out of the int8 product and multiplied in float with their
 * dequantized weight columns (LLM.int8()'s decomposition); a Linear stored with SmoothQuant
 * factors s has its input columns divided by s before quantization (one multiply, fused). With
 * QD_KERNELS=ref every piece runs its scalar reference and the outputs are the same bits.
 *
 * Outputs per item of a batch: the mask-weighted mean of the last hidden state (BERT encoders,
 * sentence-transformers pooling), the pooled vector (ViT: final LayerNorm of CLS; BERT: pooler), or
 * the logits of the classification head.
 */
#ifndef QD_RUNTIME_ENGINE_H
#define QD_RUNTIME_ENGINE_H

#include <stdint.h>

#include "model/model.h"
#include "runtime/qmodel.h"

typedef struct qd_engine qd_engine;

typedef struct {
    int threads;   /* threads running a forward pass, the caller included (>= 1) */
    float outlier; /* > 0: the mixed-precision threshold of int8 activations; 0: every column int8 */
    int profile;   /* time every operation class (qd_engine_profile) */
} qd_engine_opts;

typedef enum { QD_ENGINE_MEAN = 0, QD_ENGINE_POOLED, QD_ENGINE_LOGITS } qd_engine_output;

/* q NULL: the FP32 model. The model must outlive the engine; q too. */
int qd_engine_create(const qd_model *m, const qd_qmodel *q, const qd_engine_opts *o, qd_engine **out);
void qd_engine_free(qd_engine *e);

/* One forward pass over a batch (model/model.h qd_batch: BERT ids/type_ids/mask [B, T], the mask
 * marking the valid tokens; ViT pixels). out: [B, hidden] (MEAN, POOLED) or [B, num_labels]. */
int qd_engine_run(qd_engine *e, const qd_batch *b, qd_engine_output what, float *out);

/* ---- what it holds and where the time went ------------------------------------------------- */
/* Bytes of the weights the engine reads during a run: packed Linears, embeddings (quantized or
 * float), norms, heads. */
uint64_t qd_engine_weight_bytes(const qd_engine *e);
/* Bytes of its buffers (activations, scratch) at their current size. */
uint64_t qd_engine_buffer_bytes(const qd_engine *e);
/* Mean number of outlier columns per int8/4-bit product, and the products that had any. */
double qd_engine_outlier_cols(const qd_engine *e);
/* The ISA of every GEMM kind the engine ran ("amx-int8 + avx512-vnni", "avx512 fma", ...). */
const char *qd_engine_gemm_isa(const qd_engine *e, qd_ql_kind kind);

typedef struct {
    char name[80];      /* "GEMM int8 K=384 N=1152 (q,k,v)", "attention scores", "softmax", ... */
    double seconds;     /* wall time of the regions of this class, summed */
    double cpu_seconds; /* the calling thread's CPU time in them (the work, with one thread) */
    int64_t calls;
    double ops; /* multiply-adds x 2 for the GEMMs, 0 otherwise */
} qd_engine_prof_row;
/* Up to max rows, largest time first; returns the number of rows. Totals since the last reset. */
int qd_engine_profile(const qd_engine *e, qd_engine_prof_row *rows, int max);
void qd_engine_profile_reset(qd_engine *e);

#endif
