/* qdist quantize and qdist plan. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ctype.h>
#include <unistd.h>
#include <zmq.h>

#include "collective/collective.h"
#include "common/qd_common.h"
#include "common/qd_file.h"
#include "coordinator/cli.h"
#include "coordinator/cmd_plan.h"
#include "coordinator/job_config.h"
#include "shard/safetensors.h"
#include "shard/select.h"
#include "train/train.h"
#include "worker/calib_job.h"
#include "worker/structured.h"

static const char *quantize_help =
    "Usage: mpirun -n N qdist quantize --model PATH --out FILE.h5 [options]\n"
    "\n"
    "Quantizes a safetensors checkpoint (file, model.safetensors.index.json or directory) with\n"
    "round to nearest and writes one HDF5 model (docs/FORMAT.md). By default the 2-D Linear\n"
    "weights inside the encoder blocks are quantized; embeddings, norms, biases, pooler and\n"
    "classifier are kept as float32. Each rank reads and quantizes only its own tensors (or row\n"
    "ranges); the file is identical for any number of ranks.\n"
    "\n"
    "Defaults: --method rtn --bits 8 --granularity channel --sym --clip minmax --shard rows\n"
    "(8-bit symmetric per output channel: int8 = q - 128, the safe choice without calibration;\n"
    "for 4-bit GPTQ-style files use --bits 4 --asym --group-size 128).\n"
    "\n"
    "  --model PATH            the checkpoint\n"
    "  --out FILE.h5           the output (written as FILE.h5.partial, renamed when complete)\n"
    "  --method rtn|gptq|adaround|kmeans  round to nearest; GPTQ (Hessian-based error\n"
    "                          compensation) or AdaRound (learned up/down rounding), both with\n"
    "                          --calib; K-means codebooks (2^bits levels per channel or group)\n"
    "  --bits N                2..8\n"
    "  --granularity G         tensor | channel | group\n"
    "  --group-size N          input columns per group (implies --granularity group)\n"
    "  --sym | --asym          symmetric (zero point 2^(bits-1)) or asymmetric (zeros stored)\n"
    "  --clip minmax|mse       range from min/max, or the MSE-optimal clipping search\n"
    "  --scales float32|float16  type of the stored scales (float16: rtn only; rounded before\n"
    "                          coding, half their bytes)\n"
    "  --shard rows|tensor|layer  how work is spread over ranks: rows (whole tensors, large ones\n"
    "                          cut into row ranges; cost-balanced), tensor (whole tensors only,\n"
    "                          cost-balanced), layer (contiguous encoder blocks per rank); the\n"
    "                          file is the same for all three; see 'qdist plan'\n"
    "  --include-embeddings    also quantize 2-D embedding tables\n"
    "  --include-head          also quantize pooler and classifier weights\n"
    "  --smooth ALPHA          SmoothQuant scale migration (method rtn, with --calib): per input\n"
    "                          channel s = max|x|^ALPHA / max|w|^(1-ALPHA) from the calibration\n"
    "                          inputs and the weights (0.5 is the usual choice); W diag(s) is\n"
    "                          quantized and s recorded, inference divides the inputs by s, so\n"
    "                          every activation column stays int8 (no outlier columns in float)\n"
    "  --quantize-embeddings B the 2-D embedding tables (word, position, token type) too, per row at\n"
    "                          B = 8 (symmetric) or 4 (asymmetric) bits by round to nearest, whatever\n"
    "                          the method of the Linears; qdist eval gathers and dequantizes rows\n"
    "                          on lookup\n"
    "  --include PATTERN       also quantize 2-D float tensors whose name matches the glob\n"
    "                          (repeatable), e.g. --include '*.classifier.weight'\n"
    "  --config JOB.json       options as JSON (keys: method, bits, granularity, group_size, sym,\n"
    "                          clip, scales, shard, include_embeddings, include_head,\n"
    "                          include [globs], overrides [per-tensor settings]); flags after it\n"
    "                          win. Example:\n"
    "                            {\"bits\": 4, \"sym\": false, \"group_size\": 128,\n"
    "                             \"overrides\": [{\"pattern\": \"*.attention.*\", \"bits\": 8,\n"
    "                                            \"granularity\": \"channel\"},\n"
    "                                           {\"pattern\": \"*.layer.0.*\", \"skip\": true}]}\n"
    "                          The first override whose pattern matches a selected tensor sets its\n"
    "                          method, bits, granularity, group_size, sym or clip, or keeps it\n"
    "                          float (skip); in a pruning job also its sparsity (\"0.6\", \"2:4\":\n"
    "                          non-uniform sparsity over layers, --sparsity for the others).\n"
    "                          Unknown keys and wrong types are errors. The options\n"
    "                          below: calib, nsamples, seqlen, calib_seed, calib_mode, microbatch,\n"
    "                          damp, block_size, act_order, static_groups, adaround_iters,\n"
    "                          adaround_lambda, adaround_beta (\"START,END\"), adaround_warmup,\n"
    "                          adaround_lr, adaround_batch, activations, act_bits, act_calib,\n"
    "                          act_percentile, act_outliers, kmeans_init, kmeans_weighted,\n"
    "                          kmeans_seed, kmeans_iters\n"
    "GPTQ and calibration:\n"
    "  --calib PATH            calibration samples: a text file (one per line) or a TSV with a\n"
    "                          'sentence' column (BERT), an IDX images file or an image folder (ViT)\n"
    "  --nsamples N            samples drawn (default 128; 0 = all)    --seqlen L  tokens (default 128)\n"
    "  --calib-seed S          seed of the sample selection (default 0)\n"
    "  --calib-mode MODE       how ranks share the calibration (the names of 'qdist calibrate'):\n"
    "                          data (default): samples split over ranks; block after block, each\n"
    "                          block calibrated on the outputs of the blocks already quantized;\n"
    "                          pipeline: ranks own contiguous blocks, one calibration of the FP32\n"
    "                          model flows through them, then all blocks are quantized at once.\n"
    "                          The old names are accepted: sequential = data, fp = pipeline\n"
    "  --microbatch N          samples per forward call (default 8)\n"
    "  --mem-per-rank SIZE     memory one rank may use (6G, 5500M); by default MemAvailable and the\n"
    "                          cgroup limit shared by the host's ranks: a calibrated job whose\n"
    "                          estimate is larger stops before it starts, naming what fits\n"
    "  --damp X                damping, a fraction of mean diag H (default 0.01; raised and\n"
    "                          reported when the Cholesky factorization fails)\n"
    "  --block-size N          columns per lazy update block (default 128)\n"
    "  --act-order             quantize columns by descending diag H (g_idx stored)\n"
    "  --static-groups         group parameters from the whole weight up front (with --act-order)\n"
    "AdaRound (scales from the MSE clipping search; the reconstruction loss through the layer's\n"
    "Hessian, so every step sees all calibration tokens, unless --batch is given):\n"
    "  --iters N               Adam steps per layer (default 10000)\n"
    "  --lambda X              rounding regulariser weight (default 0.01)\n"
    "  --beta START,END        regulariser exponent annealed from START to END (default 20,2)\n"
    "  --warmup F              fraction of steps without the regulariser (default 0.2)\n"
    "  --lr X                  Adam learning rate (default 0.001)\n"
    "  --batch N               calibration rows (tokens) per step (default 0: the Hessian form).\n"
    "                          N > 0: the mini-batch form; the job keeps every Linear input's rows\n"
    "                          (all samples' real tokens, in sample order; the block in hand in\n"
    "                          data mode, a rank's own blocks in pipeline mode) and each step draws\n"
    "                          N of them with --calib-seed; memory: see 'qdist plan'\n"
    "K-means (non-uniform levels; a codebook per output channel or group, docs/FORMAT.md):\n"
    "  --kmeans-init I         kmeans++ (default; seeded) or linear (evenly spaced start)\n"
    "  --kmeans-seed S         seed of k-means++ (default 0)\n"
    "  --kmeans-iters N        Lloyd iterations at most (default 50)\n"
    "  --weighted              centroids minimise the error weighted by the Hessian diagonal of\n"
    "                          each Linear's input (SqueezeLLM-style; needs --calib)\n"
    "Pruning (every quantized weight; masks recorded in the file, docs/FORMAT.md):\n"
    "  --sparsity S            fraction of zeros per row (0.5, 50%) or N:M (2:4, 4:8: at most N\n"
    "                          nonzeros in every M consecutive inputs)\n"
    "  --prune METHOD          sparsegpt (default; with gptq: pruning and quantization in one\n"
    "                          pass), magnitude, wanda (|W| x input norm; needs --calib); rtn\n"
    "                          jobs prune by magnitude\n"
    "  --prune-only            keep the pruned weights in float (method gptq's calibration)\n"
    "  --prune-heads K         remove the K least important attention heads of every layer and\n"
    "  --prune-ffn F           the fraction F of its FFN neurons (importance through the next\n"
    "                          Linear's input Hessian; needs --calib): the checkpoint is shrunk\n"
    "                          into FILE.h5.structured/ (config with pruned_heads and the new\n"
    "                          intermediate_size), which the job then quantizes; eval it with\n"
    "                          --model FILE.h5.structured\n"
    "Static activation scales (for 'qdist eval --integer-only'):\n"
    "  --activations static    also record a scale and zero point for every tensor integer-only\n"
    "                          inference quantizes (Linear inputs, attention scores and\n"
    "                          probabilities, GELU input, residual stream, LayerNorm inputs),\n"
    "                          from the FP32 model on the --calib samples (any method, RTN too);\n"
    "                          stored in /activations (docs/FORMAT.md)\n"
    "  --act-bits N            activation bits (default 8)\n"
    "  --act-calib M           range of each tensor: minmax (default), percentile, mse (clipping\n"
    "                          with the least expected error) or entropy (KL divergence)\n"
    "  --act-percentile P      for percentile: the kept share of each tail (default 99.99)\n"
    "  --act-outliers X        Linear inputs: channels whose range exceeds X times the median\n"
    "                          channel's get their own scale (static outlier channels, at most 32\n"
    "                          per tensor; default 4, 0 = none)\n"
    "  --overwrite             replace an existing output (or an old FILE.h5.partial)\n"
    "  --resume                continue FILE.h5.partial from an interrupted or failed run: checks\n"
    "                          that settings and checkpoint are the same, then quantizes only the\n"
    "                          tensors not yet complete (any number of ranks)\n"
    "  --progress MODE         auto (a bar on a terminal, one line per tensor otherwise), bar,\n"
    "                          lines or none\n"
    "  --quiet                 no progress and no summary\n"
    "  --events ENDPOINT       publish progress events (JSON, ZeroMQ PUB) for 'qdist watch'\n"
    "  -h, --help              this text\n"
    "\n"
    "Exit codes: 0 done, 1 error (rank 0 prints the failing rank, tensor and cause), 2 usage or\n"
    "configuration error, 3 interrupted by SIGTERM/SIGINT: the pieces in hand are finished and\n"
    "flushed, and the message gives the command that resumes the job.\n";

static const char *plan_help =
    "Usage: qdist plan --ranks N --model PATH [quantize options]\n"
    "\n"
    "Prints which rank quantizes which tensor (or row range), the estimated cost (from the\n"
    "method's cost model: rtn ~ rows*cols, gptq ~ rows*cols^2 + cols^3, adaround ~\n"
    "iters*rows*cols*cols, or iters*rows*cols*2*batch with --batch) and peak memory per rank, the\n"
    "calibration memory of calibrated methods, and the balance max/mean, without quantizing\n"
    "anything. Takes the options of 'qdist quantize' (--shard, --config, --include, --method,\n"
    "--iters, --batch, ...); --out is not needed.\n"
    "  --train-batch B   also the memory of 'qdist finetune --batch B' on N ranks: activations kept\n"
    "                    for the backward pass of one grain (sentences of --seqlen tokens),\n"
    "                    weights, gradients and AdamW state\n"
    "Time (calibrated methods; docs/scaling.md): the predicted phases and wall time for 1..64 ranks\n"
    "  --time-model FILE  coefficients fitted by --fit (default: measured on the development machine)\n"
    "  --nodes N          nodes the ranks are spread over (default 1)\n"
    "  --cores C          cores per node (default: this machine's)\n"
    "  --net-gbps G       network between nodes, GB/s;  --net-latency-us U  its latency\n"
    "  --fs-mbps M        file-system throughput, MB/s (the write; the read across nodes)\n"
    "  --record LOG       print the run record (work + measured phases) of the job's log instead\n"
    "  --fit RECORD...    fit the model's coefficients to run records;  --model-out FILE  write them;\n"
    "                     with --time-model FILE, that model's predictions for the runs instead\n";

enum {
    O_MODEL = 256,
    O_OUT,
    O_METHOD,
    O_BITS,
    O_GRAN,
    O_GS,
    O_SYM,
    O_ASYM,
    O_CLIP,
    O_SCALES,
    O_SHARD,
    O_CONFIG,
    O_OVERWRITE,
    O_RESUME,
    O_QUIET,
    O_EMB,
    O_HEAD,
    O_RANKS,
    O_EVENTS,
    O_INCLUDE,
    O_PROGRESS,
    O_CALIB,
    O_NSAMPLES,
    O_SEQLEN,
    O_CSEED,
    O_CMODE,
    O_MB,
    O_MEM,
    O_DAMP,
    O_BS,
    O_ACTORDER,
    O_STATIC,
    O_ITERS,
    O_LAMBDA,
    O_BETA,
    O_WARMUP,
    O_LR,
    O_BATCH,
    O_ACTS,
    O_ACTBITS,
    O_ACTCALIB,
    O_ACTPCT,
    O_ACTOUT,
    O_SPARSITY,
    O_PRUNE,
    O_PRUNE_ONLY,
    O_QEMB,
    O_SMOOTH,
    O_TRAIN_BATCH,
    O_KM_INIT,
    O_KM_WEIGHTED,
    O_KM_SEED,
    O_KM_ITERS,
    O_PRUNE_HEADS,
    O_PRUNE_FFN
};

static const char *g_events;

static int load_config(qd_job_config *c, const char *path, char *msg, size_t cap)
{
    char *buf = NULL;
    size_t n = 0;
    if (qd_read_file(path, 1u << 20, "a job config", &buf, &n)) {
        snprintf(msg, cap, "%s", qd_errmsg());
        return -1;
    }
    cJSON *o = cJSON_ParseWithLength(buf, n);
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

/* --quantize-embeddings B: the embedding tables selected, and a first override giving them RTN at
 * B bits per row (symmetric at 8, asymmetric at 4), ahead of any other override */
