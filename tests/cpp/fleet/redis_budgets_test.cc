// RedisBudgets against a real redis-server: fleet-wide admission, windows,
// thresholds, leases, dead workers, and the server going away.
#include "bastion/fleet_budgets.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <chrono>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "bastion/guard.h"
#include "fleet/redis_client.h"
#include "redis_server.h"

namespace bastion {
namespace {

using testing::RedisServer;
constexpr int64_t kCent = 10'000'000;  // $0.01
constexpr int64_t kDollar = 1'000'000'000;

BudgetConfig Config(const std::string& yaml) {
  auto c = ParseBudgetYaml(yaml, "budgets.yaml");
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? *c : BudgetConfig{};
}

std::string OneBudget(const std::string& extra = "", const std::string& limit = "1.00",
                      const std::string& window = "daily") {
  return "version: 1\nbudgets:\n  - id: team\n    scope: global\n    limit_usd: " + limit +
         "\n    window: " + window + "\n" + extra;
}

StoreOptions Store(const RedisServer& server, const std::string& worker,
                   int64_t timeout_ns = 1'000'000'000) {
  StoreOptions s;
  s.url = server.url();
  s.worker = worker;
  s.timeout_ns = timeout_ns;
  return s;
}

std::shared_ptr<RedisBudgets> OpenBudgets(const RedisServer& server, const std::string& yaml,
                                          const std::string& worker,
                                          RedisBudgets::Options options = {},
                                          int64_t timeout_ns = 1'000'000'000,
                                          int64_t degraded_cap_nanousd = 0) {
  StoreOptions store = Store(server, worker, timeout_ns);
  store.degrade_to_local = degraded_cap_nanousd > 0;
  store.degraded_cap_nanousd = degraded_cap_nanousd;
  auto b = RedisBudgets::Open(Config(yaml), store, options);
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  return b.ok() ? *b : nullptr;
}

BudgetSubject Anyone() {
  BudgetSubject s;
  s.user = "alice";
  s.model = "gpt-4o";
  return s;
}

RedisBudgets::Options NoLeases() {
  RedisBudgets::Options o;
  o.leases = false;
  return o;
}

int64_t Spent(RedisBudgets& b, const std::string& id = "team", const std::string& key = "") {
  auto u = b.UsageOf(id, key);
  EXPECT_TRUE(u.ok()) << u.status().ToString();
  return u.ok() ? u->spent_nanousd : -1;
}

// A client of its own, to read what the budgets stored.
std::shared_ptr<fleet::RedisClient> RawClient(const RedisServer& server) {
  fleet::RedisClient::Options ro;
  ro.endpoint = *fleet::ParseRedisUrl(server.url());
  auto redis = fleet::RedisClient::Connect(ro);
  return redis.ok() ? *redis : nullptr;
}

// The one state key of a test with one budget, key and window ("" if not one).
std::string TheStateKey(fleet::RedisClient& redis) {
  auto keys = redis.Command({"KEYS", "{bastion}:b:*"});
  return keys.ok() && keys->elements.size() == 1 ? keys->elements[0].str : std::string();
}

// Threads of two workers reserve $0.01 each and settle it until refused.
int64_t HammerUntilRefused(std::vector<std::shared_ptr<RedisBudgets>> workers, int threads) {
  std::atomic<int64_t> admitted{0};
  std::vector<std::thread> pool;
  for (auto& w : workers) {
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, w] {
        int refusals = 0;
        while (refusals < 20) {
          auto h = w->Reserve(Anyone(), kCent, nullptr);
          if (!h.ok()) {
            EXPECT_TRUE(h.status().IsFailedPrecondition()) << h.status().ToString();
            ++refusals;
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
            continue;
          }
          admitted += kCent;
          auto s = w->Settle(*h, kCent);
          EXPECT_TRUE(s.ok()) << s.status().ToString();
        }
      });
    }
  }
  for (auto& t : pool) t.join();
  return admitted.load();
}

