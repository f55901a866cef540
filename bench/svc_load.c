/* bench/svc_load.c — many clients against one `qdist serve`.
 *
 * N client threads (each its own REQ socket) submit J small jobs in all, each with a token of its
 * own, poll the status of their jobs and of the whole service while they submit, back off and
 * submit again when the service answers "queue full", and cancel some jobs right after submitting
 * them (queued: they must never start) and some when their `started` event arrives (running: they
 * must stop at the next unit and leave a partial file). An event thread watches every event.
 * At the end every job must have ended exactly once:
 *   - lost: a job accepted (an id given) that never ends, or a submission never accepted;
 *   - duplicated: a token answered with two ids, a job started twice (two `started` events), or
 *     more jobs in the service's table than accepted ids;
 *   - files: done -> OUT exists; cancelled while queued -> nothing written; cancelled while
 *     running -> OUT.partial and no OUT;
 * and the service's rank-0 memory (VmRSS of the pid in STATE_DIR/lock) at the end must be within
 * --rss-margin MiB of the start (run a job before, so that the start counts what the first job
 * initializes once: libraries, pools). Exit 0 when all of that holds, 1 otherwise.
 *
 *   svc_load --to EP --events EP --model DIR --out-dir DIR --pid-file STATE_DIR/lock
 *            [--clients 50] [--jobs 1000] [--cancel-queued K] [--cancel-running K]
 *            [--rss-margin MiB] [--timeout S]
 * Jobs alternate two settings: 8-bit per channel, and 4-bit asymmetric groups of 32. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include <cjson/cJSON.h>

typedef struct {
    char token[48];
    char id[24];
    long long seq;
    char out[PATH_MAX];
    int cancel_queued, cancel_running; /* what this job is for */
    char cancel_reply[16];             /* "cancelled", "cancelling", or the error code */
    char state[16];                    /* last known state */
    int timeouts;                      /* submissions without a reply (sent again) */
} job_t;

/* per job seq, from the event thread */
typedef struct {
    int accepted, started, finished, failed, cancelled, tensor;
    int cancel_sent;
} ev_count;

static struct {
    const char *to, *events, *model, *out_dir, *pid_file;
    int clients, njobs, cancel_q, cancel_r;
    double rss_margin, timeout;
} g = {.clients = 50, .njobs = 1000, .cancel_q = 50, .cancel_r = 50, .rss_margin = 16, .timeout = 3600};

static job_t *g_jobs;
static ev_count *g_ev; /* indexed by seq */
static int g_ev_cap;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static void *g_ctx;
static volatile int g_stop;
static long g_rss_max_kb;
static long long g_queue_full, g_timeouts, g_status_reqs, g_dedup;
static int g_submit_failed;
static int *g_cancel_running_seq; /* seq -> 1 when the job is to be cancelled while running */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static long rss_kb(void)
{
    FILE *f = fopen(g.pid_file, "r");
    long pid = 0;
    if (!f || fscanf(f, "%ld", &pid) != 1) pid = 0;
    if (f) fclose(f);
    if (pid <= 0) return -1;
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kb = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    return kb;
}

/* A REQ socket that is replaced after a timeout (a REQ socket cannot send twice). */
typedef struct {
    void *s;
} client;

static void cl_open(client *c)
{
    c->s = zmq_socket(g_ctx, ZMQ_REQ);
    int lin = 0, ms = 10000;
    zmq_setsockopt(c->s, ZMQ_LINGER, &lin, sizeof lin);
    zmq_setsockopt(c->s, ZMQ_RCVTIMEO, &ms, sizeof ms);
    zmq_setsockopt(c->s, ZMQ_SNDTIMEO, &ms, sizeof ms);
    zmq_connect(c->s, g.to);
}

/* One request; NULL after a timeout (the socket is replaced). */
static cJSON *rpc(client *c, const char *req)
{
    cJSON *r = NULL;
    if (zmq_send(c->s, req, strlen(req), 0) >= 0) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, c->s, 0) >= 0) r = cJSON_ParseWithLength(zmq_msg_data(&m), zmq_msg_size(&m));
        zmq_msg_close(&m);
    }
    if (!r) {
        zmq_close(c->s);
        cl_open(c);
        __atomic_add_fetch(&g_timeouts, 1, __ATOMIC_RELAXED);
    }
    return r;
}