static int add_embedding_override(qd_job_config *c, int bits)
{
    if (c->n_overrides >= QD_MAX_PATTERNS) return -1;
    memmove(&c->overrides[1], &c->overrides[0], (size_t)c->n_overrides * sizeof c->overrides[0]);
    c->n_overrides++;
    qd_override *v = &c->overrides[0];
    memset(v, 0, sizeof *v);
    snprintf(v->pattern, sizeof v->pattern, "*embeddings*");
    v->method = QD_METHOD_RTN;
    v->bits = bits;
    v->sym = bits == 8;
    v->gran = QD_GRAN_CHANNEL;
    v->group_size = -1;
    v->clip_mse = 0;
    c->include_embeddings = 1;
    return 0;
}

static int g_train_batch;           /* qdist plan --train-batch */
static qd_structured_opts g_struct; /* --prune-heads, --prune-ffn */

/* The options of quantize and plan: one getopt table and one case per option, kept in one function
 * (long: a case per option; split, the table and its cases would sit apart). */
static int parse(int argc, char **argv, MPI_Comm comm, const char *cmd, const char *help, qd_job_config *c, int *ranks,
                 int *rc)
{
    static struct option lo[] = {{"model", required_argument, 0, O_MODEL},
                                 {"out", required_argument, 0, O_OUT},
                                 {"method", required_argument, 0, O_METHOD},
                                 {"bits", required_argument, 0, O_BITS},
                                 {"granularity", required_argument, 0, O_GRAN},
                                 {"group-size", required_argument, 0, O_GS},
                                 {"sym", no_argument, 0, O_SYM},
                                 {"asym", no_argument, 0, O_ASYM},
                                 {"clip", required_argument, 0, O_CLIP},
                                 {"scales", required_argument, 0, O_SCALES},
                                 {"shard", required_argument, 0, O_SHARD},
                                 {"config", required_argument, 0, O_CONFIG},
                                 {"overwrite", no_argument, 0, O_OVERWRITE},
                                 {"resume", no_argument, 0, O_RESUME},
                                 {"quiet", no_argument, 0, O_QUIET},
                                 {"include-embeddings", no_argument, 0, O_EMB},
                                 {"include-head", no_argument, 0, O_HEAD},
                                 {"ranks", required_argument, 0, O_RANKS},
                                 {"events", required_argument, 0, O_EVENTS},
                                 {"include", required_argument, 0, O_INCLUDE},
                                 {"progress", required_argument, 0, O_PROGRESS},
                                 {"calib", required_argument, 0, O_CALIB},
                                 {"nsamples", required_argument, 0, O_NSAMPLES},
                                 {"seqlen", required_argument, 0, O_SEQLEN},
                                 {"calib-seed", required_argument, 0, O_CSEED},
                                 {"calib-mode", required_argument, 0, O_CMODE},
                                 {"microbatch", required_argument, 0, O_MB},
                                 {"mem-per-rank", required_argument, 0, O_MEM},
                                 {"damp", required_argument, 0, O_DAMP},
                                 {"block-size", required_argument, 0, O_BS},
                                 {"act-order", no_argument, 0, O_ACTORDER},
                                 {"static-groups", no_argument, 0, O_STATIC},
                                 {"iters", required_argument, 0, O_ITERS},
                                 {"lambda", required_argument, 0, O_LAMBDA},
                                 {"beta", required_argument, 0, O_BETA},
                                 {"warmup", required_argument, 0, O_WARMUP},
                                 {"lr", required_argument, 0, O_LR},
                                 {"batch", required_argument, 0, O_BATCH},
                                 {"activations", required_argument, 0, O_ACTS},
                                 {"act-bits", required_argument, 0, O_ACTBITS},
                                 {"act-calib", required_argument, 0, O_ACTCALIB},
                                 {"act-percentile", required_argument, 0, O_ACTPCT},
                                 {"act-outliers", required_argument, 0, O_ACTOUT},
                                 {"sparsity", required_argument, 0, O_SPARSITY},
                                 {"prune", required_argument, 0, O_PRUNE},
                                 {"prune-only", no_argument, 0, O_PRUNE_ONLY},
                                 {"quantize-embeddings", required_argument, 0, O_QEMB},
                                 {"smooth", required_argument, 0, O_SMOOTH},
                                 {"train-batch", required_argument, 0, O_TRAIN_BATCH},
                                 {"kmeans-init", required_argument, 0, O_KM_INIT},
                                 {"weighted", no_argument, 0, O_KM_WEIGHTED},
                                 {"kmeans-seed", required_argument, 0, O_KM_SEED},
                                 {"kmeans-iters", required_argument, 0, O_KM_ITERS},
                                 {"prune-heads", required_argument, 0, O_PRUNE_HEADS},
                                 {"prune-ffn", required_argument, 0, O_PRUNE_FFN},
                                 {"help", no_argument, 0, 'h'},
                                 {0, 0, 0, 0}};
    qd_job_config_default(c);
    optind = 1;
    opterr = 0;
    int o;
    char msg[600];
    int li = -1, qemb = 0;
    while ((o = getopt_long(argc, argv, "h", lo, &li)) != -1) {
        const char *key = NULL;
        switch (o) {
        case O_MODEL: c->model = optarg; break;
        case O_OUT: c->out = optarg; break;
        case O_METHOD: key = "method"; break;
        case O_BITS: key = "bits"; break;
        case O_GRAN: key = "granularity"; break;
        case O_GS: key = "group_size"; break;
        case O_CLIP: key = "clip"; break;
        case O_SCALES: key = "scales"; break;
        case O_SHARD: key = "shard"; break;
        case O_INCLUDE: key = "include"; break;
        case O_PROGRESS: key = "progress"; break;
        case O_CALIB: key = "calib"; break;
        case O_NSAMPLES: key = "nsamples"; break;
        case O_SEQLEN: key = "seqlen"; break;
        case O_CSEED: key = "calib_seed"; break;
        case O_CMODE: key = "calib_mode"; break;
        case O_MB: key = "microbatch"; break;
        case O_MEM: key = "mem_per_rank"; break;
        case O_DAMP: key = "damp"; break;
        case O_BS: key = "block_size"; break;
        case O_ACTORDER: c->act_order = 1; break;
        case O_STATIC: c->static_groups = 1; break;
        case O_ITERS: key = "adaround_iters"; break;
        case O_LAMBDA: key = "adaround_lambda"; break;
        case O_BETA: key = "adaround_beta"; break;
        case O_WARMUP: key = "adaround_warmup"; break;
        case O_LR: key = "adaround_lr"; break;
        case O_BATCH: key = "adaround_batch"; break;
        case O_ACTS: key = "activations"; break;
        case O_ACTBITS: key = "act_bits"; break;
        case O_ACTCALIB: key = "act_calib"; break;
        case O_ACTPCT: key = "act_percentile"; break;
        case O_ACTOUT: key = "act_outliers"; break;
        case O_SPARSITY: key = "sparsity"; break;
        case O_SMOOTH: key = "smooth"; break;
        case O_PRUNE: key = "prune"; break;
        case O_PRUNE_ONLY: c->prune_only = 1; break;
        case O_KM_INIT: key = "kmeans_init"; break;
        case O_KM_WEIGHTED: c->kmeans_weighted = 1; break;
        case O_KM_SEED: key = "kmeans_seed"; break;
        case O_KM_ITERS: key = "kmeans_iters"; break;
        case O_PRUNE_HEADS:
        case O_PRUNE_FFN: {
            char *end;
            double v = strtod(optarg, &end);
            int bad = !*optarg || *end || (o == O_PRUNE_HEADS ? !(v >= 1 && v == floor(v)) : !(v > 0 && v < 1));
            if (bad) {
                *rc = qd_cli_usage_error(comm, cmd,
                                         o == O_PRUNE_HEADS ? "--prune-heads: a count >= 1, got '%s'"
                                                            : "--prune-ffn: a fraction in (0, 1), got '%s'",
                                         optarg);
                return -1;
            }
            if (o == O_PRUNE_HEADS)
                g_struct.heads = (int)v;
            else
                g_struct.ffn = v;
            break;
        }
        case O_TRAIN_BATCH:
            g_train_batch = atoi(optarg);
            if (strcmp(cmd, "plan") || g_train_batch < 1) {
                *rc = qd_cli_usage_error(comm, cmd, "--train-batch: a positive batch size, for 'qdist plan' only");
                return -1;
            }
            break;
        case O_SYM: c->scheme.sym = 1; break;
        case O_ASYM: c->scheme.sym = 0; break;
        case O_OVERWRITE: c->overwrite = 1; break;
        case O_RESUME: c->resume = 1; break;
        case O_QUIET: c->quiet = 1; break;
        case O_EVENTS: g_events = optarg; break;
        case O_EMB: c->include_embeddings = 1; break;
        case O_HEAD: c->include_head = 1; break;
        case O_QEMB:
            if (strcmp(optarg, "8") && strcmp(optarg, "4")) {
                *rc = qd_cli_usage_error(comm, cmd, "--quantize-embeddings takes 8 or 4 (bits), got '%s'", optarg);
                return -1;
            }
            qemb = atoi(optarg);
            break;
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
                *rc = qd_cli_usage_error(comm, cmd,
                                         ranks ? "--ranks must be a positive integer" : "unknown option '--ranks'");
                return -1;
            }
            *ranks = (int)r;
            break;
        }
        case 'h':
            if (qd_cli_is_root(comm)) fputs(help, stdout);
            *rc = QD_EXIT_OK;
            return -1;
        default: *rc = qd_cli_usage_error(comm, cmd, "unknown or incomplete option '%s'", argv[optind - 1]); return -1;
        }
        if (key && qd_job_config_set(c, key, optarg, msg, sizeof msg)) {
            *rc = qd_cli_usage_error(comm, cmd, "--%s %s: %s", li >= 0 ? lo[li].name : key, optarg, msg);
            return -1;
        }
        li = -1;
    }
    if (optind < argc) {
        *rc = qd_cli_usage_error(comm, cmd, "unexpected argument '%s'", argv[optind]);
        return -1;
    }
    if (!c->model) {
        *rc = qd_cli_usage_error(comm, cmd, "missing --model PATH");
        return -1;
    }
    if (qemb && add_embedding_override(c, qemb)) {
        *rc = qd_cli_usage_error(comm, cmd, "--quantize-embeddings: at most %d overrides", QD_MAX_PATTERNS);
        return -1;
    }
    return 0;
}

