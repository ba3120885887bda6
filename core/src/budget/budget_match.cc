#include "budget/budget_match.h"

#include <algorithm>

#include <fmt/format.h>

#include "bastion/glob.h"

namespace bastion {

namespace {

bool MatchesAny(const std::vector<std::string>& globs, std::string_view value) {
  for (const std::string& g : globs) {
    if (GlobMatch(g, value)) return true;
  }
  return false;
}

std::string_view ScopeValue(Scope::Kind kind, const BudgetSubject& s) {
  switch (kind) {
    case Scope::Kind::kRun:
      return s.run;
    case Scope::Kind::kAgent:
      return s.agent;
    case Scope::Kind::kUser:
      return s.user;
    case Scope::Kind::kTenant:
      return s.tenant;
    case Scope::Kind::kTag:
    case Scope::Kind::kGlobal:
      return {};
  }
  return {};
}

}  // namespace

void PrepareBudgetConfig(BudgetConfig* config) {
  for (BudgetRule& rule : config->budgets) {
    for (const AlertThreshold& t : rule.spec.thresholds) {
      if (t.action != AlertAction::kHalt) continue;
      rule.spec.enforcement = BudgetSpec::Enforcement::kHard;
      rule.spec.reserve_percent = std::max(rule.spec.reserve_percent, 100 - t.percent);
    }
    if (rule.downgrade_models.size() != rule.spec.thresholds.size()) {
      rule.downgrade_models.resize(rule.spec.thresholds.size());
    }
    if (rule.throttle_rates.size() != rule.spec.thresholds.size()) {
      rule.throttle_rates.resize(rule.spec.thresholds.size());
    }
  }
}

std::vector<std::pair<size_t, std::string>> CoveringBudgetKeys(const BudgetConfig& config,
                                                               const BudgetSubject& subject) {
  std::vector<std::pair<size_t, std::string>> out;
  for (size_t i = 0; i < config.budgets.size(); ++i) {
    const BudgetRule& rule = config.budgets[i];
    if (!MatchesAny(rule.agents, subject.agent) || !MatchesAny(rule.models, subject.model) ||
        !MatchesAny(rule.tools, subject.tool)) {
      continue;
    }
    const Scope& scope = rule.spec.scope;
    if (scope.kind == Scope::Kind::kGlobal) {
      out.emplace_back(i, std::string());
    } else if (scope.kind == Scope::Kind::kTag) {
      for (std::string_view tag : subject.tags) {
        if (tag.empty() || (!scope.key.empty() && tag != scope.key)) continue;
        out.emplace_back(i, std::string(tag));
      }
    } else {
      const std::string_view value = ScopeValue(scope.kind, subject);
      if (value.empty() || (!scope.key.empty() && value != scope.key)) continue;
      out.emplace_back(i, std::string(value));
    }
  }
  return out;
}

Result<size_t> BudgetIndexOf(const BudgetConfig& config, std::string_view budget_id) {
  for (size_t i = 0; i < config.budgets.size(); ++i) {
    if (config.budgets[i].spec.id == budget_id) return i;
  }
  return Status::NotFound(fmt::format("budget '{}' does not exist", budget_id));
}

Result<std::string> BudgetKeyFor(const BudgetConfig& config, std::string_view budget_id,
                                 const BudgetSubject& subject) {
  auto index = BudgetIndexOf(config, budget_id);
  if (!index.ok()) return index.status();
  const Scope& scope = config.budgets[*index].spec.scope;
  if (scope.kind == Scope::Kind::kGlobal) return std::string();
  if (!scope.key.empty()) return scope.key;
  static constexpr const char* kNames[] = {"run", "agent", "user", "tenant", "tag", "global"};
  const char* name = kNames[static_cast<int>(scope.kind)];
  const std::string_view value = ScopeValue(scope.kind, subject);
  if (value.empty()) {
    return Status::InvalidArgument(fmt::format(
        "budget '{}' is kept per {}, and the call has no {}: pass the key explicitly",
        budget_id, name, name));
  }
  return std::string(value);
}

}  // namespace bastion
