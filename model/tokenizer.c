/* model/tokenizer.c — BERT WordPiece tokenizer (see tokenizer.h for the algorithm).
 *
 * Unicode properties (general category, lower-case mapping, canonical decomposition) come from
 * utf8proc rather than hand-written tables: BERT's basic tokenizer depends on the whole Unicode
 * character database (every P* and Mn code point, every NFD decomposition), which a small
 * table would get wrong, and utf8proc is a small, maintained C library that tracks new Unicode
 * versions (the reference used Python's tables; both are generated from the same data). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>

#include "common/qd_file.h"
#include "model/tokenizer_internal.h"

#define QD_VOCAB_MAX_BYTES (1u << 30)

typedef qd_ivec ivec;
#define ivec_reserve qd_ivec_reserve
#define ivec_push    qd_ivec_push

/* ---- vocabulary hash table ----------------------------------------------------------------- */

static uint32_t hash_bytes(const char *s, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

int32_t qd_tok_lookup(const qd_tokenizer *t, const char *s, size_t n)
{
    if (!t->slots) return -1;
    uint32_t m = t->nslots - 1;
    for (uint32_t i = hash_bytes(s, n) & m;; i = (i + 1) & m) {
        int32_t id = t->slots[i];
        if (id < 0) return -1;
        if (t->len[id] == n && memcmp(t->text + t->off[id], s, n) == 0) return id;
    }
}

static void insert(qd_tokenizer *t, int32_t id)
{
    const char *s = t->text + t->off[id];
    size_t n = t->len[id];
    uint32_t m = t->nslots - 1;
    for (uint32_t i = hash_bytes(s, n) & m;; i = (i + 1) & m) {
        int32_t o = t->slots[i];
        if (o < 0 || (t->len[o] == n && memcmp(t->text + t->off[o], s, n) == 0)) {
            t->slots[i] = id; /* a repeated token: the later line wins, as in a Python dict */
            return;
        }
    }
}

/* ---- loading ------------------------------------------------------------------------------- */

/* Every tokenizer file (vocab.txt, tokenizer.json, merges, .model, tokenizer_config.json): up to
 * QD_VOCAB_MAX_BYTES. */
int qd_tok_read_file(const char *path, char **buf, size_t *len)
{
    return qd_read_file(path, QD_VOCAB_MAX_BYTES, "a tokenizer file", buf, len);
}

static int is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* do_lower_case from tokenizer_config.json beside the vocabulary (1 when absent). */
static int config_lower_case(const char *vocab_path, int *lower)
{
    *lower = 1;
    const char *slash = strrchr(vocab_path, '/');
    size_t dlen = slash ? (size_t)(slash - vocab_path + 1) : 0;
    static const char name[] = "tokenizer_config.json";
    char *cfg = malloc(dlen + sizeof name);
    if (!cfg) return qd_err_set(QD_ENOMEM, "out of memory");
    memcpy(cfg, vocab_path, dlen);
    memcpy(cfg + dlen, name, sizeof name);
    char *buf;
    size_t len;
    struct stat st;
    if (stat(cfg, &st) != 0) {
        free(cfg);
        return QD_OK;
    }
    int rc = qd_tok_read_file(cfg, &buf, &len);
    if (rc) {
        free(cfg);
        return rc;
    }
    cJSON *js = cJSON_ParseWithLength(buf, len);
    free(buf);
    if (!cJSON_IsObject(js)) {
        cJSON_Delete(js);
        rc = qd_err_set(QD_EFORMAT, "%s: not a JSON object", cfg);
        free(cfg);
        return rc;
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(js, "do_lower_case");
    if (v && !cJSON_IsBool(v)) {
        cJSON_Delete(js);
        rc = qd_err_set(QD_EFORMAT, "%s: \"do_lower_case\" must be true or false", cfg);
        free(cfg);
        return rc;
    }
    if (v) *lower = cJSON_IsTrue(v);
    cJSON_Delete(js);
    free(cfg);
    return QD_OK;
}

/* vocab.txt: one token per line. */
static int load_vocab_txt(const char *vocab_path, int do_lower_case, qd_tokenizer **out)
{
    *out = NULL;
    if (!vocab_path) return qd_err_set(QD_EINVAL, "tokenizer: no vocabulary path");
    int lower = do_lower_case;
    if (lower == QD_TOK_LOWER_AUTO) {
        int rc = config_lower_case(vocab_path, &lower);
        if (rc) return rc;
    } else {
        lower = lower != 0;
    }
    char *buf;
    size_t len;
    int rc = qd_tok_read_file(vocab_path, &buf, &len);
    if (rc) return rc;

    qd_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        free(buf);
        return qd_err_set(QD_ENOMEM, "%s: out of memory", vocab_path);
    }
    t->lower = t->strip_accents = lower;
    t->chinese = 1;
    t->type_b = 1;
    t->text = buf;
    t->path = strdup(vocab_path);

    /* Count lines the way Python's readline() loop does: a last line without '\n' counts, the
     * empty string after a final '\n' does not. */
    size_t start = 0;
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) start = 3; /* UTF-8 byte order mark */
    size_t lines = 0;
    for (size_t i = start; i < len; i++) lines += buf[i] == '\n';
    if (len > start && buf[len - 1] != '\n') lines++;
    if (lines == 0) {
        qd_tokenizer_free(t);
        return qd_err_set(QD_EFORMAT, "%s: empty vocabulary (no token lines)", vocab_path);
    }
    if (lines > (size_t)INT32_MAX / 2) {
        qd_tokenizer_free(t);
        return qd_err_set(QD_EFORMAT, "%s: too many lines (%zu)", vocab_path, lines);
    }
    t->n = (int32_t)lines;
    t->off = malloc(lines * sizeof *t->off);
    t->len = malloc(lines * sizeof *t->len);
    uint32_t ns = 16;
    while (ns < 2 * lines) ns *= 2;
    t->nslots = ns;
    t->slots = malloc((size_t)ns * sizeof *t->slots);
    if (!t->path || !t->off || !t->len || !t->slots) {
        qd_tokenizer_free(t);
        return qd_err_set(QD_ENOMEM, "%s: out of memory", vocab_path);
    }
    memset(t->slots, 0xff, (size_t)ns * sizeof *t->slots);

    size_t p = start;
    for (int32_t id = 0; id < t->n; id++) {
        size_t e = p;
        while (e < len && buf[e] != '\n') e++;
        size_t next = e + 1;
        size_t a = p;
        while (a < e && is_ascii_space(buf[a])) a++;
        while (e > a && is_ascii_space(buf[e - 1])) e--;
        buf[e] = 0; /* e <= len and buf has len + 1 bytes */
        t->off[id] = (uint32_t)a;
        t->len[id] = (uint32_t)(e - a);
        insert(t, id);
        p = next;
    }

    static const char *names[4] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]"};
    int32_t *ids[4] = {&t->sp.pad, &t->sp.unk, &t->sp.cls, &t->sp.sep};
    char missing[64] = "";
    for (int i = 0; i < 4; i++) {
        *ids[i] = qd_tok_lookup(t, names[i], strlen(names[i]));
        if (*ids[i] < 0) {
            strcat(missing, missing[0] ? ", " : "");
            strcat(missing, names[i]);
        }
    }
    t->sp.mask = qd_tok_lookup(t, "[MASK]", 6);
    if (missing[0]) {
        qd_tokenizer_free(t);
        return qd_err_set(QD_EFORMAT, "%s: not a BERT vocabulary: no %s token (%zu lines read)", vocab_path, missing,
                          lines);
    }
    *out = t;
    return QD_OK;
}

