/* qdist serve: the job queue, the socket thread of rank 0, and the job loop of every rank. */
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
#include "coordinator/service_store.h"

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    qd_svc_store *st; /* the job table: the one truth about jobs (service_store.h) */
    int shutdown;     /* 0 running, 1 drain (finish queue), 2 finish (drop queue) */
    char **evq;       /* events waiting for the socket thread, JSON text */
    int nev, evcap;
    const qd_service_opts *opt;
    /* socket thread */
    pthread_t thread;
    int stop;  /* ask the socket thread to exit */
    int ready; /* 1 bound, -1 failed */
    char bind_err[512];
    long long running;  /* seq of the job in hand, 0 = none */
    int cancel_running; /* its cancel was requested */
    cJSON *summary;     /* its `finished` event's fields */
} svc;

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- events (any thread; the socket thread publishes) ---------------------------------- */

static void push_event(svc *s, const char *job_id, const char *type, const cJSON *fields)
{
    cJSON *ev = fields ? cJSON_Duplicate(fields, 1) : cJSON_CreateObject();
    if (!cJSON_IsObject(ev)) {
        cJSON_Delete(ev);
        ev = cJSON_CreateObject();
    }
    cJSON_DeleteItemFromObjectCaseSensitive(ev, "event");
    cJSON_DeleteItemFromObjectCaseSensitive(ev, "job");
    cJSON_DeleteItemFromObjectCaseSensitive(ev, "time");
    cJSON_AddStringToObject(ev, "event", type);
    if (job_id) cJSON_AddStringToObject(ev, "job", job_id);
    cJSON_AddNumberToObject(ev, "time", wall_now());
    char *txt = cJSON_PrintUnformatted(ev);
    cJSON_Delete(ev);
    if (!txt) return;
    /* caller holds s->mu */
    if (!s->opt->events) {
        free(txt);
        return;
    }
    if (s->nev == s->evcap) {
        s->evcap = s->evcap ? 2 * s->evcap : 16;
        s->evq = realloc(s->evq, (size_t)s->evcap * sizeof *s->evq);
        QD_ASSERT(s->evq);
    }
    s->evq[s->nev++] = txt;
}

static void push_job_event(svc *s, long long seq, const char *type, const cJSON *fields)
{
    char id[24];
    qd_svc_job_id(seq, id);
    push_event(s, id, type, fields);
}

/* ---- the status of a job ----------------------------------------------------------------- */

static cJSON *job_json(const qd_svc_rec *r)
{
    cJSON *o = cJSON_CreateObject();
    char id[24];
    qd_svc_job_id(r->seq, id);
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "state", qd_sj_state_name(r->state));
    cJSON *job = cJSON_Parse(r->job);
    cJSON *m = cJSON_GetObjectItemCaseSensitive(job, "model");
    cJSON *out = cJSON_GetObjectItemCaseSensitive(job, "out");
    if (cJSON_IsString(m)) cJSON_AddStringToObject(o, "model", m->valuestring);
    if (cJSON_IsString(out)) cJSON_AddStringToObject(o, "out", out->valuestring);
    cJSON_Delete(job);
    cJSON_AddNumberToObject(o, "submitted", r->submitted);
    if (r->started > 0) cJSON_AddNumberToObject(o, "started", r->started);
    if (r->ended > 0) cJSON_AddNumberToObject(o, "finished", r->ended);
    if (r->attempts > 1) cJSON_AddNumberToObject(o, "attempts", r->attempts);
    if (r->state == QD_SJ_RUNNING || r->total > 0) {
        cJSON_AddNumberToObject(o, "tensors_done", r->done);
        cJSON_AddNumberToObject(o, "tensors_total", r->total);
    }
    if (r->state == QD_SJ_RUNNING) {
        double el = wall_now() - r->started;
        if (r->done > 0 && r->total >= r->done)
            cJSON_AddNumberToObject(o, "eta_s", el * (r->total - r->done) / r->done);
        if (r->cancel) cJSON_AddBoolToObject(o, "cancelling", 1);
    }
    cJSON *sum = r->summary ? cJSON_Parse(r->summary) : NULL;
    if (sum) cJSON_AddItemToObject(o, "summary", sum);
    if (r->err_msg) {
        cJSON *e = cJSON_AddObjectToObject(o, "error");
        cJSON_AddStringToObject(e, "code", r->err_code);
        cJSON_AddStringToObject(e, "message", r->err_msg);
    }
    return o;
}

/* ---- requests -------------------------------------------------------------------------- */

