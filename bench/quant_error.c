/* Quantization error of every 2-D weight of a real checkpoint, for bits 2..8 x granularity
 * {per tensor, per channel, group 32, group 64} x method {min-max RTN, MSE-searched RTN,
 * K-means codebook}. All affine schemes are asymmetric (the GPTQ reference's default).
 *
 *   bench_quant_error [--bits LIST] [out.csv [checkpoint]]
 *       out.csv     default quant_error.csv in the current directory
 *       checkpoint  default ../shared/models/vit-mnist-tiny/model.safetensors
 *       --bits      comma-separated widths, default 2,3,4,5,6,7,8
 *
 * stdout: one line per (bits, granularity, method) aggregated over all tensors:
 *   max_abs   largest |w - q| over all tensors
 *   mean_rel  mean over tensors of ||W - Q||_F / ||W||_F
 *   sqnr_db   10 log10(sum w^2 / sum (w - q)^2) over all tensors together
 * The CSV holds the same per tensor (tensor = name) and aggregated (tensor = ALL: mse over all
 * values, rel_fro = mean_rel). When gnuplot
 * is on PATH, <out>.svg plots SQNR against bit width (one line per granularity x method).
 *
 * K-means note: K = 2^bits centroids per codebook; a group of G <= K values is then exact
 * (G = 32 from 5 bits on), at the price of K floats per group, which the table does not count.
 * The peer of each row is min-max RTN at the same bits and granularity: se/minmax is the ratio
 * of the summed squared errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/kmeans.h"
#include "quant/quant.h"
#include "shard/safetensors.h"

enum { NGRAN = 4, NMETH = 3, MAXBITS = 8 };
static const char *k_gran[NGRAN] = {"tensor", "channel", "group32", "group64"};
static const char *k_meth[NMETH] = {"minmax", "mse", "kmeans"};

typedef struct {
    double se, sw, max_abs, rel_sum;
    int ntensors;
} agg;

/* Q = K-means of W with one codebook per tensor (gran 0), row (1) or group of G columns */
static int kmeans_deq(const float *W, int64_t R, int64_t C, int bits, int gran, int64_t G, float *Q)
{
    const int K = 1 << bits;
    qd_kmeans_opts ko = {bits, gran != 0, 30, 12345, QD_KMEANS_PLUSPLUS, 0};
    if (gran <= 1) {
        int64_t ncb = gran == 0 ? 1 : R;
        float *cb = malloc((size_t)(ncb * K) * sizeof(float));
        uint8_t *codes = malloc((size_t)(R * C));
        int rc = qd_kmeans_quantize(W, R, C, NULL, &ko, cb, codes);
        for (int64_t r = 0; r < R; r++)
            for (int64_t c = 0; c < C; c++) Q[r * C + c] = cb[(gran == 0 ? 0 : r * K) + codes[r * C + c]];
        free(cb);
        free(codes);
        return rc < 0 ? rc : 0;
    }
    float *buf = malloc((size_t)(R * G) * sizeof(float)), *cb = malloc((size_t)(R * K) * sizeof(float));
    uint8_t *codes = malloc((size_t)(R * G));
    int rc = 0;
    for (int64_t c0 = 0; c0 < C && rc >= 0; c0 += G) {
        int64_t n = QD_MIN(G, C - c0);
        for (int64_t r = 0; r < R; r++) memcpy(buf + r * n, W + r * C + c0, (size_t)n * sizeof(float));
        rc = qd_kmeans_quantize(buf, R, n, NULL, &ko, cb, codes);
        for (int64_t r = 0; r < R; r++)
            for (int64_t c = 0; c < n; c++) Q[r * C + c0 + c] = cb[r * K + codes[r * n + c]];
    }
    free(buf);
    free(cb);
    free(codes);
    return rc < 0 ? rc : 0;
}

static int affine_deq(const float *W, int64_t R, int64_t C, int bits, int gran, int mse, float *Q, uint8_t *codes)
{
    qd_qscheme s = {bits, 0,
                    gran == 0   ? QD_GRAN_TENSOR
                    : gran == 1 ? QD_GRAN_CHANNEL
                                : QD_GRAN_GROUP,
                    gran == 2 ? 32 : 64, 0};
    qd_clip_opts clip = mse ? QD_CLIP_MSE : QD_CLIP_MINMAX;
    qd_qparams p;
    int rc = qd_quant_params(W, R, C, &s, &clip, &p);
    if (rc) return rc;
    qd_rtn_quantize(W, &p, NULL, codes);
    qd_dequantize(codes, &p, NULL, Q);
    qd_qparams_free(&p);
    return 0;
}

