// LatencySketch: log-spaced buckets with relative error a (see bastion/slo.h).
//
// Bucket i holds the values in (gamma^(i-1), gamma^i]; its representative value
// 2 gamma^i / (gamma + 1) is within a factor (1 ± a) of every value in it.
#include <algorithm>
#include <cmath>

#include "bastion/slo.h"

namespace bastion {

Status SketchOptions::Validate() const {
  if (!(relative_accuracy > 0 && relative_accuracy < 1)) {
    return Status::InvalidArgument("relative_accuracy: must be in (0, 1)");
  }
  if (max_buckets < 1 || max_buckets > 1'000'000) {
    return Status::InvalidArgument("max_buckets: must be in [1, 1000000]");
  }
  return Status::OK();
}

LatencySketch::LatencySketch() : LatencySketch(SketchOptions{}) {}

LatencySketch::LatencySketch(const SketchOptions& options)
    : options_(options),
      gamma_((1 + options.relative_accuracy) / (1 - options.relative_accuracy)),
      log_gamma_(std::log(gamma_)) {}

Result<LatencySketch> LatencySketch::Create(const SketchOptions& options) {
  Status s = options.Validate();
  if (!s.ok()) return s;
  return LatencySketch(options);
}

int32_t LatencySketch::IndexOf(double v) const {
  // |log(v)| <= 745 for positive finite doubles and log_gamma > 2e-16 only for
  // absurd accuracies; validated accuracies keep this far inside int32 for
  // a >= 1e-5. Clamp anyway.
  double i = std::ceil(std::log(v) / log_gamma_);
  return static_cast<int32_t>(std::clamp(i, -2e9, 2e9));
}

double LatencySketch::ValueOf(int32_t index) const {
  return 2 * std::exp(index * log_gamma_) / (gamma_ + 1);
}

void LatencySketch::AddToIndex(int32_t index, uint64_t n) {
  const int64_t max = options_.max_buckets;
  if (counts_.empty()) {
    offset_ = index;
    counts_.assign(1, n);
    return;
  }
  const int64_t lo = offset_;
  const int64_t hi = offset_ + static_cast<int64_t>(counts_.size()) - 1;
  if (index > hi) {
    counts_.resize(static_cast<size_t>(index - lo + 1), 0);
    const int64_t excess = static_cast<int64_t>(counts_.size()) - max;
    if (excess > 0) {  // collapse the lowest `excess` buckets into the next one
      uint64_t sum = 0;
      for (int64_t i = 0; i <= excess; ++i) sum += counts_[i];
      counts_.erase(counts_.begin(), counts_.begin() + excess);
      counts_[0] = sum;
      offset_ += static_cast<int32_t>(excess);
      collapsed_ = true;
    }
  } else if (index < lo) {
    const int64_t new_lo = std::max<int64_t>(index, hi - max + 1);
    if (new_lo < lo) {
      counts_.insert(counts_.begin(), static_cast<size_t>(lo - new_lo), 0);
      offset_ = static_cast<int32_t>(new_lo);
    }
    if (index < new_lo) {
      index = static_cast<int32_t>(new_lo);
      collapsed_ = true;
    }
  }
  counts_[index - offset_] += n;
}

void LatencySketch::Add(double value_ns) {
  if (!std::isfinite(value_ns)) return;
  if (value_ns < 0) value_ns = 0;
  if (count_ == 0) {
    min_ = max_ = value_ns;
  } else {
    min_ = std::min(min_, value_ns);
    max_ = std::max(max_, value_ns);
  }
  ++count_;
  if (value_ns == 0) {
    ++zero_count_;
  } else {
    AddToIndex(IndexOf(value_ns), 1);
  }
}

Status LatencySketch::Merge(const LatencySketch& other) {
  if (other.options_.relative_accuracy != options_.relative_accuracy) {
    return Status::InvalidArgument(
        "LatencySketch::Merge: relative_accuracy differs; sketches must share it");
  }
  if (other.count_ == 0) return Status::OK();
  if (count_ == 0) {
    min_ = other.min_;
    max_ = other.max_;
  } else {
    min_ = std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
  }
  count_ += other.count_;
  zero_count_ += other.zero_count_;
  collapsed_ = collapsed_ || other.collapsed_;
  for (size_t i = 0; i < other.counts_.size(); ++i) {
    if (other.counts_[i] != 0) {
      AddToIndex(other.offset_ + static_cast<int32_t>(i), other.counts_[i]);
    }
  }
  return Status::OK();
}

double LatencySketch::Quantile(double q) const {
  if (count_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  // The element of 0-based rank floor(q (n - 1)) is the first one whose
  // cumulative count exceeds q (n - 1).
  const double rank = q * static_cast<double>(count_ - 1);
  uint64_t seen = zero_count_;
  if (static_cast<double>(seen) > rank) return 0;
  double v = max_;
  for (size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (static_cast<double>(seen) > rank) {
      v = ValueOf(offset_ + static_cast<int32_t>(i));
      break;
    }
  }
  return std::clamp(v, min_, max_);
}

}  // namespace bastion
