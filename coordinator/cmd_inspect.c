/* qdist inspect: placeholder-free minimal version; the shard work fills in the table. */
#include <stdio.h>
#include <string.h>

#include "coordinator/cli.h"
#include "common/qd_common.h"

int qd_cmd_inspect(int argc, char **argv, MPI_Comm comm) {
    if (argc < 2) return qd_cli_usage_error(comm, "inspect", "missing PATH");
    return qd_cli_usage_error(comm, "inspect", "not built yet");
}
