// Nano-USD to and from text and double: the only such conversions.
#include "bastion/money.h"

#include <cmath>
#include <cstdint>
#include <iterator>
#include <limits>
#include <string>

#include <fmt/format.h>

#include "cost/decimal.h"

namespace bastion {
namespace {

using cost_internal::DecimalError;

// |amount| through unsigned, so INT64_MIN has a magnitude too.
uint64_t Magnitude(NanoUsd amount) {
  return amount < 0 ? ~static_cast<uint64_t>(amount) + 1 : static_cast<uint64_t>(amount);
}

void AppendDecimal(uint64_t magnitude, std::string* out) {
  fmt::format_to(std::back_inserter(*out), "{}", magnitude / kNanoUsdPerUsd);
  const uint64_t fraction = magnitude % kNanoUsdPerUsd;
  if (fraction == 0) return;
  std::string digits = fmt::format("{:09}", fraction);
  digits.erase(digits.find_last_not_of('0') + 1);
  *out += '.';
  *out += digits;
}

}  // namespace

std::string FormatUsd(NanoUsd amount) {
  std::string out = amount < 0 ? "-$" : "$";
  AppendDecimal(Magnitude(amount), &out);
  return out;
}

std::string FormatUsdDecimal(NanoUsd amount) {
  std::string out = amount < 0 ? "-" : "";
  AppendDecimal(Magnitude(amount), &out);
  return out;
}

Result<NanoUsd> ParseUsd(std::string_view text) {
  int64_t v = 0;
  std::string_view why;
  switch (cost_internal::ParseDecimal(text, 9, /*allow_rounding=*/false, &v)) {
    case DecimalError::kNone: return v;
    case DecimalError::kSyntax:
    case DecimalError::kNegative: why = "is not a non-negative decimal amount of USD"; break;
    case DecimalError::kTooPrecise: why = "is more precise than 1e-9 USD"; break;
    case DecimalError::kTooLarge: why = "is out of range (at most $9223372036.854775807)"; break;
  }
  return Status::InvalidArgument(fmt::format("'{}' {}", text, why));
}

Result<NanoUsd> NanoUsdFromDouble(double usd) {
  if (!std::isfinite(usd)) {
    return Status::InvalidArgument(fmt::format("{} USD is not a finite amount", usd));
  }
  auto out_of_range = [&] {
    return Status::InvalidArgument(
        fmt::format("{} USD is out of range (at most $9223372036.854775807)", usd));
  };
  // The shortest text that reads back as |usd| ("0.1", "1e-10", "2.5e+20"):
  // at most 17 significant digits, read here as significand x 10^exp10
  // without allocating (this runs once per record appended from Python).
  char buf[32];
  const auto written = fmt::format_to_n(buf, sizeof buf, "{}", std::fabs(usd));
  const std::string_view text(buf, written.size);
  uint64_t significand = 0;
  int digits = 0, exp10 = 0;
  size_t i = 0;
  bool point = false;
  for (; i < text.size() && text[i] != 'e'; ++i) {
    if (text[i] == '.') {
      point = true;
      continue;
    }
    if (significand != 0 || text[i] != '0') ++digits;
    significand = significand * 10 + static_cast<uint64_t>(text[i] - '0');
    if (point) --exp10;
  }
  if (i < text.size()) {  // "e-10", "e+20"
    int e = 0;
    for (size_t j = i + 2; j < text.size(); ++j) e = e * 10 + (text[j] - '0');
    exp10 += text[i + 1] == '-' ? -e : e;
  }
  if (digits > 17) return out_of_range();  // cannot happen for a shortest text
  // significand x 10^(exp10 + 9), rounded half to even.
  const int shift = exp10 + 9;
  __int128 v = 0;
  if (significand == 0) {
    v = 0;
  } else if (shift >= 0) {
    if (shift > 19) return out_of_range();
    v = significand;
    for (int k = 0; k < shift; ++k) v *= 10;
  } else if (-shift <= 18) {
    uint64_t scale = 1;
    for (int k = 0; k < -shift; ++k) scale *= 10;
    const uint64_t q = significand / scale, r = significand % scale;
    v = q;
    if (r > scale / 2 || (r == scale / 2 && (q & 1) == 1)) ++v;
  }  // else the significand (< 10^17) is under half of 10^-shift: 0
  if (v > std::numeric_limits<NanoUsd>::max()) return out_of_range();
  const NanoUsd amount = static_cast<NanoUsd>(v);
  return usd < 0 ? -amount : amount;
}

double UsdFromNanoUsd(NanoUsd amount) {
  return static_cast<double>(amount) / static_cast<double>(kNanoUsdPerUsd);
}

}  // namespace bastion
