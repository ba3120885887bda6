// Tests for LatencySketch in bastion/slo.h: accuracy on skewed data, merging,
// the memory bound and option validation.
#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "bastion/slo.h"

namespace bastion {
namespace {

const double kQuantiles[] = {0.0, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0};

// Asserts every quantile is within relative error `a` of the exact lower
// quantile x[floor(q (n - 1))].
void ExpectAccurate(const std::string& name, std::vector<double> values, double a) {
  LatencySketch sketch;
  for (double v : values) sketch.Add(v);
  std::sort(values.begin(), values.end());
  ASSERT_EQ(sketch.Count(), values.size()) << name;
  EXPECT_EQ(sketch.Min(), values.front()) << name;
  EXPECT_EQ(sketch.Max(), values.back()) << name;
  EXPECT_FALSE(sketch.collapsed()) << name;
  for (double q : kQuantiles) {
    const double exact = values[static_cast<size_t>(q * (values.size() - 1))];
    const double got = sketch.Quantile(q);
    EXPECT_LE(std::abs(got - exact), a * exact * (1 + 1e-9))
        << name << " q=" << q << " exact=" << exact << " got=" << got;
  }
}

TEST(LatencySketch, QuantilesWithinOnePercentOnLognormal) {
  std::mt19937_64 rng(1);
  std::lognormal_distribution<double> dist(std::log(2e6), 1.5);  // median 2 ms
  std::vector<double> v(100'000);
  for (double& x : v) x = dist(rng);
  ExpectAccurate("lognormal", v, 0.01);
}

TEST(LatencySketch, QuantilesWithinOnePercentOnPareto) {
  std::mt19937_64 rng(2);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<double> v(100'000);
  for (double& x : v) x = 1e5 / std::pow(1.0 - u(rng), 1.0 / 1.2);  // alpha 1.2, heavy tail
  ExpectAccurate("pareto", v, 0.01);
}

TEST(LatencySketch, QuantilesWithinOnePercentOnBimodal) {
  std::mt19937_64 rng(3);
  std::normal_distribution<double> fast(1e6, 1e5);   // cache hits ~1 ms
  std::normal_distribution<double> slow(2e8, 3e7);   // misses ~200 ms
  std::bernoulli_distribution is_slow(0.07);
  std::vector<double> v(100'000);
  for (double& x : v) x = std::max(1.0, is_slow(rng) ? slow(rng) : fast(rng));
  ExpectAccurate("bimodal", v, 0.01);
}

TEST(LatencySketch, ZerosAndSmallCounts) {
  LatencySketch s;
  EXPECT_EQ(s.Quantile(0.5), 0);  // empty
  s.Add(0);
  s.Add(-5);  // counts as 0
  s.Add(std::nan(""));  // ignored
  s.Add(1000);
  EXPECT_EQ(s.Count(), 3u);
  EXPECT_EQ(s.Quantile(0.5), 0);
  EXPECT_EQ(s.Quantile(1.0), 1000);
  EXPECT_EQ(s.Quantile(7.0), 1000);  // q clamped
}

TEST(LatencySketch, MergeEqualsOneSketchOverTheUnion) {
  std::mt19937_64 rng(4);
  std::lognormal_distribution<double> a_dist(std::log(1e6), 1.0);
  std::lognormal_distribution<double> b_dist(std::log(5e7), 0.5);
  LatencySketch a, b, all;
  for (int i = 0; i < 50'000; ++i) {
    double x = a_dist(rng), y = b_dist(rng);
    a.Add(x);
    b.Add(y);
    all.Add(x);
    all.Add(y);
  }
  ASSERT_TRUE(a.Merge(b).ok());
  EXPECT_EQ(a.Count(), all.Count());
  EXPECT_EQ(a.Min(), all.Min());
  EXPECT_EQ(a.Max(), all.Max());
  EXPECT_EQ(a.NumBuckets(), all.NumBuckets());
  for (int i = 0; i <= 1000; ++i) {
    EXPECT_EQ(a.Quantile(i / 1000.0), all.Quantile(i / 1000.0)) << "q=" << i / 1000.0;
  }
}

TEST(LatencySketch, MergeRejectsDifferentAccuracy) {
  auto coarse = LatencySketch::Create({.relative_accuracy = 0.05});
  ASSERT_TRUE(coarse.ok());
  coarse->Add(10);
  LatencySketch fine;
  fine.Add(20);
  Status s = fine.Merge(*coarse);
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_EQ(fine.Count(), 1u);  // unchanged
}

TEST(LatencySketch, MemoryBoundCollapsesLowestBucketsOnly) {
  auto made = LatencySketch::Create({.relative_accuracy = 0.01, .max_buckets = 100});
  ASSERT_TRUE(made.ok());
  LatencySketch s = std::move(*made);
  std::vector<double> values;
  // 1 ns .. 1e9 ns spans ~1036 buckets at a = 1%: far more than 100.
  for (int i = 0; i < 20'000; ++i) {
    double x = std::pow(10.0, 9.0 * i / 19'999);
    values.push_back(x);
    s.Add(x);
    ASSERT_LE(s.NumBuckets(), 100);
  }
  EXPECT_TRUE(s.collapsed());
  // The kept 100 buckets cover a factor gamma^100 ~ 7.4 below the max: the
  // top ~10% of this log-uniform data keeps full accuracy.
  for (double q : {0.95, 0.99, 0.999, 1.0}) {
    const double exact = values[static_cast<size_t>(q * (values.size() - 1))];
    EXPECT_LE(std::abs(s.Quantile(q) - exact), 0.01 * exact * (1 + 1e-9)) << "q=" << q;
  }
  // Below the kept range quantiles are over-estimated, never under.
  EXPECT_GT(s.Quantile(0.5), values[values.size() / 2] * 1.01);
  // Merging into a bounded sketch keeps the bound too.
  LatencySketch wide;
  for (double x : values) wide.Add(x * 1e-3);
  ASSERT_TRUE(s.Merge(wide).ok());
  EXPECT_LE(s.NumBuckets(), 100);
  EXPECT_EQ(s.Count(), 40'000u);
}

TEST(LatencySketch, OptionsValidateNamingTheField) {
  auto bad_a = LatencySketch::Create({.relative_accuracy = 1.0});
  ASSERT_FALSE(bad_a.ok());
  EXPECT_TRUE(bad_a.status().IsInvalidArgument());
  EXPECT_NE(bad_a.status().message().find("relative_accuracy"), std::string::npos);
  auto bad_n = LatencySketch::Create({.relative_accuracy = 0.01, .max_buckets = 0});
  ASSERT_FALSE(bad_n.ok());
  EXPECT_NE(bad_n.status().message().find("max_buckets"), std::string::npos);
}

TEST(SloClock, ManualClockAdvancesOnlyWhenTold) {
  ManualClock clock(5);
  EXPECT_EQ(clock.NowNs(), 5);
  clock.Advance(kNsPerMinute);
  EXPECT_EQ(clock.NowNs(), 5 + kNsPerMinute);
  clock.Set(0);
  EXPECT_EQ(clock.NowNs(), 0);
  SystemClock sys;
  int64_t t0 = sys.NowNs();
  EXPECT_GE(sys.NowNs(), t0);
}

}  // namespace
}  // namespace bastion
