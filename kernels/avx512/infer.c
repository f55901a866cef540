/* AVX-512 versions of the runtime's float kernels, with the reference's bits: the u8 activation
 * quantizer (kernels/gemm.h qd_quantize_rows_u8), the FP32 GEMM over packed 16-channel panels, and
 * LayerNorm and one attention head (kernels/infer.h). LayerNorm's sixteen partial sums are one zmm
 * reduced by the reference's halves; every GEMM and attention output is the reference's fma chain
 * in its order, lanes being output columns or keys. Compiled with AVX-512 F/DQ/BW/VL flags,
 * reached through the dispatch table after the CPUID check; ISO C mode keeps FP contraction off. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/act_coef.h"
#include "kernels/avx512/exp_poly.h"
#include "kernels/gemm_pack.h"
#include "kernels/infer.h"
#include "kernels/infer_isa.h"
#include "kernels/kernels.h"

static inline __mmask16 below(int64_t rem) { return (__mmask16)(rem >= 16 ? 0xFFFF : (1u << rem) - 1u); }

/* kernels/ref/act.c's erf, sixteen lanes */
static inline __m512 erf16(__m512 x)
{
    x = _mm512_min_ps(x, _mm512_set1_ps(4.0f));
    x = _mm512_max_ps(x, _mm512_set1_ps(-4.0f));
    const __m512 x2 = _mm512_mul_ps(x, x);
    __m512 p = _mm512_set1_ps(QD_ERF_A13);
    p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(QD_ERF_A11));
    p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(QD_ERF_A9));
    p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(QD_ERF_A7));
    p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(QD_ERF_A5));
    p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(QD_ERF_A3));
    p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(QD_ERF_A1));
    p = _mm512_mul_ps(p, x);
    __m512 q = _mm512_set1_ps(QD_ERF_B8);
    q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(QD_ERF_B6));
    q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(QD_ERF_B4));
    q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(QD_ERF_B2));
    q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(QD_ERF_B0));
    return _mm512_div_ps(p, q);
}

/* kernels.h gelu: x = (0.5 x) (1 + erf(x / sqrt 2)), the reference's operations, tail masked */
static void avx512_gelu(float *x, int64_t n)
{
    const __m512 c = _mm512_set1_ps(QD_SQRT1_2F), half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 mk = below(n - i);
        const __m512 v = _mm512_maskz_loadu_ps(mk, x + i);
        const __m512 e = erf16(_mm512_mul_ps(v, c));
        _mm512_mask_storeu_ps(x + i, mk, _mm512_mul_ps(qd_opaque16(_mm512_mul_ps(half, v)), _mm512_add_ps(one, e)));
    }
}

/* ---- activation quantizer ---------------------------------------------------------------------- */

static inline __m512 load_x(const float *x, const float *cm, __mmask16 mk)
{
    const __m512 v = _mm512_maskz_loadu_ps(mk, x);
    return cm ? _mm512_mul_ps(v, _mm512_maskz_loadu_ps(mk, cm)) : v;
}

static void avx512_quantize_rows_u8(const float *x, int64_t M, int64_t K, int64_t ldx, const float *col_mul,
                                    float *scales, uint8_t *q, int64_t ldq)
{
    QD_ASSERT(M >= 0 && K >= 1 && ldx >= K && ldq >= K);
    const __m512 absmask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    for (int64_t m = 0; m < M; m++) {
        const float *xr = x + m * ldx;
        uint8_t *qr = q + m * ldq;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        int64_t k = 0;
        for (; k + 32 <= K; k += 32) { /* NaN never replaces the running maximum: order-free */
            a0 = _mm512_max_ps(_mm512_and_ps(load_x(xr + k, col_mul ? col_mul + k : NULL, 0xFFFF), absmask), a0);
            a1 = _mm512_max_ps(_mm512_and_ps(load_x(xr + k + 16, col_mul ? col_mul + k + 16 : NULL, 0xFFFF), absmask),
                               a1);
        }
        for (; k < K; k += 16) /* masked-off lanes load 0, which never raises the maximum */
            a0 = _mm512_max_ps(_mm512_and_ps(load_x(xr + k, col_mul ? col_mul + k : NULL, below(K - k)), absmask), a0);
        const float s = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1)) / 127.0f;
        scales[m] = s;
        if (s == 0.0f) {
            memset(qr, 128, (size_t)K);
            continue;
        }
        const __m512 vs = _mm512_set1_ps(s), lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
        const __m512i off = _mm512_set1_epi32(128);
        for (k = 0; k < K; k += 16) {
            const __mmask16 mk = below(K - k);
            __m512 v = _mm512_roundscale_ps(_mm512_div_ps(load_x(xr + k, col_mul ? col_mul + k : NULL, mk), vs),
                                            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), v); /* NaN -> 0 */
            v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
            const __m128i b = _mm512_cvtepi32_epi8(_mm512_add_epi32(_mm512_cvttps_epi32(v), off));
            _mm_mask_storeu_epi8(qr + k, mk, b);
        }
    }
}

