/* F16/BF16 <-> F32 conversions: all 65536 bit patterns of each against a reference built from
 * the fields with ldexp (subnormals, zeros, inf, nan included); F32 -> F16/BF16 rounding to
 * nearest-even checked at every midpoint between adjacent values and on random floats against a
 * nearest-neighbour search. */
#include <math.h>

#include "qd_test.h"
#include "shard/safetensors.h"

static uint32_t f_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* value of a binary format with `eb` exponent bits and `mb` mantissa bits, from its fields */
static double ref_decode(uint32_t v, int eb, int mb)
{
    int sign = (v >> (eb + mb)) & 1;
    int e = (int)((v >> mb) & ((1u << eb) - 1));
    uint32_t m = v & ((1u << mb) - 1);
    int bias = (1 << (eb - 1)) - 1;
    double x;
    if (e == (1 << eb) - 1)
        x = m ? NAN : INFINITY;
    else if (e == 0)
        x = ldexp((double)m, 1 - bias - mb);
    else
        x = ldexp((double)(m | (1u << mb)), e - bias - mb);
    return sign ? -x : x;
}

static uint32_t rng = 12345u;
static uint32_t next_u32(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

/* Is r the correctly rounded (nearest, ties-even) encoding of x? dec decodes candidates. */
static int is_rne(float x, uint16_t r, float (*dec)(uint16_t), uint16_t maxfin, uint16_t inf)
{
    double dx = x;
    uint16_t mag = r & 0x7fffu, sgn = r & 0x8000u;
    if (!!signbit(x) != !!sgn) return 0;
    double ax = fabs(dx);
    if (mag == inf) {
        /* overflow: x at or beyond the midpoint between max finite and the next "virtual" step */
        double mx = dec(maxfin), ulp = mx - dec(maxfin - 1);
        return ax >= mx + ulp / 2;
    }
    if (mag > inf) return 0;
    double v = fabs((double)dec(mag));
    double dv = fabs(ax - v);
    if (mag > 0) {
        double d = fabs(ax - fabs((double)dec(mag - 1)));
        if (d < dv || (d == dv && (mag & 1))) return 0;
    }
    if (mag < maxfin) {
        double d = fabs(ax - fabs((double)dec(mag + 1)));
        if (d < dv || (d == dv && (mag & 1))) return 0;
    } else {
        double mx = dec(maxfin), ulp = mx - dec(maxfin - 1);
        if (ax >= mx + ulp / 2) return 0;
    }
    return 1;
}

static void check_pair(const char *what, float (*dec)(uint16_t), uint16_t (*enc)(float), int eb, int mb,
                       uint16_t maxfin, uint16_t inf)
{
    int bad_dec = 0, bad_rt = 0, bad_mid = 0, bad_rand = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float got = dec((uint16_t)h);
        double want = ref_decode(h, eb, mb);
        if (isnan(want)) {
            if (!isnan(got)) bad_dec++;
            if (!isnan(dec(enc(got)))) bad_rt++;
            continue;
        }
        if ((double)got != want || !!signbit(got) != !!signbit(want)) {
            if (bad_dec++ < 5) fprintf(stderr, "%s decode %04x: %.9g vs %.9g\n", what, h, got, want);
        }
        if (enc(got) != h) {
            if (bad_rt++ < 5) fprintf(stderr, "%s round trip %04x -> %04x\n", what, h, enc(got));
        }
    }
    /* midpoints between adjacent positive finite values (and their negatives) */
    for (uint16_t m = 0; m < maxfin; m++) {
        double lo = dec(m), hi = dec((uint16_t)(m + 1));
        float mid = (float)((lo + hi) / 2);
        if ((double)mid != (lo + hi) / 2) {
            bad_mid++;
            continue;
        } /* must be exact in f32 */
        uint16_t even = (m & 1) ? (uint16_t)(m + 1) : m;
        if (enc(mid) != even || enc(-mid) != (even | 0x8000u)) {
            if (bad_mid++ < 5) fprintf(stderr, "%s midpoint %.9g -> %04x, want %04x\n", what, mid, enc(mid), even);
        }
        if (enc(nextafterf(mid, 0.0f)) != m) bad_mid++;
        if (enc(nextafterf(mid, INFINITY)) != m + 1) bad_mid++;
    }
    for (int k = 0; k < 2000000; k++) {
        float x = bits_f(next_u32());
        if (isnan(x)) {
            if (!isnan(dec(enc(x)))) bad_rand++;
            continue;
        }
        uint16_t r = enc(x);
        if (!is_rne(x, r, dec, maxfin, inf)) {
            if (bad_rand++ < 5) fprintf(stderr, "%s: %a -> %04x not nearest-even\n", what, x, r);
        }
    }
    CHECK_EQ(bad_dec, 0);
    CHECK_EQ(bad_rt, 0);
    CHECK_EQ(bad_mid, 0);
    CHECK_EQ(bad_rand, 0);
}

