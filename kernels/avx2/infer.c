/* AVX2 + FMA versions of the runtime's block pieces (kernels/infer.h) and of the FP32 GEMM of
 * kernels/gemm.h, with the reference's bits (kernels/ref/infer.c, kernels/ref/gemm.c): LayerNorm
 * keeps the sixteen partial sums of the reference in two 8-lane accumulators and reduces them by
 * the same halves; attention runs each score and each output as the reference's fma chain, eight
 * keys or eight output columns per vector; the GEMM is kernels/avx2/gemm_w4.c's 6 x 16 FMA
 * microkernel over the whole K of a packed panel. Compiled with -mavx2 -mfma -mf16c. */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/avx2/exp_poly.h"
#include "kernels/gemm_pack.h"
#include "kernels/infer.h"
#include "kernels/infer_isa.h"
#include "kernels/kernels.h"

static inline __m256i lanes_below(int64_t rem)
{ /* lanes [0, rem) set, rem in [0, 8] */
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)rem), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* lanes of the h-th block of eight among nc columns */
static inline __m256i block_mask(int64_t nc, int h) { return lanes_below(QD_MAX(QD_MIN(nc - 8 * h, (int64_t)8), 0)); }

/* p[l] += p[l + 8], then + 4, + 2, + 1: the reference's reduction of its 16 partial sums */
static inline float reduce16(__m256 lo, __m256 hi)
{
    const __m256 s = _mm256_add_ps(lo, hi);
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_shuffle_ps(a, a, 1));
    return _mm_cvtss_f32(a);
}

/* the partial sums p[i % 16] += v[i] of n values at y (stride 1), v = y or (y - mean)^2 */
static inline float sum16(const float *y, int64_t n, int sq, float mean)
{
    const __m256 mv = _mm256_set1_ps(mean);
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 a = _mm256_loadu_ps(y + i), b = _mm256_loadu_ps(y + i + 8);
        if (sq) {
            a = _mm256_sub_ps(a, mv), b = _mm256_sub_ps(b, mv);
            a = _mm256_mul_ps(a, a), b = _mm256_mul_ps(b, b);
        }
        lo = _mm256_add_ps(lo, a), hi = _mm256_add_ps(hi, b);
    }
    for (int h = 0; h < 2 && i < n; h++, i += 8) { /* the tail: lanes past n keep their sums */
        const __m256i mk = lanes_below(QD_MIN((int64_t)8, n - i));
        __m256 a = _mm256_maskload_ps(y + i, mk);
        if (sq) a = _mm256_sub_ps(a, mv), a = _mm256_mul_ps(a, a);
        __m256 *acc = h ? &hi : &lo;
        *acc = _mm256_blendv_ps(*acc, _mm256_add_ps(*acc, a), _mm256_castsi256_ps(mk));
    }
    return reduce16(lo, hi);
}

static void avx2_layernorm(const float *x, const float *r, int64_t rows, int64_t n, int64_t ld, const float *g,
                           const float *b, float eps, float *y, float *sum)
{
    QD_ASSERT(n >= 1 && ld >= n);
    for (int64_t m = 0; m < rows; m++) {
        const float *xr = x + m * ld, *rr = r ? r + m * ld : NULL;
        float *yr = y + m * ld, *sr = sum ? sum + m * ld : NULL;
        int64_t i = 0;
        for (; i < n; i += 8) { /* v = x + r into y (and sum) */
            const __m256i mk = lanes_below(QD_MIN((int64_t)8, n - i));
            __m256 v = _mm256_maskload_ps(xr + i, mk);
            if (rr) v = _mm256_add_ps(v, _mm256_maskload_ps(rr + i, mk));
            _mm256_maskstore_ps(yr + i, mk, v);
            if (sr) _mm256_maskstore_ps(sr + i, mk, v);
        }
        const float mean = sum16(yr, n, 0, 0.0f) / (float)n;
        const float var = sum16(yr, n, 1, mean) / (float)n;
        const __m256 mv = _mm256_set1_ps(mean), rs = _mm256_set1_ps(1.0f / sqrtf(var + eps));
        for (i = 0; i < n; i += 8) {
            const __m256i mk = lanes_below(QD_MIN((int64_t)8, n - i));
            const __m256 d = _mm256_sub_ps(_mm256_maskload_ps(yr + i, mk), mv);
            const __m256 o = _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(d, rs), _mm256_maskload_ps(g + i, mk)),
                                           _mm256_maskload_ps(b + i, mk));
            _mm256_maskstore_ps(yr + i, mk, o);
        }
    }
}

