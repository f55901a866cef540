/* shard/st_header.c — parse and validate one safetensors header.
 *
 * Layout: u64 little-endian N, N bytes of UTF-8 JSON (an object, possibly padded with trailing
 * spaces), then the data region. Every tensor entry is {"dtype", "shape", "data_offsets"} with
 * offsets relative to the data region; the tensors must cover the data region exactly (no holes,
 * no overlaps). "__metadata__" is an optional string->string map.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "shard/safetensors.h"

/* Strict UTF-8 (no overlongs, no surrogates, <= U+10FFFF). Returns the offset of the first bad
 * byte, or len if all valid. */
static size_t utf8_check(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        unsigned min;
        unsigned cp;
        if ((c & 0xe0) == 0xc0) {
            n = 1;
            min = 0x80;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2;
            min = 0x800;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3;
            min = 0x10000;
            cp = c & 0x07;
        } else
            return i;
        if (len - i <= n) return i;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
        i += n + 1;
    }
    return len;
}

void qd_st_free_tensors(qd_tensor_info *t, int n)
{
    if (!t) return;
    for (int i = 0; i < n; i++) free(t[i].name);
    free(t);
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const qd_tensor_info *)a)->name, ((const qd_tensor_info *)b)->name);
}

typedef struct {
    uint64_t begin, end;
    const char *name;
} span;

static int cmp_span(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* A JSON number that is a non-negative integer exactly representable (<= 2^53). */
static int json_uint(const cJSON *j, uint64_t *out)
{
    if (!cJSON_IsNumber(j)) return 0;
    double d = j->valuedouble;
    if (!(d >= 0.0) || d > 9007199254740992.0 || floor(d) != d) return 0;
    *out = (uint64_t)d;
    return 1;
}

/* Parse one entry into *t (name already set). */
static int parse_entry(const char *fname, const cJSON *e, uint64_t data_size, qd_tensor_info *t, uint64_t *begin,
                       uint64_t *end)
{
    const char *nm = t->name;
    if (!cJSON_IsObject(e)) return qd_err_set(QD_EFORMAT, "%s: tensor '%s': entry is not a JSON object", fname, nm);
    /* each field once (cJSON keeps duplicate keys; a lookup would silently take the first) */
    static const char *const fields[] = {"dtype", "shape", "data_offsets"};
    for (size_t f = 0; f < 3; f++) {
        int seen = 0;
        for (const cJSON *c = e->child; c; c = c->next)
            if (c->string && !strcmp(c->string, fields[f])) seen++;
        if (seen > 1)
            return qd_err_set(QD_EFORMAT, "%s: tensor '%s': \"%s\" given %d times", fname, nm, fields[f], seen);
    }
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!dt) return qd_err_set(QD_EFORMAT, "%s: tensor '%s': missing \"dtype\"", fname, nm);
    if (!cJSON_IsString(dt) || !dt->valuestring)
        return qd_err_set(QD_EFORMAT, "%s: tensor '%s': \"dtype\" is not a string", fname, nm);
    if (qd_dtype_from_name(dt->valuestring, &t->dtype) != QD_OK)
        return qd_err_set(QD_EDTYPE, "%s: tensor '%s': unknown dtype \"%.32s\"", fname, nm, dt->valuestring);
    if (!sh) return qd_err_set(QD_EFORMAT, "%s: tensor '%s': missing \"shape\"", fname, nm);
    if (!cJSON_IsArray(sh)) return qd_err_set(QD_EFORMAT, "%s: tensor '%s': \"shape\" is not an array", fname, nm);
    int nd = cJSON_GetArraySize(sh);
    if (nd > QD_ST_MAX_DIMS)
        return qd_err_set(QD_EFORMAT, "%s: tensor '%s': %d dimensions (at most %d supported)", fname, nm, nd,
                          QD_ST_MAX_DIMS);
    t->ndim = nd;
    uint64_t numel = 1;
    int k = 0;
    for (const cJSON *d = sh->child; d; d = d->next, k++) {
        uint64_t v;
        if (!json_uint(d, &v))
            return qd_err_set(QD_EFORMAT, "%s: tensor '%s': shape[%d] is not a non-negative integer", fname, nm, k);
        if (v > (uint64_t)INT64_MAX || qd_mul_overflow(numel, v, &numel))
            return qd_err_set(QD_EFORMAT, "%s: tensor '%s': shape product overflows", fname, nm);
        t->shape[k] = (int64_t)v;
    }
    t->numel = numel;
    if (qd_mul_overflow(numel, qd_dtype_size(t->dtype), &t->nbytes))
        return qd_err_set(QD_EFORMAT, "%s: tensor '%s': byte size overflows", fname, nm);
    if (!off) return qd_err_set(QD_EFORMAT, "%s: tensor '%s': missing \"data_offsets\"", fname, nm);
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || !json_uint(off->child, begin) ||
        !json_uint(off->child->next, end))
        return qd_err_set(QD_EFORMAT,
                          "%s: tensor '%s': \"data_offsets\" is not [begin, end] of non-negative "
                          "integers",
                          fname, nm);
    if (*end < *begin)
        return qd_err_set(QD_EFORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] end before begin", fname, nm,
                          (unsigned long long)*begin, (unsigned long long)*end);
    if (*end - *begin != t->nbytes)
        return qd_err_set(QD_EFORMAT,
                          "%s: tensor '%s': data_offsets [%llu, %llu] span %llu bytes, but %s "
                          "shape needs %llu",
                          fname, nm, (unsigned long long)*begin, (unsigned long long)*end,
                          (unsigned long long)(*end - *begin), qd_dtype_name(t->dtype), (unsigned long long)t->nbytes);
    if (*end > data_size)
        return qd_err_set(QD_EFORMAT,
                          "%s: tensor '%s': data_offsets [%llu, %llu] outside the data region "
                          "(%llu bytes; file truncated?)",
                          fname, nm, (unsigned long long)*begin, (unsigned long long)*end,
                          (unsigned long long)data_size);
    t->float_like = t->dtype == QD_DT_F32 || t->dtype == QD_DT_F16 || t->dtype == QD_DT_BF16 || t->dtype == QD_DT_F64;
    return QD_OK;
}

