/* AMX-INT8 GEMM of the inference path (kernels/gemm.h qd_gemm_u8_f32), bit-identical to
 * kernels/ref/gemm.c. Compiled with AMX-TILE/INT8 and AVX-512 flags; reached through the `amx`
 * table only after kernels/dispatch.c has checked the CPU and obtained the tile state from Linux.
 *
 * TDPBUSD multiplies 16 x 64 unsigned bytes (16 rows of u = a + 128, read in place with the row
 * stride) by 64 x 16 signed bytes and adds each group of four products into an int32 of the
 * 16 x 16 accumulator tile: exact, no saturation, the same integers as vpdpbusd. The byte layout of
 * the weights (kernels/gemm_pack.h) is the B tile layout: 16 consecutive k quads of a panel are one
 * 1 KiB tile. Blocks of 32 rows x 32 channels accumulate in four tiles over K in steps of 64;
 * tiles go to memory and the AVX-512 epilogue applies - comp, the scales and the bias in the
 * reference's order. Rows that do not fill a tile run in a second configuration whose tiles have
 * just those rows. K not a multiple of 64 (an A tile would read past a row) goes to the AVX-512
 * VNNI kernel. */
#include <stdint.h>
#include <string.h>

#include "kernels/gemm_pack.h"
#include "kernels/infer_isa.h"
#include "kernels/kernels.h"

#if defined(__AMX_TILE__) && defined(__AMX_INT8__) && defined(__AVX512F__)
#include <immintrin.h>

typedef struct {
    uint8_t palette, start;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tilecfg;

/* tiles 0-3: C (rows x 64 bytes of int32), 4-5: A (rows x 64 bytes), 6-7: B (16 x 64 bytes) */
static void configure(int rows)
{
    tilecfg c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int t = 0; t < 8; t++) {
        c.colsb[t] = 64;
        c.rows[t] = (uint8_t)(t < 6 ? rows : 16);
    }
    _tile_loadconfig(&c);
}

static inline __mmask16 below(int64_t rem) { return (__mmask16)(rem >= 16 ? 0xFFFF : (1u << rem) - 1u); }

/* the epilogue of one stored 16 x 16 tile: rows [0, nr) of output columns n .. n + nv */
static void epilogue(const int32_t *t, int64_t nr, const qd_gemm_w8 *W, int64_t n, int64_t nv, const float *as,
                     float *C, int64_t ldc)
{
    const __m512i cp = _mm512_load_si512((const void *)(W->comp + n));
    const __m512 sc = _mm512_load_ps(W->scales + n);
    const __m512 bi = W->bias ? _mm512_load_ps(W->bias + n) : _mm512_setzero_ps();
    const __mmask16 mk = below(nv);
    for (int64_t r = 0; r < nr; r++) {
        __m512 v = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_load_si512((const void *)(t + 16 * r)), cp));
        v = _mm512_mul_ps(_mm512_mul_ps(v, _mm512_set1_ps(as[r])), sc);
        if (W->bias) v = _mm512_add_ps(v, bi);
        _mm512_mask_storeu_ps(C + r * ldc + n, mk, v);
    }
}

/* rows [m, m + 16 * nt) (nt 1 or 2 row tiles, each of the configured rows) x panels p, p + 1 (two
 * when p2) over the whole K */
static void block(const uint8_t *A, int64_t lda, const float *as, int64_t m, int nt, int64_t rows, const qd_gemm_w8 *W,
                  int64_t p, int p2, float *C, int64_t ldc, int32_t *buf)
{
    const int64_t nkb = W->K / 64, ps = W->kq * 64;
    const uint8_t *a0 = A + m * lda, *a1 = a0 + 16 * lda;
    const int8_t *b0 = W->v + p * ps, *b1 = b0 + ps;
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t kb = 0; kb < nkb; kb++) {
        _tile_loadd(4, a0 + 64 * kb, lda);
        _tile_loadd(6, b0 + 1024 * kb, 64);
        _tile_dpbusd(0, 4, 6);
        if (p2) {
            _tile_loadd(7, b1 + 1024 * kb, 64);
            _tile_dpbusd(1, 4, 7);
        }
        if (nt == 2) {
            _tile_loadd(5, a1 + 64 * kb, lda);
            _tile_dpbusd(2, 5, 6);
            if (p2) _tile_dpbusd(3, 5, 7);
        }
    }
    _tile_stored(0, buf, 64);
    if (p2) _tile_stored(1, buf + 256, 64);
    if (nt == 2) {
        _tile_stored(2, buf + 512, 64);
        if (p2) _tile_stored(3, buf + 768, 64);
    }
    for (int h = 0; h < nt; h++) {
        const int64_t nr = QD_MIN((int64_t)16, rows - 16 * h);
        for (int q = 0; q <= p2; q++) {
            const int64_t n = 16 * (p + q);
            epilogue(buf + 512 * h + 256 * q, nr, W, n, QD_MIN((int64_t)16, W->N - n), as + m + 16 * h,
                     C + (m + 16 * h) * ldc, ldc);
        }
    }
}

