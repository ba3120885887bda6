// Tests for money.h: the one format of USD amounts, exact parsing, and the one
// double -> nano-USD conversion with its rounding rule.
#include "bastion/money.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "bastion/budget.h"
#include "bastion/cost.h"
#include "bastion/slo_monitor.h"

namespace bastion {
namespace {

constexpr NanoUsd kMax = std::numeric_limits<NanoUsd>::max();

// --- FormatUsd / FormatUsdDecimal ---

TEST(Money, FormatUsdDecimalIsExactWithoutTrailingZeros) {
  struct {
    NanoUsd amount;
    const char* text;
  } cases[] = {
      {0, "0"},
      {1, "0.000000001"},
      {500'000'000, "0.5"},
      {600'000'000, "0.6"},
      {12'000'000'000, "12"},
      {100'010'000'000, "100.01"},
      {2'365, "0.000002365"},
      {-1'500'000'000, "-1.5"},
      {kMax, "9223372036.854775807"},
      {std::numeric_limits<NanoUsd>::min(), "-9223372036.854775808"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(FormatUsdDecimal(c.amount), c.text) << c.amount;
    const std::string dollar = c.amount < 0 ? std::string("-$") + (c.text + 1)
                                            : std::string("$") + c.text;
    EXPECT_EQ(FormatUsd(c.amount), dollar) << c.amount;
  }
}

TEST(Money, ParseUsdReadsFormattedAmountsBack) {
  std::mt19937_64 rng(7);
  std::vector<NanoUsd> amounts = {0, 1, 9, 10, 999'999'999, 1'000'000'000, kMax, kMax - 1};
  for (int i = 0; i < 2000; ++i) amounts.push_back(static_cast<NanoUsd>(rng() >> (1 + i % 63)));
  for (NanoUsd a : amounts) {
    const Result<NanoUsd> back = ParseUsd(FormatUsdDecimal(a));
    ASSERT_TRUE(back.ok()) << a << ": " << back.status().ToString();
    EXPECT_EQ(*back, a) << FormatUsdDecimal(a);
  }
}

// --- ParseUsd ---

TEST(Money, ParseUsdAcceptsDecimalAndExponentForms) {
  struct {
    const char* text;
    NanoUsd amount;
  } cases[] = {
      {"12.5", 12'500'000'000},
      {"0.000000001", 1},
      {"1E-9", 1},             // str(Decimal("0.000000001"))
      {"2.5e-06", 2'500},      // repr(2.5e-06)
      {"3", 3'000'000'000},
      {"0.10000000000", 100'000'000},  // zeros beyond nine places are not precision
      {"00.5", 500'000'000},
      {".5", 500'000'000},
      {"5.", 5'000'000'000},
      {"0", 0},
      {"0E+3", 0},
      {"9223372036.854775807", kMax},
  };
  for (const auto& c : cases) {
    const Result<NanoUsd> v = ParseUsd(c.text);
    ASSERT_TRUE(v.ok()) << c.text << ": " << v.status().ToString();
    EXPECT_EQ(*v, c.amount) << c.text;
  }
}

TEST(Money, ParseUsdErrorsQuoteTheTextAndSayWhy) {
  struct {
    const char* text;
    const char* why;
  } cases[] = {
      {"0.0000000001", "more precise than 1e-9 USD"},
      {"1.0000000005", "more precise than 1e-9 USD"},
      {"1e-10", "more precise than 1e-9 USD"},
      {"9223372036.854775808", "out of range"},
      {"1e19", "out of range"},
      {"99999999999", "out of range"},
      {"-1", "not a non-negative decimal amount"},
      {"", "not a non-negative decimal amount"},
      {"$5", "not a non-negative decimal amount"},
      {"1,000", "not a non-negative decimal amount"},
      {" 1", "not a non-negative decimal amount"},
      {"1.2.3", "not a non-negative decimal amount"},
      {"nan", "not a non-negative decimal amount"},
      {"inf", "not a non-negative decimal amount"},
      {"0x10", "not a non-negative decimal amount"},
      {"1e", "not a non-negative decimal amount"},
  };
  for (const auto& c : cases) {
    const Result<NanoUsd> v = ParseUsd(c.text);
    ASSERT_FALSE(v.ok()) << "'" << c.text << "' was accepted as " << *v;
    EXPECT_TRUE(v.status().IsInvalidArgument()) << c.text;
    const std::string& msg = v.status().message();
    EXPECT_NE(msg.find(std::string("'") + c.text + "'"), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.why), std::string::npos) << c.text << ": " << msg;
  }
}

// --- NanoUsdFromDouble ---

TEST(Money, NanoUsdFromDoubleConvertsWhatTheDoublePrints) {
  struct {
    double usd;
    NanoUsd amount;
  } cases[] = {
      {0.0, 0},
      {-0.0, 0},
      {0.1, 100'000'000},        // 0.1000000000000000055... is "0.1"
      {0.0031, 3'100'000},       // 0.00309999999999999997... is "0.0031"
      {2.675, 2'675'000'000},    // 2.67499999999999982236431605997495353221893310546875
      {1e-9, 1},
      {0.000002365, 2'365},
      {123456.789, 123'456'789'000'000},
      {9223372036.0, 9'223'372'036'000'000'000},
      {-0.1, -100'000'000},
  };
  for (const auto& c : cases) {
    const Result<NanoUsd> v = NanoUsdFromDouble(c.usd);
    ASSERT_TRUE(v.ok()) << c.usd << ": " << v.status().ToString();
    EXPECT_EQ(*v, c.amount) << c.usd;
  }
}

// Past nine places the printed decimal is rounded half to even: a tie goes to
// the even nano-USD, whichever side of it the binary value lies. (usd * 1e9
// rounded away from zero, the former conversion of record costs, took
// 1.0000000005 to 1000000001.)
TEST(Money, NanoUsdFromDoubleRoundsHalfToEven) {
  struct {
    double usd;
    NanoUsd amount;
  } cases[] = {
      {5e-10, 0},            // tie -> 0 (even)
      {1.5e-9, 2},           // tie -> 2
      {2.5e-9, 2},           // tie -> 2
      {3.5e-9, 4},
      {1.0000000005, 1'000'000'000},
      {1.0000000015, 1'000'000'002},
      {5.0000000001e-10, 1},  // above the tie
      {4.9999999999e-10, 0},  // below it
      {1e-10, 0},
      {1e-300, 0},
      {0.12345678949, 123'456'789},
      {0.12345678951, 123'456'790},
      {-2.5e-9, -2},
      {-3.5e-9, -4},
  };
  for (const auto& c : cases) {
    const Result<NanoUsd> v = NanoUsdFromDouble(c.usd);
    ASSERT_TRUE(v.ok()) << c.usd << ": " << v.status().ToString();
    EXPECT_EQ(*v, c.amount) << c.usd;
  }
}

// The rule, stated as text: the double's shortest text, parsed exactly and
// rounded half to even at nine places (ParseScaledDecimal does the same).
TEST(Money, NanoUsdFromDoubleIsTheShortestTextRoundedHalfToEven) {
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> mantissa(1.0, 10.0);
  std::uniform_int_distribution<int> exponent(-14, 9);
  int compared = 0;
  for (int i = 0; i < 50000; ++i) {
    double d = mantissa(rng) * std::pow(10.0, exponent(rng));
    if (i % 3 == 0) d = std::round(d * 1e10) / 1e10;  // ties and near-ties at 1e-10
    const std::string text = fmt::format("{}", d);
    const Result<int64_t> expected = ParseScaledDecimal(text, 9, /*allow_rounding=*/true);
    const Result<NanoUsd> got = NanoUsdFromDouble(d);
    ASSERT_EQ(got.ok(), expected.ok()) << text;
    if (!got.ok()) continue;
    ASSERT_EQ(*got, *expected) << text;
    const Result<NanoUsd> negated = NanoUsdFromDouble(-d);
    ASSERT_TRUE(negated.ok()) << text;
    ASSERT_EQ(*negated, -*expected) << text;
    ++compared;
  }
  EXPECT_GT(compared, 45000);
}

TEST(Money, NanoUsdFromDoubleRejectsWhatHasNoAmount) {
  const double bad[] = {std::nan(""), std::numeric_limits<double>::infinity(),
                        -std::numeric_limits<double>::infinity(), 9.3e9, -9.3e9, 1e300,
                        9223372036.854777};  // the next double above the int64 range
  for (double d : bad) {
    const Result<NanoUsd> v = NanoUsdFromDouble(d);
    ASSERT_FALSE(v.ok()) << d << " was accepted as " << *v;
    EXPECT_TRUE(v.status().IsInvalidArgument()) << d;
    EXPECT_NE(v.status().message().find("USD"), std::string::npos) << v.status().message();
  }
  // The largest double below the range still converts, rounded.
  const double below = std::nextafter(9223372036.854775807, 0.0);
  const Result<NanoUsd> v = NanoUsdFromDouble(below);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_LE(*v, kMax);
  EXPECT_GT(*v, kMax - 2'000);
}

// Amounts shown to Lua (UsdFromNanoUsd) come back unchanged through the one
// conversion, up to $2,000,000, where doubles are still finer than 0.5 nUSD.
TEST(Money, UsdFromNanoUsdRoundTripsThroughNanoUsdFromDouble) {
  std::mt19937_64 rng(11);
  std::vector<NanoUsd> amounts = {0, 1, 2, 5, 37, 999'999'999, 2'000'000'000'000'000};
  for (int i = 0; i < 20000; ++i) {
    amounts.push_back(static_cast<NanoUsd>(rng() % 2'000'000'000'000'001));
    amounts.push_back(static_cast<NanoUsd>(rng() % 1'000'000'000));  // under $1
  }
  for (NanoUsd a : amounts) {
    for (NanoUsd signed_a : {a, -a}) {
      const Result<NanoUsd> back = NanoUsdFromDouble(UsdFromNanoUsd(signed_a));
      ASSERT_TRUE(back.ok()) << signed_a;
      ASSERT_EQ(*back, signed_a) << FormatUsd(signed_a);
    }
  }
  EXPECT_EQ(UsdFromNanoUsd(2'365), 0.000002365);
  EXPECT_EQ(UsdFromNanoUsd(-1'500'000'000), -1.5);
}

// --- one format in every message ---

// Every "$..." amount in `text`, parsed back.
std::vector<NanoUsd> AmountsIn(const std::string& text) {
  std::vector<NanoUsd> out;
  static const std::regex kDollar(R"(\$([0-9]+(\.[0-9]+)?))");
  for (std::sregex_iterator it(text.begin(), text.end(), kDollar), end; it != end; ++it) {
    const std::string digits = (*it)[1];
    const Result<NanoUsd> v = ParseUsd(digits);
    EXPECT_TRUE(v.ok()) << digits << " in " << text;
    EXPECT_EQ(FormatUsd(*v), "$" + digits) << "not in the one format: " << text;
    out.push_back(v.ok() ? *v : -1);
  }
  return out;
}

TEST(Money, BudgetRefusalsAndSloEventsFormatAmountsTheSameWay) {
  // Amounts chosen so that any other format shows: trailing zeros ($0.60),
  // nine places ($0.000002365), whole dollars ($12).
  const NanoUsd limit = 12'000'000'000;
  const NanoUsd spent = 600'000'000;
  const NanoUsd estimate = 11'400'002'365;

  BudgetLedger ledger([] { return int64_t{1'704'067'200'000'000'000}; });
  BudgetSpec spec;
  spec.id = "team";
  spec.scope = {Scope::Kind::kUser, ""};
  spec.limit_nanousd = limit;
  spec.window = Window::PerRun();
  ASSERT_TRUE(ledger.AddBudget(spec).ok());
  auto hold = ledger.Reserve("team", "alice", spent);
  ASSERT_TRUE(hold.ok()) << hold.status().ToString();
  ASSERT_TRUE(ledger.Settle(*hold, spent).ok());
  auto refused = ledger.Reserve("team", "alice", estimate);
  ASSERT_TRUE(refused.status().IsFailedPrecondition()) << refused.status().ToString();
  const std::string& budget_msg = refused.status().message();
  std::vector<NanoUsd> in_budget = AmountsIn(budget_msg);
  for (NanoUsd a : {limit, spent, estimate}) {
    EXPECT_NE(std::find(in_budget.begin(), in_budget.end(), a), in_budget.end())
        << FormatUsd(a) << " not in: " << budget_msg;
  }
  auto negative = ledger.Reserve("team", "alice", -2'365);
  EXPECT_NE(negative.status().message().find("-$0.000002365"), std::string::npos)
      << negative.status().message();

  auto specs = ParseSloYaml(R"(version: 1
slos:
  - id: cost
    cost: {max_per_request_usd: 0.60, per_day_usd: 12, window: 1h}
    on_breach:
      - {when: cost, action: log}
)",
                            "money.yaml");
  ASSERT_TRUE(specs.ok()) << specs.status().ToString();
  // The config written back carries the same digits, without the "$".
  const std::string yaml = FormatSloYaml(*specs);
  EXPECT_NE(yaml.find("max_per_request_usd: " + FormatUsdDecimal(spent)), std::string::npos)
      << yaml;
  EXPECT_NE(yaml.find("per_day_usd: " + FormatUsdDecimal(limit)), std::string::npos) << yaml;

  auto clock = std::make_shared<ManualClock>(1'704'067'200'000'000'000);
  SloMonitor::Options options;
  options.clock = clock;
  options.evaluate_every_ns = 0;
  auto monitor = SloMonitor::Create(std::move(*specs), std::move(options));
  ASSERT_TRUE(monitor.ok()) << monitor.status().ToString();
  const SloCall call{"model_call", "agent", "gpt-4o", ""};
  SloOutcome outcome;
  outcome.latency_ns = 1'000'000;
  std::vector<SloEvent> events;
  for (NanoUsd cost : {spent, estimate}) {  // $12.000002365 today: above the $12 per day
    outcome.cost_nanousd = cost;
    for (SloEvent& e : (*monitor)->Record(call, outcome)) events.push_back(std::move(e));
  }
  for (SloEvent& e : (*monitor)->Evaluate()) events.push_back(std::move(e));
  std::string details;
  for (const SloEvent& e : events) details += e.detail + "\n";
  const std::vector<NanoUsd> in_slo = AmountsIn(details);
  for (NanoUsd a : {spent, limit, estimate, spent + estimate}) {
    EXPECT_NE(std::find(in_slo.begin(), in_slo.end(), a), in_slo.end())
        << FormatUsd(a) << " not in: " << details;
  }
  auto status = (*monitor)->Get("cost", "");
  ASSERT_TRUE(status.ok()) << status.status().ToString();
  EXPECT_EQ(status->cost_max_per_request_nanousd, estimate);  // exact: a max is no estimate
  EXPECT_EQ(status->cost_today_nanousd, spent + estimate);
}

}  // namespace
}  // namespace bastion
