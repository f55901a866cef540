/* coordinator/job_config.h — a job's options from the command line or JSON. Keys (CLI flag in
 * brackets): method [--method], bits [--bits], granularity [--granularity], group_size
 * [--group-size], sym [--sym/--asym], clip [--clip], shard [--shard], include_embeddings,
 * include_head, overrides (per-tensor glob patterns: skip, bits, granularity, group_size, sym,
 * clip; the first match wins); service jobs add model, out, overwrite, resume. */
#ifndef QD_JOB_CONFIG_H
#define QD_JOB_CONFIG_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "worker/job.h"

/* One option by key; 0, or -1 with a message naming the key and value. */
int qd_job_config_set(qd_job_config *c, const char *key, const char *val, char *msg, size_t cap);
/* Every key of a JSON object; unknown keys and wrong types are errors naming the key. */
int qd_job_config_from_json(qd_job_config *c, const cJSON *o, int allow_paths, char *msg, size_t cap);

#endif
