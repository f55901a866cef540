/* coordinator/service.h — qdist as a long-running service over ZeroMQ (coordinator/service.c).
 *
 * `mpirun -n N qdist serve --bind tcp://127.0.0.1:5555` keeps one MPI allocation alive and runs
 * the jobs clients submit, one at a time, in FIFO order; every rank takes part in each job.
 * Rank 0 owns the sockets (a ROUTER for requests, a PUB for events) in a thread of its own that
 * never calls MPI; the main thread of every rank runs jobs. The other ranks wait for the next job
 * in MPI_Bcast, not by polling files. Protocol: docs/service.md.
 *
 * The request layer (parsing, validation, path confinement) is separate from the sockets so that
 * it can be tested without them: coordinator/service_proto.h, which knows nothing of this file.
 */
#ifndef QD_SERVICE_H
#define QD_SERVICE_H

#include <cjson/cJSON.h>
#include <mpi.h>
#include <stddef.h>

#include "coordinator/job_hooks.h"
#include "coordinator/service_auth.h"
#include "coordinator/service_proto.h"

#define QD_SVC_MAX_ALLOW 16

typedef struct {
    const char *bind;                         /* request endpoint (ROUTER) */
    const char *events;                       /* event endpoint (PUB), or NULL */
    const char *allow_dirs[QD_SVC_MAX_ALLOW]; /* realpath'd roots; none given = cwd */
    int n_allow;
    int max_queue;                 /* queued (not running) jobs accepted at most */
    const char *curve_secret_file; /* server secret key (z85, 40 chars) or NULL */
    int insecure;                  /* allow a non-loopback bind without CURVE */
    qd_svc_auth auth;              /* with CURVE: client and admin keys (service_auth.h) */
    const char *state_dir;         /* the durable job table's directory, or NULL (memory only) */
    long long keep_jobs;           /* ended jobs kept for `status` at most (older ones pruned) */
} qd_service_opts;

/* A `status` without an id lists the waiting and running jobs and this many recent ended ones. */
#define QD_SVC_STATUS_RECENT 100

/* Runs the service on comm until a shutdown request; collective over comm. Returns the exit
 * code (0 after a clean shutdown). */
int qd_service_run(const qd_service_opts *opt, MPI_Comm comm);

#endif
