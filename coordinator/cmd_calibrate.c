/* qdist calibrate: run calibration data through the FP32 model on all ranks and report the
 * statistics GPTQ would use (per input group: tokens, mean diagonal of H, largest input), time
 * and peak memory per rank. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "collective/collective.h"
#include "coordinator/cli.h"
#include "coordinator/job_config.h"
#include "model/calib.h"
#include "model/calib_data.h"
#include "model/model.h"
#include "worker/calib_run.h"

static const char *calibrate_help =
    "Usage: mpirun -n N qdist calibrate --model DIR --calib PATH [options]\n"
    "\n"
    "Runs calibration samples through the FP32 model and collects, for every Linear input of the\n"
    "encoder blocks, the per-channel absmax and the Hessian H = 2/N sum x x^T (N real tokens) that\n"
    "GPTQ uses. The statistics are exact integer sums on a per-channel grid, so they are the same\n"
    "bits for any number of ranks, micro-batch size or mode. Prints one line per input group, the\n"
    "time, and each rank's peak memory.\n"
    "\n"
    "  --model DIR             a Hugging Face checkpoint directory (config.json + weights)\n"
    "  --calib PATH            samples: a text file (one per line) or a TSV with a 'sentence'\n"
    "                          column for BERT models; an IDX images file or an image folder for\n"
    "                          ViT models\n"
    "  --nsamples N            samples to draw (default 128; 0 = all)\n"
    "  --seqlen L              tokens per text sample, padded/truncated (default 128)\n"
    "  --calib-seed S          seed of the sample selection (default 0)\n"
    "  --calib-mode MODE       data (samples split over ranks, statistics all-reduced; default)\n"
    "                          or pipeline (ranks own contiguous blocks, activations flow rank\n"
    "                          to rank; each rank keeps its blocks' statistics); the same names\n"
    "                          as 'qdist quantize --calib-mode' (its old names sequential and fp\n"
    "                          are accepted here too, as data and pipeline)\n"
    "  --microbatch N          samples per micro-batch (default 8)\n"
    "  --json                  print one JSON object instead of the table\n"
    "  --quiet                 no progress lines\n"
    "  -h, --help              this text\n";

enum { O_MODEL = 256, O_CALIB, O_NSAMPLES, O_SEQLEN, O_SEED, O_MODE, O_MB, O_JSON, O_QUIET };

static long peak_rss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss; /* KiB on Linux */
}

static int parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

/* Per input group, this rank's share of [present, tokens, mean diag H, max absmax] (row[4 g ..]),
 * to be summed over ranks: the groups it owns (data-parallel mode: rank 0 alone, every rank holds
 * the all-reduced statistics). */
static double *group_rows(const qd_model *m, qd_calib *stats, qd_calib_mode mode, int rank)
{
    int ng = qd_model_num_groups(m);
    double *row = qd_xcalloc((size_t)ng * 4, sizeof *row);
    for (int g = 0; g < ng; g++) {
        qd_calib_group *cg = qd_calib_find(stats, g);
        if (!cg || (mode == QD_CALIB_DATA_PARALLEL && rank != 0)) continue;
        double diag = 0, amax = 0;
        for (int i = 0; i < cg->in; i++) {
            diag += 2.0 / (double)cg->rows *
                    ldexp((double)cg->acc[qd_calib_acc_index(cg->in, i, i)], 2 * cg->exp[i] - 2 * QD_CALIB_BITS);
            if (cg->absmax[i] > amax) amax = cg->absmax[i];
        }
        row[g * 4] = 1;
        row[g * 4 + 1] = (double)cg->rows;
        row[g * 4 + 2] = diag / cg->in;
        row[g * 4 + 3] = amax;
    }
    return row;
}

