/* model/tokenizer_bpe.c — byte-level BPE as GPT-2 and RoBERTa use it (Hugging Face tokenizers'
 * ByteLevel pre-tokenizer + BPE model):
 *   1. split the text with GPT-2's pattern
 *        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *      (written out below as a scanner over code points: letters are categories L*, numbers N*,
 *      \s is Unicode White_Space);
 *   2. map every byte of a piece to a printable code point (GPT-2's bytes_to_unicode: the
 *      printable Latin-1 bytes stand for themselves, the other 68 are 256 + k in byte order);
 *   3. merge adjacent symbols, lowest merge rank first (leftmost on a tie), until no pair of
 *      merges.txt is left; each symbol is a vocabulary token.
 * No library does this in C (the reference is Rust); utf8proc gives the Unicode categories. */
#include <stdio.h>
#include <string.h>
#include <utf8proc.h>

#include "model/tokenizer_internal.h"

struct qd_tok_bpe {
    uint64_t *keys;  /* [nslots] (left id << 32 | right id) + 1, 0 = empty */
    int32_t *rank;   /* [nslots] merge rank */
    int32_t *merged; /* [nslots] id of the merged token */
    uint32_t nslots;
    int32_t byte_id[256]; /* token of each byte's code point */
    int add_prefix_space;
};

static uint32_t mix(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return (uint32_t)k;
}

static int32_t find_merge(const qd_tok_bpe *b, int32_t l, int32_t r, int32_t *merged)
{
    uint64_t key = ((uint64_t)(uint32_t)l << 32 | (uint32_t)r) + 1;
    for (uint32_t i = mix(key) & (b->nslots - 1);; i = (i + 1) & (b->nslots - 1)) {
        if (b->keys[i] == 0) return -1;
        if (b->keys[i] == key) {
            *merged = b->merged[i];
            return b->rank[i];
        }
    }
}

/* GPT-2's bytes_to_unicode: the code point standing for byte v */
static int32_t byte_char(int v)
{
    if ((v >= 33 && v <= 126) || (v >= 161 && v <= 172) || (v >= 174 && v <= 255)) return v;
    int k = 0;
    for (int u = 0; u < v; u++)
        if (!((u >= 33 && u <= 126) || (u >= 161 && u <= 172) || (u >= 174 && u <= 255))) k++;
    return 256 + k;
}

int qd_tok_bpe_new(qd_tokenizer *t, const char *const *ma, const char *const *mb, int nmerges, int add_prefix_space)
{
    qd_tok_bpe *b = qd_xcalloc(1, sizeof *b);
    t->bpe = b;
    t->kind = QD_TOK_BPE;
    b->add_prefix_space = add_prefix_space;
    for (int v = 0; v < 256; v++) {
        uint8_t u[8];
        utf8proc_ssize_t l = utf8proc_encode_char(byte_char(v), u);
        b->byte_id[v] = qd_tok_lookup(t, (const char *)u, (size_t)l);
    }
    uint32_t ns = 16;
    while (ns < 2u * (uint32_t)(nmerges > 0 ? nmerges : 1)) ns *= 2;
    b->nslots = ns;
    b->keys = calloc(ns, sizeof *b->keys);
    b->rank = malloc(ns * sizeof *b->rank);
    b->merged = malloc(ns * sizeof *b->merged);
    if (!b->keys || !b->rank || !b->merged) return qd_err_set(QD_ENOMEM, "%s: out of memory", t->path);
    char buf[1024];
    for (int r = 0; r < nmerges; r++) {
        int32_t l = qd_tok_lookup(t, ma[r], strlen(ma[r])), rr = qd_tok_lookup(t, mb[r], strlen(mb[r]));
        int n = snprintf(buf, sizeof buf, "%s%s", ma[r], mb[r]);
        int32_t m = n > 0 && n < (int)sizeof buf ? qd_tok_lookup(t, buf, (size_t)n) : -1;
        if (l < 0 || rr < 0 || m < 0) /* as tokenizers: every merge must be made of tokens */
            return qd_err_set(QD_EFORMAT, "%s: merge %d ('%s' '%s') names a token the vocabulary lacks", t->path, r + 1,
                              ma[r], mb[r]);
        uint64_t key = ((uint64_t)(uint32_t)l << 32 | (uint32_t)rr) + 1;
        uint32_t i = mix(key) & (ns - 1);
        while (b->keys[i] && b->keys[i] != key) i = (i + 1) & (ns - 1);
        if (b->keys[i]) continue; /* a repeated merge keeps its first rank */
        b->keys[i] = key;
        b->rank[i] = r;
        b->merged[i] = m;
    }
    return QD_OK;
}

