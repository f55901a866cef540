/* shard/select.c — default tensor selection (see select.h). */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "shard/select.h"

/* If s starts with `word` followed by '.', return the text after the dot. */
static const char *eat(const char *s, const char *word)
{
    size_t n = strlen(word);
    if (strncmp(s, word, n) == 0 && s[n] == '.') return s + n + 1;
    return NULL;
}

/* s points at "layer.N." / "layers.N." (ALBERT: "albert_layer_groups.N."): return N or -1. */
static int block_at(const char *s)
{
    const char *p = eat(s, "layer");
    if (!p) p = eat(s, "layers");
    if (!p) p = eat(s, "albert_layer_groups");
    if (!p || !isdigit((unsigned char)*p)) return -1;
    long v = 0;
    while (isdigit((unsigned char)*p)) {
        v = v * 10 + (*p - '0');
        if (v > 1000000) return -1;
        p++;
    }
    return *p == '.' ? (int)v : -1;
}

int qd_shard_block_index(const char *name)
{
    if (!name) return -1;
    int b = block_at(name); /* prefix-less BERT: "layer.3.attention..." */
    if (b >= 0) return b;
    /* "encoder.layer.N." or "transformer.layer.N." at the start or after a '.' */
    for (const char *s = name; *s; s++) {
        if (s != name && s[-1] != '.') continue;
        const char *p = eat(s, "encoder");
        if (!p) p = eat(s, "transformer");
        if (p && (b = block_at(p)) >= 0) return b;
    }
    return -1;
}

static int contains_ci(const char *s, const char *needle)
{
    size_t n = strlen(needle);
    for (; *s; s++)
        if (strncasecmp(s, needle, n) == 0) return 1;
    return 0;
}

int qd_shard_default_quantizable(const qd_tensor_info *t)
{
    if (!t || !t->name || !t->float_like || t->ndim != 2) return 0;
    size_t n = strlen(t->name);
    if (n < 7 || strcmp(t->name + n - 7, ".weight") != 0) return 0;
    if (qd_shard_block_index(t->name) < 0) return 0;
    if (contains_ci(t->name, "norm") || contains_ci(t->name, "embed")) return 0;
    return 1;
}
