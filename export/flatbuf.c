/* export/flatbuf.c — the FlatBuffers builder (see flatbuf.h). */
#include "export/flatbuf.h"

#include <stdlib.h>
#include <string.h>

#include "common/qd_common.h"

#define FB_MAX ((size_t)INT32_MAX)

void qd_fb_init(qd_fb *b)
{
    memset(b, 0, sizeof *b);
    b->minalign = 1;
}

void qd_fb_free(qd_fb *b)
{
    free(b->buf);
    memset(b, 0, sizeof *b);
}

/* room for n more bytes at the front */
static int grow(qd_fb *b, size_t n)
{
    if (b->failed) return 0;
    if (b->cap - b->used >= n) return 1;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap - b->used < n) cap *= 2;
    if (cap > FB_MAX + 1024) {
        b->failed = 1;
        return 0;
    }
    uint8_t *nb = malloc(cap);
    if (!nb) {
        b->failed = 1;
        return 0;
    }
    if (b->used) memcpy(nb + cap - b->used, b->buf + b->cap - b->used, b->used);
    free(b->buf);
    b->buf = nb;
    b->cap = cap;
    return 1;
}

static void pad(qd_fb *b, size_t n)
{
    if (!grow(b, n)) return;
    b->used += n;
    memset(b->buf + b->cap - b->used, 0, n);
}

/* align so that after `extra` more bytes the front is aligned to `size` */
static void prep(qd_fb *b, size_t size, size_t extra)
{
    if (size > b->minalign) b->minalign = size;
    size_t p = (~(b->used + extra) + 1) & (size - 1);
    pad(b, p);
}

static void push(qd_fb *b, const void *p, size_t n)
{
    if (!grow(b, n)) return;
    b->used += n;
    memcpy(b->buf + b->cap - b->used, p, n);
}

static void push_uoffset(qd_fb *b, qd_fbref r)
{
    prep(b, 4, 0);
    uint32_t v = (uint32_t)(b->used + 4 - r);
    push(b, &v, 4);
}

qd_fbref qd_fb_vector_aligned(qd_fb *b, const void *data, size_t n, size_t elsize, size_t align)
{
    /* the length sits right before the data: align the data's start to `align` (>= 4) or, for
     * narrower elements, its end to 4 */
    prep(b, 4, n * elsize);
    if (align > 4 && (n * elsize) % 4 == 0) prep(b, align, n * elsize);
    push(b, data, n * elsize);
    uint32_t len = (uint32_t)n;
    push(b, &len, 4);
    return (qd_fbref)b->used;
}

qd_fbref qd_fb_vector(qd_fb *b, const void *data, size_t n, size_t elsize)
{
    return qd_fb_vector_aligned(b, data, n, elsize, elsize);
}

qd_fbref qd_fb_vector_refs(qd_fb *b, const qd_fbref *refs, size_t n)
{
    prep(b, 4, 4 * n);
    for (size_t i = n; i-- > 0;) push_uoffset(b, refs[i]);
    uint32_t len = (uint32_t)n;
    push(b, &len, 4);
    return (qd_fbref)b->used;
}

qd_fbref qd_fb_string(qd_fb *b, const char *s)
{
    size_t n = strlen(s);
    prep(b, 4, n + 1);
    pad(b, 1);
    push(b, s, n);
    uint32_t len = (uint32_t)n;
    push(b, &len, 4);
    return (qd_fbref)b->used;
}

void qd_fb_table_start(qd_fb *b, int nslots)
{
    QD_ASSERT(nslots >= 0 && nslots <= 64);
    b->nslots = nslots;
    memset(b->slot, 0, sizeof b->slot);
    b->table_start = (uint32_t)b->used;
}

static void add_scalar(qd_fb *b, int slot, const void *v, size_t size)
{
    QD_ASSERT(slot >= 0 && slot < b->nslots);
    prep(b, size, 0);
    push(b, v, size);
    b->slot[slot] = (uint32_t)b->used;
}

void qd_fb_add_u8(qd_fb *b, int slot, uint8_t v) { add_scalar(b, slot, &v, 1); }
void qd_fb_add_i32(qd_fb *b, int slot, int32_t v) { add_scalar(b, slot, &v, 4); }
void qd_fb_add_u32(qd_fb *b, int slot, uint32_t v) { add_scalar(b, slot, &v, 4); }
void qd_fb_add_i64(qd_fb *b, int slot, int64_t v) { add_scalar(b, slot, &v, 8); }
void qd_fb_add_f32(qd_fb *b, int slot, float v) { add_scalar(b, slot, &v, 4); }

void qd_fb_add_ref(qd_fb *b, int slot, qd_fbref r)
{
    QD_ASSERT(slot >= 0 && slot < b->nslots);
    if (!r) return;
    push_uoffset(b, r);
    b->slot[slot] = (uint32_t)b->used;
}

qd_fbref qd_fb_table_end(qd_fb *b)
{
    /* the table: its soffset to the vtable first (filled in below) */
    prep(b, 4, 0);
    int32_t zero = 0;
    push(b, &zero, 4);
    const uint32_t table = (uint32_t)b->used;
    int n = b->nslots;
    while (n > 0 && !b->slot[n - 1]) n--;
    /* the vtable: [vtable bytes, table bytes, field offsets from the table start] */
    uint16_t vt[66];
    vt[0] = (uint16_t)(4 + 2 * n);
    vt[1] = (uint16_t)(table - b->table_start);
    for (int i = 0; i < n; i++) vt[2 + i] = (uint16_t)(b->slot[i] ? table - b->slot[i] : 0);
    push(b, vt, (size_t)vt[0]);
    const uint32_t vtable = (uint32_t)b->used;
    /* soffset = table position - vtable position: the vtable sits before the table */
    if (!b->failed) {
        int32_t so = (int32_t)(vtable - table);
        memcpy(b->buf + b->cap - table, &so, 4);
    }
    b->nslots = 0;
    return table;
}

int qd_fb_finish(qd_fb *b, qd_fbref root, const char ident[4], const uint8_t **data, size_t *size)
{
    prep(b, b->minalign, 8);
    push(b, ident, 4);
    push_uoffset(b, root);
    if (b->failed) return qd_err_set(QD_ENOMEM, "flatbuffer: out of memory or over 2 GiB");
    *data = b->buf + b->cap - b->used;
    *size = b->used;
    return QD_OK;
}
