/* qdist serve: the socket thread of rank 0, the job loop of every rank, recovery after a restart.
 * Requests are answered by the request layer (service_req.c). */
#include "coordinator/service.h"

#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "collective/collective.h"
#include "common/qd_common.h"
#include "coordinator/service_auth.h"
#include "coordinator/service_req.h"
#include "coordinator/service_store.h"

/* ---- socket thread (rank 0): never calls MPI ------------------------------------------- */

static int read_key_file(const char *path, char key[41], char *err, size_t errcap)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errcap, "%s: %s", path, strerror(errno));
        return -1;
    }
    char line[256] = "";
    if (!fgets(line, sizeof line, f)) line[0] = 0;
    fclose(f);
    size_t n = strcspn(line, "\r\n");
    line[n] = 0;
    if (n != 40) {
        snprintf(err, errcap, "%s: expected a 40-character Z85 CURVE key, got %zu characters", path, n);
        return -1;
    }
    memcpy(key, line, 41);
    return 0;
}

static int setup_socket(void *sock, const qd_service_opts *opt, const char *ep, const char *zap_domain, char *err,
                        size_t errcap)
{
    int64_t maxmsg = QD_SVC_MAX_MSG;
    int linger = 0;
    zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    if (opt->curve_secret_file) {
        /* the handshake asks the ZAP handler (socket_thread) which keys may connect here */
        zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, zap_domain, strlen(zap_domain));
        char sec[41];
        if (read_key_file(opt->curve_secret_file, sec, err, errcap)) return -1;
        int one = 1;
        if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) ||
            zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, sec, 41)) {
            snprintf(err, errcap, "CURVE setup failed: %s", zmq_strerror(zmq_errno()));
            return -1;
        }
    }
    if (zmq_bind(sock, ep) != 0) {
        snprintf(err, errcap, "cannot bind %s: %s", ep, zmq_strerror(zmq_errno()));
        return -1;
    }
    return 0;
}

static void *socket_thread(void *arg)
{
    qd_svc *s = arg;
    void *ctx = zmq_ctx_new();
    void *router = zmq_socket(ctx, ZMQ_ROUTER);
    void *pub = s->opt->events ? zmq_socket(ctx, ZMQ_PUB) : NULL;
    char err[512] = "";
    /* CURVE: the ZAP handler is bound before any socket can take a handshake */
    void *zap = s->opt->curve_secret_file ? zmq_socket(ctx, ZMQ_REP) : NULL;
    int ok = !zap || zmq_bind(zap, "inproc://zeromq.zap.01") == 0;
    if (!ok) snprintf(err, sizeof err, "cannot start the ZAP handler: %s", zmq_strerror(zmq_errno()));
    ok = ok && setup_socket(router, s->opt, s->opt->bind, QD_SVC_ZAP_REQUESTS, err, sizeof err) == 0 &&
         (!pub || setup_socket(pub, s->opt, s->opt->events, QD_SVC_ZAP_EVENTS, err, sizeof err) == 0);
    pthread_mutex_lock(&s->mu);
    s->ready = ok ? 1 : -1;
    snprintf(s->bind_err, sizeof s->bind_err, "%s", err);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);

    while (ok) {
        zmq_pollitem_t its[2] = {{router, 0, ZMQ_POLLIN, 0}, {zap, 0, ZMQ_POLLIN, 0}};
        int rc = zmq_poll(its, zap ? 2 : 1, 50);
        if (rc < 0 && zmq_errno() != EINTR) break;
        if (zap && rc > 0 && (its[1].revents & ZMQ_POLLIN)) qd_svc_auth_serve(&s->opt->auth, zap);
        if (rc > 0 && (its[0].revents & ZMQ_POLLIN)) {
            /* one multipart message: [identity][""]?[body]; anything else is answered with an
             * error (if it can be routed) and dropped. */
            zmq_msg_t frames[4];
            int nf = 0, extra = 0, more = 1;
            while (more) {
                zmq_msg_t m;
                zmq_msg_init(&m);
                if (zmq_msg_recv(&m, router, ZMQ_DONTWAIT) < 0) {
                    zmq_msg_close(&m);
                    break;
                }
                more = zmq_msg_more(&m);
                if (nf < 4)
                    frames[nf++] = m;
                else {
                    extra++;
                    zmq_msg_close(&m);
                }
            }
            if (nf >= 2) {
                int delim = nf >= 3 && zmq_msg_size(&frames[1]) == 0;
                int body_i = delim ? 2 : 1;
                cJSON *reply;
                if (extra || nf != body_i + 1)
                    reply = qd_svc_reply_error(QD_SVC_BAD_REQUEST, "expected one message frame, got %d",
                                               nf - body_i + extra);
                else {
                    /* the client's key as the ZAP handler named it; none without CURVE */
                    const char *uid = zmq_msg_gets(&frames[body_i], "User-Id");
                    const char *owner = uid ? uid : "";
                    int admin = !*owner || qd_svc_keys_has(&s->opt->auth.admins, owner);
                    reply =
                        qd_svc_request(s, owner, admin, zmq_msg_data(&frames[body_i]), zmq_msg_size(&frames[body_i]));
                }
                char *txt = cJSON_PrintUnformatted(reply);
                cJSON_Delete(reply);
                zmq_send(router, zmq_msg_data(&frames[0]), zmq_msg_size(&frames[0]), ZMQ_SNDMORE | ZMQ_DONTWAIT);
                if (delim) zmq_send(router, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT);
                zmq_send(router, txt, strlen(txt), ZMQ_DONTWAIT);
                free(txt);
            }
            for (int i = 0; i < nf; i++) zmq_msg_close(&frames[i]);
        }
        pthread_mutex_lock(&s->mu);
        char **evs = s->evq;
        int nev = s->nev;
        s->evq = NULL;
        s->nev = s->evcap = 0;
        int stop = s->stop;
        pthread_mutex_unlock(&s->mu);
        for (int i = 0; i < nev; i++) {
            if (pub) zmq_send(pub, evs[i], strlen(evs[i]), ZMQ_DONTWAIT);
            free(evs[i]);
        }
        free(evs);
        if (stop) break;
    }
    if (pub) zmq_close(pub);
    if (zap) zmq_close(zap);
    zmq_close(router);
    zmq_ctx_term(ctx);
    return NULL;
}

