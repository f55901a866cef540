/* kernels/act_coef.h — constants of the elementwise approximations (kernels.h gelu, exp_sum),
 * shared by the reference and the ISA versions so both compute the same bits. */
#ifndef QD_ACT_COEF_H
#define QD_ACT_COEF_H

/* erf(x) ~ x P(x^2) / Q(x^2) on [-4, 4]: a minimax rational fit (|error| <= 3.4e-7 in float) */
#define QD_ERF_A1   (-1.60960333262415e-02f)
#define QD_ERF_A3   (-2.95459980854025e-03f)
#define QD_ERF_A5   (-7.34990630326855e-04f)
#define QD_ERF_A7   (-5.69250639462346e-05f)
#define QD_ERF_A9   (-2.10102402082508e-06f)
#define QD_ERF_A11  (2.77068142495902e-08f)
#define QD_ERF_A13  (-2.72614225801306e-10f)
#define QD_ERF_B0   (-1.42647390514189e-02f)
#define QD_ERF_B2   (-7.37332916720468e-03f)
#define QD_ERF_B4   (-1.68282697438203e-03f)
#define QD_ERF_B6   (-2.13374055278905e-04f)
#define QD_ERF_B8   (-1.45660718464996e-05f)
#define QD_SQRT1_2F 0.70710678118654752f

/* exp(d) = 2^n exp(r), n = rint(d log2 e), r = d - n ln2 (ln2 in two parts), exp(r) by the
 * classic single-precision polynomial 1 + r + r^2 P(r) */
#define QD_EXP_LO (-87.33654f)
#define QD_LOG2EF 1.44269504088896341f
#define QD_LN2_HI 0.693359375f
#define QD_LN2_LO (-2.12194440e-4f)
#define QD_EXP_P0 1.9875691500e-4f
#define QD_EXP_P1 1.3981999507e-3f
#define QD_EXP_P2 8.3334519073e-3f
#define QD_EXP_P3 4.1665795894e-2f
#define QD_EXP_P4 1.6666665459e-1f
#define QD_EXP_P5 5.0000001201e-1f

#endif
