/* GPTQ on small random problems equals a straightforward unblocked column-by-column
 * implementation written here (double precision, its own Cholesky and inverse, each column's
 * error pushed to all remaining columns at once), within 1e-5; with several blocks (block size
 * 8 and 16), per channel and static groups, with and without act-order, symmetric and not,
 * bits 2, 3, 4 and 8. Also: NaN weights are rejected naming the position. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qd_test.h"
#include "quant/gptq.h"

static uint64_t g_s = 42;
static double urand(void)
{
    g_s = g_s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(g_s >> 11) / 9007199254740992.0;
}

/* lower Cholesky in place (n x n, double); 0 ok */
static int chol(double *A, int n)
{
    for (int j = 0; j < n; j++) {
        double s = A[j * n + j];
        for (int k = 0; k < j; k++) s -= A[j * n + k] * A[j * n + k];
        if (s <= 0) return -1;
        A[j * n + j] = sqrt(s);
        for (int i = j + 1; i < n; i++) {
            double t = A[i * n + j];
            for (int k = 0; k < j; k++) t -= A[i * n + k] * A[j * n + k];
            A[i * n + j] = t / A[j * n + j];
        }
        for (int k = j + 1; k < n; k++) A[j * n + k] = 0;
    }
    return 0;
}

static void reference(const float *W0, const float *H0, int R, int C, const qd_gptq_opts *o, float *Q)
{
    int maxq = qd_maxq(o->bits);
    float *W = malloc(sizeof(float) * R * C);
    memcpy(W, W0, sizeof(float) * R * C);
    double *H = malloc(sizeof(double) * C * C);
    for (int i = 0; i < C * C; i++) H[i] = H0[i];
    int grouped = o->group_size > 0;
    int ng = grouped ? (C + (int)o->group_size - 1) / (int)o->group_size : 1;
    float *s = malloc(sizeof(float) * R * ng);
    int32_t *z = malloc(sizeof(int32_t) * R * ng);
    if (!grouped) qd_find_params_rows(W, R, C, C, o->bits, o->sym, &o->clip, s, z, 1);
    for (int j = 0; j < C; j++)
        if (H[j * C + j] == 0) {
            H[j * C + j] = 1;
            for (int r = 0; r < R; r++) W[r * C + j] = 0;
        }
    if (grouped)
        for (int g = 0; g < ng; g++) {
            int c0 = g * (int)o->group_size, n = C - c0 < o->group_size ? C - c0 : (int)o->group_size;
            qd_find_params_rows(W + c0, R, n, C, o->bits, o->sym, &o->clip, s + g, z + g, ng);
        }
    int *perm = malloc(sizeof(int) * C);
    for (int j = 0; j < C; j++) perm[j] = j;
    if (o->act_order) /* stable selection sort by descending diag */
        for (int a = 0; a < C; a++) {
            int best = a;
            for (int b = a + 1; b < C; b++)
                if (H[perm[b] * C + perm[b]] > H[perm[best] * C + perm[best]]) best = b;
            int t = perm[best];
            memmove(perm + a + 1, perm + a, sizeof(int) * (best - a));
            perm[a] = t;
        }
    double md = 0;
    for (int j = 0; j < C; j++) md += H[j * C + j];
    md /= C;
    double *A = malloc(sizeof(double) * C * C), *Inv = malloc(sizeof(double) * C * C);
    for (int a = 0; a < C; a++)
        for (int b = 0; b < C; b++) A[a * C + b] = H[perm[a] * C + perm[b]] + (a == b ? o->damp * md : 0);
    chol(A, C);
    /* inverse of A = L L^T column by column: solve L y = e, L^T x = y */
    double *y = malloc(sizeof(double) * C);
    for (int c = 0; c < C; c++) {
        for (int i = 0; i < C; i++) {
            double t = (i == c);
            for (int k = 0; k < i; k++) t -= A[i * C + k] * y[k];
            y[i] = t / A[i * C + i];
        }
        for (int i = C - 1; i >= 0; i--) {
            double t = y[i];
            for (int k = i + 1; k < C; k++) t -= A[k * C + i] * Inv[k * C + c];
            Inv[i * C + c] = t / A[i * C + i];
        }
    }
    chol(Inv, C); /* lower L2 with Inv = L2 L2^T; the upper factor is U = L2^T */
    double *Wd = malloc(sizeof(double) * R * C);
    for (int r = 0; r < R; r++)
        for (int k = 0; k < C; k++) Wd[r * C + k] = W[r * C + perm[k]];
    for (int k = 0; k < C; k++) {
        int g = grouped ? perm[k] / (int)o->group_size : 0;
        double d = Inv[k * C + k];
        for (int r = 0; r < R; r++) {
            float sc = s[r * ng + g];
            int32_t zz = z[r * ng + g];
            float q = qd_dequantize1(qd_quantize1((float)Wd[r * C + k], sc, zz, maxq), sc, zz);
            Q[r * C + perm[k]] = q;
            double e = (Wd[r * C + k] - q) / d;
            for (int j = k + 1; j < C; j++) Wd[r * C + j] -= e * Inv[j * C + k]; /* U[k][j] = L2[j][k] */
        }
    }
    free(W);
    free(H);
    free(s);
    free(z);
    free(perm);
    free(A);
    free(Inv);
    free(y);
    free(Wd);
}

