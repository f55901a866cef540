/* qdist serve: the job queue, the socket thread of rank 0, and the job loop of every rank. */
#include "coordinator/service.h"

#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "collective/collective.h"
#include "common/qd_common.h"

typedef enum { ST_QUEUED, ST_RUNNING, ST_DONE, ST_FAILED, ST_CANCELLED } jstate;
static const char *g_state_names[] = {"queued", "running", "done", "failed", "cancelled"};

typedef struct {
    char id[24];
    jstate st;
    cJSON *job; /* validated job (absolute paths) */
    double t_submit, t_start, t_end;
    int done, total;
    int cancel;     /* cancel requested while running */
    cJSON *summary; /* fields of the finished event */
    char err_code[32];
    char *err_msg;
} svc_job;

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    svc_job *jobs;
    int njobs, cap, next_id;
    int shutdown; /* 0 running, 1 drain (finish queue), 2 finish (drop queue) */
    char **evq;   /* events waiting for the socket thread, JSON text */
    int nev, evcap;
    const qd_service_opts *opt;
    /* socket thread */
    pthread_t thread;
    int stop;  /* ask the socket thread to exit */
    int ready; /* 1 bound, -1 failed */
    char bind_err[512];
    svc_job *running;
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

/* ---- job table (caller holds s->mu) ----------------------------------------------------- */

static svc_job *find_job(svc *s, const char *id)
{
    for (int i = 0; i < s->njobs; i++)
        if (!strcmp(s->jobs[i].id, id)) return &s->jobs[i];
    return NULL;
}

static int queued_count(const svc *s)
{
    int n = 0;
    for (int i = 0; i < s->njobs; i++) n += s->jobs[i].st == ST_QUEUED;
    return n;
}

static cJSON *job_json(const svc_job *j)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", j->id);
    cJSON_AddStringToObject(o, "state", g_state_names[j->st]);
    cJSON *m = cJSON_GetObjectItemCaseSensitive(j->job, "model");
    cJSON *out = cJSON_GetObjectItemCaseSensitive(j->job, "out");
    if (cJSON_IsString(m)) cJSON_AddStringToObject(o, "model", m->valuestring);
    if (cJSON_IsString(out)) cJSON_AddStringToObject(o, "out", out->valuestring);
    cJSON_AddNumberToObject(o, "submitted", j->t_submit);
    if (j->t_start > 0) cJSON_AddNumberToObject(o, "started", j->t_start);
    if (j->t_end > 0) cJSON_AddNumberToObject(o, "finished", j->t_end);
    if (j->st == ST_RUNNING || j->total > 0) {
        cJSON_AddNumberToObject(o, "tensors_done", j->done);
        cJSON_AddNumberToObject(o, "tensors_total", j->total);
    }
    if (j->st == ST_RUNNING) {
        double el = wall_now() - j->t_start;
        if (j->done > 0 && j->total >= j->done)
            cJSON_AddNumberToObject(o, "eta_s", el * (j->total - j->done) / j->done);
        if (j->cancel) cJSON_AddBoolToObject(o, "cancelling", 1);
    }
    if (j->summary) cJSON_AddItemToObject(o, "summary", cJSON_Duplicate(j->summary, 1));
    if (j->err_msg) {
        cJSON *e = cJSON_AddObjectToObject(o, "error");
        cJSON_AddStringToObject(e, "code", j->err_code);
        cJSON_AddStringToObject(e, "message", j->err_msg);
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

static cJSON *op_submit(svc *s, cJSON *job)
{
    if (!job) return reply_error(QD_SVC_MISSING_FIELD, "missing field 'job'");
    const char *jdk = cJSON_IsObject(job) ? dup_key(job) : NULL;
    if (jdk) return reply_error(QD_SVC_BAD_REQUEST, "job: duplicate key '%s'", jdk);
    char msg[1024] = "";
    qd_svc_err e = qd_svc_validate_job(job, s->opt->allow_dirs, s->opt->n_allow, msg, sizeof msg);
    if (e) return reply_error(e, "%s", msg);
    pthread_mutex_lock(&s->mu);
    if (s->shutdown) {
        pthread_mutex_unlock(&s->mu);
        return reply_error(QD_SVC_SHUTTING_DOWN, "the service is shutting down");
    }
    if (queued_count(s) >= s->opt->max_queue) {
        pthread_mutex_unlock(&s->mu);
        return reply_error(QD_SVC_QUEUE_FULL, "queue full (%d jobs waiting)", s->opt->max_queue);
    }
    if (s->njobs == s->cap) {
        /* jobs are kept for status; `running` points into the array, so re-point it */
        ptrdiff_t ri = s->running ? s->running - s->jobs : -1;
        s->cap = s->cap ? 2 * s->cap : 16;
        s->jobs = realloc(s->jobs, (size_t)s->cap * sizeof *s->jobs);
        QD_ASSERT(s->jobs);
        if (ri >= 0) s->running = &s->jobs[ri];
    }
    svc_job *j = &s->jobs[s->njobs++];
    memset(j, 0, sizeof *j);
    snprintf(j->id, sizeof j->id, "j%d", ++s->next_id);
    j->st = ST_QUEUED;
    j->job = cJSON_Duplicate(job, 1);
    j->t_submit = wall_now();
    cJSON *f = cJSON_CreateObject();
    cJSON_AddItemToObject(f, "model", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(job, "model"), 1));
    cJSON_AddItemToObject(f, "out", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(job, "out"), 1));
    cJSON_AddNumberToObject(f, "queued", queued_count(s));
    push_event(s, j->id, "accepted", f);
    cJSON_Delete(f);
    cJSON *reply = reply_ok();
    cJSON_AddStringToObject(reply, "id", j->id);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return reply;
}

