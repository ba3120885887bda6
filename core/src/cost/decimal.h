// Exact decimal text -> scaled integer, the parser under ParseScaledDecimal and
// ParseUsd, which word its errors for their callers.
#ifndef BASTION_COST_DECIMAL_H_
#define BASTION_COST_DECIMAL_H_

#include <cstdint>
#include <string_view>

namespace bastion::cost_internal {

enum class DecimalError { kNone, kSyntax, kNegative, kTooPrecise, kTooLarge };

// `text` x 10^scale into *out (see ParseScaledDecimal for the accepted forms);
// on failure *out is unchanged and the error says why.
DecimalError ParseDecimal(std::string_view text, int scale, bool allow_rounding, int64_t* out);

}  // namespace bastion::cost_internal

#endif  // BASTION_COST_DECIMAL_H_
