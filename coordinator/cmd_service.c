/* The service commands: serve (every rank), and the clients submit, status, cancel, shutdown,
 * watch, keygen (rank 0 only; the other ranks of an mpirun just return). */
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "common/qd_common.h"
#include "common/qd_file.h"
#include "coordinator/cli.h"
#include "coordinator/service.h"

#define DEFAULT_ENDPOINT "tcp://127.0.0.1:5555"

/* ---- serve ------------------------------------------------------------------------------ */

static const char *serve_help =
    "Usage: mpirun -n N qdist serve [options]\n"
    "\n"
    "Keeps the MPI allocation alive and runs submitted quantization jobs one at a time (FIFO);\n"
    "every rank takes part in each job. Protocol: docs/service.md.\n"
    "\n"
    "  --bind ENDPOINT        request socket (default " DEFAULT_ENDPOINT ")\n"
    "  --events ENDPOINT      publish progress events here (e.g. tcp://127.0.0.1:5556)\n"
    "  --allow-dir DIR        job paths must lie below DIR (repeatable; default: the current\n"
    "                         directory)\n"
    "  --max-queue N          jobs waiting at most (default 16); more are refused with\n"
    "                         'queue full' until the queue shortens\n"
    "  --state-dir DIR        record every accepted job, its state and progress in DIR/jobs.db\n"
    "                         (SQLite, WAL) before answering: after a crash or kill, a restart\n"
    "                         with the same DIR resumes the job in hand and runs the queue.\n"
    "                         Without it jobs live in memory only\n"
    "  --keep-jobs N          ended jobs kept for 'status' (default 10000; older ones pruned)\n"
    "  --curve-secret FILE    CURVE-encrypt and authenticate the sockets with this server secret\n"
    "                         key (from 'qdist keygen'); required to bind a non-loopback address\n"
    "  --curve-clients FILE   with CURVE: only these client public keys may connect (one per\n"
    "                         line); without it any key may. Either way a client sees and\n"
    "                         cancels only the jobs submitted with its own key\n"
    "  --curve-admins FILE    with CURVE: keys that see and cancel every job, may shut the\n"
    "                         service down and may subscribe to --events\n"
    "  --insecure             allow a non-loopback address without CURVE\n"
    "  -h, --help             this text\n";

