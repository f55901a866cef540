/* model/tokenizer_json.c — tokenizer.json (Hugging Face tokenizers' own file) and RoBERTa's
 * vocab.json + merges.txt, read into the tokenizer object. The pipelines the file may describe are
 * many; those of the supported families are accepted (WordPiece with BertNormalizer and
 * BertPreTokenizer; byte-level BPE; SentencePiece unigram with Precompiled / Strip / Replace
 * normalizers and Metaspace) and anything else is refused with the component's name. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "model/tokenizer_internal.h"

static const char *str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}
static const char *type_of(const cJSON *o) { return o && !cJSON_IsNull(o) ? str(o, "type") : NULL; }

static size_t base64(const char *s, unsigned char *out)
{
    static const char *abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint32_t acc = 0;
    int bits = 0;
    size_t n = 0;
    for (; *s && *s != '='; s++) {
        const char *p = strchr(abc, *s);
        if (!p) continue;
        acc = acc << 6 | (uint32_t)(p - abc);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
        }
    }
    return n;
}

/* A vocabulary map {token: id} as pieces[id]. */
static int vocab_map(qd_tokenizer *t, const cJSON *map)
{
    int32_t n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, map)
    {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > (1 << 24))
            return qd_err_set(QD_EFORMAT, "%s: vocabulary entry '%s' has no valid id", t->path, e->string);
        if ((int32_t)e->valuedouble + 1 > n) n = (int32_t)e->valuedouble + 1;
    }
    const char **pieces = qd_xcalloc((size_t)(n > 0 ? n : 1), sizeof *pieces);
    cJSON_ArrayForEach(e, map)
    {
        int32_t id = (int32_t)e->valuedouble;
        if (!pieces[id]) pieces[id] = e->string;
    }
    int rc = qd_tok_set_vocab(t, pieces, n);
    free(pieces);
    return rc;
}

/* Added tokens of tokenizer.json (ids beyond the model's vocabulary extend it). */
static int32_t added_id(const cJSON *root, const char *content)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"))
    {
        const char *c = str(e, "content");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        if (c && !strcmp(c, content) && cJSON_IsNumber(id)) return (int32_t)id->valuedouble;
    }
    return -1;
}

static int32_t token_id(const qd_tokenizer *t, const cJSON *root, const char *tok)
{
    int32_t id = qd_tok_lookup(t, tok, strlen(tok));
    return id >= 0 ? id : root ? added_id(root, tok) : -1;
}

/* the special tokens by their usual names */
static void find_specials(qd_tokenizer *t, const cJSON *root)
{
    static const char *pad[] = {"<pad>", "[PAD]"}, *unk[] = {"<unk>", "[UNK]"}, *mask[] = {"<mask>", "[MASK]"};
    for (int k = 0; k < 2; k++) {
        if (t->sp.pad < 0) t->sp.pad = token_id(t, root, pad[k]);
        if (t->sp.unk < 0) t->sp.unk = token_id(t, root, unk[k]);
        if (t->sp.mask < 0) t->sp.mask = token_id(t, root, mask[k]);
    }
}

