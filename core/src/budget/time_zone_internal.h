// Saturating int64 arithmetic shared by the time zone and window code: local
// times and window bounds near the ends of the int64 nanosecond range must
// clamp there rather than overflow.
#ifndef BASTION_BUDGET_TIME_ZONE_INTERNAL_H_
#define BASTION_BUDGET_TIME_ZONE_INTERNAL_H_

#include <cstdint>
#include <limits>

namespace bastion::tz_internal {

inline constexpr int64_t kInt64Min = std::numeric_limits<int64_t>::min();
inline constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

inline int64_t SatAdd(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) return b > 0 ? kInt64Max : kInt64Min;
  return r;
}

inline int64_t SatSub(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_sub_overflow(a, b, &r)) return b < 0 ? kInt64Max : kInt64Min;
  return r;
}

inline int64_t SatMul(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) return (a < 0) == (b < 0) ? kInt64Max : kInt64Min;
  return r;
}

}  // namespace bastion::tz_internal

#endif  // BASTION_BUDGET_TIME_ZONE_INTERNAL_H_
