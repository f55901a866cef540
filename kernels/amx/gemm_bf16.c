/* AMX-BF16 GEMM (kernels/gemm_bf16.h). Compiled with AMX and AVX-512 flags; called only after
 * kernels/dispatch.c has checked the CPU and obtained the tile state from the OS.
 *
 * Layout: K and N padded with zeros to multiples of 32, M to a multiple of 64 in the workspace.
 * B tiles: for each 16-column block nb and 32-deep block kb, 16 rows of 64 bytes, row kr holding
 * (B[kb*32 + 2kr][n], B[kb*32 + 2kr + 1][n]) for the 16 columns n (the pair layout TDPBF16PS
 * reads), for B's hi and lo parts. A: hi and lo in tiles of 16 rows x 32 values, [Mp/16][Kp/32].
 * Each 64x16 block of Y accumulates in four tiles (one per 16 rows) over kb in order: Ahi Bhi,
 * Alo Bhi, Ahi Blo for each kb, so a row's result does not depend on the rows beside it. */
#include <stdlib.h>
#include <string.h>

#include "common/qd_common.h"
#include "kernels/amx/gemm_bf16_amx.h"

#if defined(__AMX_TILE__) && defined(__AMX_BF16__)
#include <immintrin.h>

struct qd_gemm_bf16 {
    int64_t K, N, Kp, Np;
    uint16_t *B, *Blo;   /* [Np/16][Kp/32][16][16][2]: bf16(B) and bf16(B - bf16(B)) */
    uint16_t *ahi, *alo; /* workspace [Mcap][Kp] */
    float *out;          /* one 16x16 tile */
    int64_t mcap;
};

typedef struct {
    uint8_t palette, start;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tilecfg;

/* float -> bfloat16, nearest even (inputs finite) */
static inline uint16_t bf16(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static inline float from_bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

/* the same rounding for 16 floats: hi = bf16(x), lo = bf16(x - hi) */
static inline __m512i bf16x16(__m512 x)
{
    const __m512i u = _mm512_castps_si512(x);
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    return _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7FFF))), 16);
}
static inline void split16(__m512 x, uint16_t *hi, uint16_t *lo)
{
    const __m512i h = bf16x16(x);
    const __m512 hf = _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
    _mm256_storeu_si256((__m256i *)hi, _mm512_cvtepi32_epi16(h));
    _mm256_storeu_si256((__m256i *)lo, _mm512_cvtepi32_epi16(bf16x16(_mm512_sub_ps(x, hf))));
}

qd_gemm_bf16 *qd_gemm_bf16_amx_create(const float *B, int64_t K, int64_t N)
{
    qd_gemm_bf16 *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->K = K;
    g->N = N;
    g->Kp = (K + 31) / 32 * 32;
    g->Np = (N + 31) / 32 * 32;
    g->B = aligned_alloc(64, (size_t)(g->Kp * g->Np) * sizeof(uint16_t));
    g->Blo = aligned_alloc(64, (size_t)(g->Kp * g->Np) * sizeof(uint16_t));
    g->out = aligned_alloc(64, 16 * 16 * sizeof(float));
    if (!g->B || !g->Blo || !g->out) {
        free(g->B);
        free(g->Blo);
        free(g->out);
        free(g);
        return NULL;
    }
    const int64_t nkb = g->Kp / 32;
    for (int64_t nb = 0; nb < g->Np / 16; nb++)
        for (int64_t kb = 0; kb < nkb; kb++) {
            uint16_t *t = g->B + ((nb * nkb + kb) * 16) * 32, *tl = g->Blo + ((nb * nkb + kb) * 16) * 32;
            for (int kr = 0; kr < 16; kr++)
                for (int n = 0; n < 16; n++)
                    for (int p = 0; p < 2; p++) {
                        int64_t k = kb * 32 + 2 * kr + p, c = nb * 16 + n;
                        const float x = k < K && c < N ? B[k * N + c] : 0.0f;
                        const uint16_t h = bf16(x);
                        t[kr * 32 + n * 2 + p] = h;
                        tl[kr * 32 + n * 2 + p] = bf16(x - from_bf16(h));
                    }
        }
    return g;
}

void qd_gemm_bf16_amx_free(qd_gemm_bf16 *g)
{
    if (!g) return;
    free(g->B);
    free(g->Blo);
    free(g->ahi);
    free(g->alo);
    free(g->out);
    free(g);
}