/* ---- LayerNorm ----------------------------------------------------------------------------------- */

/* the reference's reduction of 16 partial sums: + 8, + 4, + 2, + 1 */
static inline float reduce16(__m512 p)
{
    const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(p), _mm512_extractf32x8_ps(p, 1));
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_shuffle_ps(a, a, 1));
    return _mm_cvtss_f32(a);
}

static void avx512_layernorm(const float *x, const float *r, int64_t rows, int64_t n, int64_t ld, const float *g,
                             const float *b, float eps, float *y, float *sum)
{
    QD_ASSERT(n >= 1 && ld >= n);
    for (int64_t m = 0; m < rows; m++) {
        const float *xr = x + m * ld, *rr = r ? r + m * ld : NULL;
        float *yr = y + m * ld, *sr = sum ? sum + m * ld : NULL;
        __m512 p = _mm512_setzero_ps();
        for (int64_t i = 0; i < n; i += 16) { /* v = x + r into y (and sum), its partial sums */
            const __mmask16 mk = below(n - i);
            __m512 v = _mm512_maskz_loadu_ps(mk, xr + i);
            if (rr) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, rr + i));
            _mm512_mask_storeu_ps(yr + i, mk, v);
            if (sr) _mm512_mask_storeu_ps(sr + i, mk, v);
            p = _mm512_mask_add_ps(p, mk, p, v);
        }
        const float mean = reduce16(p) / (float)n;
        const __m512 mv = _mm512_set1_ps(mean);
        p = _mm512_setzero_ps();
        for (int64_t i = 0; i < n; i += 16) {
            const __mmask16 mk = below(n - i);
            const __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(mk, yr + i), mv);
            p = _mm512_mask_add_ps(p, mk, p, _mm512_mul_ps(d, d));
        }
        const float var = reduce16(p) / (float)n;
        const __m512 rs = _mm512_set1_ps(1.0f / sqrtf(var + eps));
        for (int64_t i = 0; i < n; i += 16) {
            const __mmask16 mk = below(n - i);
            const __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(mk, yr + i), mv);
            const __m512 o = _mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(d, rs), _mm512_maskz_loadu_ps(mk, g + i)),
                                           _mm512_maskz_loadu_ps(mk, b + i));
            _mm512_mask_storeu_ps(yr + i, mk, o);
        }
    }
}

static void avx512_col_absmax(const float *x, int64_t rows, int64_t K, int64_t ldx, const float *s, float *m)
{
    const __m512 absmask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * ldx;
        for (int64_t k = 0; k < K; k += 16) {
            const __mmask16 mk = below(K - k);
            __m512 v = _mm512_maskz_loadu_ps(mk, xr + k);
            if (s) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(mk, s + k));
            /* max(a, m): a NaN in a keeps m, as the reference's a > m ? a : m */
            _mm512_mask_storeu_ps(m + k, mk,
                                  _mm512_max_ps(_mm512_and_ps(v, absmask), _mm512_maskz_loadu_ps(mk, m + k)));
        }
    }
}

/* ---- attention ------------------------------------------------------------------------------------ */

/* S rows [0, MR) x keys [j0, j0 + 16 NB): MR x NB accumulators, the fma chain over c in order.
 * q rows at stride ld, S rows at stride lds (the caller points missing rows at a scratch row). */
