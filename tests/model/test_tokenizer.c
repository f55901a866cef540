/* The BERT WordPiece tokenizer: all 872 SST-2 dev sentences against the reference ids of
 * google-research/bert's tokenization.py (reference/bert-tokenizer-reference.safetensors and
 * tokens.txt), the README's hand-checked strings, Unicode corner cases (expected pieces from
 * Python 3.11's str.lower() and unicodedata), truncation, padding, pairs and vocabulary errors. */
#include <stdint.h>
#include <unistd.h>

#include "model/tokenizer.h"
#include "qd_test.h"
#include "shard/safetensors.h"

static char g_vocab[1200], g_ref[1200], g_tokens[1200], g_tsv[1200];

/* Word pieces of `text` joined by single spaces (malloc'd). */
static char *pieces(const qd_tokenizer *tok, const char *text)
{
    int32_t *ids = NULL;
    int n = 0;
    if (qd_tokenizer_tokenize(tok, text, &ids, &n) != QD_OK) return strdup("(error)");
    size_t cap = 1, k = 0;
    for (int i = 0; i < n; i++) cap += strlen(qd_tokenizer_piece(tok, ids[i])) + 1;
    char *s = malloc(cap);
    s[0] = 0;
    for (int i = 0; i < n; i++) {
        const char *p = qd_tokenizer_piece(tok, ids[i]);
        if (i) s[k++] = ' ';
        memcpy(s + k, p, strlen(p) + 1);
        k += strlen(p);
    }
    free(ids);
    return s;
}

#define CHECK_PIECES(tok, text, expect) \
    do {                                \
        char *got_ = pieces(tok, text); \
        CHECK_STREQ(got_, expect);      \
        free(got_);                     \
    } while (0)

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) n = 0;
    b[n] = 0;
    fclose(f);
    if (len) *len = (size_t)n;
    return b;
}

/* Next line of buf at *pos (without '\n'), NUL-terminated in place; NULL at the end. */
static char *next_line(char *buf, size_t len, size_t *pos)
{
    if (*pos >= len) return NULL;
    char *s = buf + *pos, *e = memchr(s, '\n', len - *pos);
    if (e) {
        *e = 0;
        *pos = (size_t)(e - buf) + 1;
    } else {
        *pos = len;
    }
    return s;
}

