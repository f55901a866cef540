/* shard/torch_zip.c — reads the state dicts that torch.save writes (pytorch_model.bin).
 *
 * The format (PyTorch >= 1.6, "zipfile serialization"; tests/reference/torch_format.py writes
 * it too and describes it): a zip archive whose entries sit under one folder <stem>/ —
 * <stem>/data.pkl, a protocol-2 pickle of an OrderedDict name -> tensor, and <stem>/data/<key>,
 * one entry per storage holding its raw little-endian elements. The container is read by
 * shard/zip_read.c (which says why not with libzip), the pickle by the restricted machine of
 * shard/torch_pickle.c; this file checks what lies between (one folder, no duplicate entries,
 * data.pkl present, intact and little-endian) and describes the file. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shard/safetensors.h"
#include "shard/torch_pickle.h"
#include "shard/zip_read.h"

#define PT_MAX_PICKLE (16u << 20) /* a 1000-layer model's data.pkl is a few MB */

int qd_pt_sniff(const unsigned char *head, size_t n)
{
    static const unsigned char legacy[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c,
                                           0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
    if (n >= 4 && head[0] == 'P' && head[1] == 'K' &&
        ((head[2] == 3 && head[3] == 4) || (head[2] == 5 && head[3] == 6))) {
        /* a safetensors file whose header is exactly 0x04034B50 bytes long starts the same way;
         * its JSON then opens at byte 8, where a zip holds the compression method (0) */
        if (n >= 9 && !head[4] && !head[5] && !head[6] && !head[7] && head[8] == '{') return QD_PT_NONE;
        return QD_PT_ZIP;
    }
    if (n >= sizeof legacy && !memcmp(head, legacy, sizeof legacy)) return QD_PT_LEGACY;
    return QD_PT_NONE;
}

int qd_pt_parse(const char *fname, const unsigned char *buf, size_t len, qd_tensor_info **tensors, int *ntensors,
                char **metadata, uint64_t *pickle_off, uint64_t *pickle_len)
{
    if (tensors) *tensors = NULL;
    if (ntensors) *ntensors = 0;
    if (metadata) *metadata = NULL;
    if (qd_pt_sniff(buf, len) == QD_PT_LEGACY)
        return qd_err_set(QD_EUNSUPPORTED,
                          "%s: legacy torch.save format (a bare pickle, written "
                          "before PyTorch 1.6 or with _use_new_zipfile_serialization=False): "
                          "unsupported; re-save it with a current torch or convert it to "
                          "safetensors",
                          fname);
    qd_zip_entry *ent = NULL;
    int nent = 0;
    int rc = qd_zip_entries(fname, buf, len, &ent, &nent);
    if (rc) return rc;
    /* the folder: the first entry's name up to its first '/' */
    const char *slash = memchr(ent[0].name, '/', ent[0].name_len);
    if (!slash) {
        rc = qd_zip_fail(fname, "first entry '%.*s' is not inside a folder",
                         (int)(ent[0].name_len < 100 ? ent[0].name_len : 100), ent[0].name);
        free(ent);
        return rc;
    }
    qd_pt_archive m = {
        .fname = fname, .ent = ent, .nent = nent, .prefix = ent[0].name, .prefix_len = (size_t)(slash - ent[0].name)};
    qd_tensor_info *t = NULL;
    int nt = 0;
    int pl = (int)(m.prefix_len < 100 ? m.prefix_len : 100);
    qsort(ent, (size_t)nent, sizeof *ent, qd_zip_cmp_entry); /* the prefix still points into buf */
    for (int i = 1; i < nent; i++)
        if (!qd_zip_cmp_entry(&ent[i - 1], &ent[i])) {
            rc = qd_zip_fail(fname, "entry '%.*s' appears twice", (int)(ent[i].name_len < 100 ? ent[i].name_len : 100),
                             ent[i].name);
            goto done;
        }
    const qd_zip_entry *pk = qd_zip_find(ent, nent, m.prefix, m.prefix_len, "data.pkl", 8);
    if (!pk) {
        if (qd_zip_find(ent, nent, m.prefix, m.prefix_len, "constants.pkl", 13))
            rc = qd_err_set(QD_EUNSUPPORTED,
                            "%s: a TorchScript archive, not a torch.save state "
                            "dict",
                            fname);
        else
            rc = qd_zip_fail(fname, "no '%.*s/data.pkl' entry", pl, m.prefix);
        goto done;
    }
    const qd_zip_entry *bo = qd_zip_find(ent, nent, m.prefix, m.prefix_len, "byteorder", 9);
    if (bo && !(bo->size == 6 && !memcmp(buf + bo->off, "little", 6))) {
        rc = qd_err_set(QD_EUNSUPPORTED,
                        "%s: byteorder '%.*s': only little-endian storages are "
                        "read",
                        fname, (int)(bo->size < 16 ? bo->size : 16), (const char *)buf + bo->off);
        goto done;
    }
    if (pk->size > PT_MAX_PICKLE) {
        rc = qd_zip_fail(fname, "data.pkl of %llu bytes (at most %u)", (unsigned long long)pk->size, PT_MAX_PICKLE);
        goto done;
    }
    if (qd_zip_crc32(buf + pk->off, (size_t)pk->size) != pk->crc) {
        rc = qd_zip_fail(fname, "data.pkl fails its CRC-32 check (damaged file)");
        goto done;
    }
    rc = qd_pt_unpickle(&m, buf + pk->off, (size_t)pk->size, &t, &nt);
    if (rc == QD_OK && metadata) {
        const qd_zip_entry *ver = qd_zip_find(ent, nent, m.prefix, m.prefix_len, "version", 7);
        char vs[16] = "";
        if (ver && ver->size < sizeof vs) {
            for (uint64_t i = 0; i < ver->size; i++) {
                unsigned char c = buf[ver->off + i];
                if (c < '0' || c > '9') break;
                vs[i] = (char)c;
            }
        }
        size_t cap = 96 + m.prefix_len * 6;
        char *js = malloc(cap);
        if (!js) {
            rc = qd_err_set(QD_ENOMEM, "%s: out of memory", fname);
        } else {
            /* the folder name for JSON (control characters, quotes, backslashes dropped) */
            char pre[101] = "";
            size_t q = 0;
            for (size_t i = 0; i < m.prefix_len && q + 1 < sizeof pre; i++) {
                unsigned char c = (unsigned char)m.prefix[i];
                if (c >= 0x20 && c != '"' && c != '\\') pre[q++] = (char)c;
            }
            pre[q] = 0;
            snprintf(js, cap, "{\"format\":\"torch-zip\",\"archive\":\"%s\",\"version\":\"%s\"}", pre, vs);
            *metadata = js;
        }
    }
    if (rc != QD_OK) {
        qd_st_free_tensors(t, nt);
        goto done;
    }
    if (pickle_off) *pickle_off = pk->off;
    if (pickle_len) *pickle_len = pk->size;
    if (tensors)
        *tensors = t;
    else
        qd_st_free_tensors(t, nt);
    if (ntensors) *ntensors = nt;
done:
    free(ent);
    return rc;
}
