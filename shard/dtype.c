/* shard/dtype.c — dtype table and exact F16/BF16 <-> F32 conversions. */
#include <string.h>

#include "shard/safetensors.h"

static const struct {
    const char *name;
    size_t size;
} g_dtypes[QD_DT_COUNT_] = {
    [QD_DT_F32] = {"F32", 4}, [QD_DT_F16] = {"F16", 2},   [QD_DT_BF16] = {"BF16", 2}, [QD_DT_F64] = {"F64", 8},
    [QD_DT_I8] = {"I8", 1},   [QD_DT_U8] = {"U8", 1},     [QD_DT_I16] = {"I16", 2},   [QD_DT_I32] = {"I32", 4},
    [QD_DT_I64] = {"I64", 8}, [QD_DT_BOOL] = {"BOOL", 1},
};

const char *qd_dtype_name(qd_dtype dt)
{
    if ((unsigned)dt >= QD_DT_COUNT_) return "?";
    return g_dtypes[dt].name;
}

size_t qd_dtype_size(qd_dtype dt)
{
    if ((unsigned)dt >= QD_DT_COUNT_) return 0;
    return g_dtypes[dt].size;
}

int qd_dtype_from_name(const char *name, qd_dtype *out)
{
    if (name) {
        for (int i = 0; i < QD_DT_COUNT_; i++) {
            if (!strcmp(name, g_dtypes[i].name)) {
                if (out) *out = (qd_dtype)i;
                return QD_OK;
            }
        }
    }
    return QD_EDTYPE;
}

static inline float bits_to_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint32_t f32_to_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

float qd_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0x1f) { /* inf / nan: keep the payload */
        u = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) { /* normal */
        u = sign | ((exp + 112u) << 23) | (man << 13);
    } else if (man == 0) { /* signed zero */
        u = sign;
    } else {                                 /* subnormal: normalise (value = man * 2^-24) */
        int shift = __builtin_clz(man) - 21; /* leading zeros within the 10-bit field */
        man = (man << shift) & 0x3ffu;       /* drop the now-implicit leading 1 */
        u = sign | ((uint32_t)(113 - shift) << 23) | (man << 13);
    }
    return bits_to_f32(u);
}

float qd_bf16_to_f32(uint16_t b) { return bits_to_f32((uint32_t)b << 16); }

uint16_t qd_f32_to_bf16(float f)
{
    uint32_t u = f32_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* nan: keep it a (quiet) nan */
        return (uint16_t)((u >> 16) | 0x40u);
    uint32_t lsb = (u >> 16) & 1u;
    u += 0x7fffu + lsb; /* round to nearest, ties to even */
    return (uint16_t)(u >> 16);
}

uint16_t qd_f32_to_f16(float f)
{
    uint32_t u = f32_to_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) { /* inf or nan */
        if (a == 0x7f800000u) return sign | 0x7c00u;
        uint16_t m = (uint16_t)((a >> 13) & 0x3ffu);
        return sign | 0x7c00u | 0x200u | m; /* quiet nan, top payload bits kept */
    }
    if (a >= 0x477ff000u) /* >= 65520: rounds to inf */
        return sign | 0x7c00u;
    if (a >= 0x38800000u) { /* normal half (>= 2^-14) */
        uint32_t lsb = (a >> 13) & 1u;
        a += 0xfffu + lsb; /* RNE on the 13 dropped bits */
        return sign | (uint16_t)((a - 0x38000000u) >> 13);
    }
    if (a < 0x33000000u) /* < 2^-25: rounds to zero (tie at 2^-25 too) */
        return sign;
    /* subnormal half: value = m * 2^-24, m in [0, 1024] */
    uint32_t e = a >> 23;                       /* biased f32 exponent, 102..112 */
    uint32_t man = (a & 0x7fffffu) | 0x800000u; /* 24-bit significand */
    uint32_t shift = 126u - e;                  /* man * 2^(e-150) / 2^-24 = man >> (126-e) */
    uint32_t q = man >> shift;
    uint32_t rem = man & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return sign | (uint16_t)q; /* q == 1024 is the smallest normal: correct */
}