TEST(RedisBudgets, AdmitsExactlyTheLimitAcrossThreadsAndWorkers) {
  RedisServer server;
  auto a = OpenBudgets(server, OneBudget(), "a", NoLeases());
  auto b = OpenBudgets(server, OneBudget(), "b", NoLeases());
  ASSERT_TRUE(a && b);
  EXPECT_EQ(HammerUntilRefused({a, b}, 4), kDollar);
  EXPECT_EQ(Spent(*a), kDollar);
  auto u = b->UsageOf("team", "");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->reserved_nanousd, 0);
  EXPECT_EQ(u->remaining_nanousd, 0);
}

TEST(RedisBudgets, LeasesNeverOverAdmitAndFallBackNearExhaustion) {
  RedisServer server;
  auto a = OpenBudgets(server, OneBudget(), "a");
  auto b = OpenBudgets(server, OneBudget(), "b");
  ASSERT_TRUE(a && b);
  EXPECT_EQ(HammerUntilRefused({a, b}, 4), kDollar);
  ASSERT_TRUE(a->Flush().ok());
  ASSERT_TRUE(b->Flush().ok());
  EXPECT_EQ(Spent(*a), kDollar);
  // Every lease is used up: nothing is leased once the last cent is spent.
  EXPECT_EQ(a->UsageOf("team", "")->remaining_nanousd, 0);
}

// One worker, $1, calls of $0.10: the first reservation (on the server)
// takes a slice of free / 2 = $0.45, four calls fit in it; the fifth gives
// back the $0.05 left and is reserved on the server, where the next slice
// ($0.40 free / 2 = $0.20) would cover fewer than 4 calls: no more leases,
// every call is an atomic reservation until the limit.
TEST(RedisBudgets, LeaseSlicesShrinkAndStopNearExhaustion) {
  RedisServer server;
  auto a = OpenBudgets(server, OneBudget(), "a");
  ASSERT_TRUE(a);
  std::string kinds;
  for (int i = 0; i < 11; ++i) {
    auto h = a->Reserve(Anyone(), 10 * kCent, nullptr);
    if (!h.ok()) {
      EXPECT_TRUE(h.status().IsFailedPrecondition()) << h.status().ToString();
      kinds += 'x';
      continue;
    }
    kinds += (h->reservations[0].id >> 63) ? 'l' : 's';
    ASSERT_TRUE(a->Settle(*h, 10 * kCent).ok());
  }
  EXPECT_EQ(kinds, "sllllsssssx");
  ASSERT_TRUE(a->Flush().ok());
  EXPECT_EQ(Spent(*a), kDollar);
}

TEST(RedisBudgets, LeasedSpendReachesTheServerWithinTheReportInterval) {
  RedisServer server;
  auto a = OpenBudgets(server, OneBudget("", "100.00"), "a");
  auto b = OpenBudgets(server, OneBudget("", "100.00"), "b", NoLeases());
  ASSERT_TRUE(a && b);
  // The first reserve goes to the server and takes a lease; the next ones
  // are admitted in-process.
  for (int i = 0; i < 10; ++i) {
    auto h = a->Reserve(Anyone(), kCent, nullptr);
    ASSERT_TRUE(h.ok()) << h.status().ToString();
    ASSERT_TRUE(a->Settle(*h, kCent).ok());
  }
  auto u = b->UsageOf("team", "");
  ASSERT_TRUE(u.ok());
  EXPECT_LT(u->remaining_nanousd, 100 * kDollar - 10 * kCent);  // a lease is out
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  EXPECT_EQ(Spent(*b), 10 * kCent);  // b never reports: a's background did
  ASSERT_TRUE(a->Close().ok());
  u = b->UsageOf("team", "");
  EXPECT_EQ(u->remaining_nanousd, 100 * kDollar - 10 * kCent);  // the lease came back
}

