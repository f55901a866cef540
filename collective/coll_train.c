/* collective/coll_train.c — gradient tree sums and the small exchanges of training (coll_train.h). */
#include "collective/coll_train.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    float *buf;
    int level, start; /* covers grains [start, start + 2^level) */
} node;

#define QD_TREE_MAX 64

struct qd_coll_treesum {
    MPI_Comm comm;
    int rank, size;
    int64_t n;
    int grains, g0, g1, next; /* next grain to push */
    node st[QD_TREE_MAX];
    int depth;
    float *pool[QD_TREE_MAX + 1]; /* free buffers */
    int npool, nalloc;
};

static float *take(qd_coll_treesum *t)
{
    if (t->npool > 0) return t->pool[--t->npool];
    QD_ASSERT(t->nalloc < QD_TREE_MAX + 1);
    t->nalloc++;
    return qd_xmalloc((size_t)t->n * sizeof(float));
}
static void give(qd_coll_treesum *t, float *b) { t->pool[t->npool++] = b; }

int qd_coll_treesum_create(MPI_Comm comm, int64_t n, qd_coll_treesum **out)
{
    QD_ASSERT(n > 0 && n < INT32_MAX);
    qd_coll_treesum *t = qd_xcalloc(1, sizeof *t);
    t->comm = comm;
    t->n = n;
    QD_MPI_CHECK(MPI_Comm_rank(comm, &t->rank));
    QD_MPI_CHECK(MPI_Comm_size(comm, &t->size));
    *out = t;
    return QD_OK;
}

void qd_coll_treesum_free(qd_coll_treesum *t)
{
    if (!t) return;
    for (int i = 0; i < t->depth; i++) give(t, t->st[i].buf);
    for (int i = 0; i < t->npool; i++) free(t->pool[i]);
    free(t);
}

static void range_of(int grains, int size, int r, int *g0, int *g1)
{
    *g0 = (int)((int64_t)grains * r / size);
    *g1 = (int)((int64_t)grains * (r + 1) / size);
}

void qd_coll_treesum_begin(qd_coll_treesum *t, int grains, int *g0, int *g1)
{
    QD_ASSERT(t->depth == 0 && grains > 0);
    t->grains = grains;
    range_of(grains, t->size, t->rank, &t->g0, &t->g1);
    t->next = t->g0;
    *g0 = t->g0;
    *g1 = t->g1;
}

/* Siblings: same level, adjacent, the left one aligned to twice the size. */
static int siblings(const node *a, const node *b)
{
    return a->level == b->level && b->start == a->start + (1 << a->level) && a->start % (2 << a->level) == 0;
}

static void push_node(qd_coll_treesum *t, float *buf, int level, int start)
{
    QD_ASSERT(t->depth < QD_TREE_MAX);
    t->st[t->depth++] = (node){buf, level, start};
    while (t->depth >= 2 && siblings(&t->st[t->depth - 2], &t->st[t->depth - 1])) {
        node *a = &t->st[t->depth - 2], *b = &t->st[t->depth - 1];
        for (int64_t i = 0; i < t->n; i++) a->buf[i] += b->buf[i];
        give(t, b->buf);
        a->level++;
        t->depth--;
    }
}

float *qd_coll_treesum_slot(qd_coll_treesum *t)
{
    /* the slot is the buffer that the next push puts on the stack */
    if (t->npool == 0) give(t, take(t));
    return t->pool[t->npool - 1];
}

void qd_coll_treesum_push(qd_coll_treesum *t)
{
    QD_ASSERT(t->next < t->g1 && t->npool > 0);
    float *b = t->pool[--t->npool];
    push_node(t, b, 0, t->next++);
}

