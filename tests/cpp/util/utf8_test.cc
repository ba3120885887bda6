#include "util/utf8.h"

#include <cstdint>
#include <optional>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>

namespace bastion {
namespace {

constexpr size_t kNpos = std::string_view::npos;

// An independent, deliberately simple RFC 3629 decoder: decodes one scalar
// value at `i` and returns its length, or nullopt if the bytes there are not
// a valid, shortest-form encoding of a scalar value.
std::optional<size_t> ReferenceDecodeOne(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<uint8_t>(s[i + k]); };
  const uint8_t c = b(0);
  size_t len;
  uint32_t cp;
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) {
    len = 2;
    cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3;
    cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4;
    cp = c & 0x07;
  } else {
    return std::nullopt;
  }
  if (i + len > s.size()) return std::nullopt;
  for (size_t k = 1; k < len; ++k) {
    if ((b(k) & 0xC0) != 0x80) return std::nullopt;
    cp = (cp << 6) | (b(k) & 0x3F);
  }
  static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[len]) return std::nullopt;                  // overlong
  if (cp >= 0xD800 && cp <= 0xDFFF) return std::nullopt;    // surrogate
  if (cp > 0x10FFFF) return std::nullopt;                   // out of range
  return len;
}

size_t ReferenceFindInvalid(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto len = ReferenceDecodeOne(s, i);
    if (!len) return i;
    i += *len;
  }
  return kNpos;
}

std::string Hex(std::string_view s) {
  std::string out;
  for (unsigned char c : s) out += fmt::format("{:02x} ", c);
  return out;
}

TEST(Utf8, AcceptsEmptyAndAscii) {
  EXPECT_EQ(FindInvalidUtf8(""), kNpos);
  EXPECT_EQ(FindInvalidUtf8("hello, world"), kNpos);
  EXPECT_EQ(FindInvalidUtf8(std::string("a\0b", 3)), kNpos) << "NUL is valid UTF-8";
  EXPECT_EQ(FindInvalidUtf8(std::string(1000, 'x')), kNpos);
  EXPECT_TRUE(IsValidUtf8("plain"));
}

