/* The tokenizers against Hugging Face tokenizers' ids (tests/reference/tokenizers/NAME.ids, made by
 * tests/reference/make_tokenizer_references.py): every SST-2 dev sentence (872) and the
 * multilingual sample (40 lines, many scripts, NFKC-affected, combining, zero-width and control
 * characters), single sequences with their special tokens, and three pairs:
 *   roberta-bpe   byte-level BPE from vocab.json + merges.txt (GPT-2's merges, RoBERTa's layout)
 *   xlmr-spm-en   XLM-R's unigram pipeline from SentencePiece's English .model
 *   xlmr-spm-ja   the same from its Japanese .model (multilingual sample)
 *   mpnet         all-mpnet-base-v2's tokenizer.json (WordPiece, <s> A </s>)
 *   tiny-unigram  a hand-written tokenizer.json (Unigram, Replace, Metaspace, template; committed)
 * All must be identical. The fetched files (deploy/fetch-models.sh tokenizers all-mpnet-base-v2)
 * are looked up in $QD_CACHE or ~/.cache/qdist; tokenizers whose files are absent are skipped, and
 * the test exits 77 when only the committed one ran. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/calib_data.h"
#include "model/tokenizer.h"
#include "qd_test.h"

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *b = malloc((size_t)n + 1);
    size_t got = fread(b, 1, (size_t)n, f);
    fclose(f);
    b[got] = 0;
    return b;
}

/* lines of a file (the buffer is modified; pointers into it) */
static int split_lines(char *b, char ***out)
{
    int n = 0, cap = 64;
    char **v = malloc((size_t)cap * sizeof *v);
    for (char *p = b; p && *p;) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = 0;
        if (n == cap) v = realloc(v, (size_t)(cap *= 2) * sizeof *v);
        v[n++] = p;
        p = nl ? nl + 1 : NULL;
    }
    *out = v;
    return n;
}

static const char *cache_file(const char *rel)
{
    static char buf[4200];
    const char *c = getenv("QD_CACHE");
    struct stat st;
    if (c && *c) {
        snprintf(buf, sizeof buf, "%s/%s", c, rel);
        if (stat(buf, &st) == 0) return buf;
    }
    const char *h = getenv("HOME");
    if (h && *h) {
        snprintf(buf, sizeof buf, "%s/.cache/qdist/%s", h, rel);
        if (stat(buf, &st) == 0) return buf;
    }
    return NULL;
}

static const char *pairs[3][2] = {
    {"it 's a charming and often affecting journey .", "unflinchingly bleak and desperate"},
    {"Le c\xc5\x93ur a ses raisons", "que la raison ne conna\xc3\xaet point."},
    {"\xe6\x9d\xb1\xe4\xba\xac\xe3\x81\xaf\xe6\x97\xa5\xe6\x9c\xac\xe3\x81\xae\xe9\xa6\x96\xe9\x83\xbd\xe3\x81\xa7\xe3"
     "\x81"
     "\x99\xe3\x80\x82",
     "\xec\x84\x9c\xec\x9a\xb8\xec\x9d\x80 \xeb\x8c\x80\xed\x95\x9c\xeb\xaf\xbc\xea\xb5\xad\xec\x9d\x98 \xec\x88\x98"
     "\xeb\x8f\x84\xec\x9e\x85\xeb\x8b\x88\xeb\x8b\xa4."}};

