/* qdist quantize and qdist plan. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "collective/collective.h"
#include "common/qd_common.h"
#include "coordinator/cli.h"
#include "coordinator/job_config.h"
#include "shard/safetensors.h"
#include "shard/select.h"

static const char *quantize_help =
    "Usage: mpirun -n N qdist quantize --model PATH --out FILE.h5 [options]\n"
    "\n"
    "Quantizes the 2-D Linear weights of the encoder blocks of a safetensors checkpoint (file,\n"
    "model.safetensors.index.json or directory) and writes one HDF5 model (docs/FORMAT.md).\n"
    "Embeddings, norms, biases, pooler and classifier are kept as float32. Each rank reads and\n"
    "quantizes its own share; the file is identical for any number of ranks.\n"
    "\n"
    "  --model PATH            the checkpoint\n"
    "  --out FILE.h5           the output (written as FILE.h5.partial, renamed when complete)\n"
    "  --method rtn            round to nearest (default)\n"
    "  --bits N                2..8 (default 8)\n"
    "  --granularity G         tensor | channel | group (default channel)\n"
    "  --group-size N          columns per group (implies --granularity group; default 128)\n"
    "  --sym | --asym          symmetric (zero point 2^(bits-1), default) or asymmetric\n"
    "  --clip minmax|mse       range from min/max (default) or the MSE-optimal clipping search\n"
    "  --shard tensor|layer    how work is spread over ranks: tensor (default) balances tensors by\n"
    "                          cost; layer gives each rank contiguous encoder blocks ('rows' is\n"
    "                          accepted and currently works as 'tensor')\n"
    "  --include-embeddings    also quantize 2-D embedding tables\n"
    "  --include-head          also quantize pooler and classifier weights\n"
    "  --config JOB.json       options as JSON keys (method, bits, granularity, group_size, sym,\n"
    "                          clip, shard, include_embeddings, include_head) and per-tensor\n"
    "                          overrides for mixed precision, first match wins:\n"
    "                          \"overrides\": [{\"pattern\": \"*.attention.*\", \"bits\": 4,\n"
    "                          \"group_size\": 32, \"sym\": false}, {\"pattern\": \"*.output.dense.*\",\n"
    "                          \"skip\": true}]  (glob on tensor names); flags after it win\n"
    "  --overwrite             replace an existing output\n"
    "  --resume                continue a partial output (FILE.h5.partial)\n"
    "  --quiet                 no progress lines\n"
    "  --events ENDPOINT       publish progress events (JSON, ZeroMQ PUB) for 'qdist watch'\n"
    "  -h, --help              this text\n"
    "\n"
    "Exit codes: 0 done, 1 error (the message names the rank, tensor and cause), 2 usage,\n"
    "3 interrupted by SIGTERM/SIGINT (the partial file is kept).\n";

static const char *plan_help =
    "Usage: qdist plan --ranks N --model PATH [quantize options]\n"
    "\n"
    "Prints which rank quantizes which tensor, the estimated cost and memory per rank, and the\n"
    "balance (max/mean cost), without quantizing anything.\n";

enum { O_MODEL = 256, O_OUT, O_METHOD, O_BITS, O_GRAN, O_GS, O_SYM, O_ASYM, O_CLIP, O_SHARD, O_CONFIG, O_OVERWRITE,
       O_RESUME, O_QUIET, O_EMB, O_HEAD, O_RANKS, O_EVENTS };

static const char *g_events;

static int load_config(qd_job_config *c, const char *path, char *msg, size_t cap) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(msg, cap, "%s: cannot open", path);
        return -1;
    }
    char *buf = qd_xmalloc(1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *o = cJSON_Parse(buf);
    free(buf);
    if (!o) {
        snprintf(msg, cap, "%s: invalid JSON", path);
        return -1;
    }
    char m2[512];
    int rc = qd_job_config_from_json(c, o, 0, m2, sizeof m2);
    cJSON_Delete(o);
    if (rc) snprintf(msg, cap, "%s: %s", path, m2);
    return rc;
}

static int parse(int argc, char **argv, MPI_Comm comm, const char *cmd, const char *help, qd_job_config *c,
                 int *ranks, int *rc) {
    static struct option lo[] = {{"model", required_argument, 0, O_MODEL},
                                 {"out", required_argument, 0, O_OUT},
                                 {"method", required_argument, 0, O_METHOD},
                                 {"bits", required_argument, 0, O_BITS},
                                 {"granularity", required_argument, 0, O_GRAN},
                                 {"group-size", required_argument, 0, O_GS},
                                 {"sym", no_argument, 0, O_SYM},
                                 {"asym", no_argument, 0, O_ASYM},
                                 {"clip", required_argument, 0, O_CLIP},
                                 {"shard", required_argument, 0, O_SHARD},
                                 {"config", required_argument, 0, O_CONFIG},
                                 {"overwrite", no_argument, 0, O_OVERWRITE},
                                 {"resume", no_argument, 0, O_RESUME},
                                 {"quiet", no_argument, 0, O_QUIET},
                                 {"include-embeddings", no_argument, 0, O_EMB},
                                 {"include-head", no_argument, 0, O_HEAD},
                                 {"ranks", required_argument, 0, O_RANKS},
                                 {"events", required_argument, 0, O_EVENTS},
                                 {"help", no_argument, 0, 'h'},
                                 {0, 0, 0, 0}};
    qd_job_config_default(c);
    optind = 1;
    opterr = 0;
    int o;
    char msg[600];
    while ((o = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        const char *key = NULL;
        switch (o) {
        case O_MODEL: c->model = optarg; break;
        case O_OUT: c->out = optarg; break;
        case O_METHOD: key = "method"; break;
        case O_BITS: key = "bits"; break;
        case O_GRAN: key = "granularity"; break;
        case O_GS: key = "group_size"; break;
        case O_CLIP: key = "clip"; break;
        case O_SHARD: key = "shard"; break;
        case O_SYM: c->scheme.sym = 1; break;
        case O_ASYM: c->scheme.sym = 0; break;
        case O_OVERWRITE: c->overwrite = 1; break;
        case O_RESUME: c->resume = 1; break;
        case O_QUIET: c->quiet = 1; break;
        case O_EVENTS: g_events = optarg; break;
        case O_EMB: c->include_embeddings = 1; break;
        case O_HEAD: c->include_head = 1; break;
        case O_CONFIG:
            if (load_config(c, optarg, msg, sizeof msg)) {
                *rc = qd_cli_usage_error(comm, cmd, "%s", msg);
                return -1;
            }
            break;
        case O_RANKS: {
            char *end;
            long r = strtol(optarg, &end, 10);
            if (!ranks || *end || r < 1 || r > 1 << 20) {
                *rc = qd_cli_usage_error(comm, cmd, ranks ? "--ranks must be a positive integer" : "unknown option '--ranks'");
                return -1;
            }
            *ranks = (int)r;
            break;
        }
        case 'h':
            if (qd_cli_is_root(comm)) fputs(help, stdout);
            *rc = QD_EXIT_OK;
            return -1;
        default:
            *rc = qd_cli_usage_error(comm, cmd, "unknown or incomplete option '%s'", argv[optind - 1]);
            return -1;
        }
        if (key && qd_job_config_set(c, key, optarg, msg, sizeof msg)) {
            *rc = qd_cli_usage_error(comm, cmd, "--%s", msg + 1);
            return -1;
        }
    }
    if (optind < argc) {
        *rc = qd_cli_usage_error(comm, cmd, "unexpected argument '%s'", argv[optind]);
        return -1;
    }
    if (!c->model) {
        *rc = qd_cli_usage_error(comm, cmd, "missing --model PATH");
        return -1;
    }
    return 0;
}

static void publish_event(void *ctx, const char *type, const cJSON *fields) {
    cJSON *ev = fields ? cJSON_Duplicate(fields, 1) : cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "event", type);
    cJSON_AddStringToObject(ev, "job", "batch");
    cJSON_AddNumberToObject(ev, "time", (double)time(NULL));
    char *t = cJSON_PrintUnformatted(ev);
    zmq_send(ctx, t, strlen(t), ZMQ_DONTWAIT);
    free(t);
    cJSON_Delete(ev);
}

int qd_cmd_quantize(int argc, char **argv, MPI_Comm comm) {
    qd_job_config c;
    int rc = 0;
    if (parse(argc, argv, comm, "quantize", quantize_help, &c, NULL, &rc)) return rc;
    if (!c.out) return qd_cli_usage_error(comm, "quantize", "missing --out FILE.h5");
    /* progress events: rank 0 publishes the job's events on a PUB socket */
    void *zctx = NULL, *pub = NULL;
    qd_job_hooks hooks = {0};
    if (g_events && qd_cli_is_root(comm)) {
        zctx = zmq_ctx_new();
        pub = zmq_socket(zctx, ZMQ_PUB);
        int linger = 1000;
        zmq_setsockopt(pub, ZMQ_LINGER, &linger, sizeof linger);
        if (zmq_bind(pub, g_events) != 0) {
            qd_log(QD_LOG_WARN, "--events %s: %s; continuing without events", g_events, zmq_strerror(zmq_errno()));
            zmq_close(pub);
            pub = NULL;
        } else {
            hooks.ctx = pub;
            hooks.event = publish_event;
            /* PUB drops messages until subscribers have connected: give waiting watchers a
             * moment, so that short jobs are seen from their start */
            struct timespec ts = {0, 300 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    int st = qd_job_run(&c, comm, &hooks);
    if (pub) zmq_close(pub);
    if (zctx) zmq_ctx_term(zctx);
    if (st == QD_OK) return QD_EXIT_OK;
    if (qd_cli_is_root(comm)) {
        qd_log(QD_LOG_ERROR, "%s", qd_errmsg());
        if (st == QD_EINTR)
            qd_log(QD_LOG_ERROR, "interrupted; to continue: mpirun -n N qdist quantize --model %s --out %s --resume",
                   c.model, c.out);
    }
    return st == QD_EINTR ? QD_EXIT_INTERRUPTED : st == QD_ECONFIG || st == QD_EUSAGE ? QD_EXIT_USAGE : QD_EXIT_FAIL;
}

int qd_cmd_plan(int argc, char **argv, MPI_Comm comm) {
    qd_job_config c;
    int rc = 0, ranks = 0;
    if (parse(argc, argv, comm, "plan", plan_help, &c, &ranks, &rc)) return rc;
    if (!ranks) return qd_cli_usage_error(comm, "plan", "missing --ranks N");
    if (!qd_cli_is_root(comm)) return QD_EXIT_OK;
    qd_checkpoint *ck;
    if (qd_ckpt_open(c.model, &ck)) {
        qd_log(QD_LOG_ERROR, "%s", qd_errmsg());
        return QD_EXIT_FAIL;
    }
    int n = qd_ckpt_num_tensors(ck);
    qd_plan_item *pi = qd_xcalloc((size_t)(n ? n : 1), sizeof *pi);
    int *owner = qd_xcalloc((size_t)(n ? n : 1), sizeof(int));
    for (int i = 0; i < n; i++) {
        const qd_tensor_info *t = qd_ckpt_tensor(ck, i);
        int q = t->float_like && t->ndim == 2 && qd_shard_default_quantizable(t);
        int64_t rows = t->ndim ? t->shape[0] : 1, cols = rows ? (int64_t)t->numel / rows : 0;
        pi[i].cost = q ? qd_plan_cost_rtn(rows, cols) : qd_plan_cost_copy((int64_t)t->numel);
        pi[i].mem = (double)t->numel * 4.0 * (q ? 2.5 : 1.0);
        pi[i].block = qd_shard_block_index(t->name);
    }
    qd_plan_assign(pi, n, ranks, c.shard, owner);
    double *load = qd_xcalloc((size_t)ranks, sizeof(double));
    double bal = qd_plan_balance(pi, n, ranks, owner, load);
    printf("plan: %d tensors over %d ranks, sharding by %s\n\n", n, ranks, c.shard == QD_SHARD_LAYER ? "layer" : "tensor");
    printf("%-6s %8s %14s %14s %12s\n", "rank", "tensors", "cost (Mop)", "peak mem (MB)", "share");
    double tot = 0;
    for (int r = 0; r < ranks; r++) tot += load[r];
    for (int r = 0; r < ranks; r++) {
        int cnt = 0;
        double mem = 0;
        for (int i = 0; i < n; i++)
            if (owner[i] == r) {
                cnt++;
                if (pi[i].mem > mem) mem = pi[i].mem;
            }
        printf("%-6d %8d %14.3f %14.3f %11.1f%%\n", r, cnt, load[r] * 1e-6, mem * 1e-6, tot > 0 ? 100 * load[r] / tot : 0);
    }
    printf("\nbalance max/mean: %.3f\n\nassignment:\n", bal);
    for (int i = 0; i < n; i++) printf("  %3d  %s\n", owner[i], qd_ckpt_tensor(ck, i)->name);
    free(pi);
    free(owner);
    free(load);
    qd_ckpt_close(ck);
    return QD_EXIT_OK;
}