int qd_cmd_serve(int argc, char **argv, MPI_Comm comm)
{
    static struct option lo[] = {{"bind", required_argument, 0, 'b'},
                                 {"events", required_argument, 0, 'e'},
                                 {"allow-dir", required_argument, 0, 'a'},
                                 {"max-queue", required_argument, 0, 'q'},
                                 {"curve-secret", required_argument, 0, 'c'},
                                 {"insecure", no_argument, 0, 'I'},
                                 {"state-dir", required_argument, 0, 's'},
                                 {"curve-clients", required_argument, 0, 'L'},
                                 {"curve-admins", required_argument, 0, 'A'},
                                 {"keep-jobs", required_argument, 0, 'K'},
                                 {"help", no_argument, 0, 'h'},
                                 {0, 0, 0, 0}};
    qd_service_opts o = {.bind = DEFAULT_ENDPOINT, .max_queue = 16, .keep_jobs = 10000};
    static char roots[QD_SVC_MAX_ALLOW][PATH_MAX];
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'b': o.bind = optarg; break;
        case 'e': o.events = optarg; break;
        case 'a':
            if (o.n_allow == QD_SVC_MAX_ALLOW)
                return qd_cli_usage_error(comm, "serve", "at most %d --allow-dir", QD_SVC_MAX_ALLOW);
            if (!realpath(optarg, roots[o.n_allow]))
                return qd_cli_usage_error(comm, "serve", "--allow-dir %s: no such directory", optarg);
            o.allow_dirs[o.n_allow] = roots[o.n_allow];
            o.n_allow++;
            break;
        case 'q': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > 100000)
                return qd_cli_usage_error(comm, "serve", "--max-queue must be a positive integer");
            o.max_queue = (int)v;
            break;
        }
        case 'c': o.curve_secret_file = optarg; break;
        case 'I': o.insecure = 1; break;
        case 's': o.state_dir = optarg; break;
        case 'L':
        case 'A': {
            int krc = qd_svc_keys_read(c == 'L' ? &o.auth.clients : &o.auth.admins, optarg);
            if (krc != QD_OK) {
                qd_svc_keys_free(&o.auth.clients);
                qd_svc_keys_free(&o.auth.admins);
                return qd_cli_usage_error(comm, "serve", "%s", qd_errmsg());
            }
            break;
        }
        case 'K': {
            char *end;
            long long v = strtoll(optarg, &end, 10);
            if (*end || v < 1) return qd_cli_usage_error(comm, "serve", "--keep-jobs must be a positive integer");
            o.keep_jobs = v;
            break;
        }
        case 'h':
            if (qd_cli_is_root(comm)) fputs(serve_help, stdout);
            return QD_EXIT_OK;
        default: return qd_cli_usage_error(comm, "serve", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return qd_cli_usage_error(comm, "serve", "unexpected argument '%s'", argv[optind]);
    if (o.n_allow == 0) {
        if (!getcwd(roots[0], sizeof roots[0]))
            return qd_cli_usage_error(comm, "serve", "cannot read the current directory");
        o.allow_dirs[0] = roots[0];
        o.n_allow = 1;
    }
    const char *eps[2] = {o.bind, o.events};
    for (int i = 0; i < 2; i++)
        if (eps[i] && !qd_svc_endpoint_is_loopback(eps[i]) && !o.curve_secret_file && !o.insecure)
            return qd_cli_usage_error(comm, "serve",
                                      "%s is not a loopback address: give --curve-secret FILE "
                                      "(see 'qdist keygen') or --insecure",
                                      eps[i]);
    int rc = (o.auth.clients.n || o.auth.admins.n) && !o.curve_secret_file
                 ? qd_cli_usage_error(comm, "serve", "--curve-clients and --curve-admins need --curve-secret")
                 : qd_service_run(&o, comm);
    qd_svc_keys_free(&o.auth.clients);
    qd_svc_keys_free(&o.auth.admins);
    return rc;
}

/* ---- client side ------------------------------------------------------------------------ */

typedef struct {
    const char *to;
    const char *server_key; /* file with the server's public key, or NULL */
    const char *client_key; /* file with this client's secret key, or NULL */
    double timeout;         /* seconds */
    const char *token;      /* submit: makes the submission idempotent (safe to repeat) */
} client_opts;

/* The first line of a key file, which must be a 40-character Z85 key. */
static int read_z85_key(const char *path, const char *what, char key[41])
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "qdist: %s: cannot open the %s\n", path, what);
        return -1;
    }
    char line[256] = "";
    if (!fgets(line, sizeof line, f)) line[0] = 0;
    fclose(f);
    line[strcspn(line, "\r\n")] = 0;
    if (strlen(line) != 40) {
        fprintf(stderr, "qdist: %s: expected a 40-character Z85 %s\n", path, what);
        return -1;
    }
    memcpy(key, line, 41);
    return 0;
}

/* CURVE towards the server. The client's own key pair identifies it to the service (its jobs are
 * its own): from client_key_file (a secret key, 'qdist keygen' PREFIX.key), or one made for this
 * process, so that `submit --wait` still sees the job it submitted. */
static int setup_client_curve(void *sock, const char *server_key_file, const char *client_key_file)
{
    if (!server_key_file) return 0;
    char key[41];
    if (read_z85_key(server_key_file, "server public key", key)) return -1;
    static char pub[41], sec[41];
    static int have;
    if (!have && client_key_file) {
        if (read_z85_key(client_key_file, "client secret key", sec)) return -1;
        if (zmq_curve_public(pub, sec) != 0) {
            fprintf(stderr, "qdist: %s: not a CURVE secret key\n", client_key_file);
            return -1;
        }
        have = 1;
    }
    if (!have && zmq_curve_keypair(pub, sec) == 0) have = 1;
    if (!have || zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, key, 41) ||
        zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, pub, 41) || zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, sec, 41)) {
        fprintf(stderr, "qdist: CURVE setup failed: %s\n", zmq_strerror(zmq_errno()));
        return -1;
    }
    return 0;
}

