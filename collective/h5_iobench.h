/* collective/h5_iobench.h — the write throughput of parallel HDF5 for the model file's layout
 * (tensors of rows x cols bytes, each rank writing its own row range), with independent or
 * collective transfers and contiguous or chunked datasets: what bench/h5_write measures to
 * choose the writer's settings (docs/scaling.md, "Writing the file"). */
#ifndef QD_H5_IOBENCH_H
#define QD_H5_IOBENCH_H

#include <mpi.h>
#include <stdint.h>

typedef struct {
    int collective;   /* H5FD_MPIO_COLLECTIVE transfers (every rank in every write), else independent */
    int64_t chunk_mb; /* 0: contiguous datasets (the writer's); else chunks of about this many MB */
    int64_t rows, cols;
    int tensors;
} qd_h5io_opts;

/* Writes the tensors into `path` (created, then removed) on every rank of comm and returns the
 * slowest rank's seconds from create to close (data on disk: the file is closed). Collective. */
double qd_h5io_bench(MPI_Comm comm, const char *path, const qd_h5io_opts *o);

#endif