static cJSON *op_status(svc *s, const cJSON *id)
{
    cJSON *reply;
    pthread_mutex_lock(&s->mu);
    if (id) {
        svc_job *j = find_job(s, id->valuestring);
        if (!j)
            reply = reply_error(QD_SVC_NOT_FOUND, "no job '%s'", id->valuestring);
        else {
            reply = reply_ok();
            cJSON_AddItemToObject(reply, "job", job_json(j));
        }
    } else {
        reply = reply_ok();
        cJSON *arr = cJSON_AddArrayToObject(reply, "jobs");
        for (int i = 0; i < s->njobs; i++) cJSON_AddItemToArray(arr, job_json(&s->jobs[i]));
        cJSON_AddBoolToObject(reply, "shutting_down", s->shutdown != 0);
    }
    pthread_mutex_unlock(&s->mu);
    return reply;
}

static cJSON *op_cancel(svc *s, const cJSON *id)
{
    if (!id) return reply_error(QD_SVC_MISSING_FIELD, "missing field 'id'");
    cJSON *reply;
    pthread_mutex_lock(&s->mu);
    svc_job *j = find_job(s, id->valuestring);
    if (!j)
        reply = reply_error(QD_SVC_NOT_FOUND, "no job '%s'", id->valuestring);
    else if (j->st == ST_QUEUED) {
        j->st = ST_CANCELLED;
        j->t_end = wall_now();
        push_event(s, j->id, "cancelled", NULL);
        reply = reply_ok();
        cJSON_AddStringToObject(reply, "state", "cancelled");
    } else if (j->st == ST_RUNNING) {
        j->cancel = 1;
        reply = reply_ok();
        cJSON_AddStringToObject(reply, "state", "cancelling");
    } else
        reply = reply_error(QD_SVC_BAD_STATE, "job '%s' is already %s", j->id, g_state_names[j->st]);
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
    if (m > s->shutdown) s->shutdown = m;
    if (m == 2)
        for (int i = 0; i < s->njobs; i++)
            if (s->jobs[i].st == ST_QUEUED) {
                s->jobs[i].st = ST_CANCELLED;
                s->jobs[i].t_end = wall_now();
                push_event(s, s->jobs[i].id, "cancelled", NULL);
            }
    push_event(s, NULL, "shutdown", NULL);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    cJSON *reply = reply_ok();
    cJSON_AddStringToObject(reply, "mode", m == 2 ? "finish" : "drain");
    return reply;
}

