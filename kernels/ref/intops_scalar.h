/* kernels/ref/intops_scalar.h — the per-element and per-row steps of the integer-only kernels
 * (kernels/intops.h), as static inline functions: kernels/ref/intops.c is built from them, and
 * the vector versions use them for their tails, their per-row scalars and the outlier channels,
 * so every ISA computes the same bits by construction there. */
#ifndef QD_REF_INTOPS_SCALAR_H
#define QD_REF_INTOPS_SCALAR_H

#include "kernels/intops.h"
#include "kernels/ref/fixedpoint.h"

static inline int32_t qd_is_sat8(int64_t v) { return v > 127 ? 127 : v < -128 ? -128 : (int32_t)v; }

/* floor((2a + b) / 2b) for b > 0: a / b rounded half up */
static inline int64_t qd_is_rdiv(int64_t a, int64_t b)
{
    const int64_t n = 2 * a + b, d = 2 * b;
    int64_t q = n / d;
    if (n % d != 0 && n < 0) q--;
    return q;
}

/* ---- LayerNorm ---------------------------------------------------------------------------- */

typedef struct {
    int64_t mu, R; /* mean of the shifted row; reciprocal of sigma in [2^30, 2^31) */
    int nsh, f;    /* shift of d · R to Q16; the row's pre-shift (x << f) */
} qd_is_lnrow;

/* The row is first shifted left by f = 23 - bitlen(max |x|) (at least 0) so that the integer mean
 * loses nothing for rows of small values; the normalized value does not depend on the shift, and
 * |x << f| < 2^24 keeps every later step inside int64. */
static inline int qd_is_ln_shift(int32_t maxabs)
{
    const int f = 23 - qd_fx_bitlen64((uint64_t)maxabs);
    return f > 0 ? f : 0;
}

/* The row's mean and reciprocal standard deviation from its shifted sums Σx' and Σ(x' - mu)² —
 * the callers compute the sums (exact in any order), this defines what follows. eps (in units of
 * S² 2^-32) is brought to the shifted units and capped at 2^60. */
static inline int64_t qd_is_ln_mean(int64_t sum, int64_t N) { return qd_is_rdiv(sum, N); }

static inline qd_is_lnrow qd_is_ln_finish(int64_t mu, int64_t ssd, int64_t N, int64_t eps, int f)
{
    qd_is_lnrow r;
    /* eps is in units of S² 2^-32: bring it to the shifted row's units (S 2^-f)² */
    const int64_t cap = (int64_t)1 << 60;
    const int es = 2 * f - 32;
    const int64_t e = es < 0 ? qd_fx_rshift_up(eps, -es) : eps >= (cap >> es) ? cap : eps << es;
    const int64_t v = qd_is_rdiv(ssd, N) + e;
    int k = (62 - qd_fx_bitlen64((uint64_t)v)) / 2;
    if (k > 15) k = 15;
    uint32_t sig = qd_fx_isqrt64((uint64_t)v << (2 * k));
    if (sig == 0) sig = 1;
    const int b = qd_fx_bitlen64(sig);
    r.mu = mu;
    r.R = (((int64_t)1 << (b + 30)) - 1) / sig;
    r.nsh = b + 14 - k;
    r.f = f;
    return r;
}

/* y = n · g + beta for one element (units: s_out · 2^-(16 + gsh)) */
static inline int64_t qd_is_ln_y(int32_t x, const qd_is_lnrow *r, int32_t g, int64_t beta)
{
    const int32_t d = (int32_t)((int64_t)x * ((int64_t)1 << r->f) - r->mu); /* x · 2^f: x may be negative */
    const int64_t n = qd_fx_rshift_up((int64_t)d * r->R, r->nsh);
    return n * g + beta;
}

/* the vector versions' tails: max |x| and Σx over [i, N), then Σ(x' - mu)² over [i, N) */
static inline void qd_is_ln_tail1(const int32_t *x, int64_t i, int64_t N, int32_t *mx, int64_t *s)
{
    for (; i < N; i++) {
        const int32_t a = x[i] < 0 ? -x[i] : x[i];
        if (a > *mx) *mx = a;
        *s += x[i];
    }
}
static inline int64_t qd_is_ln_tail2(const int32_t *x, int64_t i, int64_t N, int f, int64_t mu)
{
    int64_t ss = 0;
    for (; i < N; i++) {
        const int64_t d = (int64_t)x[i] * ((int64_t)1 << f) - mu;
        ss += d * d;
    }
    return ss;
}
/* the outputs of elements [i, N) of a row */
static inline void qd_is_ln_tail3(const int32_t *x, int64_t i, int64_t N, const qd_is_lnrow *r, const qd_iln *p,
                                  int8_t *out, int32_t *fine)
{
    for (; i < N; i++) {
        const int64_t y = qd_is_ln_y(x[i], r, p->g[i], p->beta[i]);
        out[i] = (int8_t)qd_is_sat8(qd_fx_rshift_up(y, 16 + p->gsh) + p->zp);
        if (fine) fine[i] = qd_fx_sat32(qd_fx_rshift_up(y, 8 + p->gsh));
    }
}