qd_tokenizer *qd_tok_new(const char *path)
{
    qd_tokenizer *t = qd_xcalloc(1, sizeof *t);
    t->path = qd_xstrdup(path);
    t->sp = (qd_tok_specials){-1, -1, -1, -1, -1};
    return t;
}

int qd_tok_set_vocab(qd_tokenizer *t, const char *const *pieces, int32_t n)
{
    size_t bytes = 0;
    for (int32_t i = 0; i < n; i++) bytes += (pieces[i] ? strlen(pieces[i]) : 0) + 1;
    if (n <= 0 || n > INT32_MAX / 4 || bytes >= UINT32_MAX)
        return qd_err_set(QD_EFORMAT, "%s: %d tokens: not a usable vocabulary", t->path, n);
    t->n = n;
    t->text = malloc(bytes);
    t->off = malloc((size_t)n * sizeof *t->off);
    t->len = malloc((size_t)n * sizeof *t->len);
    uint32_t ns = 16;
    while (ns < 2u * (uint32_t)n) ns *= 2;
    t->nslots = ns;
    t->slots = malloc((size_t)ns * sizeof *t->slots);
    if (!t->text || !t->off || !t->len || !t->slots) return qd_err_set(QD_ENOMEM, "%s: out of memory", t->path);
    memset(t->slots, 0xff, (size_t)ns * sizeof *t->slots);
    size_t p = 0;
    for (int32_t i = 0; i < n; i++) {
        size_t l = pieces[i] ? strlen(pieces[i]) : 0;
        if (l) memcpy(t->text + p, pieces[i], l);
        t->text[p + l] = 0;
        t->off[i] = (uint32_t)p;
        t->len[i] = (uint32_t)l;
        p += l + 1;
        /* a hole (NULL) matches nothing; a repeated piece: the first id wins, as in a JSON map */
        if (pieces[i] && qd_tok_lookup(t, pieces[i], l) < 0) insert(t, i);
    }
    return QD_OK;
}

