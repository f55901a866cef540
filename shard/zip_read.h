/* shard/zip_read.h — the zip container of torch.save files (shard/zip_read.c), for
 * shard/torch_zip.c and shard/torch_pickle.c; other modules open checkpoints through
 * safetensors.h. */
#ifndef QD_ZIP_READ_H
#define QD_ZIP_READ_H

#include <stddef.h>
#include <stdint.h>

#include "common/qd_common.h"

#define QD_ZIP_MAX_ENTRIES (1 << 20)

typedef struct {
    const char *name; /* points into the central directory (not NUL-terminated) */
    size_t name_len;
    uint64_t off; /* absolute offset of the entry's data */
    uint64_t size;
    uint32_t crc;
} qd_zip_entry;

/* The entries of a zip archive held whole in memory (buf, len), in directory order; names point
 * into buf. Only stored, unencrypted, single-disk entries whose local header matches the
 * directory and whose data lies inside the file are accepted; errors name `fname` and the entry
 * (QD_EFORMAT, QD_EUNSUPPORTED for compressed or encrypted entries, QD_ENOMEM). *out is malloc'd. */
int qd_zip_entries(const char *fname, const unsigned char *buf, size_t len, qd_zip_entry **out, int *nout);
/* qsort/bsearch order of entries: by name bytes. */
int qd_zip_cmp_entry(const void *a, const void *b);
/* The entry named prefix + "/" + rest in entries sorted by qd_zip_cmp_entry, or NULL. */
const qd_zip_entry *qd_zip_find(const qd_zip_entry *ent, int n, const char *prefix, size_t plen, const char *rest,
                                size_t rlen);
/* CRC-32 (zip's, zlib's crc32) of n bytes. */
uint32_t qd_zip_crc32(const unsigned char *p, size_t n);
/* QD_EFORMAT with "<fname>: not a valid torch.save zip archive: <message>". */
int qd_zip_fail(const char *fname, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif /* QD_ZIP_READ_H */
