/* qdist entry point: MPI start-up and shut-down around qd_cli_run (coordinator/cli.c). */
#include <mpi.h>

#include "collective/collective.h"
#include "coordinator/cli.h"

int main(int argc, char **argv)
{
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    qd_coll_install_abort_hook();
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank != 0) qd_log_set_level(QD_LOG_WARN);
    int rc = qd_cli_run(argc, argv, MPI_COMM_WORLD);
    MPI_Finalize();
    return rc;
}
