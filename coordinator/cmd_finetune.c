/* qdist finetune: data-parallel fine-tuning, transfer learning, quantization-aware training and
 * scale-only fine-tuning of a quantized model (train/train.h). */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collective/collective.h"
#include "common/qd_common.h"
#include "coordinator/cli.h"
#include "train/train.h"

static const char *finetune_help =
    "Usage: [mpirun -n N] qdist finetune --model DIR --data TRAIN --out OUT [options]\n"
    "\n"
    "Fine-tunes a BERT or ViT classifier on labelled data, data parallel over the ranks: every batch\n"
    "is cut into grains of a fixed number of items, each rank computes whole grains, and the\n"
    "gradients are summed in one fixed order, so 1, 2, 4 ... ranks give bit-identical weights.\n"
    "OUT is a directory (model.safetensors with Hugging Face names, config.json, tokenizer or\n"
    "preprocessor files) or, with --qat/--scale-only, a qdist model file (.h5).\n"
    "\n"
    "Data:\n"
    "  --data PATH          training items: IDX images (+ labels beside them) or an image folder\n"
    "                       for ViT models; a TSV with 'sentence' and 'label' columns for BERT\n"
    "  --data-range A:B     items [A, B) of it (default all)\n"
    "  --eval PATH          evaluated (top-1) before training and after every epoch\n"
    "  --eval-range A:B     items [A, B) of it\n"
    "  --select PATH        held-out items (never trained on: e.g. --select TRAIN --select-range\n"
    "                       outside --data-range) evaluated before training and after every epoch;\n"
    "                       OUT gets the epoch that scores best on them, the start included (for\n"
    "                       --qat/--scale-only the PTQ file itself), the earlier on ties\n"
    "  --select-range A:B   items [A, B) of it\n"
    "  --seqlen N           tokens per sentence at most (128)\n"
    "Model:\n"
    "  --head N             a new classifier with N classes (N(0, 0.02) weights from --seed)\n"
    "  --freeze WHAT        none (default), embeddings, body (train the head only), or K: the\n"
    "                       embeddings and the first K blocks stay fixed\n"
    "  --mask FILE.h5       fine-tune a pruned model: the pruned weights of FILE.h5's records are\n"
    "                       set to 0 and stay exactly 0 (no gradient), so OUT keeps the pattern\n"
    "Optimizer (AdamW):\n"
    "  --epochs N (3)  --batch N (32)  --grain N (batch/8: items per grain)  --max-steps N\n"
    "  --lr X (5e-5)  --weight-decay X (0.01)  --warmup F (0.1 of the steps, then linear decay)\n"
    "  --clip X (1.0: global gradient norm; 0 = off)  --seed S (0)\n"
    "Quantized models:\n"
    "  --qat FILE.h5        quantization-aware training from the codes and scales of FILE.h5 (RTN,\n"
    "                       GPTQ or AdaRound): latent weights with straight-through gradients and\n"
    "                       learned step sizes (LSQ); writes the same scheme to OUT.h5\n"
    "  --scale-only FILE.h5 keep FILE.h5's integer codes, learn only its scales\n"
    "                       (pruned files: pruned weights stay 0 and are written pruned again)\n"
    "  --act-lsq            also learn the int8 steps of the encoder Linears' inputs recorded in\n"
    "                       FILE.h5's static activation record (quantize --activations static);\n"
    "                       written back to OUT's record for eval --integer-only and export\n"
    "  --distill W          loss = (1 - W) cross-entropy + W KL to the FP32 model's logits (0)\n"
    "  --distill embedding  a model without a classification head (a sentence embedder): loss = MSE\n"
    "                       between its mean-pooled embedding and the FP32 model's; evaluation:\n"
    "                       mean cosine to the FP32 embeddings (labels in --data are not used)\n"
    "  --temperature T      of the KL term (2)\n"
    "Run:\n"
    "  --resume             continue from OUT's checkpoint (written every epoch, every\n"
    "                       --save-every steps and on SIGTERM/SIGINT); the result is identical\n"
    "                       to an uninterrupted run\n"
    "  --save-every N  --log FILE.jsonl (per-epoch metrics)  --progress-every N  --quiet\n"
    "\n"
    "Exit codes: 0 done, 1 error, 2 usage, 3 interrupted (resume with --resume).\n";

static void on_signal(int sig)
{
    (void)sig;
    qd_ft_request_stop();
}

