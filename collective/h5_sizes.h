/* collective/h5_sizes.h — how many bytes of tensor data a qdist model file holds, the figure
 * `qdist quantize` and `qdist eval` both print as "tensor data" (the file's own size, HDF5
 * structure and attributes included, is the other figure they print, named "file"). */
#ifndef QD_H5_SIZES_H
#define QD_H5_SIZES_H

/* Sums, over the groups of /tensors, the element count times the element size of every dataset:
 * *quantized for quantized tensors (packed codes, scales, zeros, g_idx), *kept for tensors kept
 * as float or raw. QD_OK, or QD_EFORMAT/QD_EIO naming the file. */
int qd_h5_tensor_bytes(const char *path, double *quantized, double *kept);

#endif
