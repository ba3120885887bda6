// YAML configuration: permissions.yaml, budgets.yaml and slos.yaml, each
// parsed from a string, and the guard's configuration: a budgets, an SLO and
// a pricing file, written to a temporary folder and opened together by
// Guard::Open. The first byte picks the format ('p', 'b', 's', 'g'; others
// by their value), the rest is the document ('g': the three files, split at
// lines reading "%%"; an empty part leaves that file out).
// Invariants: an error is InvalidArgument and names the source first
// ("source:line:col: ..."); an accepted document passes its own validation
// (budget specs, SLO specs), and FormatSloYaml of accepted SLOs reads back
// to the same text; compiled permissions answer a tool check either way
// with its reason; a guard that opens checks and ends a model call.
#include <stdlib.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "bastion/budget.h"
#include "bastion/budget_set.h"
#include "bastion/guard.h"
#include "bastion/permissions.h"
#include "bastion/slo.h"
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
      {"support-bot", "support", "issue_refund", "write", "orders/A-1",
       "https://api.example.com/x"},
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

const std::string& TempDir() {
  static const std::string* dir = [] {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "bastion-fuzz-config-XXXXXX").string();
    FUZZ_CHECK(mkdtemp(pattern.data()) != nullptr, "cannot create a temporary folder");
    auto* d = new std::string(pattern);
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(TempDir(), ec);
    });
    return d;
  }();
  return *dir;
}

// Writes `text` to `name` in the temporary folder and returns its path, or
// removes the file and returns "" when `text` is empty.
std::string PutFile(const std::string& name, const std::string& text) {
  const std::string path = TempDir() + "/" + name;
  std::error_code ec;
  std::filesystem::remove(path, ec);
  if (text.empty()) return "";
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  FUZZ_CHECK(out.good(), "cannot write %s", path.c_str());
  return path;
}

void CheckGuard(std::string_view data) {
  const std::vector<std::string> parts = fuzz::SplitParts(data, "%%");
  GuardOptions options;
  options.budgets_file = PutFile("budgets.yaml", parts[0]);
  options.slos_file = PutFile("slos.yaml", parts.size() > 1 ? parts[1] : "");
  const std::string prices = PutFile("prices.yaml", parts.size() > 2 ? parts[2] : "");
  if (!prices.empty()) options.pricing_files = {prices};
  auto clock = std::make_shared<ManualClock>(int64_t{1'764'547'200} * 1'000'000'000);
  options.clock = clock;
  auto guard = Guard::Open(options);
  if (!guard.ok()) {
    FUZZ_CHECK(guard.status().IsInvalidArgument() || guard.status().IsNotFound(), "%s",
               guard.status().ToString().c_str());
    FUZZ_CHECK(guard.status().message().starts_with(TempDir()),
               "error does not name the file: %s", guard.status().ToString().c_str());
    return;
  }
  CallRequest request;
  request.call.hook = Hook::kBeforeModel;
  request.call.agent_id = "support-bot";
  request.call.user_id = "u-42";
  request.call.tenant_id = "acme";
  request.call.model = "gpt-4o";
  request.call.input = "hello";
  request.max_output_tokens = 100;
  auto begun = (*guard)->Begin(request);
  FUZZ_CHECK(begun.ok(), "Begin failed: %s", begun.status().ToString().c_str());
  if (begun->decision.effect == Effect::kDeny) {
    FUZZ_CHECK(!begun->decision.reasons.empty(), "denied without a reason");
    return;
  }
  if (begun->decision.effect == Effect::kRequireApproval) return;
  clock->Advance(250'000'000);
  CallOutcome outcome;
  outcome.output = "hi";
  outcome.usage = Usage{1200, 0, 0, 0, 80, 0};
  auto ended = (*guard)->End(begun->call_id, outcome);
  FUZZ_CHECK(ended.ok(), "End failed: %s", ended.status().ToString().c_str());
  FUZZ_CHECK(ended->unpriced != ended->cost_nanousd.has_value(),
             "a call is both priced and unpriced, or neither");
}

}  // namespace
}  // namespace bastion

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0 || size > 64 * 1024) return 0;
  const std::string_view yaml(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] == 'p' ? 0 : data[0] == 'b' ? 1 : data[0] == 's' ? 2 : data[0] == 'g' ? 3
                                                                                : data[0] % 4) {
    case 0: bastion::CheckPermissions(yaml); break;
    case 1: bastion::CheckBudgets(yaml); break;
    case 2: bastion::CheckSlos(yaml); break;
    default: bastion::CheckGuard(yaml); break;
  }
  return 0;
}
