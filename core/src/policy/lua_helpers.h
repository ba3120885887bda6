// The sandbox's helper libraries: glob, domain and url matching, PII
// detection and masking, the bundle's permissions, and shared rate counters.
#ifndef BASTION_POLICY_LUA_HELPERS_H_
#define BASTION_POLICY_LUA_HELPERS_H_

#include <array>
#include <atomic>
#include <memory>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "bastion/clock.h"
#include "bastion/permissions.h"
#include "bastion/policy.h"
#include "policy/bundle.h"
#include "policy/call_view.h"
#include "policy/lua_sandbox.h"

struct lua_State;

namespace bastion::policy {

// Sliding-window event counters shared by every thread of an engine, keyed
// by policy id and the policy's own key. Their state is bounded: keys per
// policy, bytes per key and bytes in all (PolicyLimits); a key whose window
// has passed holds no events and is dropped when room is needed.
class Counters {
 public:
  struct Limits {
    size_t max_keys = 0;       // per policy
    size_t max_key_bytes = 0;  // per key
    size_t max_bytes = 0;      // every policy's keys together
  };
  // The accounted size of one key: its bytes plus the map's bookkeeping.
  static constexpr size_t kKeyOverhead = 96;

  struct AddResult {
    bool ok = false;
    double count = 0;      // if ok: the estimated events in the last window
    size_t new_bytes = 0;  // if ok: bytes a new key took (0 for a known key)
    std::string error;     // if not ok: which bound refused a new key
  };
  // Adds `amount` at `now_ns` and returns the estimated count in the last
  // `window_ns` (the previous fixed window weighted by its overlap, plus the
  // current one: exact for steady rates, within one window's share otherwise).
  // A new key that would pass a bound is refused, and nothing is added.
  AddResult Add(const std::string& policy, std::string_view key, int64_t window_ns,
                double amount, int64_t now_ns, const Limits& limits);

  // Bytes held by every policy's keys, as accounted against max_bytes.
  size_t bytes() const { return bytes_.load(std::memory_order_relaxed); }

 private:
  struct Window {
    int64_t start = 0;
    int64_t length = 0;
    double current = 0, previous = 0;
  };
  struct PolicyCounters {
    std::mutex mu;
    std::unordered_map<std::string, Window> windows;  // GUARDED_BY(mu)
    // No key has expired before this time: skip sweeping until then.
    int64_t next_sweep_ns = 0;  // GUARDED_BY(mu)
  };
  PolicyCounters* ForPolicy(const std::string& policy);
  // Drops the keys whose windows have passed (their count is 0).
  void Sweep(PolicyCounters* pc, int64_t now_ns);
  // Sweeps every policy's keys but `self`'s (whose mutex the caller holds).
  void SweepOthers(PolicyCounters* self, int64_t now_ns);

  std::mutex mu_;
  std::unordered_map<std::string, std::unique_ptr<PolicyCounters>> policies_;  // GUARDED_BY(mu_)
  std::atomic<size_t> bytes_{0};
};

// State shared by all workers of one engine.
struct SharedState {
  Counters counters;
  RateLimiter rate_limiter;  // the permissions' per-grant rate limits
  // Set (before the first evaluation): the limits are taken there instead.
  std::shared_ptr<RateLimits> rate_limits;
  // Budgets, SLOs, prices: set by PolicyEngine::SetState, copied by helpers.
  // (A mutex rather than std::atomic<std::shared_ptr>, whose lock-bit
  // implementation in libstdc++ 12 ThreadSanitizer cannot follow.)
  std::shared_ptr<const PolicyState> State() const {
    std::lock_guard<std::mutex> lock(state_mu);
    return state;
  }
  void SetState(std::shared_ptr<const PolicyState> s) {
    std::lock_guard<std::mutex> lock(state_mu);
    state.swap(s);
  }
  mutable std::mutex state_mu;
  std::shared_ptr<const PolicyState> state;  // GUARDED_BY(state_mu)
  // "now" of the rate limits and counter windows: PolicyEngine::SetClock's
  // clock, UTC wall time by default. A plain pointer read on every check; the
  // clocks ever set stay alive with the engine (there are one or two).
  int64_t NowNs() const { return clock.load(std::memory_order_acquire)->NowNs(); }
  void SetClock(std::shared_ptr<const Clock> c) {
    std::lock_guard<std::mutex> lock(state_mu);
    clock.store(c.get(), std::memory_order_release);
    clocks.push_back(std::move(c));
  }
  std::atomic<const Clock*> clock{&kWallClock};
  std::vector<std::shared_ptr<const Clock>> clocks;  // GUARDED_BY(state_mu)
  static inline const WallClock kWallClock{};
};

// What the helpers of one worker read.
struct HelperContext {
  SharedState* shared = nullptr;
  const CompiledBundle* bundle = nullptr;
  ViewContext* views = nullptr;
  const std::string* policy_id = nullptr;  // the policy running now
};

// Adds the helper libraries to the sandbox's base environment.
void InstallHelpers(lua_State* L, Sandbox* sandbox, HelperContext* ctx);

// The built-in least-privilege check for before_tool: the "permissions" vote
// (deny with the missing grant or the exceeded rate limit, require_approval,
// or allow), taking a token from each admitting grant's rate limit at
// shared->NowNs(). nullopt for other hooks.
std::optional<PolicyOutcome> CheckToolPermissions(const Permissions& permissions,
                                                  SharedState* shared, const CallInfo& call);

}  // namespace bastion::policy

#endif  // BASTION_POLICY_LUA_HELPERS_H_