void qd_tok_bpe_free(qd_tok_bpe *b)
{
    if (!b) return;
    free(b->keys);
    free(b->rank);
    free(b->merged);
    free(b);
}

/* ---- the pre-tokenizer -------------------------------------------------------------------- */

static int is_l(int32_t c)
{
    int k = utf8proc_category(c);
    return k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO;
}
static int is_n(int32_t c)
{
    int k = utf8proc_category(c);
    return k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO;
}
static int is_other(int32_t c) { return !qd_tok_is_white(c) && !is_l(c) && !is_n(c); }

/* The end of the match of GPT-2's pattern at cp[i] (i < n). */
static size_t match(const int32_t *cp, size_t n, size_t i)
{
    if (cp[i] == '\'' && i + 1 < n) { /* 's 't 're 've 'm 'll 'd */
        int32_t a = cp[i + 1], b = i + 2 < n ? cp[i + 2] : 0;
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    }
    size_t j = cp[i] == ' ' && i + 1 < n ? i + 1 : i; /* ' ?' */
    int (*cls[3])(int32_t) = {is_l, is_n, is_other};
    for (int k = 0; k < 3; k++) {
        size_t s = cls[k](cp[j]) ? j : cls[k](cp[i]) ? i : n;
        if (s == n) continue;
        size_t e = s + 1;
        while (e < n && cls[k](cp[e])) e++;
        return e;
    }
    /* whitespace: \s+(?!\S) leaves the last space of a run before a non-space to the next
     * match; a single space before a non-space is \s+ */
    size_t e = i + 1;
    while (e < n && qd_tok_is_white(cp[e])) e++;
    if (e < n && e - i >= 2) return e - 1;
    return e;
}

/* BPE of one piece (its bytes b[0..n)), ids appended. */
static int bpe_piece(const qd_tokenizer *t, const uint8_t *bytes, size_t n, qd_ivec *ids)
{
    const qd_tok_bpe *b = t->bpe;
    size_t first = ids->n;
    if (qd_ivec_reserve(ids, n)) return -1;
    for (size_t i = 0; i < n; i++) {
        int32_t id = b->byte_id[bytes[i]];
        ids->v[ids->n++] = id >= 0 ? id : t->sp.unk;
    }
    int32_t *s = ids->v + first;
    size_t m = n;
    for (;;) {
        int32_t best = INT32_MAX, merged = -1;
        size_t at = 0;
        for (size_t i = 0; i + 1 < m; i++) {
            int32_t mg, r = find_merge(b, s[i], s[i + 1], &mg);
            if (r >= 0 && r < best) {
                best = r;
                at = i;
                merged = mg;
            }
        }
        if (merged < 0) break;
        s[at] = merged;
        memmove(s + at + 1, s + at + 2, (m - at - 2) * sizeof *s);
        m--;
    }
    ids->n = first + m;
    return 0;
}

int qd_tok_bpe_tokenize(const qd_tokenizer *t, const char *text, qd_ivec *ids)
{
    size_t len = strlen(text);
    qd_ivec cp = {0};
    uint8_t *piece = NULL;
    int rc = -1;
    if (qd_ivec_reserve(&cp, len + 2) || !(piece = malloc(4 * len + 8))) goto done;
    if (t->bpe->add_prefix_space && text[0] != ' ') cp.v[cp.n++] = ' '; /* a space before the first word */
    for (size_t i = 0; i < len;) {
        int32_t c;
        utf8proc_ssize_t r = utf8proc_iterate((const uint8_t *)text + i, (utf8proc_ssize_t)(len - i), &c);
        if (r < 0) { /* invalid UTF-8 byte: dropped */
            i++;
            continue;
        }
        cp.v[cp.n++] = c;
        i += (size_t)r;
    }
    for (size_t i = 0; i < cp.n;) {
        size_t e = match(cp.v, cp.n, i), pl = 0;
        for (size_t k = i; k < e; k++) pl += (size_t)utf8proc_encode_char(cp.v[k], piece + pl);
        if (bpe_piece(t, piece, pl, ids)) goto done;
        i = e;
    }
    rc = 0;
done:
    free(cp.v);
    free(piece);
    return rc;
}
