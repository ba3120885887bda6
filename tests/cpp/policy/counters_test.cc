// counter.add's state is bounded (keys per policy, bytes per key, bytes in
// all), charged to the evaluation's memory, and fails closed past a bound.
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "bastion/policy.h"
#include "policy/lua_helpers.h"

namespace bastion {
namespace {

using policy::Counters;

constexpr int64_t kSecond = 1'000'000'000;

TEST(Counters, RefusesANewKeyPastTheKeyBoundAndKeepsCountingKnownOnes) {
  Counters c;
  const Counters::Limits limits{2, 64, 1 << 20};
  EXPECT_TRUE(c.Add("p", "a", 60 * kSecond, 1, 0, limits).ok);
  EXPECT_TRUE(c.Add("p", "b", 60 * kSecond, 1, 0, limits).ok);
  Counters::AddResult r = c.Add("p", "c", 60 * kSecond, 1, 0, limits);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("limits.counter_keys"), std::string::npos) << r.error;
  r = c.Add("p", "a", 60 * kSecond, 1, kSecond, limits);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_DOUBLE_EQ(r.count, 2);
  EXPECT_EQ(r.new_bytes, 0u);
  // The bound is per policy.
  EXPECT_TRUE(c.Add("q", "c", 60 * kSecond, 1, 0, limits).ok);
}

TEST(Counters, DropsKeysWhoseWindowHasPassedWhenRoomIsNeeded) {
  Counters c;
  const Counters::Limits limits{2, 64, 1 << 20};
  ASSERT_TRUE(c.Add("p", "a", kSecond, 5, 0, limits).ok);
  ASSERT_TRUE(c.Add("p", "b", 10 * kSecond, 5, 0, limits).ok);
  EXPECT_FALSE(c.Add("p", "c", kSecond, 1, kSecond / 2, limits).ok);
  // Two windows later "a" counts nothing and makes room; "b" is still live.
  Counters::AddResult r = c.Add("p", "c", kSecond, 1, 2 * kSecond, limits);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_FALSE(c.Add("p", "d", kSecond, 1, 2 * kSecond, limits).ok);
  r = c.Add("p", "b", 10 * kSecond, 1, 2 * kSecond, limits);
  ASSERT_TRUE(r.ok);
  EXPECT_DOUBLE_EQ(r.count, 6);  // "b" kept its events
  r = c.Add("p", "a", kSecond, 1, 2 * kSecond, limits);
  EXPECT_FALSE(r.ok);  // "a" was dropped, and there is no room for it now
}

TEST(Counters, AShortWindowAddedAfterASweepIsDroppedInTime) {
  Counters c;
  const Counters::Limits limits{2, 64, 1 << 20};
  ASSERT_TRUE(c.Add("p", "long", 100 * kSecond, 1, 0, limits).ok);
  ASSERT_TRUE(c.Add("p", "short", kSecond, 1, 0, limits).ok);
  EXPECT_FALSE(c.Add("p", "x", kSecond, 1, kSecond, limits).ok);  // sweeps; nothing expired
  ASSERT_TRUE(c.Add("p", "y", kSecond, 1, 3 * kSecond, limits).ok);  // "short" expired
  // "y" came after the last sweep; it expires long before "long" does.
  Counters::AddResult r = c.Add("p", "z", kSecond, 1, 6 * kSecond, limits);
  EXPECT_TRUE(r.ok) << r.error;
}

// The byte bound is shared: one policy's expired keys must not keep another
// policy's new keys out once their windows have passed.
TEST(Counters, ExpiredKeysOfAQuietPolicyMakeRoomForAnother) {
  Counters c;
  const size_t per_key = 9 + Counters::kKeyOverhead;  // "key-00000"
  const Counters::Limits limits{1000, 16, 3 * per_key};
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(c.Add("burst", fmt::format("key-{:05}", i), kSecond, 1, 0, limits).ok) << i;
  }
  EXPECT_FALSE(c.Add("steady", "key-00009", kSecond, 1, kSecond / 2, limits).ok);
  Counters::AddResult r = c.Add("steady", "key-00009", kSecond, 1, 2 * kSecond, limits);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(c.bytes(), per_key);
}

// A window that rounds to zero nanoseconds is refused, not divided by.
TEST(Counters, RefusesAWindowOfNoTime) {
  Counters c;
  const Counters::Limits limits{10, 64, 1 << 20};
  Counters::AddResult r = c.Add("p", "k", 0, 1, 5, limits);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(c.bytes(), 0u);
}

TEST(Counters, BoundsKeySizeAndTotalBytes) {
  Counters c;
  const size_t per_key = 9 + Counters::kKeyOverhead;  // "key-00000"
  const Counters::Limits limits{1000, 16, 3 * per_key};
  Counters::AddResult r = c.Add("p", std::string(17, 'k'), kSecond, 1, 0, limits);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("limits.counter_key_bytes"), std::string::npos) << r.error;
  for (int i = 0; i < 3; ++i) {
    r = c.Add(i < 2 ? "p" : "q", fmt::format("key-{:05}", i), 60 * kSecond, 1, 0, limits);
    ASSERT_TRUE(r.ok) << i << ": " << r.error;
    EXPECT_EQ(r.new_bytes, per_key);
  }
  EXPECT_EQ(c.bytes(), 3 * per_key);
  r = c.Add("r", "key-00003", 60 * kSecond, 1, 0, limits);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("limits.counter_memory_kb"), std::string::npos) << r.error;
  EXPECT_EQ(c.bytes(), 3 * per_key);
}

