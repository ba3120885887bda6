// Rate limits and circuit breakers shared by every worker of a fleet through
// one Redis server (docs/fleet.md): a "10/min" grant admits 10 calls a
// minute across all workers, and a model whose breaker opens on one worker
// is refused on all of them.
//
//   bastion::FleetLimitsOptions options;
//   options.store.url = "redis://cache.internal:6379/0";
//   options.store.timeout_ns = 500'000'000;
//   auto limits = bastion::SharedRateLimits::Open(options);     // a RateLimits
//   auto breakers = bastion::OpenRedisBreakers(options);        // a BreakerStore
//   engine->SetRateLimits(*limits);                             // permissions
//   bastion::SloMonitor::Options so;
//   so.rate_limits = *limits;                                   // rate_limit responses
//   so.breakers = *breakers;                                    // breakers, disables
//
// Guard::Open does exactly this when GuardOptions::store.url is set.
//
// RATE LIMITS. SharedRateLimits::Acquire takes one token from the bucket of
// every ref, all or none, in ONE round trip: one Lua script on the server,
// whose clock (TIME) refills the buckets, so workers' clocks do not matter.
// The buckets are those of RateLimiter (N tokens, refilled at N per period,
// exact integer arithmetic in microseconds), so a limit means the same with
// one worker or fifty.
//
// BREAKERS. A worker's breaker still counts its own calls; when it opens, the
// transition is published (Record returns after the write) with its
// until-time (the server's clock + open_for) and reason. Every worker's
// admission reads a local cache of the fleet's breakers and disabled
// subjects, refreshed by a background thread every refresh_interval_ns
// (100 ms by default; one round trip that reads every open breaker). So:
//   - a call whose breakers are closed costs no round trip;
//   - STALENESS BOUND: a transition published by one worker is honoured by
//     every other worker's admission at most refresh_interval_ns plus one
//     round trip after the publishing Record returned;
//   - an open breaker turns half-open when its until-time passes (judged on
//     the server's clock, estimated locally from the last refresh). Half-open
//     probe slots are taken on the server (one round trip, only while
//     half-open), so the fleet sends at most half_open_probes probes; a
//     failed probe reopens the breaker for the fleet, and half_open_probes
//     successful ones close it for the fleet. A slot held by a worker that
//     died comes back after open_for.
//   - a subject disabled by an SLO response on one worker is disabled on all;
//     the disable lapses disable_lease_ns after the disabling worker stopped
//     renewing it (it renews every lease / 4 while the response is active).
//
// FAILURE. Fail closed by default: a call that needs the store (a shared rate
// limit, or an SLO series with a breaker or a disable response) is refused
// with Unavailable naming the server: Acquire within StoreOptions::timeout_ns;
// a breaker lookup as soon as a refresh failed, or once the last successful
// one is older than max(timeout_ns, 2 x refresh_interval_ns). With
// degrade_to_local, the worker uses its in-process limiter and breakers while
// the server is away instead, and records a "store_degraded" event when it
// starts and a "store_restored" one when the server answers again. Nothing
// restarts: the client reconnects by itself.
//
// Thread safety: every class here is thread-safe.
#ifndef BASTION_FLEET_LIMITS_H_
#define BASTION_FLEET_LIMITS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "bastion/fleet.h"
#include "bastion/permissions.h"
#include "bastion/status.h"

namespace bastion {

struct CircuitBreakerOptions;

struct FleetLimitsOptions {
  StoreOptions store;
  // How often the breaker cache is refreshed: the staleness bound. >= 1 ms.
  int64_t refresh_interval_ns = 100'000'000;
  // How long a published disable lasts without renewal. >= 1 s.
  int64_t disable_lease_ns = 10'000'000'000;
};

// Rate limits backed by Redis (see above). Implements RateLimits.
class SharedRateLimits final : public RateLimits {
 public:
  // Connects now: Unavailable if the server cannot be reached (unless
  // degrade_to_local), InvalidArgument for a bad URL.
  static Result<std::shared_ptr<SharedRateLimits>> Open(const FleetLimitsOptions& options);
  ~SharedRateLimits() override;

  // All or none, on the server's clock (`now_ns` is used only in degraded
  // mode). True: taken. False: refused, *refused (if given) = the index of
  // the first ref without a token; nothing taken. Unavailable (fail closed).
  Result<bool> Acquire(const std::vector<RateLimitRef>& refs, int64_t now_ns,
                       size_t* refused = nullptr) override;

  // One round trip to the server (PING), for comparison in benchmarks.
  Status Ping();
  // The events since the last call, oldest first.
  std::vector<StoreEvent> TakeEvents();
  bool degraded() const;

  class Impl;

 private:
  explicit SharedRateLimits(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The fleet's view of one breaker key (an SLO series).
struct SharedBreakerState {
  enum class State : unsigned char {
    kClosed,    // nothing published
    kOpen,      // refused until until_ns
    kHalfOpen,  // a probe slot must be taken (TakeProbe)
    kDisabled,  // an SLO response disabled it on some worker
    kLocal,     // degraded mode: decide with this worker's own breaker
  };
  State state = State::kClosed;
  int64_t until_ns = 0;  // kOpen: server time it turns half-open (UTC ns)
  std::string worker;    // who published it
  std::string reason;
};

// Circuit-breaker and disable state shared by the SLO monitors of a fleet.
// Keys are SLO series: "<slo id>\x1f<subject>".
class BreakerStore {
 public:
  virtual ~BreakerStore() = default;

  // From the local cache: no round trip. Unavailable (degrade mode off) when
  // the last refresh failed or is older than max(timeout, 2 x refresh
  // interval); kLocal instead in degrade mode.
  virtual Result<SharedBreakerState> Lookup(std::string_view key) = 0;
  // Publishes an open breaker: open until the server's now + open_for_ns.
  virtual Status PublishOpen(std::string_view key, int64_t open_for_ns,
                             std::string_view reason) = 0;
  // A half-open probe slot: true taken, false all slots in flight (or the
  // breaker reopened). Closed meanwhile: true without a slot
  // (*took_slot = false).
  virtual Result<bool> TakeProbe(std::string_view key, const CircuitBreakerOptions& breaker,
                                 bool* took_slot) = 0;
  virtual void ReleaseProbe(std::string_view key) = 0;
  // A probe's outcome: a failure reopens the breaker for the fleet,
  // half_open_probes successes close it (or reopen it when too many were
  // slow). Returns the state after it (kClosed, kOpen or kHalfOpen).
  virtual Result<SharedBreakerState::State> ProbeOutcome(std::string_view key, bool success,
                                                         bool slow,
                                                         const CircuitBreakerOptions& breaker,
                                                         std::string_view reopen_reason) = 0;
  // An SLO response disabling the key starts (true) or stops on this worker.
  virtual Status SetDisabled(std::string_view key, bool disabled, std::string_view reason) = 0;
  // Events since the last call, oldest first.
  virtual std::vector<StoreEvent> TakeEvents() = 0;
};

// The Redis BreakerStore: connects now (as SharedRateLimits::Open) and starts
// its refresher thread, which stops when the store is destroyed.
Result<std::shared_ptr<BreakerStore>> OpenRedisBreakers(const FleetLimitsOptions& options);

}  // namespace bastion

#endif  // BASTION_FLEET_LIMITS_H_
