/* qdist sweep: one grid of quantization schemes on one model — methods x weight bits x
 * granularities x activation modes — each cell quantized by all ranks of the same mpirun (the
 * quantize command, in process) and evaluated on the same data (the eval command, in process, its
 * JSON kept per cell). Cells already evaluated are skipped (resume); a failing cell is recorded
 * and the grid goes on. At the end rank 0 writes sweep.csv and sweep.json of every cell and draws
 * the plots with gnuplot (SVG and PNG): accuracy vs bits per method, accuracy vs file size with
 * the Pareto front, granularities side by side, and the per-layer weight error as a heatmap. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "collective/collective.h"
#include "collective/h5model.h"
#include "common/qd_common.h"
#include "common/qd_file.h"
#include "coordinator/cli.h"
#include "coordinator/sweep_layers.h"
#include "shard/safetensors.h"

static const char *sweep_help =
    "Usage: mpirun -n N qdist sweep --model DIR --data PATH --out DIR [options]\n"
    "\n"
    "Quantizes and evaluates a grid of schemes: every method x bits x granularity (one model file\n"
    "per cell, written by all ranks), each file evaluated on the same samples with every activation\n"
    "mode. Progress is printed per cell; cells whose result exists in DIR/cells are skipped, so an\n"
    "interrupted sweep continues where it stopped; a cell that fails is recorded with its error\n"
    "and the grid goes on. Writes DIR/sweep.csv and DIR/sweep.json (every cell) and, with gnuplot,\n"
    "DIR/plots/*.svg and *.png: accuracy (or embedding cosine) vs bits per method, accuracy vs\n"
    "file size with the Pareto front, granularities side by side, per-layer output error heatmap.\n"
    "\n"
    "  --model DIR             the checkpoint\n"
    "  --data PATH             evaluation data (as for 'qdist eval')\n"
    "  --out DIR               where cells, tables and plots go\n"
    "  --methods LIST          default rtn,gptq,adaround,kmeans\n"
    "  --bits LIST             default 2,3,4,8\n"
    "  --granularity LIST      tensor, channel, gN (groups of N inputs); default tensor,channel,g32\n"
    "  --sparsity LIST         0 (dense), a fraction (0.5) or N:M (2:4): pruned cells, each with\n"
    "                          every --prune method; default 0\n"
    "  --prune LIST            magnitude, wanda, sparsegpt (quantize --prune); default magnitude\n"
    "  --floats LIST           reference cells of the Linear weights rounded to fp16 and/or bf16\n"
    "                          (sized as 2 bytes a parameter); default fp16,bf16; none: no such cells\n"
    "  --error-samples N       samples of --data whose FP32 Linear inputs score each cell's per-layer\n"
    "                          output error ||X (W' - W)^T|| / ||X W^T + b|| (default 16; 0: off)\n"
    "  --acts LIST             8: the integer kernels eval picks (int8 activations for 8-bit\n"
    "                          symmetric per-channel weights, 4-bit x int8, else float);\n"
    "                          16: 4-bit weights with float activations (--w4-float-act);\n"
    "                          f: every Linear dequantized in float (--fake-quant); default 8\n"
    "  --asym                  asymmetric RTN/GPTQ/AdaRound (zeros stored; default symmetric)\n"
    "  --calib PATH            calibration data for gptq, adaround (and kmeans --weighted)\n"
    "  --nsamples N            calibration samples (default 128)\n"
    "  --iters N               AdaRound steps per layer (default 10000)\n"
    "  --weighted              K-means weighted by the Hessian diagonal (needs --calib)\n"
    "  --n N                   evaluation samples (default: all)   --batch B  (default 32)\n"
    "  --no-plots              tables only\n"
    "  --plot-cosine           plot the cosine to FP32 (logits or embeddings) even where top-1\n"
    "                          accuracy exists (small models whose accuracy barely moves)\n"
    "  -h, --help              this text\n";

#define MAXL 16

typedef struct {
    char v[MAXL][32];
    int n;
} list;

static int split(const char *s, list *l)
{
    l->n = 0;
    const char *p = s;
    while (*p && l->n < MAXL) {
        size_t k = strcspn(p, ",");
        if (k == 0 || k >= sizeof l->v[0]) return -1;
        snprintf(l->v[l->n++], sizeof l->v[0], "%.*s", (int)k, p);
        p += k + (p[k] == ',');
    }
    return l->n > 0 ? 0 : -1;
}

typedef struct {
    const char *model, *data, *out, *calib;
    list methods, bits, grans, acts, sparsity, prune, floats;
    long error_samples;
    int asym, weighted, no_plots;
    int plot_cosine; /* plots show the cosine to FP32 even where accuracy exists */
    long nsamples, iters, n, batch;
} sweep_opts;

/* argv of a sub-command, from a NULL-terminated list of strings (copied: getopt permutes) */
typedef struct {
    char *a[48];
    int n;
} args;

static void arg(args *x, const char *s)
{
    QD_ASSERT(x->n < 47);
    x->a[x->n++] = strdup(s);
    x->a[x->n] = NULL;
}

static void args_free(args *x)
{
    for (int i = 0; i < x->n; i++) free(x->a[i]);
    x->n = 0;
}

