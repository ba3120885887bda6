// YAML configuration: permissions.yaml, budgets.yaml and slos.yaml. The
// first byte picks the format ('p', 'b', 's'; others by their value), the
// rest is the document, parsed from a string as the guard's files are.
// Invariants: an error is InvalidArgument and names the source first
// ("source:line:col: ..."); an accepted document passes its own validation
// (budget specs, SLO specs), and FormatSloYaml of accepted SLOs reads back
// to the same text; compiled permissions answer a tool check either way
// with its reason.
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "bastion/budget.h"
#include "bastion/budget_set.h"
#include "bastion/permissions.h"
#include "bastion/slo_monitor.h"
#include "fuzz_check.h"

namespace bastion {
namespace {

constexpr std::string_view kSource = "fuzz.yaml";

void CheckError(const Status& s) {
  FUZZ_CHECK(s.IsInvalidArgument(), "%s", s.ToString().c_str());
  FUZZ_CHECK(s.message().starts_with(kSource), "error does not name the source: %s",
             s.ToString().c_str());
}

void CheckPermissions(std::string_view yaml) {
  auto perms = Permissions::Parse(yaml, kSource);
  if (!perms.ok()) return CheckError(perms.status());
  const ToolRequest requests[] = {
      {"support-bot", "support", "issue_refund", "write", "orders/A-1", "https://api.example.com/x"},
      {"", "", "", "", "", ""},
      {"agent", "", "http_get", "read", "", "not a url"},
  };
  for (const ToolRequest& r : requests) {
    const ToolCheck c = (*perms)->CheckTool(r);
    FUZZ_CHECK(c.allowed == (c.grant != nullptr), "allowed without a grant, or the reverse");
    FUZZ_CHECK(c.allowed || !c.reason.empty(), "denied without a reason");
    FUZZ_CHECK(c.allowed || (!c.requires_approval && c.rate_limits.empty()),
               "a denied call carries approval or rate limits");
  }
}

void CheckBudgets(std::string_view yaml) {
  auto config = ParseBudgetYaml(yaml, std::string(kSource));
  if (!config.ok()) return CheckError(config.status());
  std::set<std::string> ids;
  for (const BudgetRule& rule : config->budgets) {
    const Status valid = ValidateBudgetSpec(rule.spec);
    FUZZ_CHECK(valid.ok(), "accepted budget fails validation: %s", valid.ToString().c_str());
    FUZZ_CHECK(ids.insert(rule.spec.id).second, "budget id '%s' accepted twice",
               rule.spec.id.c_str());
    FUZZ_CHECK(rule.downgrade_models.size() == rule.spec.thresholds.size() &&
                   rule.throttle_rates.size() == rule.spec.thresholds.size(),
               "per-threshold lists out of step in '%s'", rule.spec.id.c_str());
  }
}

void CheckSlos(std::string_view yaml) {
  auto specs = ParseSloYaml(yaml, std::string(kSource));
  if (!specs.ok()) return CheckError(specs.status());
  std::set<std::string> ids;
  for (const SloSpec& spec : *specs) {
    const Status valid = ValidateSloSpec(spec);
    FUZZ_CHECK(valid.ok(), "accepted SLO fails validation: %s", valid.ToString().c_str());
    FUZZ_CHECK(ids.insert(spec.id).second, "SLO id '%s' accepted twice", spec.id.c_str());
  }
  const std::string formatted = FormatSloYaml(*specs);
  auto again = ParseSloYaml(formatted, "formatted.yaml");
  FUZZ_CHECK(again.ok(), "formatted SLOs do not parse: %s\n--- formatted:\n%s",
             again.status().ToString().c_str(), formatted.c_str());
  const std::string reformatted = FormatSloYaml(*again);
  FUZZ_CHECK(reformatted == formatted, "SLOs change through format and parse:\n%s\n--- then:\n%s",
             formatted.c_str(), reformatted.c_str());
}

}  // namespace
}  // namespace bastion

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0 || size > 64 * 1024) return 0;
  const std::string_view yaml(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] == 'p' ? 0 : data[0] == 'b' ? 1 : data[0] == 's' ? 2 : data[0] % 3) {
    case 0: bastion::CheckPermissions(yaml); break;
    case 1: bastion::CheckBudgets(yaml); break;
    default: bastion::CheckSlos(yaml); break;
  }
  return 0;
}
