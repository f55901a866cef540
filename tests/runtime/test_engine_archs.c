/* The FP32 engine on every supported architecture: the tiny models of tests/reference/archs/
 * against transformers' float64 outputs (pooled output, embedding, logits), batched with the
 * reference's padding, with one and two threads, under the kernel table QD_KERNELS selects
 * (engine_archs runs it under every table this CPU has).
 * The engine runs every one in its own blocks (post-LN text incl. ELECTRA's and ALBERT's
 * projected embeddings, ALBERT's shared layers and MPNet's relative position buckets; pre-LN
 * vision: layer scales, registers, BEiT's relative position tables, CLIP's pre-LayerNorm and
 * projection, DeiT-style heads; the runtime path is checked) and must agree within 1e-4 relative at real tokens; the two threads'
 * outputs must equal the one thread's bits. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "model/model.h"
#include "qd_test.h"
#include "runtime/engine.h"
#include "shard/safetensors.h"

#define TOL 1e-4

static const char *models[] = {"bert-token",   "roberta-seq", "xlm-roberta-token", "distilbert-seq", "mpnet",
                               "electra-disc", "albert-seq",  "beit-cls",          "beit-shared",    "dinov2-cls",
                               "dinov2-reg",   "clip-vision", "clip-cls"};

static const void *raw(qd_checkpoint *ck, const char *name, qd_dtype dt, const qd_tensor_info **ti)
{
    const int i = qd_ckpt_find(ck, name);
    const void *p = NULL;
    if (i < 0) return NULL;
    *ti = qd_ckpt_tensor(ck, i);
    if ((*ti)->dtype != dt || qd_ckpt_raw(ck, i, &p)) return NULL;
    return p;
}

/* max |a - ref| over rows with a set mask, divided by max |ref| there */
static double rel_err(const float *a, const double *ref, int64_t rows, int64_t width, const int32_t *mask)
{
    double d = 0, s = 0;
    for (int64_t r = 0; r < rows; r++) {
        if (mask && !mask[r]) continue;
        for (int64_t i = 0; i < width; i++) {
            double y;
            memcpy(&y, ref + r * width + i, sizeof y); /* the file packs F64 tensors unaligned */
            d = fmax(d, fabs(a[r * width + i] - y));
            s = fmax(s, fabs(y));
        }
    }
    return s > 0 ? d / s : d;
}

static void check_output(const char *name, const qd_model *m, const qd_batch *b, qd_checkpoint *ck,
                         qd_engine_output what, const char *ref_name, const int32_t *mask)
{
    const qd_tensor_info *ti = NULL;
    const double *ref = raw(ck, ref_name, QD_DT_F64, &ti);
    if (!ref) return;
    const qd_model_config *c = qd_model_cfg(m);
    const int64_t per = what == QD_ENGINE_LOGITS      ? qd_model_logits_per_item(m, b->T)
                        : what == QD_ENGINE_EMBEDDING ? c->embedding_dim
                                                      : c->hidden;
    CHECK_EQ(ti->numel, (uint64_t)(b->B * per));
    float *out[2];
    for (int th = 1; th <= 2; th++) {
        qd_engine *e = NULL;
        const qd_engine_opts o = {.threads = th, .outlier = 0, .profile = 0};
        out[th - 1] = calloc((size_t)(b->B * per), sizeof(float));
        CHECK_EQ(qd_engine_create(m, NULL, &o, &e), QD_OK);
        /* every architecture in the engine's own blocks */
        if (e)
            CHECK_MSG(!strncmp(qd_engine_path(e), "engine forward", 14), "%s: runtime path '%s'", name,
                      qd_engine_path(e));
        if (e) CHECK_MSG(qd_engine_run(e, b, what, out[th - 1]) == QD_OK, "%s: %s", name, qd_errmsg());
        qd_engine_free(e);
    }
    const int token = what == QD_ENGINE_LOGITS && c->head == QD_HEAD_TOKEN;
    const double err =
        token ? rel_err(out[0], ref, (int64_t)b->B * b->T, c->num_labels, mask) : rel_err(out[0], ref, b->B, per, NULL);
    printf("%-18s %-20s %s: relative error %.2e\n", name, ref_name, qd_kernels_isa(), err);
    CHECK_MSG(err <= TOL, "%s: %s: relative error %.3g > %g", name, ref_name, err, TOL);
    CHECK_MSG(!memcmp(out[0], out[1], (size_t)(b->B * per) * sizeof(float)), "%s: %s: 2 threads differ from 1", name,
              ref_name);
    free(out[0]), free(out[1]);
}

static void check_model(const char *name)
{
    char dir[4200], path[4300];
    snprintf(dir, sizeof dir, "%s/tests/reference/archs/%s", QD_TEST_SOURCE_DIR, name);
    snprintf(path, sizeof path, "%s/reference.safetensors", dir);
    qd_checkpoint *ck = NULL;
    qd_model *m = NULL;
    if (qd_ckpt_open(path, &ck) || qd_model_load(dir, &m)) {
        QT_FAIL_("%s: %s", name, qd_errmsg());
        qd_ckpt_close(ck);
        return;
    }
    const qd_tensor_info *ti = NULL;
    const int32_t *ids = raw(ck, "input_ids", QD_DT_I32, &ti), *mask = NULL;
    qd_batch b = {0};
    float *pix = NULL;
    if (ids) {
        b = (qd_batch){.B = (int)ti->shape[0], .T = (int)ti->shape[1], .ids = ids};
        b.mask = mask = raw(ck, "attention_mask", QD_DT_I32, &ti);
    } else {
        const double *pv = raw(ck, "pixel_values", QD_DT_F64, &ti);
        CHECK(pv && ti->ndim == 4);
        if (!pv) goto done;
        pix = malloc(ti->numel * sizeof *pix);
        for (uint64_t i = 0; i < ti->numel; i++) {
            double v;
            memcpy(&v, pv + i, sizeof v);
            pix[i] = (float)v;
        }
        CHECK_EQ(qd_model_set_image_size(m, (int)ti->shape[2], (int)ti->shape[3]), QD_OK);
        b = (qd_batch){.B = (int)ti->shape[0], .T = qd_model_tokens(m, 0), .pixels = pix};
    }
    check_output(name, m, &b, ck, QD_ENGINE_POOLED, "pooler_output", NULL);
    check_output(name, m, &b, ck, QD_ENGINE_EMBEDDING, ids ? "sentence_embedding" : "image_embeds", NULL);
    check_output(name, m, &b, ck, QD_ENGINE_LOGITS, "logits", mask);
done:
    free(pix);
    qd_model_free(m);
    qd_ckpt_close(ck);
}

int main(void)
{
    printf("kernel table %s (QD_KERNELS=%s)\n", qd_kernels_isa(), getenv("QD_KERNELS") ? getenv("QD_KERNELS") : "");
    for (size_t i = 0; i < QD_ARRAY_LEN(models); i++) check_model(models[i]);
    QD_TEST_MAIN_END();
}
