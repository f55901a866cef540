/* bench/h5_write: parallel HDF5 write throughput of the model file's layout, independent vs
 * collective transfers, contiguous vs chunked datasets, on the ranks it is started on.
 *
 *   mpirun -n RANKS bench/h5_write DIR [ROWS COLS TENSORS REPEATS]
 *
 * Default: 24 tensors of 2048 x 2048 bytes (4-bit codes of a BERT-large-sized block set, 100 MB),
 * 3 repeats, alternating the settings; prints the best and median MB/s of each. The file goes to
 * DIR (the file system under test) and is removed. */
#include <stdio.h>
#include <stdlib.h>

#include "collective/collective.h"
#include "collective/h5_iobench.h"

static int cmp(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    MPI_Comm comm = qd_coll_init(&argc, &argv);
    if (argc < 2) {
        fprintf(stderr, "usage: mpirun -n N h5_write DIR [ROWS COLS TENSORS REPEATS]\n");
        qd_coll_finalize();
        return 2;
    }
    qd_h5io_opts o = {.rows = argc > 2 ? atoll(argv[2]) : 2048,
                      .cols = argc > 3 ? atoll(argv[3]) : 2048,
                      .tensors = argc > 4 ? atoi(argv[4]) : 24};
    const int reps = argc > 5 ? atoi(argv[5]) : 3, rank = qd_coll_rank(comm);
    static const struct {
        const char *name;
        int collective;
        int64_t chunk_mb;
    } set[] = {{"independent, contiguous (the writer's)", 0, 0},
               {"collective, contiguous", 1, 0},
               {"independent, chunks of ~1 MB", 0, 1},
               {"collective, chunks of ~1 MB", 1, 1}};
    enum { NS = 4 };
    double t[NS][16];
    char path[4096];
    snprintf(path, sizeof path, "%s/h5_write_bench.h5", argv[1]);
    for (int r = 0; r < reps && r < 16; r++)
        for (int s = 0; s < NS; s++) {
            o.collective = set[s].collective;
            o.chunk_mb = set[s].chunk_mb;
            t[s][r] = qd_h5io_bench(comm, path, &o);
        }
    const double mb = (double)o.rows * o.cols * o.tensors * 1e-6;
    if (rank == 0) {
        printf("%d ranks, %d tensors of %lld x %lld bytes (%.1f MB), %d repeats, in %s\n", qd_coll_size(comm),
               o.tensors, (long long)o.rows, (long long)o.cols, mb, reps, argv[1]);
        for (int s = 0; s < NS; s++) {
            qsort(t[s], (size_t)(reps < 16 ? reps : 16), sizeof(double), cmp);
            printf("  %-40s best %8.1f MB/s  median %8.1f MB/s\n", set[s].name, mb / t[s][0],
                   mb / t[s][(reps < 16 ? reps : 16) / 2]);
        }
    }
    qd_coll_finalize();
    return 0;
}
