/* coordinator/service_req.h — the service's request layer: the state rank 0 shares between its
 * socket thread and its job loop (coordinator/service.c), and requests turned into replies
 * against the job table (service_store.h). No sockets and no MPI here, so that tests and the
 * fuzzer (tests/fuzz/fuzz_service.c) drive it with plain bytes. */
#ifndef QD_SERVICE_REQ_H
#define QD_SERVICE_REQ_H

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stddef.h>

#include "coordinator/service.h"
#include "coordinator/service_store.h"

typedef struct {
    pthread_mutex_t mu; /* guards everything below and every call into st */
    pthread_cond_t cv;  /* a job was queued, or shutdown was asked */
    qd_svc_store *st;   /* the job table: the one truth about jobs (service_store.h) */
    int shutdown;       /* 0 running, 1 drain (finish queue), 2 finish (drop queue) */
    char **evq;         /* events waiting for the socket thread, JSON text */
    int nev, evcap;
    const qd_service_opts *opt;
    /* socket thread */
    pthread_t thread;
    int stop;  /* ask the socket thread to exit */
    int ready; /* 1 bound, -1 failed */
    char bind_err[512];
    /* job loop */
    long long running;  /* seq of the job in hand, 0 = none */
    int cancel_running; /* its cancel was requested */
    cJSON *summary;     /* its `finished` event's fields */
} qd_svc;

/* Opens the job table of opt->state_dir (in memory without one); QD_OK or an error code with
 * qd_errmsg() set. */
int qd_svc_init(qd_svc *s, const qd_service_opts *opt);
void qd_svc_free(qd_svc *s);

/* The reply to one request (body: its bytes, any content). owner: the client's key ("" when
 * clients are not identified); admin: it may see, cancel and stop everything. Takes s->mu. */
cJSON *qd_svc_request(qd_svc *s, const char *owner, int admin, const char *body, size_t len);

/* {"ok": false, "error": {"code", "message"}}: a refused request. */
cJSON *qd_svc_reply_error(qd_svc_err e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Queues an event for the socket thread (caller holds s->mu). */
void qd_svc_push_event(qd_svc *s, const char *job_id, const char *type, const cJSON *fields);
void qd_svc_push_job_event(qd_svc *s, long long seq, const char *type, const cJSON *fields);

/* Unix time in seconds. */
double qd_svc_wall_now(void);

#endif /* QD_SERVICE_REQ_H */
