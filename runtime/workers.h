/* runtime/workers.h — the inference engine's threads: a fixed set of workers that run the tasks of
 * one parallel region at a time beside the calling thread (which takes tasks too), for the GEMMs
 * (rows or column ranges), the attention heads and the row-wise pieces of a forward pass.
 *
 * Latency matters at batch 1 (a region lasts tens of microseconds), so workers spin on the
 * region counter for a while before they sleep on a condition variable; the caller spins until
 * every task is done. Tasks are handed out in index order by an atomic counter; a task's result
 * must not depend on which thread runs it (the engine's tasks write disjoint outputs). */
#ifndef QD_RUNTIME_WORKERS_H
#define QD_RUNTIME_WORKERS_H

#include <stdint.h>

typedef struct qd_workers qd_workers;

/* task(arg, i, thread) for i in [0, n); thread in [0, qd_workers_threads) names the runner (for
 * per-thread scratch) */
typedef void (*qd_workers_task)(void *arg, int64_t i, int thread);

/* threads >= 1 (1: no workers, every region runs on the caller). QD_OK or QD_ENOMEM/QD_EINVAL. */
int qd_workers_create(int threads, qd_workers **out);
void qd_workers_free(qd_workers *p);
int qd_workers_threads(const qd_workers *p);
/* Runs the n tasks and returns when all are done. Not reentrant: one region at a time. */
void qd_workers_run(qd_workers *p, int64_t n, qd_workers_task task, void *arg);
/* Runs task(arg, t, t) once on every thread t (the caller is thread 0): work shared out by a
 * fixed rule, so that each thread sees the same pieces from call to call (its scratch then never
 * grows again once a batch has been seen). */
void qd_workers_run_each(qd_workers *p, qd_workers_task task, void *arg);

#endif
