/* The service's request layer (service_req.h): replies from the job table, the event queue. */
#include "coordinator/service_req.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/qd_common.h"

double qd_svc_wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- events (any thread; the socket thread publishes) ---------------------------------- */

void qd_svc_push_event(qd_svc *s, const char *job_id, const char *type, const cJSON *fields)
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
    cJSON_AddNumberToObject(ev, "time", qd_svc_wall_now());
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

void qd_svc_push_job_event(qd_svc *s, long long seq, const char *type, const cJSON *fields)
{
    char id[24];
    qd_svc_job_id(seq, id);
    qd_svc_push_event(s, id, type, fields);
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
        double el = qd_svc_wall_now() - r->started;
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

cJSON *qd_svc_reply_error(qd_svc_err e, const char *fmt, ...)
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
    return qd_svc_reply_error(QD_SVC_STATE_ERROR, "the service cannot record this (%s)", qd_errmsg());
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
static cJSON *lookup(qd_svc *s, const char *viewer, const char *id, qd_svc_rec *r)
{
    long long seq = qd_svc_job_seq(id);
    int rc = seq > 0 ? qd_svc_store_get(s->st, seq, r) : QD_ENOTFOUND;
    if (rc == QD_OK && viewer && strcmp(viewer, r->owner)) {
        qd_svc_rec_free(r);
        rc = QD_ENOTFOUND;
    }
    if (rc == QD_ENOTFOUND) return qd_svc_reply_error(QD_SVC_NOT_FOUND, "no job '%s'", id);
    if (rc != QD_OK) return reply_store_error();
    return NULL;
}

static cJSON *op_submit(qd_svc *s, const char *owner, cJSON *job, const cJSON *token)
{
    if (!job) return qd_svc_reply_error(QD_SVC_MISSING_FIELD, "missing field 'job'");
    if (token && (!cJSON_IsString(token) || !token->valuestring[0] || strlen(token->valuestring) >= QD_SVC_TOKEN_MAX))
        return qd_svc_reply_error(QD_SVC_BAD_TYPE, "field 'token' must be a non-empty string of at most %d bytes",
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
    if (jdk) return qd_svc_reply_error(QD_SVC_BAD_REQUEST, "job: duplicate key '%s'", jdk);
    char msg[1024] = "";
    qd_svc_err e = qd_svc_validate_job(job, s->opt->allow_dirs, s->opt->n_allow, msg, sizeof msg);
    if (e) return qd_svc_reply_error(e, "%s", msg);
    char *txt = cJSON_PrintUnformatted(job);
    cJSON *reply = NULL;
    long long seq = 0;
    int existed = 0;
    pthread_mutex_lock(&s->mu);
    if (s->shutdown)
        reply = qd_svc_reply_error(QD_SVC_SHUTTING_DOWN, "the service is shutting down");
    else {
        /* the queue limit counts what waits; a token already seen is answered, never refused */
        long long nq = qd_svc_store_count(s->st, QD_SJ_QUEUED, NULL);
        int rc = nq < 0 ? (int)nq : QD_OK;
        if (rc == QD_OK && nq >= s->opt->max_queue && !(tok && qd_svc_store_find(s->st, owner, tok) > 0))
            reply = qd_svc_reply_error(QD_SVC_QUEUE_FULL, "queue full (%d jobs waiting); submit again later",
                                       s->opt->max_queue);
        else if (rc == QD_OK)
            rc = qd_svc_store_submit(s->st, owner, tok, txt, qd_svc_wall_now(), &seq, &existed);
        if (rc != QD_OK) reply = reply_store_error();
    }
    if (!reply) {
        /* recorded and synced: only now is the job accepted */
        if (!existed) {
            cJSON *f = cJSON_CreateObject();
            cJSON_AddItemToObject(f, "model", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(job, "model"), 1));
            cJSON_AddItemToObject(f, "out", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(job, "out"), 1));
            cJSON_AddNumberToObject(f, "queued", (double)qd_svc_store_count(s->st, QD_SJ_QUEUED, NULL));
            qd_svc_push_job_event(s, seq, "accepted", f);
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

static cJSON *op_status(qd_svc *s, const char *viewer, const cJSON *id)
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

static cJSON *op_cancel(qd_svc *s, const char *viewer, const cJSON *id)
{
    if (!id) return qd_svc_reply_error(QD_SVC_MISSING_FIELD, "missing field 'id'");
    cJSON *reply;
    qd_svc_rec r;
    pthread_mutex_lock(&s->mu);
    reply = lookup(s, viewer, id->valuestring, &r);
    if (!reply) {
        int rc = QD_OK;
        if (r.state == QD_SJ_QUEUED) {
            /* final: the run loop starts a job only if it is still queued (one transaction) */
            rc = qd_svc_store_cancel_queued(s->st, r.seq, qd_svc_wall_now());
            if (rc == 1) {
                qd_svc_push_job_event(s, r.seq, "cancelled", NULL);
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
            reply = qd_svc_reply_error(QD_SVC_BAD_STATE, "job '%s' is already %s", id->valuestring,
                                       qd_sj_state_name(r.state));
        qd_svc_rec_free(&r);
    }
    pthread_mutex_unlock(&s->mu);
    return reply;
}

static cJSON *op_shutdown(qd_svc *s, const cJSON *mode)
{
    int m = 1;
    if (mode) {
        if (!cJSON_IsString(mode)) return qd_svc_reply_error(QD_SVC_BAD_TYPE, "field 'mode' must be a string");
        if (!strcmp(mode->valuestring, "drain"))
            m = 1;
        else if (!strcmp(mode->valuestring, "finish"))
            m = 2;
        else
            return qd_svc_reply_error(QD_SVC_BAD_REQUEST, "mode must be 'drain' or 'finish'");
    }
    pthread_mutex_lock(&s->mu);
    if (m == 2) {
        /* the queued jobs' ids, for their events, then one transaction cancels them all */
        qd_svc_rec r;
        while (qd_svc_store_next(s->st, QD_SJ_QUEUED, &r) == QD_OK) {
            int rc = qd_svc_store_cancel_queued(s->st, r.seq, qd_svc_wall_now());
            if (rc == 1) qd_svc_push_job_event(s, r.seq, "cancelled", NULL);
            qd_svc_rec_free(&r);
            if (rc < 0) {
                pthread_mutex_unlock(&s->mu);
                return reply_store_error();
            }
        }
    }
    if (m > s->shutdown) s->shutdown = m;
    qd_svc_push_event(s, NULL, "shutdown", NULL);
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
static cJSON *request_reply(qd_svc *s, const char *owner, int admin, cJSON *req)
{
    if (!cJSON_IsObject(req)) return qd_svc_reply_error(QD_SVC_BAD_REQUEST, "request must be a JSON object");
    const char *dk = dup_key(req);
    if (dk) return qd_svc_reply_error(QD_SVC_BAD_REQUEST, "duplicate key '%s'", dk);
    cJSON *op = cJSON_GetObjectItemCaseSensitive(req, "op");
    if (!op) return qd_svc_reply_error(QD_SVC_MISSING_FIELD, "missing field 'op'");
    if (!cJSON_IsString(op)) return qd_svc_reply_error(QD_SVC_BAD_TYPE, "field 'op' must be a string");
    const char *o = op->valuestring;
    cJSON *id = cJSON_GetObjectItemCaseSensitive(req, "id");
    if (id && !cJSON_IsString(id)) return qd_svc_reply_error(QD_SVC_BAD_TYPE, "field 'id' must be a string");
    static const char *const k_submit[] = {"op", "job", "token", NULL};
    static const char *const k_status[] = {"op", "id", NULL};
    static const char *const k_shutdown[] = {"op", "mode", NULL};
    const char *const *keys = !strcmp(o, "submit")                             ? k_submit
                              : !strcmp(o, "shutdown")                         ? k_shutdown
                              : (!strcmp(o, "status") || !strcmp(o, "cancel")) ? k_status
                                                                               : NULL;
    if (!keys) return qd_svc_reply_error(QD_SVC_BAD_REQUEST, "unknown op '%s' (submit, status, cancel, shutdown)", o);
    const char *uk = unknown_key(req, keys);
    if (uk) return qd_svc_reply_error(QD_SVC_UNKNOWN_KEY, "unknown key '%s' for op '%s'", uk, o);
    if (!strcmp(o, "submit"))
        return op_submit(s, owner, cJSON_GetObjectItemCaseSensitive(req, "job"),
                         cJSON_GetObjectItemCaseSensitive(req, "token"));
    const char *viewer = admin ? NULL : owner; /* whose jobs this client may see */
    if (!strcmp(o, "status")) return op_status(s, viewer, id);
    if (!strcmp(o, "cancel")) return op_cancel(s, viewer, id);
    if (!admin) return qd_svc_reply_error(QD_SVC_NOT_PERMITTED, "only an admin key may shut the service down");
    return op_shutdown(s, cJSON_GetObjectItemCaseSensitive(req, "mode"));
}

cJSON *qd_svc_request(qd_svc *s, const char *owner, int admin, const char *body, size_t len)
{
    cJSON *req = cJSON_ParseWithLength(body, len);
    if (!req) return qd_svc_reply_error(QD_SVC_BAD_JSON, "request is not valid JSON");
    cJSON *reply = request_reply(s, owner, admin, req);
    cJSON_Delete(req);
    return reply;
}

int qd_svc_init(qd_svc *s, const qd_service_opts *opt)
{
    memset(s, 0, sizeof *s);
    s->opt = opt;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    return qd_svc_store_open(opt->state_dir, &s->st);
}

void qd_svc_free(qd_svc *s)
{
    qd_svc_store_close(s->st);
    s->st = NULL;
    cJSON_Delete(s->summary);
    for (int i = 0; i < s->nev; i++) free(s->evq[i]);
    free(s->evq);
    s->evq = NULL;
    s->nev = s->evcap = 0;
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
}
