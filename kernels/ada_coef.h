/* kernels/ada_coef.h — constants of the AdaRound step kernel (kernels.h adaround_step), shared by
 * the reference and the ISA versions so both compute the same bits. exp uses act_coef.h. */
#ifndef QD_ADA_COEF_H
#define QD_ADA_COEF_H

/* rectified sigmoid h = clip(sigmoid(V) * (zeta - gamma) + gamma, 0, 1), zeta 1.1, gamma -0.1 */
#define QD_ADA_ZG     1.2f /* zeta - gamma */
#define QD_ADA_GAMMA  (-0.1f)
/* sigmoid(V) = 1 / (1 + exp(-V)) with -V clamped to [-20, 20]: h is clipped to 0 or 1 for
 * |V| > ln 11 ~ 2.4 already, so the clamp changes no h and keeps exp finite */
#define QD_ADA_VCLAMP 20.0f

/* Adam's fixed moments and epsilon */
#define QD_ADA_B1  0.9f
#define QD_ADA_B2  0.999f
#define QD_ADA_EPS 1e-8f

/* log(x), x normal: x = 2^e m, m in [sqrt(1/2), sqrt 2), log m = f - f^2/2 + f^3 P(f), f = m - 1
 * (the classic single-precision polynomial, |relative error| ~ 1e-7), plus e ln 2 in two parts */
#define QD_LOG_SQRTHF 0.707106781186547524f
#define QD_LOG_P0     7.0376836292e-2f
#define QD_LOG_P1     (-1.1514610310e-1f)
#define QD_LOG_P2     1.1676998740e-1f
#define QD_LOG_P3     (-1.2420140846e-1f)
#define QD_LOG_P4     1.4249322787e-1f
#define QD_LOG_P5     (-1.6668057665e-1f)
#define QD_LOG_P6     2.0000714765e-1f
#define QD_LOG_P7     (-2.4999993993e-1f)
#define QD_LOG_P8     3.3333331174e-1f
/* the exp argument of |t|^(beta - 1) is clamped to [QD_EXP_LO, QD_ADA_EXP_HI] */
#define QD_ADA_EXP_HI 88.0f

#endif
