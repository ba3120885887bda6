// Budgets as configured: a YAML file of budgets, the calls each one covers,
// all-or-nothing reservations across every budget a call falls under, the
// responses thresholds ask for, and state that survives a restart.
//
//   auto config = bastion::LoadBudgetYamlFile("budgets.yaml");   // errors name file:line:col
//   if (!config.ok()) return config.status();
//   bastion::BudgetSet::Options options;
//   options.state_path = "./bastion/budgets";                    // RocksDB; "" = in memory
//   auto budgets = bastion::BudgetSet::Open(*config, options);
//
//   bastion::BudgetSubject who;
//   who.user = "alice"; who.agent = "support"; who.model = "gpt-4o";
//   auto hold = (*budgets)->Reserve(who, estimate_nanousd);
//   if (!hold.ok()) return deny(hold.status());       // names the budget that refused
//   if (hold->downgrade_model) model = *hold->downgrade_model;
//   ... call the model ...
//   (*budgets)->Settle(*hold, actual_nanousd);        // or Release(*hold) on failure
//
// The YAML format (docs/cost.md has the full reference):
//
//   version: 1
//   time_zone: Asia/Seoul           # calendar windows; default UTC
//   budgets:
//     - id: per-user-daily
//       scope: user                 # run | agent | user | tenant | tag | global
//       key: alice                  # optional: only this user
//       match: {agent: "support-*", model: "gpt-*", tool: "*"}   # optional
//       limit_usd: 5.00
//       window: daily               # per_run | daily | weekly | monthly | rolling 1h
//       time_zone: America/New_York # optional, overrides the file's
//       reserve_percent: 10
//       enforcement: hard           # hard | soft
//       alerts:
//         - {at: 80%, level: warning, action: notify, cooldown: 10m}
//         - {at: 90%, level: warning, action: downgrade, model: gpt-4o-mini}
//         - {at: 100%, level: critical, action: halt}
//
// Threshold actions, as BudgetSet applies them:
//   log, notify  reported in the hold's / settlement's alerts (the caller logs,
//                records or calls back);
//   downgrade    while committed spend is at or above the threshold, every hold
//                carries `downgrade_model` (the threshold's model);
//   throttle     while at or above the threshold, at most `rate` reservations
//                per key are admitted (e.g. "10/min"); others are refused;
//   halt         the threshold is a hard cap: reservations that would take
//                committed spend past it are refused, soft budget or not.
//
// Thread safety: BudgetSet is thread-safe.
#ifndef BASTION_BUDGET_SET_H_
#define BASTION_BUDGET_SET_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bastion/budget.h"
#include "bastion/permissions.h"
#include "bastion/status.h"

namespace bastion {

// A budget as configured: the spec and which calls it covers.
struct BudgetRule {
  BudgetSpec spec;
  // Globs over the call; a call is covered when all match (and its scope key
  // is present: a user-scoped budget does not cover calls without a user).
  std::vector<std::string> agents{"*"};
  std::vector<std::string> models{"*"};
  std::vector<std::string> tools{"*"};
  // Per spec.thresholds entry: the downgrade target (downgrade actions, ""
  // elsewhere) and the admitted rate (throttle actions, count 0 elsewhere).
  std::vector<std::string> downgrade_models;
  std::vector<RateLimit> throttle_rates;
  int line = 0;  // where the budget is defined, for messages
};

struct BudgetConfig {
  std::string source;  // file name, for messages
  std::vector<BudgetRule> budgets;
};

// Parses the YAML above. InvalidArgument "source:line:col: budgets[i].field:
// what" for syntax errors, unknown keys, bad values, duplicate ids, unknown
// time zones, and spec validation failures.
Result<BudgetConfig> ParseBudgetYaml(std::string_view yaml, const std::string& source_name);
Result<BudgetConfig> LoadBudgetYamlFile(const std::string& path);

// Who and what a call is, for deciding which budgets cover it and under which
// key. Empty fields are absent.
struct BudgetSubject {
  std::string_view run, agent, user, tenant, model, tool;
  std::vector<std::string_view> tags;
};

// Money held for one call across every budget that covers it.
struct BudgetHold {
  std::vector<Reservation> reservations;  // one per (budget, key)
  std::optional<std::string> downgrade_model;  // a downgrade threshold in force
  std::string downgrade_budget;                // ... of this budget
  std::vector<AlertEvent> alerts;              // fired by this reservation
  int64_t estimate_nanousd = 0;
};

struct HoldSettlement {
  int64_t actual_nanousd = 0;
  int64_t overshoot_nanousd = 0;  // the largest overshoot over the budgets
  std::vector<AlertEvent> alerts;
};

// One budget and key in the current window.
struct BudgetUsage {
  std::string budget_id;
  std::string key;
  std::string window;  // "daily Asia/Seoul [2026-11-21T00:00:00+09:00, ...)"
  int64_t window_start_ns = 0;
  int64_t window_end_ns = 0;
  int64_t limit_nanousd = 0;
  int64_t admissible_nanousd = 0;
  int64_t spent_nanousd = 0;
  int64_t reserved_nanousd = 0;
  int64_t remaining_nanousd = 0;  // admissible - spent - reserved, >= 0
  bool hard = true;

