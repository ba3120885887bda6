// Money: an amount of USD is an integer number of nano-USD (1e-9 USD), and
// these are the only conversions between it and text or floating point.
//
//   bastion::Result<bastion::NanoUsd> limit = bastion::ParseUsd("12.50");  // 12'500'000'000
//   bastion::FormatUsd(*limit);                  // "$12.5"
//   bastion::FormatUsdDecimal(*limit);           // "12.5" (what ParseUsd reads back)
//   bastion::Result<bastion::NanoUsd> c = bastion::NanoUsdFromDouble(0.0031);  // 3'100'000
//   double shown = bastion::UsdFromNanoUsd(*c);  // 0.0031, for Lua and statistics only
//
// Amounts are added, compared and stored as NanoUsd, never as double: summing
// millions of calls cannot drift. The int64 range is +-$9,223,372,036.85.
//
// The free functions have no state and may be called from any thread.
#ifndef BASTION_MONEY_H_
#define BASTION_MONEY_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "bastion/status.h"

namespace bastion {

// An amount of money in nano-USD.
using NanoUsd = int64_t;

inline constexpr NanoUsd kNanoUsdPerUsd = 1'000'000'000;

// "$0.83", "$12", "$0.000002365", "-$1.5": exact, every significant digit,
// no trailing zeros. The one format of USD amounts in messages and records.
std::string FormatUsd(NanoUsd amount);

// The same digits without the "$": "0.83", "12", "-1.5". ParseUsd reads the
// text of a non-negative amount back to the same amount.
std::string FormatUsdDecimal(NanoUsd amount);

// A non-negative decimal amount of USD, exactly: "12.5", "0.000000001", "3",
// "2.5e-06", "1E-9" (the digits and exponent forms Python's Decimal and float
// print). No sign, "$", spaces or separators. InvalidArgument quoting the text
// when it is not such a number, is more precise than 1e-9 USD
// ("0.0000000001"), or is above $9,223,372,036.854775807.
Result<NanoUsd> ParseUsd(std::string_view text);

// A floating-point amount of USD as nano-USD. Rounding rule: the double's
// shortest round-trip decimal text (what Python's repr() prints: 0.1 is
// "0.1", not 0.1000000000000000055...) is rounded to the nano-USD, half to
// even. So every double written with at most 9 decimal places converts to
// exactly that amount, and no amount drifts by the binary representation.
// Negative amounts convert symmetrically (-0.5 nUSD rounds to 0).
// InvalidArgument naming the value for NaN, an infinity, or a magnitude that
// does not fit (beyond $9,223,372,036.854775807 once rounded).
Result<NanoUsd> NanoUsdFromDouble(double usd);

// An amount as a double in USD: for Lua policies and floating-point
// statistics, never for arithmetic on money. Exact up to 2^53 nano-USD
// (about $9 million); beyond that, the nearest double.
double UsdFromNanoUsd(NanoUsd amount);

}  // namespace bastion

#endif  // BASTION_MONEY_H_