/* One request, one reply; NULL (with a message on stderr) on timeout or a bad reply. */
static cJSON *request(const client_opts *co, cJSON *req)
{
    void *ctx = zmq_ctx_new();
    void *sock = zmq_socket(ctx, ZMQ_REQ);
    int linger = 0, ms = (int)(co->timeout * 1000);
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sock, ZMQ_RCVTIMEO, &ms, sizeof ms);
    zmq_setsockopt(sock, ZMQ_SNDTIMEO, &ms, sizeof ms);
    cJSON *reply = NULL;
    char *txt = cJSON_PrintUnformatted(req);
    if (setup_client_curve(sock, co->server_key, co->client_key) == 0) {
        if (zmq_connect(sock, co->to) != 0)
            fprintf(stderr, "qdist: cannot connect to %s: %s\n", co->to, zmq_strerror(zmq_errno()));
        else if (zmq_send(sock, txt, strlen(txt), 0) < 0)
            fprintf(stderr, "qdist: no service at %s (send timed out after %.0f s)\n", co->to, co->timeout);
        else {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, sock, 0) < 0)
                fprintf(stderr, "qdist: no reply from %s within %.0f s (is 'qdist serve' running?)\n", co->to,
                        co->timeout);
            else {
                reply = cJSON_ParseWithLength(zmq_msg_data(&m), zmq_msg_size(&m));
                if (!reply) fprintf(stderr, "qdist: malformed reply from %s\n", co->to);
            }
            zmq_msg_close(&m);
        }
    }
    free(txt);
    zmq_close(sock);
    zmq_ctx_term(ctx);
    return reply;
}

/* Prints an error reply; returns 1 for an error reply, 0 for ok. */
static int check_reply(const cJSON *r)
{
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "ok"))) return 0;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(r, "error");
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(e, "code");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(e, "message");
    fprintf(stderr, "qdist: %s (%s)\n", cJSON_IsString(msg) ? msg->valuestring : "error",
            cJSON_IsString(code) ? code->valuestring : "?");
    return 1;
}

static void print_json(const cJSON *o)
{
    char *t = cJSON_Print(o);
    puts(t);
    free(t);
}

/* Common options of the clients; returns index of first positional or -1 after a usage error
 * (rc set). */
static int client_args(int argc, char **argv, const char *cmd, const char *help, client_opts *co, int *extra_flag,
                       const char *extra_name, MPI_Comm comm, int *rc)
{
    static struct option lo[] = {{"to", required_argument, 0, 't'},
                                 {"curve-server-key", required_argument, 0, 'k'},
                                 {"curve-client-key", required_argument, 0, 'C'},
                                 {"timeout", required_argument, 0, 'T'},
                                 {"json", no_argument, 0, 'j'},
                                 {"wait", no_argument, 0, 'w'},
                                 {"finish", no_argument, 0, 'f'},
                                 {"job", required_argument, 0, 'J'},
                                 {"token", required_argument, 0, 'O'},
                                 {"help", no_argument, 0, 'h'},
                                 {0, 0, 0, 0}};
    co->to = DEFAULT_ENDPOINT;
    co->timeout = 5;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 't': co->to = optarg; break;
        case 'k': co->server_key = optarg; break;
        case 'C': co->client_key = optarg; break;
        case 'T': {
            char *end;
            co->timeout = strtod(optarg, &end);
            if (*end || co->timeout <= 0) {
                *rc = qd_cli_usage_error(comm, cmd, "--timeout must be a positive number of seconds");
                return -1;
            }
            break;
        }
        case 'j':
        case 'w':
        case 'f':
        case 'J': {
            const char *name = c == 'j' ? "json" : c == 'w' ? "wait" : c == 'f' ? "finish" : "job";
            if (!extra_name || strcmp(extra_name, name)) {
                *rc = qd_cli_usage_error(comm, cmd, "unknown option '--%s'", name);
                return -1;
            }
            *extra_flag = 1;
            if (c == 'J') setenv("QD_WATCH_JOB", optarg, 1);
            break;
        }
        case 'O':
            if (strcmp(cmd, "submit")) {
                *rc = qd_cli_usage_error(comm, cmd, "unknown option '--token'");
                return -1;
            }
            co->token = optarg;
            break;
        case 'h':
            if (qd_cli_is_root(comm)) fputs(help, stdout);
            *rc = QD_EXIT_OK;
            return -1;
        default: *rc = qd_cli_usage_error(comm, cmd, "unknown or incomplete option '%s'", argv[optind - 1]); return -1;
        }
    }
    return optind;
}

