/* Dense bit packing along the input dimension (docs/FORMAT.md "Packing"): code i of a row
 * occupies bits [i*b, i*b + b) of the row's little-endian bit stream; every row starts on a byte
 * boundary and takes ceil(cols*b/8) bytes; unused high bits of the last byte are zero. */
#include <string.h>

#include "quant/quant.h"

/* pinned sizes: b-bit codes pack 8 values in b bytes, for every supported width */
_Static_assert(QD_PACKED_ROW_BYTES(8, 2) == 2, "2-bit: 4 values per byte");
_Static_assert(QD_PACKED_ROW_BYTES(8, 3) == 3, "3-bit: 8 values in 3 bytes");
_Static_assert(QD_PACKED_ROW_BYTES(2, 4) == 1, "4-bit: 2 values per byte");
_Static_assert(QD_PACKED_ROW_BYTES(8, 5) == 5, "5-bit: 8 values in 5 bytes");
_Static_assert(QD_PACKED_ROW_BYTES(4, 6) == 3, "6-bit: 4 values in 3 bytes");
_Static_assert(QD_PACKED_ROW_BYTES(8, 7) == 7, "7-bit: 8 values in 7 bytes");
_Static_assert(QD_PACKED_ROW_BYTES(1, 8) == 1, "8-bit: one byte per value");
_Static_assert(QD_PACKED_ROW_BYTES(1, 3) == 1 && QD_PACKED_ROW_BYTES(3, 3) == 2 && QD_PACKED_ROW_BYTES(9, 3) == 4,
               "partial bytes round up");
_Static_assert(QD_PACKED_ROW_BYTES(768, 4) == 384 && QD_PACKED_ROW_BYTES(3072, 3) == 1152, "BERT-base rows");

int64_t qd_packed_row_bytes(int64_t cols, int bits) { return QD_PACKED_ROW_BYTES(cols, bits); }

/* 4 and 2 bits, the common widths of the job's fused path, by whole bytes: the same bytes as the
 * bit-stream loop below for any input (tests/quant/test_quant_core.c checks every width against a layout made
 * by hand). */
static void pack4(const uint8_t *codes, int64_t n, uint8_t *out)
{
    const int64_t h = n / 2;
    for (int64_t i = 0; i < h; i++) out[i] = (uint8_t)((codes[2 * i] & 15) | (codes[2 * i + 1] & 15) << 4);
    if (n & 1) out[h] = codes[n - 1] & 15;
}

static void pack2(const uint8_t *codes, int64_t n, uint8_t *out)
{
    const int64_t q = n / 4;
    for (int64_t i = 0; i < q; i++)
        out[i] = (uint8_t)((codes[4 * i] & 3) | (codes[4 * i + 1] & 3) << 2 | (codes[4 * i + 2] & 3) << 4 |
                           (codes[4 * i + 3] & 3) << 6);
    if (n & 3) {
        uint8_t v = 0;
        for (int64_t i = 4 * q; i < n; i++) v |= (uint8_t)((codes[i] & 3) << (2 * (i - 4 * q)));
        out[q] = v;
    }
}

void qd_pack_row(const uint8_t *codes, int64_t n, int bits, uint8_t *out)
{
    if (bits == 8) {
        memcpy(out, codes, (size_t)n);
        return;
    }
    if (bits == 4) {
        pack4(codes, n, out);
        return;
    }
    if (bits == 2) {
        pack2(codes, n, out);
        return;
    }
    memset(out, 0, (size_t)qd_packed_row_bytes(n, bits));
    const uint32_t mask = (1u << bits) - 1;
    uint64_t bitpos = 0;
    for (int64_t i = 0; i < n; i++, bitpos += (uint64_t)bits) {
        uint32_t v = codes[i] & mask;
        uint64_t byte = bitpos >> 3;
        unsigned sh = (unsigned)(bitpos & 7);
        out[byte] |= (uint8_t)(v << sh);
        if (sh + (unsigned)bits > 8) out[byte + 1] |= (uint8_t)(v >> (8 - sh));
    }
}

void qd_unpack_row(const uint8_t *in, int64_t n, int bits, uint8_t *codes)
{
    if (bits == 8) {
        memcpy(codes, in, (size_t)n);
        return;
    }
    const uint32_t mask = (1u << bits) - 1;
    uint64_t bitpos = 0;
    for (int64_t i = 0; i < n; i++, bitpos += (uint64_t)bits) {
        uint64_t byte = bitpos >> 3;
        unsigned sh = (unsigned)(bitpos & 7);
        uint32_t v = (uint32_t)in[byte] >> sh;
        if (sh + (unsigned)bits > 8) v |= (uint32_t)in[byte + 1] << (8 - sh);
        codes[i] = (uint8_t)(v & mask);
    }
}

void qd_pack_matrix(const uint8_t *codes, int64_t rows, int64_t cols, int bits, uint8_t *out)
{
    int64_t rb = qd_packed_row_bytes(cols, bits);
    for (int64_t r = 0; r < rows; r++) qd_pack_row(codes + r * cols, cols, bits, out + r * rb);
}

void qd_unpack_matrix(const uint8_t *in, int64_t rows, int64_t cols, int bits, uint8_t *codes)
{
    int64_t rb = qd_packed_row_bytes(cols, bits);
    for (int64_t r = 0; r < rows; r++) qd_unpack_row(in + r * rb, cols, bits, codes + r * cols);
}
