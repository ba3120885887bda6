// Where a guard reserves and settles money: the budget backend. The guard's
// budget stage talks only to this interface, so a budget store other than
// the in-process BudgetSet (a shared one, e.g. on Redis) plugs in through
// GuardOptions::budget_backend without touching the guard.
//
//   auto set = bastion::BudgetSet::Open(config, {});
//   bastion::GuardOptions options;
//   options.budget_backend = bastion::BudgetSetBackend(std::move(*set));
//
// The contract, as the guard relies on it:
//   - Reserve holds `estimate_nanousd` on every budget covering the subject,
//     or on none: a refusal is FailedPrecondition (naming the budget, also
//     put in `refused_by`) and holds nothing; any other error is the store
//     failing, and the guard's Begin fails with it. A call no budget covers
//     gets an empty hold.
//   - Settle charges `actual_nanousd` for a hold; Release gives it back. Each
//     hold is settled or released once.
//   - CoveringBudgets names the budgets covering a subject, in a stable
//     order (the guard names the first when it cannot price a covered call).
//   - TakeEvents hands over, once each, what happened to the store that the
//     ledger should show (a shared store became unreachable and calls are
//     admitted locally; it came back). The guard drains it at each Begin
//     and End and records one ledger record per event.
//
// Thread safety: implementations must be thread-safe; every guarded call
// calls them, from any thread.
#ifndef BASTION_BUDGET_BACKEND_H_
#define BASTION_BUDGET_BACKEND_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bastion/budget_set.h"
#include "bastion/fleet.h"
#include "bastion/status.h"

namespace bastion {

class BudgetBackend {
 public:
  virtual ~BudgetBackend() = default;
  virtual Result<BudgetHold> Reserve(const BudgetSubject& subject, int64_t estimate_nanousd,
                                     std::string* refused_by) = 0;
  virtual Result<HoldSettlement> Settle(const BudgetHold& hold, int64_t actual_nanousd) = 0;
  virtual Status Release(const BudgetHold& hold) = 0;
  virtual std::vector<std::string> CoveringBudgets(const BudgetSubject& subject) const = 0;
  virtual std::vector<StoreEvent> TakeEvents() { return {}; }
};

// The backend of an in-process BudgetSet (what a guard's budgets_file opens).
std::shared_ptr<BudgetBackend> BudgetSetBackend(std::shared_ptr<BudgetSet> budgets);

}  // namespace bastion

#endif  // BASTION_BUDGET_BACKEND_H_