static const char *submit_help =
    "Usage: qdist submit JOB.json [--to ENDPOINT] [--wait] [--token T] [--timeout S]\n"
    "                             [--curve-server-key FILE] [--curve-client-key FILE]\n"
    "\n"
    "Sends a job to a running 'qdist serve' and prints its id once the service has recorded it.\n"
    "JOB.json holds the keys of a --config file plus \"model\", \"out\" and optionally\n"
    "\"overwrite\". With --wait, waits until the job ends (across restarts of the service) and\n"
    "exits 0 if it is done, 1 if it failed or was cancelled. --token T makes the submission\n"
    "idempotent: the service keeps one job per token (per client key), so a submission whose\n"
    "reply was lost is sent again (3 tries) without ever running the job twice.\n"
    "With CURVE (--curve-server-key), --curve-client-key PREFIX.key is this client's identity:\n"
    "the service shows and cancels a job only for the key that submitted it (or an admin key).\n";

/* Polls the job's status until it ends. A service that does not answer (restarting after a crash,
 * say) is asked again for about a minute before giving up: an accepted job outlives the process
 * that accepted it. */
static int wait_job(const client_opts *co, const char *id)
{
    double silent_since = 0;
    for (;;) {
        cJSON *req = cJSON_CreateObject();
        cJSON_AddStringToObject(req, "op", "status");
        cJSON_AddStringToObject(req, "id", id);
        cJSON *r = request(co, req);
        cJSON_Delete(req);
        if (!r) {
            if (silent_since == 0) silent_since = qd_now();
            if (qd_now() - silent_since > 60) return QD_EXIT_FAIL;
            sleep(1);
            continue;
        }
        silent_since = 0;
        if (check_reply(r)) {
            cJSON_Delete(r);
            return QD_EXIT_FAIL;
        }
        const cJSON *job = cJSON_GetObjectItemCaseSensitive(r, "job");
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(job, "state");
        const char *s = cJSON_IsString(st) ? st->valuestring : "?";
        if (strcmp(s, "queued") && strcmp(s, "running")) {
            print_json(job);
            int rc = strcmp(s, "done") ? QD_EXIT_FAIL : QD_EXIT_OK;
            cJSON_Delete(r);
            return rc;
        }
        cJSON_Delete(r);
        struct timespec ts = {0, 300 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

int qd_cmd_submit(int argc, char **argv, MPI_Comm comm)
{
    client_opts co = {0};
    int wait = 0, rc = 0;
    int i = client_args(argc, argv, "submit", submit_help, &co, &wait, "wait", comm, &rc);
    if (i < 0) return rc;
    if (i >= argc) return qd_cli_usage_error(comm, "submit", "missing JOB.json");
    if (i + 1 < argc) return qd_cli_usage_error(comm, "submit", "unexpected argument '%s'", argv[i + 1]);
    if (!qd_cli_is_root(comm)) return QD_EXIT_OK;
    char *buf = NULL;
    size_t n = 0;
    if (qd_read_file(argv[i], QD_SVC_MAX_MSG, "a job message", &buf, &n)) {
        fprintf(stderr, "qdist: %s\n", qd_errmsg());
        return QD_EXIT_FAIL;
    }
    cJSON *job = cJSON_ParseWithLength(buf, n);
    free(buf);
    if (!job) {
        fprintf(stderr, "qdist: %s: invalid JSON\n", argv[i]);
        return QD_EXIT_FAIL;
    }
    cJSON *req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "op", "submit");
    cJSON_AddItemToObject(req, "job", job);
    if (co.token) cJSON_AddStringToObject(req, "token", co.token);
    cJSON *r = request(&co, req);
    for (int t = 1; !r && co.token && t < 3; t++) {
        fprintf(stderr, "qdist: sending it again (the token keeps it one job)\n");
        sleep(1);
        r = request(&co, req);
    }
    cJSON_Delete(req);
    if (!r) return QD_EXIT_FAIL;
    if (check_reply(r)) {
        cJSON_Delete(r);
        return QD_EXIT_FAIL;
    }
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(r, "id");
    char idbuf[64];
    snprintf(idbuf, sizeof idbuf, "%s", cJSON_IsString(id) ? id->valuestring : "?");
    cJSON_Delete(r);
    printf("%s\n", idbuf);
    fflush(stdout);
    return wait ? wait_job(&co, idbuf) : QD_EXIT_OK;
}

static const char *status_help =
    "Usage: qdist status [ID] [--to ENDPOINT] [--timeout S] [--curve-server-key FILE]\n"
    "       [--curve-client-key FILE]\n"
    "\n"
    "Prints the state of one job (queued / running with tensors done and ETA / done with its\n"
    "summary / failed with the error / cancelled) or of all jobs, as JSON.\n";

int qd_cmd_status(int argc, char **argv, MPI_Comm comm)
{
    client_opts co = {0};
    int dummy = 0, rc = 0;
    int i = client_args(argc, argv, "status", status_help, &co, &dummy, NULL, comm, &rc);
    if (i < 0) return rc;
    if (i + 1 < argc) return qd_cli_usage_error(comm, "status", "unexpected argument '%s'", argv[i + 1]);
    if (!qd_cli_is_root(comm)) return QD_EXIT_OK;
    cJSON *req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "op", "status");
    if (i < argc) cJSON_AddStringToObject(req, "id", argv[i]);
    cJSON *r = request(&co, req);
    cJSON_Delete(req);
    if (!r) return QD_EXIT_FAIL;
    rc = check_reply(r) ? QD_EXIT_FAIL : QD_EXIT_OK;
    if (!rc) {
        cJSON *body = cJSON_GetObjectItemCaseSensitive(r, i < argc ? "job" : "jobs");
        print_json(body ? body : r);
    }
    cJSON_Delete(r);
    return rc;
}

static const char *cancel_help =
    "Usage: qdist cancel ID [--to ENDPOINT] [--timeout S] [--curve-server-key FILE]\n"
    "       [--curve-client-key FILE]\n"
    "\n"
    "A queued job is removed; a running job stops after the tensor in hand, keeping its partial\n"
    "file, which 'qdist quantize --resume' (or a resubmitted job with \"resume\": true) continues.\n";

static int simple_op(int argc, char **argv, MPI_Comm comm, const char *cmd, const char *help)
{
    client_opts co = {0};
    int finish = 0, rc = 0;
    int is_cancel = !strcmp(cmd, "cancel");
    int i = client_args(argc, argv, cmd, help, &co, &finish, is_cancel ? NULL : "finish", comm, &rc);
    if (i < 0) return rc;
    if (is_cancel && i >= argc) return qd_cli_usage_error(comm, cmd, "missing job ID");
    if (i + (is_cancel ? 1 : 0) < argc)
        return qd_cli_usage_error(comm, cmd, "unexpected argument '%s'", argv[i + (is_cancel ? 1 : 0)]);
    if (!qd_cli_is_root(comm)) return QD_EXIT_OK;
    cJSON *req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "op", cmd);
    if (is_cancel)
        cJSON_AddStringToObject(req, "id", argv[i]);
    else if (finish)
        cJSON_AddStringToObject(req, "mode", "finish");
    cJSON *r = request(&co, req);
    cJSON_Delete(req);
    if (!r) return QD_EXIT_FAIL;
    rc = check_reply(r) ? QD_EXIT_FAIL : QD_EXIT_OK;
    if (!rc) {
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(r, is_cancel ? "state" : "mode");
        printf("%s\n", cJSON_IsString(st) ? st->valuestring : "ok");
    }
    cJSON_Delete(r);
    return rc;
}