static void test_sst2_reference(const qd_tokenizer *tok)
{
    qd_checkpoint *ck = NULL;
    int rc = qd_ckpt_open(g_ref, &ck);
    CHECK_MSG(rc == QD_OK, "%s", qd_errmsg());
    if (rc) return;
    const void *p_ids, *p_off, *p_lab;
    int i_ids = qd_ckpt_find(ck, "input_ids"), i_off = qd_ckpt_find(ck, "offsets");
    int i_lab = qd_ckpt_find(ck, "labels");
    CHECK(i_ids >= 0 && i_off >= 0 && i_lab >= 0);
    if (i_ids < 0 || i_off < 0 || i_lab < 0) {
        qd_ckpt_close(ck);
        return;
    }
    CHECK_EQ(qd_ckpt_tensor(ck, i_ids)->dtype, QD_DT_I32);
    CHECK_EQ(qd_ckpt_tensor(ck, i_off)->numel, 873);
    CHECK_EQ(qd_ckpt_raw(ck, i_ids, &p_ids), QD_OK);
    CHECK_EQ(qd_ckpt_raw(ck, i_off, &p_off), QD_OK);
    CHECK_EQ(qd_ckpt_raw(ck, i_lab, &p_lab), QD_OK);
    const int32_t *ref = p_ids, *off = p_off, *lab = p_lab;
    int64_t nref = (int64_t)qd_ckpt_tensor(ck, i_ids)->numel;

    size_t tlen, klen, tpos = 0, kpos = 0;
    char *tsv = read_all(g_tsv, &tlen), *tokens = read_all(g_tokens, &klen);
    CHECK_MSG(tsv != NULL, "cannot read %s", g_tsv);
    CHECK_MSG(tokens != NULL, "cannot read %s", g_tokens);
    if (!tsv || !tokens) {
        free(tsv);
        free(tokens);
        qd_ckpt_close(ck);
        return;
    }
    next_line(tsv, tlen, &tpos); /* header */
    int nsent = 0, bad_ids = 0, bad_pieces = 0, bad_labels = 0;
    int32_t buf[512];
    char *line;
    while ((line = next_line(tsv, tlen, &tpos)) != NULL && nsent < 872) {
        char *tab = strrchr(line, '\t');
        CHECK_MSG(tab != NULL, "dev.tsv line %d has no tab", nsent + 2);
        if (!tab) break;
        *tab = 0;
        int label = atoi(tab + 1);
        int n = 0;
        rc = qd_tokenizer_encode(tok, line, NULL, 0, 0, 512, buf, NULL, NULL, &n, NULL);
        CHECK_EQ(rc, QD_OK);
        int32_t a = off[nsent], b = off[nsent + 1];
        int same =
            rc == QD_OK && a >= 0 && b <= nref && n == b - a && memcmp(buf, ref + a, (size_t)n * sizeof(int32_t)) == 0;
        if (!same && bad_ids++ < 5) {
            fprintf(stderr, "sentence %d \"%s\": %d ids, reference %d\n", nsent, line, n, b - a);
            for (int i = 0; i < n || i < b - a; i++)
                fprintf(stderr, "  %3d: %6d %-12s ref %6d %s\n", i, i < n ? buf[i] : -1,
                        i < n ? qd_tokenizer_piece(tok, buf[i]) : "", i < b - a ? ref[a + i] : -1,
                        i < b - a ? qd_tokenizer_piece(tok, ref[a + i]) : "");
        }
        bad_labels += label != lab[nsent];
        /* tokens.txt: the same sentence as word pieces */
        char *want = next_line(tokens, klen, &kpos);
        char *got = pieces(tok, line);
        size_t glen = strlen(got);
        char *full = malloc(glen + 16);
        snprintf(full, glen + 16, glen ? "[CLS] %s [SEP]" : "[CLS] [SEP]", got);
        if (!want || strcmp(full, want) != 0) {
            if (bad_pieces++ < 3)
                fprintf(stderr, "tokens.txt line %d: \"%s\" vs \"%s\"\n", nsent + 1, full, want ? want : "(none)");
        }
        free(full);
        free(got);
        nsent++;
    }
    CHECK_EQ(nsent, 872);
    CHECK_EQ(bad_ids, 0);
    CHECK_EQ(bad_pieces, 0);
    CHECK_EQ(bad_labels, 0);
    CHECK_EQ(off[872], 21943);
    free(tsv);
    free(tokens);
    qd_ckpt_close(ck);
}

static void test_vocab(const qd_tokenizer *tok)
{
    CHECK_EQ(qd_tokenizer_vocab_size(tok), 30522);
    CHECK_EQ(qd_tokenizer_lower_case(tok), 1); /* no tokenizer_config.json beside it */
    qd_tok_specials sp = qd_tokenizer_specials(tok);
    CHECK_EQ(sp.pad, 0);
    CHECK_EQ(sp.unk, 100);
    CHECK_EQ(sp.cls, 101);
    CHECK_EQ(sp.sep, 102);
    CHECK_EQ(sp.mask, 103);
    CHECK_EQ(qd_tokenizer_id(tok, "hello"), 7592);
    CHECK_EQ(qd_tokenizer_id(tok, "##able"), 3085);
    CHECK_EQ(qd_tokenizer_id(tok, "##aff"), -1);
    CHECK_EQ(qd_tokenizer_id(tok, ""), -1);
    CHECK_STREQ(qd_tokenizer_piece(tok, 1012), ".");
    CHECK(qd_tokenizer_piece(tok, 30522) == NULL);
    CHECK(qd_tokenizer_piece(tok, -1) == NULL);
    int bad = 0; /* every line is found again under its own id (no repeats in this vocabulary) */
    for (int32_t i = 0; i < 30522; i++) bad += qd_tokenizer_id(tok, qd_tokenizer_piece(tok, i)) != i;
    CHECK_EQ(bad, 0);
}