int main(void)
{
    struct {
        int R, C, bits, sym, gs, act, bs;
    } cases[] = {
        {16, 40, 4, 0, -1, 0, 8},  {16, 40, 4, 0, -1, 1, 8}, {33, 70, 3, 0, -1, 1, 16}, {33, 70, 8, 1, -1, 0, 16},
        {20, 48, 2, 0, 16, 0, 16}, {20, 48, 4, 0, 8, 1, 16}, {12, 37, 3, 1, 10, 1, 8},  {9, 64, 8, 0, 32, 0, 8},
    };
    for (size_t t = 0; t < QD_ARRAY_LEN(cases); t++) {
        int R = cases[t].R, C = cases[t].C, N = 3 * C;
        float *W = malloc(sizeof(float) * R * C), *X = malloc(sizeof(float) * N * C),
              *H = calloc((size_t)C * C, sizeof(float));
        for (int i = 0; i < R * C; i++) W[i] = (float)(urand() * 2 - 1);
        for (int i = 0; i < N * C; i++) X[i] = (float)(urand() * 2 - 1 + (i % C == 3 ? 2 : 0));
        for (int i = 0; i < N; i++) X[i * C + 5] = 0; /* a dead input */
        for (int a = 0; a < C; a++)
            for (int b = 0; b < C; b++) {
                double s = 0;
                for (int i = 0; i < N; i++) s += (double)X[i * C + a] * X[i * C + b];
                H[a * C + b] = (float)(2 * s / N);
            }
        qd_gptq_opts o;
        qd_gptq_default_opts(&o);
        o.bits = cases[t].bits;
        o.sym = cases[t].sym;
        o.group_size = cases[t].gs;
        o.act_order = cases[t].act;
        o.static_groups = cases[t].gs > 0;
        o.block_size = cases[t].bs;
        float *Q = malloc(sizeof(float) * R * C), *Wq = malloc(sizeof(float) * R * C);
        memcpy(Wq, W, sizeof(float) * R * C);
        int ng = cases[t].gs > 0 ? (C + cases[t].gs - 1) / cases[t].gs : 1;
        uint8_t *codes = malloc((size_t)R * C);
        float *sc = malloc(sizeof(float) * R * ng);
        int32_t *zr = malloc(sizeof(int32_t) * R * ng), *gi = malloc(sizeof(int32_t) * C);
        qd_gptq_stats st;
        CHECK_EQ(qd_gptq_quantize(Wq, R, C, H, &o, codes, sc, zr, gi, &st), QD_OK);
        CHECK_EQ(st.dead_columns, 1);
        reference(W, H, R, C, &o, Q);
        double md = 0;
        for (int i = 0; i < R * C; i++) md = fmax(md, fabs(Wq[i] - Q[i]));
        printf("case %zu (%dx%d, %d-bit, %s, group %d, act-order %d, block %d): max |blocked - unblocked| = %.2e\n", t,
               R, C, o.bits, o.sym ? "sym" : "asym", cases[t].gs, o.act_order, o.block_size, md);
        CHECK_DBL_LE(md, 1e-5);
        /* codes and g_idx describe the result: Q = s[g_idx] * (code - z[g_idx]) */
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) {
                int g = gi[c];
                CHECK(Wq[r * C + c] == sc[r * ng + g] * (float)(codes[r * C + c] - zr[r * ng + g]));
            }
        /* prepared once, rows in two ranges: each range alone equals the whole (to rounding), and
         * the same range quantized twice gives the same bits */
        qd_gptq_prep *prep = NULL;
        CHECK_EQ(qd_gptq_prepare(H, C, &o, &prep), QD_OK);
        int h = R / 2;
        float *Wa = malloc(sizeof(float) * R * C), *Wb = malloc(sizeof(float) * R * C);
        uint8_t *ca = malloc((size_t)R * C), *cb = malloc((size_t)R * C);
        float *sa = malloc(sizeof(float) * R * ng);
        int32_t *za = malloc(sizeof(int32_t) * R * ng);
        memcpy(Wa, W, sizeof(float) * R * C);
        memcpy(Wb, W, sizeof(float) * R * C);
        CHECK_EQ(qd_gptq_quantize_prepared(prep, Wa, h, ca, sa, za, NULL, NULL), QD_OK);
        CHECK_EQ(qd_gptq_quantize_prepared(prep, Wa + h * C, R - h, ca + h * C, sa + h * ng, za + h * ng, NULL, NULL),
                 QD_OK);
        CHECK_EQ(qd_gptq_quantize_prepared(prep, Wb + h * C, R - h, cb + h * C, sa + h * ng, za + h * ng, NULL, NULL),
                 QD_OK);
        CHECK(memcmp(ca + h * C, cb + h * C, (size_t)(R - h) * C) == 0);
        CHECK(memcmp(Wa + h * C, Wb + h * C, sizeof(float) * (R - h) * C) == 0);
        int same = 0;
        for (int i = 0; i < R * C; i++) same += ca[i] == codes[i];
        CHECK_GE(same, R * C - 2);
        md = 0;
        for (int i = 0; i < R * C; i++) md = fmax(md, fabs(Wa[i] - Wq[i]));
        CHECK_DBL_LE(md, 1e-5 + (same < R * C ? 1.0 : 0.0));
        qd_gptq_prep_free(prep);
        free(Wa);
        free(Wb);
        free(ca);
        free(cb);
        free(sa);
        free(za);
        free(W);
        free(X);
        free(H);
        free(Q);
        free(Wq);
        free(codes);
        free(sc);
        free(zr);
        free(gi);
    }
    float w[4] = {1, 2, NAN, 4}, h[4] = {1, 0, 0, 1};
    qd_gptq_opts o;
    qd_gptq_default_opts(&o);
    uint8_t c[4];
    float s[2];
    int32_t z[2];
    CHECK_EQ(qd_gptq_quantize(w, 2, 2, h, &o, c, s, z, NULL, NULL), QD_ENONFINITE);
    CHECK_CONTAINS(qd_errmsg(), "NaN at [1, 0]");
    QD_TEST_MAIN_END();
}
