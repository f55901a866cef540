/* model/calib_data.c — calibration samples (see calib_data.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/qd_file.h"
#include "model/calib_data.h"
#include "model/image.h"
#include "model/inputs.h"
#include "model/model_internal.h"
#include "model/tokenizer.h"

typedef enum { SRC_MEMORY_PIXELS, SRC_MEMORY_IDS, SRC_TEXT, SRC_IMAGES } src_kind;

struct qd_calib_data {
    const qd_model *m;
    src_kind kind;
    int n, T; /* samples, tokens per item */
    int64_t real_tokens;
    /* text and memory ids: [n, T] each */
    int32_t *ids, *type_ids, *mask;
    /* memory pixels [n, item] or images */
    float *pixels;
    int64_t item;   /* floats per image */
    qd_dataset *ds; /* images */
    qd_preprocess pp;
    int *idx;         /* images: dataset index of sample i */
    float *batch_pix; /* images: the current batch */
    int batch_cap;
    int32_t *len;                  /* text: real tokens of each sample */
    int32_t *bids, *btype, *bmask; /* text: the current batch, [n, longest] */
    int bcap;
};

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void qd_calib_select(int total, int k, uint64_t seed, int *idx)
{
    int *perm = qd_xmalloc((size_t)(total > 0 ? total : 1) * sizeof *perm);
    for (int i = 0; i < total; i++) perm[i] = i;
    if (k > 0 && k < total) {
        uint64_t s = seed;
        for (int i = total - 1; i > 0; i--) {
            /* unbiased bounded draw (rejection) */
            uint64_t bound = (uint64_t)i + 1, lim = UINT64_MAX - UINT64_MAX % bound, r;
            do r = splitmix64(&s);
            while (r >= lim);
            int j = (int)(r % bound), t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
    } else
        k = total;
    memcpy(idx, perm, (size_t)k * sizeof *idx);
    free(perm);
}

static qd_calib_data *new_data(const qd_model *m, src_kind kind)
{
    qd_calib_data *d = qd_xcalloc(1, sizeof *d);
    d->m = m;
    d->kind = kind;
    return d;
}

void qd_calib_data_free(qd_calib_data *d)
{
    if (!d) return;
    free(d->ids);
    free(d->type_ids);
    free(d->mask);
    free(d->pixels);
    free(d->idx);
    free(d->batch_pix);
    free(d->len);
    free(d->bids);
    free(d->btype);
    free(d->bmask);
    if (d->ds) qd_dataset_free(d->ds);
    free(d);
}

int qd_calib_data_count(const qd_calib_data *d) { return d->n; }
int qd_calib_data_tokens(const qd_calib_data *d) { return d->T; }
int qd_calib_data_real_tokens(const qd_calib_data *d) { return (int)d->real_tokens; }
const char *qd_calib_data_kind(const qd_calib_data *d)
{
    return d->kind == SRC_TEXT ? "text" : d->kind == SRC_IMAGES ? "images" : "memory";
}

int qd_calib_data_from_pixels(const qd_model *m, const float *pixels, int n, qd_calib_data **out)
{
    const qd_model_config *c = qd_model_cfg(m);
    if (c->arch != QD_ARCH_VIT) return qd_err_set(QD_EINVAL, "calibration: pixel samples need a ViT-family model");
    qd_calib_data *d = new_data(m, SRC_MEMORY_PIXELS);
    d->n = n;
    d->T = qd_model_tokens(m, 0);
    d->item = (int64_t)c->channels * c->image_h * c->image_w;
    d->pixels = qd_xmalloc((size_t)(n * d->item) * sizeof(float));
    memcpy(d->pixels, pixels, (size_t)(n * d->item) * sizeof(float));
    d->real_tokens = (int64_t)n * d->T;
    *out = d;
    return QD_OK;
}

int qd_calib_data_from_ids(const qd_model *m, const int32_t *ids, const int32_t *mask, int n, int T,
                           qd_calib_data **out)
{
    if (qd_model_cfg(m)->arch != QD_ARCH_BERT)
        return qd_err_set(QD_EINVAL, "calibration: token samples need a BERT-family model");
    qd_calib_data *d = new_data(m, SRC_MEMORY_IDS);
    d->n = n;
    d->T = T;
    size_t sz = (size_t)n * (size_t)T * sizeof(int32_t);
    d->ids = qd_xmalloc(sz);
    d->mask = qd_xmalloc(sz);
    d->type_ids = qd_xcalloc(1, sz);
    memcpy(d->ids, ids, sz);
    for (int64_t i = 0; i < (int64_t)n * T; i++) {
        d->mask[i] = mask ? mask[i] != 0 : 1;
        d->real_tokens += d->mask[i];
    }
    *out = d;
    return QD_OK;
}

/* ---- text --------------------------------------------------------------------------------- */

void qd_text_samples_free(qd_text_samples *t)
{
    for (int i = 0; i < t->n; i++) free(t->text[i]);
    free(t->text);
    free(t->labels);
    memset(t, 0, sizeof *t);
}

int qd_text_samples_read(const char *path, int limit, qd_text_samples *out)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "r");
    if (!f) return qd_err_set(errno == ENOENT ? QD_ENOENT : QD_EIO, "%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int tsv = qd_ends_with(path, ".tsv"), col = -1, lcol = -1, lineno = 0, ncap = 0, rc = QD_OK;
    while (rc == QD_OK && (limit <= 0 || out->n < limit) && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (lineno == 1 && !tsv && strchr(line, '\t')) tsv = 1;
        if (tsv && col < 0) { /* the header names the columns */
            int i = 0, sent = -1, text = -1;
            for (char *save = NULL, *tok = strtok_r(line, "\t", &save); tok; tok = strtok_r(NULL, "\t", &save), i++) {
                if (!strcmp(tok, "sentence"))
                    sent = i;
                else if (!strcmp(tok, "text"))
                    text = i;
                else if (!strcmp(tok, "label"))
                    lcol = i;
            }
            col = sent >= 0 ? sent : text >= 0 ? text : 0;
            continue;
        }
        char *fields[64] = {line};
        int nf = 1;
        for (char *p = line; tsv && nf < 64 && (p = strchr(p, '\t'));) {
            *p++ = 0;
            fields[nf++] = p;
        }
        if (tsv && (col >= nf || lcol >= nf)) {
            rc = qd_err_set(QD_EFORMAT, "%s:%d: the row has %d columns, the header more", path, lineno, nf);
            break;
        }
        const char *s = fields[tsv ? col : 0];
        int blank = 1;
        for (const char *p = s; *p && blank; p++) blank = *p == ' ' || *p == '\t';
        if (blank) continue;
        int label = -1;
        if (lcol >= 0) {
            char *end;
            long v = strtol(fields[lcol], &end, 10);
            if (!*fields[lcol] || *end || v < 0 || v > 1000000) {
                rc = qd_err_set(QD_EFORMAT, "%s:%d: label '%s' is not a class index", path, lineno, fields[lcol]);
                break;
            }
            label = (int)v;
        }
        if (out->n == ncap) {
            ncap = ncap ? 2 * ncap : 256;
            out->text = realloc(out->text, (size_t)ncap * sizeof *out->text);
            out->labels = realloc(out->labels, (size_t)ncap * sizeof *out->labels);
            QD_ASSERT(out->text && out->labels);
        }
        out->text[out->n] = qd_xstrdup(s);
        out->labels[out->n++] = label;
    }
    int err = ferror(f);
    fclose(f);
    free(line);
    if (!rc && err) rc = qd_err_set(QD_EIO, "%s: read error", path);
    if (!rc && out->n == 0) rc = qd_err_set(QD_EFORMAT, "%s: no samples (empty file, or only a header)", path);
    if (rc)
        qd_text_samples_free(out);
    else
        out->has_labels = lcol >= 0;
    return rc;
}