int qd_coll_treesum_finish(qd_coll_treesum *t, float *out)
{
    QD_ASSERT(t->next == t->g1);
    if (t->rank == 0) {
        for (int r = 1; r < t->size; r++) {
            int g0, g1;
            range_of(t->grains, t->size, r, &g0, &g1);
            if (g0 == g1) continue;
            int cnt = 0, meta[2 * QD_TREE_MAX];
            QD_MPI_CHECK(MPI_Recv(&cnt, 1, MPI_INT, r, 700, t->comm, MPI_STATUS_IGNORE));
            QD_ASSERT(cnt > 0 && cnt <= QD_TREE_MAX);
            QD_MPI_CHECK(MPI_Recv(meta, 2 * cnt, MPI_INT, r, 701, t->comm, MPI_STATUS_IGNORE));
            for (int i = 0; i < cnt; i++) {
                float *b = take(t);
                QD_MPI_CHECK(MPI_Recv(b, (int)t->n, MPI_FLOAT, r, 702, t->comm, MPI_STATUS_IGNORE));
                push_node(t, b, meta[2 * i], meta[2 * i + 1]);
            }
        }
        /* what is left: added from the top down (right to left) */
        QD_ASSERT(t->depth > 0);
        node *acc = &t->st[t->depth - 1];
        for (int i = t->depth - 2; i >= 0; i--) {
            float *l = t->st[i].buf;
            for (int64_t k = 0; k < t->n; k++) acc->buf[k] = l[k] + acc->buf[k];
        }
        memcpy(out, acc->buf, (size_t)t->n * sizeof *out);
    } else if (t->g1 > t->g0) {
        int cnt = t->depth, meta[2 * QD_TREE_MAX];
        for (int i = 0; i < cnt; i++) {
            meta[2 * i] = t->st[i].level;
            meta[2 * i + 1] = t->st[i].start;
        }
        QD_MPI_CHECK(MPI_Send(&cnt, 1, MPI_INT, 0, 700, t->comm));
        QD_MPI_CHECK(MPI_Send(meta, 2 * cnt, MPI_INT, 0, 701, t->comm));
        for (int i = 0; i < cnt; i++) QD_MPI_CHECK(MPI_Send(t->st[i].buf, (int)t->n, MPI_FLOAT, 0, 702, t->comm));
    }
    for (int i = 0; i < t->depth; i++) give(t, t->st[i].buf);
    t->depth = 0;
    return qd_coll_bcast_f32(t->comm, out, t->n);
}

int qd_coll_grain_stats(MPI_Comm comm, int grains, int per, const double *mine, double *all)
{
    int size, rank;
    QD_MPI_CHECK(MPI_Comm_size(comm, &size));
    QD_MPI_CHECK(MPI_Comm_rank(comm, &rank));
    int *cnt = qd_xmalloc((size_t)size * sizeof *cnt), *dis = qd_xmalloc((size_t)size * sizeof *dis);
    for (int r = 0; r < size; r++) {
        int g0, g1;
        range_of(grains, size, r, &g0, &g1);
        cnt[r] = (g1 - g0) * per;
        dis[r] = g0 * per;
    }
    QD_MPI_CHECK(MPI_Allgatherv(mine, cnt[rank], MPI_DOUBLE, all, cnt, dis, MPI_DOUBLE, comm));
    free(cnt);
    free(dis);
    return QD_OK;
}

int qd_coll_any(MPI_Comm comm, int flag)
{
    int v = flag != 0, r = 0;
    QD_MPI_CHECK(MPI_Allreduce(&v, &r, 1, MPI_INT, MPI_MAX, comm));
    return r;
}

double qd_coll_max_f64(MPI_Comm comm, double v)
{
    double r = v;
    QD_MPI_CHECK(MPI_Allreduce(&v, &r, 1, MPI_DOUBLE, MPI_MAX, comm));
    return r;
}

int qd_coll_bcast_f32(MPI_Comm comm, float *v, int64_t n)
{
    const int64_t chunk = 1 << 28;
    for (int64_t o = 0; o < n; o += chunk)
        QD_MPI_CHECK(MPI_Bcast(v + o, (int)QD_MIN(chunk, n - o), MPI_FLOAT, 0, comm));
    return QD_OK;
}
