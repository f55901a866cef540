/* st_testutil.h — writing small safetensors files and checkpoints from tests. */
#ifndef QD_ST_TESTUTIL_H
#define QD_ST_TESTUTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A fresh directory under /tmp (removed by st_rmtree at the end of the test). */
static inline char *st_mkdtemp(const char *tag)
{
    char *d = malloc(128);
    snprintf(d, 128, "/tmp/qd_%s_XXXXXX", tag);
    if (!mkdtemp(d)) {
        perror("mkdtemp");
        exit(99);
    }
    return d;
}

static inline void st_rmtree(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}

static inline char *st_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static inline void st_write_bytes(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f || (len && fwrite(buf, 1, len, f) != len) || fclose(f) != 0) {
        perror(path);
        exit(99);
    }
}

/* Write u64 header length `hlen` (usually strlen(json)), the json bytes, then `data_len` bytes of
 * `data` (zeros if NULL). Returns the malloc'd path dir/name. */
static inline char *st_write_raw(const char *dir, const char *name, uint64_t hlen, const char *json, size_t json_len,
                                 const void *data, size_t data_len)
{
    char *p = st_path(dir, name);
    size_t total = 8 + json_len + data_len;
    unsigned char *buf = calloc(total + 1, 1);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(buf + 8, json, json_len);
    if (data) memcpy(buf + 8 + json_len, data, data_len);
    st_write_bytes(p, buf, total);
    free(buf);
    return p;
}

/* The common case: a well-formed length prefix. */
static inline char *st_write(const char *dir, const char *name, const char *json, const void *data, size_t data_len)
{
    return st_write_raw(dir, name, strlen(json), json, strlen(json), data, data_len);
}

#endif