static inline __attribute__((always_inline)) void scores_block(const int MR, const int NB, const float *q, int64_t ld,
                                                               const float *kt, int64_t t16, int64_t d, int64_t j0,
                                                               __m512 vs, float *S, int64_t lds)
{
    __m512 acc[6][4];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
        for (int b = 0; b < NB; b++) acc[r][b] = _mm512_setzero_ps();
    for (int64_t c = 0; c < d; c++) {
        __m512 kv[4];
#pragma GCC unroll 4
        for (int b = 0; b < NB; b++) kv[b] = _mm512_loadu_ps(kt + c * t16 + j0 + 16 * b);
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            const __m512 x = _mm512_set1_ps(q[r * ld + c]);
#pragma GCC unroll 4
            for (int b = 0; b < NB; b++) acc[r][b] = _mm512_fmadd_ps(x, kv[b], acc[r][b]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
        for (int b = 0; b < NB; b++) _mm512_storeu_ps(S + r * lds + j0 + 16 * b, _mm512_mul_ps(acc[r][b], vs));
}

/* r[i][j] -> r[j][i] for a 16 x 16 block of floats */
static inline void transpose16(__m512 r[16])
{
    __m512 t[16], u[16];
    for (int k = 0; k < 8; k++) {
        t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
    for (int k = 0; k < 4; k++) {
        u[4 * k + 0] = _mm512_shuffle_ps(t[4 * k], t[4 * k + 2], 0x44);
        u[4 * k + 1] = _mm512_shuffle_ps(t[4 * k], t[4 * k + 2], 0xEE);
        u[4 * k + 2] = _mm512_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0x44);
        u[4 * k + 3] = _mm512_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0xEE);
    }
    for (int c = 0; c < 4; c++) { /* u[4k + c], 128-bit lane L: rows 4k..4k+3 of column 4L + c */
        const __m512 a = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88), b = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xDD);
        const __m512 a2 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88),
                     b2 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xDD);
        r[c] = _mm512_shuffle_f32x4(a, a2, 0x88);
        r[8 + c] = _mm512_shuffle_f32x4(a, a2, 0xDD);
        r[4 + c] = _mm512_shuffle_f32x4(b, b2, 0x88);
        r[12 + c] = _mm512_shuffle_f32x4(b, b2, 0xDD);
    }
}

static void avx512_attn_scores(const float *q, const float *k, int64_t ld, int64_t T, int64_t d, float scale, float *S,
                               int64_t lds, float *kt)
{
    const int64_t t16 = (T + 15) / 16 * 16;
    QD_ASSERT(T >= 1 && d >= 1 && ld >= d && lds >= t16);
    for (int64_t j0 = 0; j0 < t16; j0 += 16) /* K transposed [d][t16] in 16 x 16 blocks, zeros past T */
        for (int64_t c0 = 0; c0 < d; c0 += 16) {
            const __mmask16 mc = below(d - c0);
            __m512 r[16];
            for (int i = 0; i < 16; i++)
                r[i] = j0 + i < T ? _mm512_maskz_loadu_ps(mc, k + (j0 + i) * ld + c0) : _mm512_setzero_ps();
            transpose16(r);
            for (int64_t c = 0; c < QD_MIN((int64_t)16, d - c0); c++) _mm512_storeu_ps(kt + (c0 + c) * t16 + j0, r[c]);
        }
    const __m512 vs = _mm512_set1_ps(scale);
    for (int64_t i0 = 0; i0 < T; i0 += 6) { /* six query rows x up to 64 keys */
        const int64_t nr = QD_MIN((int64_t)6, T - i0);
        for (int64_t j0 = 0; j0 < t16; j0 += 64) {
            const int nb = (int)QD_MIN((int64_t)4, (t16 - j0) / 16);
            const float *qq = q + i0 * ld;
            float *ss = S + i0 * lds;
#define QD_SC(mr)                                                             \
    switch (nb) {                                                             \
    case 4: scores_block(mr, 4, qq, ld, kt, t16, d, j0, vs, ss, lds); break;  \
    case 3: scores_block(mr, 3, qq, ld, kt, t16, d, j0, vs, ss, lds); break;  \
    case 2: scores_block(mr, 2, qq, ld, kt, t16, d, j0, vs, ss, lds); break;  \
    default: scores_block(mr, 1, qq, ld, kt, t16, d, j0, vs, ss, lds); break; \
    }
            switch (nr) {
            case 6: QD_SC(6) break;
            case 5: QD_SC(5) break;
            case 4: QD_SC(4) break;
            case 3: QD_SC(3) break;
            case 2: QD_SC(2) break;
            default: QD_SC(1) break;
            }
#undef QD_SC
        }
    }
}

