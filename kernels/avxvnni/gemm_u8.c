/* AVX-VNNI GEMMs of the inference path (kernels/gemm.h), for CPUs with the 256-bit vpdpbusd but
 * without AVX-512 (and as the avxvnni table on those with both): kernels/avx512vnni/gemm_u8.c's
 * scheme on 8 lanes, bit-identical to kernels/ref/gemm.c. A 16-channel panel of the byte layout is
 * two ymm halves. int8: 6 rows x 16 channels (12 accumulators); 4-bit: 4 rows x 8 channels, the
 * panel's two halves in turn. Exactness as in the AVX-512 file: vpdpbusd adds four u8 x s8
 * products into int32 with no int16 step and no saturation.
 * Compiled with -mavx2 -mfma -mavxvnni; a stub without those flags. */
#include <stdint.h>
#include <string.h>

#include "kernels/gemm_pack.h"
#include "kernels/infer_isa.h"
#include "kernels/kernels.h"

#if defined(__AVXVNNI__) && defined(__AVX2__)
#include <immintrin.h>

#define MR8 6
#define MR4 4

static inline __m256i lanes_below(int64_t rem)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)rem), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline int32_t dword_at(const uint8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}
static inline int32_t dword_tail(const uint8_t *p, int64_t rem)
{
    uint8_t b[4] = {0, 0, 0, 0};
    memcpy(b, p, (size_t)rem);
    return dword_at(b);
}
static inline void store8(float *out, __m256 v, int64_t nv)
{
    if (nv >= 8)
        _mm256_storeu_ps(out, v);
    else if (nv > 0)
        _mm256_maskstore_ps(out, lanes_below(nv), v);
}

