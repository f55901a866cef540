/* coordinator/job_hooks.h — a job given as JSON (the service's submissions), run with the hooks
 * of worker/job.h (progress events out, a cancel request in). */
#ifndef QD_JOB_HOOKS_H
#define QD_JOB_HOOKS_H

#include "worker/job.h"

/* ---- a job as JSON (the keys of a --config file plus "model", "out", "overwrite") ---------- */
/* 0 if every key is known and well-typed; otherwise non-zero and a message naming the key. */
int qd_job_config_check_json(const cJSON *job, char *msg, size_t msgcap);
/* Runs the job on every rank of comm (collective; every rank passes the same JSON). Returns
 * QD_OK, QD_ECANCELED (stopped by hooks->cancel_requested, partial file kept) or another
 * negative code with qd_errmsg() set on every rank. */
int qd_job_run_json(const cJSON *job, MPI_Comm comm, const qd_job_hooks *hooks);

#endif