static void plot(const char *csv_path, const agg (*a)[NGRAN][NMETH], const int *bits_on)
{
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
        printf("gnuplot not found: no plot (the CSV has the figures)\n");
        return;
    }
    char base[4096], dat[4200], gp[4200], svg[4200];
    snprintf(base, sizeof base, "%s", csv_path);
    char *dot = strrchr(base, '.');
    if (dot && strcmp(dot, ".csv") == 0) *dot = 0;
    snprintf(dat, sizeof dat, "%s.dat", base);
    snprintf(gp, sizeof gp, "%s.gp", base);
    snprintf(svg, sizeof svg, "%s.svg", base);
    FILE *f = fopen(dat, "w");
    if (!f) return;
    /* one data block per series (two blank lines between blocks = gnuplot "index") */
    for (int g = 0; g < NGRAN; g++)
        for (int m = 0; m < NMETH; m++) {
            fprintf(f, "# %s %s\n", k_gran[g], k_meth[m]);
            for (int b = 2; b <= MAXBITS; b++) {
                if (!bits_on[b]) continue;
                const agg *x = &a[b][g][m];
                double sq = x->se > 0 ? 10 * log10(x->sw / x->se) : 99.0; /* exact: drawn at the top */
                fprintf(f, "%d %.6f\n", b, sq);
            }
            fprintf(f, "\n\n");
        }
    fclose(f);
    f = fopen(gp, "w");
    if (!f) return;
    fprintf(f,
            "set terminal svg size 900,600\nset output '%s'\nset xlabel 'bits'\nset ylabel 'SQNR (dB)'\n"
            "set yrange [0:60]\nset key left top\nset grid\nset title 'quantization error, all 2-D weights (exact "
            "results off the top)'\nplot ",
            svg);
    int idx = 0;
    for (int g = 0; g < NGRAN; g++)
        for (int m = 0; m < NMETH; m++, idx++)
            fprintf(f, "%s'%s' index %d with linespoints lc %d dt %d title '%s %s'", idx ? ", " : "", dat, idx, g + 1,
                    m + 1, k_gran[g], k_meth[m]);
    fprintf(f, "\n");
    fclose(f);
    char cmd[8600];
    snprintf(cmd, sizeof cmd, "gnuplot '%s'", gp);
    if (system(cmd) == 0)
        printf("plot: %s\n", svg);
    else
        printf("gnuplot failed on %s\n", gp);
}

