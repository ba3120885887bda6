// CircuitBreaker (see bastion/slo.h for the state machine).
#include <algorithm>

#include "bastion/slo.h"

namespace bastion {
namespace {

constexpr unsigned char kFailed = 1;
constexpr unsigned char kSlow = 2;

bool AtLeastPct(int32_t part, int32_t whole, double pct) {
  return whole > 0 && 100.0 * part >= pct * whole;
}

}  // namespace

Status CircuitBreakerOptions::Validate() const {
  if (!(failure_rate_threshold_pct > 0 && failure_rate_threshold_pct <= 100)) {
    return Status::InvalidArgument("failure_rate_threshold_pct: must be in (0, 100]");
  }
  if (slow_call_duration_ns <= 0) {
    return Status::InvalidArgument("slow_call_duration_ns: must be > 0");
  }
  if (!(slow_call_rate_threshold_pct > 0 && slow_call_rate_threshold_pct <= 100)) {
    return Status::InvalidArgument("slow_call_rate_threshold_pct: must be in (0, 100]");
  }
  if (window_size < 1 || window_size > 1'000'000) {
    return Status::InvalidArgument("window_size: must be in [1, 1000000]");
  }
  if (minimum_calls < 1 || minimum_calls > window_size) {
    return Status::InvalidArgument("minimum_calls: must be in [1, window_size]");
  }
  if (open_duration_ns <= 0) return Status::InvalidArgument("open_duration_ns: must be > 0");
  if (half_open_probes < 1) return Status::InvalidArgument("half_open_probes: must be >= 1");
  return Status::OK();
}

const char* CircuitBreaker::StateName(State s) {
  switch (s) {
    case State::kClosed: return "closed";
    case State::kOpen: return "open";
    case State::kHalfOpen: return "half-open";
  }
  return "?";
}

CircuitBreaker::CircuitBreaker(const CircuitBreakerOptions& options)
    : options_(options), calls_(static_cast<size_t>(options.window_size), 0) {}

Result<std::unique_ptr<CircuitBreaker>> CircuitBreaker::Create(
    const CircuitBreakerOptions& options) {
  Status s = options.Validate();
  if (!s.ok()) return s;
  return std::unique_ptr<CircuitBreaker>(new CircuitBreaker(options));
}

void CircuitBreaker::ToClosedLocked() {
  state_ = State::kClosed;
  std::fill(calls_.begin(), calls_.end(), 0);
  next_ = filled_ = failures_ = slow_ = 0;
}

void CircuitBreaker::ToOpenLocked(int64_t now_ns) {
  ToClosedLocked();  // empties the window
  state_ = State::kOpen;
  opened_at_ns_ = now_ns;
}

void CircuitBreaker::MaybeHalfOpenLocked(int64_t now_ns) {
  if (state_ == State::kOpen && now_ns - opened_at_ns_ >= options_.open_duration_ns) {
    state_ = State::kHalfOpen;
    probes_allowed_ = probes_done_ = probes_slow_ = 0;
  }
}

bool CircuitBreaker::Allow(int64_t now_ns) {
  std::lock_guard<std::mutex> lock(mu_);
  MaybeHalfOpenLocked(now_ns);
  switch (state_) {
    case State::kClosed: return true;
    case State::kOpen: return false;
    case State::kHalfOpen:
      if (probes_allowed_ >= options_.half_open_probes) return false;
      ++probes_allowed_;
      return true;
  }
  return false;
}

void CircuitBreaker::Record(bool success, int64_t duration_ns, int64_t now_ns) {
  std::lock_guard<std::mutex> lock(mu_);
  MaybeHalfOpenLocked(now_ns);
  const bool slow = duration_ns >= options_.slow_call_duration_ns;
  switch (state_) {
    case State::kOpen:
      return;
    case State::kHalfOpen:
      if (!success) {
        ToOpenLocked(now_ns);
        return;
      }
      ++probes_done_;
      if (slow) ++probes_slow_;
      if (probes_done_ >= options_.half_open_probes) {
        if (AtLeastPct(probes_slow_, probes_done_, options_.slow_call_rate_threshold_pct)) {
          ToOpenLocked(now_ns);
        } else {
          ToClosedLocked();
        }
      }
      return;
    case State::kClosed: {
      unsigned char& slot = calls_[static_cast<size_t>(next_)];
      if (filled_ == options_.window_size) {  // evict the oldest call
        if (slot & kFailed) --failures_;
        if (slot & kSlow) --slow_;
      } else {
        ++filled_;
      }
      slot = static_cast<unsigned char>((success ? 0 : kFailed) | (slow ? kSlow : 0));
      if (!success) ++failures_;
      if (slow) ++slow_;
      next_ = (next_ + 1) % options_.window_size;
      if (filled_ >= options_.minimum_calls &&
          (AtLeastPct(failures_, filled_, options_.failure_rate_threshold_pct) ||
           AtLeastPct(slow_, filled_, options_.slow_call_rate_threshold_pct))) {
        ToOpenLocked(now_ns);
      }
      return;
    }
  }
}

CircuitBreaker::State CircuitBreaker::state(int64_t now_ns) {
  std::lock_guard<std::mutex> lock(mu_);
  MaybeHalfOpenLocked(now_ns);
  return state_;
}

}  // namespace bastion
