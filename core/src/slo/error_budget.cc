// ErrorBudget and BurnRateAlerter (see bastion/slo.h).
#include <algorithm>
#include <string>

#include "bastion/slo.h"

namespace bastion {
namespace {

// floor(a / b) for b > 0, also for negative a.
int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

constexpr int64_t kMaxBuckets = 10'000'000;

}  // namespace

Status SloOptions::Validate() const {
  if (!(target > 0 && target < 1)) {
    return Status::InvalidArgument("target: must be in (0, 1), e.g. 0.999");
  }
  if (bucket_ns <= 0) return Status::InvalidArgument("bucket_ns: must be > 0");
  if (window_ns <= 0 || window_ns % bucket_ns != 0) {
    return Status::InvalidArgument("window_ns: must be a positive multiple of bucket_ns");
  }
  if (window_ns / bucket_ns > kMaxBuckets) {
    return Status::InvalidArgument(
        "window_ns: more than 10000000 buckets; use a larger bucket_ns");
  }
  for (size_t i = 0; i < excluded_error_classes.size(); ++i) {
    if (excluded_error_classes[i].empty()) {
      return Status::InvalidArgument("excluded_error_classes[" + std::to_string(i) +
                                     "]: must not be empty");
    }
  }
  return Status::OK();
}

ErrorBudget::ErrorBudget(const SloOptions& options)
    : options_(options),
      excluded_(options.excluded_error_classes.begin(), options.excluded_error_classes.end()),
      ring_(static_cast<size_t>(options.window_ns / options.bucket_ns)) {}

Result<std::unique_ptr<ErrorBudget>> ErrorBudget::Create(const SloOptions& options) {
  Status s = options.Validate();
  if (!s.ok()) return s;
  return std::unique_ptr<ErrorBudget>(new ErrorBudget(options));
}

int64_t ErrorBudget::BucketIndex(int64_t now_ns) const {
  return FloorDiv(now_ns, options_.bucket_ns);
}

void ErrorBudget::Record(bool success, std::string_view error_class, int64_t now_ns) {
  RecordMany(success ? 1 : 0, success ? 0 : 1, error_class, now_ns);
}

void ErrorBudget::RecordMany(uint64_t successes, uint64_t errors, std::string_view error_class,
                             int64_t now_ns) {
  const bool excluded = errors != 0 && excluded_.count(error_class) != 0;
  const int64_t index = BucketIndex(now_ns);
  const int64_t n = static_cast<int64_t>(ring_.size());
  std::lock_guard<std::mutex> lock(mu_);
  Bucket& b = ring_[static_cast<size_t>(((index % n) + n) % n)];
  if (b.index > index) return;  // its slot already holds a newer bucket
  if (b.index < index) b = Bucket{index, 0, 0, 0};
  if (excluded) {
    b.events += successes;
    b.excluded += errors;
  } else {
    b.events += successes + errors;
    b.errors += errors;
  }
}

Totals ErrorBudget::WindowLocked(int64_t w_ns, int64_t now_ns) const {
  const int64_t n = static_cast<int64_t>(ring_.size());
  const int64_t k =
      std::clamp<int64_t>((w_ns + options_.bucket_ns - 1) / options_.bucket_ns, 1, n);
  const int64_t current = BucketIndex(now_ns);
  Totals t;
  for (int64_t index = current - k + 1; index <= current; ++index) {
    const Bucket& b = ring_[static_cast<size_t>(((index % n) + n) % n)];
    if (b.index != index) continue;
    t.events += b.events;
    t.errors += b.errors;
    t.excluded += b.excluded;
  }
  return t;
}

Totals ErrorBudget::Window(int64_t w_ns, int64_t now_ns) const {
  std::lock_guard<std::mutex> lock(mu_);
  return WindowLocked(w_ns, now_ns);
}

double ErrorBudget::BurnRate(int64_t w_ns, int64_t now_ns) const {
  return Window(w_ns, now_ns).ErrorRate() / (1 - options_.target);
}

double ErrorBudget::BudgetRemaining(int64_t now_ns) const {
  const Totals t = Window(options_.window_ns, now_ns);
  if (t.errors == 0) return 1.0;
  return 1.0 - static_cast<double>(t.errors) / ((1 - options_.target) * t.events);
}

// --- alerts ---

const char* AlertSeverityName(AlertSeverity s) {
  return s == AlertSeverity::kPage ? "page" : "ticket";
}

Status BurnRateRule::Validate(const SloOptions& slo) const {
  if (name.empty()) return Status::InvalidArgument("name: must not be empty");
  if (long_window_ns <= 0 || long_window_ns > slo.window_ns) {
    return Status::InvalidArgument("long_window_ns: must be in (0, the SLO window_ns]");
  }
  if (short_window_ns < slo.bucket_ns || short_window_ns >= long_window_ns) {
    return Status::InvalidArgument(
        "short_window_ns: must be >= bucket_ns and < long_window_ns");
  }
  if (!(burn_rate > 0)) return Status::InvalidArgument("burn_rate: must be > 0");
  if (severity != AlertSeverity::kPage && severity != AlertSeverity::kTicket) {
    return Status::InvalidArgument("severity: must be page or ticket");
  }
  return Status::OK();
}

std::vector<BurnRateRule> DefaultBurnRateRules() {
  return {
      {"page-1h", kNsPerHour, 5 * kNsPerMinute, 14.4, AlertSeverity::kPage},
      {"page-6h", 6 * kNsPerHour, 30 * kNsPerMinute, 6, AlertSeverity::kPage},
      {"ticket-1d", kNsPerDay, 2 * kNsPerHour, 3, AlertSeverity::kTicket},
      {"ticket-3d", 3 * kNsPerDay, 6 * kNsPerHour, 1, AlertSeverity::kTicket},
  };
}

Result<BurnRateAlerter> BurnRateAlerter::Create(const ErrorBudget* budget,
                                                std::vector<BurnRateRule> rules) {
  if (budget == nullptr) return Status::InvalidArgument("budget: must not be null");
  for (size_t i = 0; i < rules.size(); ++i) {
    Status s = rules[i].Validate(budget->options());
    if (!s.ok()) return s.WithContext("rules[" + std::to_string(i) + "]");
  }
  return BurnRateAlerter(budget, std::move(rules));
}

std::vector<FiringAlert> BurnRateAlerter::Evaluate(int64_t now_ns) const {
  std::vector<FiringAlert> firing;
  for (size_t i = 0; i < rules_.size(); ++i) {
    const BurnRateRule& r = rules_[i];
    // Short window first: it is the cheaper sum and usually the one below.
    const double short_burn = budget_->BurnRate(r.short_window_ns, now_ns);
    if (!(short_burn > r.burn_rate)) continue;
    const double long_burn = budget_->BurnRate(r.long_window_ns, now_ns);
    if (!(long_burn > r.burn_rate)) continue;
    firing.push_back({i, r.name, r.severity, long_burn, short_burn});
  }
  return firing;
}

}  // namespace bastion
