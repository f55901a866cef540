/* coordinator/job_config.h — a job's options from the command line or JSON.
 *
 * Keys (CLI flag in brackets): method [--method] (rtn, gptq, adaround), bits [--bits],
 * granularity [--granularity], group_size [--group-size], sym [--sym/--asym], clip [--clip],
 * shard [--shard], include_embeddings [--include-embeddings], include_head [--include-head],
 * include [--include, repeatable]: an array of globs, overrides: an array of {pattern, skip,
 * method, bits, granularity, group_size, sym, clip} applied first-match to the tensors selected
 * for quantization (mixed precision). Calibration: calib, nsamples, seqlen, calib_seed,
 * calib_mode, microbatch; GPTQ: damp, block_size, act_order, static_groups; AdaRound:
 * adaround_iters [--iters], adaround_lambda [--lambda], adaround_beta [--beta],
 * adaround_warmup [--warmup], adaround_lr [--lr], adaround_batch [--batch]; static activation
 * scales: activations [--activations] (static, none), act_bits [--act-bits], act_calib
 * [--act-calib] (minmax, percentile, mse, entropy), act_percentile [--act-percentile],
 * act_outliers [--act-outliers]. Service jobs add
 * model, out, overwrite, resume. Unknown keys and wrong types are errors naming the key
 * ("overrides[1].bits must be 2..8"). */
#ifndef QD_JOB_CONFIG_H
#define QD_JOB_CONFIG_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "worker/job.h"

/* One option by key (the JSON key; "include" adds a pattern, "progress" sets the display);
 * 0, or -1 with a message naming the key and value. */
int qd_job_config_set(qd_job_config *c, const char *key, const char *val, char *msg, size_t cap);
/* Every key of a JSON object; unknown keys and wrong types are errors naming the key.
 * allow_paths: accept model, out, overwrite, resume (service submissions). */
int qd_job_config_from_json(qd_job_config *c, const cJSON *o, int allow_paths, char *msg, size_t cap);

#endif
