// Tests for NanoUsdFromDouble (bastion/cost.h): a double amount of USD to
// nano-USD through its shortest decimal text, rounded half to even.
#include <cmath>
#include <cstdint>
#include <limits>

#include <gtest/gtest.h>

#include "bastion/cost.h"

namespace bastion {
namespace {

TEST(NanoUsdFromDouble, ConvertsAmountsOfAtMostNineDecimalsExactly) {
  const struct {
    double usd;
    int64_t nanos;
  } cases[] = {
      {0.0, 0},
      {0.0031, 3'100'000},
      {0.1, 100'000'000},
      {0.1 + 0.2, 300'000'000},  // 0.30000000000000004: rounded to the nano-USD
      {1e-9, 1},
      {3.0, 3'000'000'000},
      {123456.123456789, 123'456'123'456'789},
      {2.5e-06, 2'500},
  };
  for (const auto& c : cases) {
    auto got = NanoUsdFromDouble(c.usd);
    ASSERT_TRUE(got.ok()) << c.usd << ": " << got.status().ToString();
    EXPECT_EQ(*got, c.nanos) << c.usd;
  }
}

TEST(NanoUsdFromDouble, RoundsHalfToEven) {
  EXPECT_EQ(*NanoUsdFromDouble(5e-10), 0);     // 0.5 nano-USD
  EXPECT_EQ(*NanoUsdFromDouble(1.5e-9), 2);    // 1.5 -> 2
  EXPECT_EQ(*NanoUsdFromDouble(2.5e-9), 2);    // 2.5 -> 2
  EXPECT_EQ(*NanoUsdFromDouble(2.6e-9), 3);
  EXPECT_EQ(*NanoUsdFromDouble(1e-12), 0);
}

TEST(NanoUsdFromDouble, RejectsWhatIsNoAmount) {
  for (double bad : {-0.01, std::nan(""), std::numeric_limits<double>::infinity(),
                     -std::numeric_limits<double>::infinity(), 1e10, 1e300}) {
    auto got = NanoUsdFromDouble(bad);
    EXPECT_TRUE(got.status().IsInvalidArgument()) << bad;
    EXPECT_NE(got.status().message().find("USD"), std::string::npos) << got.status().message();
  }
}

}  // namespace
}  // namespace bastion