TEST(RedisBudgets, HardRefusesSoftAdmitsAndReservePercentKeepsHeadroom) {
  RedisServer server;
  auto hard = OpenBudgets(server, OneBudget("    reserve_percent: 20\n"), "a", NoLeases());
  ASSERT_TRUE(hard);
  std::string refused_by;
  auto h = hard->Reserve(Anyone(), 80 * kCent, &refused_by);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  auto no = hard->Reserve(Anyone(), kCent, &refused_by);
  EXPECT_TRUE(no.status().IsFailedPrecondition());
  EXPECT_EQ(refused_by, "team");
  EXPECT_NE(no.status().message().find("admissible $0.8"), std::string::npos)
      << no.status().message();

  RedisServer other;
  auto soft = OpenBudgets(other, OneBudget("    enforcement: soft\n"), "s", NoLeases());
  ASSERT_TRUE(soft);
  for (int i = 0; i < 3; ++i) {
    auto s = soft->Reserve(Anyone(), 50 * kCent, nullptr);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    ASSERT_TRUE(soft->Settle(*s, 50 * kCent).ok());
  }
  EXPECT_EQ(Spent(*soft), 150 * kCent);
}

TEST(RedisBudgets, SettlingTwiceIsRefusedAndCountedOnce) {
  for (bool leases : {false, true}) {
    RedisServer server;
    RedisBudgets::Options o;
    o.leases = leases;
    auto a = OpenBudgets(server, OneBudget("", "10.00"), "a", o);
    ASSERT_TRUE(a);
    auto h1 = a->Reserve(Anyone(), kCent, nullptr);
    ASSERT_TRUE(h1.ok());
    auto h = a->Reserve(Anyone(), kCent, nullptr);  // under a lease when leases are on
    ASSERT_TRUE(h.ok());
    ASSERT_TRUE(a->Settle(*h1, kCent).ok());
    ASSERT_TRUE(a->Settle(*h, 3 * kCent).ok());
    auto again = a->Settle(*h, 3 * kCent);
    EXPECT_TRUE(again.status().IsFailedPrecondition()) << leases;
    EXPECT_TRUE(a->Release(*h).IsFailedPrecondition()) << leases;
    ASSERT_TRUE(a->Flush().ok());
    EXPECT_EQ(Spent(*a), 4 * kCent) << leases;
  }
}

TEST(RedisBudgets, ReleaseGivesTheMoneyBack) {
  RedisServer server;
  auto a = OpenBudgets(server, OneBudget(), "a", NoLeases());
  ASSERT_TRUE(a);
  auto h = a->Reserve(Anyone(), kDollar, nullptr);
  ASSERT_TRUE(h.ok());
  EXPECT_TRUE(a->Reserve(Anyone(), kCent, nullptr).status().IsFailedPrecondition());
  ASSERT_TRUE(a->Release(*h).ok());
  EXPECT_TRUE(a->Reserve(Anyone(), kDollar, nullptr).ok());
}

TEST(RedisBudgets, AllOrNothingAcrossEveryCoveringBudget) {
  RedisServer server;
  const std::string yaml =
      "version: 1\nbudgets:\n"
      "  - {id: team, scope: global, limit_usd: 10.00, window: daily}\n"
      "  - {id: per-user, scope: user, limit_usd: 0.05, window: daily}\n";
  auto a = OpenBudgets(server, yaml, "a", NoLeases());
  ASSERT_TRUE(a);
  std::string refused_by;
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(a->Reserve(Anyone(), kCent, nullptr).ok());
  auto no = a->Reserve(Anyone(), kCent, &refused_by);
  EXPECT_TRUE(no.status().IsFailedPrecondition());
  EXPECT_EQ(refused_by, "per-user");
  // The global budget holds only the admitted five.
  EXPECT_EQ(a->UsageOf("team", "")->reserved_nanousd, 5 * kCent);
  BudgetSubject bob = Anyone();
  bob.user = "bob";
  EXPECT_TRUE(a->Reserve(bob, kCent, nullptr).ok());
}