static cJSON *reply_error(qd_svc_err e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static cJSON *reply_error(qd_svc_err e, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *r = cJSON_CreateObject();
    cJSON_AddBoolToObject(r, "ok", 0);
    cJSON *err = cJSON_AddObjectToObject(r, "error");
    cJSON_AddStringToObject(err, "code", qd_svc_err_name(e));
    cJSON_AddStringToObject(err, "message", msg);
    return r;
}

static cJSON *reply_ok(void)
{
    cJSON *r = cJSON_CreateObject();
    cJSON_AddBoolToObject(r, "ok", 1);
    return r;
}

/* The table refused (disk full, I/O error on the state directory): the request is not done. */
static cJSON *reply_store_error(void)
{
    qd_log(QD_LOG_ERROR, "job table: %s", qd_errmsg());
    return reply_error(QD_SVC_STATE_ERROR, "the service cannot record this (%s)", qd_errmsg());
}

/* Every key of obj must be in the NULL-terminated list. */
static const char *unknown_key(const cJSON *obj, const char *const *keys)
{
    for (const cJSON *it = obj->child; it; it = it->next) {
        int known = 0;
        for (const char *const *k = keys; *k; k++) known |= it->string && !strcmp(it->string, *k);
        if (!known) return it->string ? it->string : "";
    }
    return NULL;
}

static const char *dup_key(const cJSON *obj)
{
    for (const cJSON *a = obj->child; a; a = a->next)
        for (const cJSON *b = a->next; b; b = b->next)
            if (a->string && b->string && !strcmp(a->string, b->string)) return a->string;
    return NULL;
}

/* The job of `id` if the requester may see it (viewer: the client's key, NULL for one that sees
 * every job); otherwise a reply saying there is no such job (whether it exists is not disclosed). */
static cJSON *lookup(svc *s, const char *viewer, const char *id, qd_svc_rec *r)
{
    long long seq = qd_svc_job_seq(id);
    int rc = seq > 0 ? qd_svc_store_get(s->st, seq, r) : QD_ENOTFOUND;
    if (rc == QD_OK && viewer && strcmp(viewer, r->owner)) {
        qd_svc_rec_free(r);
        rc = QD_ENOTFOUND;
    }
    if (rc == QD_ENOTFOUND) return reply_error(QD_SVC_NOT_FOUND, "no job '%s'", id);
    if (rc != QD_OK) return reply_store_error();
    return NULL;
}

static cJSON *op_submit(svc *s, const char *owner, cJSON *job, const cJSON *token)
{
    if (!job) return reply_error(QD_SVC_MISSING_FIELD, "missing field 'job'");
    if (token && (!cJSON_IsString(token) || !token->valuestring[0] || strlen(token->valuestring) >= QD_SVC_TOKEN_MAX))
        return reply_error(QD_SVC_BAD_TYPE, "field 'token' must be a non-empty string of at most %d bytes",
                           QD_SVC_TOKEN_MAX - 1);
    const char *tok = token ? token->valuestring : NULL;
    if (tok) {
        /* a token seen before: that job, whatever has happened to it or its paths since */
        pthread_mutex_lock(&s->mu);
        long long seen = qd_svc_store_find(s->st, owner, tok);
        pthread_mutex_unlock(&s->mu);
        if (seen < 0) return reply_store_error();
        if (seen > 0) {
            cJSON *reply = reply_ok();
            char id[24];
            qd_svc_job_id(seen, id);
            cJSON_AddStringToObject(reply, "id", id);
            cJSON_AddBoolToObject(reply, "existing", 1);
            return reply;
        }
    }
    const char *jdk = cJSON_IsObject(job) ? dup_key(job) : NULL;
    if (jdk) return reply_error(QD_SVC_BAD_REQUEST, "job: duplicate key '%s'", jdk);
    char msg[1024] = "";
    qd_svc_err e = qd_svc_validate_job(job, s->opt->allow_dirs, s->opt->n_allow, msg, sizeof msg);
    if (e) return reply_error(e, "%s", msg);
    char *txt = cJSON_PrintUnformatted(job);
    cJSON *reply = NULL;
    long long seq = 0;
    int existed = 0;
    pthread_mutex_lock(&s->mu);
    if (s->shutdown)
        reply = reply_error(QD_SVC_SHUTTING_DOWN, "the service is shutting down");
    else {
        /* the queue limit counts what waits; a token already seen is answered, never refused */
        long long nq = qd_svc_store_count(s->st, QD_SJ_QUEUED, NULL);
        int rc = nq < 0 ? (int)nq : QD_OK;
        if (rc == QD_OK && nq >= s->opt->max_queue && !(tok && qd_svc_store_find(s->st, owner, tok) > 0))
            reply =
                reply_error(QD_SVC_QUEUE_FULL, "queue full (%d jobs waiting); submit again later", s->opt->max_queue);
        else if (rc == QD_OK)
            rc = qd_svc_store_submit(s->st, owner, tok, txt, wall_now(), &seq, &existed);
        if (rc != QD_OK) reply = reply_store_error();
    }
    if (!reply) {
        /* recorded and synced: only now is the job accepted */
        if (!existed) {
            cJSON *f = cJSON_CreateObject();
            cJSON_AddItemToObject(f, "model", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(job, "model"), 1));
            cJSON_AddItemToObject(f, "out", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(job, "out"), 1));
            cJSON_AddNumberToObject(f, "queued", (double)qd_svc_store_count(s->st, QD_SJ_QUEUED, NULL));
            push_job_event(s, seq, "accepted", f);
            cJSON_Delete(f);
            pthread_cond_broadcast(&s->cv);
        }
        reply = reply_ok();
        char id[24];
        qd_svc_job_id(seq, id);
        cJSON_AddStringToObject(reply, "id", id);
        if (existed) cJSON_AddBoolToObject(reply, "existing", 1);
    }
    pthread_mutex_unlock(&s->mu);
    free(txt);
    return reply;
}

