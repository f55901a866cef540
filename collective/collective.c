/* collective/collective.c — start-up, MPI/HDF5 failure reporting behind QD_MPI_CHECK /
 * QD_H5_CHECK, agreement, broadcasts, reductions and gathers (see collective.h). */
#include "collective/collective.h"

#include <hdf5.h>
#include <limits.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

static void mpi_abort_hook(int code)
{
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (inited && !finalized) MPI_Abort(MPI_COMM_WORLD, code);
    abort();
}

void qd_coll_install_abort_hook(void) { qd_set_abort_hook(mpi_abort_hook); }

MPI_Comm qd_coll_init(int *argc, char ***argv)
{
    int provided = 0;
    QD_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
    /* failures come back to QD_MPI_CHECK, which reports them before aborting every rank */
    QD_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    qd_coll_install_abort_hook();
    return MPI_COMM_WORLD;
}

void qd_coll_finalize(void) { QD_MPI_CHECK(MPI_Finalize()); }

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

int qd_coll_rank(MPI_Comm comm)
{
    int r = 0;
    QD_MPI_CHECK(MPI_Comm_rank(comm, &r));
    return r;
}

int qd_coll_size(MPI_Comm comm)
{
    int s = 1;
    QD_MPI_CHECK(MPI_Comm_size(comm, &s));
    return s;
}

int qd_coll_node_size(MPI_Comm comm)
{
    MPI_Comm node;
    int n = 1;
    QD_MPI_CHECK(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
    QD_MPI_CHECK(MPI_Comm_size(node, &n));
    QD_MPI_CHECK(MPI_Comm_free(&node));
    return n;
}

void qd_coll_barrier(MPI_Comm comm) { QD_MPI_CHECK(MPI_Barrier(comm)); }

/* ---- agreement -------------------------------------------------------------------------------- */

int qd_coll_agree(MPI_Comm comm, int local_status, int *failed_rank)
{
    /* The lowest failing rank's status wins, so every rank takes the same branch. */
    int size = qd_coll_size(comm), rank = qd_coll_rank(comm);
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
    int rank = qd_coll_rank(comm);
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", rank == fr ? qd_errmsg() : "");
    QD_MPI_CHECK(MPI_Bcast(buf, (int)sizeof buf, MPI_CHAR, fr, comm));
    buf[sizeof buf - 1] = 0;
    if (msg && msgcap) snprintf(msg, msgcap, "%s", buf);
    if (rank != fr) qd_err_set(st, "%s", buf);
    return st;
}

int qd_coll_agree_status(MPI_Comm comm, int local_status)
{
    char msg[1024];
    return qd_coll_agree_msg(comm, local_status, msg, sizeof msg, NULL);
}

/* ---- broadcasts and gathers ------------------------------------------------------------------- */

/* MPI counts are int: long buffers go in pieces */
enum { CHUNK = 1 << 28 };

void qd_coll_bcast(MPI_Comm comm, void *buf, size_t bytes, int root)
{
    for (size_t off = 0; off < bytes; off += CHUNK)
        QD_MPI_CHECK(MPI_Bcast((char *)buf + off, (int)QD_MIN((size_t)CHUNK, bytes - off), MPI_BYTE, root, comm));
}

char *qd_coll_bcast_text(MPI_Comm comm, const char *text, int root)
{
    long long len = qd_coll_rank(comm) == root ? (long long)strlen(text ? text : "") : 0;
    QD_MPI_CHECK(MPI_Bcast(&len, 1, MPI_LONG_LONG, root, comm));
    char *t = qd_xmalloc((size_t)len + 1);
    if (qd_coll_rank(comm) == root) memcpy(t, text ? text : "", (size_t)len);
    qd_coll_bcast(comm, t, (size_t)len, root);
    t[len] = 0;
    return t;
}

void qd_coll_allgather(MPI_Comm comm, const void *mine, size_t bytes, void *all)
{
    QD_ASSERT(bytes <= INT_MAX);
    QD_MPI_CHECK(MPI_Allgather(mine, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE, comm));
}

void qd_coll_gather(MPI_Comm comm, const void *mine, size_t bytes, void *all, int root)
{
    QD_ASSERT(bytes <= INT_MAX);
    QD_MPI_CHECK(MPI_Gather(mine, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE, root, comm));
}

/* ---- reductions ------------------------------------------------------------------------------- */

static MPI_Op op_of(qd_coll_op op) { return op == QD_COLL_MIN ? MPI_MIN : op == QD_COLL_MAX ? MPI_MAX : MPI_SUM; }

void qd_coll_allreduce_ints(MPI_Comm comm, int *v, int n, qd_coll_op op)
{
    QD_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_INT, op_of(op), comm));
}

void qd_coll_allreduce_doubles(MPI_Comm comm, double *v, int n, qd_coll_op op)
{
    QD_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, op_of(op), comm));
}

/* In-place all-reduce of n elements of `type`, `step` elements per call. */
static void allreduce_long(MPI_Comm comm, void *v, int64_t n, size_t elsize, MPI_Datatype type, MPI_Op op, int64_t step)
{
    for (int64_t off = 0; off < n; off += step)
        QD_MPI_CHECK(
            MPI_Allreduce(MPI_IN_PLACE, (char *)v + (size_t)off * elsize, (int)QD_MIN(step, n - off), type, op, comm));
}

void qd_coll_max_floats(MPI_Comm comm, float *v, int64_t n)
{
    allreduce_long(comm, v, n, sizeof *v, MPI_FLOAT, MPI_MAX, INT_MAX);
}

/* 32 MB a call: an MPI reduction may hold temporaries as large as its message beside v (a
 * 268 MB Hessian's sums in one call cost ~500 MB more at the peak); exact sums in any pieces */
void qd_coll_sum_i64(MPI_Comm comm, int64_t *v, int64_t n)
{
    allreduce_long(comm, v, n, sizeof *v, MPI_INT64_T, MPI_SUM, QD_COLL_I64_STEP);
}

void qd_coll_merge_u8(MPI_Comm comm, uint8_t *v, int64_t n)
{
    allreduce_long(comm, v, n, 1, MPI_UINT8_T, MPI_BOR, 1 << 28);
}

/* x + 0 + ... + 0 == x exactly, whatever the order */
void qd_coll_merge_floats(MPI_Comm comm, float *v, int64_t n)
{
    allreduce_long(comm, v, n, sizeof *v, MPI_FLOAT, MPI_SUM, INT_MAX);
}

void qd_coll_merge_i32(MPI_Comm comm, int32_t *v, int64_t n)
{
    allreduce_long(comm, v, n, sizeof *v, MPI_INT32_T, MPI_SUM, INT_MAX);
}
