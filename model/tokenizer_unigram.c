/* model/tokenizer_unigram.c — the SentencePiece unigram tokenizer as XLM-R uses it through
 * Hugging Face tokenizers:
 *   normalize  SentencePiece's precompiled charsmap (a double-array trie of byte sequences and
 *              their replacements, e.g. NFKC and space folding; looked up per extended grapheme
 *              cluster when shorter than 6 bytes, else per character, taking the first
 *              (shortest) match as tokenizers does), then strip trailing white space and fold
 *              runs of 2+ spaces (the Strip / Replace normalizers of tokenizer.json);
 *   split      Metaspace: ' ' -> U+2581, one prepended when missing, a new piece at each U+2581;
 *   segment    Viterbi over the pieces of the vocabulary (log-probability scores), characters no
 *              piece covers become <unk> (score: lowest - 10), consecutive <unk> fused.
 * Graphemes come from utf8proc (UAX #29, as Rust's unicode-segmentation). A .model file is read
 * with a minimal protobuf wire reader (only the fields used: pieces, scores, types and the
 * normalizer's charsmap), not with libsentencepiece: that is C++ (protobuf) and would still need
 * this normalizer for tokenizer.json, the format Hugging Face ships. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <utf8proc.h>

#include "model/tokenizer_internal.h"

struct qd_tok_unigram {
    double *score; /* [n] */
    double unk_score;
    int maxlen; /* longest piece in bytes */
    unsigned char *charsmap;
    const uint32_t *trie; /* units of the charsmap's trie */
    size_t ntrie;
    const char *norm; /* the replacements, NUL-separated */
    size_t nnorm;
    int strip_right, collapse, prepend;
    char collapse_to[16];
    int32_t unk_id;
};

int qd_tok_unigram_new(qd_tokenizer *t, const double *scores, const qd_tok_unigram_opts *o)
{
    qd_tok_unigram *u = qd_xcalloc(1, sizeof *u);
    t->uni = u;
    t->kind = QD_TOK_UNIGRAM;
    u->score = qd_xmalloc((size_t)t->n * sizeof *u->score);
    double lo = INFINITY;
    for (int32_t i = 0; i < t->n; i++) {
        u->score[i] = scores[i];
        if (scores[i] < lo) lo = scores[i];
        if ((int)t->len[i] > u->maxlen) u->maxlen = (int)t->len[i];
    }
    u->unk_score = lo - 10.0;
    u->unk_id = o->unk_id;
    u->strip_right = o->strip_right;
    u->collapse = o->collapse_spaces;
    u->prepend = o->prepend;
    snprintf(u->collapse_to, sizeof u->collapse_to, "%s", o->collapse_to ? o->collapse_to : " ");
    if (o->unk_id < 0 || o->unk_id >= t->n)
        return qd_err_set(QD_EFORMAT, "%s: unk_id %d is not a token", t->path, o->unk_id);
    if (o->charsmap && o->charsmap_len) {
        if (o->charsmap_len < 4)
            return qd_err_set(QD_EFORMAT, "%s: precompiled charsmap of %zu bytes", t->path, o->charsmap_len);
        u->charsmap = qd_xmalloc(o->charsmap_len + 1);
        memcpy(u->charsmap, o->charsmap, o->charsmap_len);
        u->charsmap[o->charsmap_len] = 0;
        uint32_t ts = (uint32_t)o->charsmap[0] | (uint32_t)o->charsmap[1] << 8 | (uint32_t)o->charsmap[2] << 16 |
                      (uint32_t)o->charsmap[3] << 24;
        if (ts % 4 || (size_t)ts > o->charsmap_len - 4)
            return qd_err_set(QD_EFORMAT, "%s: precompiled charsmap: trie of %u bytes in a %zu-byte map", t->path, ts,
                              o->charsmap_len);
        /* the units are little-endian u32 (this build's order on x86 and ARM); aligned copy */
        uint32_t *units = qd_xmalloc(ts ? ts : 4);
        memcpy(units, u->charsmap + 4, ts);
        u->trie = units;
        u->ntrie = ts / 4;
        u->norm = (const char *)u->charsmap + 4 + ts;
        u->nnorm = o->charsmap_len - 4 - ts;
    }
    return QD_OK;
}

void qd_tok_unigram_free(qd_tok_unigram *u)
{
    if (!u) return;
    free(u->score);
    free((void *)u->trie);
    free(u->charsmap);
    free(u);
}

/* ---- the precompiled normalizer ----------------------------------------------------------- */

/* The replacement of the shortest key that prefixes s[0..n), or NULL (darts-clone's
 * common-prefix search: offset / label / leaf / value packed in each 32-bit unit). */