static int open_text(qd_calib_data *d, const char *path, int nsamples, int seqlen, uint64_t seed)
{
    const qd_model *m = d->m;
    if (seqlen < 3) return qd_err_set(QD_EINVAL, "calibration: --seqlen %d is too short (at least 3)", seqlen);
    if (seqlen > qd_model_cfg(m)->max_position)
        return qd_err_set(QD_EINVAL, "calibration: --seqlen %d exceeds the model's max_position_embeddings %d", seqlen,
                          qd_model_cfg(m)->max_position);
    const char *vocab = m->dir; /* the model directory's tokenizer (tokenizer.json, vocab.txt, ...) */
    qd_tokenizer *tok = NULL;
    int rc = qd_tokenizer_load(vocab, QD_TOK_LOWER_AUTO, &tok);
    if (rc) return qd_err_wrap(rc, "calibration needs the model's tokenizer: ");
    if (qd_tokenizer_vocab_size(tok) > qd_model_cfg(m)->vocab_size) {
        qd_tokenizer_free(tok);
        return qd_err_set(QD_EMISMATCH, "%s: %d tokens, more than the model's vocab_size %d", vocab,
                          qd_tokenizer_vocab_size(tok), qd_model_cfg(m)->vocab_size);
    }
    qd_text_samples L;
    if ((rc = qd_text_samples_read(path, 0, &L))) {
        qd_tokenizer_free(tok);
        return rc;
    }
    int k = nsamples > 0 && nsamples < L.n ? nsamples : L.n;
    int *idx = qd_xmalloc((size_t)k * sizeof *idx);
    qd_calib_select(L.n, k, seed, idx);
    d->n = k;
    d->T = seqlen;
    size_t sz = (size_t)k * (size_t)seqlen * sizeof(int32_t);
    d->ids = qd_xmalloc(sz);
    d->type_ids = qd_xmalloc(sz);
    d->mask = qd_xmalloc(sz);
    for (int i = 0; i < k && !rc; i++) {
        int n = 0;
        int64_t o = (int64_t)i * seqlen;
        rc = qd_tokenizer_encode(tok, L.text[idx[i]], NULL, seqlen, seqlen, seqlen, d->ids + o, d->type_ids + o,
                                 d->mask + o, &n, NULL);
        if (rc) rc = qd_err_wrap(rc, "%s: sample %d: ", path, idx[i] + 1);
        for (int t = 0; t < seqlen; t++) d->real_tokens += d->mask[o + t] != 0;
    }
    free(idx);
    qd_text_samples_free(&L);
    qd_tokenizer_free(tok);
    if (rc) return rc;
    /* longest first (stable): micro-batches of similar lengths need little padding. The
     * statistics are sums, so the order changes nothing but the work. */
    d->len = qd_xmalloc((size_t)k * sizeof *d->len);
    int *ord = qd_xmalloc((size_t)k * sizeof *ord), *tmp = qd_xmalloc((size_t)k * sizeof *tmp);
    for (int i = 0; i < k; i++) {
        int n = 0;
        for (int t = 0; t < seqlen; t++) n += d->mask[(int64_t)i * seqlen + t] != 0;
        d->len[i] = n;
        ord[i] = i;
    }
    for (int w = 1; w < k; w *= 2) /* stable merge sort by descending length */
        for (int lo = 0; lo < k; lo += 2 * w) {
            int mid = QD_MIN(lo + w, k), hi = QD_MIN(lo + 2 * w, k), a = lo, b = mid, o = lo;
            while (a < mid && b < hi) tmp[o++] = d->len[ord[b]] > d->len[ord[a]] ? ord[b++] : ord[a++];
            while (a < mid) tmp[o++] = ord[a++];
            while (b < hi) tmp[o++] = ord[b++];
            memcpy(ord + lo, tmp + lo, (size_t)(hi - lo) * sizeof *ord);
        }
    int32_t *arr[3] = {d->ids, d->type_ids, d->mask};
    int32_t *cpy = qd_xmalloc(sz);
    for (int a = 0; a < 3; a++) {
        for (int i = 0; i < k; i++)
            memcpy(cpy + (int64_t)i * seqlen, arr[a] + (int64_t)ord[i] * seqlen, (size_t)seqlen * sizeof *cpy);
        memcpy(arr[a], cpy, sz);
    }
    for (int i = 0; i < k; i++) tmp[i] = d->len[ord[i]];
    for (int i = 0; i < k; i++) d->len[i] = tmp[i];
    free(cpy);
    free(ord);
    free(tmp);
    return QD_OK;
}

