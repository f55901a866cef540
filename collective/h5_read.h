/* collective/h5_read.h — small readers of a qdist model file (serial HDF5), shared by export,
 * inspect-style readers and eval. */
#ifndef QD_H5_READ_H
#define QD_H5_READ_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

/* A fixed-length string attribute, malloc'd ("" if not a string), or NULL when absent. */
char *qd_h5_attr_text(hid_t obj, const char *name);
/* An integer attribute, or dflt when absent or unreadable. */
int64_t qd_h5_attr_int(hid_t obj, const char *name, int64_t dflt);
/* A whole dataset converted to memtype (elsize bytes per element), malloc'd; *count (may be NULL)
 * its element count. NULL when absent or unreadable. */
void *qd_h5_read_ds(hid_t g, const char *name, hid_t memtype, size_t elsize, size_t *count);

#endif