/* quantize one cell's file: all ranks */
static int quantize_cell(const sweep_opts *o, const char *method, const char *bits, const char *gran, const char *sp,
                         const char *prune, const char *path, MPI_Comm comm)
{
    args x = {0};
    arg(&x, "quantize");
    arg(&x, "--model");
    arg(&x, o->model);
    arg(&x, "--out");
    arg(&x, path);
    if (strcmp(sp, "0")) {
        arg(&x, "--sparsity");
        arg(&x, sp);
        arg(&x, "--prune");
        arg(&x, prune);
    }
    arg(&x, "--method");
    arg(&x, method);
    arg(&x, "--bits");
    arg(&x, bits);
    if (gran[0] == 'g') {
        arg(&x, "--group-size");
        arg(&x, gran + 1);
    } else {
        arg(&x, "--granularity");
        arg(&x, gran);
    }
    if (o->asym && strcmp(method, "kmeans")) arg(&x, "--asym");
    int calibrated = (strcmp(method, "rtn") && (strcmp(method, "kmeans") || o->weighted)) ||
                     (strcmp(sp, "0") && strcmp(prune, "magnitude"));
    if (calibrated && o->calib) {
        char nb[32];
        arg(&x, "--calib");
        arg(&x, o->calib);
        snprintf(nb, sizeof nb, "%ld", o->nsamples);
        arg(&x, "--nsamples");
        arg(&x, nb);
    }
    if (!strcmp(method, "adaround")) {
        char nb[32];
        snprintf(nb, sizeof nb, "%ld", o->iters);
        arg(&x, "--iters");
        arg(&x, nb);
    }
    if (!strcmp(method, "kmeans") && o->weighted) arg(&x, "--weighted");
    arg(&x, "--overwrite");
    arg(&x, "--quiet");
    int rc = qd_cmd_quantize(x.n, x.a, comm);
    args_free(&x);
    return rc;
}

static void round_fp16(float *v, int64_t n, void *u)
{
    (void)u;
    for (int64_t i = 0; i < n; i++) v[i] = qd_f16_to_f32(qd_f32_to_f16(v[i]));
}

static void round_bf16(float *v, int64_t n, void *u)
{
    (void)u;
    for (int64_t i = 0; i < n; i++) v[i] = qd_bf16_to_f32(qd_f32_to_bf16(v[i]));
}

/* A reference cell of a float format: every tensor kept float (a config skipping all), then the
 * file's float values rounded to fp16 or bf16 by rank 0; eval runs the file's Linears as they are. */
static int float_cell(const sweep_opts *o, const char *fmt, const char *path, MPI_Comm comm)
{
    char cfg[1600];
    snprintf(cfg, sizeof cfg, "%s.config.json", path);
    int rc = QD_OK;
    if (qd_cli_is_root(comm)) {
        FILE *f = fopen(cfg, "w");
        rc = f && fputs("{\"overrides\": [{\"pattern\": \"*\", \"skip\": true}]}\n", f) >= 0
                 ? QD_OK
                 : qd_err_set(QD_EIO, "%s", cfg);
        if (f) fclose(f);
    }
    qd_coll_bcast(comm, &rc, sizeof rc, 0);
    if (rc) return QD_EXIT_FAIL;
    args x = {0};
    const char *a[] = {"quantize", "--model", o->model, "--out", path, "--config", cfg, "--overwrite", "--quiet"};
    for (size_t i = 0; i < QD_ARRAY_LEN(a); i++) arg(&x, a[i]);
    int st = qd_cmd_quantize(x.n, x.a, comm);
    args_free(&x);
    if (st == QD_EXIT_OK && qd_cli_is_root(comm))
        rc = qd_h5m_map_floats(path, strcmp(fmt, "fp16") ? round_bf16 : round_fp16, NULL);
    qd_coll_bcast(comm, &rc, sizeof rc, 0);
    return st != QD_EXIT_OK ? st : rc ? QD_EXIT_FAIL : QD_EXIT_OK;
}

/* eval of one cell with its JSON written to json_path (rank 0's stdout, redirected) */
static int eval_cell(const sweep_opts *o, const char *h5, const char *act, const char *json_path, MPI_Comm comm)
{
    args x = {0};
    char nb[32];
    arg(&x, "eval");
    arg(&x, "--model");
    arg(&x, o->model);
    arg(&x, "--quantized");
    arg(&x, h5);
    arg(&x, "--data");
    arg(&x, o->data);
    arg(&x, "--json");
    snprintf(nb, sizeof nb, "%ld", o->batch);
    arg(&x, "--batch");
    arg(&x, nb);
    if (o->n > 0) {
        snprintf(nb, sizeof nb, "%ld", o->n);
        arg(&x, "--n");
        arg(&x, nb);
    }
    if (!strcmp(act, "16")) arg(&x, "--w4-float-act");
    if (!strcmp(act, "f")) arg(&x, "--fake-quant");
    int saved = -1, fd = -1;
    if (qd_cli_is_root(comm)) {
        fflush(stdout);
        saved = dup(1);
        fd = open(json_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) dup2(fd, 1);
    }
    int rc = qd_cmd_eval(x.n, x.a, comm);
    if (saved >= 0) {
        fflush(stdout);
        dup2(saved, 1);
        close(saved);
    }
    if (fd >= 0) close(fd);
    args_free(&x);
    return rc;
}

/* the per-tensor relative weight error of a cell's file, as {name: rel_fro_error} */
static cJSON *layer_errors(const char *h5)
{
    qd_h5m *f = NULL;
    cJSON *o = cJSON_CreateObject();
    if (qd_h5m_open(h5, NULL, &f) != QD_OK) return o;
    for (int i = 0; i < qd_h5m_num_tensors(f); i++) {
        const qd_h5m_record *r = qd_h5m_tensor(f, i);
        if (r->kind == QD_H5M_QUANTIZED && r->has_metrics) cJSON_AddNumberToObject(o, r->name, r->metrics[0]);
    }
    qd_h5m_close(f);
    return o;
}

