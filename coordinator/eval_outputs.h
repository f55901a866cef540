/* coordinator/eval_outputs.h — the outputs of `qdist eval` leaving qdist and coming back.
 *
 * --save-outputs writes the FP32 and quantized outputs of every sample (logits, or sentence
 * embeddings), in input order, with the inputs that produced them (token ids and masks for text,
 * the image indices for images) to one safetensors file, so that another runtime can be run and
 * scored on exactly the same inputs; --reference scores the quantized outputs against such a
 * file's outputs computed elsewhere. The file's layout is a contract for other tools:
 * docs/eval.md, "Outputs file". */
#ifndef QD_EVAL_OUTPUTS_H
#define QD_EVAL_OUTPUTS_H

#include <stdint.h>

typedef struct {
    int n, dim;                    /* samples, values per sample */
    const float *fp32, *quantized; /* [n, dim] each */
    const char *output;            /* what a row is: "logits", "mean-pooled embeddings", ... */
    int classify;                  /* rows are logits: agreement of the argmax applies */
    /* text inputs, [n, T] each (padded with 0 after each sample's tokens), or NULL for images */
    const int32_t *input_ids, *attention_mask, *token_type_ids;
    int T;
    const int *labels; /* [n] class labels, or NULL */
    /* recorded in the metadata */
    const char *model, *quantized_file, *data, *runtime;
} qd_eval_outputs;

/* Writes `path` (safetensors). QD_OK, or an error naming the file. */
int qd_eval_outputs_save(const char *path, const qd_eval_outputs *o);

/* How one set of outputs compares with the reference's, row by row. */
typedef struct {
    double cos_mean, cos_min; /* cosine of each sample's row */
    double max_abs;           /* largest |difference| of any value */
    double agreement;         /* same argmax (logits only), else -1 */
} qd_eval_match;

typedef struct {
    char tensor[128];              /* the reference tensor read ("outputs", "quantized" or the one named) */
    int n;                         /* samples compared */
    qd_eval_match quantized, fp32; /* ours (quantized / FP32) against the reference */
} qd_eval_ref_scores;

/* Reads the reference outputs from `path` — the tensor named `tensor`, or when NULL "outputs"
 * [N, dim] if present, else "quantized" (a file written by --save-outputs) — and matches its rows to ours through its
 * "sample_index" [N] when present (each of our samples must be there), else row by row (N must
 * equal ours). QD_OK, or an error naming the file and the tensor. */
int qd_eval_reference_score(const char *path, const char *tensor, const qd_eval_outputs *o, qd_eval_ref_scores *s);

/* Cosine of two rows (1 for two zero rows, 0 for one). */
double qd_eval_cosine(const float *a, const float *b, int n);

#endif