static void avx2_col_absmax(const float *x, int64_t rows, int64_t K, int64_t ldx, const float *s, float *m)
{
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * ldx;
        for (int64_t k = 0; k < K; k += 8) {
            const __m256i mk = lanes_below(QD_MIN((int64_t)8, K - k));
            __m256 v = _mm256_maskload_ps(xr + k, mk);
            if (s) v = _mm256_mul_ps(v, _mm256_maskload_ps(s + k, mk));
            /* max(a, m): a NaN in a keeps m, as the reference's a > m ? a : m */
            _mm256_maskstore_ps(m + k, mk, _mm256_max_ps(_mm256_and_ps(v, absmask), _mm256_maskload_ps(m + k, mk)));
        }
    }
}

/* ---- attention ------------------------------------------------------------------------------- */

static void avx2_attn_scores(const float *q, const float *k, int64_t ld, int64_t T, int64_t d, float scale, float *S,
                             int64_t lds, float *kt)
{
    const int64_t t16 = (T + 15) / 16 * 16;
    QD_ASSERT(T >= 1 && d >= 1 && ld >= d && lds >= t16);
    for (int64_t c = 0; c < d; c++) { /* K transposed [d][t16], zeros past T */
        for (int64_t j = 0; j < T; j++) kt[c * t16 + j] = k[j * ld + c];
        for (int64_t j = T; j < t16; j++) kt[c * t16 + j] = 0.0f;
    }
    const __m256 vs = _mm256_set1_ps(scale);
    for (int64_t i0 = 0; i0 < T; i0 += 4) { /* four query rows, eight keys: fma chain over c in order */
        const int64_t nr = QD_MIN((int64_t)4, T - i0);
        const float *q0 = q + i0 * ld, *q1 = q0 + (nr > 1) * ld, *q2 = q0 + (nr > 2) * 2 * ld,
                    *q3 = q0 + (nr > 3) * 3 * ld;
        float *s0 = S + i0 * lds, *s1 = s0 + (nr > 1) * lds, *s2 = s0 + (nr > 2) * 2 * lds,
              *s3 = s0 + (nr > 3) * 3 * lds;
        for (int64_t j = 0; j < t16; j += 8) {
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int64_t c = 0; c < d; c++) {
                const __m256 kv = _mm256_loadu_ps(kt + c * t16 + j);
                a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(q0 + c), kv, a0);
                a1 = _mm256_fmadd_ps(_mm256_broadcast_ss(q1 + c), kv, a1);
                a2 = _mm256_fmadd_ps(_mm256_broadcast_ss(q2 + c), kv, a2);
                a3 = _mm256_fmadd_ps(_mm256_broadcast_ss(q3 + c), kv, a3);
            }
            /* missing rows alias row 0 and store its values again (the same bits) */
            _mm256_storeu_ps(s3 + j, _mm256_mul_ps(a3, vs));
            _mm256_storeu_ps(s2 + j, _mm256_mul_ps(a2, vs));
            _mm256_storeu_ps(s1 + j, _mm256_mul_ps(a1, vs));
            _mm256_storeu_ps(s0 + j, _mm256_mul_ps(a0, vs));
        }
    }
}

static void avx2_softmax_rows(float *S, int64_t rows, int64_t n, int64_t lds)
{
    for (int64_t i = 0; i < rows; i++) {
        float *sr = S + i * lds;
        __m256 mx = _mm256_set1_ps(-INFINITY);
        for (int64_t j = 0; j < n; j += 8) { /* lanes past n keep the running maximum */
            const __m256i mk = lanes_below(QD_MIN((int64_t)8, n - j));
            mx = _mm256_max_ps(_mm256_blendv_ps(mx, _mm256_maskload_ps(sr + j, mk), _mm256_castsi256_ps(mk)), mx);
        }
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
        const __m256 m = _mm256_set1_ps(_mm_cvtss_f32(h));
        __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps(); /* the 16 partial sums, halves */
        for (int64_t j = 0; j < n; j += 8) {
            const __m256i mk = lanes_below(QD_MIN((int64_t)8, n - j));
            const __m256 e = qd_exp8_lo(_mm256_sub_ps(_mm256_maskload_ps(sr + j, mk), m));
            _mm256_maskstore_ps(sr + j, mk, e);
            __m256 *acc = (j / 8) & 1 ? &hi : &lo;
            *acc = _mm256_blendv_ps(*acc, _mm256_add_ps(*acc, e), _mm256_castsi256_ps(mk));
        }
        const __m256 inv = _mm256_set1_ps(1.0f / reduce16(lo, hi));
        for (int64_t j = 0; j < n; j += 8) {
            const __m256i mk = lanes_below(QD_MIN((int64_t)8, n - j));
            _mm256_maskstore_ps(sr + j, mk, _mm256_mul_ps(_mm256_maskload_ps(sr + j, mk), inv));
        }
    }
}

