/* collective/h5_sizes.c — tensor data bytes of a qdist model file (see h5_sizes.h). */
#include "collective/h5_sizes.h"

#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

#include "collective/h5_read.h"
#include "common/qd_common.h"

typedef struct {
    double quantized, kept, group_bytes;
    int bad;
} sizes;

/* one dataset of a tensor's group: its logical size (the file stores tensors uncompressed) */
static herr_t add_dataset(hid_t g, const char *name, const H5L_info_t *info, void *op)
{
    sizes *s = op;
    hid_t d = H5Oopen(g, name, H5P_DEFAULT);
    if (d < 0) return -1;
    if (H5Iget_type(d) != H5I_DATASET) {
        H5Oclose(d);
        return 0;
    }
    hid_t sp = H5Dget_space(d), ty = H5Dget_type(d);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    size_t el = H5Tget_size(ty);
    H5Tclose(ty);
    H5Sclose(sp);
    H5Oclose(d);
    if (n < 0 || el == 0) return -1;
    s->group_bytes += (double)n * (double)el;
    return 0;
}

static herr_t add_tensor(hid_t tg, const char *name, const H5L_info_t *info, void *op)
{
    sizes *s = op;
    hid_t g = H5Gopen2(tg, name, H5P_DEFAULT);
    if (g < 0) return -1;
    char *kind = qd_h5_attr_text(g, "kind");
    s->group_bytes = 0;
    herr_t rc = H5Literate(g, H5_INDEX_NAME, H5_ITER_NATIVE, NULL, add_dataset, s);
    if (rc >= 0) {
        if (kind && !strcmp(kind, "quantized"))
            s->quantized += s->group_bytes;
        else
            s->kept += s->group_bytes;
    }
    free(kind);
    H5Gclose(g);
    return rc < 0 ? -1 : 0;
}

int qd_h5_tensor_bytes(const char *path, double *quantized, double *kept)
{
    *quantized = *kept = 0;
    H5E_auto2_t old;
    void *old_data;
    H5Eget_auto2(H5E_DEFAULT, &old, &old_data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* failures are reported below, by name */
    int rc = QD_OK;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        rc = qd_err_set(QD_EIO, "%s: cannot open as an HDF5 file", path);
    else {
        sizes s = {0};
        hid_t tg = H5Lexists(f, "tensors", H5P_DEFAULT) > 0 ? H5Gopen2(f, "tensors", H5P_DEFAULT) : -1;
        if (tg < 0 || H5Literate(tg, H5_INDEX_NAME, H5_ITER_NATIVE, NULL, add_tensor, &s) < 0)
            rc = qd_err_set(QD_EFORMAT, "%s: cannot read the datasets under /tensors", path);
        if (tg >= 0) H5Gclose(tg);
        H5Fclose(f);
        *quantized = s.quantized;
        *kept = s.kept;
    }
    H5Eset_auto2(H5E_DEFAULT, old, old_data);
    return rc;
}