static cJSON *read_json(const char *path)
{
    size_t n = 0;
    char *txt = NULL;
    if (access(path, R_OK) != 0 || qd_read_file(path, (size_t)64 << 20, "sweep cell", &txt, &n) != QD_OK) return NULL;
    cJSON *j = cJSON_Parse(txt);
    free(txt);
    return j;
}

static int write_json(const char *path, const cJSON *j)
{
    char *txt = cJSON_Print(j);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    int ok = f && txt && fputs(txt, f) >= 0;
    if (f) ok = fclose(f) == 0 && ok;
    free(txt);
    return ok && rename(tmp, path) == 0 ? QD_OK : qd_err_set(QD_EIO, "%s: %s", path, strerror(errno));
}

static double num(const cJSON *o, const char *a, const char *b)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, a);
    if (b) x = cJSON_GetObjectItemCaseSensitive(x, b);
    return cJSON_IsNumber(x) ? x->valuedouble : NAN;
}

static double latency(const cJSON *ev, const char *side)
{
    return num(cJSON_GetObjectItemCaseSensitive(ev, side), "latency_ms", "mean");
}

static const char *str(const cJSON *o, const char *a)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, a);
    return cJSON_IsString(x) ? x->valuestring : "";
}

/* the scheme of a cell */
typedef struct {
    const char *m, *b, *g, *a, *sp, *prune;
} scheme;

/* One cell's record: its scheme, status and, when evaluated, the figures (and the per-layer
 * output errors when inputs were collected). */
static cJSON *cell_record(const char *id, const scheme *k, const char *status, const char *err, const cJSON *ev,
                          const char *h5, const qd_sweep_inputs *xin)
{
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "cell", id);
    cJSON_AddStringToObject(c, "method", k->m);
    cJSON_AddNumberToObject(c, "bits", atoi(k->b));
    cJSON_AddStringToObject(c, "granularity", k->g);
    cJSON_AddStringToObject(c, "acts", k->a);
    cJSON_AddStringToObject(c, "sparsity", k->sp);
    cJSON_AddStringToObject(c, "prune", strcmp(k->sp, "0") ? k->prune : "");
    cJSON_AddStringToObject(c, "status", status);
    if (err) cJSON_AddStringToObject(c, "error", err);
    if (ev) {
        cJSON_AddItemToObject(c, "eval", cJSON_Duplicate(ev, 1));
        cJSON_AddItemToObject(c, "layers", layer_errors(h5));
        if (xin) cJSON_AddItemToObject(c, "out_errors", qd_sweep_output_errors(xin, h5));
    }
    return c;
}

/* ---- tables and plots (rank 0) ------------------------------------------------------------- */

static double quality(const cJSON *ev, int side_q, int *is_acc)
{
    const char *side = side_q ? "quantized" : "fp32";
    double a = num(ev, side, "accuracy");
    if (isnan(a)) a = num(ev, side, "probe_accuracy");
    *is_acc = !isnan(a);
    return a;
}

static void write_csv(const char *out, const cJSON *cells)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/sweep.csv", out);
    FILE *f = fopen(path, "w");
    if (!f) return;
    fprintf(f,
            "cell,method,bits,granularity,acts,sparsity,prune,status,accuracy,fp32_accuracy,cosine_mean,cosine_min,"
            "agreement,file_bytes,fp32_file_bytes,compression,tensor_bytes,latency_ms,fp32_latency_ms,mean_rel_error,"
            "max_rel_error,mean_out_error,max_out_error,error\n");
    const cJSON *c;
    cJSON_ArrayForEach(c, cells)
    {
        const cJSON *ev = cJSON_GetObjectItemCaseSensitive(c, "eval");
        int acc;
        double q = ev ? quality(ev, 1, &acc) : NAN, q32 = ev ? quality(ev, 0, &acc) : NAN;
        double fb = num(ev, "quantized", "file_bytes"), f32 = num(ev, "fp32", "file_bytes");
        double se = 0, mx = 0, so = 0, mo = 0;
        int nl = 0, no = 0;
        const cJSON *l;
        cJSON_ArrayForEach(l, cJSON_GetObjectItemCaseSensitive(c, "layers"))
        {
            se += l->valuedouble;
            mx = l->valuedouble > mx ? l->valuedouble : mx;
            nl++;
        }
        cJSON_ArrayForEach(l, cJSON_GetObjectItemCaseSensitive(c, "out_errors"))
        {
            so += l->valuedouble;
            mo = l->valuedouble > mo ? l->valuedouble : mo;
            no++;
        }
        char err[256];
        snprintf(err, sizeof err, "%s", str(c, "error"));
        for (char *p = err; *p; p++)
            if (*p == ',' || *p == '\n' || *p == '"') *p = ' ';
        const char *sp = str(c, "sparsity");
        fprintf(
            f,
            "%s,%s,%d,%s,%s,%s,%s,%s,%.6g,%.6g,%.6g,%.6g,%.6g,%.0f,%.0f,%.6g,%.0f,%.5g,%.5g,%.6g,%.6g,%.6g,%.6g,%s\n",
            str(c, "cell"), str(c, "method"), (int)num(c, "bits", NULL), str(c, "granularity"), str(c, "acts"),
            sp[0] ? sp : "0", str(c, "prune"), str(c, "status"), q, q32, num(ev, "cosine", "mean"),
            num(ev, "cosine", "min"), num(ev, "agreement", NULL), fb, f32, fb > 0 ? f32 / fb : NAN,
            num(ev, "quantized", "tensor_bytes"), latency(ev, "quantized"), latency(ev, "fp32"), nl ? se / nl : NAN,
            nl ? mx : NAN, no ? so / no : NAN, no ? mo : NAN, err);
    }
    fclose(f);
}

/* The heatmap's figure: the per-layer output error when any cell has it, else the weight error;
 * *ncols: the tensors of its first row (rows of other lengths are left out). */