static void test_hand_cases(const qd_tokenizer *tok)
{
    /* README section 3, reference output */
    int32_t ids[64];
    int n = 0;
    CHECK_EQ(qd_tokenizer_encode(tok, "it 's a charming and often affecting journey . ", NULL, 0, 0, 64, ids, NULL,
                                 NULL, &n, NULL),
             QD_OK);
    static const int32_t want1[] = {101, 2009, 1005, 1055, 1037, 11951, 1998, 2411, 12473, 4990, 1012, 102};
    CHECK_EQ(n, 12);
    CHECK(n == 12 && memcmp(ids, want1, sizeof want1) == 0);
    CHECK_PIECES(tok, "you do n't have to know about music", "you do n ' t have to know about music");
    CHECK_PIECES(tok, "It's NOT bad -- the film isn't (really) a rip-off!",
                 "it ' s not bad - - the film isn ' t ( really ) a rip - off !");
    CHECK_PIECES(tok,
                 "Am\u00e9lie, na\u00efvet\u00e9, clich\u00e9, Maelstr\u00f6m, \u00c6sir, "
                 "( n\u00e6s ), \u00e0 la",
                 "amelie , naive ##te , cl ##iche , mae ##ls ##trom , \u00e6 ##sir , ( n ##\u00e6 "
                 "##s ) , a la");
    CHECK_PIECES(tok, "1,000,000 dollars; 3.5/10 stars... 1990s $5",
                 "1 , 000 , 000 dollars ; 3 . 5 / 10 stars . . . 1990s $ 5");
    /* U+0000 cannot be inside a C string; \x01 (Cc) is dropped the same way */
    CHECK_PIECES(tok, "e\u0301\u0301x\u200bY\u00a0z\ttab\x01nul", "ex ##y z tab ##nu ##l");
    CHECK_PIECES(tok, "\u4e2d\u6587\u5b57 mixed\u65e5\u672c", "\u4e2d \u6587 [UNK] mixed \u65e5 \u672c");
    CHECK_PIECES(tok, "l'amour \u2014 \u201cquotes\u201d \u2018single\u2019 \u2026",
                 "l ' amour \u2014 \u201c quotes \u201d \u2018 single \u2019 \u2026");

    /* accents, case, greedy longest match */
    CHECK_PIECES(tok, "H\u00e9llo W\u00f6rld", "hello world");
    CHECK_PIECES(tok, "He\u0301llo", "hello"); /* already decomposed */
    CHECK_PIECES(tok, "unaffable", "una ##ffa ##ble");
    CHECK_PIECES(tok, "\u00c5ngstr\u00f6m \ufb01ne", "ang ##strom \ufb01 ##ne"); /* NFD, not NFKD */
    CHECK_PIECES(tok, "\u0130stanbul", "istanbul");                              /* full lower case: i + U+0307 */
    /* Python's Final_Sigma rule: word-final capital sigma lower-cases to U+03C2 */
    CHECK_PIECES(tok, "\u039f\u0394\u039f\u03a3 \u039f\u0394\u039f\u03a3. \u03a3\u0391",
                 "\u03bf ##\u03b4 ##\u03bf\u03c2 \u03bf ##\u03b4 ##\u03bf\u03c2 . \u03c3 ##\u03b1");
    /* Hangul syllables decompose to jamo under NFD; kana are not split like CJK ideographs */
    CHECK_PIECES(tok, "\ud55c\uad6d\uc5b4 \u3053\u3093\u306b\u3061\u306f",
                 "\u1112 ##\u1161 ##\u11ab ##\u1100 ##\u116e ##\u11a8 ##\u110b ##\u1165 \u3053 "
                 "##\u3093 ##\u306b ##\u3061 ##\u306f");

    /* control and format characters, replacement character, odd spaces */
    CHECK_PIECES(tok,
                 "x\u00adx \u200ba\ufffdb\x7f"
                 "c\x01"
                 "d",
                 "xx abc ##d");
    CHECK_PIECES(tok,
                 "a\u2028b\u3000c\x0b"
                 "d\r\ne\u00a0f",
                 "a b cd e f");
    CHECK_PIECES(tok, "\xff\xfehi\xc3", "hi"); /* invalid UTF-8 is dropped */
    CHECK_PIECES(tok, "", "");
    CHECK_PIECES(tok, "  \t\n ", "");
    CHECK_PIECES(tok, "\u0301", "");       /* a lone accent vanishes */
    CHECK_PIECES(tok, "[SEP]", "[ sep ]"); /* no special-token matching */

    /* word length: 100 code points are WordPiece'd, 101 are [UNK] */
    char w[256];
    memset(w, 'a', 101);
    w[101] = 0;
    CHECK_PIECES(tok, w, "[UNK]");
    w[100] = 0;
    char *p = pieces(tok, w);
    CHECK(strcmp(p, "[UNK]") != 0 && strncmp(p, "aaa", 3) == 0);
    free(p);
    /* 100 code points of two bytes each still count as 100 */
    for (int i = 0; i < 100; i++) memcpy(w + 2 * i, "\u00e6", 2);
    w[200] = 0;
    p = pieces(tok, w);
    CHECK(strcmp(p, "[UNK]") != 0);
    free(p);
    memcpy(w + 200, "\u00e6", 3);
    CHECK_PIECES(tok, w, "[UNK]");
    CHECK_PIECES(tok, "ok \u2603\u2603 ok", "ok [UNK] ok"); /* no cover: the word is one [UNK] */
}