static const char *err_code(const cJSON *r)
{
    const cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(r, "error"), "code");
    return cJSON_IsString(c) ? c->valuestring : "";
}

static const char *job_state(const cJSON *r)
{
    const cJSON *s = cJSON_GetObjectItem(cJSON_GetObjectItem(r, "job"), "state");
    return cJSON_IsString(s) ? s->valuestring : "";
}

static void status_of(client *c, job_t *j)
{
    char req[128];
    snprintf(req, sizeof req, "{\"op\":\"status\",\"id\":\"%s\"}", j->id);
    cJSON *r = rpc(c, req);
    __atomic_add_fetch(&g_status_reqs, 1, __ATOMIC_RELAXED);
    if (r && *job_state(r)) snprintf(j->state, sizeof j->state, "%s", job_state(r));
    cJSON_Delete(r);
}

static int ended(const char *st) { return !strcmp(st, "done") || !strcmp(st, "failed") || !strcmp(st, "cancelled"); }

static void submit(client *c, job_t *j, int k)
{
    char req[3 * PATH_MAX];
    const char *setting = k % 2 ? ",\"bits\":4,\"sym\":false,\"group_size\":32" : ",\"bits\":8";
    snprintf(req, sizeof req, "{\"op\":\"submit\",\"token\":\"%s\",\"job\":{\"model\":\"%s\",\"out\":\"%s\"%s}}",
             j->token, g.model, j->out, setting);
    int backoff = 20;
    for (;;) {
        cJSON *r = rpc(c, req);
        if (!r) {
            j->timeouts++; /* the token makes sending it again safe */
            continue;
        }
        const cJSON *id = cJSON_GetObjectItem(r, "id");
        if (cJSON_IsString(id)) {
            if (j->id[0] && strcmp(j->id, id->valuestring)) j->seq = -1; /* two ids for one token */
            snprintf(j->id, sizeof j->id, "%s", id->valuestring);
            if (j->seq == 0) j->seq = atoll(j->id + 1);
            if (cJSON_IsTrue(cJSON_GetObjectItem(r, "existing"))) __atomic_add_fetch(&g_dedup, 1, __ATOMIC_RELAXED);
            cJSON_Delete(r);
            return;
        }
        int full = !strcmp(err_code(r), "queue_full");
        if (!full) {
            char *t = cJSON_PrintUnformatted(r);
            fprintf(stderr, "svc_load: submit of %s refused: %s\n", j->token, t);
            free(t);
            cJSON_Delete(r);
            __atomic_add_fetch(&g_submit_failed, 1, __ATOMIC_RELAXED);
            return;
        }
        cJSON_Delete(r);
        __atomic_add_fetch(&g_queue_full, 1, __ATOMIC_RELAXED);
        sleep_ms(backoff + rand() % backoff);
        if (backoff < 400) backoff *= 2;
    }
}