int qd_tok_is_white(int32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || c == ' ' || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* special tokens of tokenizer_config.json / special_tokens_map.json beside a vocab.txt, when
 * they are not BERT's (MPNet: <s> </s> <pad>) */
static void config_specials(qd_tokenizer *t, const char *vocab_path)
{
    const char *slash = strrchr(vocab_path, '/');
    size_t dlen = slash ? (size_t)(slash - vocab_path + 1) : 0;
    static const char *files[] = {"special_tokens_map.json", "tokenizer_config.json"};
    for (int f = 0; f < 2; f++) {
        char path[4400];
        snprintf(path, sizeof path, "%.*s%s", (int)dlen, vocab_path, files[f]);
        char *buf;
        size_t len;
        struct stat st;
        if (stat(path, &st) != 0 || qd_tok_read_file(path, &buf, &len)) continue;
        cJSON *js = cJSON_ParseWithLength(buf, len);
        free(buf);
        static const char *keys[] = {"pad_token", "unk_token", "cls_token", "sep_token", "mask_token"};
        int32_t *ids[] = {&t->sp.pad, &t->sp.unk, &t->sp.cls, &t->sp.sep, &t->sp.mask};
        for (int k = 0; k < 5 && js; k++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(js, keys[k]);
            if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
            int32_t id = cJSON_IsString(v) ? qd_tok_lookup(t, v->valuestring, strlen(v->valuestring)) : -1;
            if (id >= 0) *ids[k] = id;
        }
        cJSON_Delete(js);
    }
    /* a RoBERTa-style template (MPNet): <s> A </s></s> B </s>, one segment type */
    const char *cls = qd_tokenizer_piece(t, t->sp.cls);
    if (cls && !strcmp(cls, "<s>")) {
        t->pair_sep2 = 1;
        t->type_b = 0;
    }
}

int qd_tokenizer_load(const char *path, int do_lower_case, qd_tokenizer **out)
{
    *out = NULL;
    if (!path) return qd_err_set(QD_EINVAL, "tokenizer: no vocabulary path");
    struct stat st;
    char p[4400];
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        /* a model directory: tokenizer.json first (it says everything), then the older files */
        static const char *names[] = {"tokenizer.json", "vocab.txt", "vocab.json", "sentencepiece.bpe.model",
                                      "spiece.model"};
        for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
            snprintf(p, sizeof p, "%s/%s", path, names[i]);
            if (stat(p, &st) == 0) return qd_tokenizer_load(p, do_lower_case, out);
        }
        return qd_err_set(QD_ENOENT,
                          "%s: no tokenizer (tokenizer.json, vocab.txt, vocab.json + merges.txt, "
                          "sentencepiece.bpe.model)",
                          path);
    }
    if (qd_ends_with(path, ".json") && !qd_ends_with(path, "vocab.json")) return qd_tok_load_json(path, out);
    if (qd_ends_with(path, ".model")) return qd_tok_load_spm(path, out);
    if (qd_ends_with(path, "vocab.json")) return qd_tok_load_json(path, out); /* + merges.txt beside it */
    int rc = load_vocab_txt(path, do_lower_case, out);
    if (rc == QD_OK) config_specials(*out, path);
    return rc;
}