static void test_encode(const qd_tokenizer *tok)
{
    int32_t ids[16], type[16], mask[16];
    int n = -1, dropped = -1;
    int32_t hello = qd_tokenizer_id(tok, "hello"), world = qd_tokenizer_id(tok, "world");
    int32_t how = qd_tokenizer_id(tok, "how"), are = qd_tokenizer_id(tok, "are");

    /* pair, no limit, padded */
    CHECK_EQ(qd_tokenizer_encode(tok, "Hello world", "how are you", 0, 10, 16, ids, type, mask, &n, &dropped), QD_OK);
    CHECK_EQ(n, 10);
    CHECK_EQ(dropped, 0);
    static const int32_t want_t[10] = {0, 0, 0, 0, 1, 1, 1, 1, 0, 0};
    static const int32_t want_m[10] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
    CHECK(memcmp(type, want_t, sizeof want_t) == 0);
    CHECK(memcmp(mask, want_m, sizeof want_m) == 0);
    CHECK_EQ(ids[0], 101);
    CHECK_EQ(ids[1], hello);
    CHECK_EQ(ids[2], world);
    CHECK_EQ(ids[3], 102);
    CHECK_EQ(ids[4], how);
    CHECK_EQ(ids[7], 102);
    CHECK_EQ(ids[8], 0);
    CHECK_EQ(ids[9], 0);

    /* pair truncated to 6: b (3) is longer than a (2), then a tie takes from b again */
    CHECK_EQ(qd_tokenizer_encode(tok, "Hello world", "how are you", 6, 8, 16, ids, type, mask, &n, &dropped), QD_OK);
    CHECK_EQ(n, 8);
    CHECK_EQ(dropped, 2);
    static const int32_t want_p[8] = {101, 0, 0, 102, 0, 102, 0, 0};
    static const int32_t want_pt[8] = {0, 0, 0, 0, 1, 1, 0, 0};
    static const int32_t want_pm[8] = {1, 1, 1, 1, 1, 1, 0, 0};
    int32_t want_ids[8];
    memcpy(want_ids, want_p, sizeof want_p);
    want_ids[1] = hello;
    want_ids[2] = world;
    want_ids[4] = how;
    CHECK(memcmp(ids, want_ids, sizeof want_ids) == 0);
    CHECK(memcmp(type, want_pt, sizeof want_pt) == 0);
    CHECK(memcmp(mask, want_pm, sizeof want_pm) == 0);
    (void)are;

    /* single sentence truncated: the closing [SEP] stays */
    CHECK_EQ(qd_tokenizer_encode(tok, "a b c d e", NULL, 4, 4, 16, ids, NULL, mask, &n, &dropped), QD_OK);
    CHECK_EQ(n, 4);
    CHECK_EQ(dropped, 3);
    CHECK_EQ(ids[0], 101);
    CHECK_EQ(ids[1], qd_tokenizer_id(tok, "a"));
    CHECK_EQ(ids[2], qd_tokenizer_id(tok, "b"));
    CHECK_EQ(ids[3], 102);
    CHECK_EQ(mask[3], 1);

    /* padding never cuts: a longer sequence keeps its length */
    CHECK_EQ(qd_tokenizer_encode(tok, "a b c d e", NULL, 0, 4, 16, ids, NULL, NULL, &n, NULL), QD_OK);
    CHECK_EQ(n, 7);

    /* empty text and empty pair */
    CHECK_EQ(qd_tokenizer_encode(tok, "", "", 0, 0, 16, ids, type, NULL, &n, NULL), QD_OK);
    CHECK_EQ(n, 3);
    CHECK_EQ(ids[0], 101);
    CHECK_EQ(ids[1], 102);
    CHECK_EQ(ids[2], 102);
    CHECK_EQ(type[2], 1);

    /* too small a buffer: the length needed comes back, the buffer is untouched */
    ids[0] = -7;
    CHECK_EQ(qd_tokenizer_encode(tok, "a b c d e", NULL, 0, 0, 4, ids, NULL, NULL, &n, NULL), QD_ESHAPE);
    CHECK_EQ(n, 7);
    CHECK_EQ(ids[0], -7);
    CHECK_CONTAINS(qd_errmsg(), "7 ids");
    CHECK_EQ(qd_tokenizer_encode(tok, "a", NULL, 0, 32, 16, ids, NULL, NULL, &n, NULL), QD_ESHAPE);
    CHECK_EQ(n, 32);

    /* no room for the special tokens */
    CHECK_EQ(qd_tokenizer_encode(tok, "a", "b", 2, 0, 16, ids, NULL, NULL, &n, NULL), QD_EINVAL);
    CHECK_CONTAINS(qd_errmsg(), "max_len 2");
    CHECK_EQ(qd_tokenizer_encode(tok, "a", "b", 3, 0, 16, ids, NULL, NULL, &n, &dropped), QD_OK);
    CHECK_EQ(n, 3);
    CHECK_EQ(dropped, 2);
    CHECK_EQ(qd_tokenizer_encode(tok, "a", NULL, 1, 0, 16, ids, NULL, NULL, &n, NULL), QD_EINVAL);
    CHECK_EQ(qd_tokenizer_encode(tok, "a", NULL, -1, 0, 16, ids, NULL, NULL, &n, NULL), QD_EINVAL);
}