/* rows [0, mr) (mr <= 6; missing rows repeat row 0 and are not stored) x one 16-channel panel */
static void micro_u8(int64_t mr, const uint8_t *a, int64_t lda, int64_t K, const int8_t *b, const int32_t *comp,
                     const float *ws, const float *bias, const float *as, float *C, int64_t ldc, int64_t nv)
{
    const uint8_t *ar[MR8];
    for (int r = 0; r < MR8; r++) ar[r] = a + (r < mr ? r : 0) * lda;
    __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00,
            c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    const int64_t nq = (K + 3) / 4;
    for (int64_t j = 0; j < nq; j++) {
        const __m256i w0 = _mm256_load_si256((const __m256i *)(b + 64 * j));
        const __m256i w1 = _mm256_load_si256((const __m256i *)(b + 64 * j + 32));
        const int full = 4 * j + 4 <= K;
        __m256i x;
#define QD_ROW(r, ca, cb)                                                                         \
    x = _mm256_set1_epi32(full ? dword_at(ar[r] + 4 * j) : dword_tail(ar[r] + 4 * j, K - 4 * j)); \
    ca = _mm256_dpbusd_avx_epi32(ca, x, w0);                                                      \
    cb = _mm256_dpbusd_avx_epi32(cb, x, w1);
        QD_ROW(0, c00, c01)
        QD_ROW(1, c10, c11) QD_ROW(2, c20, c21) QD_ROW(3, c30, c31) QD_ROW(4, c40, c41) QD_ROW(5, c50, c51)
#undef QD_ROW
    }
    const __m256i acc[MR8][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    for (int h = 0; h < 2; h++) {
        const __m256i cp = _mm256_load_si256((const __m256i *)(comp + 8 * h));
        const __m256 sc = _mm256_load_ps(ws + 8 * h);
        const __m256 bi = bias ? _mm256_load_ps(bias + 8 * h) : _mm256_setzero_ps();
        for (int64_t r = 0; r < mr; r++) {
            __m256 v = _mm256_cvtepi32_ps(_mm256_sub_epi32(acc[r][h], cp));
            v = _mm256_mul_ps(_mm256_mul_ps(v, _mm256_set1_ps(as[r])), sc);
            if (bias) v = _mm256_add_ps(v, bi);
            store8(C + r * ldc + 8 * h, v, nv - 8 * h);
        }
    }
}

static void avxvnni_gemm_u8_f32(const uint8_t *A, int64_t lda, const float *a_scales, int64_t M, const qd_gemm_w8 *W,
                                int64_t n0, int64_t n1, float *C, int64_t ldc)
{
    QD_ASSERT(M >= 0 && lda >= W->K && ldc >= n1);
    QD_ASSERT(n0 >= 0 && n0 % 16 == 0 && n0 <= n1 && n1 <= W->N && (n1 % 16 == 0 || n1 == W->N));
    if (W->layout != QD_GEMM_LAYOUT_VNNI) {
        qd_kernels_table("avx2")->gemm_u8_f32(A, lda, a_scales, M, W, n0, n1, C, ldc);
        return;
    }
    for (int64_t p = n0 / 16; p < (n1 + 15) / 16; p++) {
        const int64_t nv = QD_MIN((int64_t)16, W->N - 16 * p);
        for (int64_t m = 0; m < M; m += MR8)
            micro_u8(QD_MIN((int64_t)MR8, M - m), A + m * lda, lda, W->K, W->v + p * W->kq * 64, W->comp + 16 * p,
                     W->scales + 16 * p, W->bias ? W->bias + 16 * p : NULL, a_scales + m, C + m * ldc + 16 * p, ldc,
                     nv);
    }
}

/* rows [0, mr) (mr <= 4) x channels 8h .. 8h + 7 of panel p, 4-bit weights */
static void micro_w4(int64_t mr, const uint8_t *a, int64_t lda, const qd_gemm_w4 *W, int64_t p, int h, const float *as,
                     float *C, int64_t ldc, int64_t nv)
{
    const int64_t ng = W->ng, spg = W->G / 8, K = W->K;
    const uint8_t *b = W->q + p * (K / 8) * 64 + 32 * h;
    const uint8_t *ar[MR4];
    for (int r = 0; r < MR4; r++) ar[r] = a + (r < mr ? r : 0) * lda;
    const __m256i m0f = _mm256_set1_epi8(0x0f), rep = _mm256_set1_epi32(0x01010101);
    __m256 f0 = _mm256_setzero_ps(), f1 = f0, f2 = f0, f3 = f0;
    for (int64_t g = 0; g < ng; g++) {
        const int64_t o = (p * ng + g) * 16 + 8 * h;
        const __m256i zb = _mm256_mullo_epi32(_mm256_load_si256((const __m256i *)(W->zeros + o)), rep);
        __m256i i0 = _mm256_setzero_si256(), i1 = i0, i2 = i0, i3 = i0;
        for (int64_t s = g * spg; s < QD_MIN((g + 1) * spg, K / 8); s++) {
            const __m256i raw = _mm256_load_si256((const __m256i *)(b + 64 * s));
            const __m256i lo = _mm256_sub_epi8(_mm256_and_si256(raw, m0f), zb);
            const __m256i hi = _mm256_sub_epi8(_mm256_and_si256(_mm256_srli_epi16(raw, 4), m0f), zb);
#define QD_ROW(r, acc)                                                                  \
    acc = _mm256_dpbusd_avx_epi32(acc, _mm256_set1_epi32(dword_at(ar[r] + 8 * s)), lo); \
    acc = _mm256_dpbusd_avx_epi32(acc, _mm256_set1_epi32(dword_at(ar[r] + 8 * s + 4)), hi);
            QD_ROW(0, i0) QD_ROW(1, i1) QD_ROW(2, i2) QD_ROW(3, i3)
#undef QD_ROW
        }
        const __m256i cp = _mm256_load_si256((const __m256i *)(W->comp + o));
        const __m256 sc = _mm256_load_ps(W->scales + o);
        f0 = _mm256_fmadd_ps(sc, _mm256_cvtepi32_ps(_mm256_sub_epi32(i0, cp)), f0);
        f1 = _mm256_fmadd_ps(sc, _mm256_cvtepi32_ps(_mm256_sub_epi32(i1, cp)), f1);
        f2 = _mm256_fmadd_ps(sc, _mm256_cvtepi32_ps(_mm256_sub_epi32(i2, cp)), f2);
        f3 = _mm256_fmadd_ps(sc, _mm256_cvtepi32_ps(_mm256_sub_epi32(i3, cp)), f3);
    }
    const __m256 f[MR4] = {f0, f1, f2, f3};
    const __m256 bi = W->bias ? _mm256_load_ps(W->bias + 16 * p + 8 * h) : _mm256_setzero_ps();
    for (int64_t r = 0; r < mr; r++) {
        __m256 v = _mm256_mul_ps(f[r], _mm256_set1_ps(as[r]));
        if (W->bias) v = _mm256_add_ps(v, bi);
        store8(C + r * ldc + 8 * h, v, nv - 8 * h);
    }
}

static void avxvnni_gemm_u8w4_f32(const uint8_t *A, int64_t lda, const float *a_scales, int64_t M, const qd_gemm_w4 *W,
                                  int64_t n0, int64_t n1, float *C, int64_t ldc)
{
    QD_ASSERT(M >= 0 && lda >= W->K && ldc >= n1);
    QD_ASSERT(n0 >= 0 && n0 % 16 == 0 && n0 <= n1 && n1 <= W->N && (n1 % 16 == 0 || n1 == W->N));
    if (W->layout != QD_GEMM_LAYOUT_VNNI) {
        qd_kernels_table("avx2")->gemm_u8w4_f32(A, lda, a_scales, M, W, n0, n1, C, ldc);
        return;
    }
    for (int64_t p = n0 / 16; p < (n1 + 15) / 16; p++) {
        const int64_t nv = QD_MIN((int64_t)16, W->N - 16 * p);
        for (int h = 0; h < 2 && 8 * h < nv; h++)
            for (int64_t m = 0; m < M; m += MR4)
                micro_w4(QD_MIN((int64_t)MR4, M - m), A + m * lda, lda, W, p, h, a_scales + m, C + m * ldc + 16 * p,
                         ldc, nv);
    }
}

int qd_kernels_fill_avxvnni(qd_kernel_table *t)
{
    t->layout = QD_GEMM_LAYOUT_VNNI;
    t->gemm_u8_f32 = avxvnni_gemm_u8_f32;
    t->gemm_u8w4_f32 = avxvnni_gemm_u8w4_f32;
    return 1;
}

#else

int qd_kernels_fill_avxvnni(qd_kernel_table *t)
{
    (void)t;
    return 0;
}

#endif
