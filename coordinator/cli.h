/* coordinator/cli.h — the program's commands. main() initialises MPI and hands argv to
 * qd_cli_run; each command is a function of (argc, argv, comm) so that tests can run a whole
 * command on MPI_COMM_SELF or a split communicator.
 *
 * Exit codes: 0 success, 1 a job error (bad input, failed rank), 2 usage error,
 * 3 interrupted (SIGTERM/SIGINT; the partial output can be resumed). */
#ifndef QD_CLI_H
#define QD_CLI_H

#include <mpi.h>

#define QD_EXIT_OK          0
#define QD_EXIT_FAIL        1
#define QD_EXIT_USAGE       2
#define QD_EXIT_INTERRUPTED 3

typedef int (*qd_cmd_fn)(int argc, char **argv, MPI_Comm comm);

typedef struct {
    const char *name;
    const char *summary; /* one line for `qdist --help` */
    qd_cmd_fn run;
} qd_command;

/* Runs `qdist <command> ...` on comm; returns the process exit code (same on every rank). */
int qd_cli_run(int argc, char **argv, MPI_Comm comm);

/* Commands (coordinator/cmd_*.c). */
int qd_cmd_inspect(int argc, char **argv, MPI_Comm comm);
int qd_cmd_quantize(int argc, char **argv, MPI_Comm comm);
int qd_cmd_calibrate(int argc, char **argv, MPI_Comm comm);
int qd_cmd_eval(int argc, char **argv, MPI_Comm comm);
int qd_cmd_sweep(int argc, char **argv, MPI_Comm comm);
int qd_cmd_forward(int argc, char **argv, MPI_Comm comm);
int qd_cmd_export(int argc, char **argv, MPI_Comm comm);
int qd_cmd_finetune(int argc, char **argv, MPI_Comm comm);
int qd_cmd_plan(int argc, char **argv, MPI_Comm comm);
int qd_cmd_serve(int argc, char **argv, MPI_Comm comm);
int qd_cmd_submit(int argc, char **argv, MPI_Comm comm);
int qd_cmd_status(int argc, char **argv, MPI_Comm comm);
int qd_cmd_cancel(int argc, char **argv, MPI_Comm comm);
int qd_cmd_shutdown(int argc, char **argv, MPI_Comm comm);
int qd_cmd_watch(int argc, char **argv, MPI_Comm comm);
int qd_cmd_keygen(int argc, char **argv, MPI_Comm comm);

/* Usage error helper: prints "qdist CMD: message" and "Try 'qdist CMD --help'." on rank 0. */
int qd_cli_usage_error(MPI_Comm comm, const char *cmd, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int qd_cli_is_root(MPI_Comm comm);
/* For commands whose work rank 0 does alone: every rank takes rank 0's status st; on failure rank 0
 * prints "qdist CMD: message". Returns the exit code (same on every rank). */
int qd_cli_root_verdict(MPI_Comm comm, const char *cmd, int st);

#endif
