/* train/loss.c — losses and their gradients (graph.h). Sums in double, item by item in order. */
#include <math.h>

#include "train/graph.h"

/* log-softmax of z / tau into lp (double) */
static void log_softmax(const qd_real *z, int L, double tau, double *lp)
{
    double mx = -INFINITY;
    for (int j = 0; j < L; j++) mx = fmax(mx, z[j] / tau);
    double s = 0;
    for (int j = 0; j < L; j++) s += exp(z[j] / tau - mx);
    double lse = mx + log(s);
    for (int j = 0; j < L; j++) lp[j] = z[j] / tau - lse;
}

double QD_TG(loss_ce)(const qd_real *logits, int B, int L, const int32_t *labels, double scale, qd_real *grad,
                      int *correct)
{
    double total = 0, lp[L > 0 ? L : 1];
    for (int i = 0; i < B; i++) {
        const qd_real *z = logits + (int64_t)i * L;
        int y = labels[i];
        QD_ASSERT(y >= 0 && y < L);
        log_softmax(z, L, 1.0, lp);
        total += -lp[y];
        int am = 0;
        for (int j = 1; j < L; j++)
            if (z[j] > z[am]) am = j;
        if (correct) *correct += am == y;
        if (grad)
            for (int j = 0; j < L; j++) grad[(int64_t)i * L + j] += (qd_real)(scale * (exp(lp[j]) - (j == y)));
    }
    return total * scale;
}

double QD_TG(loss_kl)(const qd_real *logits, const qd_real *teacher, int B, int L, double tau, double scale,
                      qd_real *grad)
{
    double total = 0, ls[L > 0 ? L : 1], lt[L > 0 ? L : 1];
    for (int i = 0; i < B; i++) {
        log_softmax(logits + (int64_t)i * L, L, tau, ls);
        log_softmax(teacher + (int64_t)i * L, L, tau, lt);
        double kl = 0;
        for (int j = 0; j < L; j++) kl += exp(lt[j]) * (lt[j] - ls[j]);
        total += tau * tau * kl;
        /* d/dz of tau^2 KL = tau (softmax(z / tau) - softmax(t / tau)) */
        if (grad)
            for (int j = 0; j < L; j++) grad[(int64_t)i * L + j] += (qd_real)(scale * tau * (exp(ls[j]) - exp(lt[j])));
    }
    return total * scale;
}

double QD_TG(loss_mse)(const qd_real *x, const qd_real *target, int B, int N, double scale, qd_real *grad)
{
    double total = 0;
    for (int i = 0; i < B; i++) {
        double s = 0;
        for (int j = 0; j < N; j++) {
            double d = (double)x[(int64_t)i * N + j] - target[(int64_t)i * N + j];
            s += d * d;
            if (grad) grad[(int64_t)i * N + j] += (qd_real)(scale * 2.0 * d / N);
        }
        total += s / N;
    }
    return total * scale;
}
