// Nano-USD to and from text and double: the only such conversions.
#include "bastion/money.h"

#include <cmath>
#include <cstdint>
#include <iterator>
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
  // The shortest text that reads back as `usd` ("0.1", "1e-10", "2.5e+20"),
  // then rounded exactly: see the header for why not usd * 1e9.
  char buf[32];
  const double magnitude = std::fabs(usd);
  const auto end = fmt::format_to_n(buf, sizeof buf, "{}", magnitude);
  int64_t v = 0;
  const DecimalError e = cost_internal::ParseDecimal(
      std::string_view(buf, end.size), 9, /*allow_rounding=*/true, &v);
  if (e != DecimalError::kNone) {
    // The only failure a finite, non-negative double's text can have.
    return Status::InvalidArgument(
        fmt::format("{} USD is out of range (at most $9223372036.854775807)", usd));
  }
  return usd < 0 ? -v : v;
}

double UsdFromNanoUsd(NanoUsd amount) {
  return static_cast<double>(amount) / static_cast<double>(kNanoUsdPerUsd);
}

}  // namespace bastion
