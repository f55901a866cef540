/* The inference engine (runtime/engine.h) on a real checkpoint: runs the FP32 model or a model
 * file over the first N samples and writes the outputs (raw floats) for tests/runtime/engine.sh to
 * compare across kernel tables, thread counts and batch sizes (bit for bit); with --vs-model it
 * also checks the FP32 engine against the model's own forward pass (model/forward.c, validated
 * against transformers and the float64 ViT reference): the engine's float LayerNorm and its GEMM
 * order differ from OpenBLAS and double sums only by float rounding.
 *
 * It also checks that a forward pass allocates nothing once the engine has seen a batch of that size
 * (malloc and friends are wrapped by the linker: every allocation of qdist's code is counted while
 * the same batches run again).
 *
 *   test_engine MODEL_DIR QFILE|- DATA N BATCH THREADS OUTLIER OUT [--vs-model]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "model/calib_data.h"
#include "model/image.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "qd_test.h"
#include "runtime/engine.h"

/* ---- allocations of the code linked into this test (ld --wrap) --------------------------------- */
static volatile int g_counting;
static volatile long g_allocs;
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t a, size_t n);
void *__wrap_malloc(size_t n)
{
    if (g_counting) __atomic_add_fetch(&g_allocs, 1, __ATOMIC_RELAXED);
    return __real_malloc(n);
}
void *__wrap_calloc(size_t n, size_t m)
{
    if (g_counting) __atomic_add_fetch(&g_allocs, 1, __ATOMIC_RELAXED);
    return __real_calloc(n, m);
}
void *__wrap_realloc(void *p, size_t n)
{
    if (g_counting) __atomic_add_fetch(&g_allocs, 1, __ATOMIC_RELAXED);
    return __real_realloc(p, n);
}
void *__wrap_aligned_alloc(size_t a, size_t n)
{
    if (g_counting) __atomic_add_fetch(&g_allocs, 1, __ATOMIC_RELAXED);
    return __real_aligned_alloc(a, n);
}

