/* model/idx.h — IDX files (model/idx.c), for the data sets of model/dataset.c. Not for other
 * modules: they open data sets through image.h. */
#ifndef QD_IDX_H
#define QD_IDX_H

#include <stdint.h>

#include "common/qd_common.h"

/* An IDX file of unsigned bytes with `ndim` (1..4) dimensions, plain or gzip-compressed: dims[ndim]
 * and *data (malloc'd, the product of dims bytes). `what` names the data in messages ("image",
 * "label"). Errors name the file: QD_ENOENT, QD_EIO, QD_EFORMAT (bad magic, not u8, wrong
 * dimension count, header and data disagree, damaged gzip stream), QD_ENOMEM. */
int qd_idx_read(const char *path, int ndim, const char *what, uint32_t *dims, uint8_t **data);

/* The labels file beside an images file that exists: qd_idx_labels_name (image.h), then the same
 * with ".gz" added or removed; malloc'd, or NULL when there is none. */
char *qd_idx_find_labels(const char *images_path);

#endif /* QD_IDX_H */
