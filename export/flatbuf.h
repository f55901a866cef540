/* export/flatbuf.h — a minimal FlatBuffers builder (the binary format TensorFlow Lite models use):
 * tables with vtables, vectors of scalars, of tables and of strings, strings, a file identifier.
 * Debian ships only flatbuffers' C++ compiler and library; the format itself is small and fully
 * specified (little-endian; uoffset = forward distance; a table starts with the signed distance
 * to its vtable; vectors and strings carry a 32-bit length, strings a terminating 0), so the
 * project's C writes it directly, following the schema's field slots.
 *
 * The buffer is built back to front, as FlatBuffers builders do: children first, so that every
 * reference points forward. An object is named by its distance from the buffer's end
 * (qd_fbref), which does not change as the buffer grows at the front. One table at a time. */
#ifndef QD_EXPORT_FLATBUF_H
#define QD_EXPORT_FLATBUF_H

#include <stddef.h>
#include <stdint.h>

typedef uint32_t qd_fbref; /* 0: none */

typedef struct {
    uint8_t *buf;
    size_t cap, used; /* data occupies buf[cap - used, cap) */
    size_t minalign;
    /* the table being built */
    int nslots;
    uint32_t slot[64]; /* end-offset of each field, 0 when absent */
    uint32_t table_start;
    int failed; /* out of memory or over 2 GiB */
} qd_fb;

void qd_fb_init(qd_fb *b);
void qd_fb_free(qd_fb *b);

qd_fbref qd_fb_string(qd_fb *b, const char *s);
/* A vector of n scalars of elsize bytes (1, 2, 4 or 8; little-endian host values). */
qd_fbref qd_fb_vector(qd_fb *b, const void *data, size_t n, size_t elsize);
/* A vector of n scalars aligned to `align` (>= elsize): large constant buffers. */
qd_fbref qd_fb_vector_aligned(qd_fb *b, const void *data, size_t n, size_t elsize, size_t align);
/* A vector of references (tables or strings). */
qd_fbref qd_fb_vector_refs(qd_fb *b, const qd_fbref *refs, size_t n);

void qd_fb_table_start(qd_fb *b, int nslots);
void qd_fb_add_u8(qd_fb *b, int slot, uint8_t v);
void qd_fb_add_i32(qd_fb *b, int slot, int32_t v);
void qd_fb_add_u32(qd_fb *b, int slot, uint32_t v);
void qd_fb_add_i64(qd_fb *b, int slot, int64_t v);
void qd_fb_add_f32(qd_fb *b, int slot, float v);
void qd_fb_add_ref(qd_fb *b, int slot, qd_fbref r);
qd_fbref qd_fb_table_end(qd_fb *b);

/* The root reference and the 4-byte file identifier at the front; *data and *size describe the
 * finished buffer (valid until qd_fb_free). QD_OK, or QD_ENOMEM / QD_EUNSUPPORTED (> 2 GiB). */
int qd_fb_finish(qd_fb *b, qd_fbref root, const char ident[4], const uint8_t **data, size_t *size);

#endif