/* ---- images ------------------------------------------------------------------------------- */

static int open_images(qd_calib_data *d, const char *path, int nsamples, uint64_t seed)
{
    const qd_model_config *c = qd_model_cfg(d->m);
    int rc = qd_dataset_open(path, NULL, &d->ds);
    if (rc) return rc;
    qd_preprocess pp;
    if ((rc = qd_preprocess_for_model(d->m, &pp))) return rc;
    int total = qd_dataset_count(d->ds);
    if (total <= 0) return qd_err_set(QD_EFORMAT, "%s: no images", path);
    int k = nsamples > 0 && nsamples < total ? nsamples : total;
    d->idx = qd_xmalloc((size_t)k * sizeof *d->idx);
    qd_calib_select(total, k, seed, d->idx);
    d->n = k;
    d->T = qd_model_tokens(d->m, 0);
    d->item = (int64_t)c->channels * c->image_h * c->image_w;
    d->real_tokens = (int64_t)k * d->T;
    d->pp = pp;
    return QD_OK;
}

/* Pre-tokenized or preprocessed samples from a safetensors file (model/inputs.h); the seeded
 * selection picks nsamples of them. */
static int open_inputs(const qd_model *m, const char *path, int nsamples, uint64_t seed, qd_calib_data **out)
{
    qd_inputs in;
    int rc = qd_inputs_read(path, &in);
    if (rc) return rc;
    if ((rc = qd_inputs_check(&in, m, path))) {
        qd_inputs_free(&in);
        return rc;
    }
    int k = nsamples > 0 && nsamples < in.n ? nsamples : in.n;
    int *idx = qd_xmalloc((size_t)k * sizeof *idx);
    qd_calib_select(in.n, k, seed, idx);
    if (in.ids) {
        int32_t *ids = qd_xmalloc((size_t)k * in.T * sizeof *ids), *mk = qd_xmalloc((size_t)k * in.T * sizeof *mk);
        for (int i = 0; i < k; i++)
            for (int t = 0; t < in.T; t++) {
                ids[(int64_t)i * in.T + t] = in.ids[(int64_t)idx[i] * in.T + t];
                mk[(int64_t)i * in.T + t] = in.mask ? in.mask[(int64_t)idx[i] * in.T + t] : 1;
            }
        rc = qd_calib_data_from_ids(m, ids, mk, k, in.T, out);
        free(ids);
        free(mk);
    } else {
        const int64_t item = (int64_t)in.C * in.H * in.W;
        float *px = qd_xmalloc((size_t)(k * item) * sizeof *px);
        for (int i = 0; i < k; i++) memcpy(px + i * item, in.pixels + idx[i] * item, (size_t)item * sizeof *px);
        rc = qd_calib_data_from_pixels(m, px, k, out);
        free(px);
    }
    free(idx);
    qd_inputs_free(&in);
    return rc;
}

