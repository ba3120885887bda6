// Order statistics for benchmarks that time each call themselves.
#ifndef BASTION_BENCH_BENCH_STATS_H_
#define BASTION_BENCH_BENCH_STATS_H_

#include <algorithm>
#include <cstddef>
#include <vector>

namespace bastion::bench {

// The q-quantile (0..1) of `v`, nearest rank.
inline double Percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(q * static_cast<double>(v.size() - 1))];
}

}  // namespace bastion::bench

#endif  // BASTION_BENCH_BENCH_STATS_H_