static void amx_gemm_u8_f32(const uint8_t *A, int64_t lda, const float *a_scales, int64_t M, const qd_gemm_w8 *W,
                            int64_t n0, int64_t n1, float *C, int64_t ldc)
{
    QD_ASSERT(M >= 0 && lda >= W->K && ldc >= n1);
    QD_ASSERT(n0 >= 0 && n0 % 16 == 0 && n0 <= n1 && n1 <= W->N && (n1 % 16 == 0 || n1 == W->N));
    if (W->layout != QD_GEMM_LAYOUT_VNNI) {
        qd_kernels_table("avx2")->gemm_u8_f32(A, lda, a_scales, M, W, n0, n1, C, ldc);
        return;
    }
    if (M < 16 || W->K % 64) { /* less than a tile of rows, or rows an A tile would overrun */
        qd_vnni512_gemm_u8_rows(A, lda, a_scales, M, W, n0, n1, C, ldc);
        return;
    }
    int32_t buf[4 * 256] __attribute__((aligned(64)));
    const int64_t p0 = n0 / 16, p1 = (n1 + 15) / 16, full = M / 16 * 16, rem = M - full;
    /* row chunks of A that stay in L2 while the weights stream past them once per chunk */
    const int64_t mc = QD_MAX((int64_t)32, (int64_t)(256 << 10) / W->K / 32 * 32);
    configure(16);
    for (int64_t c0 = 0; c0 < full; c0 += mc) {
        const int64_t c1 = QD_MIN(full, c0 + mc);
        for (int64_t p = p0; p < p1; p += 2)
            for (int64_t m = c0; m < c1; m += 32)
                block(A, lda, a_scales, m, c1 - m >= 32 ? 2 : 1, QD_MIN((int64_t)32, c1 - m), W, p, p + 1 < p1, C, ldc,
                      buf);
    }
    if (rem) {
        configure((int)rem);
        for (int64_t p = p0; p < p1; p += 2) block(A, lda, a_scales, full, 1, rem, W, p, p + 1 < p1, C, ldc, buf);
    }
    _tile_release();
}

/* ---- 4-bit weights --------------------------------------------------------------------------------
 * TDPBSSD (signed x signed bytes) on the activations as int8 again (u ^ 0x80, one pass over the
 * rows into scratch) and the weights unpacked to q - z in [-15, 15], a panel at a time, into B
 * tiles: the tile's sums are the reference's isum of a group exactly, with no compensation term.
 * One 16 x 16 output tile at a time keeps its 16 float accumulators in registers across the groups:
 * per group, the group's k blocks (up to 64 k each) accumulate in the C tile, which is stored and
 * folded in as acc = fma(scale, (float)isum, acc), the reference's order. */

/* tiles 0, 3, 4, 5: C of groups g = 0, 1, 2, 3 (mod 4) (rows x 16 int32); 1 and 6: A (rows x kb
 * bytes), 2 and 7: B (kb / 4 rows x 64 bytes), taken by even and odd groups */
static void configure_w4(int rows, int kb)
{
    tilecfg c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    /* every field written, the unused tiles' as 0 (written through the loop alone, they came out
     * uninitialised at -O2 and the load faulted) */
    for (int t = 0; t < 16; t++) {
        const int is_a = t == 1 || t == 6, is_b = t == 2 || t == 7;
        c.colsb[t] = (uint16_t)(t >= 8 ? 0 : is_a ? kb : 64);
        c.rows[t] = (uint8_t)(t >= 8 ? 0 : is_b ? kb / 4 : rows);
    }
    _tile_loadconfig(&c);
}

