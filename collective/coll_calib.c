/* collective/coll_calib.c — reductions to one rank and hand-offs to a few (see coll_calib.h). */
#include "collective/coll_calib.h"

#include <limits.h>

#include "collective/collective.h"

#define QD_SHARE_TAG 918

void qd_coll_reduce_i64(MPI_Comm comm, int64_t *v, int64_t n, int root)
{
    const int me = qd_coll_rank(comm);
    for (int64_t off = 0, step = QD_COLL_I64_STEP; off < n; off += step) {
        const int cnt = (int)QD_MIN(step, n - off);
        QD_MPI_CHECK(MPI_Reduce(me == root ? MPI_IN_PLACE : (void *)(v + off), me == root ? v + off : NULL, cnt,
                                MPI_INT64_T, MPI_SUM, root, comm));
    }
}

void qd_coll_share(MPI_Comm comm, void *buf, size_t bytes, int root, const uint8_t *member)
{
    const int me = qd_coll_rank(comm), size = qd_coll_size(comm);
    if (me != root && !member[me]) return;
    for (size_t off = 0; off < bytes; off += (size_t)INT_MAX) {
        const int cnt = (int)QD_MIN((size_t)INT_MAX, bytes - off);
        if (me != root) {
            QD_MPI_CHECK(MPI_Recv((char *)buf + off, cnt, MPI_BYTE, root, QD_SHARE_TAG, comm, MPI_STATUS_IGNORE));
            continue;
        }
        for (int r = 0; r < size; r++)
            if (r != root && member[r]) QD_MPI_CHECK(MPI_Send((char *)buf + off, cnt, MPI_BYTE, r, QD_SHARE_TAG, comm));
    }
}