/* Rank 0's report: one JSON object, or the table and the time and memory line. */
static void report(const qd_model *m, const char *model, qd_calib_data *data, qd_calib_mode mode, int size, int json,
                   double t_run, double t_load, const long *rss_all, const double *row)
{
    const int ng = qd_model_num_groups(m);
    long rss_max = 0;
    for (int r = 0; r < size; r++)
        if (rss_all[r] > rss_max) rss_max = rss_all[r];
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", model);
        cJSON_AddStringToObject(j, "mode", qd_calib_mode_name(mode));
        cJSON_AddNumberToObject(j, "ranks", size);
        cJSON_AddNumberToObject(j, "samples", qd_calib_data_count(data));
        cJSON_AddNumberToObject(j, "tokens_per_sample", qd_calib_data_tokens(data));
        cJSON_AddNumberToObject(j, "real_tokens", qd_calib_data_real_tokens(data));
        cJSON_AddNumberToObject(j, "seconds", t_run);
        cJSON_AddNumberToObject(j, "load_seconds", t_load);
        cJSON *rs = cJSON_AddArrayToObject(j, "peak_rss_bytes");
        for (int r = 0; r < size; r++) cJSON_AddItemToArray(rs, cJSON_CreateNumber((double)rss_all[r] * 1024));
        cJSON *gs = cJSON_AddArrayToObject(j, "groups");
        for (int g = 0; g < ng; g++) {
            const qd_linear *L = qd_model_linear(m, qd_model_group_first(m, g));
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "input_of", L->name);
            cJSON_AddNumberToObject(e, "in", L->in);
            cJSON_AddNumberToObject(e, "tokens", row[g * 4 + 1]);
            cJSON_AddNumberToObject(e, "mean_diag_h", row[g * 4 + 2]);
            cJSON_AddNumberToObject(e, "max_abs", row[g * 4 + 3]);
            cJSON_AddItemToArray(gs, e);
        }
        char *s = cJSON_Print(j);
        puts(s);
        free(s);
        cJSON_Delete(j);
    } else {
        printf("%-60s %6s %9s %12s %10s\n", "input of", "in", "tokens", "mean diag H", "max |x|");
        for (int g = 0; g < ng; g++) {
            const qd_linear *L = qd_model_linear(m, qd_model_group_first(m, g));
            printf("%-60s %6d %9.0f %12.5g %10.4g\n", L->name, L->in, row[g * 4 + 1], row[g * 4 + 2], row[g * 4 + 3]);
        }
        printf("calibrate: %.2f s (2 passes), load %.2f s; peak RSS per rank:", t_run, t_load);
        for (int r = 0; r < size; r++) printf(" %.1f", rss_all[r] / 1024.0);
        printf(" MiB (max %.1f MiB)\n", rss_max / 1024.0);
    }
}