// Three threads of each worker reserve and settle $0.01 `calls` times;
// returns how many alerts their holds and settlements carried.
int ReserveCountingAlerts(std::vector<std::shared_ptr<RedisBudgets>> workers, int calls) {
  std::atomic<int> fired{0};
  std::vector<std::thread> pool;
  for (auto& w : workers) {
    for (int t = 0; t < 3; ++t) {
      pool.emplace_back([&, w] {
        for (int i = 0; i < calls; ++i) {
          auto h = w->Reserve(Anyone(), kCent, nullptr);
          if (!h.ok()) continue;
          fired += static_cast<int>(h->alerts.size());
          auto s = w->Settle(*h, kCent);
          if (s.ok()) fired += static_cast<int>(s->alerts.size());
        }
      });
    }
  }
  for (auto& t : pool) t.join();
  return fired.load();
}

TEST(RedisBudgets, ThresholdsFireExactlyOnceAcrossWorkers) {
  RedisServer server;
  const std::string yaml = OneBudget(
      "    alerts:\n      - {at: 50%, level: warning, action: notify}\n");
  auto a = OpenBudgets(server, yaml, "a", NoLeases());
  auto b = OpenBudgets(server, yaml, "b", NoLeases());
  ASSERT_TRUE(a && b);
  int fired = ReserveCountingAlerts({a, b}, 15);
  EXPECT_EQ(fired, 1);
}

// With leases a threshold fires on a report; the alert rides on that
// worker's next hold. Still exactly once.
TEST(RedisBudgets, ThresholdsFireExactlyOnceUnderLeases) {
  RedisServer server;
  const std::string yaml = OneBudget(
      "    alerts:\n      - {at: 50%, level: warning, action: notify}\n");
  auto a = OpenBudgets(server, yaml, "a");
  auto b = OpenBudgets(server, yaml, "b");
  ASSERT_TRUE(a && b);
  int fired = ReserveCountingAlerts({a, b}, 30);
  for (auto w : {a, b}) {  // what the last reports fired comes with the next hold
    ASSERT_TRUE(w->Flush().ok());
    auto h = w->Reserve(Anyone(), 0, nullptr);
    ASSERT_TRUE(h.ok()) << h.status().ToString();
    fired += static_cast<int>(h->alerts.size());
  }
  EXPECT_EQ(fired, 1);
  EXPECT_GE(Spent(*a), kDollar / 2);
}

TEST(RedisBudgets, CooldownAlertsRepeatAfterTheCooldown) {
  RedisServer server;
  std::atomic<int64_t> now{1'800'000'000'000'000'000};
  RedisBudgets::Options o = NoLeases();
  o.clock = [&] { return now.load(); };
  auto a = OpenBudgets(server,
                       OneBudget("    alerts:\n      - {at: 10%, action: log, cooldown: 10m}\n"),
                       "a", o);
  ASSERT_TRUE(a);
  auto h = a->Reserve(Anyone(), 20 * kCent, nullptr);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->alerts.size(), 1u);
  h = a->Reserve(Anyone(), kCent, nullptr);
  EXPECT_TRUE(h->alerts.empty());
  now += 11LL * 60 * 1'000'000'000;
  h = a->Reserve(Anyone(), kCent, nullptr);
  EXPECT_EQ(h->alerts.size(), 1u);
}

TEST(RedisBudgets, WindowsRollOverOnTheInjectedClock) {
  RedisServer server;
  std::atomic<int64_t> now{1'800'000'000'000'000'000};
  RedisBudgets::Options o = NoLeases();
  o.clock = [&] { return now.load(); };
  auto a = OpenBudgets(server, OneBudget("    alerts:\n      - {at: 90%, action: notify}\n"),
                       "a", o);
  ASSERT_TRUE(a);
  auto h = a->Reserve(Anyone(), kDollar, nullptr);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->alerts.size(), 1u);
  EXPECT_TRUE(a->Reserve(Anyone(), kCent, nullptr).status().IsFailedPrecondition());
  now += 24LL * 3600 * 1'000'000'000;  // the next day
  auto next = a->Reserve(Anyone(), kDollar, nullptr);
  ASSERT_TRUE(next.ok()) << next.status().ToString();
  EXPECT_EQ(next->alerts.size(), 1u);  // once per window: fires again
  // The old hold settles into its own window.
  ASSERT_TRUE(a->Settle(*h, 2 * kDollar).ok());
  EXPECT_EQ(Spent(*a), 0);
}

