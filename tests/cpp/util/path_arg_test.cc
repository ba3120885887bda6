// A path holding a NUL byte would be cut short by the operating system and
// name another file: every entry point that takes a path rejects it, naming
// the argument.
#include "util/path_arg.h"

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "bastion/budget_set.h"
#include "bastion/cost.h"
#include "bastion/guard.h"
#include "bastion/ledger.h"
#include "bastion/policy.h"
#include "bastion/slo_monitor.h"
#include "test_util.h"

namespace bastion {
namespace {

const std::string kNul("\0", 1);

void ExpectRejected(const Status& s, const std::string& argument, const std::string& what) {
  EXPECT_TRUE(s.IsInvalidArgument()) << what << ": " << s.ToString();
  EXPECT_NE(s.message().find(argument), std::string::npos)
      << what << ": '" << s.message() << "' does not name " << argument;
  EXPECT_NE(s.message().find("NUL"), std::string::npos) << what << ": " << s.message();
}

TEST(CheckPathArgument, AcceptsOrdinaryPaths) {
  EXPECT_TRUE(CheckPathArgument("/var/lib/x", "p").ok());
  EXPECT_TRUE(CheckPathArgument("", "p", /*allow_empty=*/true).ok());
  EXPECT_TRUE(CheckPathArgument("", "p").IsInvalidArgument());
}

TEST(CheckPathArgument, NamesTheArgumentAndTheOffset) {
  Status s = CheckPathArgument("/a/b" + kNul + "c", "ledger path");
  ExpectRejected(s, "ledger path", "CheckPathArgument");
  EXPECT_NE(s.message().find("offset 4"), std::string::npos) << s.message();
  EXPECT_TRUE(CheckPathArgument(kNul, "p").IsInvalidArgument());
}

TEST(PathArguments, EveryLoaderRejectsANul) {
  testing::TempDir tmp;
  const std::string bad = tmp.Sub("x") + kNul + "y";
  ExpectRejected(Ledger::Open(bad).status(), "ledger path", "Ledger::Open");
  ExpectRejected(Ledger::OpenReader(bad).status(), "ledger path", "Ledger::OpenReader");
  ExpectRejected(PolicyEngine::Load(bad).status(), "policy bundle path", "PolicyEngine::Load");
  ExpectRejected(PricingTable::FromYamlFile(bad).status(), "pricing file path",
                 "PricingTable::FromYamlFile");
  ExpectRejected(LoadBudgetYamlFile(bad).status(), "budgets file path", "LoadBudgetYamlFile");
  ExpectRejected(LoadSloYamlFile(bad).status(), "SLO file path", "LoadSloYamlFile");
  EXPECT_TRUE(std::filesystem::is_empty(tmp.path())) << "something was created";
}

TEST(PathArguments, PolicyReloadRejectsANul) {
  auto engine = PolicyEngine::FromSources(
      {{"p.lua", "return {id = 'p', before_tool = function(call) end}"}}, "", "");
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  ExpectRejected((*engine)->Reload("/tmp" + kNul), "policy bundle path", "Reload");
}

TEST(PathArguments, GuardOpenNamesTheOption) {
  testing::TempDir tmp;
  const std::string bad = tmp.Sub("x") + kNul;
  struct Case {
    const char* name;
    void (*set)(GuardOptions*, const std::string&);
  };
  const Case cases[] = {
      {"policy_dir", [](GuardOptions* o, const std::string& p) { o->policy_dir = p; }},
      {"pricing_files[1]",
       [](GuardOptions* o, const std::string& p) { o->pricing_files = {"ok.yaml", p}; }},
      {"budgets_file", [](GuardOptions* o, const std::string& p) { o->budgets_file = p; }},
      {"slos_file", [](GuardOptions* o, const std::string& p) { o->slos_file = p; }},
      {"ledger_path", [](GuardOptions* o, const std::string& p) { o->ledger_path = p; }},
      {"state_path", [](GuardOptions* o, const std::string& p) { o->state_path = p; }},
  };
  for (const Case& c : cases) {
    GuardOptions o;
    c.set(&o, bad);
    ExpectRejected(Guard::Open(o).status(), c.name, c.name);
  }
  EXPECT_TRUE(std::filesystem::is_empty(tmp.path())) << "something was created";
}

}  // namespace
}  // namespace bastion
