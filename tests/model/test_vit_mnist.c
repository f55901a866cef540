/* The ViT forward pass on the whole MNIST test set (10,000 images read from the gzip'd IDX file,
 * preprocessed from preprocessor_config.json): top-1 = 97.21 % (9721 correct), the figure of the
 * original training log and of the independent float64 forward pass. */
#include <stdlib.h>
#include <string.h>

#include "model/image.h"
#include "model/model.h"
#include "qd_test.h"

int main(void)
{
    qd_model *m = NULL;
    if (qd_model_load(QD_TEST_MODELS_DIR "/vit-mnist-tiny", &m)) {
        fprintf(stderr, "%s\n", qd_errmsg());
        return 1;
    }
    qd_dataset *ds = NULL;
    if (qd_dataset_open(QD_TEST_MODELS_DIR "/data/mnist/t10k-images-idx3-ubyte.gz", NULL, &ds)) {
        fprintf(stderr, "%s\n", qd_errmsg());
        return 1;
    }
    qd_preprocess pp;
    CHECK_EQ(qd_preprocess_for_model(m, &pp), 0);
    const int N = qd_dataset_count(ds), B = 250, T = qd_model_tokens(m, 0), L = qd_model_cfg(m)->num_labels;
    CHECK_EQ(N, 10000);
    CHECK(qd_dataset_has_labels(ds));
    size_t item = qd_preprocess_numel(&pp);
    float *pix = malloc((size_t)B * item * sizeof(float)), *logits = malloc((size_t)B * L * sizeof(float));
    int correct = 0;
    double t0 = qd_now();
    for (int s = 0; s < N; s += B) {
        int n = N - s < B ? N - s : B;
        for (int i = 0; i < n; i++) CHECK_EQ(qd_dataset_image(ds, s + i, &pp, pix + (size_t)i * item), 0);
        qd_batch b = {.B = n, .T = T, .pixels = pix};
        CHECK_EQ(qd_model_forward(m, &b, NULL, NULL, logits, NULL), 0);
        for (int i = 0; i < n; i++) {
            int best = 0;
            for (int j = 1; j < L; j++)
                if (logits[i * L + j] > logits[i * L + best]) best = j;
            correct += best == qd_dataset_label(ds, s + i);
        }
    }
    printf("MNIST test top-1: %d/%d = %.2f %% (%.2f s, %.0f images/s)\n", correct, N, 100.0 * correct / N,
           qd_now() - t0, N / (qd_now() - t0));
    CHECK_EQ(correct, 9721);
    free(pix);
    free(logits);
    qd_dataset_free(ds);
    qd_model_free(m);
    return qd_test_failures_;
}