static const char *charsmap_find(const qd_tok_unigram *u, const uint8_t *s, size_t n)
{
    if (!u->ntrie) return NULL;
#define OFFSET(x) (((x) >> 10) << (((x) & (1u << 9)) >> 6))
    size_t pos = 0;
    uint32_t unit = u->trie[0];
    pos ^= OFFSET(unit);
    for (size_t i = 0; i < n && s[i]; i++) {
        pos ^= s[i];
        if (pos >= u->ntrie) return NULL;
        unit = u->trie[pos];
        if ((unit & ((1u << 31) | 0xFF)) != s[i]) return NULL;
        pos ^= OFFSET(unit);
        if (pos >= u->ntrie) return NULL;
        if ((unit >> 8) & 1) {
            uint32_t v = u->trie[pos] & ((1u << 31) - 1);
            return v < u->nnorm ? u->norm + v : NULL;
        }
    }
    return NULL;
#undef OFFSET
}

typedef struct {
    char *s;
    size_t n, cap;
} sbuf;

static int sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *x = realloc(b->s, cap);
        if (!x) return -1;
        b->s = x;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
    return 0;
}

/* text -> the normalized and pre-tokenized string (Metaspace applied), in out */
static int normalize(const qd_tok_unigram *u, const char *text, sbuf *out)
{
    const uint8_t *p = (const uint8_t *)text;
    size_t len = strlen(text);
    sbuf a = {0};
    int rc = -1;
    /* 1. the charsmap, per grapheme cluster */
    for (size_t i = 0; i < len;) {
        int32_t c, prev = -1, state = 0;
        size_t g = i;
        while (g < len) { /* the cluster [i, g) */
            utf8proc_ssize_t r = utf8proc_iterate(p + g, (utf8proc_ssize_t)(len - g), &c);
            if (r < 0) {
                if (g == i) g++; /* an invalid byte: a cluster of its own */
                break;
            }
            if (prev >= 0 && utf8proc_grapheme_break_stateful(prev, c, &state)) break;
            prev = c;
            g += (size_t)r;
        }
        const char *rep = g - i < 6 ? charsmap_find(u, p + i, g - i) : NULL;
        if (rep) {
            if (sb_put(&a, rep, strlen(rep))) goto done;
        } else {
            for (size_t k = i; k < g;) {
                utf8proc_ssize_t r = utf8proc_iterate(p + k, (utf8proc_ssize_t)(g - k), &c);
                size_t cl = r > 0 ? (size_t)r : 1;
                const char *x = r > 0 ? charsmap_find(u, p + k, cl) : NULL;
                if (r <= 0) {
                    if (sb_put(&a, "\xEF\xBF\xBD", 3)) goto done; /* as a Rust String: U+FFFD */
                } else if (sb_put(&a, x ? x : (const char *)p + k, x ? strlen(x) : cl))
                    goto done;
                k += cl;
            }
        }
        i = g;
    }
    /* 2. Strip(right): trailing White_Space */
    if (u->strip_right)
        while (a.n > 0) {
            size_t k = a.n - 1;
            while (k > 0 && (a.s[k] & 0xC0) == 0x80) k--;
            int32_t c;
            if (utf8proc_iterate((const uint8_t *)a.s + k, (utf8proc_ssize_t)(a.n - k), &c) < 0 || !qd_tok_is_white(c))
                break;
            a.n = k;
            a.s[k] = 0;
        }
    /* 3. Replace(" {2,}", collapse_to) */
    sbuf c = {0};
    if (sb_put(&c, "", 0)) goto done;
    for (size_t i = 0; i < a.n;) {
        if (u->collapse && a.s[i] == ' ' && i + 1 < a.n && a.s[i + 1] == ' ') {
            while (i < a.n && a.s[i] == ' ') i++;
            if (sb_put(&c, u->collapse_to, strlen(u->collapse_to))) goto done_c;
        } else if (sb_put(&c, a.s + i++, 1))
            goto done_c;
    }
    /* 4. Metaspace: ' ' -> U+2581, one prepended when the text does not start with it */
    static const char meta[] = "\xE2\x96\x81";
    out->n = 0;
    if (sb_put(out, "", 0)) goto done_c;
    if (u->prepend && !(c.n >= 3 && !memcmp(c.s, meta, 3)) && !(c.n && c.s[0] == ' ') && sb_put(out, meta, 3))
        goto done_c;
    for (size_t i = 0; i < c.n; i++)
        if (c.s[i] == ' ' ? sb_put(out, meta, 3) : sb_put(out, c.s + i, 1)) goto done_c;
    free(c.s);
    rc = 0;
    goto done;
done_c:
    free(c.s);
done:
    free(a.s);
    return rc;
}

/* ---- Viterbi -------------------------------------------------------------------------------- */

