// Exact decimal parsing and the one rounding step of the cost module.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include <fmt/format.h>

#include "bastion/cost.h"
#include "cost/decimal.h"

namespace bastion {
namespace {

constexpr int64_t kFusdPerNanousd = 1'000'000;
constexpr int kMaxExponent = 1000;  // anything larger is an overflow or 0 anyway

}  // namespace

namespace cost_internal {

DecimalError ParseDecimal(std::string_view text, int scale, bool allow_rounding, int64_t* out) {
  if (text.empty()) return DecimalError::kSyntax;
  if (text[0] == '-') return DecimalError::kNegative;
  size_t i = 0;
  const size_t n = text.size();
  std::string digits;
  int64_t exp10 = 0;
  bool seen_digit = false, seen_point = false;
  for (; i < n && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'); ++i) {
    if (text[i] == '.') {
      if (seen_point) return DecimalError::kSyntax;
      seen_point = true;
      continue;
    }
    seen_digit = true;
    digits.push_back(text[i]);
    if (seen_point) --exp10;
  }
  if (!seen_digit) return DecimalError::kSyntax;
  if (i < n && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    int sign = 1;
    if (i < n && (text[i] == '+' || text[i] == '-')) sign = text[i++] == '-' ? -1 : 1;
    if (i == n) return DecimalError::kSyntax;
    int64_t e = 0;
    for (; i < n && std::isdigit(static_cast<unsigned char>(text[i])); ++i) {
      e = std::min<int64_t>(e * 10 + (text[i] - '0'), kMaxExponent);
    }
    exp10 += sign * e;
  }
  if (i != n) return DecimalError::kSyntax;

  size_t first = digits.find_first_not_of('0');
  if (first == std::string::npos) {
    *out = 0;
    return DecimalError::kNone;
  }
  digits.erase(0, first);

  constexpr __int128 kMax = std::numeric_limits<int64_t>::max();
  const int64_t shift = exp10 + scale;
  std::string kept = digits, dropped;
  if (shift >= 0) {
    if (static_cast<int64_t>(digits.size()) + shift > 19) return DecimalError::kTooLarge;
    kept.append(static_cast<size_t>(shift), '0');
  } else {
    const size_t drop = static_cast<size_t>(-shift);
    if (drop >= digits.size()) {
      kept.clear();
      dropped = std::string(drop - digits.size(), '0') + digits;
    } else {
      kept = digits.substr(0, digits.size() - drop);
      dropped = digits.substr(digits.size() - drop);
    }
    if (!allow_rounding && dropped.find_first_not_of('0') != std::string::npos) {
      return DecimalError::kTooPrecise;
    }
    if (kept.size() > 19) return DecimalError::kTooLarge;
  }
  __int128 v = 0;
  for (char c : kept) v = v * 10 + (c - '0');
  if (!dropped.empty()) {  // round half to even
    const char d = dropped[0];
    const bool rest_nonzero = dropped.find_first_not_of('0', 1) != std::string::npos;
    if (d > '5' || (d == '5' && (rest_nonzero || (v & 1) == 1))) ++v;
  }
  if (v > kMax) return DecimalError::kTooLarge;
  *out = static_cast<int64_t>(v);
  return DecimalError::kNone;
}

}  // namespace cost_internal

Result<int64_t> ParseScaledDecimal(std::string_view text, int scale, bool allow_rounding) {
  using cost_internal::DecimalError;
  int64_t v = 0;
  std::string_view why;
  switch (cost_internal::ParseDecimal(text, scale, allow_rounding, &v)) {
    case DecimalError::kNone: return v;
    case DecimalError::kSyntax: why = "is not a decimal number"; break;
    case DecimalError::kNegative: why = "is negative"; break;
    case DecimalError::kTooLarge: why = "is too large"; break;
    case DecimalError::kTooPrecise:
      return Status::InvalidArgument(
          fmt::format("'{}' has more than {} decimal places", text, scale));
  }
  return Status::InvalidArgument(fmt::format("'{}' {}", text, why));
}

int64_t RoundFusdToNanousd(int64_t fusd) {
  int64_t q = fusd / kFusdPerNanousd;
  const int64_t r = fusd % kFusdPerNanousd;
  if (r > kFusdPerNanousd / 2 || (r == kFusdPerNanousd / 2 && (q & 1) == 1)) ++q;
  return q;
}

}  // namespace bastion