/* post_processor: where the special tokens go */
static int post_processor(qd_tokenizer *t, const cJSON *root)
{
    const cJSON *pp = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
    const char *ty = type_of(pp);
    if (!ty || !strcmp(ty, "ByteLevel")) return QD_OK; /* no special tokens */
    if (!strcmp(ty, "RobertaProcessing") || !strcmp(ty, "BertProcessing")) {
        const cJSON *cls = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(pp, "cls"), 1);
        const cJSON *sep = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(pp, "sep"), 1);
        if (!cJSON_IsNumber(cls) || !cJSON_IsNumber(sep))
            return qd_err_set(QD_EFORMAT, "%s: post_processor %s without cls/sep ids", t->path, ty);
        t->sp.cls = (int32_t)cls->valuedouble;
        t->sp.sep = (int32_t)sep->valuedouble;
        t->pair_sep2 = ty[0] == 'R';
        t->type_b = ty[0] == 'B';
        return QD_OK;
    }
    if (!strcmp(ty, "TemplateProcessing")) {
        /* single: [special, A, special]; pair: [..., B, special] with one or two separators */
        const cJSON *single = cJSON_GetObjectItemCaseSensitive(pp, "single"),
                    *pair = cJSON_GetObjectItemCaseSensitive(pp, "pair");
        int n = cJSON_GetArraySize(single);
        const cJSON *a = cJSON_GetArrayItem(single, 0), *b = cJSON_GetArrayItem(single, n - 1);
        const char *cls = str(cJSON_GetObjectItemCaseSensitive(a, "SpecialToken"), "id");
        const char *sep = str(cJSON_GetObjectItemCaseSensitive(b, "SpecialToken"), "id");
        if (n != 3 || !cls || !sep)
            return qd_err_set(QD_EUNSUPPORTED, "%s: a TemplateProcessing other than <cls> $A <sep>", t->path);
        t->sp.cls = token_id(t, root, cls);
        t->sp.sep = token_id(t, root, sep);
        int np = cJSON_GetArraySize(pair);
        t->pair_sep2 = np == 6;
        const cJSON *bseq = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(pair, np - 2), "Sequence");
        const cJSON *tid = cJSON_GetObjectItemCaseSensitive(bseq, "type_id");
        t->type_b = cJSON_IsNumber(tid) ? (int)tid->valuedouble : 0;
        if (t->sp.cls < 0 || t->sp.sep < 0)
            return qd_err_set(QD_EFORMAT, "%s: post_processor names tokens the vocabulary lacks", t->path);
        return QD_OK;
    }
    return qd_err_set(QD_EUNSUPPORTED, "%s: post_processor '%s' is not supported", t->path, ty);
}

static int load_wordpiece(qd_tokenizer *t, const cJSON *root, const cJSON *model)
{
    int rc = vocab_map(t, cJSON_GetObjectItemCaseSensitive(model, "vocab"));
    if (rc) return rc;
    const cJSON *nz = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    const char *nt = type_of(nz);
    if (!nt || strcmp(nt, "BertNormalizer"))
        return qd_err_set(QD_EUNSUPPORTED, "%s: WordPiece with normalizer '%s' (BertNormalizer is supported)", t->path,
                          nt ? nt : "none");
    const char *pt = type_of(cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"));
    if (!pt || strcmp(pt, "BertPreTokenizer"))
        return qd_err_set(QD_EUNSUPPORTED, "%s: WordPiece with pre_tokenizer '%s' (BertPreTokenizer is supported)",
                          t->path, pt ? pt : "none");
    const cJSON *sa = cJSON_GetObjectItemCaseSensitive(nz, "strip_accents");
    t->lower = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(nz, "lowercase"));
    t->strip_accents = cJSON_IsBool(sa) ? cJSON_IsTrue(sa) : t->lower;
    t->chinese = !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(nz, "handle_chinese_chars"));
    const char *unk = str(model, "unk_token");
    t->sp.unk = unk ? token_id(t, root, unk) : -1;
    t->kind = QD_TOK_WORDPIECE;
    t->type_b = 1;
    return QD_OK;
}

/* merges: ["a b", ...] or [["a", "b"], ...] */
static int load_merges(qd_tokenizer *t, const cJSON *merges, int add_prefix_space)
{
    int n = cJSON_GetArraySize(merges);
    const char **a = qd_xcalloc((size_t)(n ? n : 1), sizeof *a), **b = qd_xcalloc((size_t)(n ? n : 1), sizeof *b);
    char **owned = qd_xcalloc((size_t)(n ? n : 1), sizeof *owned);
    int rc = QD_OK, i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, merges)
    {
        if (cJSON_IsString(e)) {
            owned[i] = qd_xstrdup(e->valuestring);
            char *sp = strchr(owned[i], ' ');
            if (!sp) {
                rc = qd_err_set(QD_EFORMAT, "%s: merge %d '%s' is not two tokens", t->path, i + 1, e->valuestring);
                break;
            }
            *sp = 0;
            a[i] = owned[i];
            b[i] = sp + 1;
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(cJSON_GetArrayItem(e, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(e, 1))) {
            a[i] = cJSON_GetArrayItem(e, 0)->valuestring;
            b[i] = cJSON_GetArrayItem(e, 1)->valuestring;
        } else {
            rc = qd_err_set(QD_EFORMAT, "%s: merge %d is not two tokens", t->path, i + 1);
            break;
        }
        i++;
    }
    if (!rc) rc = qd_tok_bpe_new(t, a, b, n, add_prefix_space);
    for (int k = 0; k < n; k++) free(owned[k]);
    free(owned);
    free(a);
    free(b);
    return rc;
}

