/* train/optim.c — AdamW as PyTorch's torch.optim.AdamW (decoupled weight decay, bias-corrected
 * moments, float32 updates), a linear warm-up / linear decay schedule, global-norm gradient
 * clipping. The per-value loops are kernels (kernels.h adamw, sumsq). */
#include <math.h>

#include "kernels/kernels.h"
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
    const qd_kernel_table *K = qd_kernels();
    /* the norm in double over the packed gradient, in a fixed order: the same on every rank */
    int64_t nt = 0;
    for (int i = 0; i < n->np; i++)
        if (n->p[i].trainable) nt += n->p[i].numel;
    double norm = sqrt(K->sumsq(g, nt)), cf = 1.0;
    if (o->clip > 0 && norm > o->clip) cf = o->clip / (norm + 1e-6);
    const double lr = qd_adamw_lr(o, t), b1 = o->beta1, b2 = o->beta2;
    const double bc1 = 1.0 - pow(b1, (double)(t + 1)), bc2 = 1.0 - pow(b2, (double)(t + 1));
    const double step = lr / bc1, rbc2 = 1.0 / sqrt(bc2);
    int64_t k = 0;
    for (int i = 0; i < n->np; i++) {
        const qd_tparam *p = &n->p[i];
        if (!p->trainable) continue;
        const double plr = lr * p->lr_mult;
        const qd_adamw_args a = {.b1 = (float)b1,
                                 .b2 = (float)b2,
                                 .omb1 = (float)(1 - b1),
                                 .omb2 = (float)(1 - b2),
                                 .cf = (float)cf,
                                 .rbc2 = (float)rbc2,
                                 .eps = (float)o->eps,
                                 .decay = (float)(p->decay ? 1.0 - plr * o->weight_decay : 1.0),
                                 .pstep = (float)(step * p->lr_mult)};
        /* float steps as torch.optim.AdamW's, eight values at a time (kernels.h adamw) */
        K->adamw(n->w + p->off, g + k, m + k, v + k, p->numel, &a);
        k += p->numel;
    }
    return norm;
}
