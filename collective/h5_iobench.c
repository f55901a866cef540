/* collective/h5_iobench.c — parallel HDF5 write throughput (see h5_iobench.h). */
#include "collective/h5_iobench.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "collective/collective.h"
#include "common/qd_common.h"

double qd_h5io_bench(MPI_Comm comm, const char *path, const qd_h5io_opts *o)
{
    const int rank = qd_coll_rank(comm), size = qd_coll_size(comm);
    const int64_t r0 = o->rows * rank / size, r1 = o->rows * (rank + 1) / size;
    uint8_t *buf = qd_xmalloc((size_t)((r1 - r0) * o->cols) + 1);
    for (int64_t i = 0; i < (r1 - r0) * o->cols; i++) buf[i] = (uint8_t)(i * 2654435761u >> 24);
    qd_coll_barrier(comm);
    const double t0 = qd_now();
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
    H5Pset_coll_metadata_write(fapl, 1);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    QD_ASSERT(f >= 0);
    hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
    H5Pset_dxpl_mpio(dxpl, o->collective ? H5FD_MPIO_COLLECTIVE : H5FD_MPIO_INDEPENDENT);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (o->chunk_mb > 0) { /* whole rows, about chunk_mb per chunk */
        hsize_t ch[2] = {(hsize_t)(o->chunk_mb * 1000000 / o->cols), (hsize_t)o->cols};
        if (ch[0] < 1) ch[0] = 1;
        if (ch[0] > (hsize_t)o->rows) ch[0] = (hsize_t)o->rows;
        H5Pset_chunk(dcpl, 2, ch);
    }
    hsize_t dims[2] = {(hsize_t)o->rows, (hsize_t)o->cols}, start[2] = {(hsize_t)r0, 0},
            cnt[2] = {(hsize_t)(r1 - r0), (hsize_t)o->cols};
    for (int t = 0; t < o->tensors; t++) {
        char name[32];
        snprintf(name, sizeof name, "t%d", t);
        hid_t sp = H5Screate_simple(2, dims, NULL);
        hid_t d = H5Dcreate2(f, name, H5T_NATIVE_UINT8, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        QD_ASSERT(d >= 0);
        hid_t ms = H5Screate_simple(2, cnt, NULL);
        H5Sselect_hyperslab(sp, H5S_SELECT_SET, start, NULL, cnt, NULL);
        if (r1 == r0) { /* a rank without rows still takes part in a collective write */
            H5Sselect_none(sp);
            H5Sselect_none(ms);
        }
        QD_ASSERT(H5Dwrite(d, H5T_NATIVE_UINT8, ms, sp, dxpl, buf) >= 0);
        H5Sclose(ms);
        H5Sclose(sp);
        H5Dclose(d);
    }
    H5Pclose(dcpl);
    H5Pclose(dxpl);
    H5Fclose(f);
    double secs = qd_now() - t0;
    qd_coll_allreduce_doubles(comm, &secs, 1, QD_COLL_MAX);
    if (rank == 0) unlink(path);
    free(buf);
    return secs;
}