static int load_bpe(qd_tokenizer *t, const cJSON *root, const cJSON *model)
{
    int rc = vocab_map(t, cJSON_GetObjectItemCaseSensitive(model, "vocab"));
    if (rc) return rc;
    const char *nt = type_of(cJSON_GetObjectItemCaseSensitive(root, "normalizer"));
    if (nt) return qd_err_set(QD_EUNSUPPORTED, "%s: BPE with normalizer '%s' (none is supported)", t->path, nt);
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const char *pt = type_of(pre);
    if (!pt || strcmp(pt, "ByteLevel"))
        return qd_err_set(QD_EUNSUPPORTED, "%s: BPE with pre_tokenizer '%s' (ByteLevel is supported)", t->path,
                          pt ? pt : "none");
    if (cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(pre, "use_regex")))
        return qd_err_set(QD_EUNSUPPORTED, "%s: ByteLevel without its regex is not supported", t->path);
    return load_merges(t, cJSON_GetObjectItemCaseSensitive(model, "merges"),
                       cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pre, "add_prefix_space")));
}

/* one normalizer of a unigram pipeline */
static int unigram_normalizer(qd_tokenizer *t, const cJSON *nz, qd_tok_unigram_opts *o, unsigned char **cm)
{
    const char *ty = type_of(nz);
    if (!ty) return QD_OK;
    if (!strcmp(ty, "Sequence")) {
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(nz, "normalizers"))
        {
            int rc = unigram_normalizer(t, e, o, cm);
            if (rc) return rc;
        }
        return QD_OK;
    }
    if (!strcmp(ty, "Precompiled")) {
        const char *b64 = str(nz, "precompiled_charsmap");
        if (!b64) return QD_OK;
        free(*cm);
        *cm = qd_xmalloc(strlen(b64) + 4);
        o->charsmap_len = base64(b64, *cm);
        o->charsmap = *cm;
        return QD_OK;
    }
    if (!strcmp(ty, "Strip")) {
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(nz, "strip_left")))
            return qd_err_set(QD_EUNSUPPORTED, "%s: Strip(left) is not supported", t->path);
        o->strip_right = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(nz, "strip_right"));
        return QD_OK;
    }
    if (!strcmp(ty, "Replace")) {
        const char *re = str(cJSON_GetObjectItemCaseSensitive(nz, "pattern"), "Regex"), *to = str(nz, "content");
        if (!re || strcmp(re, " {2,}") || !to || strlen(to) > 8)
            return qd_err_set(QD_EUNSUPPORTED, "%s: Replace other than ' {2,}' is not supported", t->path);
        o->collapse_spaces = 1;
        o->collapse_to = to;
        return QD_OK;
    }
    return qd_err_set(QD_EUNSUPPORTED, "%s: unigram with normalizer '%s' is not supported", t->path, ty);
}

static int load_unigram(qd_tokenizer *t, const cJSON *root, const cJSON *model)
{
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    int32_t n = cJSON_GetArraySize(vocab);
    const char **pieces = qd_xcalloc((size_t)(n > 0 ? n : 1), sizeof *pieces);
    double *scores = qd_xcalloc((size_t)(n > 0 ? n : 1), sizeof *scores);
    int rc = QD_OK, i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab)
    {
        const cJSON *p = cJSON_GetArrayItem(e, 0), *s = cJSON_GetArrayItem(e, 1);
        if (!cJSON_IsString(p) || !cJSON_IsNumber(s)) {
            rc = qd_err_set(QD_EFORMAT, "%s: vocabulary entry %d is not [piece, score]", t->path, i);
            break;
        }
        pieces[i] = p->valuestring;
        scores[i++] = s->valuedouble;
    }
    if (!rc) rc = qd_tok_set_vocab(t, pieces, n);
    qd_tok_unigram_opts o = {.unk_id = -1};
    unsigned char *cm = NULL;
    const cJSON *uid = cJSON_GetObjectItemCaseSensitive(model, "unk_id");
    if (cJSON_IsNumber(uid)) o.unk_id = (int32_t)uid->valuedouble;
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "byte_fallback")))
        rc = rc ? rc : qd_err_set(QD_EUNSUPPORTED, "%s: unigram with byte_fallback is not supported", t->path);
    if (!rc) rc = unigram_normalizer(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), &o, &cm);
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const char *pt = type_of(pre);
    if (!rc && (!pt || strcmp(pt, "Metaspace")))
        rc = qd_err_set(QD_EUNSUPPORTED, "%s: unigram with pre_tokenizer '%s' (Metaspace is supported)", t->path,
                        pt ? pt : "none");
    if (!rc) {
        const char *rep = str(pre, "replacement"), *scheme = str(pre, "prepend_scheme");
        if (rep && strcmp(rep, "\xE2\x96\x81"))
            rc = qd_err_set(QD_EUNSUPPORTED, "%s: Metaspace replacement other than U+2581", t->path);
        else if (cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(pre, "split")))
            rc = qd_err_set(QD_EUNSUPPORTED, "%s: Metaspace without split", t->path);
        else if (scheme && strcmp(scheme, "always") && strcmp(scheme, "never"))
            rc = qd_err_set(QD_EUNSUPPORTED, "%s: Metaspace prepend_scheme '%s'", t->path, scheme);
        o.prepend = scheme ? !strcmp(scheme, "always")
                           : !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(pre, "add_prefix_space"));
    }
    if (!rc) rc = qd_tok_unigram_new(t, scores, &o);
    t->sp.unk = o.unk_id;
    free(cm);
    free(pieces);
    free(scores);
    return rc;
}