/* The reply to one request: the envelope checked here (a JSON object, no duplicate key, a known
 * op with only its own keys), then the op's handler. */
static cJSON *request_reply(svc *s, cJSON *req)
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
    static const char *const k_submit[] = {"op", "job", NULL};
    static const char *const k_status[] = {"op", "id", NULL};
    static const char *const k_shutdown[] = {"op", "mode", NULL};
    const char *const *keys = !strcmp(o, "submit")                             ? k_submit
                              : !strcmp(o, "shutdown")                         ? k_shutdown
                              : (!strcmp(o, "status") || !strcmp(o, "cancel")) ? k_status
                                                                               : NULL;
    if (!keys) return reply_error(QD_SVC_BAD_REQUEST, "unknown op '%s' (submit, status, cancel, shutdown)", o);
    const char *uk = unknown_key(req, keys);
    if (uk) return reply_error(QD_SVC_UNKNOWN_KEY, "unknown key '%s' for op '%s'", uk, o);
    if (!strcmp(o, "submit")) return op_submit(s, cJSON_GetObjectItemCaseSensitive(req, "job"));
    if (!strcmp(o, "status")) return op_status(s, id);
    if (!strcmp(o, "cancel")) return op_cancel(s, id);
    return op_shutdown(s, cJSON_GetObjectItemCaseSensitive(req, "mode"));
}

