/* What crosses ranks (collective/collective.h) on 1, 2 and 4 ranks: broadcasts of bytes and text,
 * gathers in rank order, max / min / exact integer sums, the merge of values each held by one
 * owner rank, and the pipeline hand-off: blocks flow from rank 0 through every rank in order,
 * each rank adding its number, and a block sent after an error arrives marked on every later
 * rank without anyone waiting forever. */
#include <stdlib.h>
#include <string.h>

#include "collective/collective.h"
#include "qd_test.h"

int main(int argc, char **argv)
{
    MPI_Comm w = qd_coll_init(&argc, &argv);
    const int rank = qd_coll_rank(w), size = qd_coll_size(w);

    char *t = qd_coll_bcast_text(w, rank == 0 ? "the plan, as JSON" : NULL, 0);
    CHECK_STREQ(t, "the plan, as JSON");
    free(t);
    double d[2] = {rank == size - 1 ? 2.5 : 0, 0};
    qd_coll_bcast(w, d, sizeof d, size - 1);
    CHECK_NEAR(d[0], 2.5, 0);

    int mine[2] = {rank, 10 * rank}, *all = calloc((size_t)size * 2, sizeof(int));
    qd_coll_allgather(w, mine, sizeof mine, all);
    for (int r = 0; r < size; r++) CHECK(all[2 * r] == r && all[2 * r + 1] == 10 * r);
    memset(all, 0, (size_t)size * 2 * sizeof(int));
    qd_coll_gather(w, mine, sizeof mine, rank == 0 ? all : NULL, 0);
    if (rank == 0)
        for (int r = 0; r < size; r++) CHECK_EQ(all[2 * r + 1], 10 * r);
    free(all);

    int v[3] = {rank, rank, 1};
    qd_coll_allreduce_ints(w, v, 1, QD_COLL_MIN);
    qd_coll_allreduce_ints(w, v + 1, 1, QD_COLL_MAX);
    qd_coll_allreduce_ints(w, v + 2, 1, QD_COLL_SUM);
    CHECK(v[0] == 0 && v[1] == size - 1 && v[2] == size);

    /* exact sums beyond one call's count (chunks of 2^26) */
    const int64_t n = (1 << 26) + 5;
    int64_t *s = malloc((size_t)n * sizeof *s);
    for (int64_t i = 0; i < n; i++) s[i] = (int64_t)1 << 40 | (rank + i % 7);
    qd_coll_sum_i64(w, s, n);
    const int64_t rsum = (int64_t)size * (size - 1) / 2;
    CHECK_EQ(s[0], ((int64_t)size << 40) + rsum);
    CHECK_EQ(s[n - 1], ((int64_t)size << 40) + rsum + size * ((n - 1) % 7));
    free(s);

    float mx[4] = {(float)rank, -1.0f * rank, 0.5f, (float)(size - rank)};
    qd_coll_max_floats(w, mx, 4);
    CHECK(mx[0] == size - 1 && mx[1] == 0 && mx[2] == 0.5f && mx[3] == size);

    /* rows owned round-robin: every rank ends with the owners' values */
    enum { R = 9 };
    uint8_t codes[R] = {0};
    float sc[R] = {0};
    int32_t z[R] = {0};
    for (int r = 0; r < R; r++)
        if (r % size == rank) {
            codes[r] = (uint8_t)(200 + r);
            sc[r] = 0.1f * (float)(r + 1);
            z[r] = -r;
        }
    qd_coll_merge_u8(w, codes, R);
    qd_coll_merge_floats(w, sc, R);
    qd_coll_merge_i32(w, z, R);
    for (int r = 0; r < R; r++) CHECK(codes[r] == 200 + r && sc[r] == 0.1f * (float)(r + 1) && z[r] == -r);

    /* the pipeline: 5 blocks of 3 floats; rank 0 fills, every rank adds 1 and passes on; rank 1
     * fails on block 2, which arrives poisoned (and untouched) downstream */
    enum { NB = 5, CAP = 3 };
    qd_coll_pipe *p = qd_coll_pipe_open(w, CAP, NB);
    int poisoned_seen = 0;
    for (int i = 0; i < NB; i++) {
        int poisoned = 0;
        float *b = qd_coll_pipe_take(p, i, &poisoned);
        if (rank == 0)
            for (int k = 0; k < CAP; k++) b[k] = (float)(100 * i + k);
        else
            CHECK_NEAR(b[1], 100 * i + 1 + (poisoned ? (i == 2 ? 1 : 0) : rank), 0);
        const int fail = rank == 1 && i == 2;
        if (!poisoned && !fail)
            for (int k = 0; k < CAP; k++) b[k] += 1.0f;
        poisoned_seen += poisoned;
        qd_coll_pipe_pass(p, i, CAP, poisoned || fail);
    }
    qd_coll_pipe_close(p);
    CHECK_EQ(poisoned_seen, rank >= 2 ? 1 : 0);

    int local = qd_test_failures_;
    qd_coll_allreduce_ints(w, &local, 1, QD_COLL_SUM);
    if (rank == 0) qd_test_report(__FILE__);
    qd_coll_finalize();
    return local ? 1 : 0;
}