/* 1 when run, 0 when skipped */
static int check(const char *name, const char *tok_path, char **sst, int nsst, char **multi, int nmulti)
{
    if (!tok_path) {
        printf("%-13s skipped: its files are not fetched (deploy/fetch-models.sh tokenizers all-mpnet-base-v2)\n",
               name);
        return 0;
    }
    char ref[4200];
    snprintf(ref, sizeof ref, "%s/tests/reference/tokenizers/%s.ids", QD_TEST_SOURCE_DIR, name);
    char *rb = slurp(ref);
    CHECK_MSG(rb != NULL, "%s missing", ref);
    if (!rb) return 1;
    char **lines;
    int nl = split_lines(rb, &lines);
    qd_tokenizer *t = NULL;
    int rc = qd_tokenizer_load(tok_path, QD_TOK_LOWER_AUTO, &t);
    CHECK_MSG(rc == QD_OK, "%s: %s", name, qd_errmsg());
    if (rc) {
        free(lines);
        free(rb);
        return 1;
    }
    const int with_sst = !strcmp(lines[0], "# sst2+multilingual");
    const int ntext = (with_sst ? nsst : 0) + nmulti;
    CHECK_EQ(nl, 1 + ntext + 3);
    int bad = 0, total = 0, cap = 8192;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    for (int i = 0; i < ntext + 3 && i + 1 < nl; i++) {
        const char *a =
            i < ntext ? (with_sst && i < nsst ? sst[i] : multi[i - (with_sst ? nsst : 0)]) : pairs[i - ntext][0];
        const char *b = i < ntext ? NULL : pairs[i - ntext][1];
        int n = 0;
        rc = qd_tokenizer_encode(t, a, b, 0, 0, cap, ids, NULL, NULL, &n, NULL);
        char got[65536];
        size_t gl = 0;
        for (int k = 0; k < n && gl < sizeof got - 16; k++)
            gl += (size_t)snprintf(got + gl, sizeof got - gl, "%s%d", k ? " " : "", ids[k]);
        got[gl] = 0;
        total++;
        if (rc || strcmp(got, lines[i + 1])) {
            if (bad++ < 3)
                fprintf(stderr, "%s: text %d \"%s\"%s%s\n  ours %s\n  hf   %s\n", name, i, a, b ? " + " : "",
                        b ? b : "", got, lines[i + 1]);
        }
    }
    CHECK_MSG(bad == 0, "%s: %d of %d encodings differ from Hugging Face tokenizers", name, bad, total);
    printf("%-13s %d / %d encodings identical (%s)\n", name, total - bad, total,
           with_sst ? "872 SST-2 dev sentences, 40 multilingual lines, 3 pairs" : "40 multilingual lines, 3 pairs");
    free(ids);
    qd_tokenizer_free(t);
    free(lines);
    free(rb);
    return 1;
}

int main(void)
{
    char tsv[4200], ml[4200], tiny[4200];
    snprintf(tsv, sizeof tsv, "%s/data/sst2/dev.tsv", qd_test_models_dir());
    snprintf(ml, sizeof ml, "%s/tests/reference/tokenizers/multilingual.txt", QD_TEST_SOURCE_DIR);
    snprintf(tiny, sizeof tiny, "%s/tests/reference/tokenizers/tiny-unigram.json", QD_TEST_SOURCE_DIR);
    qd_text_samples s;
    if (qd_text_samples_read(tsv, 0, &s)) {
        fprintf(stderr, "%s\n", qd_errmsg());
        return 1;
    }
    CHECK_EQ(s.n, 872);
    char *mb = slurp(ml), **multi;
    int nmulti = split_lines(mb, &multi);
    CHECK_EQ(nmulti, 40);
    int ran = 0;
    char p1[4200] = "", p2[4200] = "", p3[4200] = "", p4[4200] = "";
    const char *c;
    if ((c = cache_file("tokenizers/roberta-bpe/vocab.json"))) snprintf(p1, sizeof p1, "%s", c);
    if ((c = cache_file("tokenizers/spm-test/test_model.model"))) snprintf(p2, sizeof p2, "%s", c);
    if ((c = cache_file("tokenizers/spm-test/test_ja_model.model"))) snprintf(p3, sizeof p3, "%s", c);
    if ((c = cache_file("models/all-mpnet-base-v2/tokenizer.json"))) snprintf(p4, sizeof p4, "%s", c);
    ran += check("roberta-bpe", p1[0] ? p1 : NULL, s.text, s.n, multi, nmulti);
    ran += check("xlmr-spm-en", p2[0] ? p2 : NULL, s.text, s.n, multi, nmulti);
    ran += check("xlmr-spm-ja", p3[0] ? p3 : NULL, s.text, s.n, multi, nmulti);
    ran += check("mpnet", p4[0] ? p4 : NULL, s.text, s.n, multi, nmulti);
    check("tiny-unigram", tiny, s.text, s.n, multi, nmulti);
    free(multi);
    free(mb);
    qd_text_samples_free(&s);
    if (!ran && !qd_test_failures_) {
        printf("skipped: no fetched tokenizer files\n");
        return 77;
    }
    QD_TEST_MAIN_END();
}
