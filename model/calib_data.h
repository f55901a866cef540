/* model/calib_data.h — calibration samples: which inputs, in which order, as model batches.
 *
 * Sources (--calib PATH):
 *   text   a file with one sample per line (empty lines skipped), or a TSV whose first line is a
 *          header: the column named "sentence" (else "text", else the first) is used;
 *          tokenized with vocab.txt beside the model (do_lower_case from tokenizer_config.json),
 *          truncated and padded to seqlen tokens; padding is masked out of the statistics;
 *   images an IDX images file (MNIST / Fashion-MNIST, optionally gzip'd), or a folder of PNG/JPEG
 *          files (class sub-folders allowed); preprocessed as preprocessor_config.json says;
 *   inputs a .safetensors file of input_ids (+ attention_mask) or pixel_values prepared by another
 *          runtime (model/inputs.h): any model, whatever its tokenizer.
 * Selection is deterministic: a Fisher-Yates shuffle of all samples driven by splitmix64(seed)
 * picks the first nsamples (all of them, in file order, when nsamples <= 0 or >= the count).
 * Text samples are then ordered longest first (stably), and a batch of text is padded only to
 * its longest sample: micro-batches are fixed globally, so every rank sees the same batches and
 * computes the same bits, and little work goes into padding (the statistics are sums: the
 * order does not change them). Images all have the model's size.
 */
#ifndef QD_CALIB_DATA_H
#define QD_CALIB_DATA_H

#include <stdint.h>

#include "model/model.h"

typedef struct qd_calib_data qd_calib_data;

int qd_calib_data_open(const qd_model *m, const char *path, int nsamples, int seqlen, uint64_t seed,
                       qd_calib_data **out);
/* Samples given in memory: ViT pixels [n, C, H, W] (copied) — for tests and library users. */
int qd_calib_data_from_pixels(const qd_model *m, const float *pixels, int n, qd_calib_data **out);
/* BERT ids [n, T] with an optional mask (copied). */
int qd_calib_data_from_ids(const qd_model *m, const int32_t *ids, const int32_t *mask, int n, int T,
                           qd_calib_data **out);
void qd_calib_data_free(qd_calib_data *d);

int qd_calib_data_count(const qd_calib_data *d);        /* samples selected */
int qd_calib_data_tokens(const qd_calib_data *d);       /* the longest T of any batch (seqlen for text) */
int qd_calib_data_real_tokens(const qd_calib_data *d);  /* unpadded tokens over all samples */
const char *qd_calib_data_kind(const qd_calib_data *d); /* "text", "images", "memory" */

/* Items [first, first + n) as a batch. The buffers belong to d and stay valid until the next call. */
int qd_calib_data_batch(qd_calib_data *d, int first, int n, qd_batch *b);

/* Text samples of a file: one per line, or a TSV whose header names a "sentence" (else "text",
 * else the first) column and optionally a "label" column (class indices). Blank samples are
 * skipped; at most `limit` (0: all). Errors name the file and line. */
typedef struct {
    char **text;
    int *labels; /* -1 where there is no label column */
    int n, has_labels;
} qd_text_samples;
int qd_text_samples_read(const char *path, int limit, qd_text_samples *out);
void qd_text_samples_free(qd_text_samples *t);

/* The deterministic selection: idx[0..k) = the first k of a seeded shuffle of 0..total-1. */
void qd_calib_select(int total, int k, uint64_t seed, int *idx);

#endif