TEST(RedisBudgets, RollingWindowsForgetOldSpend) {
  RedisServer server;
  std::atomic<int64_t> now{1'800'000'000'000'000'000};
  RedisBudgets::Options o;
  o.clock = [&] { return now.load(); };
  auto a = OpenBudgets(server, OneBudget("", "1.00", "rolling 1h"), "a", o);
  ASSERT_TRUE(a);
  auto h = a->Reserve(Anyone(), 60 * kCent, nullptr);
  ASSERT_TRUE(h.ok());
  ASSERT_TRUE(a->Settle(*h, 60 * kCent).ok());
  EXPECT_TRUE(a->Reserve(Anyone(), 50 * kCent, nullptr).status().IsFailedPrecondition());
  now += 30LL * 60 * 1'000'000'000;
  EXPECT_EQ(Spent(*a), 60 * kCent);
  now += 31LL * 60 * 1'000'000'000;
  EXPECT_EQ(Spent(*a), 0);
  EXPECT_TRUE(a->Reserve(Anyone(), 90 * kCent, nullptr).ok());
}

TEST(RedisBudgets, DowngradeWhileAtOrAboveAndHaltCaps) {
  RedisServer server;
  auto a = OpenBudgets(server,
                       OneBudget("    alerts:\n"
                                 "      - {at: 50%, action: downgrade, model: gpt-4o-mini}\n"
                                 "      - {at: 80%, level: critical, action: halt}\n"),
                       "a", NoLeases());
  auto b = OpenBudgets(server,
                       OneBudget("    alerts:\n"
                                 "      - {at: 50%, action: downgrade, model: gpt-4o-mini}\n"
                                 "      - {at: 80%, level: critical, action: halt}\n"),
                       "b", NoLeases());
  ASSERT_TRUE(a && b);
  auto h = a->Reserve(Anyone(), 40 * kCent, nullptr);
  ASSERT_TRUE(h.ok());
  EXPECT_FALSE(h->downgrade_model);
  auto d = b->Reserve(Anyone(), 20 * kCent, nullptr);  // another worker crosses 50%
  ASSERT_TRUE(d.ok());
  ASSERT_TRUE(d->downgrade_model);
  EXPECT_EQ(*d->downgrade_model, "gpt-4o-mini");
  EXPECT_EQ(d->downgrade_budget, "team");
  auto e = a->Reserve(Anyone(), 20 * kCent, nullptr);  // 80%: the cap
  ASSERT_TRUE(e.ok());
  EXPECT_TRUE(e->downgrade_model.has_value());
  EXPECT_TRUE(b->Reserve(Anyone(), 1, nullptr).status().IsFailedPrecondition());
}

TEST(RedisBudgets, ThrottleAboveItsThresholdIsSharedByTheFleet) {
  RedisServer server;
  const std::string yaml =
      OneBudget("    alerts:\n      - {at: 10%, action: throttle, rate: 3/min}\n", "100.00");
  auto a = OpenBudgets(server, yaml, "a");
  auto b = OpenBudgets(server, yaml, "b");
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->Reserve(Anyone(), 10 * kDollar, nullptr).ok());  // at 10%: token 1
  int admitted = 0;
  for (int i = 0; i < 4; ++i) {
    if (a->Reserve(Anyone(), kCent, nullptr).ok()) ++admitted;
    if (b->Reserve(Anyone(), kCent, nullptr).ok()) ++admitted;
  }
  EXPECT_EQ(admitted, 2);
}

TEST(RedisBudgets, AClosedWorkersOpenReservationsAreChargedAtTheirEstimate) {
  RedisServer server;
  auto a = OpenBudgets(server, OneBudget(), "a", NoLeases());
  auto b = OpenBudgets(server, OneBudget(), "b", NoLeases());
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->Reserve(Anyone(), 30 * kCent, nullptr).ok());
  ASSERT_TRUE(a->Close().ok());
  ASSERT_TRUE(b->Reserve(Anyone(), kCent, nullptr).ok());
  // b's background report reclaims a's hold, read here straight from Redis.
  auto redis = RawClient(server);
  ASSERT_TRUE(redis);
  const std::string key = TheStateKey(*redis);
  ASSERT_FALSE(key.empty());
  std::string spent;
  for (int i = 0; i < 50 && spent != std::to_string(30 * kCent); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    auto s = redis->Command({"HGET", key, "s"});
    ASSERT_TRUE(s.ok());
    spent = s->str;
  }
  EXPECT_EQ(spent, std::to_string(30 * kCent));
  auto u = b->UsageOf("team", "");
  EXPECT_EQ(u->spent_nanousd, 30 * kCent);
  EXPECT_EQ(u->reserved_nanousd, kCent);
}