int qd_calib_data_open(const qd_model *m, const char *path, int nsamples, int seqlen, uint64_t seed,
                       qd_calib_data **out)
{
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0) return qd_err_set(QD_ENOENT, "calibration data %s: %s", path, strerror(errno));
    qd_calib_data *d;
    int rc;
    if (qd_ends_with(path, ".safetensors")) return open_inputs(m, path, nsamples, seed, out);
    if (qd_model_cfg(m)->arch == QD_ARCH_BERT) {
        if (S_ISDIR(st.st_mode))
            return qd_err_set(QD_EINVAL,
                              "calibration data %s: a BERT-family model needs a text or TSV file, not a folder", path);
        d = new_data(m, SRC_TEXT);
        rc = open_text(d, path, nsamples, seqlen, seed);
    } else {
        d = new_data(m, SRC_IMAGES);
        rc = open_images(d, path, nsamples, seed);
    }
    if (rc) {
        qd_calib_data_free(d);
        return rc;
    }
    *out = d;
    return QD_OK;
}

int qd_calib_data_batch(qd_calib_data *d, int first, int n, qd_batch *b)
{
    QD_ASSERT(first >= 0 && n > 0 && first + n <= d->n);
    memset(b, 0, sizeof *b);
    b->B = n;
    b->T = d->T;
    switch (d->kind) {
    case SRC_TEXT: {
        /* padded to the longest sample of the batch only: a fixed global property of the batch,
         * so every rank computes the same thing */
        int T = 1;
        for (int i = 0; i < n; i++) T = QD_MAX(T, d->len[first + i]);
        if (n * T > d->bcap) {
            free(d->bids);
            free(d->btype);
            free(d->bmask);
            d->bcap = n * T;
            d->bids = qd_xmalloc((size_t)d->bcap * sizeof(int32_t));
            d->btype = qd_xmalloc((size_t)d->bcap * sizeof(int32_t));
            d->bmask = qd_xmalloc((size_t)d->bcap * sizeof(int32_t));
        }
        for (int i = 0; i < n; i++) {
            int64_t src = (int64_t)(first + i) * d->T, dst = (int64_t)i * T;
            memcpy(d->bids + dst, d->ids + src, (size_t)T * sizeof(int32_t));
            memcpy(d->btype + dst, d->type_ids + src, (size_t)T * sizeof(int32_t));
            memcpy(d->bmask + dst, d->mask + src, (size_t)T * sizeof(int32_t));
        }
        b->T = T;
        b->ids = d->bids;
        b->type_ids = d->btype;
        b->mask = d->bmask;
        return QD_OK;
    }
    case SRC_MEMORY_IDS:
        b->ids = d->ids + (int64_t)first * d->T;
        b->type_ids = d->type_ids + (int64_t)first * d->T;
        b->mask = d->mask + (int64_t)first * d->T;
        return QD_OK;
    case SRC_MEMORY_PIXELS: b->pixels = d->pixels + (int64_t)first * d->item; return QD_OK;
    case SRC_IMAGES:
        if (n > d->batch_cap) {
            free(d->batch_pix);
            d->batch_pix = malloc((size_t)(n * d->item) * sizeof(float));
            if (!d->batch_pix) {
                d->batch_cap = 0;
                return qd_err_set(QD_ENOMEM, "calibration: out of memory for images");
            }
            d->batch_cap = n;
        }
        for (int i = 0; i < n; i++) {
            int rc = qd_dataset_image(d->ds, d->idx[first + i], &d->pp, d->batch_pix + (int64_t)i * d->item);
            if (rc) return rc;
        }
        b->pixels = d->batch_pix;
        return QD_OK;
    }
    return QD_EINVAL;
}
