// The individual PII detectors behind FindPii (bastion/pii.h), and the byte
// classes they share. The rules each detector implements are documented in the
// public header; this file states how the detectors are driven.
//
// Two kinds of detectors:
//   - Find* functions run their own pass over the whole text (driven by memchr
//     or memmem on a byte every match must contain) and append their matches,
//     in order and non-overlapping.
//   - Match* functions are called by FindPii's single classifying pass at a
//     position where a match could start, and return the end of the match
//     starting there, or kNoMatch. Each reads a bounded number of bytes (or is
//     amortized by RunCache), which keeps the whole scan linear.
#ifndef BASTION_PII_DETECTORS_H_
#define BASTION_PII_DETECTORS_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "bastion/pii.h"

namespace bastion::pii {

// --- byte classes -----------------------------------------------------------

enum : uint16_t {
  kDigit = 1 << 0,       // 0-9
  kUpper = 1 << 1,       // A-Z
  kLower = 1 << 2,       // a-z
  kHexLetter = 1 << 3,   // a-f A-F
  kPlus = 1 << 4,        // +
  kSlash = 1 << 5,       // /
  kUnderscore = 1 << 6,  // _
  kDash = 1 << 7,        // -
  kDot = 1 << 8,         // .
  kPercent = 1 << 9,     // %
};
inline constexpr uint16_t kAlpha = kUpper | kLower;
inline constexpr uint16_t kAlnum = kDigit | kAlpha;
inline constexpr uint16_t kHex = kDigit | kHexLetter;
// What a secret token is made of (base64 and base64url, plus '_'/'-' names).
inline constexpr uint16_t kToken = kAlnum | kPlus | kSlash | kUnderscore | kDash;
// Email local part (the practical subset of RFC 5322 atext) and domain label.
inline constexpr uint16_t kEmailLocal = kAlnum | kDot | kUnderscore | kPercent | kPlus | kDash;
inline constexpr uint16_t kDomainLabel = kAlnum | kDash;

inline constexpr std::array<uint16_t, 256> kByteClass = [] {
  std::array<uint16_t, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = kDigit;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = kUpper;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = kLower;
  for (int c = 'a'; c <= 'f'; ++c) t[c] |= kHexLetter;
  for (int c = 'A'; c <= 'F'; ++c) t[c] |= kHexLetter;
  t['+'] = kPlus;
  t['/'] = kSlash;
  t['_'] = kUnderscore;
  t['-'] = kDash;
  t['.'] = kDot;
  t['%'] = kPercent;
  return t;
}();

inline uint16_t ByteClass(char c) { return kByteClass[static_cast<unsigned char>(c)]; }
inline bool Is(char c, uint16_t mask) { return (ByteClass(c) & mask) != 0; }
inline bool IsDigit(char c) { return Is(c, kDigit); }
inline bool IsAlnum(char c) { return Is(c, kAlnum); }

// True if text[i] exists and is in `mask`; lets callers look past either end.
inline bool IsAt(std::string_view text, size_t i, uint16_t mask) {
  return i < text.size() && Is(text[i], mask);
}
inline bool CharAt(std::string_view text, size_t i, char c) {
  return i < text.size() && text[i] == c;
}

inline constexpr size_t kNoMatch = 0;  // a match never ends at offset 0

// --- numbers (numbers.cc) ---------------------------------------------------

// Up to kMax runs of digits starting at a digit, separated by single ' ', '-'
// or '.' characters (each followed by a digit). Cards, SSNs, RRNs and IPv4
// addresses are read from these groups.
struct DigitGroups {
  static constexpr int kMax = 8;
  int count = 0;
  size_t begin[kMax];
  size_t end[kMax];
  char sep_after[kMax];  // the separator after group k; 0 after the last

  size_t digits(int k) const { return end[k] - begin[k]; }
};
DigitGroups ScanDigitGroups(std::string_view text, size_t start);

// True if a number starting at `start` continues one on its left: a letter or
// digit right before it, or a digit then one of "-./" ("12-4111...", "0.41...").
bool NumberGluedLeft(std::string_view text, size_t start);

// Each returns the end of a match of its kind made of a leading part of
// `groups`, or kNoMatch. Cards, SSNs and RRNs assume !NumberGluedLeft at the
// first group; IPv4 checks its own (different) surroundings.
size_t MatchCreditCard(std::string_view text, const DigitGroups& groups);
size_t MatchUsSsn(std::string_view text, const DigitGroups& groups);
size_t MatchKrRrn(std::string_view text, const DigitGroups& groups);
size_t MatchIpv4(std::string_view text, const DigitGroups& groups);
// Just the four octets 0-255 of `groups`, whatever surrounds them (the tail of
// an IPv6 address).
size_t MatchDottedQuad(const DigitGroups& groups, std::string_view text);

// A phone number around the digit at `digit_start`, which starts a run of
// letters/digits. The match may begin one byte earlier, at a '+' or '('; its
// start is stored in *start.
size_t MatchPhone(std::string_view text, size_t digit_start, size_t* start);

// An IBAN starting at `start` (an upper-case letter that starts a word).
size_t MatchIban(std::string_view text, size_t start);

// --- addresses (addresses.cc) -----------------------------------------------

void FindEmails(std::string_view text, std::vector<PiiMatch>* out);
void FindIpv6(std::string_view text, std::vector<PiiMatch>* out);

// --- credentials (credentials.cc) -------------------------------------------

// Remembers, per alphabet, the last run of bytes measured, so that measuring
// from many starting points inside one run costs one pass over it.
class RunCache {
 public:
  explicit RunCache(std::string_view text) : text_(text) {}
  // The end of the run of bytes in `mask` that starts at `pos` (pos itself if
  // text[pos] is not in `mask`). `slot` (< kSlots) names the alphabet; one
  // slot must always be used with the same mask.
  size_t RunEnd(int slot, uint16_t mask, size_t pos);

  static constexpr int kSlots = 4;

 private:
  std::string_view text_;
  size_t from_[kSlots] = {};
  size_t end_[kSlots] = {};  // from_ == end_ == 0: nothing cached
};

// A prefixed API key or a JWT starting at `start`, a letter with no letter or
// digit right before it. Returns its end or kNoMatch.
size_t MatchApiKey(std::string_view text, size_t start, RunCache* cache);

// Appends every PEM private-key block.
void FindPemPrivateKeys(std::string_view text, std::vector<PiiMatch>* out);

// Appends the secrets in the maximal token run [begin, end) (with base64 '='
// padding after it): the whole run, or for a path or URL ("com/a/b") each
// '/'-separated segment on its own.
void FindSecretsInRun(std::string_view text, size_t begin, size_t end,
                      std::vector<PiiMatch>* out);

}  // namespace bastion::pii

#endif  // BASTION_PII_DETECTORS_H_