static int check_metadata(const char *fname, const cJSON *m, char **metadata)
{
    if (!cJSON_IsObject(m)) return qd_err_set(QD_EFORMAT, "%s: \"__metadata__\" is not a JSON object", fname);
    for (const cJSON *c = m->child; c; c = c->next)
        if (!cJSON_IsString(c))
            return qd_err_set(QD_EFORMAT, "%s: \"__metadata__\" value '%s' is not a string", fname,
                              c->string ? c->string : "");
    if (metadata) {
        *metadata = cJSON_PrintUnformatted(m);
        if (!*metadata) return qd_err_set(QD_ENOMEM, "%s: out of memory", fname);
    }
    return QD_OK;
}

/* Exact coverage of the data region: sorted by begin, each tensor starts where the previous ended
 * (zero-sized tensors may sit anywhere on that chain). data0: offset of the data region; sp has
 * room for nt spans. */
static int check_coverage(const char *fname, const qd_tensor_info *t, int nt, uint64_t data0, uint64_t data_size,
                          span *sp)
{
    for (int i = 0; i < nt; i++) {
        sp[i].begin = t[i].offset - data0;
        sp[i].end = sp[i].begin + t[i].nbytes;
        sp[i].name = t[i].name;
    }
    qsort(sp, (size_t)nt, sizeof *sp, cmp_span);
    uint64_t pos = 0;
    const char *prev = NULL;
    for (int i = 0; i < nt; i++) {
        const char *nm = sp[i].name;
        if (sp[i].begin < pos)
            return qd_err_set(QD_EFORMAT,
                              "%s: tensor '%s': data [%llu, %llu] overlaps tensor '%s' "
                              "(ends at %llu)",
                              fname, nm, (unsigned long long)sp[i].begin, (unsigned long long)sp[i].end,
                              prev ? prev : "?", (unsigned long long)pos);
        if (sp[i].begin > pos)
            return qd_err_set(QD_EFORMAT,
                              "%s: tensor '%s': hole in the data region: bytes [%llu, "
                              "%llu) before it belong to no tensor",
                              fname, nm, (unsigned long long)pos, (unsigned long long)sp[i].begin);
        pos = sp[i].end;
        prev = nm;
    }
    if (pos != data_size)
        return qd_err_set(QD_EFORMAT,
                          "%s: tensor '%s': hole in the data region: bytes [%llu, %llu) "
                          "after the last tensor belong to no tensor",
                          fname, prev ? prev : "(none)", (unsigned long long)pos, (unsigned long long)data_size);
    return QD_OK;
}

