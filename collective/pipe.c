/* collective/pipe.c — the pipeline hand-off between stages (see collective.h): rank r receives
 * block i from r - 1 into one of two buffers while it works on the other, and sends it on to
 * r + 1 without waiting; the tag marks blocks sent after an error. */
#include <stdlib.h>

#include "collective/collective.h"

enum { TAG_DATA = 7101, TAG_POISON = 7102 };

struct qd_coll_pipe {
    MPI_Comm comm;
    int rank, n, prev, next;
    int64_t cap;
    float *buf[2];
    MPI_Request sreq[2], rreq[2];
};

static void post_recv(qd_coll_pipe *p, int slot)
{
    QD_MPI_CHECK(MPI_Irecv(p->buf[slot], (int)p->cap, MPI_FLOAT, p->prev, MPI_ANY_TAG, p->comm, &p->rreq[slot]));
}

qd_coll_pipe *qd_coll_pipe_open(MPI_Comm comm, int64_t cap, int n)
{
    qd_coll_pipe *p = qd_xcalloc(1, sizeof *p);
    p->comm = comm;
    p->rank = qd_coll_rank(comm);
    p->n = n;
    p->cap = cap;
    p->prev = p->rank - 1;
    p->next = p->rank + 1 < qd_coll_size(comm) ? p->rank + 1 : MPI_PROC_NULL;
    for (int s = 0; s < 2; s++) {
        p->buf[s] = qd_xmalloc((size_t)(cap > 0 ? cap : 1) * sizeof(float)); /* a few MiB */
        p->sreq[s] = p->rreq[s] = MPI_REQUEST_NULL;
    }
    if (p->rank > 0 && n > 0) post_recv(p, 0);
    return p;
}

float *qd_coll_pipe_take(qd_coll_pipe *p, int i, int *poisoned)
{
    const int s = i % 2;
    *poisoned = 0;
    if (p->rank > 0) {
        MPI_Status st;
        QD_MPI_CHECK(MPI_Wait(&p->rreq[s], &st));
        *poisoned = st.MPI_TAG == TAG_POISON;
        if (i + 1 < p->n) { /* the next block arrives into the other buffer once it has left */
            const int s2 = (i + 1) % 2;
            QD_MPI_CHECK(MPI_Wait(&p->sreq[s2], MPI_STATUS_IGNORE));
            post_recv(p, s2);
        }
    } else
        QD_MPI_CHECK(MPI_Wait(&p->sreq[s], MPI_STATUS_IGNORE));
    return p->buf[s];
}

void qd_coll_pipe_pass(qd_coll_pipe *p, int i, int64_t count, int poisoned)
{
    const int s = i % 2;
    if (p->next == MPI_PROC_NULL) return;
    QD_MPI_CHECK(
        MPI_Isend(p->buf[s], (int)count, MPI_FLOAT, p->next, poisoned ? TAG_POISON : TAG_DATA, p->comm, &p->sreq[s]));
}

void qd_coll_pipe_close(qd_coll_pipe *p)
{
    QD_MPI_CHECK(MPI_Waitall(2, p->sreq, MPI_STATUSES_IGNORE));
    free(p->buf[0]);
    free(p->buf[1]);
    free(p);
}