static cJSON *handle_request(svc *s, const char *body, size_t len)
{
    cJSON *req = cJSON_ParseWithLength(body, len);
    if (!req) return reply_error(QD_SVC_BAD_JSON, "request is not valid JSON");
    cJSON *reply = request_reply(s, req);
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

static int setup_socket(void *sock, const qd_service_opts *opt, const char *ep, char *err, size_t errcap)
{
    int64_t maxmsg = QD_SVC_MAX_MSG;
    int linger = 0;
    zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    if (opt->curve_secret_file) {
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
    int ok = setup_socket(router, s->opt, s->opt->bind, err, sizeof err) == 0 &&
             (!pub || setup_socket(pub, s->opt, s->opt->events, err, sizeof err) == 0);
    pthread_mutex_lock(&s->mu);
    s->ready = ok ? 1 : -1;
    snprintf(s->bind_err, sizeof s->bind_err, "%s", err);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);

    while (ok) {
        zmq_pollitem_t it = {router, 0, ZMQ_POLLIN, 0};
        int rc = zmq_poll(&it, 1, 50);
        if (rc < 0 && zmq_errno() != EINTR) break;
        if (rc > 0 && (it.revents & ZMQ_POLLIN)) {
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
                else
                    reply = handle_request(s, zmq_msg_data(&frames[body_i]), zmq_msg_size(&frames[body_i]));
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
    zmq_close(router);
    zmq_ctx_term(ctx);
    return NULL;
}

/* ---- job hooks (rank 0, main thread) --------------------------------------------------- */

typedef struct {
    svc *s;
    svc_job *j; /* re-fetched under the lock: the array may move */
    char id[24];
} hook_ctx;

static void on_event(void *ctx, const char *type, const cJSON *fields)
{
    hook_ctx *h = ctx;
    pthread_mutex_lock(&h->s->mu);
    svc_job *j = find_job(h->s, h->id);
    if (j) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(fields, "tensors_total");
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(fields, "tensors_done");
        if (cJSON_IsNumber(t)) j->total = t->valueint;
        if (cJSON_IsNumber(d)) j->done = d->valueint;
        if (!strcmp(type, "finished") && fields) {
            cJSON_Delete(j->summary);
            j->summary = cJSON_Duplicate(fields, 1);
        }
    }
    push_event(h->s, h->id, type, fields);
    pthread_mutex_unlock(&h->s->mu);
}

static int on_cancel(void *ctx)
{
    hook_ctx *h = ctx;
    pthread_mutex_lock(&h->s->mu);
    svc_job *j = find_job(h->s, h->id);
    int c = j && j->cancel;
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

static int run_rank0(svc *s, MPI_Comm comm)
{
    for (;;) {
        pthread_mutex_lock(&s->mu);
        svc_job *j = NULL;
        for (;;) {
            for (int i = 0; i < s->njobs && !j; i++)
                if (s->jobs[i].st == ST_QUEUED) j = &s->jobs[i];
            if (j || s->shutdown) break;
            pthread_cond_wait(&s->cv, &s->mu);
        }
        if (!j) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        j->st = ST_RUNNING;
        j->t_start = wall_now();
        s->running = j;
        hook_ctx hc = {.s = s};
        snprintf(hc.id, sizeof hc.id, "%s", j->id);
        char *txt = cJSON_PrintUnformatted(j->job);
        cJSON *job = cJSON_Duplicate(j->job, 1);
        pthread_mutex_unlock(&s->mu);

        qd_log(QD_LOG_INFO, "job %s: started", hc.id);
        bcast_text(&txt, comm);
        free(txt);
        qd_job_hooks hooks = {.ctx = &hc, .event = on_event, .cancel_requested = on_cancel};
        qd_err_clear();
        int rc = qd_job_run_json(job, comm, &hooks);
        cJSON_Delete(job);

        pthread_mutex_lock(&s->mu);
        j = find_job(s, hc.id);
        s->running = NULL;
        j->t_end = wall_now();
        if (rc == QD_OK)
            j->st = ST_DONE;
        else if (rc == QD_ECANCELED) {
            j->st = ST_CANCELLED;
            push_event(s, j->id, "cancelled", NULL);
        } else {
            j->st = ST_FAILED;
            snprintf(j->err_code, sizeof j->err_code, "%s", qd_errname(rc));
            j->err_msg = qd_xstrdup(qd_errmsg()[0] ? qd_errmsg() : qd_strerror(rc));
        }
        qd_log(QD_LOG_INFO, "job %s: %s%s%s", j->id, g_state_names[j->st], j->err_msg ? ": " : "",
               j->err_msg ? j->err_msg : "");
        pthread_mutex_unlock(&s->mu);
    }
    char *none = NULL;
    bcast_text(&none, comm); /* length 0: the other ranks leave their loop */
    return 0;
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
    }
    return 0;
}

int qd_service_run(const qd_service_opts *opt, MPI_Comm comm)
{
    const int rank = qd_coll_rank(comm);
    svc s;
    memset(&s, 0, sizeof s);
    s.opt = opt;
    int st = QD_OK;
    if (rank == 0) {
        pthread_mutex_init(&s.mu, NULL);
        pthread_cond_init(&s.cv, NULL);
        if (pthread_create(&s.thread, NULL, socket_thread, &s) != 0)
            st = qd_err_set(QD_EIO, "cannot start the socket thread");
        else {
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
        if (rank == 0) qd_log(QD_LOG_ERROR, "serve: %s", msg);
        return 1;
    }
    if (rank != 0) return run_other(comm);

    const int size = qd_coll_size(comm);
    qd_log(QD_LOG_INFO, "serving on %s%s%s with %d rank%s", opt->bind, opt->events ? ", events on " : "",
           opt->events ? opt->events : "", size, size == 1 ? "" : "s");
    run_rank0(&s, comm);
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
    for (int i = 0; i < s.njobs; i++) {
        cJSON_Delete(s.jobs[i].job);
        cJSON_Delete(s.jobs[i].summary);
        free(s.jobs[i].err_msg);
    }
    free(s.jobs);
    for (int i = 0; i < s.nev; i++) free(s.evq[i]);
    free(s.evq);
    qd_log(QD_LOG_INFO, "service stopped");
    return 0;
}
