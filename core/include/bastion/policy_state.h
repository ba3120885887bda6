// The PolicyState a guarded agent attaches to its PolicyEngine: what the
// `budget`, `slo` and `cost` Lua helpers read, taken live from the budgets,
// the SLO monitor and the pricing table in use.
//
//   auto state = std::make_shared<bastion::LivePolicyState>(pricing, budgets, slos);
//   engine->SetState(state);   // policies may now call budget.remaining(...)
//
// Any of the three may be null; helpers that need a missing one raise an
// error naming it, so the calling policy fails (closed by default).
//
// Thread safety: as thread-safe as its parts, which all are.
#ifndef BASTION_POLICY_STATE_H_
#define BASTION_POLICY_STATE_H_

#include <memory>

#include "bastion/budget_set.h"
#include "bastion/cost.h"
#include "bastion/policy.h"
#include "bastion/slo_monitor.h"

namespace bastion {

class LivePolicyState final : public PolicyState {
 public:
  LivePolicyState(std::shared_ptr<const PricingTable> pricing, std::shared_ptr<BudgetSet> budgets,
                  std::shared_ptr<SloMonitor> slos)
      : pricing_(std::move(pricing)), budgets_(std::move(budgets)), slos_(std::move(slos)) {}

  Result<BudgetView> Budget(std::string_view budget_id, std::string_view key,
                            const CallInfo& call) const override;
  Result<SloView> Slo(std::string_view slo_id, std::string_view subject,
                      const CallInfo& call) const override;
  Result<double> BurnRate(std::string_view slo_id, std::string_view subject, int64_t window_ns,
                          const CallInfo& call) const override;
  Result<int64_t> Price(std::string_view model, int64_t input_tokens,
                        int64_t output_tokens) const override;

 private:
  Status NeedSlos(std::string_view slo_id) const;

  std::shared_ptr<const PricingTable> pricing_;
  std::shared_ptr<BudgetSet> budgets_;
  std::shared_ptr<SloMonitor> slos_;
};

// The budget subject of a call: who and what it is, as budgets match it.
BudgetSubject BudgetSubjectOf(const CallInfo& call);
// The SLO call of a call: "model" for model hooks, "tool" for tool hooks.
SloCall SloCallOf(const CallInfo& call);

}  // namespace bastion

#endif  // BASTION_POLICY_STATE_H_