int main(int argc, char **argv)
{
    int bits_on[MAXBITS + 1] = {0};
    const char *pos[2] = {NULL, NULL};
    int npos = 0, anybits = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--bits") == 0 && i + 1 < argc) {
            for (char *t = argv[++i]; *t;) {
                long b = strtol(t, &t, 10);
                if (b >= 2 && b <= MAXBITS) bits_on[b] = anybits = 1;
                while (*t == ',') t++;
                if (*t && (*t < '0' || *t > '9')) break;
            }
        } else if (npos < 2)
            pos[npos++] = argv[i];
        else {
            fprintf(stderr, "usage: %s [--bits 2,3,4] [out.csv [checkpoint]]\n", argv[0]);
            return 2;
        }
    }
    if (!anybits)
        for (int b = 2; b <= MAXBITS; b++) bits_on[b] = 1;
    const char *csv_path = pos[0] ? pos[0] : "quant_error.csv";
    char ckpath[4096];
    if (pos[1])
        snprintf(ckpath, sizeof ckpath, "%s", pos[1]);
    else {
        const char *env = getenv("QD_MODELS_DIR");
        snprintf(ckpath, sizeof ckpath, "%s/vit-mnist-tiny/model.safetensors", env ? env : QD_BENCH_MODELS_DIR);
    }
    qd_checkpoint *ck;
    if (qd_ckpt_open(ckpath, &ck) != QD_OK) {
        fprintf(stderr, "%s\n", qd_errmsg());
        return 1;
    }
    FILE *csv = fopen(csv_path, "w");
    if (!csv) {
        fprintf(stderr, "cannot write %s\n", csv_path);
        qd_ckpt_close(ck);
        return 1;
    }
    fprintf(csv, "tensor,rows,cols,bits,granularity,method,max_abs,mse,rel_fro,sqnr_db\n");
    static agg a[MAXBITS + 1][NGRAN][NMETH];
    double t0 = qd_now();
    int64_t nel = 0, ntens = 0;
    for (int i = 0; i < qd_ckpt_num_tensors(ck); i++) {
        const qd_tensor_info *t = qd_ckpt_tensor(ck, i);
        if (t->ndim != 2 || !t->float_like) continue;
        int64_t R = t->shape[0], C = t->shape[1];
        const float *W;
        int owned;
        if (qd_ckpt_read_f32(ck, i, &W, &owned) != QD_OK) {
            fprintf(stderr, "%s\n", qd_errmsg());
            return 1;
        }
        ntens++;
        nel += R * C;
        float *Q = malloc((size_t)(R * C) * sizeof(float));
        uint8_t *codes = malloc((size_t)(R * C));
        for (int b = 2; b <= MAXBITS; b++) {
            if (!bits_on[b]) continue;
            for (int g = 0; g < NGRAN; g++)
                for (int m = 0; m < NMETH; m++) {
                    int rc = m == 2 ? kmeans_deq(W, R, C, b, g, g == 2 ? 32 : 64, Q)
                                    : affine_deq(W, R, C, b, g, m, Q, codes);
                    if (rc) {
                        fprintf(stderr, "%s: %s\n", t->name, qd_errmsg());
                        return 1;
                    }
                    qd_qerror e = qd_quant_error(W, Q, R * C);
                    fprintf(csv, "%s,%lld,%lld,%d,%s,%s,%.6e,%.6e,%.6e,%.4f\n", t->name, (long long)R, (long long)C, b,
                            k_gran[g], k_meth[m], e.max_abs, e.mse, e.rel_fro, e.sqnr_db);
                    agg *x = &a[b][g][m];
                    double sw = 0;
                    for (int64_t k = 0; k < R * C; k++) sw += (double)W[k] * W[k];
                    x->se += e.mse * (double)(R * C);
                    x->sw += sw;
                    x->max_abs = fmax(x->max_abs, e.max_abs);
                    x->rel_sum += e.rel_fro;
                    x->ntensors++;
                }
        }
        free(Q);
        free(codes);
        if (owned) free((void *)W);
    }
    double secs = qd_now() - t0;
    printf("%s: %lld 2-D weights, %lld values; asymmetric; %.1f s\n", ckpath, (long long)ntens, (long long)nel, secs);
    printf("bits granularity method  max_abs    mean_rel   sqnr_db  se/minmax\n");
    for (int b = 2; b <= MAXBITS; b++) {
        if (!bits_on[b]) continue;
        for (int g = 0; g < NGRAN; g++)
            for (int m = 0; m < NMETH; m++) {
                const agg *x = &a[b][g][m];
                double sq = x->se > 0 ? 10 * log10(x->sw / x->se) : INFINITY;
                double mean_rel = x->ntensors ? x->rel_sum / x->ntensors : 0;
                double ratio = a[b][g][0].se > 0 ? x->se / a[b][g][0].se : 1.0;
                printf("%4d %-11s %-7s %.3e  %.3e  %7.2f  %6.3f\n", b, k_gran[g], k_meth[m], x->max_abs, mean_rel, sq,
                       ratio);
                fprintf(csv, "ALL,0,0,%d,%s,%s,%.6e,%.6e,%.6e,%.4f\n", b, k_gran[g], k_meth[m], x->max_abs,
                        nel ? x->se / (double)nel : 0, mean_rel, sq);
            }
    }
    /* compact view: SQNR (dB) by bits */
    printf("\nSQNR dB        ");
    for (int b = 2; b <= MAXBITS; b++)
        if (bits_on[b]) printf("  %d-bit", b);
    printf("\n");
    for (int g = 0; g < NGRAN; g++)
        for (int m = 0; m < NMETH; m++) {
            printf("%-7s %-6s ", k_gran[g], k_meth[m]);
            for (int b = 2; b <= MAXBITS; b++) {
                if (!bits_on[b]) continue;
                const agg *x = &a[b][g][m];
                if (x->se > 0)
                    printf(" %6.2f", 10 * log10(x->sw / x->se));
                else
                    printf("  exact");
            }
            printf("\n");
        }
    fclose(csv);
    printf("csv: %s\n", csv_path);
    plot(csv_path, (const agg(*)[NGRAN][NMETH])a, bits_on);
    qd_ckpt_close(ck);
    return 0;
}
