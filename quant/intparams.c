/* quant/intparams.c — constants of the integer-only stages (see intparams.h). */
#include "quant/intparams.h"

#include <math.h>

#include "quant/fixed.h"

int qd_iparams_mult(double M, int32_t *M0, int32_t *sh)
{
    int s = 0;
    int rc = qd_quantize_multiplier(M, M0, &s);
    *sh = s;
    return rc;
}

void qd_igelu_params(double s_out, int32_t zp, qd_igelu *p)
{
    const double S = ldexp(1.0, -10) / sqrt(2.0); /* erf's argument x / √2 at the Q10 input scale */
    const double SL = QD_IGELU_A * S * S;         /* scale of a (u + b)² + 1 in i-poly's units (< 0) */
    p->xb = (int32_t)-floor(QD_IGELU_B / S);
    p->qc = (int32_t)floor(1.0 / SL);
    p->q1 = (int32_t)floor(1.0 / SL);
    qd_iparams_mult(-SL / 2.0 * 32768.0, &p->fM0, &p->fsh);
    qd_iparams_mult(ldexp(1.0, -10) / s_out, &p->oM0, &p->osh);
    p->zp = zp;
}

void qd_isoftmax_params(double score_scale, qd_isoftmax *p)
{
    const double S = 1.0 / 4096.0;
    qd_iparams_mult(score_scale * 4096.0, &p->M0, &p->sh);
    p->qln2 = (int32_t)floor(log(2.0) / S);
    p->qb = (int32_t)floor(QD_IEXP_B / S);
    p->qc = (int32_t)floor(QD_IEXP_C / (QD_IEXP_A * S * S));
}

void qd_iln_params(const float *gamma, const float *beta, int N, double eps, double s_in, double s_out, int32_t zp,
                   int32_t *g, int64_t *b, qd_iln *p)
{
    double gmax = 0;
    for (int i = 0; i < N; i++) gmax = fmax(gmax, fabs(gamma[i] / s_out));
    /* g below 2^23 (24 significant bits, as float's): n · g < 2^45 for n < 2^22 (N <= 2^12) */
    const double gl = ldexp(1.0, 23) - 1;
    int gsh = gmax > 0 ? (int)floor(log2(gl / gmax)) : 30;
    if (gsh > 30) gsh = 30;
    if (gsh < 0) gsh = 0;
    for (int i = 0; i < N; i++) {
        double v = nearbyint(ldexp(gamma[i] / s_out, gsh));
        g[i] = (int32_t)(v > gl ? gl : v < -gl ? -gl : v);
        double bb = nearbyint(ldexp(beta[i] / s_out, 16 + gsh));
        b[i] = (int64_t)(bb > 4e18 ? 4e18 : bb < -4e18 ? -4e18 : bb);
    }
    double e = nearbyint(ldexp(eps / (s_in * s_in), 32));
    p->g = g;
    p->beta = b;
    p->gsh = gsh;
    p->zp = zp;
    p->eps = (int64_t)(e > ldexp(1.0, 62) ? ldexp(1.0, 62) : e < 0 ? 0 : e);
}
