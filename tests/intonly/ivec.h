/* tests/intonly/ivec.h — the ViT test vectors shared by the x86-64 test (which writes them) and the
 * AArch64 test (which reads them): the int8 input patches of N images, the integer graph's int32
 * outputs on x86-64, and the labels. "QDIV", version 1, then int32 N, patch rows per image, patch
 * width, outputs per image, then the three arrays, little-endian. */
#ifndef QD_TEST_IVEC_H
#define QD_TEST_IVEC_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int32_t n, np, pk, L;
    int8_t *patches; /* [n][np][pk] */
    int32_t *out;    /* [n][L] */
    int32_t *labels; /* [n] */
} qd_ivec;

static inline int qd_ivec_write(const char *path, const qd_ivec *v)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    const uint32_t ver = 1;
    int ok = fwrite("QDIV", 1, 4, f) == 4 && fwrite(&ver, 4, 1, f) == 1 && fwrite(&v->n, 4, 4, f) == 4;
    const size_t np = (size_t)v->n * v->np * v->pk, no = (size_t)v->n * v->L;
    ok = ok && fwrite(v->patches, 1, np, f) == np && fwrite(v->out, 4, no, f) == no &&
         fwrite(v->labels, 4, (size_t)v->n, f) == (size_t)v->n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

static inline int qd_ivec_read(const char *path, qd_ivec *v)
{
    memset(v, 0, sizeof *v);
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    char m[4];
    uint32_t ver = 0;
    int ok = fread(m, 1, 4, f) == 4 && !memcmp(m, "QDIV", 4) && fread(&ver, 4, 1, f) == 1 && ver == 1 &&
             fread(&v->n, 4, 4, f) == 4 && v->n > 0 && v->np > 0 && v->pk > 0 && v->L > 0;
    if (ok) {
        const size_t np = (size_t)v->n * v->np * v->pk, no = (size_t)v->n * v->L;
        v->patches = malloc(np);
        v->out = malloc(no * 4);
        v->labels = malloc((size_t)v->n * 4);
        ok = v->patches && v->out && v->labels && fread(v->patches, 1, np, f) == np && fread(v->out, 4, no, f) == no &&
             fread(v->labels, 4, (size_t)v->n, f) == (size_t)v->n;
    }
    fclose(f);
    return ok ? 0 : -1;
}

static inline void qd_ivec_free(qd_ivec *v)
{
    free(v->patches);
    free(v->out);
    free(v->labels);
}

#endif