// A worker in a child process reserves, takes a lease, admits under it,
// reports, and dies without a word; after its TTL the survivor's next script
// charges its reservation at the estimate and its lease's open holds, and
// returns the rest of the lease.
TEST(RedisBudgets, ADeadWorkersHoldsAreReclaimedAfterItsTtl) {
  RedisServer server;
  const std::string yaml = OneBudget("", "10.00");
  pid_t pid = fork();
  if (pid == 0) {
    RedisBudgets::Options o;
    o.worker_ttl_ns = 600'000'000;
    auto dying = RedisBudgets::Open(Config(yaml), Store(server, "dying"), o);
    if (!dying.ok()) _exit(2);
    auto first = (*dying)->Reserve(Anyone(), 20 * kCent, nullptr);  // on the server + lease
    auto leased = (*dying)->Reserve(Anyone(), 5 * kCent, nullptr);  // under the lease
    if (!first.ok() || !leased.ok() || !((*leased).reservations[0].id >> 63)) _exit(3);
    if (!(*dying)->Flush().ok()) _exit(4);  // reports the open 5 cents
    _exit(0);  // no Close: the liveness key expires
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  auto survivor = OpenBudgets(server, yaml, "survivor", NoLeases());
  ASSERT_TRUE(survivor);
  auto before = survivor->UsageOf("team", "");
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(before->reserved_nanousd, 25 * kCent);  // still alive: held
  EXPECT_LT(before->remaining_nanousd, 10 * kDollar - 25 * kCent);  // and its lease
  std::this_thread::sleep_for(std::chrono::milliseconds(900));
  ASSERT_TRUE(survivor->Reserve(Anyone(), kCent, nullptr).ok());
  auto after = survivor->UsageOf("team", "");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->spent_nanousd, 25 * kCent);
  EXPECT_EQ(after->reserved_nanousd, kCent);
  EXPECT_EQ(after->remaining_nanousd, 10 * kDollar - 26 * kCent);
}

// A TCP relay between one worker and the server that can be cut: the
// worker is then cut off (a partition) while the others go on.
class Partition {
 public:
  explicit Partition(int redis_port) : redis_port_(redis_port) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t len = sizeof addr;
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    listen(listen_fd_, 16);
    thread_ = std::thread([this] { Run(); });
  }
  ~Partition() {
    stop_ = true;
    thread_.join();
    close(listen_fd_);
    for (auto [a, b] : pairs_) close(a), close(b);
  }
  std::string url() const { return fmt::format("redis://127.0.0.1:{}/0", port_); }
  void Cut() { cut_ = true; }
  void Heal() { cut_ = false; }

 private:
  void Run() {
    while (!stop_) {
      std::vector<pollfd> fds{{listen_fd_, POLLIN, 0}};
      for (auto [a, b] : pairs_) fds.push_back({a, POLLIN, 0}), fds.push_back({b, POLLIN, 0});
      if (poll(fds.data(), fds.size(), 10) <= 0) continue;
      if (cut_) {  // a partition: every connection drops, new ones too
        for (auto [a, b] : pairs_) close(a), close(b);
        pairs_.clear();
        if (fds[0].revents & POLLIN) close(accept(listen_fd_, nullptr, nullptr));
        continue;
      }
      if (fds[0].revents & POLLIN) {
        int in = accept(listen_fd_, nullptr, nullptr);
        int out = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in to{};
        to.sin_family = AF_INET;
        to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        to.sin_port = htons(static_cast<uint16_t>(redis_port_));
        if (connect(out, reinterpret_cast<sockaddr*>(&to), sizeof to) == 0) {
          pairs_.emplace_back(in, out);
        } else {
          close(in), close(out);
        }
        continue;
      }
      for (size_t i = 0; i < pairs_.size(); ++i) {
        for (int side = 0; side < 2; ++side) {
          if (!(fds[1 + 2 * i + side].revents & (POLLIN | POLLHUP))) continue;
          int from = side == 0 ? pairs_[i].first : pairs_[i].second;
          int to = side == 0 ? pairs_[i].second : pairs_[i].first;
          char buf[16384];
          ssize_t n = read(from, buf, sizeof buf);
          if (n <= 0 || write(to, buf, static_cast<size_t>(n)) != n) {
            close(pairs_[i].first), close(pairs_[i].second);
            pairs_[i] = {-1, -1};
          }
        }
      }
      std::erase_if(pairs_, [](const auto& p) { return p.first < 0; });
    }
  }

  int redis_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<bool> cut_{false};
  std::vector<std::pair<int, int>> pairs_;  // relay thread only
  std::thread thread_;
};