static void publish_event(void *ctx, const char *type, const cJSON *fields)
{
    cJSON *ev = fields ? cJSON_Duplicate(fields, 1) : cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "event", type);
    cJSON_AddStringToObject(ev, "job", "batch");
    cJSON_AddNumberToObject(ev, "time", (double)time(NULL));
    char *t = cJSON_PrintUnformatted(ev);
    zmq_send(ctx, t, strlen(t), ZMQ_DONTWAIT);
    free(t);
    cJSON_Delete(ev);
}

/* Open MPI gives every rank a pseudo-terminal for stdout whatever mpirun's own stdout is, so
 * isatty() alone says "terminal" even in a batch log. Under a launcher, look at the launcher's
 * (the parent's) stdout instead; a remote or unknown parent means "not a terminal". */
static int stdout_is_terminal(void)
{
    if (!isatty(STDOUT_FILENO)) return 0;
    if (!getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMIX_RANK") && !getenv("PMI_RANK")) return 1;
    char p[64], link[256];
    snprintf(p, sizeof p, "/proc/%d/fd/1", (int)getppid());
    ssize_t k = readlink(p, link, sizeof link - 1);
    if (k <= 0) return 0;
    link[k] = 0;
    return !strncmp(link, "/dev/pts/", 9) || !strncmp(link, "/dev/tty", 8);
}

/* The command that continues an interrupted job: this one's arguments plus --resume. */
static void resume_hint(int argc, char **argv, int size)
{
    fprintf(stderr, "qdist: to continue: mpirun -n %d qdist", size);
    int had = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--resume")) had = 1;
        if (!strcmp(a, "--overwrite")) continue; /* would throw the partial file away */
        int plain = *a != 0;
        for (const char *c = a; *c; c++)
            if (!(isalnum((unsigned char)*c) || strchr("-_./=:,+@%", *c))) plain = 0;
        fprintf(stderr, plain ? " %s" : " '%s'", a);
    }
    fprintf(stderr, "%s\n", had ? "" : " --resume");
}