/* ---- job hooks (rank 0, main thread) --------------------------------------------------- */

typedef struct {
    qd_svc *s;
    long long seq;
} hook_ctx;

static void on_event(void *ctx, const char *type, const cJSON *fields)
{
    hook_ctx *h = ctx;
    pthread_mutex_lock(&h->s->mu);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(fields, "tensors_total");
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(fields, "tensors_done");
    if (cJSON_IsNumber(t) && cJSON_IsNumber(d) && qd_svc_store_progress(h->s->st, h->seq, d->valueint, t->valueint))
        qd_log(QD_LOG_WARN, "job table: %s", qd_errmsg()); /* progress only: the job goes on */
    /* the summary is recorded with the job's end (run_job) */
    if (!strcmp(type, "finished") && fields) {
        cJSON *keep = cJSON_Duplicate(fields, 1);
        cJSON_Delete(h->s->summary);
        h->s->summary = keep;
    }
    qd_svc_push_job_event(h->s, h->seq, type, fields);
    pthread_mutex_unlock(&h->s->mu);
}

static int on_cancel(void *ctx)
{
    hook_ctx *h = ctx;
    pthread_mutex_lock(&h->s->mu);
    int c = h->s->cancel_running;
    pthread_mutex_unlock(&h->s->mu);
    return c;
}

/* ---- the loop of every rank ------------------------------------------------------------ */

static int bcast_text(char **txt, MPI_Comm comm)
{
    const int rank = qd_coll_rank(comm);
    long long len = (rank == 0 && *txt) ? (long long)strlen(*txt) + 1 : 0;
    qd_coll_bcast(comm, &len, sizeof len, 0);
    if (len == 0) return 0;
    if (rank != 0) *txt = qd_xmalloc((size_t)len);
    qd_coll_bcast(comm, *txt, (size_t)len, 0);
    return 1;
}

/* Runs one job on every rank (rank 0's side: the others are in run_other). */
static int run_on_all(qd_svc *s, long long seq, const cJSON *job, MPI_Comm comm)
{
    char *txt = cJSON_PrintUnformatted(job);
    bcast_text(&txt, comm);
    free(txt);
    hook_ctx hc = {.s = s, .seq = seq};
    qd_job_hooks hooks = {.ctx = &hc, .event = on_event, .cancel_requested = on_cancel};
    qd_err_clear();
    return qd_job_run_json(job, comm, &hooks);
}