int qd_cmd_cancel(int argc, char **argv, MPI_Comm comm) { return simple_op(argc, argv, comm, "cancel", cancel_help); }

static const char *shutdown_help =
    "Usage: qdist shutdown [--finish] [--to ENDPOINT] [--timeout S] [--curve-server-key FILE]\n"
    "       [--curve-client-key FILE]\n"
    "\n"
    "Stops the service: by default it drains (runs the queued jobs, accepts no new ones), with\n"
    "--finish it finishes the running job and cancels the queued ones; then every rank exits 0.\n";

int qd_cmd_shutdown(int argc, char **argv, MPI_Comm comm)
{
    return simple_op(argc, argv, comm, "shutdown", shutdown_help);
}

/* ---- watch ------------------------------------------------------------------------------ */

static const char *watch_help =
    "Usage: qdist watch ENDPOINT [--job ID] [--json] [--timeout S] [--curve-server-key FILE]\n"
    "       [--curve-client-key FILE]\n"
    "\n"
    "Subscribes to the events of 'qdist serve --events' or 'qdist quantize --events' and draws\n"
    "a progress bar with ETA (one line per event when not on a terminal, raw JSON with --json).\n"
    "Ends when the job (or, without --job, the first job seen) finishes, fails or is cancelled,\n"
    "or after --timeout seconds without any event (default: wait forever).\n";