/* Random bytes and random code points: no crash (ASan/UBSan build), and encode() is always
 * [CLS] + tokenize() + [SEP]. */
static void test_random(const qd_tokenizer *tok)
{
    uint64_t st = 0x9E3779B97F4A7C15ull;
    int bad = 0;
    for (int it = 0; it < 3000; it++) {
        char s[256];
        int n = 0, len = 1 + (int)(st % 60);
        while (n < len && n < 250) {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            uint32_t r = (uint32_t)(st >> 33);
            if (it % 2) { /* raw bytes */
                s[n++] = (char)(r & 0xFF ? r & 0xFF : ' ');
            } else { /* a code point from the whole range, UTF-8 encoded */
                uint32_t c = r % 4 == 0 ? r % 0x80 + 1 : r % 4 == 1 ? r % 0x800 : r % 0x110000;
                if (c == 0 || (c >= 0xD800 && c <= 0xDFFF)) c = ' ';
                if (c < 0x80)
                    s[n++] = (char)c;
                else if (c < 0x800) {
                    s[n++] = (char)(0xC0 | c >> 6);
                    s[n++] = (char)(0x80 | (c & 0x3F));
                } else if (c < 0x10000) {
                    s[n++] = (char)(0xE0 | c >> 12);
                    s[n++] = (char)(0x80 | ((c >> 6) & 0x3F));
                    s[n++] = (char)(0x80 | (c & 0x3F));
                } else {
                    s[n++] = (char)(0xF0 | c >> 18);
                    s[n++] = (char)(0x80 | ((c >> 12) & 0x3F));
                    s[n++] = (char)(0x80 | ((c >> 6) & 0x3F));
                    s[n++] = (char)(0x80 | (c & 0x3F));
                }
            }
        }
        s[n] = 0;
        int32_t *ids = NULL, enc[600];
        int m = 0, e = 0;
        if (qd_tokenizer_tokenize(tok, s, &ids, &m) != QD_OK ||
            qd_tokenizer_encode(tok, s, NULL, 0, 0, 600, enc, NULL, NULL, &e, NULL) != QD_OK || e != m + 2 ||
            enc[0] != 101 || enc[e - 1] != 102 || (m && memcmp(enc + 1, ids, (size_t)m * sizeof *ids) != 0))
            bad++;
        for (int i = 0; i < m; i++) bad += ids[i] < 0 || ids[i] >= 30522;
        free(ids);
    }
    CHECK_EQ(bad, 0);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        exit(99);
    }
}

