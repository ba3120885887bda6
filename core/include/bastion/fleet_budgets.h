// Budgets shared by every worker process of a fleet, kept on one Redis
// server: the same configuration, windows, thresholds and all-or-nothing
// holds as the in-process BudgetSet, enforced fleet-wide (docs/fleet.md).
//
//   auto config = bastion::LoadBudgetYamlFile("budgets.yaml");
//   bastion::StoreOptions store;
//   store.url = "redis://cache.internal:6379/0";
//   auto budgets = bastion::RedisBudgets::Open(*config, store, {});
//   if (!budgets.ok()) return budgets.status();      // Unavailable: names the server
//   bastion::GuardOptions options;
//   options.budget_backend = *budgets;                 // or GuardOptions::store
//
// Admission. Reserve, Settle and Release each run one Lua script on the
// server (EVALSHA), which checks and updates every (budget, key) covering
// the call at once: a hold is admitted on all of them or on none, whichever
// worker and thread asks. The numbers of a key in a window are
//   spent + reserved + leased <= admissible limit   (hard budgets)
// where `leased` is what workers hold as leases (below). So no interleaving
// of any number of processes admits more than the limit.
//
// Leases (Options::leases). A worker may take a slice of a (budget, key)'s
// remaining admissible money and admit calls against it in-process, with no
// round trip. The slice counts as `leased` on the server, so leasing never
// over-admits. Its size: when a per-call reservation on the server succeeds,
// the worker is granted
//   slice = min(lease_cap_nanousd, free / (2 * live workers))
// where free = admissible - spent - reserved - leased after the reservation;
// a slice smaller than lease_min_calls estimates of the call is not granted,
// so a nearly exhausted budget falls back to one atomic reservation per call.
// Spend under a lease reaches the server when the worker reports it: every
// report_interval_ns (100 ms) in the background, on a refill and on Close.
// Thresholds and downgrades are judged on the server's numbers, so with
// leases an alert fires (and a downgrade takes effect fleet-wide) up to one
// report interval after the spend that crossed it; the worker that crossed
// it sees its own downgrade at once. Budgets with rolling windows, soft
// budgets and keys at or above a throttle threshold are never leased.
//
// Workers. Worker names must be unique in the fleet: two processes under one
// name share their holds and liveness. The default, "<hostname>:<pid>", is
// (a second RedisBudgets in one process gets ":<n>" appended). Each worker
// renews a liveness key with a TTL of worker_ttl_ns every report interval
// (at most ttl/3) in the background. When that key has expired the worker
// is dead: the next background report of any live worker (or a Usage call)
// reclaims its holds and leases, a bounded number per script. Its
// outstanding reservations are charged at their estimate (as a BudgetSet
// does with reservations a crash abandoned: the call may have run and been
// billed); of its leases, the spend it reported is already charged, the
// holds it had open at its last report are charged as spend, and the rest
// of the slice is returned. A worker must not stay silent (a paused process)
// longer than its TTL: its holds are then gone, and settling one is
// FailedPrecondition.
//
// Redis unreachable. Reserve fails with Unavailable (naming the server)
// within StoreOptions::timeout_ns. Leases are not used while the last call
// to the server failed, so a worker admits under money it already leased for
// at most one report interval after its server went away. Settles and releases that cannot reach the
// server are kept and applied when it returns. With StoreOptions::degrade_to_local
// the worker instead admits in-process against degraded_cap_nanousd per
// (budget, key) while the server is unreachable, reports "store_degraded" and
// "store_restored" through TakeEvents, and reports the spend it admitted when
// the server returns. Nothing needs restarting.
//
// Windows are computed from the Redis server's clock (TIME, its offset to
// this host's clock refreshed every second), so hosts with skewed clocks
// agree on when a day starts.
//
// Thread safety: RedisBudgets is thread-safe.
#ifndef BASTION_FLEET_BUDGETS_H_
#define BASTION_FLEET_BUDGETS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "bastion/budget.h"
#include "bastion/budget_backend.h"
#include "bastion/budget_set.h"
#include "bastion/fleet.h"
#include "bastion/status.h"

namespace bastion {

class RedisBudgets final : public BudgetBackend {
 public:
  struct Options {
    // --- leases ---
    // Admit in-process against leased slices (see above).
    bool leases = true;
    // The largest slice one worker holds per (budget, key). Default $1.
    int64_t lease_cap_nanousd = 1'000'000'000;
    // A slice must cover at least this many calls of the size being reserved.
    int lease_min_calls = 4;
    // How often spend and holds under leases are reported, liveness renewed
    // and failed settles retried. At most worker_ttl_ns / 3.
    int64_t report_interval_ns = 100'000'000;

    // --- workers ---
    // A worker silent this long is dead and its holds are reclaimed. At
    // least 100 ms.
    int64_t worker_ttl_ns = 10'000'000'000;

    // --- tests ---
    // "now" in UTC nanoseconds for windows and alerts; null = the server's
    // clock. Liveness always uses the server's clock.
    BudgetLedger::Clock clock;
  };

  // Prepares `config` (halt caps as in BudgetSet), connects, loads the
  // scripts and registers this worker. Errors: InvalidArgument (config, URL,
  // options), Unavailable (the server cannot be reached: degraded mode too
  // needs to have met it once).
  static Result<std::shared_ptr<RedisBudgets>> Open(BudgetConfig config, StoreOptions store,
                                                    Options options);
  ~RedisBudgets() override;

  // BudgetBackend, with BudgetSet's semantics (budget_set.h). Reserve:
  // FailedPrecondition naming the budget that refused; Unavailable when the
  // server cannot be reached in time (and degraded mode is off). Settle and
  // Release: FailedPrecondition when the hold was already settled or
  // released, or was reclaimed from this worker as dead.
  Result<BudgetHold> Reserve(const BudgetSubject& subject, int64_t estimate_nanousd,
                             std::string* refused_by) override;
  Result<HoldSettlement> Settle(const BudgetHold& hold, int64_t actual_nanousd) override;
  Status Release(const BudgetHold& hold) override;
  std::vector<std::string> CoveringBudgets(const BudgetSubject& subject) const override;
  std::vector<StoreEvent> TakeEvents() override;

  Result<std::string> KeyFor(std::string_view budget_id, const BudgetSubject& subject) const;

  // The fleet-wide numbers of one budget and key in the current window, from
  // the server (after reporting this worker's lease spend). `reserved`
  // includes holds open under leases as last reported; `remaining` also
  // subtracts outstanding leases. NotFound for an unknown budget.
  Result<BudgetUsage> UsageOf(std::string_view budget_id, std::string_view key);
  // Every budget and key this worker has used, plus global and pinned ones.
  Result<std::vector<BudgetUsage>> Usage();

  // Reports lease spend and retries deferred settles now.
  Status Flush();
  // Reports, returns every lease's unused part, removes this worker's
  // liveness key and stops the background thread. Reservations still open
  // stay on the server (charged when the worker is found dead). Idempotent.
  Status Close();

  const BudgetConfig& config() const;
  // This worker in the shared state: StoreOptions::worker + "@<pid>" (each
  // run of a named worker is its own incarnation), or "<hostname>:<pid>".
  const std::string& worker() const;
  // True while admitting in-process because the server is unreachable.
  bool degraded() const;

  struct Impl;

 private:
  explicit RedisBudgets(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace bastion

#endif  // BASTION_FLEET_BUDGETS_H_
