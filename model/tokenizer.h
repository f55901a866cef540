/* model/tokenizer.h — the BERT WordPiece tokenizer: text in, token ids out.
 *
 * Reproduces google-research/bert tokenization.py (BasicTokenizer + WordpieceTokenizer), which
 * Hugging Face's BertTokenizer follows as well:
 *   1. clean: drop U+0000, U+FFFD and control characters (Cc, Cf) other than \t \n \r; map
 *      whitespace (' ', \t, \n, \r, Zs) to ' ';
 *   2. put spaces around CJK ideographs (the code point ranges of BERT's _is_chinese_char);
 *   3. split on whitespace; when lower-casing: lower-case each word (full Unicode mapping, as
 *      Python's str.lower()), NFD, drop non-spacing marks (Mn);
 *   4. split on punctuation (ASCII 33-47, 58-64, 91-96, 123-126 and Unicode P*): every
 *      punctuation character is a word of its own;
 *   5. WordPiece: greedy longest-match-first against the vocabulary, continuation pieces looked
 *      up with a "##" prefix; a word with no full cover, or longer than
 *      QD_TOK_MAX_CHARS_PER_WORD code points, becomes one [UNK].
 * Text is UTF-8; bytes that are not valid UTF-8 are dropped (Python's errors="ignore"). Special
 * tokens written inside the text ("[SEP]") are split like any other text, as in google's code.
 *
 * A loaded tokenizer is read-only: one may be shared by threads.
 */
#ifndef QD_TOKENIZER_H
#define QD_TOKENIZER_H

#include <stdint.h>

#include "common/qd_common.h"

/* Longer words (after basic tokenization, in code points) become [UNK] (Hugging Face's value;
 * google's script defaults to 200). */
#define QD_TOK_MAX_CHARS_PER_WORD 100

/* do_lower_case argument of qd_tokenizer_load: read "do_lower_case" from tokenizer_config.json
 * beside vocab.txt, true when the file or the key is absent. */
#define QD_TOK_LOWER_AUTO (-1)

typedef struct qd_tokenizer qd_tokenizer;

/* Load vocab.txt (one token per line; id = 0-based line number; each line stripped of
 * surrounding ASCII whitespace; when a token repeats, the later line wins the lookup).
 * do_lower_case: 1, 0 or QD_TOK_LOWER_AUTO. Errors (qd_errmsg() names the file): QD_ENOENT /
 * QD_EIO when the file cannot be read, QD_EFORMAT when it holds no token, lacks one of [PAD],
 * [UNK], [CLS], [SEP], or when tokenizer_config.json is not valid JSON. */
int qd_tokenizer_load(const char *vocab_path, int do_lower_case, qd_tokenizer **out);
void qd_tokenizer_free(qd_tokenizer *tok);

int qd_tokenizer_vocab_size(const qd_tokenizer *tok);
int qd_tokenizer_lower_case(const qd_tokenizer *tok);
/* Id of a token spelled exactly `piece` (e.g. "##ing", "[MASK]"), or -1. */
int32_t qd_tokenizer_id(const qd_tokenizer *tok, const char *piece);
/* Spelling of token `id`, or NULL when out of range. */
const char *qd_tokenizer_piece(const qd_tokenizer *tok, int32_t id);

/* The special tokens ([MASK] is -1 when the vocabulary has none). */
typedef struct {
    int32_t pad, unk, cls, sep, mask;
} qd_tok_specials;
qd_tok_specials qd_tokenizer_specials(const qd_tokenizer *tok);

/* Word-piece ids of `text`, without [CLS]/[SEP]: *ids is malloc'd (free() it; NULL when *n is
 * 0). QD_ENOMEM is the only error. */
int qd_tokenizer_tokenize(const qd_tokenizer *tok, const char *text, int32_t **ids, int *n);

/* Model input for one sentence or a pair:
 *     [CLS] a [SEP]            type ids 0 ... 0
 *     [CLS] a [SEP] b [SEP]    type ids 0 ... 0 1 ... 1     (text_pair != NULL)
 * then [PAD] (type 0, mask 0) up to pad_to.
 *   max_len  > 0: at most max_len ids before padding. Word pieces are dropped from the end (the
 *            closing [SEP] stays); for a pair, one piece at a time from the longer of a and b
 *            (from b on a tie), as BERT's _truncate_seq_pair and Hugging Face's
 *            "longest_first". Must leave room for the special tokens (>= 2, or 3 for a pair).
 *            0 = no limit.
 *   pad_to   > 0: pad up to this length (a longer sequence is not cut: set max_len = pad_to
 *            for a fixed length). 0 = no padding.
 *   cap      entries of ids / type_ids / mask. type_ids and mask may be NULL.
 * Writes *n_out (the length written) and, when given, *n_truncated (word pieces dropped).
 * QD_ESHAPE when the result needs more than cap entries: *n_out is then the length needed and
 * nothing else is written. QD_EINVAL for a max_len below the special tokens' count. */
int qd_tokenizer_encode(const qd_tokenizer *tok, const char *text, const char *text_pair, int max_len, int pad_to,
                        int cap, int32_t *ids, int32_t *type_ids, int32_t *mask, int *n_out, int *n_truncated);

#endif