/* panel p's codes as q - z bytes in the B tile layout: [K / 4][16 channels][4] */
static void unpack_panel(const qd_gemm_w4 *W, int64_t p, int8_t *B)
{
    const int64_t K = W->K, spg = W->G / 8;
    const uint8_t *q = W->q + p * (K / 8) * 64;
    const __m512i m0f = _mm512_set1_epi8(0x0f), rep = _mm512_set1_epi32(0x01010101);
    for (int64_t g = 0; g < W->ng; g++) {
        const __m512i zb = _mm512_mullo_epi32(_mm512_load_si512((const void *)(W->zeros + (p * W->ng + g) * 16)), rep);
        for (int64_t s = g * spg; s < (g + 1) * spg; s++) { /* step s: quads 2s (low nibbles), 2s + 1 (high) */
            const __m512i raw = _mm512_load_si512((const void *)(q + 64 * s));
            _mm512_store_si512((void *)(B + 128 * s), _mm512_sub_epi8(_mm512_and_si512(raw, m0f), zb));
            _mm512_store_si512((void *)(B + 128 * s + 64),
                               _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(raw, 4), m0f), zb));
        }
    }
}

/* the group sums of group g into C tile `t`, through A tile `ta` and B tile `tb` */
#define QD_W4_GROUP(t, ta, tb, g)                             \
    do {                                                      \
        _tile_zero(t);                                        \
        for (int64_t k = (g)*G; k < ((g) + 1) * G; k += kb) { \
            _tile_loadd(ta, A + k, K);                        \
            _tile_loadd(tb, B + k * 16, 64);                  \
            _tile_dpbssd(t, ta, tb);                          \
        }                                                     \
    } while (0)

/* group g into the C tile of its slot g % 4 (tile numbers are immediates) */
static inline __attribute__((always_inline)) void w4_issue(const int8_t *A, int64_t K, const int8_t *B, int64_t G,
                                                           int64_t kb, int64_t g)
{
    switch (g & 3) {
    case 0: QD_W4_GROUP(0, 1, 2, g); break;
    case 1: QD_W4_GROUP(3, 6, 7, g); break;
    case 2: QD_W4_GROUP(4, 1, 2, g); break;
    default: QD_W4_GROUP(5, 6, 7, g); break;
    }
}

static inline __attribute__((always_inline)) void w4_store(int64_t g, int32_t *b)
{
    switch (g & 3) {
    case 0: _tile_stored(0, b, 64); break;
    case 1: _tile_stored(3, b, 64); break;
    case 2: _tile_stored(4, b, 64); break;
    default: _tile_stored(5, b, 64); break;
    }
}

/* rows [m, m + nr) (nr <= 16, the configured rows) x panel p, every group. Four C tiles take the
 * groups in turn, so that the tile unit has groups g + 1 .. g + 3 in flight (a tile product's
 * latency is several times its issue interval) while group g goes to memory; the vector unit folds
 * group g - 1, stored one turn earlier (a vector load right after the tile store of the same bytes
 * would wait for it), into registers. */
static void tile_w4(const int8_t *A, int64_t K, const int8_t *B, const qd_gemm_w4 *W, int64_t p, int64_t nr, int64_t kb,
                    const float *as, float *C, int64_t ldc, int32_t *buf)
{
    __m512 f[16];
#pragma GCC unroll 16
    for (int r = 0; r < 16; r++) f[r] = _mm512_setzero_ps();
    const int64_t G = W->G, ng = W->ng;
    for (int64_t g = 0; g < QD_MIN((int64_t)3, ng); g++) w4_issue(A, K, B, G, kb, g);
    for (int64_t g = 0; g <= ng; g++) {
        if (g < ng) {
            if (g + 3 < ng) w4_issue(A, K, B, G, kb, g + 3);
            w4_store(g, buf + 256 * (g & 1));
        }
        if (g == 0) continue;
        const int32_t *b = buf + 256 * ((g - 1) & 1);
        const __m512 sc = _mm512_load_ps(W->scales + (p * ng + g - 1) * 16);
#pragma GCC unroll 16
        for (int r = 0; r < 16; r++)
            if (r < nr)
                f[r] = _mm512_fmadd_ps(sc, _mm512_cvtepi32_ps(_mm512_load_si512((const void *)(b + 16 * r))), f[r]);
    }
    const int64_t n = 16 * p, nv = QD_MIN((int64_t)16, W->N - n);
    const __m512 bi = W->bias ? _mm512_load_ps(W->bias + n) : _mm512_setzero_ps();
#pragma GCC unroll 16
    for (int r = 0; r < 16; r++)
        if (r < nr) {
            __m512 v = _mm512_mul_ps(f[r], _mm512_set1_ps(as[r]));
            if (W->bias) v = _mm512_add_ps(v, bi);
            _mm512_mask_storeu_ps(C + r * ldc + n, below(nv), v);
        }
}
#undef QD_W4_GROUP