TEST(RedisBudgets, AWorkerCutOffPastItsTtlNeverSpendsTheLeaseItLost) {
  RedisServer server;
  Partition partition(server.port());
  RedisBudgets::Options o;
  o.worker_ttl_ns = 300'000'000;
  o.report_interval_ns = 100'000'000;
  StoreOptions far = Store(server, "far", 200'000'000);
  far.url = partition.url();
  auto a = RedisBudgets::Open(Config(OneBudget()), far, o);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  auto b = OpenBudgets(server, OneBudget(), "near", NoLeases());
  ASSERT_TRUE(b);
  // A gets a lease and admits under it.
  auto first = (*a)->Reserve(Anyone(), kCent, nullptr);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  auto leased = (*a)->Reserve(Anyone(), kCent, nullptr);
  ASSERT_TRUE(leased.ok());
  ASSERT_TRUE(leased->reservations[0].id >> 63) << "admitted under a lease";
  ASSERT_TRUE((*a)->Flush().ok());  // the server knows of the cent held under the lease
  // Cut off past its TTL, A is taken for dead: its lease goes back to the
  // budget and its two open cents are charged.
  partition.Cut();
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  ASSERT_TRUE(b->Flush().ok());  // a report of a live worker reclaims
  int near = 0;
  while (b->Reserve(Anyone(), kCent, nullptr).ok()) ++near;
  EXPECT_EQ(near, 98);  // $1.00 less A's two charged cents
  // Healed, A must not spend the lease it lost.
  partition.Heal();
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  int far_admitted = 0;
  for (int i = 0; i < 20; ++i) {
    auto h = (*a)->Reserve(Anyone(), kCent, nullptr);
    if (h.ok()) ++far_admitted;
  }
  EXPECT_EQ(far_admitted, 0) << "admitted past the limit under a reclaimed lease";
  auto usage = b->UsageOf("team", "");
  ASSERT_TRUE(usage.ok());
  EXPECT_LE(usage->spent_nanousd + usage->reserved_nanousd, kDollar);
}

TEST(RedisBudgets, FailsClosedWithinTheTimeoutAndRecovers) {
  RedisServer server;
  auto a = OpenBudgets(server, OneBudget(), "a", NoLeases(), 300'000'000);
  ASSERT_TRUE(a);
  auto h = a->Reserve(Anyone(), kCent, nullptr);
  ASSERT_TRUE(h.ok());
  server.Stop();
  auto t0 = std::chrono::steady_clock::now();
  auto down = a->Reserve(Anyone(), kCent, nullptr);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(1000));
  EXPECT_TRUE(down.status().IsUnavailable()) << down.status().ToString();
  EXPECT_NE(down.status().message().find(server.url()), std::string::npos);
  // A settle the server cannot take is kept and applied when it is back.
  ASSERT_TRUE(a->Settle(*h, kCent).ok());
  server.Start();  // empty: persistence is off
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto back = a->Reserve(Anyone(), kCent, nullptr);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(a->TakeEvents().empty());
}

