/* train/data.c — labelled training and evaluation items (train.h): images through model/image.h's
 * data sets and the model's preprocessing, sentences through its WordPiece tokenizer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/calib_data.h"
#include "model/image.h"
#include "model/tokenizer.h"
#include "train/train.h"

struct qd_tdata {
    int arch;
    int n, first, classes;
    /* images */
    qd_dataset *ds;
    qd_preprocess pp;
    int64_t item; /* floats per image */
    float *pix;
    int pix_cap;
    /* text: ids of item i at tok + off[i], len[i] tokens (with [CLS]/[SEP]) */
    int32_t *tok, *len;
    int64_t *off;
    int32_t *ids, *mask;
    int bcap;
    int32_t *labels;
    int32_t *blabels;
    int lcap;
};

void qd_tdata_free(qd_tdata *d)
{
    if (!d) return;
    qd_dataset_free(d->ds);
    free(d->pix);
    free(d->tok);
    free(d->len);
    free(d->off);
    free(d->ids);
    free(d->mask);
    free(d->labels);
    free(d->blabels);
    free(d);
}

static int open_images(qd_tdata *d, const qd_model *m, const char *path, int first, int count)
{
    int rc = qd_dataset_open(path, NULL, &d->ds);
    if (rc) return rc;
    if (!qd_dataset_has_labels(d->ds)) return qd_err_set(QD_EINVAL, "%s: the images have no labels", path);
    if ((rc = qd_preprocess_for_model(m, &d->pp))) return rc;
    d->item = (int64_t)qd_preprocess_numel(&d->pp);
    int total = qd_dataset_count(d->ds);
    if (first < 0 || first > total) return qd_err_set(QD_EINVAL, "%s: first item %d of %d", path, first, total);
    d->n = count > 0 ? QD_MIN(count, total - first) : total - first;
    d->first = first;
    d->labels = qd_xmalloc((size_t)(d->n > 0 ? d->n : 1) * sizeof *d->labels);
    for (int i = 0; i < d->n; i++) d->labels[i] = qd_dataset_label(d->ds, first + i);
    return QD_OK;
}

static int open_text(qd_tdata *d, const qd_model *m, const char *path, int first, int count, int seqlen)
{
    qd_text_samples ts;
    int rc = qd_text_samples_read(path, 0, &ts);
    if (rc) return rc;
    if (!ts.has_labels) {
        qd_text_samples_free(&ts);
        return qd_err_set(QD_EINVAL, "%s: no 'label' column", path);
    }
    char vp[4200];
    snprintf(vp, sizeof vp, "%s/vocab.txt", qd_model_dir(m));
    qd_tokenizer *tok = NULL;
    if ((rc = qd_tokenizer_load(vp, QD_TOK_LOWER_AUTO, &tok))) {
        qd_text_samples_free(&ts);
        return rc;
    }
    if (first < 0 || first > ts.n) {
        rc = qd_err_set(QD_EINVAL, "%s: first item %d of %d", path, first, ts.n);
        goto out;
    }
    d->n = count > 0 ? QD_MIN(count, ts.n - first) : ts.n - first;
    d->first = first;
    d->labels = qd_xmalloc((size_t)(d->n > 0 ? d->n : 1) * sizeof *d->labels);
    d->len = qd_xmalloc((size_t)(d->n > 0 ? d->n : 1) * sizeof *d->len);
    d->off = qd_xmalloc((size_t)(d->n + 1) * sizeof *d->off);
    d->tok = qd_xmalloc((size_t)(d->n > 0 ? d->n : 1) * (size_t)seqlen * sizeof *d->tok);
    int64_t o = 0;
    for (int i = 0; i < d->n; i++) {
        int k = first + i, got = 0;
        if (ts.labels[k] < 0) {
            rc = qd_err_set(QD_EINVAL, "%s: item %d has no label", path, k + 1);
            goto out;
        }
        d->labels[i] = ts.labels[k];
        if ((rc = qd_tokenizer_encode(tok, ts.text[k], NULL, seqlen, 0, seqlen, d->tok + o, NULL, NULL, &got, NULL)))
            goto out;
        d->off[i] = o;
        d->len[i] = got;
        o += got;
    }
    d->off[d->n] = o;
out:
    qd_tokenizer_free(tok);
    qd_text_samples_free(&ts);
    return rc;
}

int qd_tdata_open(const qd_model *m, const char *path, int first, int count, int seqlen, qd_tdata **out)
{
    *out = NULL;
    qd_tdata *d = qd_xcalloc(1, sizeof *d);
    d->arch = qd_model_cfg(m)->arch;
    int rc = d->arch == QD_ARCH_VIT ? open_images(d, m, path, first, count)
                                    : open_text(d, m, path, first, count, seqlen > 2 ? seqlen : 128);
    if (!rc && d->n <= 0) rc = qd_err_set(QD_EINVAL, "%s: no items in the range given", path);
    if (rc) {
        qd_tdata_free(d);
        return rc;
    }
    for (int i = 0; i < d->n; i++) {
        if (d->labels[i] < 0) {
            qd_tdata_free(d);
            return qd_err_set(QD_EINVAL, "%s: item %d has no label", path, first + i);
        }
        d->classes = QD_MAX(d->classes, d->labels[i] + 1);
    }
    *out = d;
    return QD_OK;
}

int qd_tdata_count(const qd_tdata *d) { return d->n; }
int qd_tdata_classes(const qd_tdata *d) { return d->classes; }

int qd_tdata_batch(qd_tdata *d, const int *idx, int n, qd_batch *b, int32_t **labels)
{
    memset(b, 0, sizeof *b);
    if (n > d->lcap) {
        free(d->blabels);
        d->blabels = qd_xmalloc((size_t)n * sizeof *d->blabels);
        d->lcap = n;
    }
    for (int i = 0; i < n; i++) d->blabels[i] = d->labels[idx[i]];
    *labels = d->blabels;
    b->B = n;
    if (d->arch == QD_ARCH_VIT) {
        if (n > d->pix_cap) {
            free(d->pix);
            d->pix = qd_xmalloc((size_t)n * (size_t)d->item * sizeof *d->pix);
            d->pix_cap = n;
        }
        for (int i = 0; i < n; i++) {
            int rc = qd_dataset_image(d->ds, d->first + idx[i], &d->pp, d->pix + (int64_t)i * d->item);
            if (rc) return rc;
        }
        b->pixels = d->pix;
        b->T = 0; /* set by the caller from the model */
        return QD_OK;
    }
    int T = 0;
    for (int i = 0; i < n; i++) T = QD_MAX(T, d->len[idx[i]]);
    if ((int64_t)n * T > d->bcap) {
        free(d->ids);
        free(d->mask);
        d->bcap = n * T;
        d->ids = qd_xmalloc((size_t)d->bcap * sizeof *d->ids);
        d->mask = qd_xmalloc((size_t)d->bcap * sizeof *d->mask);
    }
    for (int i = 0; i < n; i++) {
        const int32_t *src = d->tok + d->off[idx[i]];
        int len = d->len[idx[i]];
        for (int t = 0; t < T; t++) {
            d->ids[(int64_t)i * T + t] = t < len ? src[t] : 0;
            d->mask[(int64_t)i * T + t] = t < len;
        }
    }
    b->T = T;
    b->ids = d->ids;
    b->mask = d->mask;
    return QD_OK;
}