static const char *job_str(const cJSON *job, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(job, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static long long file_ino(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long long)sb.st_ino : 0;
}

static int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* A job that was running when the service died may have finished: its OUT.partial renamed to
 * OUT (a new file, so another inode than any OUT of before its first run) before the table heard
 * of it. */
static int ended_before_restart(const qd_svc_rec *r, const cJSON *job)
{
    const char *out = job_str(job, "out");
    char partial[PATH_MAX];
    snprintf(partial, sizeof partial, "%s.partial", out);
    if (file_exists(partial) || !file_exists(out)) return 0;
    return file_ino(out) != r->out_ino;
}

/* The job in hand, start to end: recorded as running before any rank sees it, recorded as ended
 * once every rank is done with it. A job that was running when the service died (resumed = 1)
 * continues from its OUT.partial; if that fails (a partial file damaged by the crash, say) it runs
 * once more from the beginning, so that a crash never turns into a failed job. */
static int run_job(qd_svc *s, qd_svc_rec *r, int resumed, MPI_Comm comm)
{
    cJSON *job = cJSON_Parse(r->job);
    QD_ASSERT(job);
    char id[24];
    qd_svc_job_id(r->seq, id);
    const char *out = job_str(job, "out");
    int moved = qd_svc_store_start(s->st, r->seq, qd_svc_wall_now(), file_ino(out));
    if (moved <= 0) {
        /* cancelled meanwhile, or the table refuses: the job must not run unrecorded */
        if (moved < 0) qd_log(QD_LOG_ERROR, "job %s not started: %s", id, qd_errmsg());
        cJSON_Delete(job);
        return moved;
    }
    /* its paths again: a directory may have become a symbolic link out of the roots since */
    char cmsg[1024];
    if (qd_svc_confine_job(job, s->opt->allow_dirs, s->opt->n_allow, cmsg, sizeof cmsg) != QD_SVC_OK) {
        qd_log(QD_LOG_ERROR, "job %s refused: %s", id, cmsg);
        if (qd_svc_store_end(s->st, r->seq, QD_SJ_FAILED, qd_svc_wall_now(), NULL, qd_errname(QD_EPERM), cmsg))
            qd_log(QD_LOG_ERROR, "job table: %s", qd_errmsg());
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "code", qd_errname(QD_EPERM));
        cJSON_AddStringToObject(f, "message", cmsg);
        qd_svc_push_job_event(s, r->seq, "failed", f);
        cJSON_Delete(f);
        cJSON_Delete(job);
        return 1;
    }
    out = job_str(job, "out");
    s->running = r->seq;
    s->cancel_running = r->cancel;
    cJSON_Delete(s->summary);
    s->summary = NULL;
    int overwrite = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(job, "overwrite"));
    if (resumed) {
        cJSON_DeleteItemFromObjectCaseSensitive(job, "resume");
        cJSON_AddBoolToObject(job, "resume", 1);
    }
    pthread_mutex_unlock(&s->mu);

    qd_log(QD_LOG_INFO, "job %s: %s", id, resumed ? "resumed after a restart" : "started");
    int rc = run_on_all(s, r->seq, job, comm);
    if (resumed && rc != QD_OK && rc != QD_ECANCELED && rc != QD_EINTR && (overwrite || !file_exists(out))) {
        qd_log(QD_LOG_WARN, "job %s: resuming failed (%s); running it again from the beginning", id, qd_errmsg());
        cJSON_DeleteItemFromObjectCaseSensitive(job, "resume");
        cJSON_DeleteItemFromObjectCaseSensitive(job, "overwrite");
        cJSON_AddBoolToObject(job, "overwrite", 1); /* replaces the partial file */
        rc = run_on_all(s, r->seq, job, comm);
    }
    cJSON_Delete(job);

    pthread_mutex_lock(&s->mu);
    s->running = 0;
    qd_sj_state end = rc == QD_OK ? QD_SJ_DONE : rc == QD_ECANCELED ? QD_SJ_CANCELLED : QD_SJ_FAILED;
    char *summary = end == QD_SJ_DONE && s->summary ? cJSON_PrintUnformatted(s->summary) : NULL;
    const char *msg = qd_errmsg()[0] ? qd_errmsg() : qd_strerror(rc);
    int wrc = QD_OK;
    if (rc == QD_EINTR) /* a signal stopped the service: the job stays running in the table, resumed next start */
        qd_log(QD_LOG_WARN, "job %s: interrupted; it resumes when the service starts again", id);
    else
        wrc = qd_svc_store_end(s->st, r->seq, end, qd_svc_wall_now(), summary,
                               end == QD_SJ_FAILED ? qd_errname(rc) : NULL, end == QD_SJ_FAILED ? msg : NULL);
    if (wrc != QD_OK)
        qd_log(QD_LOG_ERROR, "job %s ended but the table cannot record it (%s): a restart finds its file", id,
               qd_errmsg());
    if (end == QD_SJ_CANCELLED) qd_svc_push_job_event(s, r->seq, "cancelled", NULL);
    if (rc != QD_EINTR)
        qd_log(QD_LOG_INFO, "job %s: %s%s%s", id, qd_sj_state_name(end), end == QD_SJ_FAILED ? ": " : "",
               end == QD_SJ_FAILED ? msg : "");
    free(summary);
    if (s->opt->keep_jobs > 0 && qd_svc_store_prune(s->st, s->opt->keep_jobs) < 0)
        qd_log(QD_LOG_WARN, "job table: %s", qd_errmsg());
    return rc == QD_EINTR ? QD_EINTR : 1;
}