TEST(RedisBudgets, DegradedModeAdmitsLocallyUpToTheCapAndReportsWhenBack) {
  RedisServer server;
  auto a = OpenBudgets(server, OneBudget(), "a", NoLeases(), 300'000'000, 3 * kCent);
  ASSERT_TRUE(a);
  server.Stop();
  std::vector<BudgetHold> holds;
  for (int i = 0; i < 5; ++i) {
    auto h = a->Reserve(Anyone(), kCent, nullptr);
    if (h.ok()) holds.push_back(*h);
  }
  EXPECT_EQ(holds.size(), 3u);  // the per-process cap
  EXPECT_TRUE(a->degraded());
  for (const BudgetHold& h : holds) ASSERT_TRUE(a->Settle(h, kCent).ok());
  auto events = a->TakeEvents();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, "store_degraded");
  EXPECT_EQ(events[0].store, "budgets");
  EXPECT_NE(events[0].detail.find(server.url()), std::string::npos) << events[0].detail;
  server.Start();
  for (int i = 0; i < 100 && a->degraded(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_FALSE(a->degraded());
  ASSERT_TRUE(a->Flush().ok());
  EXPECT_EQ(Spent(*a), 3 * kCent);  // the spend admitted while degraded
  events = a->TakeEvents();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, "store_restored");
}

TEST(RedisBudgets, KeysOfPastWindowsExpire) {
  RedisServer server;
  auto a = OpenBudgets(server, OneBudget(), "a", NoLeases());
  ASSERT_TRUE(a);
  ASSERT_TRUE(a->Reserve(Anyone(), kCent, nullptr).ok());
  auto redis = RawClient(server);
  ASSERT_TRUE(redis);
  const std::string key = TheStateKey(*redis);
  ASSERT_FALSE(key.empty());
  auto ttl = redis->Command({"PTTL", key});
  ASSERT_TRUE(ttl.ok());
  EXPECT_GT(ttl->integer, 24LL * 3600 * 1000);       // the rest of today, and a margin
  EXPECT_LE(ttl->integer, 2 * 24LL * 3600 * 1000);
}

TEST(RedisBudgets, OpenRefusesBadOptionsAndAnUnreachableServer) {
  RedisServer server;
  StoreOptions uncapped = Store(server, "a");
  uncapped.degrade_to_local = true;  // without a cap
  auto bad = RedisBudgets::Open(Config(OneBudget()), uncapped, {});
  EXPECT_TRUE(bad.status().IsInvalidArgument());
  StoreOptions nowhere = Store(server, "a", 200'000'000);
  server.Stop();
  auto down = RedisBudgets::Open(Config(OneBudget()), nowhere, {});
  EXPECT_TRUE(down.status().IsUnavailable()) << down.status().ToString();
}

TEST(RedisBudgets, GuardOpensSharedBudgetsFromItsStore) {
  RedisServer server;
  const std::string path =
      (std::filesystem::temp_directory_path() / ("bastion-fleet-" + std::to_string(getpid()) +
                                                 ".yaml")).string();
  {
    std::ofstream out(path);
    out << OneBudget();
  }
  GuardOptions o;
  o.budgets_file = path;
  o.store = Store(server, "g");
  auto guard = Guard::Open(o);
  ASSERT_TRUE(guard.ok()) << guard.status().ToString();
  auto* shared = dynamic_cast<RedisBudgets*>((*guard)->budget_backend());
  ASSERT_NE(shared, nullptr);
  EXPECT_EQ(shared->worker(), fmt::format("g@{}", getpid()));  // the name, this incarnation
  ASSERT_TRUE((*guard)->Close().ok());

  GuardOptions both;
  both.store = Store(server, "h");
  auto set = BudgetSet::Open(Config(OneBudget()), {});
  ASSERT_TRUE(set.ok());
  both.budget_backend = BudgetSetBackend(std::move(*set));
  EXPECT_TRUE(Guard::Open(both).status().IsInvalidArgument());
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace bastion
