/* qdist entry point: MPI start-up and shut-down around qd_cli_run (coordinator/cli.c). */
#include <mpi.h>

#include "collective/collective.h"
#include "coordinator/cli.h"

int main(int argc, char **argv)
{
    MPI_Comm world = qd_coll_init(&argc, &argv);
    if (qd_coll_rank(world) != 0) qd_log_set_level(QD_LOG_WARN);
    int rc = qd_cli_run(argc, argv, world);
    qd_coll_finalize();
    return rc;
}