/* After a restart: the jobs that were running when the service died. A cancelled one ends
 * cancelled (its partial file kept), one whose file was complete ends done; the others stay
 * running and are resumed first. */
typedef struct {
    long long seq[64];
    int n;
} seq_list;

static void collect_running(void *ctx, const qd_svc_rec *r)
{
    seq_list *l = ctx;
    if (r->state == QD_SJ_RUNNING && l->n < (int)QD_ARRAY_LEN(l->seq)) l->seq[l->n++] = r->seq;
}

static void recover(qd_svc *s)
{
    seq_list l = {.n = 0};
    if (qd_svc_store_list(s->st, NULL, 0, collect_running, &l) != QD_OK) {
        qd_log(QD_LOG_ERROR, "job table: %s", qd_errmsg());
        return;
    }
    for (int i = 0; i < l.n; i++) {
        qd_svc_rec r;
        if (qd_svc_store_get(s->st, l.seq[i], &r) != QD_OK) continue;
        cJSON *job = cJSON_Parse(r.job);
        char id[24];
        qd_svc_job_id(r.seq, id);
        const char *what = "resumes first";
        int wrc = QD_OK;
        if (r.cancel) {
            wrc = qd_svc_store_end(s->st, r.seq, QD_SJ_CANCELLED, qd_svc_wall_now(), NULL, NULL, NULL);
            what = "was being cancelled: cancelled, its partial file kept";
        } else if (ended_before_restart(&r, job)) {
            wrc = qd_svc_store_end(s->st, r.seq, QD_SJ_DONE, qd_svc_wall_now(), "{\"recovered\":true}", NULL, NULL);
            what = "had written its file: done";
        }
        if (wrc != QD_OK) qd_log(QD_LOG_ERROR, "job table: %s", qd_errmsg());
        qd_log(QD_LOG_INFO, "job %s was running when the service stopped; it %s", id, what);
        qd_svc_push_job_event(s, r.seq, "recovered", NULL);
        cJSON_Delete(job);
        qd_svc_rec_free(&r);
    }
    long long nq = qd_svc_store_count(s->st, QD_SJ_QUEUED, NULL);
    if (nq > 0) qd_log(QD_LOG_INFO, "%lld job%s queued from before the restart", nq, nq == 1 ? "" : "s");
}

