/* train/optim.c — AdamW as PyTorch's torch.optim.AdamW (decoupled weight decay, bias-corrected
 * moments), a linear warm-up / linear decay schedule, global-norm gradient clipping. */
#include <math.h>

#include "train/train.h"

void qd_adamw_default(qd_adamw *o)
{
    o->lr = 5e-5;
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->eps = 1e-8;
    o->weight_decay = 0.01;
    o->warmup = 0.1;
    o->total_steps = 0;
    o->clip = 1.0;
}

double qd_adamw_lr(const qd_adamw *o, int64_t t)
{
    int64_t T = o->total_steps > 0 ? o->total_steps : 1, W = (int64_t)(o->warmup * (double)T);
    if (t < W) return o->lr * (double)(t + 1) / (double)W;
    if (T <= W) return o->lr;
    double f = (double)(T - t) / (double)(T - W);
    return o->lr * (f > 0 ? f : 0);
}

double qd_adamw_step(const qd_adamw *o, qd_tnet *n, const float *g, float *m, float *v, int64_t t)
{
    /* the norm in double over the packed gradient, in order: the same on every rank */
    double ss = 0;
    int64_t k = 0;
    for (int i = 0; i < n->np; i++) {
        const qd_tparam *p = &n->p[i];
        if (!p->trainable) continue;
        for (int64_t e = 0; e < p->numel; e++, k++) ss += (double)g[k] * g[k];
    }
    double norm = sqrt(ss), cf = 1.0;
    if (o->clip > 0 && norm > o->clip) cf = o->clip / (norm + 1e-6);
    const double lr = qd_adamw_lr(o, t), b1 = o->beta1, b2 = o->beta2;
    const double bc1 = 1.0 - pow(b1, (double)(t + 1)), bc2 = 1.0 - pow(b2, (double)(t + 1));
    const double step = lr / bc1, rbc2 = 1.0 / sqrt(bc2);
    k = 0;
    for (int i = 0; i < n->np; i++) {
        const qd_tparam *p = &n->p[i];
        if (!p->trainable) continue;
        float *w = n->w + p->off;
        const double plr = lr * p->lr_mult, pstep = step * p->lr_mult;
        const double decay = p->decay ? 1.0 - plr * o->weight_decay : 1.0;
        for (int64_t e = 0; e < p->numel; e++, k++) {
            double gr = (double)g[k] * cf;
            double mm = b1 * m[k] + (1 - b1) * gr, vv = b2 * v[k] + (1 - b2) * gr * gr;
            m[k] = (float)mm;
            v[k] = (float)vv;
            double den = sqrt((double)v[k]) * rbc2 + o->eps;
            w[e] = (float)((double)w[e] * decay - pstep * (double)m[k] / den);
        }
    }
    return norm;
}
