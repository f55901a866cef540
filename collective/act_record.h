/* collective/act_record.h — static activation scales across ranks and in the model file.
 *
 * Statistics reductions: min with MPI_MIN, max with MPI_MAX, counts and histograms with MPI_SUM
 * on int64, so every rank ends with the same numbers for any rank count.
 *
 * The record (quant/actq.h qd_actrec) is the group /activations of a qdist model file
 * (docs/FORMAT.md), attributes only: format = "static-activations", bits, calib (the range
 * method), percentile, scheme = "asymmetric", calibration (JSON), and per tensor, in one order:
 * names (fixed-length strings of 48 bytes), scale, zero_point, lo, hi (the chosen range), min,
 * max (observed), count; outlier_threshold, and where any tensor has static outlier channels
 * outlier_offsets [n + 1], outlier_channels, outlier_shift, outlier_zero_point, outlier_lo and
 * outlier_hi. It stays in this one place until the model file has a single owner module for every
 * record. */
#ifndef QD_ACT_RECORD_H
#define QD_ACT_RECORD_H

#include <hdf5.h>
#include <mpi.h>

#include "quant/actq.h"

/* In place over comm: min/max of n statistics; then (after the histogram pass) counts and
 * histograms. Collective; QD_MPI_CHECK'd. */
void qd_coll_actstats_minmax(MPI_Comm comm, qd_actq_stats *st, int n);
void qd_coll_actstats_sum(MPI_Comm comm, qd_actq_stats *st, int n);

/* Writes /activations into an open (parallel) file; every rank calls it with the same record
 * (attributes are collective metadata). HDF5 errors abort through QD_H5_CHECK. */
void qd_coll_actrec_write(hid_t file, const qd_actrec *r);

/* Reads /activations of the model file at path (serial HDF5). QD_OK; QD_ENOTFOUND when the file
 * has no static activation scales (quantized without --activations static); QD_EFORMAT naming
 * the attribute otherwise. */
int qd_actrec_read(const char *path, qd_actrec *r);

#endif