static inline qd_is_lnrow qd_is_ln_row(const int32_t *x, int64_t N, int64_t eps)
{
    int32_t mx = 0;
    int64_t s = 0;
    qd_is_ln_tail1(x, 0, N, &mx, &s);
    const int f = qd_is_ln_shift(mx);
    const int64_t mu = qd_is_ln_mean(s * ((int64_t)1 << f), N);
    return qd_is_ln_finish(mu, qd_is_ln_tail2(x, 0, N, f, mu), N, eps, f);
}

/* ---- GELU and exp ------------------------------------------------------------------------- */

static inline int32_t qd_is_igelu_q10(int32_t x, const qd_igelu *p)
{
    if (x >= p->xb) return x;
    if (x <= -p->xb) return 0;
    const int32_t u = x < 0 ? -x : x;
    const int32_t L = (u - p->xb) * (u - p->xb) + p->qc;
    const int32_t t = (x < 0 ? -L : x > 0 ? L : 0) + p->q1;
    const int32_t f = qd_fx_mbqm(-t, p->fM0, p->fsh);
    return (int32_t)qd_fx_rshift_up((int64_t)x * f, 15);
}

/* the input of the GELU of accumulator a at output channel n, in Q10 */
static inline int32_t qd_is_gelu_in(int32_t a, const int32_t *bias, const int32_t *M0, const int32_t *sh, int64_t n)
{
    const int32_t v = bias ? qd_fx_sat32((int64_t)a + bias[n]) : a;
    return qd_fx_mbqm(v, M0[n], sh[n]);
}

/* exp(-dd in Q12) in units of 0.3585 · 2^-24, dd >= 0 */
static inline int64_t qd_is_iexp(int64_t dd, const qd_isoftmax *p)
{
    const int64_t z = dd / p->qln2;
    if (z > 30) return 0;
    const int64_t q = p->qb - dd + z * p->qln2;
    return (q * q + p->qc) >> z;
}

/* a mask with no kept column counts as none (every column kept) */
static inline const uint8_t *qd_is_keep(const uint8_t *keep, int64_t n)
{
    for (int64_t j = 0; keep && j < n; j++)
        if (keep[j]) return keep;
    return NULL;
}

/* whether the vector versions' i-exp is exact for these constants: z = floor(dd / qln2) as a
 * reciprocal product (qln2 in [2^8, 2^17)) and (qb - dd + z qln2)² + qc inside int32 */
static inline int qd_is_softmax_lanes_ok(const qd_isoftmax *p)
{
    return p->qln2 >= 256 && p->qln2 < (1 << 17) && p->qb >= 0 && p->qc >= 0 &&
           (int64_t)p->qb * p->qb + p->qc < ((int64_t)1 << 31);
}

/* the softmax of one row (keep NULL: every column; the caller has replaced an all-zero keep by NULL) */
static inline void qd_is_softmax_row(const int32_t *s, int64_t n, const uint8_t *keep, const qd_isoftmax *p, uint8_t *P)
{
    int32_t mx = INT32_MIN;
    for (int64_t j = 0; j < n; j++)
        if (!keep || keep[j]) {
            const int32_t x = qd_fx_mbqm(s[j], p->M0, p->sh);
            if (x > mx) mx = x;
        }
    int64_t sum = 0;
    for (int64_t j = 0; j < n; j++)
        if (!keep || keep[j]) sum += qd_is_iexp((int64_t)mx - qd_fx_mbqm(s[j], p->M0, p->sh), p);
    const int64_t R = ((int64_t)1 << 46) / sum;
    for (int64_t j = 0; j < n; j++) {
        const int64_t e = !keep || keep[j] ? qd_is_iexp((int64_t)mx - qd_fx_mbqm(s[j], p->M0, p->sh), p) : 0;
        const int64_t v = qd_fx_rshift_up(e * R, 38);
        P[j] = (uint8_t)(v > 255 ? 255 : v);
    }
}

