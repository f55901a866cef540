/* model/tokenizer_internal.h — the tokenizer object, shared by model/tokenizer*.c only.
 * tokenizer.c: the vocabulary, WordPiece, loading and the model-input templates;
 * tokenizer_bpe.c: byte-level BPE (GPT-2 / RoBERTa); tokenizer_unigram.c: SentencePiece unigram
 * (XLM-R) with its precompiled normalizer; tokenizer_json.c: tokenizer.json. */
#ifndef QD_TOKENIZER_INTERNAL_H
#define QD_TOKENIZER_INTERNAL_H

#include <stdlib.h>

#include "model/tokenizer.h"

typedef enum { QD_TOK_WORDPIECE = 0, QD_TOK_BPE, QD_TOK_UNIGRAM } qd_tok_kind;

typedef struct qd_tok_bpe qd_tok_bpe;
typedef struct qd_tok_unigram qd_tok_unigram;

struct qd_tokenizer {
    char *path;
    qd_tok_kind kind;
    int lower; /* WordPiece: do_lower_case (accents stripped too unless strip_accents = 0) */
    int strip_accents;
    int chinese;     /* WordPiece: spaces around CJK ideographs */
    int32_t n;       /* vocabulary size */
    char *text;      /* all tokens, each NUL-terminated */
    uint32_t *off;   /* [n] start of token i in text */
    uint32_t *len;   /* [n] its length in bytes */
    int32_t *slots;  /* [nslots] open-addressing hash table of ids, -1 = empty */
    uint32_t nslots; /* power of two, >= 2n */
    qd_tok_specials sp;
    /* the model-input template: cls A sep [sep] B sep (pair_sep2: RoBERTa's double separator);
     * the second segment's type id (BERT 1, RoBERTa-style 0) */
    int pair_sep2, type_b;
    qd_tok_bpe *bpe;
    qd_tok_unigram *uni;
};

typedef struct {
    int32_t *v;
    size_t n, cap;
} qd_ivec;

static inline int qd_ivec_reserve(qd_ivec *a, size_t extra)
{
    if (a->n + extra <= a->cap) return 0;
    size_t cap = a->cap ? a->cap : 64;
    while (cap < a->n + extra) cap *= 2;
    int32_t *v = realloc(a->v, cap * sizeof *v);
    if (!v) return -1;
    a->v = v;
    a->cap = cap;
    return 0;
}

static inline int qd_ivec_push(qd_ivec *a, int32_t x)
{
    if (qd_ivec_reserve(a, 1)) return -1;
    a->v[a->n++] = x;
    return 0;
}

/* Id of the token spelled s[0..n), or -1. */
int32_t qd_tok_lookup(const qd_tokenizer *t, const char *s, size_t n);
/* The vocabulary from n pieces (id = index; NULL pieces are holes that match nothing). */
int qd_tok_set_vocab(qd_tokenizer *t, const char *const *pieces, int32_t n);
/* A new tokenizer object (path copied). */
qd_tokenizer *qd_tok_new(const char *path);
/* Reads a whole file (NUL-terminated); errors name it. */
int qd_tok_read_file(const char *path, char **buf, size_t *len);
/* Unicode White_Space (what regex \s and Rust's char::is_whitespace match). */
int qd_tok_is_white(int32_t c);

/* byte-level BPE */
int qd_tok_bpe_new(qd_tokenizer *t, const char *const *merges_a, const char *const *merges_b, int nmerges,
                   int add_prefix_space);
int qd_tok_bpe_tokenize(const qd_tokenizer *t, const char *text, qd_ivec *ids);
void qd_tok_bpe_free(qd_tok_bpe *b);

/* unigram */
typedef struct {
    const unsigned char *charsmap; /* precompiled normalizer, or NULL */
    size_t charsmap_len;
    int strip_right;         /* Strip(right) normalizer */
    int collapse_spaces;     /* Replace(" {2,}", replacement) */
    const char *collapse_to; /* its replacement text */
    int prepend;             /* Metaspace: prepend the replacement when missing */
    int32_t unk_id;
} qd_tok_unigram_opts;
int qd_tok_unigram_new(qd_tokenizer *t, const double *scores, const qd_tok_unigram_opts *o);
int qd_tok_unigram_tokenize(const qd_tokenizer *t, const char *text, qd_ivec *ids);
void qd_tok_unigram_free(qd_tok_unigram *u);
/* A SentencePiece .model file as XLM-R's tokenizer (fairseq ids: <s> <pad> </s> <unk>, the
 * pieces, <mask>). */
int qd_tok_load_spm(const char *path, qd_tokenizer **out);

/* tokenizer.json */
int qd_tok_load_json(const char *path, qd_tokenizer **out);

#endif