static void amx_gemm_u8w4_f32(const uint8_t *A, int64_t lda, const float *a_scales, int64_t M, const qd_gemm_w4 *W,
                              int64_t n0, int64_t n1, float *C, int64_t ldc)
{
    QD_ASSERT(M >= 0 && lda >= W->K && ldc >= n1);
    QD_ASSERT(n0 >= 0 && n0 % 16 == 0 && n0 <= n1 && n1 <= W->N && (n1 % 16 == 0 || n1 == W->N));
    const int64_t K = W->K, G = W->G, kb = G <= 64 ? G : 64;
    /* groups of whole 4-k quads that a tile row can hold (or whole 64-k blocks), and full groups */
    /* below 8 rows the tiles are mostly empty: the vpdpbusd kernel does better */
    if (W->layout != QD_GEMM_LAYOUT_VNNI || G % 4 || (G > 64 && G % 64) || K % G || M < 8) {
        qd_kernels_table("avx512vnni")->gemm_u8w4_f32(A, lda, a_scales, M, W, n0, n1, C, ldc);
        return;
    }
    if (M == 0 || n0 == n1) return;
    int8_t *As = qd_kernels_scratch(QD_SCRATCH_A, (size_t)(M * K) + 64);
    /* panels unpacked a chunk at a time (about 128 KiB, at least one panel), so that a tile
     * configuration (LDTILECFG costs about a third of a panel's products at a sentence's rows)
     * serves every panel of the chunk instead of one */
    const int64_t p0 = n0 / 16, p1 = (n1 + 15) / 16, pc = QD_MAX((int64_t)1, (int64_t)(128 << 10) / (K * 16));
    int8_t *B = qd_kernels_scratch(QD_SCRATCH_PACK, (size_t)(QD_MIN(pc, p1 - p0) * K * 16) + 64);
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    for (int64_t m = 0; m < M; m++) /* the int8 codes again: a = u ^ 0x80 */
        for (int64_t k = 0; k < K; k += 64) {
            const __mmask64 mk = K - k >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (K - k)) - 1);
            _mm512_mask_storeu_epi8(As + m * K + k, mk,
                                    _mm512_xor_si512(_mm512_maskz_loadu_epi8(mk, A + m * lda + k), flip));
        }
    int32_t buf[512] __attribute__((aligned(64)));
    const int64_t full = M / 16 * 16, rem = M - full;
    for (int64_t c0 = p0; c0 < p1; c0 += pc) {
        const int64_t c1 = QD_MIN(p1, c0 + pc);
        for (int64_t p = c0; p < c1; p++) unpack_panel(W, p, B + (p - c0) * K * 16);
        if (full) {
            configure_w4(16, (int)kb);
            for (int64_t p = c0; p < c1; p++)
                for (int64_t m = 0; m < full; m += 16)
                    tile_w4(As + m * K, K, B + (p - c0) * K * 16, W, p, 16, kb, a_scales + m, C + m * ldc, ldc, buf);
        }
        if (rem) {
            configure_w4((int)rem, (int)kb);
            for (int64_t p = c0; p < c1; p++)
                tile_w4(As + full * K, K, B + (p - c0) * K * 16, W, p, rem, kb, a_scales + full, C + full * ldc, ldc,
                        buf);
        }
    }
    _tile_release();
}

int qd_kernels_fill_amx_int8(qd_kernel_table *t)
{
    t->gemm_u8_f32 = amx_gemm_u8_f32;
    t->gemm_u8w4_f32 = amx_gemm_u8w4_f32;
    return 1;
}

#else

int qd_kernels_fill_amx_int8(qd_kernel_table *t)
{
    (void)t;
    return 0;
}

#endif