static void *client_main(void *arg)
{
    int ci = (int)(long)arg;
    client c;
    cl_open(&c);
    int k = 0;
    for (int i = ci; i < g.njobs; i += g.clients, k++) {
        job_t *j = &g_jobs[i];
        submit(&c, j, i);
        if (!j->id[0]) continue;
        if (j->cancel_running) {
            pthread_mutex_lock(&g_mu);
            if (j->seq > 0 && j->seq < g_ev_cap) g_cancel_running_seq[j->seq] = 1;
            pthread_mutex_unlock(&g_mu);
        }
        if (j->cancel_queued) {
            char req[128];
            snprintf(req, sizeof req, "{\"op\":\"cancel\",\"id\":\"%s\"}", j->id);
            cJSON *r = NULL;
            while (!r) r = rpc(&c, req);
            const cJSON *st = cJSON_GetObjectItem(r, "state");
            snprintf(j->cancel_reply, sizeof j->cancel_reply, "%s", cJSON_IsString(st) ? st->valuestring : err_code(r));
            cJSON_Delete(r);
        }
        /* status traffic while submitting: this job, and now and then the whole service */
        status_of(&c, j);
        if (k % 5 == 4) {
            cJSON *r = rpc(&c, "{\"op\":\"status\"}");
            __atomic_add_fetch(&g_status_reqs, 1, __ATOMIC_RELAXED);
            cJSON_Delete(r);
        }
    }
    /* wait for this client's jobs to end */
    double t0 = now_s();
    for (int i = ci; i < g.njobs && now_s() - t0 < g.timeout; i += g.clients) {
        job_t *j = &g_jobs[i];
        while (j->id[0] && !ended(j->state) && now_s() - t0 < g.timeout) {
            status_of(&c, j);
            if (!ended(j->state)) sleep_ms(200);
        }
    }
    zmq_close(c.s);
    return NULL;
}

/* Every event; cancels the designated jobs when they start; samples the service's RSS. */
static void *event_main(void *arg)
{
    (void)arg;
    void *sub = zmq_socket(g_ctx, ZMQ_SUB);
    int lin = 0, ms = 200, hwm = 0;
    zmq_setsockopt(sub, ZMQ_LINGER, &lin, sizeof lin);
    zmq_setsockopt(sub, ZMQ_RCVTIMEO, &ms, sizeof ms);
    zmq_setsockopt(sub, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
    zmq_connect(sub, g.events);
    client c;
    cl_open(&c);
    double last_rss = 0;
    while (!g_stop) {
        if (now_s() - last_rss > 0.5) {
            long kb = rss_kb();
            if (kb > g_rss_max_kb) g_rss_max_kb = kb;
            last_rss = now_s();
        }
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sub, 0) < 0) {
            zmq_msg_close(&m);
            continue;
        }
        cJSON *ev = cJSON_ParseWithLength(zmq_msg_data(&m), zmq_msg_size(&m));
        zmq_msg_close(&m);
        const cJSON *t = cJSON_GetObjectItem(ev, "event"), *id = cJSON_GetObjectItem(ev, "job");
        long long seq = cJSON_IsString(id) && id->valuestring[0] == 'j' ? atoll(id->valuestring + 1) : 0;
        if (cJSON_IsString(t) && seq > 0 && seq < g_ev_cap) {
            const char *type = t->valuestring;
            pthread_mutex_lock(&g_mu);
            ev_count *e = &g_ev[seq];
            e->accepted += !strcmp(type, "accepted");
            e->started += !strcmp(type, "started");
            e->finished += !strcmp(type, "finished");
            e->failed += !strcmp(type, "failed");
            e->cancelled += !strcmp(type, "cancelled");
            e->tensor += !strcmp(type, "tensor");
            int cancel = !strcmp(type, "started") && g_cancel_running_seq[seq] && !e->cancel_sent;
            if (cancel) e->cancel_sent = 1;
            pthread_mutex_unlock(&g_mu);
            if (cancel) {
                char req[128];
                snprintf(req, sizeof req, "{\"op\":\"cancel\",\"id\":\"%s\"}", id->valuestring);
                cJSON_Delete(rpc(&c, req));
            }
        }
        cJSON_Delete(ev);
    }
    zmq_close(c.s);
    zmq_close(sub);
    return NULL;
}

/* The service's own count of jobs per state (and their sum). */
static long long table_counts(long long counts[5])
{
    static const char *names[5] = {"queued", "running", "done", "failed", "cancelled"};
    client c;
    cl_open(&c);
    cJSON *r = rpc(&c, "{\"op\":\"status\"}");
    long long total = 0;
    for (int k = 0; k < 5; k++) {
        const cJSON *n = cJSON_GetObjectItem(cJSON_GetObjectItem(r, "counts"), names[k]);
        counts[k] = cJSON_IsNumber(n) ? (long long)n->valuedouble : -1;
        total += counts[k];
    }
    cJSON_Delete(r);
    zmq_close(c.s);
    return total;
}