static void avx512_softmax_rows(float *S, int64_t rows, int64_t n, int64_t lds)
{
    const __m512 lo = _mm512_set1_ps(QD_EXP_LO);
    for (int64_t i = 0; i < rows; i++) {
        float *sr = S + i * lds;
        __m512 mx = _mm512_set1_ps(-INFINITY);
        for (int64_t j = 0; j < n; j += 16) mx = _mm512_mask_max_ps(mx, below(n - j), _mm512_loadu_ps(sr + j), mx);
        const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
        __m512 p = _mm512_setzero_ps(); /* the 16 partial sums */
        for (int64_t j = 0; j < n; j += 16) {
            const __mmask16 mk = below(n - j);
            const __m512 dlt = _mm512_sub_ps(_mm512_maskz_loadu_ps(mk, sr + j), m);
            __m512 e = qd_exp_poly16(_mm512_max_ps(dlt, lo));
            e = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(dlt, lo, _CMP_NLT_UQ), e); /* below the range: 0 */
            _mm512_mask_storeu_ps(sr + j, mk, e);
            p = _mm512_mask_add_ps(p, mk, p, e);
        }
        const __m512 inv = _mm512_set1_ps(1.0f / reduce16(p));
        for (int64_t j = 0; j < n; j += 16) {
            const __mmask16 mk = below(n - j);
            _mm512_mask_storeu_ps(sr + j, mk, _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, sr + j), inv));
        }
    }
}

/* ctx rows [0, MR) x columns [0, 16 NB): the fma chain over j in order; a key's V loads serve MR rows.
 * FULL: every column real (plain loads and stores), else the first nc under masks. */