static volatile sig_atomic_t g_watch_stop;
static void watch_sig(int sig)
{
    (void)sig;
    g_watch_stop = 1;
}

int qd_cmd_watch(int argc, char **argv, MPI_Comm comm)
{
    static struct option lo[] = {{"job", required_argument, 0, 'J'},
                                 {"json", no_argument, 0, 'j'},
                                 {"timeout", required_argument, 0, 'T'},
                                 {"curve-server-key", required_argument, 0, 'k'},
                                 {"curve-client-key", required_argument, 0, 'C'},
                                 {"help", no_argument, 0, 'h'},
                                 {0, 0, 0, 0}};
    const char *job = NULL, *key = NULL, *ckey = NULL;
    int json = 0;
    double timeout = 0;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'J': job = optarg; break;
        case 'j': json = 1; break;
        case 'k': key = optarg; break;
        case 'C': ckey = optarg; break;
        case 'T': {
            char *end;
            timeout = strtod(optarg, &end);
            if (*end || timeout <= 0) return qd_cli_usage_error(comm, "watch", "--timeout must be positive");
            break;
        }
        case 'h':
            if (qd_cli_is_root(comm)) fputs(watch_help, stdout);
            return QD_EXIT_OK;
        default: return qd_cli_usage_error(comm, "watch", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc) return qd_cli_usage_error(comm, "watch", "missing ENDPOINT");
    if (optind + 1 < argc) return qd_cli_usage_error(comm, "watch", "unexpected argument '%s'", argv[optind + 1]);
    if (!qd_cli_is_root(comm)) return QD_EXIT_OK;
    const char *ep = argv[optind];
    void *ctx = zmq_ctx_new();
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    int linger = 0, ms = 200;
    zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sub, ZMQ_RCVTIMEO, &ms, sizeof ms);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
    int rc = QD_EXIT_FAIL;
    if (setup_client_curve(sub, key, ckey) != 0 || zmq_connect(sub, ep) != 0) {
        fprintf(stderr, "qdist: cannot connect to %s\n", ep);
        goto out;
    }
    signal(SIGINT, watch_sig);
    signal(SIGTERM, watch_sig);
    int tty = isatty(STDOUT_FILENO);
    double last = qd_now(), t_start = 0;
    char followed[64] = "";
    if (job) snprintf(followed, sizeof followed, "%s", job);
    while (!g_watch_stop) {
        char buf[65536];
        int n = zmq_recv(sub, buf, sizeof buf - 1, 0);
        if (n < 0) {
            if (timeout > 0 && qd_now() - last > timeout) {
                fprintf(stderr, "%sqdist: no event for %.0f s\n", tty ? "\n" : "", timeout);
                goto out;
            }
            continue;
        }
        last = qd_now();
        if (n > (int)sizeof buf - 1) n = (int)sizeof buf - 1;
        buf[n] = 0;
        cJSON *ev = cJSON_Parse(buf);
        if (!ev) continue;
        const cJSON *jid = cJSON_GetObjectItemCaseSensitive(ev, "job");
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(ev, "event");
        const char *t = cJSON_IsString(type) ? type->valuestring : "?";
        const char *id = cJSON_IsString(jid) ? jid->valuestring : "";
        if (!followed[0] && *id && strcmp(t, "accepted") && strcmp(t, "cancelled"))
            snprintf(followed, sizeof followed, "%s", id);
        if (followed[0] && *id && strcmp(id, followed)) {
            cJSON_Delete(ev);
            continue;
        }
        if (json) {
            puts(buf);
            fflush(stdout);
        } else {
            const cJSON *d = cJSON_GetObjectItemCaseSensitive(ev, "tensors_done");
            const cJSON *tot = cJSON_GetObjectItemCaseSensitive(ev, "tensors_total");
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(ev, "tensor");
            if (!strcmp(t, "started")) t_start = qd_now();
            if (!strcmp(t, "tensor") && cJSON_IsNumber(d) && cJSON_IsNumber(tot) && tot->valueint > 0) {
                if (t_start == 0) t_start = qd_now();
                double el = qd_now() - t_start, frac = (double)d->valueint / tot->valueint;
                double eta = d->valueint ? el * (tot->valueint - d->valueint) / d->valueint : 0;
                if (tty) {
                    int w = 30, fill = (int)(frac * w + 0.5);
                    printf("\r%s [", id);
                    for (int k = 0; k < w; k++) putchar(k < fill ? '#' : '.');
                    printf("] %d/%d  %3.0f%%  ETA %4.0f s ", d->valueint, tot->valueint, 100 * frac, eta);
                } else
                    printf("%s tensor %d/%d %s (ETA %.0f s)\n", id, d->valueint, tot->valueint,
                           cJSON_IsString(name) ? name->valuestring : "", eta);
            } else
                printf("%s%s %s\n", tty ? "\n" : "", *id ? id : "service", t);
            fflush(stdout);
        }
        int end =
            *id && !strcmp(id, followed) && (!strcmp(t, "finished") || !strcmp(t, "failed") || !strcmp(t, "cancelled"));
        int stopped = !strcmp(t, "stopped");
        if (end || stopped) rc = (!strcmp(t, "finished") || (stopped && !end)) ? QD_EXIT_OK : QD_EXIT_FAIL;
        cJSON_Delete(ev);
        if (end || stopped) break;
    }
