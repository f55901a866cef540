/* collective/h5model_internal.h — what the files of the model file's module share (h5model.c,
 * h5model_write.c, h5model_read.c); nothing outside them includes it. */
#ifndef QD_H5MODEL_INTERNAL_H
#define QD_H5MODEL_INTERNAL_H

#include <hdf5.h>

#include "collective/h5model.h"
#include "common/qd_common.h"
#include "quant/prune.h"

/* The element type in the file, and the native type values are converted to in memory. */
hid_t qd_h5m__file_type(qd_h5m_type t);
hid_t qd_h5m__mem_type(qd_h5m_type t);
/* Whether an HDF5 type is exactly the element type (datasets), or of its class (exact 0:
 * attributes, any integer for int64, any float for float64, fixed or variable strings). */
int qd_h5m__type_is(hid_t t, qd_h5m_type want, int exact);
/* The open file of a writer, for the modules of collective/ that still write a group of their own
 * under the root (collectively, between qd_h5m_create and qd_h5m_finish); such groups are not
 * validated by qd_h5m_open until their attributes become rows of the table. */
hid_t qd_h5m__file_id(const qd_h5m_writer *w);
/* p grown (doubling from 64) so that it holds n + 1 elements of `size` bytes; *cap updated. */
void *qd_h5m__grow(void *p, int n, int *cap, size_t size);
/* The table (qd_h5m_fields). */
extern const qd_h5m_field qd_h5m__fields[];
extern const int qd_h5m__nfields;
/* Bit of a dataset in qd_h5m_record.datasets (its index among the table's datasets), or -1. */
int qd_h5m__ds_bit(const char *name);
/* A pruned record's pattern (its sparsity attribute), checked against its columns. */
int qd_h5m__sparsity_of(const qd_h5m_record *r, qd_sparsity *sp);

#endif