Result<std::unique_ptr<PolicyEngine>> CountingEngine(const std::string& body,
                                                     const std::string& limits) {
  return PolicyEngine::FromSources(
      {{"c.lua", fmt::format("return {{ id = 'c', before_tool = function(call) {} end }}", body)}},
      "limits:\n" + limits);
}

CallInfo ToolCall(std::string tool) {
  CallInfo c;
  c.hook = Hook::kBeforeTool;
  c.tool = std::move(tool);
  return c;
}

TEST(CounterLimits, AKeyPerCallerFailsClosedPastTheBoundAndKnownKeysStillCount) {
  auto e = CountingEngine(
      "local n = counter.add(call.tool, 60) if n > 2 then return deny('too many') end",
      "  counter_keys: 50\n");
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  for (int i = 0; i < 50; ++i) {
    Decision d = (*e)->Evaluate(ToolCall(fmt::format("tool-{}", i)));
    ASSERT_EQ(d.effect, Effect::kAllow) << i << ": "
                                        << (d.errors.empty() ? "" : d.errors[0].message);
  }
  Decision d = (*e)->Evaluate(ToolCall("tool-50"));
  EXPECT_EQ(d.effect, Effect::kDeny);
  ASSERT_EQ(d.errors.size(), 1u);
  EXPECT_EQ(d.errors[0].kind, "counter_limit");
  EXPECT_NE(d.errors[0].message.find("50 live counter keys"), std::string::npos)
      << d.errors[0].message;
  EXPECT_EQ((*e)->Evaluate(ToolCall("tool-7")).effect, Effect::kAllow);
  EXPECT_EQ((*e)->Evaluate(ToolCall("tool-7")).effect, Effect::kDeny);  // the third event
}

TEST(CounterLimits, UniqueKeysInALoopAreStoppedEvenInsidePcall) {
  // Each call tries 10 000 unique 1 KB keys: refused at once (key size) or
  // at the key bound, never growing the process.
  for (const char* limits :
       {"  counter_key_bytes: 256\n", "  counter_key_bytes: 2048\n  counter_keys: 1000\n"}) {
    auto e = CountingEngine(
        "local pad = string.rep('k', 1000) for i = 1, 10000 do "
        "pcall(counter.add, pad .. i, 3600) end return allow('survived')",
        limits);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    for (int round = 0; round < 3; ++round) {
      Decision d = (*e)->Evaluate(ToolCall("t"));
      EXPECT_EQ(d.effect, Effect::kDeny) << limits;
      ASSERT_EQ(d.errors.size(), 1u) << limits;
      EXPECT_EQ(d.errors[0].kind, "counter_limit") << limits << d.errors[0].message;
    }
  }
}

TEST(CounterLimits, NewKeysAreChargedToTheEvaluationsMemory) {
  auto e = CountingEngine(
      "local pad = string.rep('k', 200) for i = 1, 1000 do counter.add(pad .. call.tool .. i, 60) "
      "end",
      "  memory_kb: 128\n  counter_keys: 100000\n");
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  Decision d = (*e)->Evaluate(ToolCall("a"));
  EXPECT_EQ(d.effect, Effect::kDeny);
  ASSERT_EQ(d.errors.size(), 1u);
  EXPECT_EQ(d.errors[0].kind, "memory_limit") << d.errors[0].message;
  // 300 bytes a key: 1000 keys fit in 512 KB.
  e = CountingEngine(
      "local pad = string.rep('k', 200) for i = 1, 1000 do counter.add(pad .. call.tool .. i, 60) "
      "end",
      "  memory_kb: 512\n  counter_keys: 100000\n");
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  d = (*e)->Evaluate(ToolCall("a"));
  EXPECT_EQ(d.effect, Effect::kAllow) << (d.errors.empty() ? "" : d.errors[0].message);
}

TEST(CounterLimits, AreReadFromBundleYaml) {
  auto e = CountingEngine("return nil", "  counter_keys: 0\n");
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("bundle.yaml: limits.counter_keys: expected a positive "
                                      "integer"),
            std::string::npos)
      << e.status().ToString();
  e = CountingEngine("return nil", "  counter_bytes: 5\n");
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("counter_memory_kb"), std::string::npos)
      << e.status().ToString();
  e = CountingEngine("return nil",
                     "  counter_keys: 10\n  counter_key_bytes: 64\n  counter_memory_kb: 64\n");
  EXPECT_TRUE(e.ok()) << e.status().ToString();
}

TEST(HostileMemory, PcallAroundPiiFindOnLongOutputFailsClosed) {
  // 2 MB of output full of card numbers: pii.find's result does not fit in
  // the default 8 MB, and the policy swallows the error and lets it through.
  auto e = PolicyEngine::FromSources({{"p.lua", R"(
    return { id = 'pii', after_model = function(call, out)
      local ok, hits = pcall(pii.find, out.text, 'credit_card')
      if ok and #hits > 0 then return redact(hits) end
      return allow('nothing found')
    end })"}});
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  CallInfo c;
  c.hook = Hook::kAfterModel;
  std::string out;
  while (out.size() < (2u << 20)) out += "card 4111 1111 1111 1111 ok ";
  c.output = out;
  Decision d = (*e)->Evaluate(c);
  EXPECT_EQ(d.effect, Effect::kDeny);
  ASSERT_EQ(d.errors.size(), 1u);
  EXPECT_EQ(d.errors[0].kind, "memory_limit") << d.errors[0].message;
  EXPECT_NE(d.errors[0].message.find("not enough memory (8192 KB per evaluation)"),
            std::string::npos)
      << d.errors[0].message;
}

}  // namespace
}  // namespace bastion
