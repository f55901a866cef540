/* model/idx.c — IDX files (MNIST, Fashion-MNIST): unsigned-byte arrays behind a big-endian
 * header, plain or gzip-compressed (idx.h).
 *
 * IDX files are published gzip-compressed, so they are read through zlib's gzopen/gzread, which
 * also reads uncompressed files unchanged: one code path for both, and no temporary decompressed
 * copy. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "common/qd_file.h"
#include "model/idx.h"
#include "model/image.h"

#define QD_IDX_MAX_BYTES (1ull << 34) /* 16 GiB of pixels: far above any IDX data set */

/* Read exactly n bytes (n may be 0); returns the count read, -1 on a zlib error. */
static int64_t gz_read_full(gzFile f, uint8_t *p, uint64_t n)
{
    uint64_t got = 0;
    while (got < n) {
        uint64_t chunk = n - got > (1u << 30) ? (1u << 30) : n - got;
        int r = gzread(f, p + got, (unsigned)chunk);
        if (r < 0) return -1;
        if (r == 0) break;
        got += (uint64_t)r;
    }
    return (int64_t)got;
}

static int gz_error(gzFile f, const char *path)
{
    int zerr = 0;
    const char *msg = gzerror(f, &zerr);
    if (zerr == Z_ERRNO) return qd_err_set(QD_EIO, "%s: read error: %s", path, strerror(errno));
    return qd_err_set(QD_EFORMAT, "%s: corrupt gzip data: %s", path, msg ? msg : "?");
}

int qd_idx_read(const char *path, int ndim, const char *what, uint32_t *dims, uint8_t **data)
{
    *data = NULL;
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR) return qd_err_set(QD_ENOENT, "%s: no such file", path);
        return qd_err_set(QD_EIO, "%s: %s", path, strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) return qd_err_set(QD_EIO, "%s: not a regular file", path);
    gzFile f = gzopen(path, "rb");
    if (!f) return qd_err_set(QD_EIO, "%s: cannot open: %s", path, strerror(errno));
    gzbuffer(f, 1u << 17);
    uint8_t head[4 + 4 * 4];
    int rc = QD_OK;
    uint8_t *buf = NULL;
    size_t hlen = 4 + 4 * (size_t)ndim;
    int64_t got = gz_read_full(f, head, hlen);
    if (got < 0) {
        rc = gz_error(f, path);
        goto done;
    }
    if (got >= 4 && (head[0] != 0 || head[1] != 0)) {
        rc = qd_err_set(QD_EFORMAT, "%s: not an IDX file (magic %02x %02x %02x %02x)", path, head[0], head[1], head[2],
                        head[3]);
        goto done;
    }
    if (got >= 4 && head[2] != 0x08) {
        rc = qd_err_set(QD_EFORMAT, "%s: IDX data type 0x%02x, expected 0x08 (unsigned byte)", path, head[2]);
        goto done;
    }
    if (got >= 4 && head[3] != ndim) {
        rc = qd_err_set(QD_EFORMAT, "%s: IDX with %d dimensions, expected %d (%s)", path, head[3], ndim, what);
        goto done;
    }
    if ((size_t)got < hlen) {
        rc = qd_err_set(QD_EFORMAT,
                        "%s: truncated IDX header: %lld bytes, a %d-dimensional "
                        "header needs %zu",
                        path, (long long)got, ndim, hlen);
        goto done;
    }
    uint64_t total = 1;
    for (int d = 0; d < ndim; d++) {
        const uint8_t *b = head + 4 + 4 * d;
        dims[d] = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
        if (qd_mul_overflow(total, dims[d], &total) || total > QD_IDX_MAX_BYTES) {
            rc = qd_err_set(QD_EFORMAT, "%s: IDX header declares an impossible size", path);
            goto done;
        }
    }
    /* Grow the buffer as data arrives, so that a header lying about its size costs no more
     * memory than the file really holds. */
    uint64_t cap = total < (1u << 24) ? total : (1u << 24), have = 0;
    for (;;) {
        uint8_t *nb = realloc(buf, cap + 1);
        if (!nb) {
            rc = qd_err_set(QD_ENOMEM, "%s: out of memory for %llu bytes", path, (unsigned long long)cap);
            goto done;
        }
        buf = nb;
        got = gz_read_full(f, buf + have, cap - have);
        if (got < 0) {
            rc = gz_error(f, path);
            goto done;
        }
        have += (uint64_t)got;
        if (have < cap || cap == total) break;
        cap = cap * 2 < total ? cap * 2 : total;
    }
    if (have < total) {
        int zerr = 0;
        gzerror(f, &zerr);
        rc = qd_err_set(QD_EFORMAT,
                        "%s: truncated: the IDX header declares %llu bytes of %s "
                        "data, the file holds %llu%s",
                        path, (unsigned long long)total, what, (unsigned long long)have,
                        zerr == Z_BUF_ERROR ? " (and its gzip stream is cut short)" : "");
        goto done;
    }
    uint8_t extra;
    got = gz_read_full(f, &extra, 1);
    if (got < 0) {
        rc = gz_error(f, path);
        goto done;
    }
    if (got > 0) {
        rc = qd_err_set(QD_EFORMAT,
                        "%s: the IDX header declares %llu bytes of %s data but the "
                        "file holds more",
                        path, (unsigned long long)total, what);
        goto done;
    }
    int zerr = Z_OK;
    gzerror(f, &zerr);
    if (zerr != Z_OK) /* all data came out, but the gzip stream stops before its end */
        rc = qd_err_set(QD_EFORMAT, "%s: the gzip stream is cut short", path);
done:
    gzclose(f);
    if (rc) {
        free(buf);
        return rc;
    }
    *data = buf;
    return QD_OK;
}

char *qd_idx_labels_name(const char *images_path)
{
    const char *base = strrchr(images_path, '/');
    base = base ? base + 1 : images_path;
    const char *im = strstr(base, "images"), *i3 = strstr(base, "idx3");
    if (!im || !i3) return NULL;
    char *p = strdup(images_path);
    if (!p) return NULL;
    memcpy(p + (im - images_path), "labels", 6);
    memcpy(p + (i3 - images_path), "idx1", 4);
    return p;
}

/* The labels file beside an images file: the renamed name, then with ".gz" added or removed. */
char *qd_idx_find_labels(const char *images_path)
{
    char *base = qd_idx_labels_name(images_path);
    if (!base) return NULL;
    if (qd_is_file(base)) return base;
    size_t n = strlen(base);
    char *alt = malloc(n + 4);
    if (!alt) {
        free(base);
        return NULL;
    }
    if (n > 3 && strcmp(base + n - 3, ".gz") == 0) {
        memcpy(alt, base, n - 3);
        alt[n - 3] = 0;
    } else {
        memcpy(alt, base, n);
        memcpy(alt + n, ".gz", 4);
    }
    free(base);
    if (qd_is_file(alt)) return alt;
    free(alt);
    return NULL;
}