void qd_tokenizer_free(qd_tokenizer *t)
{
    if (!t) return;
    qd_tok_bpe_free(t->bpe);
    qd_tok_unigram_free(t->uni);
    free(t->path);
    free(t->text);
    free(t->off);
    free(t->len);
    free(t->slots);
    free(t);
}

int qd_tokenizer_vocab_size(const qd_tokenizer *t) { return t->n; }
int qd_tokenizer_lower_case(const qd_tokenizer *t) { return t->lower; }
qd_tok_specials qd_tokenizer_specials(const qd_tokenizer *t) { return t->sp; }

int32_t qd_tokenizer_id(const qd_tokenizer *t, const char *piece) { return qd_tok_lookup(t, piece, strlen(piece)); }

const char *qd_tokenizer_piece(const qd_tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->n ? t->text + t->off[id] : NULL;
}

/* ---- character classes --------------------------------------------------------------------- */

static int cat(int32_t c) { return (int)utf8proc_category(c); }

/* Python's str.isspace(): what str.split() splits on. After cleaning only ' ', U+2028 and
 * U+2029 can be left of these, but the whole set keeps the split exactly Python's. */
static int is_py_space(int32_t c)
{
    if (c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
        (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000)
        return 1;
    return 0;
}

static int is_whitespace(int32_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || cat(c) == UTF8PROC_CATEGORY_ZS;
}

static int is_control(int32_t c)
{
    if (c == '\t' || c == '\n' || c == '\r') return 0;
    int k = cat(c);
    return k == UTF8PROC_CATEGORY_CC || k == UTF8PROC_CATEGORY_CF;
}

static int is_punct(int32_t c)
{
    if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126)) return 1;
    int k = cat(c);
    return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