static void avx2_attn_context(const float *P, int64_t ldp, const float *v, int64_t ld, int64_t T, int64_t d, float *ctx,
                              int64_t ldc)
{
    for (int64_t i = 0; i < T; i++) {
        const float *pr = P + i * ldp;
        float *out = ctx + i * ldc;
        for (int64_t c = 0; c < d; c += 32) { /* 32 output columns, fma chain over j in order */
            const int64_t nc = QD_MIN((int64_t)32, d - c);
            const __m256i m0 = block_mask(nc, 0), m1 = block_mask(nc, 1), m2 = block_mask(nc, 2),
                          m3 = block_mask(nc, 3);
            __m256 o0 = _mm256_setzero_ps(), o1 = o0, o2 = o0, o3 = o0;
            for (int64_t j = 0; j < T; j++) {
                const __m256 p = _mm256_broadcast_ss(pr + j);
                const float *vr = v + j * ld + c;
                o0 = _mm256_fmadd_ps(p, _mm256_maskload_ps(vr, m0), o0);
                if (nc > 8) o1 = _mm256_fmadd_ps(p, _mm256_maskload_ps(vr + 8, m1), o1);
                if (nc > 16) o2 = _mm256_fmadd_ps(p, _mm256_maskload_ps(vr + 16, m2), o2);
                if (nc > 24) o3 = _mm256_fmadd_ps(p, _mm256_maskload_ps(vr + 24, m3), o3);
            }
            _mm256_maskstore_ps(out + c, m0, o0);
            if (nc > 8) _mm256_maskstore_ps(out + c + 8, m1, o1);
            if (nc > 16) _mm256_maskstore_ps(out + c + 16, m2, o2);
            if (nc > 24) _mm256_maskstore_ps(out + c + 24, m3, o3);
        }
    }
}

/* ---- FP32 GEMM: packed 16-channel panels, 6 x 16 microkernel over the whole K ----------------- */

static void avx2_gemm_f32(const float *A, int64_t lda, int64_t M, const qd_gemm_wf *W, int64_t n0, int64_t n1, float *C,
                          int64_t ldc)
{
    QD_ASSERT(M >= 0 && lda >= W->K && ldc >= n1);
    QD_ASSERT(n0 >= 0 && n0 % 16 == 0 && n0 <= n1 && n1 <= W->N && (n1 % 16 == 0 || n1 == W->N));
    float tile[6 * 16];
    for (int64_t p = n0 / 16; p < (n1 + 15) / 16; p++) {
        const int64_t c0 = 16 * p, nv = QD_MIN((int64_t)16, W->N - c0);
        const float *b = W->w + p * W->K * 16;
        for (int64_t m = 0; m < M; m += 6) {
            const int64_t mr = QD_MIN((int64_t)6, M - m);
            const float *a[6];
            for (int r = 0; r < 6; r++) a[r] = A + (m + QD_MIN((int64_t)r, mr - 1)) * lda;
            float *c = C + m * ldc + c0;
            if (mr == 6 && nv == 16) {
                qd_avx2_micro_f32(W->K, a, b, c, ldc, 1);
            } else {
                qd_avx2_micro_f32(W->K, a, b, tile, 16, 1);
                for (int64_t r = 0; r < mr; r++) memcpy(c + r * ldc, tile + 16 * r, (size_t)nv * sizeof(float));
            }
            if (W->bias) /* acc + bias after the whole chain, as the reference */
                for (int64_t r = 0; r < mr; r++)
                    for (int h = 0; h < 2 && 8 * h < nv; h++) {
                        const __m256i mk = lanes_below(QD_MIN((int64_t)8, nv - 8 * h));
                        float *o = c + r * ldc + 8 * h;
                        _mm256_maskstore_ps(
                            o, mk, _mm256_add_ps(_mm256_maskload_ps(o, mk), _mm256_load_ps(W->bias + c0 + 8 * h)));
                    }
        }
    }
}

void qd_kernels_fill_avx2_infer(qd_kernel_table *t)
{
    t->layernorm = avx2_layernorm;
    t->col_absmax = avx2_col_absmax;
    t->attn_scores = avx2_attn_scores;
    t->softmax_rows = avx2_softmax_rows;
    t->attn_context = avx2_attn_context;
    t->gemm_f32 = avx2_gemm_f32;
}

#endif /* x86 */