static inline __attribute__((always_inline)) void context_block(const int MR, const int NB, const int FULL,
                                                                const float *P, int64_t ldp, const float *v, int64_t ld,
                                                                int64_t T, int64_t nc, float *ctx, int64_t ldc)
{
    const __mmask16 m0 = below(nc), m1 = below(QD_MAX(nc - 16, 0)), m2 = below(QD_MAX(nc - 32, 0)),
                    m3 = below(QD_MAX(nc - 48, 0));
    __m512 acc[6][4];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
        for (int b = 0; b < NB; b++) acc[r][b] = _mm512_setzero_ps();
    for (int64_t j = 0; j < T; j++) {
        __m512 vv[4];
        const float *vr = v + j * ld;
#pragma GCC unroll 4
        for (int b = 0; b < NB; b++)
            vv[b] = FULL ? _mm512_loadu_ps(vr + 16 * b)
                         : _mm512_maskz_loadu_ps(b == 0   ? m0
                                                 : b == 1 ? m1
                                                 : b == 2 ? m2
                                                          : m3,
                                                 vr + 16 * b);
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            const __m512 x = _mm512_set1_ps(P[r * ldp + j]);
#pragma GCC unroll 4
            for (int b = 0; b < NB; b++) acc[r][b] = _mm512_fmadd_ps(x, vv[b], acc[r][b]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
        for (int b = 0; b < NB; b++) {
            if (FULL)
                _mm512_storeu_ps(ctx + r * ldc + 16 * b, acc[r][b]);
            else
                _mm512_mask_storeu_ps(ctx + r * ldc + 16 * b, b == 0 ? m0 : b == 1 ? m1 : b == 2 ? m2 : m3, acc[r][b]);
        }
}

static void avx512_attn_context(const float *P, int64_t ldp, const float *v, int64_t ld, int64_t T, int64_t d,
                                float *ctx, int64_t ldc)
{
    for (int64_t i0 = 0; i0 < T; i0 += 6) { /* six rows x up to 64 columns */
        const int64_t nr = QD_MIN((int64_t)6, T - i0);
        for (int64_t c = 0; c < d; c += 64) {
            const int64_t nc = QD_MIN((int64_t)64, d - c);
            const float *pp = P + i0 * ldp, *vv = v + c;
            float *o = ctx + i0 * ldc + c;
            const int nb = (int)((nc + 15) / 16), full = nc % 16 == 0;
#define QD_CX(mr)                                                                \
    if (full) {                                                                  \
        switch (nb) {                                                            \
        case 4: context_block(mr, 4, 1, pp, ldp, vv, ld, T, nc, o, ldc); break;  \
        case 3: context_block(mr, 3, 1, pp, ldp, vv, ld, T, nc, o, ldc); break;  \
        case 2: context_block(mr, 2, 1, pp, ldp, vv, ld, T, nc, o, ldc); break;  \
        default: context_block(mr, 1, 1, pp, ldp, vv, ld, T, nc, o, ldc); break; \
        }                                                                        \
    } else {                                                                     \
        switch (nb) {                                                            \
        case 4: context_block(mr, 4, 0, pp, ldp, vv, ld, T, nc, o, ldc); break;  \
        case 3: context_block(mr, 3, 0, pp, ldp, vv, ld, T, nc, o, ldc); break;  \
        case 2: context_block(mr, 2, 0, pp, ldp, vv, ld, T, nc, o, ldc); break;  \
        default: context_block(mr, 1, 0, pp, ldp, vv, ld, T, nc, o, ldc); break; \
        }                                                                        \
    }
            switch (nr) {
            case 6: QD_CX(6) break;
            case 5: QD_CX(5) break;
            case 4: QD_CX(4) break;
            case 3: QD_CX(3) break;
            case 2: QD_CX(2) break;
            default: QD_CX(1) break;
            }
#undef QD_CX
        }
    }
}

/* kernels.h exp_sum with 16-lane exp: the reference's eight partial sums take a vector's two halves
 * in order (x[i] before x[i + 8]), so the sum keeps its bits */
float qd_avx512_exp_sum(float *x, int64_t n, float m)
{
    const __m512 mv = _mm512_set1_ps(m), lo = _mm512_set1_ps(QD_EXP_LO);
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 dlt = _mm512_sub_ps(_mm512_loadu_ps(x + i), mv);
        __m512 e = qd_exp_poly16(_mm512_max_ps(dlt, lo));
        e = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(dlt, lo, _CMP_NLT_UQ), e); /* below the range: 0 */
        _mm512_storeu_ps(x + i, e);
        acc = _mm256_add_ps(acc, _mm512_castps512_ps256(e));
        acc = _mm256_add_ps(acc, _mm512_extractf32x8_ps(e, 1));
    }
    const int64_t n8 = n - n % 8;
    if (i < n8) { /* one more group of eight through the same lanes */
        const __m512 dlt = _mm512_sub_ps(_mm512_maskz_loadu_ps(0xFF, x + i), mv);
        __m512 e = qd_exp_poly16(_mm512_max_ps(dlt, lo));
        e = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(dlt, lo, _CMP_NLT_UQ), e);
        _mm512_mask_storeu_ps(x + i, 0xFF, e);
        acc = _mm256_add_ps(acc, _mm512_castps512_ps256(e));
        i += 8;
    }
    float lane[8];
    _mm256_storeu_ps(lane, acc);
    float s = 0.0f;
    for (int j = 0; j < 8; j++) s += lane[j];
    if (i < n) { /* the tail in order */
        const __mmask16 mk = below(n - i);
        const __m512 dlt = _mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + i), mv);
        __m512 e = qd_exp_poly16(_mm512_max_ps(dlt, lo));
        e = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(dlt, lo, _CMP_NLT_UQ), e);
        _mm512_mask_storeu_ps(x + i, mk, e);
        float t[16];
        _mm512_storeu_ps(t, e);
        for (int64_t k = 0; k < n - i; k++) s += t[k];
    }
    return s;
}

