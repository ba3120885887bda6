// Degraded mode's bookkeeping, the same for every shared store (budgets, rate
// limits, breakers): whether this process is working on its own state while
// the server is away, and the StoreEvents of entering and leaving that mode,
// for the guard to record.
#ifndef BASTION_FLEET_DEGRADATION_H_
#define BASTION_FLEET_DEGRADATION_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "bastion/fleet.h"
#include "bastion/status.h"

namespace bastion::fleet {

// Thread-safe. Leave is called on every successful call: one atomic load
// unless the store was degraded.
class Degradation {
 public:
  // `store`: "budgets", "rate_limits", "breakers"; `where`: the server, as
  // RedisClient::where() says it; `now`: the events' time, UTC ns.
  Degradation(std::string store, std::string where, std::function<int64_t()> now)
      : store_(std::move(store)), where_(std::move(where)), now_(std::move(now)) {}

  void Enter(const Status& why) {
    std::lock_guard<std::mutex> lock(mu_);
    if (degraded_.load(std::memory_order_relaxed)) return;
    degraded_.store(true, std::memory_order_release);
    events_.push_back({"store_degraded", store_, std::string(why.message()), now_()});
  }
  void Leave() {
    if (!degraded_.load(std::memory_order_acquire)) return;
    std::lock_guard<std::mutex> lock(mu_);
    if (!degraded_.load(std::memory_order_relaxed)) return;
    degraded_.store(false, std::memory_order_release);
    events_.push_back({"store_restored", store_, where_ + ": answering again", now_()});
  }
  bool degraded() const { return degraded_.load(std::memory_order_acquire); }
  // The events since the last Take, oldest first.
  std::vector<StoreEvent> Take() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<StoreEvent> out;
    out.swap(events_);
    return out;
  }

 private:
  const std::string store_, where_;
  const std::function<int64_t()> now_;
  std::atomic<bool> degraded_{false};  // written under mu_
  std::mutex mu_;
  std::vector<StoreEvent> events_;  // GUARDED_BY(mu_)
};

}  // namespace bastion::fleet

#endif  // BASTION_FLEET_DEGRADATION_H_