static const char *heat_key(const cJSON *cells, const sweep_opts *o, int *ncols)
{
    const char *keys[] = {"out_errors", "layers"};
    for (int k = 0; k < 2; k++) {
        const cJSON *c;
        cJSON_ArrayForEach(c, cells)
        {
            const cJSON *L = cJSON_GetObjectItemCaseSensitive(c, keys[k]);
            if (L && cJSON_GetArraySize(L) && (!strcmp(str(c, "acts"), o->acts.v[0]) || !strcmp(str(c, "acts"), "-"))) {
                *ncols = cJSON_GetArraySize(L);
                return keys[k];
            }
        }
    }
    *ncols = 0;
    return "layers";
}

/* a cell's row of the heatmap, or NULL */
static const cJSON *heat_row(const cJSON *c, const sweep_opts *o, const char *key, int ncols)
{
    const cJSON *L = cJSON_GetObjectItemCaseSensitive(c, key);
    const char *a = str(c, "acts");
    return L && ncols > 0 && cJSON_GetArraySize(L) == ncols && (!strcmp(a, o->acts.v[0]) || !strcmp(a, "-")) ? L : NULL;
}

/* gnuplot data files: per method the quality vs bits (one block per granularity), all evaluated
 * cells' (file MB, quality), the Pareto front (no cell smaller and better), and the per-layer
 * error matrix (rows: cells; columns: tensors in file order). */
static int write_plot_data(const char *out, const cJSON *cells, const sweep_opts *o, int *is_acc)
{
    char path[4200];
    int any = 0;
    *is_acc = 1;
    for (int gi = 0; gi < o->grans.n; gi++)
        for (int mi = 0; mi < o->methods.n; mi++) {
            snprintf(path, sizeof path, "%s/plots/bits_%s_%s.dat", out, o->grans.v[gi], o->methods.v[mi]);
            FILE *f = fopen(path, "w");
            if (!f) continue;
            const cJSON *c;
            cJSON_ArrayForEach(c, cells)
            {
                const cJSON *ev = cJSON_GetObjectItemCaseSensitive(c, "eval");
                const char *sp = str(c, "sparsity");
                if (!ev || strcmp(str(c, "method"), o->methods.v[mi]) ||
                    strcmp(str(c, "granularity"), o->grans.v[gi]) || strcmp(str(c, "acts"), o->acts.v[0]) ||
                    (sp[0] && strcmp(sp, "0")))
                    continue;
                int acc;
                double q = quality(ev, 1, &acc);
                if (!acc || o->plot_cosine) q = num(ev, "cosine", "mean");
                *is_acc &= acc && !o->plot_cosine;
                fprintf(f, "%g %.6g\n", num(c, "bits", NULL), q);
                any = 1;
            }
            fclose(f);
        }
    /* size vs quality, and its Pareto front */
    snprintf(path, sizeof path, "%s/plots/size.dat", out);
    FILE *f = fopen(path, "w");
    int n = cJSON_GetArraySize(cells), np = 0;
    double *mb = calloc((size_t)n + 1, sizeof(double)), *qq = calloc((size_t)n + 1, sizeof(double));
    int *ok = calloc((size_t)n + 1, sizeof(int));
    for (int i = 0; i < n; i++) {
        const cJSON *c = cJSON_GetArrayItem(cells, i), *ev = cJSON_GetObjectItemCaseSensitive(c, "eval");
        if (!ev) continue;
        int acc;
        qq[i] = quality(ev, 1, &acc);
        if (!acc || o->plot_cosine) qq[i] = num(ev, "cosine", "mean");
        mb[i] = num(ev, "quantized", "file_bytes") / 1e6;
        ok[i] = !isnan(qq[i]) && !isnan(mb[i]);
        if (f && ok[i]) fprintf(f, "%.6g %.6g %s\n", mb[i], qq[i], str(c, "cell"));
    }
    if (f) fclose(f);
    snprintf(path, sizeof path, "%s/plots/pareto.dat", out);
    f = fopen(path, "w");
    for (int pass = 0; f && pass < 1; pass++) {
        /* front in order of size: a cell is on it when no other is at most as large and better */
        int *on = calloc((size_t)n + 1, sizeof(int));
        for (int i = 0; i < n; i++) {
            if (!ok[i]) continue;
            on[i] = 1;
            for (int j = 0; j < n && on[i]; j++)
                if (j != i && ok[j] && mb[j] <= mb[i] && qq[j] >= qq[i] && (mb[j] < mb[i] || qq[j] > qq[i])) on[i] = 0;
        }
        for (int k = 0; k < n; k++) { /* print sorted by size (selection: n is small) */
            int best = -1;
            for (int i = 0; i < n; i++)
                if (on[i] == 1 && (best < 0 || mb[i] < mb[best])) best = i;
            if (best < 0) break;
            fprintf(f, "%.6g %.6g %s\n", mb[best], qq[best], str(cJSON_GetArrayItem(cells, best), "cell"));
            on[best] = 2;
            np++;
        }
        free(on);
    }
    if (f) fclose(f);
    free(mb);
    free(qq);
    free(ok);
    /* heatmap: log10 of the relative output (or weight) error, cells x tensors */
    int ncols;
    const char *key = heat_key(cells, o, &ncols);
    snprintf(path, sizeof path, "%s/plots/layers.dat", out);
    f = fopen(path, "w");
    char lpath[4200];
    snprintf(lpath, sizeof lpath, "%s/plots/layers_cells.txt", out);
    FILE *lc = fopen(lpath, "w");
    int row = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cells)
    {
        const cJSON *L = heat_row(c, o, key, ncols);
        if (!f || !lc || !L) continue;
        const cJSON *l;
        int col = 0;
        cJSON_ArrayForEach(l, L) fprintf(f, "%s%.4f", col++ ? " " : "", log10(fmax(l->valuedouble, 1e-6)));
        fprintf(f, "\n");
        fprintf(lc, "%d %s\n", row++, str(c, "cell"));
    }
    if (f) fclose(f);
    if (lc) fclose(lc);
    return any || np ? row : -1;
}

