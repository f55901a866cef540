/* shard/zip_read.c — the zip container of torch.save files, read from memory (zip_read.h).
 *
 * Parsed here rather than with libzip (Debian's libzip-dev 1.7): torch.save stores every entry
 * uncompressed and 64-byte aligned so that storages can be mapped, and the checkpoint reader
 * hands out tensors zero-copy from the mmapped file (qd_ckpt_raw, qd_ckpt_read_f32), which needs
 * the absolute offset of each entry's data. libzip's public API gives no such offset (zip_stat has
 * none; zip_fopen/zip_fread copy the bytes out), so with libzip every rank would hold a private
 * heap copy of the weights instead of sharing the page cache. Its errors would also be coarser:
 * 1.7 reports every damaged directory as ZIP_ER_INCONS, where the messages below say which field
 * is wrong (tests/shard/test_torch_format.c checks them). Only what torch.save writes is accepted:
 * stored (method 0) unencrypted entries, zip64 when the classic end record says so, one disk.
 * Every length and offset is checked against the buffer before use. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "shard/zip_read.h"

static uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const unsigned char *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

uint32_t qd_zip_crc32(const unsigned char *p, size_t n) { return (uint32_t)crc32_z(0, p, n); }

int qd_zip_fail(const char *fname, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return qd_err_set(QD_EFORMAT, "%s: not a valid torch.save zip archive: %s", fname, msg);
}

/* Read the central directory; entries point into buf. */
int qd_zip_entries(const char *fname, const unsigned char *buf, size_t len, qd_zip_entry **out, int *nout)
{
    *out = NULL;
    *nout = 0;
    if (len < 22) return qd_zip_fail(fname, "%zu bytes, shorter than a zip end record", len);
    /* the end record: last signature whose comment ends exactly at the end of the file */
    size_t eocd = SIZE_MAX;
    size_t lo = len - 22 > 65535 ? len - 22 - 65535 : 0;
    for (size_t i = len - 22 + 1; i-- > lo;) {
        if (rd32(buf + i) == 0x06054B50u && i + 22 + rd16(buf + i + 20) == len) {
            eocd = i;
            break;
        }
    }
    if (eocd == SIZE_MAX) return qd_zip_fail(fname, "no end-of-central-directory record (truncated file?)");
    const unsigned char *e = buf + eocd;
    if (rd16(e + 4) != 0 || rd16(e + 6) != 0 || rd16(e + 8) != rd16(e + 10))
        return qd_zip_fail(fname, "multi-disk archive");
    uint64_t count = rd16(e + 10), cd_size = rd32(e + 12), cd_off = rd32(e + 16);
    size_t cd_end_limit = eocd;
    if (count == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_off == 0xFFFFFFFFu) {
        if (eocd < 20 || rd32(buf + eocd - 20) != 0x07064B50u)
            return qd_zip_fail(fname, "zip64 sizes without a zip64 end locator");
        const unsigned char *loc = buf + eocd - 20;
        uint64_t z = rd64(loc + 8);
        if (rd32(loc + 4) != 0 || rd32(loc + 16) > 1) return qd_zip_fail(fname, "multi-disk archive");
        if (z > eocd - 20 || eocd - 20 - z < 56 || rd32(buf + z) != 0x06064B50u)
            return qd_zip_fail(fname, "zip64 end record out of place");
        const unsigned char *r = buf + z;
        if (rd32(r + 16) != 0 || rd32(r + 20) != 0 || rd64(r + 24) != rd64(r + 32))
            return qd_zip_fail(fname, "multi-disk archive");
        count = rd64(r + 32);
        cd_size = rd64(r + 40);
        cd_off = rd64(r + 48);
        cd_end_limit = (size_t)z;
    }
    if (cd_off > cd_end_limit || cd_size > cd_end_limit - cd_off)
        return qd_zip_fail(fname, "central directory (%llu bytes at %llu) outside the file",
                           (unsigned long long)cd_size, (unsigned long long)cd_off);
    if (count == 0) return qd_zip_fail(fname, "the archive is empty");
    if (count > QD_ZIP_MAX_ENTRIES || count > cd_size / 46)
        return qd_zip_fail(fname, "%llu entries in a %llu-byte central directory", (unsigned long long)count,
                           (unsigned long long)cd_size);
    qd_zip_entry *ent = calloc((size_t)count, sizeof *ent);
    if (!ent) return qd_err_set(QD_ENOMEM, "%s: out of memory", fname);
    const unsigned char *p = buf + cd_off, *end = buf + cd_off + cd_size;
    int rc = QD_OK;
    for (uint64_t k = 0; k < count && rc == QD_OK; k++) {
        if (end - p < 46 || rd32(p) != 0x02014B50u) {
            rc = qd_zip_fail(fname, "central directory entry %llu is damaged", (unsigned long long)k);
            break;
        }
        unsigned flags = rd16(p + 8), method = rd16(p + 10);
        uint64_t csize = rd32(p + 20), usize = rd32(p + 24), lho = rd32(p + 42);
        size_t nlen = rd16(p + 28), elen = rd16(p + 30), clen = rd16(p + 32);
        if ((size_t)(end - p) - 46 < nlen + elen + clen) {
            rc = qd_zip_fail(fname, "central directory entry %llu runs past its end", (unsigned long long)k);
            break;
        }
        const char *name = (const char *)p + 46;
        const unsigned char *x = p + 46 + nlen, *xe = x + elen;
        /* zip64 extra: the 8-byte values of the fields that hold 0xFFFFFFFF, in this order */
        while (xe - x >= 4) {
            unsigned id = rd16(x), sz = rd16(x + 2);
            if ((size_t)(xe - x) - 4 < sz) break;
            if (id == 1) {
                const unsigned char *v = x + 4, *ve = x + 4 + sz;
                if (usize == 0xFFFFFFFFu && ve - v >= 8) {
                    usize = rd64(v);
                    v += 8;
                }
                if (csize == 0xFFFFFFFFu && ve - v >= 8) {
                    csize = rd64(v);
                    v += 8;
                }
                if (lho == 0xFFFFFFFFu && ve - v >= 8) {
                    lho = rd64(v);
                    v += 8;
                }
            }
            x += 4 + sz;
        }
        char shown[128];
        snprintf(shown, sizeof shown, "%.*s", (int)(nlen < 100 ? nlen : 100), name);
        if (nlen == 0 || memchr(name, 0, nlen)) {
            rc = qd_zip_fail(fname, "entry %llu has an empty name or a NUL in it", (unsigned long long)k);
        } else if (flags & 1) {
            rc = qd_err_set(QD_EUNSUPPORTED, "%s: entry '%s' is encrypted", fname, shown);
        } else if (method != 0) {
            rc = qd_err_set(QD_EUNSUPPORTED,
                            "%s: entry '%s' is compressed (method %u); torch.save "
                            "stores entries uncompressed and only those are read",
                            fname, shown, method);
        } else if (csize != usize) {
            rc = qd_zip_fail(fname, "stored entry '%s' has compressed size %llu != size %llu", shown,
                             (unsigned long long)csize, (unsigned long long)usize);
        } else if (lho > cd_off || cd_off - lho < 30 || rd32(buf + lho) != 0x04034B50u) {
            rc = qd_zip_fail(fname, "entry '%s': no local header at offset %llu", shown, (unsigned long long)lho);
        } else {
            const unsigned char *lh = buf + lho;
            uint64_t ln = rd16(lh + 26), le = rd16(lh + 28);
            uint64_t data = lho + 30 + ln + le;
            if (ln != nlen || data > cd_off || memcmp(lh + 30, name, nlen) != 0)
                rc = qd_zip_fail(fname, "entry '%s': local header does not match the directory", shown);
            else if (usize > cd_off - data)
                rc =
                    qd_zip_fail(fname,
                                "entry '%s': %llu bytes at offset %llu run past the data area "
                                "(%llu bytes; truncated or lying sizes)",
                                shown, (unsigned long long)usize, (unsigned long long)data, (unsigned long long)cd_off);
            else
                ent[k] = (qd_zip_entry){name, nlen, data, usize, rd32(p + 16)};
        }
        p += 46 + nlen + elen + clen;
    }
    if (rc != QD_OK) {
        free(ent);
        return rc;
    }
    *out = ent;
    *nout = (int)count;
    return QD_OK;
}

int qd_zip_cmp_entry(const void *a, const void *b)
{
    const qd_zip_entry *x = a, *y = b;
    size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int c = memcmp(x->name, y->name, n);
    return c ? c : (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

const qd_zip_entry *qd_zip_find(const qd_zip_entry *ent, int n, const char *prefix, size_t plen, const char *rest,
                                size_t rlen)
{
    char key[256];
    if (plen + 1 + rlen > sizeof key) return NULL;
    memcpy(key, prefix, plen);
    key[plen] = '/';
    memcpy(key + plen + 1, rest, rlen);
    qd_zip_entry k = {.name = key, .name_len = plen + 1 + rlen};
    return bsearch(&k, ent, (size_t)n, sizeof *ent, qd_zip_cmp_entry);
}