TEST(Utf8, AcceptsEveryEncodingLengthAtItsBoundaries) {
  struct Case {
    const char* name;
    std::string bytes;
  } cases[] = {
      {"U+007F", "\x7f"},
      {"U+0080", "\xc2\x80"},
      {"U+07FF", "\xdf\xbf"},
      {"U+0800", "\xe0\xa0\x80"},
      {"U+D7FF (below surrogates)", "\xed\x9f\xbf"},
      {"U+E000 (above surrogates)", "\xee\x80\x80"},
      {"U+FFFF", "\xef\xbf\xbf"},
      {"U+10000", "\xf0\x90\x80\x80"},
      {"U+10FFFF", "\xf4\x8f\xbf\xbf"},
      {"mixed text", "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80!"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(FindInvalidUtf8(c.bytes), kNpos) << c.name;
    // Also after an ASCII run long enough to take the 8-byte fast path.
    EXPECT_EQ(FindInvalidUtf8(std::string(13, 'a') + c.bytes + std::string(9, 'b')), kNpos)
        << c.name << " after ASCII";
  }
}

TEST(Utf8, ReportsTheOffsetOfTheFirstInvalidSequence) {
  struct Case {
    const char* name;
    std::string bytes;
    size_t offset;
  } cases[] = {
      {"lone continuation byte", "ab\x80", 2},
      {"C0 overlong slash", "\xc0\xaf", 0},
      {"C1 overlong", "x\xc1\xbf", 1},
      {"E0 overlong (U+07FF in 3 bytes)", "\xe0\x9f\xbf", 0},
      {"F0 overlong (U+FFFF in 4 bytes)", "\xf0\x8f\xbf\xbf", 0},
      {"high surrogate U+D800", "ok\xed\xa0\x80", 2},
      {"low surrogate U+DFFF", "\xed\xbf\xbf", 0},
      {"above U+10FFFF", "\xf4\x90\x80\x80", 0},
      {"F5 lead byte", "\xf5\x80\x80\x80", 0},
      {"FF byte", "abc\xff", 3},
      {"FE byte", "\xfe", 0},
      {"2-byte lead then ASCII", "\xc3(", 0},
      {"3-byte with bad second byte", "\xe2\x28\xa1", 0},
      {"3-byte with bad third byte", "\xe2\x82\x28", 0},
      {"4-byte with bad third byte", "\xf0\x9f\x28\x80", 0},
      {"4-byte with bad fourth byte", "\xf0\x9f\x98\x28", 0},
      {"truncated 2-byte at end", "abc\xc3", 3},
      {"truncated 3-byte at end", "abc\xe6\x97", 3},
      {"truncated 4-byte at end", "\xf0\x9f\x98", 0},
      {"valid then invalid", "\xc3\xa9\xe6\x97\xa5\x80", 5},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(FindInvalidUtf8(c.bytes), c.offset) << c.name << ": " << Hex(c.bytes);
    EXPECT_FALSE(IsValidUtf8(c.bytes)) << c.name;
  }
}

TEST(Utf8, FindsAnInvalidByteAtEveryPositionOfALongAsciiRun) {
  // The scanner skips 8 ASCII bytes at a time; an invalid byte must be found
  // wherever it falls relative to those 8-byte steps.
  for (size_t len = 1; len <= 40; ++len) {
    for (size_t pos = 0; pos < len; ++pos) {
      std::string s(len, 'a');
      s[pos] = '\xff';
      ASSERT_EQ(FindInvalidUtf8(s), pos) << "length " << len << ", bad byte at " << pos;
      s[pos] = '\x80';
      ASSERT_EQ(FindInvalidUtf8(s), pos) << "length " << len << ", continuation at " << pos;
    }
  }
}

TEST(Utf8, AgreesWithAReferenceDecoderOnEveryOneAndTwoByteString) {
  for (int a = 0; a < 256; ++a) {
    const std::string one(1, static_cast<char>(a));
    ASSERT_EQ(FindInvalidUtf8(one), ReferenceFindInvalid(one)) << Hex(one);
    for (int b = 0; b < 256; ++b) {
      const std::string two{static_cast<char>(a), static_cast<char>(b)};
      ASSERT_EQ(FindInvalidUtf8(two), ReferenceFindInvalid(two)) << Hex(two);
    }
  }
}

TEST(Utf8, AgreesWithAReferenceDecoderOnEveryThreeByteStringWithAMultiByteLead) {
  for (int a = 0xC0; a < 256; ++a) {
    for (int b = 0; b < 256; ++b) {
      for (int c = 0; c < 256; ++c) {
        const std::string s{static_cast<char>(a), static_cast<char>(b), static_cast<char>(c)};
        ASSERT_EQ(FindInvalidUtf8(s), ReferenceFindInvalid(s)) << Hex(s);
      }
    }
  }
}

TEST(Utf8, AgreesWithAReferenceDecoderOnFourByteSequences) {
  // All lead bytes F0..F7 with every second byte and a few third/fourth bytes.
  const int tails[] = {0x00, 0x28, 0x7f, 0x80, 0x8f, 0x90, 0xbf, 0xc0, 0xff};
  for (int a = 0xF0; a < 0xF8; ++a) {
    for (int b = 0; b < 256; ++b) {
      for (int c : tails) {
        for (int d : tails) {
          const std::string s{static_cast<char>(a), static_cast<char>(b), static_cast<char>(c),
                              static_cast<char>(d)};
          ASSERT_EQ(FindInvalidUtf8(s), ReferenceFindInvalid(s)) << Hex(s);
        }
      }
    }
  }
}

}  // namespace
}  // namespace bastion