static int run_rank0(qd_svc *s, MPI_Comm comm)
{
    int interrupted = 0;
    pthread_mutex_lock(&s->mu);
    recover(s);
    while (!interrupted) {
        qd_svc_rec r;
        int resumed = 0, rc;
        for (;;) {
            /* a job left running by a crash first, then the queue in order */
            rc = qd_svc_store_next(s->st, QD_SJ_RUNNING, &r);
            resumed = rc == QD_OK;
            if (rc == QD_ENOTFOUND) rc = qd_svc_store_next(s->st, QD_SJ_QUEUED, &r);
            if (rc == QD_OK || (rc == QD_ENOTFOUND && s->shutdown)) break;
            if (rc != QD_ENOTFOUND) {
                qd_log(QD_LOG_ERROR, "job table: %s", qd_errmsg());
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += 1;
                pthread_cond_timedwait(&s->cv, &s->mu, &ts); /* not in a tight loop */
                continue;
            }
            pthread_cond_wait(&s->cv, &s->mu);
        }
        if (rc != QD_OK) break;
        int jrc = run_job(s, &r, resumed, comm); /* unlocks while the job runs */
        qd_svc_rec_free(&r);
        if (jrc < 0 && jrc != QD_EINTR) {
            pthread_mutex_unlock(&s->mu);
            sleep(1); /* the table refused to record the start: try again, never run unrecorded */
            pthread_mutex_lock(&s->mu);
        }
        interrupted = jrc == QD_EINTR;
        if (jrc > 0) malloc_trim(0); /* a long-lived process: give the job's memory back */
    }
    pthread_mutex_unlock(&s->mu);
    char *none = NULL;
    bcast_text(&none, comm); /* length 0: the other ranks leave their loop */
    return interrupted ? QD_EINTR : QD_OK;
}

static int run_other(MPI_Comm comm)
{
    char *txt = NULL;
    while (bcast_text(&txt, comm)) {
        cJSON *job = cJSON_Parse(txt);
        free(txt);
        txt = NULL;
        QD_ASSERT(job);
        qd_job_run_json(job, comm, NULL);
        cJSON_Delete(job);
        malloc_trim(0);
    }
    return 0;
}

int qd_service_run(const qd_service_opts *opt, MPI_Comm comm)
{
    const int rank = qd_coll_rank(comm);
    qd_svc s;
    memset(&s, 0, sizeof s);
    s.opt = opt;
    int st = QD_OK;
    if (rank == 0) {
        pthread_mutex_init(&s.mu, NULL);
        pthread_cond_init(&s.cv, NULL);
        st = qd_svc_store_open(opt->state_dir, &s.st);
        if (st == QD_OK && pthread_create(&s.thread, NULL, socket_thread, &s) != 0)
            st = qd_err_set(QD_EIO, "cannot start the socket thread");
        else if (st == QD_OK) {
            pthread_mutex_lock(&s.mu);
            while (!s.ready) pthread_cond_wait(&s.cv, &s.mu);
            pthread_mutex_unlock(&s.mu);
            if (s.ready < 0) {
                st = qd_err_set(QD_EIO, "%s", s.bind_err);
                pthread_join(s.thread, NULL);
            }
        }
    }
    char msg[1024];
    st = qd_coll_agree_msg(comm, st, msg, sizeof msg, NULL);
    if (st != QD_OK) {
        if (rank == 0) {
            qd_log(QD_LOG_ERROR, "serve: %s", msg);
            qd_svc_store_close(s.st);
        }
        return 1;
    }
    if (rank != 0) return run_other(comm);

    const int size = qd_coll_size(comm);
    qd_log(QD_LOG_INFO, "serving on %s%s%s with %d rank%s; jobs recorded in %s", opt->bind,
           opt->events ? ", events on " : "", opt->events ? opt->events : "", size, size == 1 ? "" : "s",
           opt->state_dir ? qd_svc_store_path(s.st) : "memory only (no --state-dir: not kept across restarts)");
    int rc = run_rank0(&s, comm);
    pthread_mutex_lock(&s.mu);
    qd_svc_push_event(&s, NULL, "stopped", NULL);
    pthread_mutex_unlock(&s.mu);
    /* let the last events and replies go out before closing */
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
    pthread_mutex_lock(&s.mu);
    s.stop = 1;
    pthread_mutex_unlock(&s.mu);
    pthread_join(s.thread, NULL);
    qd_svc_store_close(s.st);
    cJSON_Delete(s.summary);
    for (int i = 0; i < s.nev; i++) free(s.evq[i]);
    free(s.evq);
    qd_log(QD_LOG_INFO, rc == QD_EINTR ? "service interrupted" : "service stopped");
    return rc == QD_EINTR ? 3 : 0;
}