/* a softmax value from a stored row's maximum and reciprocal (the vector versions' tails) */
static inline uint8_t qd_is_softmax_p(int32_t s, int32_t mx, int64_t R, int kept, const qd_isoftmax *p)
{
    const int64_t e = kept ? qd_is_iexp((int64_t)mx - qd_fx_mbqm(s, p->M0, p->sh), p) : 0;
    const int64_t v = qd_fx_rshift_up(e * R, 38);
    return (uint8_t)(v > 255 ? 255 : v);
}

/* one requantized output, and one rescaled residual sum (the kernels' scalar element) */
static inline int8_t qd_is_requant1(int32_t a, const int32_t *bias, int64_t n, int32_t M0, int32_t sh, int32_t zp,
                                    int32_t lo)
{
    const int32_t x = bias ? qd_fx_sat32((int64_t)a + bias[n]) : a;
    const int32_t v = qd_is_sat8((int64_t)qd_fx_mbqm(x, M0, sh) + zp);
    return (int8_t)(v < lo ? lo : v);
}

static inline int32_t qd_is_rescale1(int32_t a, const int32_t *bias, int64_t n, int32_t M0, int32_t sh,
                                     const int32_t *res, int32_t rM0, int32_t rsh, int32_t lim)
{
    const int32_t x = bias ? qd_fx_sat32((int64_t)a + bias[n]) : a;
    int64_t v = qd_fx_mbqm(x, M0, sh);
    if (res) v += qd_fx_mbqm(*res, rM0, rsh);
    return (int32_t)(v > lim ? lim : v < -lim ? -lim : v);
}

/* one GELU output */
static inline int8_t qd_is_gelu1(int32_t a, const int32_t *bias, const int32_t *M0, const int32_t *sh, int64_t n,
                                 const qd_igelu *p)
{
    const int32_t y = qd_is_igelu_q10(qd_is_gelu_in(a, bias, M0, sh, n), p);
    return (int8_t)qd_is_sat8((int64_t)qd_fx_mbqm(y, p->oM0, p->osh) + p->zp);
}

/* ---- outlier channels --------------------------------------------------------------------- */

/* The outlier channels of one output row: out[ch[j]] = the main zero point, oout[j] = the
 * channel's value at 2^e times the main scale with the outlier zero point. */
static inline void qd_is_split_ln(const qd_isplit *sp, const int32_t *x, const qd_is_lnrow *r, const qd_iln *p,
                                  int8_t *out, int8_t *oout)
{
    for (int32_t j = 0; j < sp->n; j++) {
        const int32_t c = sp->ch[j];
        const int64_t y = qd_is_ln_y(x[c], r, p->g[c], p->beta[c]);
        out[c] = (int8_t)p->zp;
        oout[j] = (int8_t)qd_is_sat8(qd_fx_rshift_up(y, 16 + p->gsh + sp->e) + sp->zp);
    }
}

/* requantized outputs: the value mbqm(a + bias, M0, sh - e) at the outlier scale */
static inline void qd_is_split_rq(const qd_isplit *sp, const int32_t *acc, const int32_t *bias, const int32_t *M0,
                                  const int32_t *sh, int per_channel, int32_t zmain, int relu, int8_t *out,
                                  int8_t *oout)
{
    for (int32_t j = 0; j < sp->n; j++) {
        const int32_t c = sp->ch[j], q = per_channel ? c : 0;
        const int32_t a = bias ? qd_fx_sat32((int64_t)acc[c] + bias[c]) : acc[c];
        const int32_t v = qd_is_sat8((int64_t)qd_fx_mbqm(a, M0[q], sh[q] - sp->e) + sp->zp);
        out[c] = (int8_t)zmain;
        oout[j] = (int8_t)(relu && v < sp->zp ? sp->zp : v);
    }
}

static inline void qd_is_split_gelu(const qd_isplit *sp, const int32_t *acc, const int32_t *bias, const int32_t *M0,
                                    const int32_t *sh, const qd_igelu *p, int8_t *out, int8_t *oout)
{
    for (int32_t j = 0; j < sp->n; j++) {
        const int32_t c = sp->ch[j];
        const int32_t y = qd_is_igelu_q10(qd_is_gelu_in(acc[c], bias, M0, sh, c), p);
        out[c] = (int8_t)p->zp;
        oout[j] = (int8_t)qd_is_sat8((int64_t)qd_fx_mbqm(y, p->oM0, p->osh - sp->e) + sp->zp);
    }
}

#endif
