/* kernels/gemm_u8_24.h — the inference engine's 2:4 sparse int8 GEMM: u8-coded activations
 * (u = a + 128, qd_quantize_rows_u8) times int8 weights of which every group of 4 consecutive
 * input columns keeps at most 2 nonzeros (`qdist quantize --sparsity 2:4`), output columns
 * [n0, n1) in float, exactly the results of the dense qd_gemm_u8_f32 on the same weights with the
 * pruned ones as 0: acc = Σ_k (u[k] - 128) · w[n][k] in exact int32, then
 * ((float)acc · a_scale[m]) · w_scale[n] (+ bias[n]).
 *
 * The packed form is compact: one byte per kept value and 2 bits for its position (0.625 bytes
 * per weight of the dense matrix; the dense byte layout holds 1), so a call streams 5/8 of the
 * dense GEMM's weight bytes and does half of its multiplies. The scalar reference
 * (kernels/ref/gemm_u8_24.c) defines the results; the vector versions give the same bits: AVX-512
 * VNNI (kernels/avx512vnni/gemm_u8_24.c, which also needs AVX-512 VBMI to widen the positions),
 * AVX-VNNI (kernels/avxvnni/gemm_u8_24.c) and AVX2 (kernels/avx2/gemm_u8_24.c), the last two on
 * one 256-bit body (kernels/avx2/gemm_u8_24_ymm.h). The ref table has no vector version:
 * qd_gemm_u24_isa() then says so and the engine keeps such Linears on its dense GEMM.
 *
 * Single-threaded and reentrant, like the dense GEMMs. */
#ifndef QD_KERNELS_GEMM_U8_24_H
#define QD_KERNELS_GEMM_U8_24_H

#include <stddef.h>
#include <stdint.h>

typedef struct qd_gemm_u24 qd_gemm_u24;

/* w[n * ldw + k] int8 weights, 2:4 sparse (K need not be a multiple of 4 or 8: the last groups
 * are padded with zeros), scales[N] per output channel, bias[N] or NULL (copied). 0, or QD_EINVAL
 * (message naming the row and group that keep more than 2) / QD_ENOMEM. */
int qd_gemm_u24_create(const int8_t *w, int64_t N, int64_t K, int64_t ldw, const float *scales, const float *bias,
                       qd_gemm_u24 **out);
void qd_gemm_u24_free(qd_gemm_u24 *w);
size_t qd_gemm_u24_bytes(const qd_gemm_u24 *w);
/* out[n] = scale[n] * w[n][k] for n < N (the float outlier columns of the engine) */
void qd_gemm_u24_column(const qd_gemm_u24 *W, int64_t k, float *out);

typedef void (*qd_gemm_u8w24_fn)(const uint8_t *A, int64_t lda, const float *a_scales, int64_t M, const qd_gemm_u24 *W,
                                 int64_t n0, int64_t n1, float *C, int64_t ldc);
typedef struct {
    const char *isa;
    qd_gemm_u8w24_fn f32;
} qd_gemm_u24_fns;

/* The version for a kernel table, by the table's name: "ref" always; "avx512vnni" and "amx" where
 * this CPU has AVX-512 VNNI and VBMI (a 256-bit version loses to their dense GEMM from 2-4 rows);
 * "avxvnni": AVX-VNNI; "avx2" and "avx512" (whose int8 GEMM is the AVX2 one): AVX2; NULL otherwise
 * (tests and benches compare them; qd_gemm_u24_fns.isa names the version). */
const qd_gemm_u24_fns *qd_gemm_u24_table(const char *isa);
/* The vector version for the selected kernel table ("vnni+vbmi", "avx-vnni", "avx2"), or NULL when
 * there is none (the reference only: the engine runs 2:4 Linears dense then). */
const char *qd_gemm_u24_isa(void);
/* Calls of fewer rows than this are faster on that version than on the same table's dense int8
 * GEMM (one thread, BERT-base shapes, build/bench/bench_gemm_u8_24): 8 against AMX tiles (which
 * take over from 16 rows), 40 against AVX-VNNI, 12 against AVX2; 0 without a version. */
int64_t qd_gemm_u24_rows(void);

/* Through the selected table's version (the reference where there is none). A[m * lda + k]
 * (lda >= K), C[m * ldc + n]; n0 a multiple of 16, n1 one too or N. */
void qd_gemm_u8w24_f32(const uint8_t *A, int64_t lda, const float *a_scales, int64_t M, const qd_gemm_u24 *W,
                       int64_t n0, int64_t n1, float *C, int64_t ldc);

/* ---- layout (for kernels/ only) --------------------------------------------------------------
 * Panels of 16 output channels; per panel the steps of 8 k (ns = ceil(K / 8)), each 64 bytes of
 * values and 16 bytes of positions:
 *   val[(p * ns + s) * 64 + 4 * c + j]  (int8) kept value j of channel 16p + c in k 8s .. 8s + 7:
 *       j = 0, 1 from the group 8s .. 8s + 3, j = 2, 3 from 8s + 4 .. 8s + 7, ascending
 *   sel[(p * ns + s) * 16 + c]          (uint8) bits 2j, 2j + 1: the position (0..3) of value j in
 *       its group. A group keeping fewer than 2 stores value 0 at an unused position.
 * comp[n] = 128 Σ_k w[n][k] (u = a + 128). Channels past N have value 0, scale 0, bias 0. */
struct qd_gemm_u24 {
    int64_t N, K, np, ns;
    int8_t *val;
    uint8_t *sel;
    int32_t *comp; /* [np * 16] */
    float *scales; /* [np * 16] */
    float *bias;   /* [np * 16] or NULL */
};

void qd_gemm_u24_fill_ref(qd_gemm_u24_fns *t);    /* kernels/ref/gemm_u8_24.c */
int qd_gemm_u24_fill_vnni512(qd_gemm_u24_fns *t); /* kernels/avx512vnni/gemm_u8_24.c: 0 in a stub */
int qd_gemm_u24_fill_avxvnni(qd_gemm_u24_fns *t); /* kernels/avxvnni/gemm_u8_24.c: 0 in a stub */
int qd_gemm_u24_fill_avx2(qd_gemm_u24_fns *t);    /* kernels/avx2/gemm_u8_24.c: 0 in a stub */

#endif