static int exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: svc_load --to EP --events EP --model DIR --out-dir DIR --pid-file STATE_DIR/lock\n"
                    "                [--clients N] [--jobs N] [--cancel-queued K] [--cancel-running K]\n"
                    "                [--rss-margin MiB] [--timeout S]\n");
    exit(2);
}

static void parse(int argc, char **argv)
{
    static struct option lo[] = {{"to", required_argument, 0, 't'},
                                 {"events", required_argument, 0, 'e'},
                                 {"model", required_argument, 0, 'm'},
                                 {"out-dir", required_argument, 0, 'o'},
                                 {"pid-file", required_argument, 0, 'p'},
                                 {"clients", required_argument, 0, 'c'},
                                 {"jobs", required_argument, 0, 'j'},
                                 {"cancel-queued", required_argument, 0, 'q'},
                                 {"cancel-running", required_argument, 0, 'r'},
                                 {"rss-margin", required_argument, 0, 'R'},
                                 {"timeout", required_argument, 0, 'T'},
                                 {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 't': g.to = optarg; break;
        case 'e': g.events = optarg; break;
        case 'm': g.model = optarg; break;
        case 'o': g.out_dir = optarg; break;
        case 'p': g.pid_file = optarg; break;
        case 'c': g.clients = atoi(optarg); break;
        case 'j': g.njobs = atoi(optarg); break;
        case 'q': g.cancel_q = atoi(optarg); break;
        case 'r': g.cancel_r = atoi(optarg); break;
        case 'R': g.rss_margin = atof(optarg); break;
        case 'T': g.timeout = atof(optarg); break;
        default: usage();
        }
    }
    if (!g.to || !g.events || !g.model || !g.out_dir || !g.pid_file || g.clients < 1 || g.njobs < 1) usage();
}

