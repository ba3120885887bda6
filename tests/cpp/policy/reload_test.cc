#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "bastion/policy.h"
#include "test_util.h"

namespace bastion {
namespace {

void Write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::trunc) << text;
}

std::string Versioned(int v) {
  return fmt::format("return {{ id = 'p', before_tool = function() return deny('v{}') end }}", v);
}

TEST(PolicyReload, SwapsAtomicallyUnderConcurrentEvaluation) {
  auto e = PolicyEngine::FromSources({{"p.lua", Versioned(0)}});
  ASSERT_TRUE(e.ok());
  PolicyEngine& engine = **e;
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::atomic<int> last_seen{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&] {
      CallInfo c;
      c.hook = Hook::kBeforeTool;
      int previous = 0;
      while (!stop.load()) {
        Decision d = engine.Evaluate(c);
        if (d.effect != Effect::kDeny || d.reasons.size() != 1 || !d.errors.empty()) {
          ++bad;
          continue;
        }
        const int v = std::stoi(d.reasons[0].message.substr(1));
        if (v < previous) ++bad;  // a thread never goes back to an older bundle
        previous = v;
        last_seen = std::max(last_seen.load(), v);
      }
    });
  }
  for (int v = 1; v <= 30; ++v) {
    ASSERT_TRUE(engine.ReloadSources({{"p.lua", Versioned(v)}}).ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  stop = true;
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
  CallInfo c;
  c.hook = Hook::kBeforeTool;
  EXPECT_EQ(engine.Evaluate(c).reasons[0].message, "v30");
}

TEST(PolicyReload, BrokenBundleKeepsThePreviousOne) {
  auto e = PolicyEngine::FromSources({{"p.lua", Versioned(1)}});
  ASSERT_TRUE(e.ok());
  const std::string v1 = (*e)->version();
  Status s = (*e)->ReloadSources({{"p.lua", "return { before_tool = function( }"}});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("p.lua:1:"), std::string::npos) << s.message();
  EXPECT_EQ((*e)->version(), v1);
  CallInfo c;
  c.hook = Hook::kBeforeTool;
  EXPECT_EQ((*e)->Evaluate(c).reasons[0].message, "v1");
}

TEST(PolicyBundle, LoadsAFolderAndItsVersionFollowsEveryFile) {
  testing::TempDir dir;
  const std::string b = dir.Sub("bundle");
  std::filesystem::create_directories(b + "/cases");
  Write(b + "/a.lua", Versioned(1));
  Write(b + "/cases/ignored.yaml", "- not: part of the bundle\n");
  Write(b + "/notes.txt", "ignored");
  auto e = PolicyEngine::Load(b);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  const std::string v1 = (*e)->version();
  EXPECT_EQ((*e)->policy_ids(), std::vector<std::string>{"p"});

  Write(b + "/cases/ignored.yaml", "- still: ignored\n");
  ASSERT_TRUE((*e)->Reload(b).ok());
  EXPECT_EQ((*e)->version(), v1);  // cases are not part of the bundle

  Write(b + "/bundle.yaml", "data: {x: 1}\n");
  ASSERT_TRUE((*e)->Reload(b).ok());
  const std::string v2 = (*e)->version();
  EXPECT_NE(v2, v1);

  Write(b + "/a.lua", Versioned(2));
  ASSERT_TRUE((*e)->Reload(b).ok());
  EXPECT_NE((*e)->version(), v2);

  auto missing = PolicyEngine::Load(dir.Sub("nope"));
  EXPECT_TRUE(missing.status().IsNotFound()) << missing.status().ToString();
}

TEST(PolicyBundle, PermissionsDenyWhatNoGrantAllows) {
  const char* perms = R"(version: 1
roles:
  support:
    tools:
      - name: lookup_order
        operations: [read]
        resources: ["order/*"]
      - name: issue_refund
        operations: [write]
        requires_approval: true
      - name: fetch
        operations: [read]
        rate_limit: 2/s
        network:
          allow: ["*.example.com"]
agents:
  support-bot:
    role: support
)";
  auto e = PolicyEngine::FromSources(
      {{"p.lua", "return { id = 'reader', before_tool = function(call) "
                 "local ok, why = permissions.check('issue_refund', 'delete') "
                 "return annotate('check', tostring(ok) .. ':' .. why) end }"}},
      "", perms);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  auto call = [](std::string tool, std::string op, std::string resource = "") {
    CallInfo c;
    c.hook = Hook::kBeforeTool;
    c.agent_id = "support-bot";
    c.tool = std::move(tool);
    c.operation = std::move(op);
    c.resource_id = std::move(resource);
    return c;
  };
  Decision ok = (*e)->Evaluate(call("lookup_order", "read", "order/1"));
  EXPECT_EQ(ok.effect, Effect::kAllow);
  ASSERT_EQ(ok.annotations.size(), 1u);
  EXPECT_EQ(ok.annotations[0].second.rfind("false:", 0), 0u) << ok.annotations[0].second;

  Decision no_grant = (*e)->Evaluate(call("delete_user", "delete"));
  EXPECT_EQ(no_grant.effect, Effect::kDeny);
  ASSERT_EQ(no_grant.reasons.size(), 1u);
  EXPECT_EQ(no_grant.reasons[0].policy_id, "permissions");
  EXPECT_NE(no_grant.reasons[0].message.find("delete_user"), std::string::npos);

  Decision wrong_resource = (*e)->Evaluate(call("lookup_order", "read", "user/1"));
  EXPECT_EQ(wrong_resource.effect, Effect::kDeny);
  EXPECT_NE(wrong_resource.reasons[0].message.find("order/*"), std::string::npos);

  Decision approval = (*e)->Evaluate(call("issue_refund", "write"));
  EXPECT_EQ(approval.effect, Effect::kRequireApproval);

  CallInfo fetch = call("fetch", "read");
  fetch.args = Value(Value::Object{{"url", Value("https://evil.org/x")}});
  EXPECT_EQ((*e)->Evaluate(fetch).effect, Effect::kDeny);
  fetch.args = Value(Value::Object{{"url", Value("https://api.example.com/x")}});
  // 2/s with a burst of 2: the third call in the same instant is denied.
  EXPECT_EQ((*e)->Evaluate(fetch).effect, Effect::kAllow);
  EXPECT_EQ((*e)->Evaluate(fetch).effect, Effect::kAllow);
  Decision limited = (*e)->Evaluate(fetch);
  EXPECT_EQ(limited.effect, Effect::kDeny);
  EXPECT_NE(limited.reasons[0].message.find("rate limit"), std::string::npos);

  // Other hooks do not consult permissions.
  CallInfo model;
  model.hook = Hook::kBeforeModel;
  model.agent_id = "stranger";
  EXPECT_EQ((*e)->Evaluate(model).effect, Effect::kAllow);
}

}  // namespace
}  // namespace bastion
