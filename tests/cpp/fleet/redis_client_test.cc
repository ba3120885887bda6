#include "fleet/redis_client.h"

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "redis_server.h"
#include "test_util.h"

namespace bastion::fleet {
namespace {

using bastion::testing::ExpectMentions;
using bastion::testing::RedisServer;

std::shared_ptr<RedisClient> ConnectTo(const RedisServer& server, int64_t timeout_ms = 1000) {
  auto endpoint = ParseRedisUrl(server.url());
  EXPECT_TRUE(endpoint.ok()) << endpoint.status().ToString();
  RedisClient::Options options;
  options.endpoint = *endpoint;
  options.timeout_ns = timeout_ms * 1'000'000;
  options.retry_interval_ns = 50'000'000;
  auto client = RedisClient::Connect(options);
  EXPECT_TRUE(client.ok()) << client.status().ToString();
  return client.ok() ? *client : nullptr;
}

TEST(RedisUrl, ParsesEveryForm) {
  auto e = ParseRedisUrl("redis://127.0.0.1:6390/3");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->host, "127.0.0.1");
  EXPECT_EQ(e->port, 6390);
  EXPECT_EQ(e->db, 3);
  e = ParseRedisUrl("redis://cache.internal");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->port, 6379);
  EXPECT_EQ(e->db, 0);
  e = ParseRedisUrl("redis://app:s3cret@cache:7000/1");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->user, "app");
  EXPECT_EQ(e->password, "s3cret");
  EXPECT_EQ(e->ToString(), "redis://cache:7000/1");  // never the password
  e = ParseRedisUrl("redis://:s3cret@[::1]:7000");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->host, "::1");
  EXPECT_EQ(e->user, "");
  EXPECT_EQ(e->password, "s3cret");
  e = ParseRedisUrl("unix:///run/redis.sock?db=2");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->unix_path, "/run/redis.sock");
  EXPECT_EQ(e->db, 2);
}

TEST(RedisUrl, RejectsMalformedUrlsWithoutShowingThePassword) {
  for (const char* bad : {"http://x", "redis://", "redis://h:0", "redis://h:99999",
                          "redis://h:12x", "redis://h/db", "unix://relative", "unix:///s?x=1",
                          "redis://[::1"}) {
    auto e = ParseRedisUrl(bad);
    EXPECT_TRUE(e.status().IsInvalidArgument()) << bad;
    ExpectMentions(e.status(), "store '");
  }
  auto e = ParseRedisUrl("redis://u:topsecret@h:0");
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().message().find("topsecret"), std::string::npos) << e.status().message();
}

TEST(RedisScript, Sha1IsTheServersScriptId) {
  // SHA-1 of "return 1", as SCRIPT LOAD reports it.
  EXPECT_EQ(RedisScript("return 1").sha1(), "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
}

TEST(RedisClient, CommandsPipelinesAndBinarySafeArguments) {
  RedisServer server;
  auto redis = ConnectTo(server);
  ASSERT_TRUE(redis);
  std::string binary("a\0b\xff\r\n", 6);
  auto set = redis->Command({"SET", "k", binary});
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_EQ(set->type, RedisReply::Type::kStatus);
  auto get = redis->Command({"GET", "k"});
  ASSERT_TRUE(get.ok());
  EXPECT_EQ(get->str, binary);
  auto missing = redis->Command({"GET", "nothing"});
  ASSERT_TRUE(missing.ok());
  EXPECT_TRUE(missing->is_nil());
  auto replies = redis->Pipeline({{"INCR", "n"}, {"INCR", "n"}, {"LRANGE", "none", "0", "-1"}});
  ASSERT_TRUE(replies.ok());
  ASSERT_EQ(replies->size(), 3u);
  EXPECT_EQ((*replies)[1].integer, 2);
  EXPECT_EQ((*replies)[2].type, RedisReply::Type::kArray);
  auto wrong = redis->Command({"INCR", "k"});  // not an integer
  EXPECT_EQ(wrong.status().code(), Status::Code::kInternal);
  ExpectMentions(wrong.status(), server.url());
  auto t = redis->ServerTimeNs();
  ASSERT_TRUE(t.ok());
  int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                    std::chrono::system_clock::now().time_since_epoch()).count();
  EXPECT_LT(std::abs(*t - now), 5'000'000'000LL);
}

TEST(RedisClient, ScriptsAreLoadedAgainWhenTheServerForgetsThem) {
  RedisServer server;
  auto redis = ConnectTo(server);
  ASSERT_TRUE(redis);
  RedisScript script("return redis.call('INCRBY', KEYS[1], ARGV[1])");
  auto r = redis->Eval(script, {"{t}:n"}, {"5"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->integer, 5);
  ASSERT_TRUE(redis->Command({"SCRIPT", "FLUSH"}).ok());
  r = redis->Eval(script, {"{t}:n"}, {"2"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->integer, 7);
  RedisScript failing("return redis.error_reply('boom')");
  auto f = redis->Eval(failing, {}, {});
  EXPECT_EQ(f.status().code(), Status::Code::kInternal);
  ExpectMentions(f.status(), "boom");
}

TEST(RedisClient, FailsClosedWithinItsTimeoutAndReconnectsWhenTheServerReturns) {
  RedisServer server;
  auto redis = ConnectTo(server, 300);
  ASSERT_TRUE(redis);
  ASSERT_TRUE(redis->Command({"SET", "k", "1"}).ok());
  server.Stop();
  auto t0 = std::chrono::steady_clock::now();
  auto down = redis->Command({"GET", "k"});
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_TRUE(down.status().IsUnavailable()) << down.status().ToString();
  ExpectMentions(down.status(), server.url());
  EXPECT_LT(took, std::chrono::milliseconds(1500));
  // While it is down, every command fails the same way, quickly.
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(redis->Command({"PING"}).status().IsUnavailable());
  server.Start();
  std::this_thread::sleep_for(std::chrono::milliseconds(60));  // past the retry interval
  auto back = redis->Command({"PING"});
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->str, "PONG");
}

TEST(RedisClient, AServerThatRestartedIsUsedAgainOnTheFirstCommand) {
  RedisServer server;
  auto redis = ConnectTo(server);
  ASSERT_TRUE(redis);
  ASSERT_TRUE(redis->Command({"PING"}).ok());
  server.Stop();
  server.Start();
  // The pooled connection is stale; the command goes through on a fresh one.
  auto r = redis->Command({"PING"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_GE(redis->connects(), 2u);
}

TEST(RedisClient, ConnectToNothingIsUnavailable) {
  RedisServer server;
  std::string url = server.url();
  server.Stop();
  auto endpoint = ParseRedisUrl(url);
  ASSERT_TRUE(endpoint.ok());
  RedisClient::Options options;
  options.endpoint = *endpoint;
  auto client = RedisClient::Connect(options);
  EXPECT_TRUE(client.status().IsUnavailable()) << client.status().ToString();
  ExpectMentions(client.status(), url);
}

TEST(RedisClient, ManyThreadsShareOneClient) {
  RedisServer server;
  auto redis = ConnectTo(server);
  ASSERT_TRUE(redis);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        if (!redis->Command({"INCR", "shared"}).ok()) failures.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  auto n = redis->Command({"GET", "shared"});
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n->str, "1600");
}

}  // namespace
}  // namespace bastion::fleet
