/* runtime/engine.h — qdist's inference engine: a text or vision encoder (model/model.h) run from
 * its FP32 checkpoint with every encoder Linear either in float or from a qdist model file
 * (runtime/qmodel.h: int8, 4-bit or dequantized), on the kernels of the CPU it runs on.
 *
 * The engine runs the blocks itself for post-LN text encoders whose embeddings have the hidden
 * width (BERT, RoBERTa, XLM-R, DistilBERT, MiniLM) and pre-LN vision encoders (ViT, DeiT, DINOv2,
 * CLIP's vision tower); MPNet and BEiT (relative position biases), ELECTRA and ALBERT (projected
 * embeddings) run the model's own stages on the padded batch with the engine's Linears inside
 * (the same products, none of the speed-ups below but the GEMMs).
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
 * Outputs per item of a batch, as the model defines them: the embedding (text: mean-pooled or
 * first token; vision: pooled, projected where CLIP projects), the pooled vector or the logits of
 * the head. Heads on the first token (with the final LayerNorm, the pooler, a dense layer before
 * the classifier, DeiT's distillation token) run on packed weights; others (patch means, token
 * heads) run the model's head on the padded hidden state.
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

/* What a forward pass returns per item, as model/model.h computes it: qd_model_embedding's vector
 * [embedding_dim], qd_model_head's pooled output [hidden] or its logits
 * [qd_model_logits_per_item]. */
typedef enum { QD_ENGINE_EMBEDDING = 0, QD_ENGINE_POOLED, QD_ENGINE_LOGITS } qd_engine_output;

/* q NULL: the FP32 model. The model must outlive the engine; q too. */
int qd_engine_create(const qd_model *m, const qd_qmodel *q, const qd_engine_opts *o, qd_engine **out);
void qd_engine_free(qd_engine *e);

/* One forward pass over a batch (model/model.h qd_batch: text ids/type_ids/mask [B, T], the mask
 * marking the valid tokens; vision pixels). out: [B, the output's width]. */
int qd_engine_run(qd_engine *e, const qd_batch *b, qd_engine_output what, float *out);
/* Hooks that run the engine's Linears inside the model's own forward pass (qd_model_forward,
 * qd_model_block), one at a time on the padded batch: for callers that need the model's stages
 * (hidden states) with the quantized products. Threads as the engine's. */
qd_model_hooks qd_engine_hooks(qd_engine *e);

/* ---- what it holds and where the time went ------------------------------------------------- */
/* Bytes of the weights the engine reads during a run: packed Linears, embeddings (quantized or
 * float), norms, heads. */
uint64_t qd_engine_weight_bytes(const qd_engine *e);
/* Bytes of its buffers (activations, scratch) at their current size. */
uint64_t qd_engine_buffer_bytes(const qd_engine *e);
/* Mean number of outlier columns per int8/4-bit product, and the products that had any. */
double qd_engine_outlier_cols(const qd_engine *e);
/* How the engine runs the model, in words: its own ragged forward pass, or (architectures whose
 * blocks it does not fuse: relative position biases, projected embeddings, post-LN with layer
 * scales) the model's stages on the padded batch with the engine's Linears, and why. */
const char *qd_engine_path(const qd_engine *e);
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