int qd_cmd_calibrate(int argc, char **argv, MPI_Comm comm)
{
    static struct option lo[] = {{"model", required_argument, 0, O_MODEL},
                                 {"calib", required_argument, 0, O_CALIB},
                                 {"nsamples", required_argument, 0, O_NSAMPLES},
                                 {"seqlen", required_argument, 0, O_SEQLEN},
                                 {"calib-seed", required_argument, 0, O_SEED},
                                 {"calib-mode", required_argument, 0, O_MODE},
                                 {"microbatch", required_argument, 0, O_MB},
                                 {"json", no_argument, 0, O_JSON},
                                 {"quiet", no_argument, 0, O_QUIET},
                                 {"help", no_argument, 0, 'h'},
                                 {0, 0, 0, 0}};
    const char *model = NULL, *calib = NULL;
    long nsamples = 128, seqlen = 128, seed = 0, mb = 8;
    int json = 0, quiet = 0;
    qd_calib_mode mode = QD_CALIB_DATA_PARALLEL;
    optind = 1;
    opterr = 0;
    int o;
    while ((o = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (o) {
        case 'h':
            if (qd_cli_is_root(comm)) fputs(calibrate_help, stdout);
            return QD_EXIT_OK;
        case O_MODEL: model = optarg; break;
        case O_CALIB: calib = optarg; break;
        case O_NSAMPLES:
            if (parse_int(optarg, 0, 1L << 30, &nsamples))
                return qd_cli_usage_error(comm, "calibrate", "--nsamples must be an integer >= 0, got '%s'", optarg);
            break;
        case O_SEQLEN:
            if (parse_int(optarg, 3, 1 << 16, &seqlen))
                return qd_cli_usage_error(comm, "calibrate", "--seqlen must be an integer >= 3, got '%s'", optarg);
            break;
        case O_SEED:
            if (parse_int(optarg, 0, 0x7fffffffL, &seed))
                return qd_cli_usage_error(comm, "calibrate", "--calib-seed must be an integer >= 0, got '%s'", optarg);
            break;
        case O_MB:
            if (parse_int(optarg, 1, 1 << 20, &mb))
                return qd_cli_usage_error(comm, "calibrate", "--microbatch must be an integer >= 1, got '%s'", optarg);
            break;
        case O_MODE: {
            int m = qd_calib_mode_from_name(optarg);
            if (m < 0)
                return qd_cli_usage_error(comm, "calibrate",
                                          "--calib-mode must be data or pipeline (or their old names sequential, fp), "
                                          "got '%s'",
                                          optarg);
            mode = (qd_calib_mode)m;
            break;
        }
        case O_JSON: json = 1; break;
        case O_QUIET: quiet = 1; break;
        default: return qd_cli_usage_error(comm, "calibrate", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return qd_cli_usage_error(comm, "calibrate", "unexpected argument '%s'", argv[optind]);
    if (!model) return qd_cli_usage_error(comm, "calibrate", "missing --model DIR");
    if (!calib) return qd_cli_usage_error(comm, "calibrate", "missing --calib PATH");

    int rank, size;
    rank = qd_coll_rank(comm);
    size = qd_coll_size(comm);
    if (!quiet && !json) qd_log_set_level(QD_LOG_INFO);
    double t0 = qd_now();
    char msg[1024];
    qd_model *m = NULL;
    qd_calib_data *data = NULL;
    qd_calib *stats = NULL;
    int rc = qd_model_load(model, &m);
    if (!rc) rc = qd_calib_data_open(m, calib, (int)nsamples, (int)seqlen, (uint64_t)seed, &data);
    uint8_t *sel = NULL;
    if (!rc) {
        sel = qd_xmalloc((size_t)qd_model_num_groups(m));
        qd_calib_rank_groups(m, NULL, mode, rank, size, sel);
        rc = qd_calib_new(m, sel, &stats);
    }
    int failed = -1;
    rc = qd_coll_agree_msg(comm, rc, msg, sizeof msg, &failed);
    if (rc) {
        if (rank == 0) fprintf(stderr, "qdist calibrate: error on rank %d: %s\n", failed, msg);
        goto out;
    }
    double t_load = qd_now() - t0;
    if (rank == 0 && !quiet && !json)
        printf(
            "calibrate: %s, %d %s samples x %d tokens (%d real), %s mode on %d rank%s, statistics %.1f MiB per rank\n",
            model, qd_calib_data_count(data), qd_calib_data_kind(data), qd_calib_data_tokens(data),
            qd_calib_data_real_tokens(data), qd_calib_mode_name(mode), size, size > 1 ? "s" : "",
            qd_calib_bytes(stats) / 1048576.0);
    qd_calib_opts opts = {.mode = mode, .microbatch = (int)mb, .quiet = quiet || json};
    double t1 = qd_now();
    rc = qd_calib_run(comm, m, data, &opts, stats);
    double t_run = qd_now() - t1;
    if (rc) {
        if (rank == 0) fprintf(stderr, "qdist calibrate: %s\n", qd_errmsg());
        goto out;
    }
    /* per group: tokens, mean diag H, max absmax; gathered on rank 0 from the owners */
    int ng = qd_model_num_groups(m);
    double *row = group_rows(m, stats, mode, rank);
    qd_coll_allreduce_doubles(comm, row, ng * 4, QD_COLL_SUM);
    long rss = peak_rss_kib();
    long *rss_all = qd_xcalloc((size_t)size, sizeof *rss_all);
    qd_coll_gather(comm, &rss, sizeof rss, rss_all, 0);
    if (rank == 0) report(m, model, data, mode, size, json, t_run, t_load, rss_all, row);
    free(rss_all);
    free(row);
out:
    free(sel);
    qd_calib_free(stats);
    qd_calib_data_free(data);
    qd_model_free(m);
    return rc == QD_OK ? QD_EXIT_OK : rc == QD_EINVAL || rc == QD_ECONFIG ? QD_EXIT_USAGE : QD_EXIT_FAIL;
}