/* the best segmentation of s[0..n) appended to ids */
static int viterbi(const qd_tokenizer *t, const char *s, size_t n, qd_ivec *ids)
{
    const qd_tok_unigram *u = t->uni;
    double *best = malloc((n + 1) * sizeof *best);
    int32_t *from = malloc((n + 1) * sizeof *from), *tok = malloc((n + 1) * sizeof *tok);
    int rc = -1;
    if (!best || !from || !tok) goto done;
    for (size_t i = 0; i <= n; i++) from[i] = -1;
    best[0] = 0;
    from[0] = 0;
    for (size_t i = 0; i < n; i++) {
        if (from[i] < 0) continue; /* not a character boundary reached by any path */
        int32_t c;
        utf8proc_ssize_t r = utf8proc_iterate((const uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &c);
        size_t cl = r > 0 ? (size_t)r : 1;
        int single = 0;
        /* every piece starting here, shortest first; a tie keeps the earlier (shorter) path */
        for (size_t e = i + 1; e <= n && (int)(e - i) <= u->maxlen; e++) {
            int32_t id = qd_tok_lookup(t, s + i, e - i);
            if (id < 0) continue;
            if (e - i == cl) single = 1;
            double sc = best[i] + u->score[id];
            if (from[e] < 0 || sc > best[e]) {
                best[e] = sc;
                from[e] = (int32_t)i;
                tok[e] = id;
            }
        }
        if (!single) { /* the character alone, unknown */
            double sc = best[i] + u->unk_score;
            size_t e = i + cl;
            if (from[e] < 0 || sc > best[e]) {
                best[e] = sc;
                from[e] = (int32_t)i;
                tok[e] = -1;
            }
        }
    }
    /* back-track, then emit in order, consecutive unknowns as one <unk> */
    size_t m = 0;
    for (size_t e = n; e > 0; e = (size_t)from[e]) m++;
    int32_t *seq = malloc((m + 1) * sizeof *seq);
    if (!seq) goto done;
    size_t k = m;
    for (size_t e = n; e > 0; e = (size_t)from[e]) seq[--k] = tok[e];
    for (size_t i = 0; i < m; i++) {
        if (seq[i] < 0 && i > 0 && seq[i - 1] < 0) continue;
        if (qd_ivec_push(ids, seq[i] < 0 ? u->unk_id : seq[i])) {
            free(seq);
            goto done;
        }
    }
    free(seq);
    rc = 0;
done:
    free(best);
    free(from);
    free(tok);
    return rc;
}

int qd_tok_unigram_tokenize(const qd_tokenizer *t, const char *text, qd_ivec *ids)
{
    sbuf s = {0};
    if (normalize(t->uni, text, &s)) {
        free(s.s);
        return -1;
    }
    /* Metaspace's split: a new piece at every U+2581 */
    int rc = 0;
    for (size_t i = 0; i < s.n && !rc;) {
        size_t e = i + 1;
        while (e < s.n && !(e + 3 <= s.n && !memcmp(s.s + e, "\xE2\x96\x81", 3))) e++;
        rc = viterbi(t, s.s + i, e - i, ids);
        i = e;
    }
    free(s.s);
    return rc;
}

/* ---- SentencePiece .model ------------------------------------------------------------------ */

/* protobuf wire format: varints and length-delimited fields */
static int varint(const uint8_t *p, size_t n, size_t *i, uint64_t *v)
{
    *v = 0;
    for (int sh = 0; sh < 64 && *i < n; sh += 7) {
        uint8_t b = p[(*i)++];
        *v |= (uint64_t)(b & 0x7F) << sh;
        if (!(b & 0x80)) return 0;
    }
    return -1;
}

/* Skips or returns field data; *type is the wire type. -1 on a malformed message. */
static int field(const uint8_t *p, size_t n, size_t *i, uint32_t *num, int *type, uint64_t *v, const uint8_t **data)
{
    uint64_t key;
    if (varint(p, n, i, &key)) return -1;
    *num = (uint32_t)(key >> 3);
    *type = (int)(key & 7);
    switch (*type) {
    case 0: return varint(p, n, i, v);
    case 1:
        if (n - *i < 8) return -1;
        memcpy(v, p + *i, 8);
        *i += 8;
        return 0;
    case 2:
        if (varint(p, n, i, v) || *v > n - *i) return -1;
        *data = p + *i;
        *i += (size_t)*v;
        return 0;
    case 5:
        if (n - *i < 4) return -1;
        *v = 0;
        memcpy(v, p + *i, 4);
        *i += 4;
        return 0;
    default: return -1;
    }
}

/* The last field `num` of wire type `type` in the message d[0..n): 1 and its value / data, or 0. */
static int find_field(const uint8_t *d, size_t n, uint32_t num, int type, uint64_t *v, const uint8_t **data)
{
    int found = 0;
    for (size_t j = 0; j < n;) {
        uint32_t n2;
        int t2;
        uint64_t v2 = 0;
        const uint8_t *d2 = NULL;
        if (field(d, n, &j, &n2, &t2, &v2, &d2)) break;
        if (n2 == num && t2 == type) {
            *v = v2;
            *data = d2;
            found = 1;
        }
    }
    return found;
}

int qd_tok_load_spm(const char *path, qd_tokenizer **out)
{
    *out = NULL;
    char *buf;
    size_t len;
    int rc = qd_tok_read_file(path, &buf, &len);
    if (rc) return rc;
    const uint8_t *p = (const uint8_t *)buf;
    size_t cap = 1024, np = 0;
    char **pieces = qd_xmalloc(cap * sizeof *pieces);
    double *scores = qd_xmalloc(cap * sizeof *scores);
    const uint8_t *cmap = NULL;
    size_t cmap_len = 0;
    int model_type = 1; /* UNIGRAM */
    for (size_t i = 0; i < len && !rc;) {
        uint32_t num;
        int type;
        uint64_t v = 0;
        const uint8_t *d = NULL;
        if (field(p, len, &i, &num, &type, &v, &d)) {
            rc = qd_err_set(QD_EFORMAT, "%s: not a SentencePiece model (bad protobuf at byte %zu)", path, i);
            break;
        }
        if (num == 1 && type == 2) { /* SentencePiece { piece = 1, score = 2, type = 3 } */
            uint64_t pl = 0, bits = 0;
            const uint8_t *pd = NULL, *unused;
            char *piece = NULL;
            float score = 0;
            if (find_field(d, (size_t)v, 1, 2, &pl, &pd)) {
                piece = qd_xmalloc((size_t)pl + 1);
                memcpy(piece, pd, (size_t)pl);
                piece[pl] = 0;
            }
            if (find_field(d, (size_t)v, 2, 5, &bits, &unused)) {
                uint32_t b32 = (uint32_t)bits;
                memcpy(&score, &b32, 4);
            }
            if (np == cap) {
                cap *= 2;
                pieces = realloc(pieces, cap * sizeof *pieces);
                scores = realloc(scores, cap * sizeof *scores);
                QD_ASSERT(pieces && scores);
            }
            pieces[np] = piece ? piece : qd_xstrdup("");
            scores[np++] = score;
        } else if (num == 2 && type == 2) { /* TrainerSpec: model_type = 3 */
            uint64_t mt;
            const uint8_t *unused;
            if (find_field(d, (size_t)v, 3, 0, &mt, &unused)) model_type = (int)mt;
        } else if (num == 3 && type == 2) { /* NormalizerSpec: precompiled_charsmap = 2 */
            uint64_t cl;
            if (find_field(d, (size_t)v, 2, 2, &cl, &cmap)) cmap_len = (size_t)cl;
        }
    }
    if (!rc && model_type != 1)
        rc = qd_err_set(QD_EUNSUPPORTED, "%s: SentencePiece model_type %d; only unigram (1) is supported", path,
                        model_type);
    if (!rc && np < 4) rc = qd_err_set(QD_EFORMAT, "%s: %zu pieces: not a SentencePiece model", path, np);
    qd_tokenizer *t = NULL;
    if (!rc) {
        /* fairseq's ids, as XLM-R: <s> <pad> </s> <unk>, the model's pieces from its fourth on
         * (its first three are <unk> <s> </s>), <mask> last */
        int32_t n = (int32_t)np + 2;
        const char **v = qd_xmalloc((size_t)n * sizeof *v);
        double *sc = qd_xmalloc((size_t)n * sizeof *sc);
        static const char *head[4] = {"<s>", "<pad>", "</s>", "<unk>"};
        for (int k = 0; k < 4; k++) {
            v[k] = head[k];
            sc[k] = 0;
        }
        for (size_t k = 3; k < np; k++) {
            v[k + 1] = pieces[k];
            sc[k + 1] = scores[k];
        }
        v[n - 1] = "<mask>";
        sc[n - 1] = 0;
        t = qd_tok_new(path);
        rc = qd_tok_set_vocab(t, v, n);
        qd_tok_unigram_opts o = {.charsmap = cmap,
                                 .charsmap_len = cmap_len,
                                 .strip_right = 1,
                                 .collapse_spaces = 1,
                                 .collapse_to = "\xE2\x96\x81",
                                 .prepend = 1,
                                 .unk_id = 3};
        if (!rc) rc = qd_tok_unigram_new(t, sc, &o);
        t->sp = (qd_tok_specials){.pad = 1, .unk = 3, .cls = 0, .sep = 2, .mask = n - 1};
        t->pair_sep2 = 1;
        t->type_b = 0;
        free(v);
        free(sc);
    }
    for (size_t k = 0; k < np; k++) free(pieces[k]);
    free(pieces);
    free(scores);
    free(buf);
    if (rc) {
        qd_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return QD_OK;
}
