/* collective/h5_read.c — small readers of a qdist model file (see h5_read.h). */
#include "collective/h5_read.h"

#include <stdlib.h>

#include "common/qd_common.h"

char *qd_h5_attr_text(hid_t obj, const char *name)
{
    if (H5Aexists(obj, name) <= 0) return NULL;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT), t = H5Aget_type(a);
    size_t n = H5Tget_size(t);
    char *b = qd_xcalloc(n + 1, 1);
    if (H5Tget_class(t) != H5T_STRING || H5Tis_variable_str(t) || H5Aread(a, t, b) < 0) b[0] = 0;
    H5Tclose(t);
    H5Aclose(a);
    return b;
}

int64_t qd_h5_attr_int(hid_t obj, const char *name, int64_t dflt)
{
    if (H5Aexists(obj, name) <= 0) return dflt;
    int64_t v = dflt;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (H5Aread(a, H5T_NATIVE_INT64, &v) < 0) v = dflt;
    H5Aclose(a);
    return v;
}

void *qd_h5_read_ds(hid_t g, const char *name, hid_t memtype, size_t elsize, size_t *count)
{
    if (count) *count = 0;
    if (H5Lexists(g, name, H5P_DEFAULT) <= 0) return NULL;
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
    if (d < 0) return NULL;
    hid_t sp = H5Dget_space(d);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    void *buf = malloc((size_t)(n > 0 ? n : 1) * elsize);
    if (!buf || (n > 0 && H5Dread(d, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)) {
        free(buf);
        buf = NULL;
    }
    H5Dclose(d);
    if (buf && count) *count = (size_t)(n > 0 ? n : 0);
    return buf;
}
