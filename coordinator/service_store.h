/* coordinator/service_store.h — the service's durable job table.
 *
 * Every accepted job, its state, progress and result live in one SQLite database,
 * STATE_DIR/jobs.db, in WAL mode. A job is committed (and the WAL synced) before the client is
 * told "accepted", and every change of state is committed before the service acts on it: a job
 * is marked running before any rank starts it, so after a crash the table says which job was in
 * hand (resume it), which were waiting (run them) and which had ended (answer `status`). Progress
 * is committed without a sync: losing the last few counts in a power cut costs nothing, the job's
 * own file records what is complete.
 *
 * STATE_DIR/lock (flock) keeps a second service off the same directory; the kernel drops it when
 * the process dies, however it dies. It holds the pid of the service's rank 0. Without a state directory the table is an in-memory
 * database: the same code, nothing survives the process.
 *
 * Jobs are "j<seq>": seq is SQLite's AUTOINCREMENT key, never reused, so ids stay unique across
 * restarts. Rank 0 only; calls are not thread-safe (the service serializes them under its lock).
 */
#ifndef QD_SERVICE_STORE_H
#define QD_SERVICE_STORE_H

#include <stddef.h>

typedef enum { QD_SJ_QUEUED, QD_SJ_RUNNING, QD_SJ_DONE, QD_SJ_FAILED, QD_SJ_CANCELLED } qd_sj_state;

/* "queued", "running", "done", "failed", "cancelled" */
const char *qd_sj_state_name(qd_sj_state s);

#define QD_SVC_OWNER_MAX 64 /* a client key in Z85 is 40 characters */
#define QD_SVC_TOKEN_MAX 128

/* One job as stored. Filled by qd_svc_store_get / _next / _list; free with qd_svc_rec_free. */
typedef struct {
    long long seq;                    /* the id's number: job "j<seq>" */
    qd_sj_state state;                /* */
    char owner[QD_SVC_OWNER_MAX];     /* the submitting client's key (Z85), "" without keys */
    char *job;                        /* the validated job, JSON text (absolute paths) */
    double submitted, started, ended; /* Unix times; 0 = not yet */
    int done, total;                  /* tensors done / in the job (progress) */
    int cancel;                       /* a cancel was requested while it ran */
    int attempts;                     /* runs started: more than 1 after a restart */
    long long out_ino;                /* inode of `out` before the first run (0: there was none) */
    char *summary;                    /* JSON text of the job's summary when done, or NULL */
    char err_code[32];                /* QD_E* name when failed, "" otherwise */
    char *err_msg;                    /* the error message when failed, or NULL */
} qd_svc_rec;

void qd_svc_rec_free(qd_svc_rec *r);

typedef struct qd_svc_store qd_svc_store;

/* Opens (creating it and its directory if needed) the table in state_dir, or an in-memory one
 * for NULL. QD_EIO with a message naming the file: another service holds the directory, the
 * database is damaged (quick_check) or of a newer schema, the disk refuses. */
int qd_svc_store_open(const char *state_dir, qd_svc_store **out);
void qd_svc_store_close(qd_svc_store *st);
/* The database file ("(memory)" without a state directory). */
const char *qd_svc_store_path(const qd_svc_store *st);

/* Records a new queued job (committed and synced when it returns 0). A non-empty token makes
 * the submission idempotent per owner: a token seen before returns that job's seq with
 * *existed = 1 and records nothing. */
int qd_svc_store_submit(qd_svc_store *st, const char *owner, const char *token, const char *job_json, double now,
                        long long *seq, int *existed);
/* The seq of owner's job submitted with token, 0 if none, negative on error. */
long long qd_svc_store_find(qd_svc_store *st, const char *owner, const char *token);
/* The job seq, or QD_ENOTFOUND. */
int qd_svc_store_get(qd_svc_store *st, long long seq, qd_svc_rec *r);
/* The oldest job in `state`, or QD_ENOTFOUND. */
int qd_svc_store_next(qd_svc_store *st, qd_sj_state state, qd_svc_rec *r);
/* Jobs in `state` (of `owner` only unless NULL); negative on a database error. */
long long qd_svc_store_count(qd_svc_store *st, qd_sj_state state, const char *owner);
/* Calls fn for every queued or running job and the `recent` most recently submitted ended ones,
 * of `owner` only unless NULL, in submission order. */
int qd_svc_store_list(qd_svc_store *st, const char *owner, int recent, void (*fn)(void *ctx, const qd_svc_rec *r),
                      void *ctx);

/* queued (or running, when resuming after a restart) -> running; attempts + 1. out_ino is kept
 * from the first run. Returns 1 if the job was moved, 0 if it was not queued or running any
 * more (cancelled meanwhile: it must not start), negative on error. */
int qd_svc_store_start(qd_svc_store *st, long long seq, double now, long long out_ino);
/* Progress of a running job (committed, not synced). */
int qd_svc_store_progress(qd_svc_store *st, long long seq, int done, int total);
/* running -> done / failed / cancelled with the summary or the error (either may be NULL). */
int qd_svc_store_end(qd_svc_store *st, long long seq, qd_sj_state state, double now, const char *summary,
                     const char *err_code, const char *err_msg);
/* A queued job -> cancelled: 1 if it was queued, 0 if not (it started or ended meanwhile). */
int qd_svc_store_cancel_queued(qd_svc_store *st, long long seq, double now);
/* Marks a running job's cancel request: 1 if it was running, 0 if not. */
int qd_svc_store_request_cancel(qd_svc_store *st, long long seq);

/* Keeps the `keep` most recent ended jobs and deletes older ended ones (queued and running
 * jobs are never deleted). Returns the number deleted. */
long long qd_svc_store_prune(qd_svc_store *st, long long keep);

/* "j<seq>" <-> seq: the id's text, and its number or -1 for anything that is not an id. */
void qd_svc_job_id(long long seq, char id[24]);
long long qd_svc_job_seq(const char *id);

#endif /* QD_SERVICE_STORE_H */