static void test_load_errors(void)
{
    char dir[] = "/tmp/qd_tok_XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(99);
    }
    char path[256], cfg[256];
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    snprintf(cfg, sizeof cfg, "%s/tokenizer_config.json", dir);
    qd_tokenizer *t = (qd_tokenizer *)&t; /* must be reset to NULL on failure */

    CHECK_EQ(qd_tokenizer_load(path, 1, &t), QD_ENOENT);
    CHECK(t == NULL);
    CHECK_CONTAINS(qd_errmsg(), path);

    write_file(path, "");
    CHECK_EQ(qd_tokenizer_load(path, 1, &t), QD_EFORMAT);
    CHECK_CONTAINS(qd_errmsg(), path);
    CHECK_CONTAINS(qd_errmsg(), "empty");

    write_file(path, "[PAD]\n[UNK]\nhello\n[SEP]\n");
    CHECK_EQ(qd_tokenizer_load(path, 1, &t), QD_EFORMAT);
    CHECK_CONTAINS(qd_errmsg(), path);
    CHECK_CONTAINS(qd_errmsg(), "[CLS]");

    write_file(path, "hello\n");
    CHECK_EQ(qd_tokenizer_load(path, 1, &t), QD_EFORMAT);
    CHECK_CONTAINS(qd_errmsg(), "[PAD], [UNK], [CLS], [SEP]");

    /* a small vocabulary: CRLF lines, no final newline, a repeated token (the later line wins),
     * no [MASK] */
    write_file(path, "[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\nhello\r\n##llo\r\nhe\r\nHello\r\nhello");
    CHECK_EQ(qd_tokenizer_load(path, QD_TOK_LOWER_AUTO, &t), QD_OK);
    if (t) {
        CHECK_EQ(qd_tokenizer_vocab_size(t), 9);
        CHECK_EQ(qd_tokenizer_lower_case(t), 1);
        CHECK_EQ(qd_tokenizer_specials(t).mask, -1);
        CHECK_EQ(qd_tokenizer_id(t, "hello"), 8);
        CHECK_STREQ(qd_tokenizer_piece(t, 3), "[SEP]");
        CHECK_PIECES(t, "HELLO hello", "hello hello");
        qd_tokenizer_free(t);
    }
    /* do_lower_case from tokenizer_config.json, and explicitly */
    write_file(cfg, "{\"do_lower_case\": false, \"model_max_length\": 512}");
    CHECK_EQ(qd_tokenizer_load(path, QD_TOK_LOWER_AUTO, &t), QD_OK);
    if (t) {
        CHECK_EQ(qd_tokenizer_lower_case(t), 0);
        CHECK_PIECES(t, "Hello hello h\u00e9llo", "Hello hello [UNK]");
        qd_tokenizer_free(t);
    }
    CHECK_EQ(qd_tokenizer_load(path, 1, &t), QD_OK);
    if (t) {
        CHECK_EQ(qd_tokenizer_lower_case(t), 1);
        CHECK_PIECES(t, "Hello h\u00e9llo", "hello hello");
        qd_tokenizer_free(t);
    }
    write_file(cfg, "{}");
    CHECK_EQ(qd_tokenizer_load(path, QD_TOK_LOWER_AUTO, &t), QD_OK);
    if (t) CHECK_EQ(qd_tokenizer_lower_case(t), 1);
    qd_tokenizer_free(t);
    write_file(cfg, "{\"do_lower_case\": fals");
    CHECK_EQ(qd_tokenizer_load(path, QD_TOK_LOWER_AUTO, &t), QD_EFORMAT);
    CHECK_CONTAINS(qd_errmsg(), cfg);
    write_file(cfg, "{\"do_lower_case\": \"yes\"}");
    CHECK_EQ(qd_tokenizer_load(path, QD_TOK_LOWER_AUTO, &t), QD_EFORMAT);
    CHECK_CONTAINS(qd_errmsg(), "do_lower_case");
    CHECK_EQ(qd_tokenizer_load(path, 0, &t), QD_OK); /* explicit: the file is not read */
    qd_tokenizer_free(t);

    /* a model directory: its tokenizer file is found (here vocab.txt); without one, an error */
    CHECK_EQ(qd_tokenizer_load(dir, 1, &t), QD_OK);
    if (t) CHECK_EQ(qd_tokenizer_vocab_size(t), qd_tokenizer_vocab_size(t) > 0 ? qd_tokenizer_vocab_size(t) : -1);
    qd_tokenizer_free(t);
    remove(cfg);
    remove(path);
    CHECK_EQ(qd_tokenizer_load(dir, 1, &t), QD_ENOENT);
    CHECK_CONTAINS(qd_errmsg(), dir);
    rmdir(dir);
}