int qd_tok_load_json(const char *path, qd_tokenizer **out)
{
    *out = NULL;
    char *buf;
    size_t len;
    int rc = qd_tok_read_file(path, &buf, &len);
    if (rc) return rc;
    qd_tokenizer *t = qd_tok_new(path);
    const size_t pl = strlen(path);
    if (pl >= 10 && !strcmp(path + pl - 10, "vocab.json")) {
        /* RoBERTa / GPT-2: vocab.json + merges.txt beside it; <s> A </s>, pairs </s></s> */
        cJSON *map = cJSON_ParseWithLength(buf, len);
        free(buf);
        rc = cJSON_IsObject(map) ? vocab_map(t, map) : qd_err_set(QD_EFORMAT, "%s: not a JSON object", path);
        cJSON_Delete(map);
        char mpath[4400];
        snprintf(mpath, sizeof mpath, "%.*smerges.txt", (int)(pl - 10), path);
        char *mb = NULL;
        size_t ml = 0;
        if (!rc) rc = qd_tok_read_file(mpath, &mb, &ml);
        if (!rc) {
            cJSON *arr = cJSON_CreateArray();
            for (char *line = mb, *nl; line && *line; line = nl ? nl + 1 : NULL) {
                nl = strchr(line, '\n');
                if (nl) *nl = 0;
                size_t l = strlen(line);
                if (l && line[l - 1] == '\r') line[--l] = 0;
                if (!l || !strncmp(line, "#version", 8)) continue;
                cJSON_AddItemToArray(arr, cJSON_CreateString(line));
            }
            rc = load_merges(t, arr, 0);
            cJSON_Delete(arr);
        }
        free(mb);
        if (!rc) {
            find_specials(t, NULL);
            t->sp.cls = qd_tok_lookup(t, "<s>", 3);
            t->sp.sep = qd_tok_lookup(t, "</s>", 4);
            t->pair_sep2 = 1;
            t->type_b = 0;
        }
    } else {
        cJSON *root = cJSON_ParseWithLength(buf, len);
        free(buf);
        const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
        const char *mt = type_of(model);
        if (!cJSON_IsObject(root) || !mt)
            rc = qd_err_set(QD_EFORMAT, "%s: not a tokenizer.json (no model type)", path);
        else if (!strcmp(mt, "WordPiece"))
            rc = load_wordpiece(t, root, model);
        else if (!strcmp(mt, "BPE"))
            rc = load_bpe(t, root, model);
        else if (!strcmp(mt, "Unigram"))
            rc = load_unigram(t, root, model);
        else
            rc = qd_err_set(QD_EUNSUPPORTED, "%s: tokenizer model '%s' is not supported (WordPiece, BPE, Unigram)",
                            path, mt);
        if (!rc) rc = post_processor(t, root);
        if (!rc) {
            find_specials(t, root);
            const cJSON *pad =
                cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "padding"), "pad_id");
            if (cJSON_IsNumber(pad)) t->sp.pad = (int32_t)pad->valuedouble;
        }
        cJSON_Delete(root);
    }
    if (!rc && t->sp.pad < 0) t->sp.pad = 0; /* padding is masked out; any id does */
    if (rc) {
        qd_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return QD_OK;
}
