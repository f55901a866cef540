#include "coordinator/cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "collective/collective.h"
#include "common/qd_common.h"

static const qd_command g_commands[] = {
    {"inspect", "describe a checkpoint (safetensors file or directory) or a qdist model", qd_cmd_inspect},
    {"quantize", "quantize a checkpoint into one HDF5 model (mpirun -n N for N ranks)", qd_cmd_quantize},
    {"calibrate", "run calibration samples through the model: the statistics GPTQ uses, time, memory",
     qd_cmd_calibrate},
    {"eval", "compare a quantized model with its FP32 original: accuracy, cosine, latency, memory, size", qd_cmd_eval},
    {"sweep", "quantize and evaluate a grid of schemes (bits, granularity, method, activations); CSV, JSON, plots",
     qd_cmd_sweep},
    {"forward", "run a model (FP32 or quantized) on pre-tokenized inputs, write and compare its outputs",
     qd_cmd_forward},
    {"finetune", "fine-tune a classifier (data parallel), transfer learning, QAT, scale-only fine-tuning",
     qd_cmd_finetune},
    {"export", "write a dequantized safetensors checkpoint from a qdist model", qd_cmd_export},
    {"plan", "show how a job would be spread over N ranks (cost and memory per rank)", qd_cmd_plan},
    {"serve", "run as a service: take jobs over ZeroMQ, one at a time, on all ranks", qd_cmd_serve},
    {"submit", "send a job to a running service", qd_cmd_submit},
    {"status", "show the state of a service's jobs", qd_cmd_status},
    {"cancel", "cancel a queued or running job of a service", qd_cmd_cancel},
    {"shutdown", "stop a service (drain the queue, or --finish)", qd_cmd_shutdown},
    {"watch", "follow a job's progress events (progress bar with ETA)", qd_cmd_watch},
    {"keygen", "write a CURVE key pair for an encrypted service", qd_cmd_keygen},
};

int qd_cli_is_root(MPI_Comm comm) { return qd_coll_rank(comm) == 0; }

int qd_cli_root_verdict(MPI_Comm comm, const char *cmd, int st)
{
    char msg[1024];
    if (!qd_coll_agree_msg(comm, st, msg, sizeof msg, NULL)) return QD_EXIT_OK;
    if (qd_cli_is_root(comm)) fprintf(stderr, "qdist %s: %s\n", cmd, msg);
    return QD_EXIT_FAIL;
}

int qd_cli_usage_error(MPI_Comm comm, const char *cmd, const char *fmt, ...)
{
    if (qd_cli_is_root(comm)) {
        va_list ap;
        fprintf(stderr, "qdist%s%s: ", cmd ? " " : "", cmd ? cmd : "");
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fprintf(stderr, "\nTry 'qdist%s%s --help'.\n", cmd ? " " : "", cmd ? cmd : "");
    }
    return QD_EXIT_USAGE;
}

static void print_help(FILE *f)
{
    fprintf(f,
            "qdist %s — quantize transformer checkpoints (BERT, ViT) to INT8/INT4 across MPI ranks\n"
            "\n"
            "Usage: [mpirun -n N] qdist <command> [options]\n"
            "\n"
            "Commands:\n",
            QD_VERSION);
    for (size_t i = 0; i < QD_ARRAY_LEN(g_commands); i++)
        fprintf(f, "  %-10s %s\n", g_commands[i].name, g_commands[i].summary);
    fprintf(f, "\n"
               "Options:\n"
               "  -h, --help     this text; 'qdist <command> --help' for a command's options\n"
               "  -V, --version  print the version\n");
}

int qd_cli_run(int argc, char **argv, MPI_Comm comm)
{
    if (argc < 2) {
        if (qd_cli_is_root(comm)) print_help(stderr);
        return QD_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        if (qd_cli_is_root(comm)) print_help(stdout);
        return QD_EXIT_OK;
    }
    if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version")) {
        if (qd_cli_is_root(comm)) printf("qdist %s\n", QD_VERSION);
        return QD_EXIT_OK;
    }
    for (size_t i = 0; i < QD_ARRAY_LEN(g_commands); i++)
        if (!strcmp(cmd, g_commands[i].name)) return g_commands[i].run(argc - 1, argv + 1, comm);
    if (cmd[0] == '-') return qd_cli_usage_error(comm, NULL, "unknown option '%s'", cmd);
    return qd_cli_usage_error(comm, NULL, "unknown command '%s'", cmd);
}
