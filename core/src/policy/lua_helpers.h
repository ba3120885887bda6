// The sandbox's helper libraries: glob, domain and url matching, PII
// detection and masking, the bundle's permissions, and shared rate counters.
#ifndef BASTION_POLICY_LUA_HELPERS_H_
#define BASTION_POLICY_LUA_HELPERS_H_

#include <array>
#include <atomic>
#include <memory>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>

#include "bastion/permissions.h"
#include "bastion/policy.h"
#include "policy/bundle.h"
#include "policy/call_view.h"
#include "policy/lua_sandbox.h"

struct lua_State;

namespace bastion::policy {

// Sliding-window event counters shared by every thread of an engine, keyed
// by policy id and the policy's own key.
class Counters {
 public:
  // Adds `amount` at `now_ns` and returns the estimated count in the last
  // `window_ns` (the previous fixed window weighted by its overlap, plus the
  // current one: exact for steady rates, within one window's share otherwise).
  double Add(const std::string& key, int64_t window_ns, double amount, int64_t now_ns);

 private:
  struct Window {
    int64_t start = 0;
    double current = 0, previous = 0;
  };
  static constexpr int kShards = 16;
  struct Shard {
    std::mutex mu;
    std::unordered_map<std::string, Window> windows;
  };
  std::array<Shard, kShards> shards_;
};

// State shared by all workers of one engine.
struct SharedState {
  Counters counters;
  RateLimiter rate_limiter;  // the permissions' per-grant rate limits
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
  std::function<int64_t()> now_ns = [] {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  };
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

// The built-in least-privilege check for before_tool: records a "permissions"
// outcome (deny with the missing grant, require_approval, or allow) in `d`.
void EnforcePermissions(const Permissions& permissions, const HelperContext& ctx,
                        const CallInfo& call, Decision* d);

}  // namespace bastion::policy

#endif  // BASTION_POLICY_LUA_HELPERS_H_