int main(void)
{
    const char *m = qd_test_models_dir();
    snprintf(g_vocab, sizeof g_vocab, "%s/bert-uncased/vocab.txt", m);
    snprintf(g_ref, sizeof g_ref, "%s/reference/bert-tokenizer-reference.safetensors", m);
    snprintf(g_tokens, sizeof g_tokens, "%s/reference/tokens.txt", m);
    snprintf(g_tsv, sizeof g_tsv, "%s/data/sst2/dev.tsv", m);

    qd_tokenizer *tok = NULL;
    double t0 = qd_now();
    int rc = qd_tokenizer_load(g_vocab, QD_TOK_LOWER_AUTO, &tok);
    double t1 = qd_now();
    CHECK_MSG(rc == QD_OK, "%s", qd_errmsg());
    if (rc) QD_TEST_MAIN_END();
    printf("vocabulary loaded in %.1f ms\n", 1e3 * (t1 - t0));
    test_vocab(tok);
    t0 = qd_now();
    test_sst2_reference(tok);
    printf("SST-2 dev (872 sentences, twice) in %.1f ms\n", 1e3 * (qd_now() - t0));
    test_hand_cases(tok);
    test_encode(tok);
    test_random(tok);
    qd_tokenizer_free(tok);
    test_load_errors();
    QD_TEST_MAIN_END();
}