int main(void)
{
    check_pair("f16", qd_f16_to_f32, qd_f32_to_f16, 5, 10, 0x7bffu, 0x7c00u);
    check_pair("bf16", qd_bf16_to_f32, qd_f32_to_bf16, 8, 7, 0x7f7fu, 0x7f80u);

    /* spot values */
    CHECK_EQ(f_bits(qd_f16_to_f32(0x0001)), f_bits(0x1p-24f));   /* smallest subnormal */
    CHECK_EQ(f_bits(qd_f16_to_f32(0x03ff)), f_bits(0x3ffp-24f)); /* largest subnormal */
    CHECK_EQ(f_bits(qd_f16_to_f32(0x0400)), f_bits(0x1p-14f));   /* smallest normal */
    CHECK_EQ(f_bits(qd_f16_to_f32(0x7bff)), f_bits(65504.0f));
    CHECK_EQ(f_bits(qd_f16_to_f32(0x8000)), 0x80000000u);
    CHECK_EQ(f_bits(qd_f16_to_f32(0xfc00)), f_bits(-INFINITY));
    CHECK(isnan(qd_f16_to_f32(0x7e00)));
    CHECK_EQ(qd_f32_to_f16(65519.996f), 0x7bff);
    CHECK_EQ(qd_f32_to_f16(65520.0f), 0x7c00);
    CHECK_EQ(qd_f32_to_f16(1e10f), 0x7c00);
    CHECK_EQ(qd_f32_to_f16(-1e-10f), 0x8000);
    CHECK_EQ(qd_f32_to_f16(0x1p-25f), 0x0000); /* tie -> even (0) */
    CHECK_EQ(qd_f32_to_f16(0x1.000002p-25f), 0x0001);
    CHECK_EQ(qd_f32_to_f16(0x3p-25f), 0x0002); /* tie 1.5 ulp -> 2 */
    CHECK_EQ(qd_f32_to_f16(1.0f), 0x3c00);
    CHECK_EQ(qd_f32_to_f16(NAN) & 0x7c00u, 0x7c00u);
    CHECK_NE(qd_f32_to_f16(NAN) & 0x03ffu, 0);
    CHECK_EQ(qd_f32_to_bf16(1.0f), 0x3f80);
    CHECK_EQ(qd_f32_to_bf16(bits_f(0x3f808000u)), 0x3f80);            /* tie -> even */
    CHECK_EQ(qd_f32_to_bf16(bits_f(0x3f818000u)), 0x3f82);            /* tie -> even (up) */
    CHECK_EQ(qd_f32_to_bf16(bits_f(0x7f7fffffu)), 0x7f80);            /* FLT_MAX -> inf */
    CHECK_EQ(qd_f32_to_bf16(bits_f(0x7f800001u)) & 0x7f80u, 0x7f80u); /* snan stays nan */
    CHECK_NE(qd_f32_to_bf16(bits_f(0x7f800001u)) & 0x007fu, 0);
    CHECK_EQ(qd_f32_to_bf16(bits_f(0x00000001u)), 0x0000); /* tiny subnormal */
    QD_TEST_MAIN_END();
}