int main(int argc, char **argv)
{
    if (argc < 9) {
        fprintf(stderr, "usage: test_engine MODEL QFILE|- DATA N BATCH THREADS OUTLIER OUT [--vs-model]\n");
        return 2;
    }
    const char *dir = argv[1], *qfile = strcmp(argv[2], "-") ? argv[2] : NULL, *data = argv[3], *outp = argv[8];
    const int n = atoi(argv[4]), batch = atoi(argv[5]), threads = atoi(argv[6]);
    const float outlier = (float)atof(argv[7]);
    const int vs_model = argc > 9 && !strcmp(argv[9], "--vs-model");
    qd_model *m = NULL;
    if (qd_model_load_flags(dir, qfile ? QD_MODEL_LAZY_LINEARS : 0, &m)) {
        fprintf(stderr, "%s\n", qd_errmsg());
        return 1;
    }
    const qd_model_config *c = qd_model_cfg(m);
    qd_qmodel *q = NULL;
    if (qfile && qd_qmodel_load(qfile, m, 0, 0, outlier, &q)) {
        fprintf(stderr, "%s\n", qd_errmsg());
        return 1;
    }
    qd_engine *e = NULL;
    const qd_engine_opts o = {.threads = threads, .outlier = outlier, .profile = 0};
    CHECK_EQ(qd_engine_create(m, q, &o, &e), 0);
    const int vit = c->arch == QD_ARCH_VIT, H = c->hidden, T = vit ? qd_model_tokens(m, 0) : 64;
    const int dim = vit ? c->num_labels : H;
    const qd_engine_output what = vit ? QD_ENGINE_LOGITS : QD_ENGINE_EMBEDDING;
    /* inputs of all n samples: token rows padded to 64, or images */
    int32_t *ids = calloc((size_t)n * T, 4), *tt = calloc((size_t)n * T, 4), *mask = calloc((size_t)n * T, 4);
    float *pix = NULL;
    size_t item = 0;
    if (vit) {
        qd_dataset *ds = NULL;
        qd_preprocess pp;
        CHECK_EQ(qd_dataset_open(data, NULL, &ds), 0);
        CHECK_EQ(qd_preprocess_for_model(m, &pp), 0);
        item = qd_preprocess_numel(&pp);
        pix = malloc((size_t)n * item * sizeof(float));
        for (int i = 0; i < n; i++) CHECK_EQ(qd_dataset_image(ds, i, &pp, pix + (size_t)i * item), 0);
        qd_dataset_free(ds);
    } else {
        char vocab[4200];
        snprintf(vocab, sizeof vocab, "%s/vocab.txt", dir);
        qd_tokenizer *tok = NULL;
        qd_text_samples ts;
        CHECK_EQ(qd_tokenizer_load(vocab, QD_TOK_LOWER_AUTO, &tok), 0);
        CHECK_EQ(qd_text_samples_read(data, n, &ts), 0);
        for (int i = 0; i < n; i++) {
            int len = 0;
            CHECK_EQ(qd_tokenizer_encode(tok, ts.text[i], NULL, T, T, T, ids + (size_t)i * T, tt + (size_t)i * T,
                                         mask + (size_t)i * T, &len, NULL),
                     0);
            free(ts.text[i]);
        }
        free(ts.text);
        free(ts.labels);
        qd_tokenizer_free(tok);
    }
    float *out = calloc((size_t)n * dim, sizeof(float));
    for (int f = 0; f < n; f += batch) {
        const int nb = QD_MIN(batch, n - f);
        qd_batch b = {.B = nb, .T = T};
        if (vit)
            b.pixels = pix + (size_t)f * item;
        else
            b.ids = ids + (size_t)f * T, b.type_ids = tt + (size_t)f * T, b.mask = mask + (size_t)f * T;
        CHECK_EQ(qd_engine_run(e, &b, what, out + (size_t)f * dim), 0);
    }
    /* the same batches again: no allocation in the forward path once its buffers have grown */
    g_counting = 1;
    for (int f = 0; f < n; f += batch) {
        const int nb = QD_MIN(batch, n - f);
        qd_batch b = {.B = nb, .T = T};
        if (vit)
            b.pixels = pix + (size_t)f * item;
        else
            b.ids = ids + (size_t)f * T, b.type_ids = tt + (size_t)f * T, b.mask = mask + (size_t)f * T;
        CHECK_EQ(qd_engine_run(e, &b, what, out + (size_t)f * dim), 0);
    }
    g_counting = 0;
    CHECK_MSG(g_allocs == 0, "%ld allocations in forward passes the engine had seen before", g_allocs);
    FILE *fo = fopen(outp, "wb");
    CHECK(fo != NULL);
    if (fo) {
        CHECK_EQ(fwrite(out, sizeof(float), (size_t)n * dim, fo), (size_t)n * dim);
        fclose(fo);
    }
    if (vs_model) { /* the model's forward pass, one item at a time */
        float *h = malloc((size_t)T * H * sizeof(float)), *ref = malloc((size_t)dim * sizeof(float));
        double worst = 0, scale = 0;
        for (int i = 0; i < n; i++) {
            qd_batch b = {.B = 1, .T = T};
            if (vit) {
                b.pixels = pix + (size_t)i * item;
                CHECK_EQ(qd_model_forward(m, &b, NULL, NULL, ref, NULL), 0);
            } else {
                b.ids = ids + (size_t)i * T, b.type_ids = tt + (size_t)i * T, b.mask = mask + (size_t)i * T;
                CHECK_EQ(qd_model_embed(m, &b, h), 0);
                for (int k = 0; k < c->layers; k++) CHECK_EQ(qd_model_block(m, k, &b, h, NULL), 0);
                qd_model_mean_pool(m, &b, h, ref);
            }
            for (int j = 0; j < dim; j++) {
                worst = fmax(worst, fabs((double)ref[j] - out[(size_t)i * dim + j]));
                scale = fmax(scale, fabs((double)ref[j]));
            }
        }
        printf("FP32 engine vs the model's forward pass: max |diff| %.3g (outputs up to %.3g), kernels %s\n", worst,
               scale, qd_kernels_isa());
        CHECK_MSG(worst <= 2e-5 * fmax(scale, 1.0), "engine vs model: %.3g", worst);
        free(h), free(ref);
    }
    qd_engine_free(e);
    qd_qmodel_free(q);
    qd_model_free(m);
    free(ids), free(tt), free(mask), free(pix), free(out);
    QD_TEST_MAIN_END();
}