typedef struct {
    cJSON *arr;
    long long n[5];
} list_ctx;

static void list_one(void *ctx, const qd_svc_rec *r)
{
    list_ctx *l = ctx;
    cJSON_AddItemToArray(l->arr, job_json(r));
}

static cJSON *op_status(svc *s, const char *viewer, const cJSON *id)
{
    cJSON *reply;
    pthread_mutex_lock(&s->mu);
    if (id) {
        qd_svc_rec r;
        reply = lookup(s, viewer, id->valuestring, &r);
        if (!reply) {
            reply = reply_ok();
            cJSON_AddItemToObject(reply, "job", job_json(&r));
            qd_svc_rec_free(&r);
        }
    } else {
        /* the jobs waiting or running and the most recent ended ones: a bounded reply however
         * long the service has run; every job stays reachable by its id */
        const char *who = viewer;
        list_ctx l = {.arr = cJSON_CreateArray()};
        int rc = qd_svc_store_list(s->st, who, QD_SVC_STATUS_RECENT, list_one, &l);
        cJSON *counts = cJSON_CreateObject();
        for (int k = 0; rc == QD_OK && k < 5; k++) {
            long long n = qd_svc_store_count(s->st, (qd_sj_state)k, who);
            if (n < 0) rc = (int)n;
            cJSON_AddNumberToObject(counts, qd_sj_state_name((qd_sj_state)k), (double)n);
        }
        if (rc != QD_OK) {
            cJSON_Delete(l.arr);
            cJSON_Delete(counts);
            reply = reply_store_error();
        } else {
            reply = reply_ok();
            cJSON_AddItemToObject(reply, "jobs", l.arr);
            cJSON_AddItemToObject(reply, "counts", counts);
            cJSON_AddBoolToObject(reply, "shutting_down", s->shutdown != 0);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return reply;
}

static cJSON *op_cancel(svc *s, const char *viewer, const cJSON *id)
{
    if (!id) return reply_error(QD_SVC_MISSING_FIELD, "missing field 'id'");
    cJSON *reply;
    qd_svc_rec r;
    pthread_mutex_lock(&s->mu);
    reply = lookup(s, viewer, id->valuestring, &r);
    if (!reply) {
        int rc = QD_OK;
        if (r.state == QD_SJ_QUEUED) {
            /* final: the run loop starts a job only if it is still queued (one transaction) */
            rc = qd_svc_store_cancel_queued(s->st, r.seq, wall_now());
            if (rc == 1) {
                push_job_event(s, r.seq, "cancelled", NULL);
                reply = reply_ok();
                cJSON_AddStringToObject(reply, "state", "cancelled");
            }
        } else if (r.state == QD_SJ_RUNNING) {
            rc = qd_svc_store_request_cancel(s->st, r.seq);
            if (rc == 1) {
                if (r.seq == s->running) s->cancel_running = 1;
                reply = reply_ok();
                cJSON_AddStringToObject(reply, "state", "cancelling");
            }
        }
        if (rc < 0)
            reply = reply_store_error();
        else if (!reply)
            reply = reply_error(QD_SVC_BAD_STATE, "job '%s' is already %s", id->valuestring, qd_sj_state_name(r.state));
        qd_svc_rec_free(&r);
    }
    pthread_mutex_unlock(&s->mu);
    return reply;
}

static cJSON *op_shutdown(svc *s, const cJSON *mode)
{
    int m = 1;
    if (mode) {
        if (!cJSON_IsString(mode)) return reply_error(QD_SVC_BAD_TYPE, "field 'mode' must be a string");
        if (!strcmp(mode->valuestring, "drain"))
            m = 1;
        else if (!strcmp(mode->valuestring, "finish"))
            m = 2;
        else
            return reply_error(QD_SVC_BAD_REQUEST, "mode must be 'drain' or 'finish'");
    }
    pthread_mutex_lock(&s->mu);
    if (m == 2) {
        /* the queued jobs' ids, for their events, then one transaction cancels them all */
        qd_svc_rec r;
        while (qd_svc_store_next(s->st, QD_SJ_QUEUED, &r) == QD_OK) {
            int rc = qd_svc_store_cancel_queued(s->st, r.seq, wall_now());
            if (rc == 1) push_job_event(s, r.seq, "cancelled", NULL);
            qd_svc_rec_free(&r);
            if (rc < 0) {
                pthread_mutex_unlock(&s->mu);
                return reply_store_error();
            }
        }
    }
    if (m > s->shutdown) s->shutdown = m;
    push_event(s, NULL, "shutdown", NULL);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    cJSON *reply = reply_ok();
    cJSON_AddStringToObject(reply, "mode", m == 2 ? "finish" : "drain");
    return reply;
}

/* The reply to one request: the envelope checked here (a JSON object, no duplicate key, a known
 * op with only its own keys), then the op's handler. owner: the requesting client's key, "" when
 * clients are not identified (no CURVE); admin: it may see, cancel and stop everything (an admin
 * key, or no CURVE). */
static cJSON *request_reply(svc *s, const char *owner, int admin, cJSON *req)
{
    if (!cJSON_IsObject(req)) return reply_error(QD_SVC_BAD_REQUEST, "request must be a JSON object");
    const char *dk = dup_key(req);
    if (dk) return reply_error(QD_SVC_BAD_REQUEST, "duplicate key '%s'", dk);
    cJSON *op = cJSON_GetObjectItemCaseSensitive(req, "op");
    if (!op) return reply_error(QD_SVC_MISSING_FIELD, "missing field 'op'");
    if (!cJSON_IsString(op)) return reply_error(QD_SVC_BAD_TYPE, "field 'op' must be a string");
    const char *o = op->valuestring;
    cJSON *id = cJSON_GetObjectItemCaseSensitive(req, "id");
    if (id && !cJSON_IsString(id)) return reply_error(QD_SVC_BAD_TYPE, "field 'id' must be a string");
    static const char *const k_submit[] = {"op", "job", "token", NULL};
    static const char *const k_status[] = {"op", "id", NULL};
    static const char *const k_shutdown[] = {"op", "mode", NULL};
    const char *const *keys = !strcmp(o, "submit")                             ? k_submit
                              : !strcmp(o, "shutdown")                         ? k_shutdown
                              : (!strcmp(o, "status") || !strcmp(o, "cancel")) ? k_status
                                                                               : NULL;
    if (!keys) return reply_error(QD_SVC_BAD_REQUEST, "unknown op '%s' (submit, status, cancel, shutdown)", o);
    const char *uk = unknown_key(req, keys);
    if (uk) return reply_error(QD_SVC_UNKNOWN_KEY, "unknown key '%s' for op '%s'", uk, o);
    if (!strcmp(o, "submit"))
        return op_submit(s, owner, cJSON_GetObjectItemCaseSensitive(req, "job"),
                         cJSON_GetObjectItemCaseSensitive(req, "token"));
    const char *viewer = admin ? NULL : owner; /* whose jobs this client may see */
    if (!strcmp(o, "status")) return op_status(s, viewer, id);
    if (!strcmp(o, "cancel")) return op_cancel(s, viewer, id);
    if (!admin) return reply_error(QD_SVC_NOT_PERMITTED, "only an admin key may shut the service down");
    return op_shutdown(s, cJSON_GetObjectItemCaseSensitive(req, "mode"));
}

static cJSON *handle_request(svc *s, const char *owner, int admin, const char *body, size_t len)
{
    cJSON *req = cJSON_ParseWithLength(body, len);
    if (!req) return reply_error(QD_SVC_BAD_JSON, "request is not valid JSON");
    cJSON *reply = request_reply(s, owner, admin, req);
    cJSON_Delete(req);
    return reply;
}

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
    svc *s = arg;
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
                    reply = reply_error(QD_SVC_BAD_REQUEST, "expected one message frame, got %d", nf - body_i + extra);
                else {
                    /* the client's key as the ZAP handler named it; none without CURVE */
                    const char *uid = zmq_msg_gets(&frames[body_i], "User-Id");
                    const char *owner = uid ? uid : "";
                    int admin = !*owner || qd_svc_keys_has(&s->opt->auth.admins, owner);
                    reply =
                        handle_request(s, owner, admin, zmq_msg_data(&frames[body_i]), zmq_msg_size(&frames[body_i]));
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
    svc *s;
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
    push_job_event(h->s, h->seq, type, fields);
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
    int rank;
    QD_MPI_CHECK(MPI_Comm_rank(comm, &rank));
    long long len = (rank == 0 && *txt) ? (long long)strlen(*txt) + 1 : 0;
    QD_MPI_CHECK(MPI_Bcast(&len, 1, MPI_LONG_LONG, 0, comm));
    if (len == 0) return 0;
    if (rank != 0) *txt = qd_xmalloc((size_t)len);
    QD_MPI_CHECK(MPI_Bcast(*txt, (int)len, MPI_CHAR, 0, comm));
    return 1;
}

/* Runs one job on every rank (rank 0's side: the others are in run_other). */
static int run_on_all(svc *s, long long seq, const cJSON *job, MPI_Comm comm)
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
static int run_job(svc *s, qd_svc_rec *r, int resumed, MPI_Comm comm)
{
    cJSON *job = cJSON_Parse(r->job);
    QD_ASSERT(job);
    char id[24];
    qd_svc_job_id(r->seq, id);
    const char *out = job_str(job, "out");
    int moved = qd_svc_store_start(s->st, r->seq, wall_now(), file_ino(out));
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
        if (qd_svc_store_end(s->st, r->seq, QD_SJ_FAILED, wall_now(), NULL, qd_errname(QD_EPERM), cmsg))
            qd_log(QD_LOG_ERROR, "job table: %s", qd_errmsg());
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "code", qd_errname(QD_EPERM));
        cJSON_AddStringToObject(f, "message", cmsg);
        push_job_event(s, r->seq, "failed", f);
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
        wrc = qd_svc_store_end(s->st, r->seq, end, wall_now(), summary, end == QD_SJ_FAILED ? qd_errname(rc) : NULL,
                               end == QD_SJ_FAILED ? msg : NULL);
    if (wrc != QD_OK)
        qd_log(QD_LOG_ERROR, "job %s ended but the table cannot record it (%s): a restart finds its file", id,
               qd_errmsg());
    if (end == QD_SJ_CANCELLED) push_job_event(s, r->seq, "cancelled", NULL);
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

static void recover(svc *s)
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
            wrc = qd_svc_store_end(s->st, r.seq, QD_SJ_CANCELLED, wall_now(), NULL, NULL, NULL);
            what = "was being cancelled: cancelled, its partial file kept";
        } else if (ended_before_restart(&r, job)) {
            wrc = qd_svc_store_end(s->st, r.seq, QD_SJ_DONE, wall_now(), "{\"recovered\":true}", NULL, NULL);
            what = "had written its file: done";
        }
        if (wrc != QD_OK) qd_log(QD_LOG_ERROR, "job table: %s", qd_errmsg());
        qd_log(QD_LOG_INFO, "job %s was running when the service stopped; it %s", id, what);
        push_job_event(s, r.seq, "recovered", NULL);
        cJSON_Delete(job);
        qd_svc_rec_free(&r);
    }
    long long nq = qd_svc_store_count(s->st, QD_SJ_QUEUED, NULL);
    if (nq > 0) qd_log(QD_LOG_INFO, "%lld job%s queued from before the restart", nq, nq == 1 ? "" : "s");
}

static int run_rank0(svc *s, MPI_Comm comm)
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
    int rank;
    QD_MPI_CHECK(MPI_Comm_rank(comm, &rank));
    svc s;
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

    int size;
    QD_MPI_CHECK(MPI_Comm_size(comm, &size));
    qd_log(QD_LOG_INFO, "serving on %s%s%s with %d rank%s; jobs recorded in %s", opt->bind,
           opt->events ? ", events on " : "", opt->events ? opt->events : "", size, size == 1 ? "" : "s",
           opt->state_dir ? qd_svc_store_path(s.st) : "memory only (no --state-dir: not kept across restarts)");
    int rc = run_rank0(&s, comm);
    pthread_mutex_lock(&s.mu);
    push_event(&s, NULL, "stopped", NULL);
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
