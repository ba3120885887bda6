// The budget state's store: one writer per directory whatever path leads to
// it, a clear error for a NUL in the path, and a full disk that is reported
// and recovered from without losing spend.
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "bastion/budget_set.h"
#include "small_fs.h"
#include "test_util.h"

namespace bastion {
namespace {

namespace fs = std::filesystem;
using testing::SmallFs;
using testing::TempDir;

const char* kBudget = R"(version: 1
budgets:
  - id: per-user
    scope: user
    limit_usd: 1000
    window: daily
)";

BudgetConfig Config() {
  auto c = ParseBudgetYaml(kBudget, "budgets.yaml");
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? *c : BudgetConfig{};
}

Result<std::unique_ptr<BudgetSet>> OpenAt(const std::string& path, int64_t flush_interval_ns = 0) {
  BudgetSet::Options o;
  o.state_path = path;
  o.flush_interval_ns = flush_interval_ns;
  return BudgetSet::Open(Config(), o);
}

BudgetSubject Alice() {
  BudgetSubject who;
  who.user = "alice";
  return who;
}

TEST(BudgetStateStore, EveryAliasOfAnOpenStateIsBusy) {
  TempDir tmp;
  auto first = OpenAt(tmp.Sub("state"));
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  fs::create_directory_symlink(tmp.Sub("state"), tmp.Sub("link"));
  const std::string canonical = fs::canonical(tmp.Sub("state")).string();
  for (const std::string& alias :
       {tmp.Sub("state"), tmp.Sub("link"), tmp.path() + "/./state", tmp.path() + "//state",
        tmp.Sub("state") + "/"}) {
    auto second = OpenAt(alias);
    ASSERT_FALSE(second.ok()) << alias << " opened a second writer";
    EXPECT_TRUE(second.status().IsBusy()) << second.status().ToString();
    EXPECT_NE(second.status().message().find("in use"), std::string::npos);
    EXPECT_NE(second.status().message().find(canonical), std::string::npos)
        << second.status().message();
  }
  ASSERT_TRUE((*first)->Close().ok());
  auto again = OpenAt(tmp.Sub("link"));
  EXPECT_TRUE(again.ok()) << again.status().ToString();
}

TEST(BudgetStateStore, ANulInTheStatePathIsRejected) {
  TempDir tmp;
  auto opened = OpenAt(tmp.Sub("state") + std::string("\0x", 2));
  ASSERT_TRUE(opened.status().IsInvalidArgument()) << opened.status().ToString();
  EXPECT_NE(opened.status().message().find("state_path"), std::string::npos);
  EXPECT_FALSE(fs::exists(tmp.Sub("state")));
}

TEST(BudgetStateStore, AFullDiskIsReportedAndNothingSpentIsLost) {
  TempDir tmp;
  SmallFs small(tmp.Sub("fs"), 1024);
  if (!small.mounted()) GTEST_SKIP() << small.error();
  const std::string path = tmp.Sub("fs") + "/state";
  int64_t spent = 0;
  {
    auto opened = OpenAt(path);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    BudgetSet& set = **opened;
    auto settle = [&](int64_t amount) -> Status {
      auto hold = set.Reserve(Alice(), amount);
      if (!hold.ok()) return hold.status();
      auto s = set.Settle(*hold, amount);
      spent += amount;  // in memory whatever the store says
      return s.status();
    };
    ASSERT_TRUE(settle(1000).ok());
    small.Fill();
    Status refused;
    for (int i = 0; i < 20000 && refused.ok(); ++i) refused = settle(1000);
    ASSERT_FALSE(refused.ok()) << "the full disk never refused a write";
    EXPECT_TRUE(refused.IsIOError()) << refused.ToString();
    EXPECT_TRUE(settle(1000).IsIOError());
    EXPECT_TRUE(set.Flush().IsIOError());
    auto usage = set.UsageOf("per-user", "alice");
    ASSERT_TRUE(usage.ok());
    EXPECT_EQ(usage->spent_nanousd, spent);
    small.Free();
    ASSERT_TRUE(set.Flush().ok());
    ASSERT_TRUE(settle(1000).ok());
    ASSERT_TRUE(set.Close().ok());
  }
  auto reopened = OpenAt(path);
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  auto usage = (*reopened)->UsageOf("per-user", "alice");
  ASSERT_TRUE(usage.ok());
  EXPECT_EQ(usage->spent_nanousd, spent);
}

}  // namespace
}  // namespace bastion