int qd_st_parse_header(const char *fname, const unsigned char *buf, size_t len, uint64_t file_size,
                       qd_tensor_info **tensors, int *ntensors, char **metadata, uint64_t *header_len)
{
    if (tensors) *tensors = NULL;
    if (ntensors) *ntensors = 0;
    if (metadata) *metadata = NULL;
    if (!fname) fname = "(memory)";
    if (!buf || len > file_size) return qd_err_set(QD_EINVAL, "%s: bad arguments", fname);
    if (file_size < 8 || len < 8)
        return qd_err_set(QD_EFORMAT,
                          "%s: file truncated: %llu bytes, the header length alone "
                          "needs 8",
                          fname, (unsigned long long)file_size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | buf[i];
    if (header_len) *header_len = n;
    if (n > QD_ST_MAX_HEADER)
        return qd_err_set(QD_EFORMAT, "%s: header length %llu exceeds the %u MiB limit", fname, (unsigned long long)n,
                          QD_ST_MAX_HEADER >> 20);
    if (n > file_size - 8)
        return qd_err_set(QD_EFORMAT,
                          "%s: header length %llu larger than the file (%llu bytes; "
                          "truncated?)",
                          fname, (unsigned long long)n, (unsigned long long)file_size);
    if (n > len - 8)
        return qd_err_set(QD_EINVAL, "%s: only %zu of the %llu header bytes given", fname, len,
                          (unsigned long long)(n + 8));
    const unsigned char *h = buf + 8;
    uint64_t data_size = file_size - 8 - n;
    size_t bad = utf8_check(h, (size_t)n);
    if (bad != n) return qd_err_set(QD_EFORMAT, "%s: header is not valid UTF-8 (byte %zu)", fname, bad);
    if (n == 0 || h[0] != '{') return qd_err_set(QD_EFORMAT, "%s: header does not start with '{'", fname);

    const char *endp = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)h, (size_t)n, &endp, 0);
    if (!root) {
        size_t at = endp && endp >= (const char *)h ? (size_t)(endp - (const char *)h) : 0;
        return qd_err_set(QD_EFORMAT, "%s: header is not valid JSON (near byte %zu)", fname, at);
    }
    /* cJSON stops at the end of the value; only whitespace padding may follow. */
    for (const char *p = endp; p < (const char *)h + n; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            return qd_err_set(QD_EFORMAT,
                              "%s: header has trailing bytes after the JSON object "
                              "(byte %zu)",
                              fname, (size_t)(p - (const char *)h));
        }
    }
    int rc = QD_OK;
    qd_tensor_info *t = NULL;
    span *sp = NULL;
    int nt = 0, nmeta = 0;
    char *meta = NULL;
    if (!cJSON_IsObject(root)) {
        rc = qd_err_set(QD_EFORMAT, "%s: header is not a JSON object", fname);
        goto done;
    }
    int cap = 0;
    for (const cJSON *c = root->child; c; c = c->next) cap++;
    t = calloc((size_t)cap + 1, sizeof *t);
    sp = calloc((size_t)cap + 1, sizeof *sp);
    if (!t || !sp) {
        rc = qd_err_set(QD_ENOMEM, "%s: out of memory for %d header entries", fname, cap);
        goto done;
    }
    for (const cJSON *c = root->child; c; c = c->next) {
        const char *key = c->string ? c->string : "";
        if (!strcmp(key, "__metadata__")) {
            if (nmeta++) {
                rc = qd_err_set(QD_EFORMAT, "%s: duplicate \"__metadata__\" entry", fname);
                goto done;
            }
            rc = check_metadata(fname, c, metadata ? &meta : NULL);
            if (rc) goto done;
            continue;
        }
        qd_tensor_info *ti = &t[nt];
        ti->name = strdup(key);
        if (!ti->name) {
            rc = qd_err_set(QD_ENOMEM, "%s: out of memory", fname);
            goto done;
        }
        nt++;
        uint64_t b = 0, e = 0;
        rc = parse_entry(fname, c, data_size, ti, &b, &e);
        if (rc) goto done;
        ti->offset = 8 + n + b;
        ti->file_index = 0;
    }
    qsort(t, (size_t)nt, sizeof *t, cmp_name);
    for (int i = 1; i < nt; i++) {
        if (!strcmp(t[i - 1].name, t[i].name)) {
            rc = qd_err_set(QD_EFORMAT, "%s: tensor '%s': duplicate name in the header", fname, t[i].name);
            goto done;
        }
    }
    rc = check_coverage(fname, t, nt, 8 + n, data_size, sp);
done:
    cJSON_Delete(root);
    free(sp);
    if (rc) {
        qd_st_free_tensors(t, nt);
        if (meta) cJSON_free(meta);
        return rc;
    }
    if (tensors)
        *tensors = t;
    else
        qd_st_free_tensors(t, nt);
    if (ntensors) *ntensors = nt;
    if (metadata) {
        /* hand back a malloc'd string (cJSON may use another allocator) */
        *metadata = meta ? strdup(meta) : NULL;
        if (meta) cJSON_free(meta);
    }
    return QD_OK;
}
