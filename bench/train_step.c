/* bench/train_step.c — one training step of qdist's train/ (forward, cross-entropy, backward,
 * AdamW over every parameter) on one thread, timed; bench/train_step.sh runs it against the
 * same step in PyTorch (bench/train_step_torch.py) and prints the ratio.
 *
 *   bench_train_step vit|bert [--batch B] [--seq T] [--steps N] [--warmup W]
 *
 * vit: vit-mnist-tiny (its 10-class head) on the first B MNIST test images; bert:
 * all-MiniLM-L6-v2 ($QD_BERT_DIR or the fetch cache) with a new 2-class head on the first B SST-2
 * dev sentences, padded or cut to T tokens. Prints one JSON line: median and best seconds per
 * step, the last loss. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/image.h"
#include "model/tokenizer.h"
#include "train/train.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "vit") && strcmp(argv[1], "bert"))) {
        fprintf(stderr, "usage: %s vit|bert [--batch B] [--seq T] [--steps N] [--warmup W]\n", argv[0]);
        return 2;
    }
    int vit = !strcmp(argv[1], "vit"), B = vit ? 32 : 8, T = 64, steps = 10, warm = 2;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--batch"))
            B = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seq"))
            T = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps"))
            steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--warmup"))
            warm = atoi(argv[i + 1]);
    }
    char dir[4200], data[4200];
    const char *bd = getenv("QD_BERT_DIR"), *home = getenv("HOME");
    if (vit)
        snprintf(dir, sizeof dir, "%s/vit-mnist-tiny", QD_BENCH_MODELS_DIR);
    else if (bd)
        snprintf(dir, sizeof dir, "%s", bd);
    else
        snprintf(dir, sizeof dir, "%s/.cache/qdist/models/all-MiniLM-L6-v2", home ? home : ".");
    qd_model *m = NULL;
    qd_tnet *n = NULL;
    if (qd_model_load(dir, &m) || qd_tnet_load(m, vit ? 0 : 2, 0, &n)) {
        fprintf(stderr, "%s\n", qd_errmsg());
        return 1;
    }
    qd_batch b = {0};
    int32_t *labels = calloc((size_t)B, sizeof *labels), *ids = NULL, *mask = NULL;
    float *pix = NULL;
    b.B = B;
    if (vit) {
        snprintf(data, sizeof data, "%s/data/mnist/t10k-images-idx3-ubyte.gz", QD_BENCH_MODELS_DIR);
        qd_dataset *ds;
        qd_preprocess pp;
        if (qd_dataset_open(data, NULL, &ds) || qd_preprocess_for_model(m, &pp)) return 1;
        size_t item = qd_preprocess_numel(&pp);
        pix = malloc((size_t)B * item * sizeof *pix);
        for (int i = 0; i < B; i++) {
            qd_dataset_image(ds, i, &pp, pix + (size_t)i * item);
            labels[i] = qd_dataset_label(ds, i);
        }
        qd_dataset_free(ds);
        b.pixels = pix;
        b.T = qd_model_tokens(m, 0);
    } else {
        snprintf(data, sizeof data, "%s/data/sst2/dev.tsv", QD_BENCH_MODELS_DIR);
        char vp[4300];
        snprintf(vp, sizeof vp, "%s/vocab.txt", dir);
        qd_tokenizer *tok;
        FILE *f = fopen(data, "r");
        if (!f || qd_tokenizer_load(vp, QD_TOK_LOWER_AUTO, &tok)) return 1;
        ids = calloc((size_t)B * T, sizeof *ids);
        mask = calloc((size_t)B * T, sizeof *mask);
        char line[8192];
        fgets(line, sizeof line, f); /* header */
        for (int i = 0; i < B && fgets(line, sizeof line, f); i++) {
            char *tab = strchr(line, '\t');
            if (tab) *tab = 0;
            labels[i] = tab ? atoi(tab + 1) : 0;
            int got;
            qd_tokenizer_encode(tok, line, NULL, T, T, T, ids + (size_t)i * T, NULL, mask + (size_t)i * T, &got, NULL);
        }
        fclose(f);
        qd_tokenizer_free(tok);
        b.T = T;
        b.ids = ids;
        b.mask = mask;
    }
    const int L = n->c.num_labels;
    float *logits = malloc((size_t)B * L * sizeof *logits), *dl = malloc((size_t)B * L * sizeof *dl);
    int64_t nt = qd_tnet_trainable(n);
    float *gp = malloc((size_t)nt * sizeof *gp), *mo = calloc((size_t)nt, sizeof *mo),
          *ve = calloc((size_t)nt, sizeof *ve);
    qd_adamw opt;
    qd_adamw_default(&opt);
    opt.total_steps = steps + warm;
    opt.clip = 0;
    double *t = malloc((size_t)(steps + warm) * sizeof *t), loss = 0;
    for (int s = 0; s < steps + warm; s++) {
        double t0 = now();
        qd_tg_net_zero_grad(n);
        if (qd_tg_forward(n, &b, logits, NULL)) return 1;
        memset(dl, 0, (size_t)B * L * sizeof *dl);
        loss = qd_tg_loss_ce(logits, B, L, labels, 1.0 / B, dl, NULL);
        if (qd_tg_backward(n, &b, dl, NULL)) return 1;
        int64_t k = 0;
        for (int i = 0; i < n->np; i++)
            if (n->p[i].trainable) {
                memcpy(gp + k, n->g + n->p[i].off, (size_t)n->p[i].numel * sizeof *gp);
                k += n->p[i].numel;
            }
        qd_adamw_step(&opt, n, gp, mo, ve, s);
        t[s] = now() - t0;
    }
    qsort(t + warm, (size_t)steps, sizeof *t, cmpd);
    printf("{\"impl\":\"qdist\",\"model\":\"%s\",\"batch\":%d,\"tokens\":%d,\"params\":%lld,\"median_s\":%.6f,"
           "\"best_s\":%.6f,\"loss\":%.6f}\n",
           argv[1], B, b.T, (long long)n->n, t[warm + steps / 2], t[warm], loss);
    free(t);
    free(gp);
    free(mo);
    free(ve);
    free(logits);
    free(dl);
    free(labels);
    free(ids);
    free(mask);
    free(pix);
    qd_tg_net_free(n);
    qd_model_free(m);
    return 0;
}