static const char *k_gp =
    "set datafile missing 'nan'\n"
    "set grid\n"
    "set key outside right\n"
    "set xtics 1\n"
    "do for [t in 'svg pngcairo'] {\n"
    "  ext = (t eq 'svg') ? 'svg' : 'png'\n"
    "  if (t eq 'svg') { set terminal svg size 1000,560 dynamic } else { set terminal pngcairo size 1000,560 }\n"
    "  set output dir.'/bits.'.ext\n"
    "  set title model.': '.ylab.' vs weight bits ('.gran0.', activations '.act0.')'\n"
    "  set xlabel 'weight bits'; set ylabel ylab\n"
    "  plot for [m in methods] dir.'/bits_'.gran0.'_'.m.'.dat' using 1:2 with linespoints title m\n"
    "  set output dir.'/size.'.ext\n"
    "  set title model.': '.ylab.' vs file size (Pareto front in black)'\n"
    "  set xlabel 'file size (MB)'; set logscale x; set xtics auto\n"
    "  plot dir.'/size.dat' using 1:2 with points pt 7 ps 0.6 title 'cells', "
    "dir.'/pareto.dat' using 1:2 with linespoints lc rgb 'black' lw 2 title 'Pareto front', "
    "dir.'/pareto.dat' using 1:2:3 with labels offset 0,0.7 font ',7' notitle\n"
    "  unset logscale x; set xtics 1\n"
    "  set output dir.'/granularity.'.ext\n"
    "  set key inside bottom right\n"
    "  set multiplot layout 1, words(grans) title model.': '.ylab.' vs bits, one panel per granularity'\n"
    "  set xlabel 'weight bits'\n"
    "  do for [g in grans] { set title g; plot for [m in methods] dir.'/bits_'.g.'_'.m.'.dat' using 1:2 with "
    "linespoints title m }\n"
    "  unset multiplot\n"
    "  set key outside right\n"
    "  if (nrows > 0) {\n"
    "    set output dir.'/layers.'.ext\n"
    "    set title model.': log10 relative '.heat.' error per Linear (rows: cells)'\n"
    "    set xlabel 'quantized tensor (file order)'; set ylabel ''; set xtics auto\n"
    "    unset key; set ytics () font ',7'\n"
    "    do for [i=0:nrows-1] { set ytics add (word(cellnames, i+1) i) }\n"
    "    set palette defined (0 'white', 1 'yellow', 2 'red', 3 'black')\n"
    "    set autoscale xfix; set autoscale yfix\n"
    "    plot dir.'/layers.dat' matrix with image\n"
    "    set autoscale x; set autoscale y\n"
    "    set key outside right; set ytics auto\n"
    "  }\n"
    "}\n";

static void draw(const char *out, const cJSON *cells, const sweep_opts *o)
{
    int is_acc;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/plots", out);
    mkdir(dir, 0755);
    int rows = write_plot_data(out, cells, o, &is_acc);
    if (rows < 0) return;
    if (system("gnuplot -e 'exit' >/dev/null 2>&1") != 0) {
        printf("sweep: gnuplot not found: tables only (Debian: apt-get install gnuplot-nox)\n");
        return;
    }
    char names[8192] = "";
    const cJSON *c;
    int ncols;
    const char *key = heat_key(cells, o, &ncols);
    cJSON_ArrayForEach(c, cells)
    {
        if (heat_row(c, o, key, ncols) && strlen(names) + strlen(str(c, "cell")) + 2 < sizeof names)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", names[0] ? " " : "", str(c, "cell"));
    }
    char ms[600] = "", gs[600] = "";
    for (int i = 0; i < o->methods.n; i++)
        snprintf(ms + strlen(ms), sizeof ms - strlen(ms), "%s%s", i ? " " : "", o->methods.v[i]);
    for (int i = 0; i < o->grans.n; i++)
        snprintf(gs + strlen(gs), sizeof gs - strlen(gs), "%s%s", i ? " " : "", o->grans.v[i]);
    const char *base = strrchr(o->model, '/') && strrchr(o->model, '/')[1] ? strrchr(o->model, '/') + 1 : o->model;
    FILE *p = popen("gnuplot", "w");
    if (!p) return;
    fprintf(p, "dir = '%s'; model = '%s'; methods = '%s'; grans = '%s'; gran0 = '%s'; act0 = '%s'\n", dir, base, ms, gs,
            o->grans.v[o->grans.n > 1 ? 1 : 0], o->acts.v[0]);
    fprintf(p, "heat = '%s'\n", strcmp(key, "out_errors") ? "weight" : "output (on FP32 inputs)");
    fprintf(p, "ylab = '%s'; nrows = %d; cellnames = '%s'\n",
            is_acc           ? "top-1 accuracy"
            : o->plot_cosine ? "cosine to FP32 (logits or embeddings)"
                             : "embedding cosine to FP32",
            rows, names);
    fputs(k_gp, p);
    int st = pclose(p);
    printf("sweep: plots %s in %s (bits, size, granularity, layers; .svg and .png)\n", st == 0 ? "drawn" : "FAILED",
           dir);
}

/* ---- the command ------------------------------------------------------------------------- */