  // The share of the limit committed, (spent + reserved) / limit: 0.25 is 25%,
  // above 1 after an overshoot; 0 for a zero limit.
  double Used() const {
    return limit_nanousd > 0 ? static_cast<double>(spent_nanousd + reserved_nanousd) /
                                   static_cast<double>(limit_nanousd)
                             : 0.0;
  }
};

// What Open found in the state directory.
struct RestoreReport {
  int budgets_restored = 0;
  // Reservations outstanding when the state was last saved: their calls died
  // with the process, so nobody can settle them. They are charged at their
  // estimate (the call may well have run and been billed).
  int64_t abandoned_reservations = 0;
  int64_t abandoned_nanousd = 0;
  // Budgets whose saved state was not restored: the id is no longer
  // configured, or its scope or window changed. One message each.
  std::vector<std::string> dropped;
  // The reservations of Options::adopt found outstanding, left outstanding
  // for their owner to settle or release: (budget id, reservation id).
  std::vector<std::pair<std::string, uint64_t>> adopted;
};

class BudgetSet {
 public:
  struct Options {
    // "now" in UTC nanoseconds; null = the system clock.
    BudgetLedger::Clock clock;
    // A RocksDB directory for the state ("" = in memory only). Created when
    // missing. One BudgetSet at a time, whatever path leads to it and in
    // whichever process (Busy otherwise). A failed save (a full disk) returns
    // IOError, keeps the state in memory and is retried by the next save.
    std::string state_path;
    // How often dirty budgets are written in the background.
    //   0  write-through: every Reserve (before it returns the hold), Settle
    //      and Release is written with a disk sync, so nothing is lost on a
    //      crash: reservations open at the crash are charged at their estimate
    //      on restart (RestoreReport), and a restart never admits more than
    //      the limit. Costs one synced write per call.
    //   >0 a crash (kill -9, power loss) loses at most this much time of
    //      reservations, settlements and releases: a restart may then admit
    //      up to that much more than the limit.
    // Close() and the destructor save everything in either mode.
    int64_t flush_interval_ns = 1'000'000'000;
    // Reservations whose calls outlive the process that made them (a guard's
    // journaled calls, resumed after a restart): when the saved state holds
    // one outstanding (same budget, id, key, estimate and time), it stays
    // outstanding for its owner to Settle or Release, instead of being
    // charged as abandoned. One the saved state does not hold (already
    // settled or released, or never saved) is not in RestoreReport::adopted.
    std::vector<Reservation> adopt;
  };

  // Registers every budget of `config` and restores saved state. Errors:
  // InvalidArgument (config), IOError / Busy / Corruption for the store (a
  // corrupt saved budget names its id).
  static Result<std::unique_ptr<BudgetSet>> Open(BudgetConfig config, Options options);
  ~BudgetSet();

  // Reserves `estimate_nanousd` on every budget covering `subject`, or on none:
  // FailedPrecondition naming the budget that refused (over budget, halted or
  // throttled), after releasing what was already held; that budget's id also
  // goes to `refused_by` when given. A call no budget covers gets an empty hold.
  // With flush_interval_ns == 0 the hold is saved before it is returned; when
  // that write fails, the hold is released and the store's error returned.
  Result<BudgetHold> Reserve(const BudgetSubject& subject, int64_t estimate_nanousd,
                             std::string* refused_by = nullptr);
  // Settles every reservation of the hold at `actual_nanousd`.
  // FailedPrecondition when the hold was already settled or released.
  Result<HoldSettlement> Settle(const BudgetHold& hold, int64_t actual_nanousd);
  Status Release(const BudgetHold& hold);

  // The ids of the budgets that cover `subject`, in configuration order.
  std::vector<std::string> CoveringBudgets(const BudgetSubject& subject) const;

  // The key under which `budget_id` counts a call of `subject` (its user for
  // a user-scoped budget, ...). NotFound for an unknown budget;
  // InvalidArgument when the subject lacks what the scope needs (a tag-scoped
  // budget without a pinned key always needs an explicit key).
  Result<std::string> KeyFor(std::string_view budget_id, const BudgetSubject& subject) const;

  // Every budget and key seen, in the current window, ordered by budget (as
  // configured) then key.
  std::vector<BudgetUsage> Usage();
  // One budget and key; NotFound for an unknown budget.
  Result<BudgetUsage> UsageOf(std::string_view budget_id, std::string_view key);

  // Writes the state of every budget now (no-op in memory).
  Status Flush();
  // Flushes, stops the background writer and closes the store. Idempotent.
  Status Close();

  const RestoreReport& restored() const { return restored_; }
  const BudgetConfig& config() const { return config_; }
  BudgetLedger& ledger() { return ledger_; }

  class Store;

 private:
  BudgetSet(BudgetConfig config, Options options);
  void FlushLoop();
  Status FlushDirty(bool all);
  std::vector<std::pair<size_t, std::string>> Covering(const BudgetSubject& subject) const;
  // The index of budget `budget_id` in config_.budgets; NotFound naming it.
  Result<size_t> IndexOf(std::string_view budget_id) const;
  // Marks a budget changed, for the background writer.
  void Touch(std::string_view budget_id);

  const BudgetConfig config_;
  const Options options_;
  BudgetLedger ledger_;
  RestoreReport restored_;
  std::unique_ptr<Store> store_;
  struct Throttle;
  std::unique_ptr<Throttle> throttle_;
  std::vector<std::atomic<uint64_t>> changes_;  // per budget, bumped on every change
  std::vector<uint64_t> flushed_;               // changes_ value last written; flush_mu_
  std::mutex flush_mu_;
  std::mutex loop_mu_;
  std::condition_variable loop_cv_;
  bool stopping_ = false;  // GUARDED_BY(loop_mu_)
  bool closed_ = false;    // GUARDED_BY(flush_mu_)
  std::thread flusher_;
};

}  // namespace bastion

#endif  // BASTION_BUDGET_SET_H_
