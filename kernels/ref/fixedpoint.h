/* kernels/ref/fixedpoint.h — the scalar fixed-point primitives that define the integer-only
 * kernels' bits (kernels/intops.h) and quant/fixed.h's public functions. Header-only so that the
 * reference kernels (below quant/) and quant/ share one definition; the vector versions
 * (kernels/avx2/intops.c, kernels/neon/intops.c) restate them lane by lane and the tests compare.
 *
 * Semantics are gemmlowp's (fixedpoint.h) and TFLite's default, double-rounding
 * MultiplyByQuantizedMultiplier:
 *   srdhm(a, b)       = round(a · b / 2^31), ties upward (the nudge 2^30, or 1 - 2^30 for a
 *                       negative product, then C division truncating toward zero); INT32_MIN ·
 *                       INT32_MIN, the one overflow, gives INT32_MAX;
 *   rdivpot(x, e)     = x / 2^e rounded to nearest, ties away from zero (0 <= e <= 31);
 *   mbqm(x, M0, sh)   = rdivpot(srdhm(x · 2^max(sh,0), M0), max(-sh,0)); the left shift saturates
 *                       (TFLite leaves that overflow undefined); |sh| > 31 acts as ±31.
 * The project's own stages (LayerNorm, GELU, softmax) round with rshift_up: floor(x / 2^n + 1/2),
 * i.e. ties upward, one add and one arithmetic shift in every ISA. */
#ifndef QD_REF_FIXEDPOINT_H
#define QD_REF_FIXEDPOINT_H

#include <stdint.h>

static inline int32_t qd_fx_sat32(int64_t v)
{
    return v > INT32_MAX ? INT32_MAX : v < INT32_MIN ? INT32_MIN : (int32_t)v;
}

static inline int32_t qd_fx_srdhm(int32_t a, int32_t b)
{
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    const int64_t ab = (int64_t)a * (int64_t)b;
    const int64_t nudge = ab >= 0 ? (1ll << 30) : (1 - (1ll << 30));
    return (int32_t)((ab + nudge) / (1ll << 31));
}

static inline int32_t qd_fx_rdivpot(int32_t x, int e)
{
    if (e <= 0) return x;
    if (e > 31) e = 31;
    const int32_t mask = (int32_t)((1ll << e) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> e) + (remainder > threshold ? 1 : 0);
}

static inline int32_t qd_fx_mbqm(int32_t x, int32_t M0, int shift)
{
    if (shift > 31) shift = 31;
    if (shift < -31) shift = -31;
    if (shift > 0) x = qd_fx_sat32((int64_t)x * ((int64_t)1 << shift));
    const int32_t r = qd_fx_srdhm(x, M0);
    return shift < 0 ? qd_fx_rdivpot(r, -shift) : r;
}

/* floor(x / 2^n + 1/2) for 0 <= n <= 62 (n = 0: x) */
static inline int64_t qd_fx_rshift_up(int64_t x, int n) { return n <= 0 ? x : (x + ((int64_t)1 << (n - 1))) >> n; }

/* floor(sqrt(v)): Newton's iteration from above (I-BERT's i-sqrt), exact for every uint64. */
static inline uint32_t qd_fx_isqrt64(uint64_t v)
{
    if (v < 2) return (uint32_t)v;
    int bits = 64 - __builtin_clzll(v);
    uint64_t x = (uint64_t)1 << ((bits + 1) / 2); /* 2^ceil(bits/2) > sqrt(v) */
    for (;;) {
        const uint64_t y = (x + v / x) / 2;
        if (y >= x) return (uint32_t)x;
        x = y;
    }
}

/* bit length of v > 0 (1 for v = 1) */
static inline int qd_fx_bitlen64(uint64_t v) { return v ? 64 - __builtin_clzll(v) : 0; }

#endif