out:
    zmq_close(sub);
    zmq_ctx_term(ctx);
    return rc;
}

/* ---- keygen ----------------------------------------------------------------------------- */

int qd_cmd_keygen(int argc, char **argv, MPI_Comm comm)
{
    if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        if (qd_cli_is_root(comm))
            puts("Usage: qdist keygen PREFIX\n\nWrites a CURVE key pair: PREFIX.key (secret, for "
                 "'serve --curve-secret') and PREFIX.pub (public, for clients' --curve-server-key).");
        return QD_EXIT_OK;
    }
    if (argc != 2 || argv[1][0] == '-') return qd_cli_usage_error(comm, "keygen", "expected PREFIX");
    if (!qd_cli_is_root(comm)) return QD_EXIT_OK;
    char pub[41], sec[41], path[PATH_MAX];
    if (zmq_curve_keypair(pub, sec) != 0) {
        fprintf(stderr, "qdist: CURVE is not available in this libzmq\n");
        return QD_EXIT_FAIL;
    }
    snprintf(path, sizeof path, "%s.key", argv[1]);
    mode_t old = umask(077);
    FILE *f = fopen(path, "w");
    umask(old);
    if (!f || fprintf(f, "%s\n", sec) < 0 || fclose(f)) {
        fprintf(stderr, "qdist: cannot write %s\n", path);
        return QD_EXIT_FAIL;
    }
    snprintf(path, sizeof path, "%s.pub", argv[1]);
    f = fopen(path, "w");
    if (!f || fprintf(f, "%s\n", pub) < 0 || fclose(f)) {
        fprintf(stderr, "qdist: cannot write %s\n", path);
        return QD_EXIT_FAIL;
    }
    printf("wrote %s.key (secret) and %s.pub (public)\n", argv[1], argv[1]);
    return QD_EXIT_OK;
}
