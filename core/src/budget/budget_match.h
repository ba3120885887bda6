// What every budget store shares, whichever keeps the numbers (the
// in-process BudgetSet, the fleet's RedisBudgets): how a configuration is
// prepared for enforcement, which budgets and keys cover a call, and how a
// window is described in usage rows.
#ifndef BASTION_BUDGET_BUDGET_MATCH_H_
#define BASTION_BUDGET_BUDGET_MATCH_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bastion/budget.h"
#include "bastion/budget_set.h"
#include "bastion/status.h"

namespace bastion {

// A halt threshold is a hard cap: expressed as reserve headroom, the
// admission check enforces it atomically with the reservation. Also sizes
// downgrade_models and throttle_rates to the thresholds.
void PrepareBudgetConfig(BudgetConfig* config);

// (index into config.budgets, key) of every budget covering `subject`, in
// configuration order (a tag-scoped budget once per matching tag).
std::vector<std::pair<size_t, std::string>> CoveringBudgetKeys(const BudgetConfig& config,
                                                               const BudgetSubject& subject);

// The index of budget `budget_id`; NotFound naming it.
Result<size_t> BudgetIndexOf(const BudgetConfig& config, std::string_view budget_id);

// As BudgetSet::KeyFor.
Result<std::string> BudgetKeyFor(const BudgetConfig& config, std::string_view budget_id,
                                 const BudgetSubject& subject);

// "daily +09:00 [2026-11-21T00:00:00+09:00, ...)"; the window's own text for
// per-run and rolling windows.
std::string DescribeWindow(const Window& window, const WindowBounds& bounds);

}  // namespace bastion

#endif  // BASTION_BUDGET_BUDGET_MATCH_H_
