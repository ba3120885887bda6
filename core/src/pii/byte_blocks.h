// Classifies 64 bytes at a time into bitmasks (bit j = byte j), so that the
// scan over ordinary text costs a few instructions per block instead of a
// branch per byte: word edges in prose are too frequent and too irregular for
// a branch predictor, and events that matter (a digit starting a word, a long
// token run) are rare.
#ifndef BASTION_PII_BYTE_BLOCKS_H_
#define BASTION_PII_BYTE_BLOCKS_H_

#include <cstdint>

#include "pii/detectors.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace bastion::pii {

inline constexpr int kBlockSize = 64;

struct BlockMasks {
  uint64_t token = 0;  // [A-Za-z0-9+/_-]
  uint64_t alnum = 0;  // [A-Za-z0-9]
  uint64_t digit = 0;  // [0-9]
  uint64_t upper = 0;  // [A-Z]
};

#if defined(__SSE2__)

inline BlockMasks ClassifyBlock(const char* p) {
  BlockMasks m;
  for (int k = 0; k < kBlockSize / 16; ++k) {
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * k));
    // Signed compares: bytes >= 0x80 are negative, hence in no ASCII range.
    const auto in_range = [x](char lo, char hi) {
      return _mm_and_si128(_mm_cmpgt_epi8(x, _mm_set1_epi8(static_cast<char>(lo - 1))),
                           _mm_cmplt_epi8(x, _mm_set1_epi8(static_cast<char>(hi + 1))));
    };
    const auto is = [x](char c) { return _mm_cmpeq_epi8(x, _mm_set1_epi8(c)); };
    const __m128i digit = in_range('0', '9');
    const __m128i upper = in_range('A', 'Z');
    const __m128i alnum = _mm_or_si128(_mm_or_si128(digit, upper), in_range('a', 'z'));
    const __m128i token = _mm_or_si128(
        alnum, _mm_or_si128(_mm_or_si128(is('+'), is('/')), _mm_or_si128(is('_'), is('-'))));
    const auto bits = [k](__m128i v) {
      return static_cast<uint64_t>(static_cast<uint16_t>(_mm_movemask_epi8(v))) << (16 * k);
    };
    m.token |= bits(token);
    m.alnum |= bits(alnum);
    m.digit |= bits(digit);
    m.upper |= bits(upper);
  }
  return m;
}

#else  // portable: one table lookup per byte, without branches

inline BlockMasks ClassifyBlock(const char* p) {
  BlockMasks m;
  for (int j = 0; j < kBlockSize; ++j) {
    const uint16_t c = ByteClass(p[j]);
    m.token |= static_cast<uint64_t>((c & kToken) != 0) << j;
    m.alnum |= static_cast<uint64_t>((c & kAlnum) != 0) << j;
    m.digit |= static_cast<uint64_t>((c & kDigit) != 0) << j;
    m.upper |= static_cast<uint64_t>((c & kUpper) != 0) << j;
  }
  return m;
}

#endif

}  // namespace bastion::pii

#endif  // BASTION_PII_BYTE_BLOCKS_H_