static int parse_range(const char *s, int *first, int *count)
{
    char *e;
    long a = strtol(s, &e, 10);
    if (*e != ':' || a < 0) return -1;
    long b = strtol(e + 1, &e, 10);
    if (*e || b <= a) return -1;
    *first = (int)a;
    *count = (int)(b - a);
    return 0;
}

enum {
    O_MODEL = 256,
    O_DATA,
    O_DRANGE,
    O_EVAL,
    O_ERANGE,
    O_OUT,
    O_HEAD,
    O_FREEZE,
    O_EPOCHS,
    O_BATCH,
    O_GRAIN,
    O_MAXSTEPS,
    O_LR,
    O_WD,
    O_WARMUP,
    O_CLIP,
    O_SEED,
    O_SEQLEN,
    O_QAT,
    O_SCALE,
    O_DISTILL,
    O_TEMP,
    O_RESUME,
    O_SAVE,
    O_LOG,
    O_PROGRESS,
    O_QUIET,
    O_EBATCH,
    O_SELECT,
    O_SRANGE,
    O_MASK,
    O_ACTLSQ
};

int qd_cmd_finetune(int argc, char **argv, MPI_Comm comm)
{
    static struct option lo[] = {{"model", required_argument, 0, O_MODEL},
                                 {"data", required_argument, 0, O_DATA},
                                 {"data-range", required_argument, 0, O_DRANGE},
                                 {"eval", required_argument, 0, O_EVAL},
                                 {"eval-range", required_argument, 0, O_ERANGE},
                                 {"out", required_argument, 0, O_OUT},
                                 {"head", required_argument, 0, O_HEAD},
                                 {"freeze", required_argument, 0, O_FREEZE},
                                 {"epochs", required_argument, 0, O_EPOCHS},
                                 {"batch", required_argument, 0, O_BATCH},
                                 {"grain", required_argument, 0, O_GRAIN},
                                 {"max-steps", required_argument, 0, O_MAXSTEPS},
                                 {"lr", required_argument, 0, O_LR},
                                 {"weight-decay", required_argument, 0, O_WD},
                                 {"warmup", required_argument, 0, O_WARMUP},
                                 {"clip", required_argument, 0, O_CLIP},
                                 {"seed", required_argument, 0, O_SEED},
                                 {"seqlen", required_argument, 0, O_SEQLEN},
                                 {"qat", required_argument, 0, O_QAT},
                                 {"scale-only", required_argument, 0, O_SCALE},
                                 {"distill", required_argument, 0, O_DISTILL},
                                 {"temperature", required_argument, 0, O_TEMP},
                                 {"resume", no_argument, 0, O_RESUME},
                                 {"save-every", required_argument, 0, O_SAVE},
                                 {"log", required_argument, 0, O_LOG},
                                 {"progress-every", required_argument, 0, O_PROGRESS},
                                 {"eval-batch", required_argument, 0, O_EBATCH},
                                 {"quiet", no_argument, 0, O_QUIET},
                                 {"select", required_argument, 0, O_SELECT},
                                 {"select-range", required_argument, 0, O_SRANGE},
                                 {"mask", required_argument, 0, O_MASK},
                                 {"act-lsq", no_argument, 0, O_ACTLSQ},
                                 {"help", no_argument, 0, 'h'},
                                 {0, 0, 0, 0}};
    qd_ft_config c;
    qd_ft_config_default(&c);
    optind = 1;
    opterr = 0;
    int o, li = -1;
    while ((o = getopt_long(argc, argv, "h", lo, &li)) != -1) {
        char *end = NULL;
        double d = optarg ? strtod(optarg, &end) : 0;
        int num_ok = optarg && end && !*end && end != optarg;
        int bad = 0;
        switch (o) {
        case O_MODEL: c.model = optarg; break;
        case O_DATA: c.data = optarg; break;
        case O_EVAL: c.eval_data = optarg; break;
        case O_OUT: c.out = optarg; break;
        case O_FREEZE: c.freeze = optarg; break;
        case O_LOG: c.log_json = optarg; break;
        case O_SELECT: c.select_data = optarg; break;
        case O_MASK: c.mask_h5 = optarg; break;
        case O_ACTLSQ: c.act_lsq = 1; break;
        case O_SRANGE: bad = parse_range(optarg, &c.select_first, &c.select_count); break;
        case O_DRANGE: bad = parse_range(optarg, &c.data_first, &c.data_count); break;
        case O_ERANGE: bad = parse_range(optarg, &c.eval_first, &c.eval_count); break;
        case O_HEAD: bad = !num_ok || d < 2 || d > 1e6 || (c.head = (int)d) != d; break;
        case O_EPOCHS: bad = !num_ok || d < 1 || (c.epochs = (int)d) != d; break;
        case O_BATCH: bad = !num_ok || d < 1 || d > 1e5 || (c.batch = (int)d) != d; break;
        case O_GRAIN: bad = !num_ok || d < 1 || d > 1e5 || (c.grain = (int)d) != d; break;
        case O_EBATCH: bad = !num_ok || d < 1 || d > 1e5 || (c.eval_batch = (int)d) != d; break;
        case O_MAXSTEPS: bad = !num_ok || d < 1 || (c.max_steps = (int64_t)d) != d; break;
        case O_SEQLEN: bad = !num_ok || d < 3 || d > 4096 || (c.seqlen = (int)d) != d; break;
        case O_SAVE: bad = !num_ok || d < 1 || (c.save_every = (int)d) != d; break;
        case O_PROGRESS: bad = !num_ok || d < 1 || (c.progress_every = (int)d) != d; break;
        case O_SEED: bad = !num_ok || d < 0 || (c.seed = (uint64_t)d) != d; break;
        case O_LR: bad = !num_ok || !(d > 0) || (c.opt.lr = d) != d; break;
        case O_WD: bad = !num_ok || d < 0 || (c.opt.weight_decay = d) != d; break;
        case O_WARMUP: bad = !num_ok || d < 0 || d >= 1 || (c.opt.warmup = d) != d; break;
        case O_CLIP: bad = !num_ok || d < 0 || (c.opt.clip = d) != d; break;
        case O_DISTILL:
            if (!strcmp(optarg, "embedding"))
                c.distill = -1;
            else
                bad = !num_ok || d < 0 || d > 1 || (c.distill = d) != d;
            break;
        case O_TEMP: bad = !num_ok || !(d > 0) || (c.temperature = d) != d; break;
        case O_QAT:
            c.qinit = optarg;
            c.fq_mode = QD_FQ_QAT;
            break;
        case O_SCALE:
            c.qinit = optarg;
            c.fq_mode = QD_FQ_SCALE_ONLY;
            break;
        case O_RESUME: c.resume = 1; break;
        case O_QUIET: c.quiet = 1; break;
        case 'h':
            if (qd_cli_is_root(comm)) fputs(finetune_help, stdout);
            return QD_EXIT_OK;
        default: return qd_cli_usage_error(comm, "finetune", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
        if (bad) return qd_cli_usage_error(comm, "finetune", "--%s %s: invalid value", lo[li].name, optarg);
        li = -1;
    }
    if (optind < argc) return qd_cli_usage_error(comm, "finetune", "unexpected argument '%s'", argv[optind]);
    if (!c.model) return qd_cli_usage_error(comm, "finetune", "missing --model DIR");
    if (!c.data) return qd_cli_usage_error(comm, "finetune", "missing --data PATH");
    if (!c.out) return qd_cli_usage_error(comm, "finetune", "missing --out OUT");
    size_t ol = strlen(c.out);
    int h5 = ol > 3 && !strcmp(c.out + ol - 3, ".h5");
    if (c.qinit && !h5)
        return qd_cli_usage_error(comm, "finetune", "--qat/--scale-only write a qdist model: --out FILE.h5");
    if (!c.qinit && h5) return qd_cli_usage_error(comm, "finetune", "--out FILE.h5 needs --qat or --scale-only");
    if (c.qinit && (c.head || strcmp(c.freeze, "none")))
        return qd_cli_usage_error(comm, "finetune", "--head/--freeze do not apply to --qat/--scale-only");
    if (c.act_lsq && !c.qinit)
        return qd_cli_usage_error(comm, "finetune", "--act-lsq needs --qat FILE.h5 or --scale-only FILE.h5");
    if (c.qinit && c.mask_h5)
        return qd_cli_usage_error(comm, "finetune", "--qat/--scale-only keep their file's own pruning: no --mask");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    int st = qd_ft_run(&c, comm);
    if (st != QD_OK && qd_cli_is_root(comm)) {
        fflush(stdout);
        if (st != QD_EINTR) fprintf(stderr, "qdist finetune: %s\n", qd_errmsg());
        fflush(stderr);
    }
    qd_coll_barrier(comm);
    return st == QD_OK ? QD_EXIT_OK : st == QD_EINTR ? QD_EXIT_INTERRUPTED : QD_EXIT_FAIL;
}
