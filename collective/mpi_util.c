/* MPI/HDF5 failure reporting behind QD_MPI_CHECK / QD_H5_CHECK, and the MPI abort hook. */
#include "collective/collective.h"

#include <hdf5.h>
#include <mpi.h>
#include <stdlib.h>

static void mpi_abort_hook(int code)
{
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (inited && !finalized) MPI_Abort(MPI_COMM_WORLD, code);
    abort();
}

void qd_coll_install_abort_hook(void) { qd_set_abort_hook(mpi_abort_hook); }

void qd_mpi_fail(int rc, const char *call, const char *file, int line)
{
    char msg[MPI_MAX_ERROR_STRING] = {0};
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "code %d", rc);
    qd_fatal(file, line, "MPI call %s failed: %s", call, msg);
}

void qd_h5_fail(long long rc, const char *call, const char *file, int line)
{
    H5Eprint2(H5E_DEFAULT, stderr);
    qd_fatal(file, line, "HDF5 call %s failed (%lld)", call, rc);
}

int qd_coll_agree(MPI_Comm comm, int local_status, int *failed_rank)
{
    /* The lowest failing rank's status wins, so every rank takes the same branch. */
    int size, rank;
    QD_MPI_CHECK(MPI_Comm_size(comm, &size));
    QD_MPI_CHECK(MPI_Comm_rank(comm, &rank));
    int mine[2] = {local_status < 0 ? rank : size, local_status};
    int all[2];
    /* MINLOC-style: first find the lowest failing rank, then broadcast its status. */
    QD_MPI_CHECK(MPI_Allreduce(&mine[0], &all[0], 1, MPI_INT, MPI_MIN, comm));
    if (all[0] == size) {
        if (failed_rank) *failed_rank = -1;
        return QD_OK;
    }
    all[1] = local_status;
    QD_MPI_CHECK(MPI_Bcast(&all[1], 1, MPI_INT, all[0], comm));
    if (failed_rank) *failed_rank = all[0];
    return all[1];
}

int qd_coll_agree_msg(MPI_Comm comm, int local_status, char *msg, size_t msgcap, int *failed_rank)
{
    int fr = -1;
    int st = qd_coll_agree(comm, local_status, &fr);
    if (failed_rank) *failed_rank = fr;
    if (st == QD_OK) return QD_OK;
    int rank;
    QD_MPI_CHECK(MPI_Comm_rank(comm, &rank));
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", rank == fr ? qd_errmsg() : "");
    QD_MPI_CHECK(MPI_Bcast(buf, (int)sizeof buf, MPI_CHAR, fr, comm));
    buf[sizeof buf - 1] = 0;
    if (msg && msgcap) snprintf(msg, msgcap, "%s", buf);
    if (rank != fr) qd_err_set(st, "%s", buf);
    return st;
}
