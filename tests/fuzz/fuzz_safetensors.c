/* libFuzzer target: the safetensors header parser on arbitrary bytes. The input is a whole file;
 * the parser must either accept it (and then every tensor lies inside the file) or return a
 * negative code with a message, never read outside the buffer. */
#include <stdlib.h>
#include <string.h>

#include "shard/safetensors.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    qd_tensor_info *t = NULL;
    int n = 0;
    char *meta = NULL;
    uint64_t hl = 0;
    int rc = qd_st_parse_header("fuzz.safetensors", data, size, size, &t, &n, &meta, &hl);
    if (rc == QD_OK) {
        uint64_t covered = 0;
        for (int i = 0; i < n; i++) {
            if (t[i].offset > size || t[i].nbytes > size - t[i].offset) abort();
            if (t[i].nbytes != t[i].numel * qd_dtype_size(t[i].dtype)) abort();
            if (i && strcmp(t[i - 1].name, t[i].name) >= 0) abort();
            covered += t[i].nbytes;
        }
        if (covered != size - 8 - hl) abort(); /* the data region is exactly covered */
        qd_st_free_tensors(t, n);
        free(meta);
    } else {
        if (rc >= 0 || t || meta || !qd_errmsg()[0]) abort();
    }
    /* a truncated view of the same bytes must be refused or agree (never overrun) */
    if (size > 8) {
        rc = qd_st_parse_header("fuzz.safetensors", data, size - 1, size - 1, &t, &n, &meta, &hl);
        if (rc == QD_OK) {
            qd_st_free_tensors(t, n);
            free(meta);
        }
    }
    return 0;
}
