// The cost, clock and budget wrappers, for the other binding files that take
// them as arguments (e.g. PolicyEngine.attach).
#ifndef BASTION_BINDINGS_COST_H_
#define BASTION_BINDINGS_COST_H_

#include <memory>
#include <string_view>

#include <pybind11/pybind11.h>

#include "bastion/budget_set.h"
#include "bastion/cost.h"
#include "bastion/fleet.h"
#include "bastion/slo.h"

namespace bastion::py_bindings {

void RegisterCost(pybind11::module_& m);

// The core objects behind a PricingTable, Budgets or ManualClock (TypeError
// for anything else; StateError for closed Budgets).
std::shared_ptr<const PricingTable> PricingOf(pybind11::handle h);
std::shared_ptr<BudgetSet> BudgetsOf(pybind11::handle h);
std::shared_ptr<ManualClock> ClockOf(pybind11::handle h);
// A budget state's flush interval in seconds (0 = write-through), checked and
// in nanoseconds; `name` is the argument's name in the error.
int64_t FlushIntervalNs(double seconds, const char* name);

// The fleet's store for a guard or Budgets: `url` ("" = none), the timeout
// in seconds (checked: InvalidArgumentError), this worker's name.
// degraded_cap: None fails closed while the store is away; USD (as
// UsdToNanos takes it) degrades to local state with that per-process cap.
StoreOptions StoreArgs(const std::string& url, double timeout_seconds, const std::string& worker,
                       pybind11::handle degraded_cap);

// A Usage from a bastion.Usage or a provider's usage dict (see Usage.parse).
Usage UsageFromPython(pybind11::handle usage, const std::string& provider);

// Python objects around core objects a Guard owns: a PricingTable (a copy),
// and Budgets sharing the set.
pybind11::object WrapPricing(std::shared_ptr<const PricingTable> table);
pybind11::object WrapBudgets(std::shared_ptr<BudgetSet> set);

// USD as a Decimal, int or str (exactly, bastion::ParseUsd) or a float
// (rounded, bastion::NanoUsdFromDouble) -> non-negative nano-USD. TypeError
// for other types, InvalidArgumentError naming `what` for a bad amount.
int64_t UsdToNanos(pybind11::handle value, std::string_view what);

// Budget alerts as the dicts Hold.alerts holds.
pybind11::list BudgetAlertList(const std::vector<AlertEvent>& alerts);

// nano-USD as a decimal.Decimal in its plainest form (0.55, 1, 0).
pybind11::object UsdDecimal(int64_t nanousd);

}  // namespace bastion::py_bindings

#endif  // BASTION_BINDINGS_COST_H_