int qd_cmd_quantize(int argc, char **argv, MPI_Comm comm)
{
    qd_job_config c;
    int rc = 0, size = 1;
    size = qd_coll_size(comm);
    if (parse(argc, argv, comm, "quantize", quantize_help, &c, NULL, &rc)) return rc;
    if (!c.out) return qd_cli_usage_error(comm, "quantize", "missing --out FILE.h5");
    if (qd_job_config_validate(&c)) return qd_cli_usage_error(comm, "quantize", "%s", qd_errmsg());
    if (c.progress == QD_PROGRESS_AUTO) {
        /* rank 0 decides (it is the one that prints) */
        int term = qd_cli_is_root(comm) ? stdout_is_terminal() : 0;
        qd_coll_bcast(comm, &term, sizeof term, 0);
        c.progress = term ? QD_PROGRESS_BAR : QD_PROGRESS_LINES;
    }
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
    /* structured pruning first: rank 0 writes the smaller checkpoint, the job quantizes it */
    char sdir[4096];
    if (qd_structured_active(&g_struct)) {
        snprintf(sdir, sizeof sdir, "%s.structured", c.out);
        g_struct.calib = c.calib;
        g_struct.nsamples = c.nsamples;
        g_struct.seqlen = c.seqlen;
        g_struct.seed = (uint64_t)c.calib_seed;
        char line[512] = "", msg[1024];
        int lst = qd_cli_is_root(comm) ? qd_structured_prune(c.model, &g_struct, sdir, line, sizeof line) : QD_OK;
        if (qd_coll_agree_msg(comm, lst, msg, sizeof msg, NULL) != QD_OK) {
            if (qd_cli_is_root(comm)) fprintf(stderr, "qdist quantize: %s\n", msg);
            if (pub) zmq_close(pub);
            if (zctx) zmq_ctx_term(zctx);
            qd_coll_barrier(comm);
            return QD_EXIT_FAIL;
        }
        if (qd_cli_is_root(comm) && !c.quiet) printf("%s\n", line);
        c.model = sdir;
    }
    int st = qd_job_run(&c, comm, &hooks);
    if (pub) zmq_close(pub);
    if (zctx) zmq_ctx_term(zctx);
    if (st == QD_OK) return QD_EXIT_OK;
    if (qd_cli_is_root(comm)) {
        fflush(stdout);
        fprintf(stderr, "qdist quantize: %s\n", qd_errmsg());
        if (st == QD_EINTR || access(c.out, F_OK) != 0) {
            char partial[4096];
            snprintf(partial, sizeof partial, "%s.partial", c.out);
            if (st == QD_EINTR ||
                (access(partial, F_OK) == 0 && st != QD_EEXIST && st != QD_EMISMATCH && st != QD_ECONFIG))
                resume_hint(argc, argv, size);
        }
        fflush(stderr);
    }
    /* mpirun kills the job when the first rank exits non-zero: nobody leaves before rank 0 has
     * printed the message */
    qd_coll_barrier(comm);
    return st == QD_EINTR ? QD_EXIT_INTERRUPTED : st == QD_ECONFIG || st == QD_EUSAGE ? QD_EXIT_USAGE : QD_EXIT_FAIL;
}

