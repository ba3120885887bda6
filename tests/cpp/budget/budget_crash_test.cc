// Kills a process holding budget reservations with SIGKILL and checks what a
// restart makes of them. The child is this test program itself, started with
// BASTION_BUDGET_CRASH_CHILD set: it runs ChildMain before GoogleTest starts.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "bastion/budget_set.h"
#include "test_util.h"

extern char** environ;

namespace bastion {
namespace {

constexpr const char* kChildEnv = "BASTION_BUDGET_CRASH_CHILD";
constexpr int64_t kCents = 10'000'000;  // $0.01 in nano-USD

const char* kConfig = R"(version: 1
budgets:
  - {id: per-user, scope: user, limit_usd: 1.00, window: monthly}
)";

// The child: $0.30 settled, then two $0.30 holds left open; prints "ready"
// once Reserve has returned both, and waits to be killed.
[[noreturn]] void ChildMain(const char* state_path) {
  auto config = ParseBudgetYaml(kConfig, "budgets.yaml");
  BudgetSet::Options o;
  o.state_path = state_path;
  o.flush_interval_ns = 0;
  auto set = config.ok() ? BudgetSet::Open(*config, o) : config.status();
  if (!set.ok()) {
    std::fprintf(stdout, "error %s\n", set.status().ToString().c_str());
    std::fflush(stdout);
    _exit(2);
  }
  BudgetSubject who;
  who.user = "alice";
  auto first = (*set)->Reserve(who, 30 * kCents);
  const bool settled = first.ok() && (*set)->Settle(*first, 30 * kCents).ok();
  auto second = (*set)->Reserve(who, 30 * kCents);
  auto third = (*set)->Reserve(who, 30 * kCents);
  if (!settled || !second.ok() || !third.ok()) {
    std::fprintf(stdout, "error reserving\n");
    std::fflush(stdout);
    _exit(2);
  }
  std::fprintf(stdout, "ready\n");
  std::fflush(stdout);
  while (true) pause();
}

// Becomes the child, once every static object is constructed, when started
// by RunChildAndKill (GoogleTest's banner may precede "ready" on stdout).
class ChildEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (const char* path = getenv(kChildEnv)) ChildMain(path);
  }
};
[[maybe_unused]] ::testing::Environment* const kChild =
    ::testing::AddGlobalTestEnvironment(new ChildEnvironment);

// Starts the child on `state_path`, waits for "ready" (at most 20 s), kills
// it with SIGKILL. Returns what it printed.
std::string RunChildAndKill(const std::string& state_path, int* wait_status) {
  int fds[2];
  if (pipe(fds) != 0) return std::string("pipe: ") + strerror(errno);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  posix_spawn_file_actions_addclose(&actions, fds[1]);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
  env_strings.push_back(std::string(kChildEnv) + "=" + state_path);
  std::vector<char*> env;
  for (std::string& s : env_strings) env.push_back(s.data());
  env.push_back(nullptr);
  char self[] = "/proc/self/exe";
  char* argv[] = {self, nullptr};
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, "/proc/self/exe", &actions, nullptr, argv, env.data());
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    return std::string("posix_spawn: ") + strerror(rc);
  }
  std::string out;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (out.find("ready\n") == std::string::npos && out.find("error") == std::string::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fds[0], POLLIN, 0};
    const int n = poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    char chunk[256];
    const ssize_t got = read(fds[0], chunk, sizeof(chunk));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    out.append(chunk, static_cast<size_t>(got));
  }
  kill(pid, SIGKILL);
  close(fds[0]);
  while (waitpid(pid, wait_status, 0) < 0 && errno == EINTR) {
  }
  return out;
}

TEST(BudgetCrash, WriteThroughKeepsOpenReservationsAcrossSigkill) {
  testing::TempDir dir;
  const std::string state = dir.Sub("state");
  int status = 0;
  const std::string out = RunChildAndKill(state, &status);
  ASSERT_NE(out.find("ready\n"), std::string::npos) << "the child printed: " << out;
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "wait status " << status;

  auto config = ParseBudgetYaml(kConfig, "budgets.yaml");
  ASSERT_TRUE(config.ok());
  BudgetSet::Options o;
  o.state_path = state;
  o.flush_interval_ns = 0;
  auto set = BudgetSet::Open(*config, o);
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  // The two holds open at the kill are charged at their estimates.
  EXPECT_EQ((*set)->restored().abandoned_reservations, 2);
  EXPECT_EQ((*set)->restored().abandoned_nanousd, 60 * kCents);
  auto u = (*set)->UsageOf("per-user", "alice");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->spent_nanousd + u->reserved_nanousd, 90 * kCents);

  BudgetSubject who;
  who.user = "alice";
  std::string refused_by;
  auto over = (*set)->Reserve(who, 20 * kCents, &refused_by);
  ASSERT_FALSE(over.ok()) << "$0.90 + $0.20 was admitted under a $1 limit";
  EXPECT_TRUE(over.status().IsFailedPrecondition()) << over.status().ToString();
  EXPECT_EQ(refused_by, "per-user");
  auto last = (*set)->Reserve(who, 10 * kCents);  // exactly up to the limit
  EXPECT_TRUE(last.ok()) << last.status().ToString();
  ASSERT_TRUE((*set)->Close().ok());
}

}  // namespace
}  // namespace bastion
