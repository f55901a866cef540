/* export/outfile.h — an output file that appears whole or not at all: written to a temporary
 * file beside the destination, renamed into place when complete, removed on any failure. Every
 * exporter writes through it, so an error (bad input found late, disk full) never leaves a
 * partial model where a runtime would load it. Directories (compressed-tensors) work the same way
 * with qd_xout_dir_*. */
#ifndef QD_EXPORT_OUTFILE_H
#define QD_EXPORT_OUTFILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
    char path[4096];
    char tmp[4200];
    FILE *f;
    int err; /* errno of the first failed write, 0 if none */
    int64_t bytes;
} qd_xout;

/* QD_OK or QD_EIO naming the path. */
int qd_xout_open(qd_xout *o, const char *path);
void qd_xout_write(qd_xout *o, const void *p, size_t n); /* failures are reported by commit */
/* Close, check, rename to the destination. QD_OK or QD_EIO (the temporary is removed). */
int qd_xout_commit(qd_xout *o);
void qd_xout_abort(qd_xout *o);

/* A directory built under a temporary name (files written into d->tmp) and renamed into place at
 * the end; into an existing directory, each file is renamed over its namesake (other files stay). */
typedef struct {
    char path[4096];
    char tmp[4200];
} qd_xout_dir;
int qd_xout_dir_open(qd_xout_dir *d, const char *path);
int qd_xout_dir_commit(qd_xout_dir *d);
void qd_xout_dir_abort(qd_xout_dir *d);

#endif