int qd_gemm_bf16_amx_run(qd_gemm_bf16 *g, const float *A, int64_t M, int64_t lda, float alpha, float *Y, int64_t ldy)
{
    const int64_t Kp = g->Kp, K = g->K, N = g->N, Mp = (M + 63) / 64 * 64, nkb = Kp / 32;
    if (Mp > g->mcap) {
        free(g->ahi);
        free(g->alo);
        g->ahi = aligned_alloc(64, (size_t)(Mp * Kp) * sizeof(uint16_t));
        g->alo = aligned_alloc(64, (size_t)(Mp * Kp) * sizeof(uint16_t));
        if (!g->ahi || !g->alo) {
            free(g->ahi);
            free(g->alo);
            g->ahi = g->alo = NULL;
            g->mcap = 0;
            return QD_ENOMEM;
        }
        g->mcap = Mp;
        memset(g->ahi, 0, (size_t)(Mp * Kp) * sizeof(uint16_t));
        memset(g->alo, 0, (size_t)(Mp * Kp) * sizeof(uint16_t));
    }
    /* A's parts in tile order: [Mp/16][Kp/32] tiles of 16 rows x 32 values (1 KiB each), so a
     * tile load reads 16 consecutive cache lines */
    for (int64_t r = 0; r < Mp; r++) {
        uint16_t *hi = g->ahi + (r / 16) * 16 * Kp + (r % 16) * 32, *lo = g->alo + (hi - g->ahi);
        const float *a = A + r * lda;
        for (int64_t kb = 0; kb < nkb; kb++) {
            uint16_t *th = hi + kb * 512, *tl = lo + kb * 512;
            for (int64_t k = 0; k < 32; k += 16) {
                const int64_t kk = kb * 32 + k;
                const __mmask16 valid = r >= M || kk >= K ? 0
                                        : K - kk >= 16    ? 0xFFFF
                                                          : (__mmask16)((1u << (K - kk)) - 1);
                split16(_mm512_maskz_loadu_ps(valid, a + (valid ? kk : 0)), th + k, tl + k);
            }
        }
    }
    tilecfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.rows[t] = 16;
        cfg.colsb[t] = 64;
    }
    _tile_loadconfig(&cfg);
    const __m512 al = _mm512_set1_ps(alpha);
    /* 64 rows x 16 columns at a time in four tiles: each B tile is read once per call */
    for (int64_t nb = 0; nb * 16 < N; nb++) { /* blocks past N are all padding */
        const uint16_t *bh = g->B + (nb * nkb) * 512, *bl = g->Blo + (nb * nkb) * 512;
        const __mmask16 cols = N - nb * 16 >= 16 ? 0xFFFF : (__mmask16)((1u << (N - nb * 16)) - 1);
        for (int64_t m0 = 0; m0 < Mp; m0 += 64) {
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            const uint16_t *h = g->ahi + m0 * Kp, *l = g->alo + m0 * Kp;
            const int64_t band = 16 * Kp; /* one 16-row band of tiles */
            for (int64_t kb = 0; kb < nkb; kb++) {
                const int64_t o = kb * 512;
                _tile_loadd(6, bh + o, 64);
                _tile_loadd(4, h + o, 64);
                _tile_loadd(5, l + o, 64);
                _tile_dpbf16ps(0, 4, 6);
                _tile_dpbf16ps(0, 5, 6);
                _tile_loadd(4, h + band + o, 64);
                _tile_loadd(5, l + band + o, 64);
                _tile_dpbf16ps(1, 4, 6);
                _tile_dpbf16ps(1, 5, 6);
                _tile_loadd(4, h + 2 * band + o, 64);
                _tile_loadd(5, l + 2 * band + o, 64);
                _tile_dpbf16ps(2, 4, 6);
                _tile_dpbf16ps(2, 5, 6);
                _tile_loadd(4, h + 3 * band + o, 64);
                _tile_loadd(5, l + 3 * band + o, 64);
                _tile_dpbf16ps(3, 4, 6);
                _tile_dpbf16ps(3, 5, 6);
                _tile_loadd(7, bl + o, 64);
                _tile_loadd(4, h + o, 64);
                _tile_loadd(5, h + band + o, 64);
                _tile_dpbf16ps(0, 4, 7);
                _tile_dpbf16ps(1, 5, 7);
                _tile_loadd(4, h + 2 * band + o, 64);
                _tile_loadd(5, h + 3 * band + o, 64);
                _tile_dpbf16ps(2, 4, 7);
                _tile_dpbf16ps(3, 5, 7);
            }
            for (int t = 0; t < 4; t++) {
                switch (t) {
                case 0: _tile_stored(0, g->out, 64); break;
                case 1: _tile_stored(1, g->out, 64); break;
                case 2: _tile_stored(2, g->out, 64); break;
                default: _tile_stored(3, g->out, 64); break;
                }
                const int64_t r0 = m0 + t * 16;
                for (int64_t i = 0; i < 16 && r0 + i < M; i++)
                    _mm512_mask_storeu_ps(Y + (r0 + i) * ldy + nb * 16, cols,
                                          _mm512_mul_ps(al, _mm512_load_ps(g->out + i * 16)));
            }
        }
    }
    _tile_release();
    return QD_OK;
}

int qd_gemm_bf16_amx_built(void) { return 1; }

#else /* the compiler lacks AMX: never available */

qd_gemm_bf16 *qd_gemm_bf16_amx_create(const float *B, int64_t K, int64_t N)
{
    (void)B, (void)K, (void)N;
    return NULL;
}
void qd_gemm_bf16_amx_free(qd_gemm_bf16 *g) { (void)g; }
int qd_gemm_bf16_amx_run(qd_gemm_bf16 *g, const float *A, int64_t M, int64_t lda, float alpha, float *Y, int64_t ldy)
{
    (void)g, (void)A, (void)M, (void)lda, (void)alpha, (void)Y, (void)ldy;
    return QD_EINVAL;
}
int qd_gemm_bf16_amx_built(void) { return 0; }
#endif
