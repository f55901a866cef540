#include "shard/st_write.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const qd_st_out_tensor *)a)->name, ((const qd_st_out_tensor *)b)->name);
}

int qd_st_write(const char *path, qd_st_out_tensor *t, int n, const char *metadata_json)
{
    qsort(t, (size_t)n, sizeof *t, cmp_name);
    cJSON *h = cJSON_CreateObject();
    if (metadata_json) {
        cJSON *m = cJSON_Parse(metadata_json);
        if (!cJSON_IsObject(m)) {
            cJSON_Delete(m);
            cJSON_Delete(h);
            return qd_err_set(QD_EINVAL, "%s: metadata must be a JSON object", path);
        }
        cJSON_AddItemToObject(h, "__metadata__", m);
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        uint64_t numel = 1;
        cJSON *o = cJSON_CreateObject(), *sh = cJSON_CreateArray();
        cJSON_AddStringToObject(o, "dtype", qd_dtype_name(t[i].dtype));
        for (int d = 0; d < t[i].ndim; d++) {
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t[i].shape[d]));
            numel *= (uint64_t)t[i].shape[d];
        }
        cJSON_AddItemToObject(o, "shape", sh);
        uint64_t nb = numel * qd_dtype_size(t[i].dtype);
        cJSON *offs = cJSON_CreateArray();
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + nb)));
        cJSON_AddItemToObject(o, "data_offsets", offs);
        cJSON_AddItemToObject(h, t[i].name, o);
        off += nb;
    }
    char *txt = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    size_t hl = strlen(txt), padded = (hl + 7) / 8 * 8;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        free(txt);
        return qd_err_set(QD_EIO, "%s: cannot create", tmp);
    }
    uint64_t le = padded;
    unsigned char lb[8];
    for (int i = 0; i < 8; i++) lb[i] = (unsigned char)(le >> (8 * i));
    int ok = fwrite(lb, 1, 8, f) == 8 && fwrite(txt, 1, hl, f) == hl;
    for (size_t i = hl; ok && i < padded; i++) ok = fputc(' ', f) != EOF;
    free(txt);
    for (int i = 0; ok && i < n; i++) {
        uint64_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) numel *= (uint64_t)t[i].shape[d];
        size_t nb = (size_t)(numel * qd_dtype_size(t[i].dtype));
        ok = nb == 0 || fwrite(t[i].data, 1, nb, f) == nb;
    }
    if (fclose(f) != 0) ok = 0;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return qd_err_set(QD_EIO, "%s: write failed (disk full?)", path);
    }
    return QD_OK;
}