int qd_cmd_plan(int argc, char **argv, MPI_Comm comm)
{
    qd_job_config c;
    int rc = 0, ranks = 0;
    const int trc = qd_plan_time_args(&argc, argv, comm);
    if (trc >= 0) return trc;
    if (parse(argc, argv, comm, "plan", plan_help, &c, &ranks, &rc)) return rc;
    if (!ranks) ranks = qd_plan_time_record_ranks();
    if (!ranks) return qd_cli_usage_error(comm, "plan", "missing --ranks N");
    if (!qd_cli_is_root(comm)) return QD_EXIT_OK;
    qd_checkpoint *ck;
    if (qd_ckpt_open(c.model, &ck)) {
        fprintf(stderr, "qdist plan: %s\n", qd_errmsg());
        return QD_EXIT_FAIL;
    }
    int n = qd_ckpt_num_tensors(ck), nz = n ? n : 1, nq = 0;
    qd_job_tensor *jt = qd_xcalloc((size_t)nz, sizeof *jt);
    qd_plan_item *pi = qd_xcalloc((size_t)nz, sizeof *pi);
    qd_job_table(&c, ck, jt, pi);
    if (qd_plan_time_record_ranks()) { /* --record: the run's record alone */
        const int tr = qd_plan_time_report(&c, ck, jt, pi, n, ranks);
        free(pi);
        free(jt);
        qd_ckpt_close(ck);
        return tr == 1 ? QD_EXIT_OK : QD_EXIT_FAIL;
    }
    qd_plan p;
    QD_ASSERT_EQ(qd_plan_make(pi, n, ranks, c.shard, &p), 0);
    double tot = 0;
    for (int r = 0; r < ranks; r++) tot += p.load[r];
    int nada = 0;
    for (int i = 0; i < n; i++) {
        nq += jt[i].kind == QD_JOB_QUANT;
        nada += jt[i].kind == QD_JOB_QUANT && jt[i].method == QD_METHOD_ADAROUND;
    }
    printf("plan: %s, %d tensors (%d to quantize, method %s), %d pieces over %d ranks, sharding by %s\n", c.model, n,
           nq, qd_method_name(c.method), p.npieces, ranks, qd_shard_mode_name(c.shard));
    if (nq == 0)
        printf("nothing to quantize: no tensor is a 2-D float weight inside an encoder block named as qdist "
               "recognises; 'qdist quantize' stops with an error (select tensors with --include PATTERN)\n");
    if (nada && c.ada_batch > 0)
        printf("adaround: %d tensors, %d steps of %d calibration rows (cost iters*rows*cols*2*batch)\n", nada,
               c.ada_iters, c.ada_batch);
    else if (nada)
        printf("adaround: %d tensors, %d steps through the Hessian (cost iters*rows*cols*cols)\n", nada, c.ada_iters);
    printf("\n");
    printf("%-6s %8s %8s %14s %8s %12s %14s\n", "rank", "tensors", "pieces", "cost (Mop)", "share", "read (MB)",
           "peak mem (MB)");
    for (int r = 0; r < ranks; r++) {
        int cnt = 0, tens = 0, last = -1;
        double rd = 0;
        for (int q = 0; q < p.npieces; q++) {
            const qd_plan_piece *pc = &p.pieces[q];
            if (pc->owner != r) continue;
            cnt++;
            if (pc->item != last) tens++;
            last = pc->item;
            int parts = pi[pc->item].parts > 1 ? pi[pc->item].parts : 1;
            rd += (double)qd_ckpt_tensor(ck, pc->item)->nbytes * (pc->part1 - pc->part0) / parts;
        }
        printf("%-6d %8d %8d %14.3f %7.1f%% %12.3f %14.3f\n", r, tens, cnt, p.load[r] * 1e-6,
               tot > 0 ? 100 * p.load[r] / tot : 0, rd * 1e-6, p.peak_mem[r] * 1e-6);
    }
    if (qd_job_needs_calibration(&c, jt, n)) {
        double worst = 0;
        char bd0[512] = "";
        int erc = qd_calib_job_estimate(&c, ck, jt, ranks, &worst, bd0, sizeof bd0);
        if (erc)
            printf("\ncalibration memory: cannot estimate (%s)\n", qd_errmsg());
        else
            printf("\ncalibration (%s mode): peak about %.1f MB on the busiest rank (%s)\n",
                   qd_calib_mode_name(c.calib_mode), worst * 1e-6, bd0);
    }
    double mx = 0;
    for (int r = 0; r < ranks; r++) mx = p.load[r] > mx ? p.load[r] : mx;
    if (g_train_batch > 0 && qd_ft_plan_print(c.model, g_train_batch, c.seqlen, ranks))
        printf("\ntraining memory: cannot estimate (%s)\n", qd_errmsg());
    printf("\nbalance max/mean: %.3f (the slowest rank does %.1f%% of the work; ideal %.1f%%)\n", p.balance,
           tot > 0 ? 100 * mx / tot : 0, 100.0 / ranks);
    /* calibrated jobs: the fitted time model; else RTN's ~1 GB/s of F32 input per rank here, other
     * methods scaled by their cost */
    const int tr = qd_plan_time_report(&c, ck, jt, pi, n, ranks);
    if (tr < 0) printf("estimated time: %.2f s (cost of the slowest rank at ~0.25 Gop/s)\n", mx / 0.25e9);
    printf("\nassignment (rank: tensor [rows]):\n");
    for (int q = 0; q < p.npieces; q++) {
        const qd_plan_piece *pc = &p.pieces[q];
        const qd_job_tensor *j = &jt[pc->item];
        const char *what = j->kind == QD_JOB_QUANT ? "" : j->kind == QD_JOB_FLOAT ? "  (float)" : "  (raw)";
        if (pc->part0 == 0 && pc->part1 >= (pi[pc->item].parts > 1 ? pi[pc->item].parts : 1))
            printf("  %3d  %s%s\n", pc->owner, qd_ckpt_tensor(ck, pc->item)->name, what);
        else
            printf("  %3d  %s [%lld:%lld]%s\n", pc->owner, qd_ckpt_tensor(ck, pc->item)->name,
                   (long long)(pc->part0 * j->blk_rows), (long long)QD_MIN(pc->part1 * j->blk_rows, j->rows), what);
    }
    qd_plan_free(&p);
    free(pi);
    free(jt);
    qd_ckpt_close(ck);
    return QD_EXIT_OK;
}