int main(int argc, char **argv)
{
    parse(argc, argv);
    g_ctx = zmq_ctx_new();
    zmq_ctx_set(g_ctx, ZMQ_MAX_SOCKETS, 4 * g.clients + 64);
    g_jobs = calloc((size_t)g.njobs, sizeof *g_jobs);
    g_ev_cap = 4 * g.njobs + 1024; /* seqs of this run, with room for a used table */
    g_ev = calloc((size_t)g_ev_cap, sizeof *g_ev);
    g_cancel_running_seq = calloc((size_t)g_ev_cap, sizeof(int));
    for (int i = 0; i < g.njobs; i++) {
        job_t *j = &g_jobs[i];
        snprintf(j->token, sizeof j->token, "load-%d-%ld", i, (long)getpid());
        snprintf(j->out, sizeof j->out, "%s/job%04d.h5", g.out_dir, i);
        /* spread over the run; a job is never both */
        j->cancel_queued = g.cancel_q > 0 && i % g.cancel_q == g.cancel_q / 2;
        j->cancel_running = !j->cancel_queued && g.cancel_r > 0 && i % g.cancel_r == g.cancel_r - 1;
    }
    long long counts0[5], total_before = table_counts(counts0);
    long rss0 = rss_kb();
    g_rss_max_kb = rss0;
    pthread_t ev, *cl = calloc((size_t)g.clients, sizeof *cl);
    pthread_create(&ev, NULL, event_main, NULL);
    sleep_ms(300); /* the subscription reaches the publisher */
    double t0 = now_s();
    for (int i = 0; i < g.clients; i++) pthread_create(&cl[i], NULL, client_main, (void *)(long)i);
    for (int i = 0; i < g.clients; i++) pthread_join(cl[i], NULL);
    double wall = now_s() - t0;
    sleep_ms(1000); /* the last events; the service settles */
    long rss1 = rss_kb();
    g_stop = 1;
    pthread_join(ev, NULL);

    long long svc_counts[5], svc_total = table_counts(svc_counts) - total_before;
    int accepted = 0, lost = 0, dup = 0, done = 0, failed = 0, canc_q = 0, canc_r = 0, canc_other = 0;
    int file_bad = 0, started_twice = 0, ev_missing = 0, cancel_r_tried = 0, timeouts = 0;
    for (int i = 0; i < g.njobs; i++) {
        job_t *j = &g_jobs[i];
        timeouts += j->timeouts;
        if (!j->id[0]) {
            lost++;
            continue;
        }
        accepted++;
        if (j->seq < 0) {
            dup++;
            continue;
        }
        if (!ended(j->state)) {
            fprintf(stderr, "svc_load: %s (%s) did not end: '%s'\n", j->id, j->token, j->state);
            lost++;
            continue;
        }
        ev_count *e = j->seq < g_ev_cap ? &g_ev[j->seq] : NULL;
        if (e && e->started > 1) started_twice++;
        char partial[PATH_MAX + 16];
        snprintf(partial, sizeof partial, "%s.partial", j->out);
        int has_out = exists(j->out), has_partial = exists(partial);
        if (!strcmp(j->state, "done")) {
            done++;
            if (!has_out || has_partial) file_bad++;
            if (e && (!e->started || !e->finished)) ev_missing++;
        } else if (!strcmp(j->state, "failed")) {
            failed++;
            fprintf(stderr, "svc_load: %s failed\n", j->id);
        } else if (j->cancel_queued && !strcmp(j->cancel_reply, "cancelled")) {
            canc_q++;
            if (has_out || has_partial || (e && e->started)) {
                fprintf(stderr, "svc_load: %s was cancelled while queued but started or wrote a file\n", j->id);
                file_bad++;
            }
        } else if (j->cancel_running) {
            canc_r++;
            if (has_out || !has_partial) {
                fprintf(stderr, "svc_load: %s was cancelled while running: out %d, partial %d\n", j->id, has_out,
                        has_partial);
                file_bad++;
            }
        } else
            canc_other++;
        if (j->cancel_running) cancel_r_tried++;
    }
    if (svc_total != accepted) dup += (int)(svc_total - accepted);
    double mib0 = rss0 / 1024.0, mib1 = rss1 / 1024.0, mibmax = g_rss_max_kb / 1024.0;
    int rss_ok = rss0 > 0 && rss1 > 0 && mib1 - mib0 <= g.rss_margin;

    printf("svc_load: %d clients, %d jobs in %.1f s (%.1f jobs/s), %lld status requests, %lld queue-full answers "
           "(backed off and sent again), %d submissions sent again after a timeout (%lld answered as the same job)\n",
           g.clients, g.njobs, wall, g.njobs / wall, g_status_reqs, g_queue_full, timeouts, g_dedup);
    printf("svc_load: accepted %d; done %d, failed %d, cancelled while queued %d, cancelled while running %d "
           "(of %d tried; the others had ended first), other cancels %d\n",
           accepted, done, failed, canc_q, canc_r, cancel_r_tried, canc_other);
    printf("svc_load: service table: %lld new jobs; in all queued %lld, running %lld, done %lld, failed %lld, "
           "cancelled %lld\n",
           svc_total, svc_counts[0], svc_counts[1], svc_counts[2], svc_counts[3], svc_counts[4]);
    printf("svc_load: lost %d, duplicated %d, started twice %d, wrong files %d, done without events %d (PUB may "
           "drop)\n",
           lost, dup, started_twice, file_bad, ev_missing);
    printf("svc_load: service rank-0 RSS: start %.1f MiB, end %.1f MiB (%+.1f), max %.1f MiB; margin %.0f MiB: %s\n",
           mib0, mib1, mib1 - mib0, mibmax, g.rss_margin, rss_ok ? "ok" : "EXCEEDED");
    int ok = lost == 0 && dup == 0 && started_twice == 0 && file_bad == 0 && failed == 0 && g_submit_failed == 0 &&
             rss_ok && svc_counts[0] == 0 && svc_counts[1] == 0;
    printf("svc_load: %s\n", ok ? "PASS" : "FAIL");
    zmq_ctx_term(g_ctx);
    free(g_jobs);
    free(g_ev);
    free(g_cancel_running_seq);
    free(cl);
    return ok ? 0 : 1;
}