/* ---- FP32 GEMM ------------------------------------------------------------------------------------ */

/* C[MR][16 NP] = fma chain over the whole K of rows a (stride lda) and NP panels at b (panel stride
 * K * 16), + bias; the last panel stores nv_last columns. Constant MR and NP after inlining: the
 * accumulators live in registers. */
static inline __attribute__((always_inline)) void micro_f32(const int MR, const int NP, int64_t K, const float *a,
                                                            int64_t lda, const float *b, float *C, int64_t ldc,
                                                            const float *bias, int64_t nv_last)
{
    __m512 acc[8][3];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 3
        for (int p = 0; p < NP; p++) acc[r][p] = _mm512_setzero_ps();
    const int64_t ps = K * 16;
    for (int64_t k = 0; k < K; k++) {
        __m512 w[3];
#pragma GCC unroll 3
        for (int p = 0; p < NP; p++) w[p] = _mm512_load_ps(b + p * ps + 16 * k);
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            const __m512 x = _mm512_set1_ps(a[r * lda + k]);
#pragma GCC unroll 3
            for (int p = 0; p < NP; p++) acc[r][p] = _mm512_fmadd_ps(x, w[p], acc[r][p]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 3
        for (int p = 0; p < NP; p++) {
            __m512 o = acc[r][p];
            if (bias) o = _mm512_add_ps(o, _mm512_load_ps(bias + 16 * p));
            _mm512_mask_storeu_ps(C + r * ldc + 16 * p, p == NP - 1 ? below(nv_last) : 0xFFFF, o);
        }
}

#define QD_F32_CASE(mr, np)                                \
    case (mr)*4 + (np):                                    \
        micro_f32(mr, np, K, a, lda, b, C, ldc, bias, nv); \
        break;
#define QD_F32_ROW(mr) QD_F32_CASE(mr, 1) QD_F32_CASE(mr, 2) QD_F32_CASE(mr, 3)

static void micro_any(int mr, int np, int64_t K, const float *a, int64_t lda, const float *b, float *C, int64_t ldc,
                      const float *bias, int64_t nv)
{
    switch (mr * 4 + np) {
        QD_F32_ROW(1)
        QD_F32_ROW(2)
        QD_F32_ROW(3)
        QD_F32_ROW(4)
        QD_F32_ROW(5)
        QD_F32_ROW(6)
        QD_F32_ROW(7)
        QD_F32_ROW(8)
    default: QD_ASSERT(0);
    }
}

static void avx512_gemm_f32(const float *A, int64_t lda, int64_t M, const qd_gemm_wf *W, int64_t n0, int64_t n1,
                            float *C, int64_t ldc)
{
    QD_ASSERT(M >= 0 && lda >= W->K && ldc >= n1);
    QD_ASSERT(n0 >= 0 && n0 % 16 == 0 && n0 <= n1 && n1 <= W->N && (n1 % 16 == 0 || n1 == W->N));
    const int64_t p1 = (n1 + 15) / 16;
    for (int64_t p = n0 / 16; p < p1; p += 3) {
        const int np = (int)QD_MIN((int64_t)3, p1 - p);
        const int64_t nv = QD_MIN((int64_t)16, W->N - 16 * (p + np - 1));
        const float *b = W->w + p * W->K * 16, *bias = W->bias ? W->bias + 16 * p : NULL;
        for (int64_t m = 0; m < M; m += 8)
            micro_any((int)QD_MIN((int64_t)8, M - m), np, W->K, A + m * lda, lda, b, C + m * ldc + 16 * p, ldc, bias,
                      nv);
    }
}

int qd_kernels_fill_avx512_infer(qd_kernel_table *t)
{
    t->quantize_rows_u8 = avx512_quantize_rows_u8;
    t->layernorm = avx512_layernorm;
    t->col_absmax = avx512_col_absmax;
    t->gelu = avx512_gelu;
    t->exp_sum = qd_avx512_exp_sum;
    t->attn_scores = avx512_attn_scores;
    t->softmax_rows = avx512_softmax_rows;
    t->attn_context = avx512_attn_context;
    t->gemm_f32 = avx512_gemm_f32;
    return 1;
}