static int parse(int argc, char **argv, sweep_opts *o, MPI_Comm comm, int *rc)
{
    enum {
        O_MODEL = 256,
        O_DATA,
        O_OUT,
        O_METHODS,
        O_BITS,
        O_GRAN,
        O_ACTS,
        O_ASYM,
        O_CALIB,
        O_NS,
        O_ITERS,
        O_W,
        O_N,
        O_BATCH,
        O_NOPLOT,
        O_PCOS,
        O_SPARSITY,
        O_PRUNE,
        O_FLOATS,
        O_ERRS
    };
    static const struct option lo[] = {{"model", 1, 0, O_MODEL},
                                       {"data", 1, 0, O_DATA},
                                       {"out", 1, 0, O_OUT},
                                       {"methods", 1, 0, O_METHODS},
                                       {"bits", 1, 0, O_BITS},
                                       {"granularity", 1, 0, O_GRAN},
                                       {"acts", 1, 0, O_ACTS},
                                       {"asym", 0, 0, O_ASYM},
                                       {"calib", 1, 0, O_CALIB},
                                       {"nsamples", 1, 0, O_NS},
                                       {"iters", 1, 0, O_ITERS},
                                       {"weighted", 0, 0, O_W},
                                       {"n", 1, 0, O_N},
                                       {"batch", 1, 0, O_BATCH},
                                       {"no-plots", 0, 0, O_NOPLOT},
                                       {"plot-cosine", 0, 0, O_PCOS},
                                       {"sparsity", 1, 0, O_SPARSITY},
                                       {"prune", 1, 0, O_PRUNE},
                                       {"floats", 1, 0, O_FLOATS},
                                       {"error-samples", 1, 0, O_ERRS},
                                       {"help", 0, 0, 'h'},
                                       {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    split("rtn,gptq,adaround,kmeans", &o->methods);
    split("2,3,4,8", &o->bits);
    split("tensor,channel,g32", &o->grans);
    split("8", &o->acts);
    split("0", &o->sparsity);
    split("magnitude", &o->prune);
    split("fp16,bf16", &o->floats);
    o->error_samples = 16;
    o->nsamples = 128;
    o->iters = 10000;
    o->batch = 32;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        list *l = NULL;
        long *num_out = NULL;
        switch (c) {
        case 'h':
            if (qd_cli_is_root(comm)) fputs(sweep_help, stdout);
            *rc = QD_EXIT_OK;
            return -1;
        case O_MODEL: o->model = optarg; break;
        case O_DATA: o->data = optarg; break;
        case O_OUT: o->out = optarg; break;
        case O_CALIB: o->calib = optarg; break;
        case O_ASYM: o->asym = 1; break;
        case O_W: o->weighted = 1; break;
        case O_NOPLOT: o->no_plots = 1; break;
        case O_PCOS: o->plot_cosine = 1; break;
        case O_METHODS: l = &o->methods; break;
        case O_BITS: l = &o->bits; break;
        case O_GRAN: l = &o->grans; break;
        case O_ACTS: l = &o->acts; break;
        case O_SPARSITY: l = &o->sparsity; break;
        case O_PRUNE: l = &o->prune; break;
        case O_FLOATS: l = &o->floats; break;
        case O_ERRS:
            o->error_samples = strtol(optarg, NULL, 10);
            if (!(o->error_samples >= 0)) {
                *rc = qd_cli_usage_error(comm, "sweep", "--error-samples: a count >= 0, got '%s'", optarg);
                return -1;
            }
            break;
        case O_NS: num_out = &o->nsamples; break;
        case O_ITERS: num_out = &o->iters; break;
        case O_N: num_out = &o->n; break;
        case O_BATCH: num_out = &o->batch; break;
        default:
            *rc = qd_cli_usage_error(comm, "sweep", "unknown or incomplete option '%s'", argv[optind - 1]);
            return -1;
        }
        if (l && split(optarg, l)) {
            *rc = qd_cli_usage_error(comm, "sweep", "a comma-separated list is needed, got '%s'", optarg);
            return -1;
        }
        if (num_out) {
            char *end;
            *num_out = strtol(optarg, &end, 10);
            if (!*optarg || *end || *num_out < 1) {
                *rc = qd_cli_usage_error(comm, "sweep", "a positive integer is needed, got '%s'", optarg);
                return -1;
            }
        }
    }
    if (!o->model || !o->data || !o->out) {
        *rc = qd_cli_usage_error(comm, "sweep", "--model, --data and --out are required");
        return -1;
    }
    if (strlen(o->out) > 1000) {
        *rc = qd_cli_usage_error(comm, "sweep", "--out: a path of at most 1000 characters");
        return -1;
    }
    for (int i = 0; i < o->grans.n; i++) {
        const char *g = o->grans.v[i];
        if (strcmp(g, "tensor") && strcmp(g, "channel") && !(g[0] == 'g' && atoi(g + 1) > 0)) {
            *rc = qd_cli_usage_error(comm, "sweep", "--granularity: tensor, channel or gN, got '%s'", g);
            return -1;
        }
    }
    if (o->floats.n == 1 && !strcmp(o->floats.v[0], "none")) o->floats.n = 0;
    for (int i = 0; i < o->floats.n; i++)
        if (strcmp(o->floats.v[i], "fp16") && strcmp(o->floats.v[i], "bf16")) {
            *rc = qd_cli_usage_error(comm, "sweep", "--floats: fp16, bf16 or none, got '%s'", o->floats.v[i]);
            return -1;
        }
    for (int i = 0; i < o->prune.n; i++)
        if (strcmp(o->prune.v[i], "magnitude") && strcmp(o->prune.v[i], "wanda") &&
            strcmp(o->prune.v[i], "sparsegpt")) {
            *rc = qd_cli_usage_error(comm, "sweep", "--prune: magnitude, wanda or sparsegpt, got '%s'", o->prune.v[i]);
            return -1;
        }
    for (int i = 0; i < o->acts.n; i++)
        if (strcmp(o->acts.v[i], "8") && strcmp(o->acts.v[i], "16") && strcmp(o->acts.v[i], "f")) {
            *rc = qd_cli_usage_error(comm, "sweep", "--acts: 8, 16 or f, got '%s'", o->acts.v[i]);
            return -1;
        }
    return 0;
}

/* the state of one sweep over its grid */
typedef struct {
    const sweep_opts *o;
    MPI_Comm comm;
    int root, total, k, nfail, nskip, ndone;
    cJSON *cells;
    const qd_sweep_inputs *xin;
    double t0;
    char dir[1200];
} sweep_run;

/* why a cell is not run, or NULL */
static const char *skip_reason(const scheme *c)
{
    if (!strcmp(c->g, "tensor") && strcmp(c->m, "rtn")) return "the method works per channel or group";
    if (!strcmp(c->m, "kmeans") && c->g[0] == 'g' && (1L << atoi(c->b)) > atol(c->g + 1))
        return "more levels per codebook than weights per group";
    if (!strcmp(c->m, "kmeans") && strcmp(c->sp, "0")) return "kmeans does not prune";
    return NULL;
}

/* a cell evaluated before: its record, with the output errors added when it predates them */
static int resumed(sweep_run *S, const char *id, const char *jpath, const char *h5)
{
    cJSON *prev = S->root ? read_json(jpath) : NULL;
    int have = prev != NULL;
    qd_coll_bcast(S->comm, &have, sizeof have, 0);
    if (!have) return 0;
    if (S->root) {
        if (S->xin && !cJSON_GetObjectItemCaseSensitive(prev, "out_errors") && access(h5, R_OK) == 0) {
            cJSON_AddItemToObject(prev, "out_errors", qd_sweep_output_errors(S->xin, h5));
            write_json(jpath, prev);
        }
        cJSON_AddItemToArray(S->cells, prev);
        printf("[%d/%d] %s: done before\n", S->k, S->total, id);
    }
    S->ndone++;
    return 1;
}

/* record an attempted cell (rank 0) and keep it for resume when evaluated */
static void finish_cell(sweep_run *S, const char *id, const char *jpath, cJSON *rec, double tc)
{
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(rec, "eval");
    int acc;
    double q = ev ? quality(ev, 1, &acc) : NAN;
    printf("[%d/%d] %s: %s", S->k, S->total, id, str(rec, "status"));
    if (ev)
        printf(", %s %.4f, cosine %.5f, file %.2f MB", acc ? "accuracy" : "quality", q, num(ev, "cosine", "mean"),
               num(ev, "quantized", "file_bytes") / 1e6);
    else
        printf(": %s", str(rec, "error"));
    printf(" (%.1f s; %.0f s so far)\n", qd_now() - tc, qd_now() - S->t0);
    fflush(stdout);
    if (ev) write_json(jpath, rec); /* only evaluated cells are kept for resume: failures are retried */
    cJSON_AddItemToArray(S->cells, rec);
}

/* eval of a cell's file into a record (all ranks; the record on rank 0) */
static cJSON *eval_record(sweep_run *S, const char *id, const scheme *c, const char *h5, const char *jpath,
                          double fp_bytes_div)
{
    char tmp[2000];
    snprintf(tmp, sizeof tmp, "%s.eval", jpath);
    int erc = eval_cell(S->o, h5, c->a, tmp, S->comm);
    cJSON *ev = S->root && erc == QD_EXIT_OK ? read_json(tmp) : NULL;
    cJSON *rec = NULL;
    if (S->root) {
        if (ev && fp_bytes_div > 0) { /* a float format's size: the checkpoint at 2 bytes a value */
            cJSON *fp = cJSON_GetObjectItemCaseSensitive(ev, "fp32"),
                  *qs = cJSON_GetObjectItemCaseSensitive(ev, "quantized");
            const double fb = num(fp, "file_bytes", NULL) / fp_bytes_div,
                         tb = num(fp, "tensor_bytes", NULL) / fp_bytes_div;
            if (qs) {
                cJSON_ReplaceItemInObject(qs, "file_bytes", cJSON_CreateNumber(fb));
                cJSON_ReplaceItemInObject(qs, "tensor_bytes", cJSON_CreateNumber(tb));
            }
        }
        rec = ev ? cell_record(id, c, "ok", NULL, ev, h5, S->xin)
                 : cell_record(id, c, "failed", qd_errmsg(), NULL, NULL, NULL);
        unlink(tmp);
    }
    S->nfail += !ev && S->root;
    cJSON_Delete(ev);
    return rec;
}

/* the reference cells of float formats (fp16, bf16) */
static void run_floats(sweep_run *S)
{
    for (int fi = 0; fi < S->o->floats.n; fi++) {
        const char *fmt = S->o->floats.v[fi];
        const scheme c = {fmt, !strcmp(fmt, "fp16") || !strcmp(fmt, "bf16") ? "16" : "32", "-", "-", "0", ""};
        char h5[1500], jpath[1800];
        snprintf(h5, sizeof h5, "%s/%s.h5", S->dir, fmt);
        snprintf(jpath, sizeof jpath, "%s/%s.json", S->dir, fmt);
        S->k++;
        if (resumed(S, fmt, jpath, h5)) continue;
        const double tc = qd_now();
        if (S->root) {
            printf("[%d/%d] %s: rounding the weights ...\n", S->k, S->total, fmt);
            fflush(stdout);
        }
        cJSON *rec = NULL;
        if (float_cell(S->o, fmt, h5, S->comm) != QD_EXIT_OK) {
            if (S->root) rec = cell_record(fmt, &c, "failed", qd_errmsg(), NULL, NULL, NULL);
            S->nfail++;
        } else
            rec = eval_record(S, fmt, &c, h5, jpath, 2.0);
        if (S->root) finish_cell(S, fmt, jpath, rec, tc);
    }
}

/* one file (method, bits, granularity, sparsity, pruning) and its activation modes */
static void run_file(sweep_run *S, scheme c)
{
    char stem[200], h5[1500];
    char sps[40] = "";
    if (strcmp(c.sp, "0")) snprintf(sps, sizeof sps, "-s%s-%s", c.sp, c.prune);
    snprintf(stem, sizeof stem, "%s-w%s-%s%s", c.m, c.b, c.g, sps);
    snprintf(h5, sizeof h5, "%s/%s.h5", S->dir, stem);
    int quantized = 0, qrc = QD_OK;
    for (int ai = 0; ai < S->o->acts.n; ai++) {
        c.a = S->o->acts.v[ai];
        char id[240], jpath[1800];
        snprintf(id, sizeof id, "%s-a%s", stem, c.a);
        snprintf(jpath, sizeof jpath, "%s/%s.json", S->dir, id);
        S->k++;
        if (resumed(S, id, jpath, h5)) continue;
        const char *skip = skip_reason(&c);
        if (skip) {
            if (S->root) {
                cJSON_AddItemToArray(S->cells, cell_record(id, &c, "skipped", skip, NULL, NULL, NULL));
                printf("[%d/%d] %s: skipped (%s: %s)\n", S->k, S->total, id, c.m, skip);
            }
            S->nskip++;
            continue;
        }
        const double tc = qd_now();
        if (!quantized) {
            if (S->root) {
                printf("[%d/%d] %s: quantizing ...\n", S->k, S->total, id);
                fflush(stdout);
            }
            qrc = quantize_cell(S->o, c.m, c.b, c.g, c.sp, c.prune, h5, S->comm);
            quantized = 1;
        }
        cJSON *rec = NULL;
        if (qrc != QD_EXIT_OK) {
            if (S->root) rec = cell_record(id, &c, "failed", qd_errmsg(), NULL, NULL, NULL);
            S->nfail++;
        } else
            rec = eval_record(S, id, &c, h5, jpath, 0);
        if (S->root) finish_cell(S, id, jpath, rec, tc);
    }
}

int qd_cmd_sweep(int argc, char **argv, MPI_Comm comm)
{
    sweep_opts o;
    int rc = QD_EXIT_OK;
    if (parse(argc, argv, &o, comm, &rc)) return rc;
    sweep_run S = {.o = &o, .comm = comm, .root = qd_cli_is_root(comm), .cells = cJSON_CreateArray()};
    const int root = S.root;
    snprintf(S.dir, sizeof S.dir, "%s/cells", o.out);
    if (root) {
        mkdir(o.out, 0755);
        mkdir(S.dir, 0755);
    }
    qd_coll_barrier(comm);
    int per_sp = 0; /* files per (method, bits, granularity): dense, and each sparsity x pruning */
    for (int si = 0; si < o.sparsity.n; si++) per_sp += strcmp(o.sparsity.v[si], "0") ? o.prune.n : 1;
    S.total = o.floats.n + o.methods.n * o.bits.n * o.grans.n * per_sp * o.acts.n;
    qd_sweep_inputs *xin = NULL;
    if (root && o.error_samples > 0) {
        if (qd_sweep_inputs_collect(o.model, o.data, (int)o.error_samples, 2048, &xin) != QD_OK)
            printf("sweep: no per-layer output errors (%s)\n", qd_errmsg());
        else
            printf("sweep: per-layer output errors on the Linear inputs of %ld samples of %s\n", o.error_samples,
                   o.data);
    }
    S.xin = xin;
    S.t0 = qd_now();
    run_floats(&S);
    for (int mi = 0; mi < o.methods.n; mi++)
        for (int gi = 0; gi < o.grans.n; gi++)
            for (int bi = 0; bi < o.bits.n; bi++)
                for (int si = 0; si < o.sparsity.n; si++)
                    for (int pi = 0; pi < (strcmp(o.sparsity.v[si], "0") ? o.prune.n : 1); pi++)
                        run_file(&S, (scheme){o.methods.v[mi], o.bits.v[bi], o.grans.v[gi], NULL, o.sparsity.v[si],
                                              o.prune.v[pi]});
    qd_sweep_inputs_free(xin);
    cJSON *cells = S.cells;
    const int total = S.total, ndone = S.ndone, nskip = S.nskip;
    int nfail = S.nfail;
    qd_coll_bcast(comm, &nfail, sizeof nfail, 0);
    if (root) {
        char path[4200];
        snprintf(path, sizeof path, "%s/sweep.json", o.out);
        cJSON *top = cJSON_CreateObject();
        cJSON_AddStringToObject(top, "model", o.model);
        cJSON_AddStringToObject(top, "data", o.data);
        cJSON_AddItemToObject(top, "cells", cells);
        write_json(path, top);
        write_csv(o.out, cells);
        printf("sweep: %d cells: %d evaluated now, %d from before, %d skipped, %d failed; %s/sweep.csv, sweep.json\n",
               total, total - ndone - nskip - nfail, ndone, nskip, nfail, o.out);
        if (!o.no_plots) draw(o.out, cells, &o);
        cJSON_Delete(top);
    } else
        cJSON_Delete(cells);
    return nfail ? QD_EXIT_FAIL : QD_EXIT_OK;
}
