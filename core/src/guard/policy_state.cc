#include "bastion/policy_state.h"

#include <fmt/format.h>

namespace bastion {

BudgetSubject BudgetSubjectOf(const CallInfo& call) {
  BudgetSubject s;
  s.run = call.run_id;
  s.agent = call.agent_id;
  s.user = call.user_id;
  s.tenant = call.tenant_id;
  s.model = call.model;
  s.tool = call.tool;
  return s;
}

SloCall SloCallOf(const CallInfo& call) {
  const bool tool = call.hook == Hook::kBeforeTool || call.hook == Hook::kAfterTool;
  return SloCall{tool ? "tool" : "model", call.agent_id, call.model, call.tool};
}

Result<PolicyState::BudgetView> LivePolicyState::Budget(std::string_view budget_id,
                                                        std::string_view key,
                                                        const CallInfo& call) const {
  if (budgets_ == nullptr) {
    return Status::FailedPrecondition(
        fmt::format("budget '{}': no budgets are configured", budget_id));
  }
  std::string k(key);
  if (k.empty()) {
    auto derived = budgets_->KeyFor(budget_id, BudgetSubjectOf(call));
    if (!derived.ok()) return derived.status();
    k = std::move(*derived);
  }
  auto u = budgets_->UsageOf(budget_id, k);
  if (!u.ok()) return u.status();
  BudgetView v;
  v.key = u->key;
  v.window = u->window;
  v.limit_nanousd = u->limit_nanousd;
  v.admissible_nanousd = u->admissible_nanousd;
  v.spent_nanousd = u->spent_nanousd;
  v.reserved_nanousd = u->reserved_nanousd;
  v.remaining_nanousd = u->remaining_nanousd;
  return v;
}

Status LivePolicyState::NeedSlos(std::string_view slo_id) const {
  if (slos_ == nullptr) {
    return Status::FailedPrecondition(fmt::format("SLO '{}': no SLOs are configured", slo_id));
  }
  return Status::OK();
}

Result<PolicyState::SloView> LivePolicyState::Slo(std::string_view slo_id,
                                                  std::string_view subject,
                                                  const CallInfo& call) const {
  BASTION_RETURN_IF_ERROR(NeedSlos(slo_id));
  auto st = subject.empty() ? slos_->GetFor(slo_id, SloCallOf(call)) : slos_->Get(slo_id, subject);
  if (!st.ok()) return st.status();
  SloView v;
  v.subject = st->subject;
  v.calls = st->calls;
  v.success_rate = st->success_rate;
  v.target = st->target;
  v.error_budget_remaining = st->error_budget_remaining;
  v.p50_ns = st->latency_p50_ns;
  v.p95_ns = st->latency_p95_ns;
  v.p99_ns = st->latency_p99_ns;
  v.breaker = st->breaker_state;
  v.firing = st->firing;
  v.cost_today_nanousd = st->cost_today_nanousd;
  return v;
}

Result<double> LivePolicyState::BurnRate(std::string_view slo_id, std::string_view subject,
                                         int64_t window_ns, const CallInfo& call) const {
  BASTION_RETURN_IF_ERROR(NeedSlos(slo_id));
  return subject.empty() ? slos_->BurnRateFor(slo_id, SloCallOf(call), window_ns)
                         : slos_->BurnRate(slo_id, subject, window_ns);
}

Result<int64_t> LivePolicyState::Price(std::string_view model, int64_t input_tokens,
                                       int64_t output_tokens) const {
  if (pricing_ == nullptr) {
    return Status::FailedPrecondition(
        fmt::format("pricing model '{}': no pricing table is configured", model));
  }
  Usage u;
  u.input = input_tokens;
  u.output = output_tokens;
  auto cost = PriceCall(*pricing_, model, u);
  if (!cost.ok()) return cost.status();
  return cost->total_nanousd;
}

}  // namespace bastion