/* BERT's _is_chinese_char: the CJK Unified Ideographs blocks (not Hiragana, Katakana, Hangul). */
static int is_cjk(int32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* Unicode's Cased and Case_Ignorable properties, as Python's Final_Sigma rule uses them.
 * utf8proc has no direct flag: Cased = Lu/Ll/Lt or a letter with a case mapping, plus the two
 * ordinal indicators (Other_Lowercase letters of category Lo). Case_Ignorable = Mn, Me, Cf, Lm,
 * Sk, or Word_Break MidLetter / MidNumLet / Single_Quote. */
static int is_cased(int32_t c)
{
    int k = cat(c);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT || utf8proc_islower(c) ||
           utf8proc_isupper(c) || c == 0xAA || c == 0xBA;
}

static int is_case_ignorable(int32_t c)
{
    int k = cat(c);
    if (k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_ME || k == UTF8PROC_CATEGORY_CF ||
        k == UTF8PROC_CATEGORY_LM || k == UTF8PROC_CATEGORY_SK)
        return 1;
    switch (c) {
    case 0x27:
    case 0x2E:
    case 0x3A:
    case 0xB7:
    case 0x387:
    case 0x55F:
    case 0x5F4:
    case 0x2018:
    case 0x2019:
    case 0x2024:
    case 0x2027:
    case 0xFE13:
    case 0xFE52:
    case 0xFE55:
    case 0xFF07:
    case 0xFF0E:
    case 0xFF1A: return 1;
    default: return 0;
    }
}

/* Python's str.lower() of w[0..n): the full mapping, i.e. the simple one plus U+0130 -> "i̇" and
 * the final form of sigma at the end of a word. */
static int lower_word(const int32_t *w, size_t n, ivec *out)
{
    out->n = 0;
    if (ivec_reserve(out, n + 8)) return -1;
    for (size_t i = 0; i < n; i++) {
        int32_t c = w[i];
        if (c == 0x130) {
            if (ivec_push(out, 'i') || ivec_push(out, 0x307)) return -1;
            continue;
        }
        if (c == 0x3A3) {
            size_t j = i;
            while (j > 0 && is_case_ignorable(w[j - 1])) j--;
            int final = j > 0 && is_cased(w[j - 1]);
            if (final) {
                j = i + 1;
                while (j < n && is_case_ignorable(w[j])) j++;
                final = j == n || !is_cased(w[j]);
            }
            if (ivec_push(out, final ? 0x3C2 : 0x3C3)) return -1;
            continue;
        }
        if (ivec_push(out, utf8proc_tolower(c))) return -1;
    }
    return 0;
}

/* NFD of w, then drop Mn: BERT's _run_strip_accents. */
static int strip_accents(const ivec *w, ivec *utf8_tmp, ivec *out)
{
    /* utf8proc decomposes (and orders combining marks) from UTF-8 input. */
    utf8_tmp->n = 0;
    if (ivec_reserve(utf8_tmp, w->n + 1)) return -1; /* 4 bytes per int32 entry suffice */
    uint8_t *u = (uint8_t *)utf8_tmp->v;
    size_t ulen = 0;
    for (size_t i = 0; i < w->n; i++) ulen += (size_t)utf8proc_encode_char(w->v[i], u + ulen);
    out->n = 0;
    if (ivec_reserve(out, 2 * w->n + 8)) return -1;
    for (;;) {
        utf8proc_ssize_t r = utf8proc_decompose(u, (utf8proc_ssize_t)ulen, out->v, (utf8proc_ssize_t)out->cap,
                                                UTF8PROC_DECOMPOSE | UTF8PROC_STABLE);
        if (r < 0) return -1; /* cannot happen: the input is valid UTF-8 we encoded */
        if ((size_t)r <= out->cap) {
            out->n = (size_t)r;
            break;
        }
        if (ivec_reserve(out, (size_t)r)) return -1;
    }
    size_t k = 0;
    for (size_t i = 0; i < out->n; i++)
        if (cat(out->v[i]) != UTF8PROC_CATEGORY_MN) out->v[k++] = out->v[i];
    out->n = k;
    return 0;
}

/* ---- WordPiece ----------------------------------------------------------------------------- */

typedef struct {
    ivec a, b, c; /* scratch code point buffers */
    char *buf;    /* [2 * cap]: the word's UTF-8, then "##" + a suffix of it */
    size_t cap;
    ivec *ids; /* output */
} tok_state;

/* One word (no whitespace, no punctuation inside, or one punctuation character). */
static int wordpiece(const qd_tokenizer *t, tok_state *s, const int32_t *w, size_t n)
{
    if (n == 0) return 0;
    if (n > QD_TOK_MAX_CHARS_PER_WORD) return ivec_push(s->ids, t->sp.unk);
    size_t need = 2 + 4 * n;
    if (need > s->cap) {
        char *k = realloc(s->buf, 2 * need);
        if (!k) return -1;
        s->buf = k;
        s->cap = need;
    }
    char *u = s->buf, *key = s->buf + s->cap;
    size_t bnd[QD_TOK_MAX_CHARS_PER_WORD + 1]; /* byte offset of code point i in u */
    bnd[0] = 0;
    for (size_t i = 0; i < n; i++) bnd[i + 1] = bnd[i] + (size_t)utf8proc_encode_char(w[i], (uint8_t *)u + bnd[i]);
    size_t first = s->ids->n, start = 0;
    while (start < n) {
        /* candidates u[start, end) for end = n down to start + 1 are prefixes of one key */
        const char *k = u + bnd[start];
        size_t prefix = 0;
        if (start > 0) {
            key[0] = key[1] = '#';
            memcpy(key + 2, u + bnd[start], bnd[n] - bnd[start]);
            k = key;
            prefix = 2;
        }
        int32_t id = -1;
        size_t end = n;
        for (; end > start; end--)
            if ((id = qd_tok_lookup(t, k, prefix + bnd[end] - bnd[start])) >= 0) break;
        if (id < 0) { /* no cover: the whole word is [UNK] */
            s->ids->n = first;
            return ivec_push(s->ids, t->sp.unk);
        }
        if (ivec_push(s->ids, id)) return -1;
        start = end;
    }
    return 0;
}

/* Basic tokenization of one whitespace-separated word, then WordPiece of each part. */
static int word(const qd_tokenizer *t, tok_state *s, const int32_t *w, size_t n)
{
    const int32_t *x = w;
    size_t xn = n;
    if (t->lower || t->strip_accents) {
        s->a.n = 0;
        if (t->lower) {
            if (lower_word(w, n, &s->a)) return -1;
        } else if (qd_ivec_reserve(&s->a, n))
            return -1;
        else {
            memcpy(s->a.v, w, n * sizeof *w);
            s->a.n = n;
        }
        if (t->strip_accents) {
            if (strip_accents(&s->a, &s->b, &s->c)) return -1;
            x = s->c.v;
            xn = s->c.n;
        } else {
            x = s->a.v;
            xn = s->a.n;
        }
    }
    size_t run = 0;
    for (size_t i = 0; i < xn; i++) {
        int32_t c = x[i];
        if (is_py_space(c)) { /* only reachable through an exotic decomposition; split there */
            if (wordpiece(t, s, x + run, i - run)) return -1;
            run = i + 1;
        } else if (is_punct(c)) {
            if (wordpiece(t, s, x + run, i - run) || wordpiece(t, s, x + i, 1)) return -1;
            run = i + 1;
        }
    }
    return wordpiece(t, s, x + run, xn - run);
}

static int tokenize(const qd_tokenizer *t, const char *text, ivec *ids)
{
    ids->n = 0;
    if (!text) return 0;
    if (t->kind == QD_TOK_BPE) return qd_tok_bpe_tokenize(t, text, ids);
    if (t->kind == QD_TOK_UNIGRAM) return qd_tok_unigram_tokenize(t, text, ids);
    size_t len = strlen(text);
    ivec cp = {0};
    tok_state s = {.ids = ids};
    int rc = -1;
    /* decode, clean and space out CJK ideographs in one pass */
    if (ivec_reserve(&cp, len + 1)) goto done;
    const uint8_t *p = (const uint8_t *)text;
    size_t i = 0;
    while (i < len) {
        int32_t c;
        utf8proc_ssize_t r = utf8proc_iterate(p + i, (utf8proc_ssize_t)(len - i), &c);
        if (r < 0) { /* invalid byte: dropped */
            i++;
            continue;
        }
        i += (size_t)r;
        if (c == 0 || c == 0xFFFD || is_control(c)) continue;
        if (is_whitespace(c)) c = ' ';
        if (t->chinese && is_cjk(c)) {
            if (ivec_reserve(&cp, 3)) goto done;
            cp.v[cp.n++] = ' ';
            cp.v[cp.n++] = c;
            cp.v[cp.n++] = ' ';
        } else if (ivec_push(&cp, c)) {
            goto done;
        }
    }
    size_t a = 0;
    for (size_t k = 0; k <= cp.n; k++) {
        if (k == cp.n || is_py_space(cp.v[k])) {
            if (k > a && word(t, &s, cp.v + a, k - a)) goto done;
            a = k + 1;
        }
    }
    rc = 0;
done:
    free(cp.v);
    free(s.a.v);
    free(s.b.v);
    free(s.c.v);
    free(s.buf);
    return rc;
}

int qd_tokenizer_tokenize(const qd_tokenizer *t, const char *text, int32_t **ids, int *n)
{
    ivec v = {0};
    *ids = NULL;
    *n = 0;
    if (tokenize(t, text, &v) || v.n > INT32_MAX) {
        free(v.v);
        return qd_err_set(QD_ENOMEM, "tokenizer: out of memory");
    }
    if (v.n == 0) {
        free(v.v);
        return QD_OK;
    }
    *ids = v.v;
    *n = (int)v.n;
    return QD_OK;
}

int qd_tokenizer_encode(const qd_tokenizer *t, const char *text, const char *text_pair, int max_len, int pad_to,
                        int cap, int32_t *ids, int32_t *type_ids, int32_t *mask, int *n_out, int *n_truncated)
{
    *n_out = 0;
    if (n_truncated) *n_truncated = 0;
    int pair = text_pair != NULL;
    const int has_cls = t->sp.cls >= 0, has_sep = t->sp.sep >= 0;
    int nspecial = has_cls + has_sep + (pair ? has_sep * (1 + t->pair_sep2) : 0);
    if (max_len < 0 || pad_to < 0 || cap < 0)
        return qd_err_set(QD_EINVAL, "tokenizer: negative length (max_len %d, pad_to %d, cap %d)", max_len, pad_to,
                          cap);
    if (max_len > 0 && max_len < nspecial + 0)
        return qd_err_set(QD_EINVAL,
                          "tokenizer: max_len %d leaves no room for the %d special "
                          "tokens of a %s",
                          max_len, nspecial, pair ? "pair" : "sentence");
    ivec a = {0}, b = {0};
    if (tokenize(t, text, &a) || (pair && tokenize(t, text_pair, &b))) {
        free(a.v);
        free(b.v);
        return qd_err_set(QD_ENOMEM, "tokenizer: out of memory");
    }
    size_t na = a.n, nb = b.n, dropped = 0;
    if (max_len > 0) {
        size_t room = (size_t)(max_len - nspecial);
        while (na + nb > room) { /* _truncate_seq_pair: shorten the longer, b on a tie */
            if (na > nb)
                na--;
            else
                nb--;
            dropped++;
        }
    }
    size_t n = na + nb + (size_t)nspecial;
    size_t total = n < (size_t)pad_to ? (size_t)pad_to : n;
    if (total > (size_t)INT32_MAX) total = INT32_MAX; /* reported as needed; never written */
    if (total > (size_t)cap) {
        free(a.v);
        free(b.v);
        *n_out = (int)total;
        return qd_err_set(QD_ESHAPE, "tokenizer: %zu ids do not fit in %d entries", total, cap);
    }
    size_t k = 0;
#define EMIT(id, type)                      \
    do {                                    \
        ids[k] = (id);                      \
        if (type_ids) type_ids[k] = (type); \
        if (mask) mask[k] = 1;              \
        k++;                                \
    } while (0)
    if (has_cls) EMIT(t->sp.cls, 0);
    for (size_t i = 0; i < na; i++) EMIT(a.v[i], 0);
    if (has_sep) EMIT(t->sp.sep, 0);
    if (pair) {
        if (has_sep && t->pair_sep2) EMIT(t->sp.sep, 0);
        for (size_t i = 0; i < nb; i++) EMIT(b.v[i], t->type_b);
        if (has_sep) EMIT(t->sp.sep, t->type_b);
    }
#undef EMIT
    for (; k < total; k++) {
        ids[k] = t->sp.pad;
        if (type_ids) type_ids[k] = 0;
        if (mask) mask[k] = 0;
    }
    free(a.v);
    free(b.v);
    *n_out = (int)total;
    if (n_truncated) *n_truncated = (int)dropped;
    return QD_OK;
}
