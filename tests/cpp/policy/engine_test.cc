#include "bastion/policy.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include <thread>

namespace bastion {
namespace {

using Sources = std::vector<std::pair<std::string, std::string>>;

std::unique_ptr<PolicyEngine> Engine(Sources sources, std::string bundle_yaml = "",
                                     std::string permissions_yaml = "") {
  auto e = PolicyEngine::FromSources(std::move(sources), bundle_yaml, permissions_yaml);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return e.ok() ? std::move(*e) : nullptr;
}

CallInfo ToolCall(std::string tool, std::string op = "read") {
  CallInfo c;
  c.hook = Hook::kBeforeTool;
  c.agent_id = "support-bot";
  c.agent_role = "support";
  c.tool = std::move(tool);
  c.operation = std::move(op);
  return c;
}

std::string Policy(std::string_view id, std::string_view hook, std::string_view body) {
  return fmt::format("return {{ id = '{}', {} = function(call, text) {} end }}", id, hook, body);
}

TEST(PolicyEngine, NoApplicablePolicyAllows) {
  auto e = Engine({{"a.lua", Policy("a", "before_model", "return deny('x')")}});
  Decision d = e->Evaluate(ToolCall("lookup"));
  EXPECT_EQ(d.effect, Effect::kAllow);
  EXPECT_TRUE(d.reasons.empty());
  ASSERT_EQ(d.explain.size(), 1u);
  EXPECT_FALSE(d.explain[0].applied);
  EXPECT_EQ(d.policy_version, e->version());
  EXPECT_EQ(d.policy_version.size(), 64u);
}

TEST(PolicyEngine, EveryEffectAndTheStrictestWins) {
  struct Case {
    std::vector<std::string> effects;  // one policy per entry
    Effect expected;
    std::vector<std::string> deciders;
  } cases[] = {
      {{"allow('ok')"}, Effect::kAllow, {"p0"}},
      {{"nil"}, Effect::kAllow, {}},
      {{"modify{message='m'}"}, Effect::kModify, {"p0"}},
      {{"require_approval('r')"}, Effect::kRequireApproval, {"p0"}},
      {{"deny('d')"}, Effect::kDeny, {"p0"}},
      {{"allow('a')", "modify{message='m'}"}, Effect::kModify, {"p1"}},
      {{"modify{message='m'}", "require_approval('r')"}, Effect::kRequireApproval, {"p1"}},
      {{"require_approval('r')", "deny('d')", "allow('a')"}, Effect::kDeny, {"p1"}},
      {{"deny('d1')", "deny('d2')"}, Effect::kDeny, {"p0", "p1"}},
      {{"require_approval('r1')", "nil", "require_approval('r2')"}, Effect::kRequireApproval,
       {"p0", "p2"}},
  };
  for (const auto& c : cases) {
    Sources s;
    for (size_t i = 0; i < c.effects.size(); ++i) {
      s.emplace_back(fmt::format("p{}.lua", i),
                     Policy(fmt::format("p{}", i), "before_tool", "return " + c.effects[i]));
    }
    auto e = Engine(s);
    Decision d = e->Evaluate(ToolCall("t"));
    const std::string name = fmt::format("{}", fmt::join(c.effects, " + "));
    EXPECT_EQ(d.effect, c.expected) << name;
    std::vector<std::string> ids;
    for (const auto& r : d.reasons) ids.push_back(r.policy_id);
    EXPECT_EQ(ids, c.deciders) << name;
  }
}

TEST(PolicyEngine, ReasonsCarryMessages) {
  auto e = Engine({{"w.lua", Policy("write-approval", "before_tool",
                                    "return require_approval('writes by ' .. call.agent.id .. "
                                    "' need a human')")}});
  Decision d = e->Evaluate(ToolCall("refund", "write"));
  ASSERT_EQ(d.reasons.size(), 1u);
  EXPECT_EQ(d.reasons[0].policy_id, "write-approval");
  EXPECT_EQ(d.reasons[0].message, "writes by support-bot need a human");
}

TEST(PolicyEngine, CallViewExposesEveryField) {
  auto e = Engine({{"v.lua", Policy("v", "before_tool", R"(
    local parts = {
      call.hook, call.agent.id, call.agent.role, call.agent.parent, call.user.id, call.tenant_id,
      call.model, call.tool, call.operation, call.resource_id, call.risk_level, call.run.id,
      tostring(call.step_index), tostring(call.run.steps), tostring(call.run.tool_calls),
      tostring(call.tokens.input), call.attributes.channel, call.args.order.id,
      tostring(call.args.items[2]), tostring(#call.args.items), text.kind, text.text,
    }
    return deny(table.concat(parts, '|'))
  )")}});
  CallInfo c = ToolCall("lookup_order");
  c.parent_agent_id = "planner";
  c.user_id = "u-1";
  c.tenant_id = "acme";
  c.model = "gpt-4o";
  c.resource_id = "order/1";
  c.risk_level = "low";
  c.run_id = "run-1";
  c.step_index = 3;
  c.run_steps = 4;
  c.run_tool_calls = 2;
  c.tokens.input = 812;
  c.attributes = {{"channel", "web"}};
  c.args = Value(Value::Object{{"order", Value(Value::Object{{"id", Value("A-1")}})},
                               {"items", Value(Value::Array{Value(1), Value(2.5), Value(true)})}});
  c.input = "hello";
  Decision d = e->Evaluate(c);
  ASSERT_EQ(d.reasons.size(), 1u) << (d.errors.empty() ? "" : d.errors[0].message);
  EXPECT_EQ(d.reasons[0].message,
            "before_tool|support-bot|support|planner|u-1|acme|gpt-4o|lookup_order|read|order/1|"
            "low|run-1|3|4|2|812|web|A-1|2.5|3|input|hello");
}

TEST(PolicyEngine, ScopeLimitsWherePoliciesRun) {
  auto e = Engine({{"s.lua", R"(
    return { id = 's', scope = { agents = {'support-*'}, tools = {'refund', 'issue_*'} },
             before_tool = function(call) return deny('scoped') end })"}});
  EXPECT_EQ(e->Evaluate(ToolCall("issue_refund")).effect, Effect::kDeny);
  EXPECT_EQ(e->Evaluate(ToolCall("refund")).effect, Effect::kDeny);
  EXPECT_EQ(e->Evaluate(ToolCall("lookup")).effect, Effect::kAllow);
  CallInfo other = ToolCall("refund");
  other.agent_id = "planner";
  EXPECT_EQ(e->Evaluate(other).effect, Effect::kAllow);
}

TEST(PolicyEngine, RedactionsMergeInBundleOrderAndApply) {
  auto e = Engine({
      {"a.lua", Policy("a", "after_model", "return redact({start=1, stop=4, kind='name'}, 'n')")},
      {"b.lua", Policy("b", "after_model",
                       "local s, t = string.find(text.text, 'secret'); "
                       "return redact({{start=s, stop=t}}, 'secret', {label='***'})")},
  });
  CallInfo c;
  c.hook = Hook::kAfterModel;
  c.output = "Jane says the secret is out";
  Decision d = e->Evaluate(c);
  EXPECT_EQ(d.effect, Effect::kModify);
  ASSERT_EQ(d.redactions.size(), 2u);
  EXPECT_EQ(d.redactions[0].policy_id, "a");
  EXPECT_EQ(d.redactions[0].target, "output");
  EXPECT_EQ(ApplyRedactions(c.output, d.redactions, "output"), "[NAME] says the *** is out");
  EXPECT_EQ(ApplyRedactions(c.output, d.redactions, "input"), c.output);
}

TEST(PolicyEngine, OverlappingRedactionsMergeAndNeverSplitCharacters) {
  std::vector<Redaction> r = {{"output", 0, 5, "[A]", "p"}, {"output", 3, 8, "[B]", "p"},
                              {"output", 11, 12, "[C]", "p"}};
  // "héllo wörld!": é (bytes 1-2) and ö (8-9) take two bytes each; [0,5) and
  // [3,8) merge into [0,8), and [11,12) is the second 'l'.
  const std::string text = "h\xc3\xa9llo w\xc3\xb6rld!";
  EXPECT_EQ(ApplyRedactions(text, r, "output"), "[A]\xc3\xb6r[C]d!");
  std::vector<Redaction> mid = {{"output", 2, 3, "[X]", "p"}};  // inside é
  EXPECT_EQ(ApplyRedactions(text, mid, "output"), "h[X]llo w\xc3\xb6rld!");
}

TEST(PolicyEngine, DowngradeAnnotationsAndRisk) {
  auto e = Engine({
      {"a.lua", Policy("a", "before_model",
                       "local d = downgrade('gpt-4o-mini', 'budget low'); d.risk = 'high'; return d")},
      {"b.lua", Policy("b", "before_model", "return annotate('route', 'cheap')")},
      {"c.lua", Policy("c", "before_model", "return downgrade('other', 'second')")},
  });
  CallInfo c;
  c.hook = Hook::kBeforeModel;
  c.model = "gpt-4o";
  c.risk_level = "low";
  Decision d = e->Evaluate(c);
  EXPECT_EQ(d.effect, Effect::kModify);
  EXPECT_EQ(d.model_downgrade, "gpt-4o-mini");  // first in bundle order
  ASSERT_EQ(d.annotations.size(), 1u);
  EXPECT_EQ(d.annotations[0], (std::pair<std::string, std::string>{"route", "cheap"}));
  EXPECT_EQ(d.risk_level, "high");
}

TEST(PolicyEngine, BadReturnsFailClosed) {
  const char* bodies[] = {"return 42", "return 'deny'", "return {}", "return {effect='maybe'}",
                          "return redact({start=0, stop=3})", "return {effect='deny', "
                          "redact={{start=5, stop=2}}}"};
  for (const char* body : bodies) {
    auto e = Engine({{"p.lua", Policy("p", "before_tool", body)}});
    Decision d = e->Evaluate(ToolCall("t"));
    EXPECT_EQ(d.effect, Effect::kDeny) << body;
    ASSERT_EQ(d.errors.size(), 1u) << body;
    EXPECT_EQ(d.errors[0].kind, "bad_return") << body;
    EXPECT_TRUE(d.redactions.empty()) << body;
  }
}

TEST(PolicyEngine, RuntimeErrorFailsClosedUnlessFailOpen) {
  const std::string boom = Policy("boom", "before_tool", "error('kaput')");
  {
    auto e = Engine({{"b.lua", boom}});
    Decision d = e->Evaluate(ToolCall("t"));
    EXPECT_EQ(d.effect, Effect::kDeny);
    ASSERT_EQ(d.errors.size(), 1u);
    EXPECT_EQ(d.errors[0].kind, "runtime");
    EXPECT_NE(d.errors[0].message.find("b.lua:1: kaput"), std::string::npos) << d.errors[0].message;
    ASSERT_EQ(d.reasons.size(), 1u);
    EXPECT_NE(d.reasons[0].message.find("policy 'boom' failed (runtime)"), std::string::npos);
  }
  {
    auto e = Engine({{"b.lua", boom}}, "fail_open: true\n");
    Decision d = e->Evaluate(ToolCall("t"));
    EXPECT_EQ(d.effect, Effect::kAllow);
    EXPECT_EQ(d.errors.size(), 1u);  // still reported
  }
  {
    auto e = Engine({{"b.lua", "return { id='b', fail_open=true, before_tool=function() "
                               "error('x') end }"}});
    EXPECT_EQ(e->Evaluate(ToolCall("t")).effect, Effect::kAllow);
  }
}

TEST(PolicyEngine, LoadErrorsNameFileAndLine) {
  struct Case {
    Sources sources;
    std::string bundle_yaml;
    std::string expected;
  } cases[] = {
      {{{"x.lua", "return {\n  before_tool = function(call)\n    return deny('x'\n  end }"}},
       "", "x.lua:4:"},
      {{{"y.lua", "return 42"}}, "", "y.lua: the file must return a policy table"},
      {{{"z.lua", "return { id = 'z' }"}}, "", "z.lua: the policy implements no hook"},
      {{{"t.lua", "return { before_tools = function() end }"}}, "",
       "t.lua: unknown field 'before_tools'"},
      {{{"u.lua", "return { before_tool = 3 }"}}, "", "'before_tool' must be a function"},
      {{{"v.lua", "return { scope = { agent = 'x' }, before_tool = function() end }"}}, "",
       "unknown scope 'agent'"},
      {{{"a.lua", Policy("same", "before_tool", "")}, {"b.lua", Policy("same", "before_tool", "")}},
       "", "b.lua: policy id 'same' is already used by a.lua"},
      {{{"e.lua", "error('at load')"}}, "", "e.lua:1: at load"},
      {{{"p.lua", Policy("permissions", "before_tool", "")}}, "",
       "p.lua: policy id 'permissions' is reserved"},
      {{{"l.lua", "while true do end"}}, "", "instruction limit exceeded"},
      {{{"ok.lua", Policy("ok", "before_tool", "")}}, "limits:\n  instructions: -5\n",
       "bundle.yaml: limits.instructions: expected a positive integer"},
      {{{"ok.lua", Policy("ok", "before_tool", "")}}, "limits:\n  memory_kb: 18014398509481984\n",
       "bundle.yaml: limits.memory_kb: expected a positive integer of at most 1099511627776"},
      {{{"ok.lua", Policy("ok", "before_tool", "")}}, "fail_closed: true\n",
       "unknown setting 'fail_closed'"},
      {{{"ok.lua", Policy("ok", "before_tool", "")}}, "data: [1, 2\n", "bundle.yaml:"},
      {{{"bin.lua", std::string("\x1bLua\x54\x00", 6)}}, "", "bin.lua"},
  };
  for (const auto& c : cases) {
    auto e = PolicyEngine::FromSources(c.sources, c.bundle_yaml);
    ASSERT_FALSE(e.ok()) << c.expected;
    EXPECT_NE(e.status().message().find(c.expected), std::string::npos)
        << "expected '" << c.expected << "' in: " << e.status().message();
  }
}

TEST(PolicyEngine, BundleDataIsReadable) {
  auto e = Engine({{"d.lua", Policy("d", "before_tool", R"(
      local tools = data.allow
      local n = 0
      for i, t in ipairs(tools) do n = n + 1 end
      local keys = {}
      for k, v in pairs(data.limits) do keys[#keys + 1] = k .. '=' .. tostring(v) end
      table.sort(keys)  -- pairs follows Lua's hash order, not the YAML's
      return deny(n .. ' ' .. #tools .. ' ' .. table.concat(keys, ','))
  )")}},
                  "data:\n  allow: [a, b, c]\n  limits: {max: 3, name: x}\n");
  Decision d = e->Evaluate(ToolCall("t"));
  ASSERT_EQ(d.reasons.size(), 1u) << (d.errors.empty() ? "" : d.errors[0].message);
  EXPECT_EQ(d.reasons[0].message, "3 3 max=3,name=x");
}

TEST(PolicyEngine, BundleDataIsReadOnly) {
  const char* writes[] = {"data.allow = nil", "data.limits.max = 4", "data.allow[1] = 'z'",
                          "rawset(data, 'x', 1)", "setmetatable(data, nil)",
                          "table.insert(data.allow, 'd')"};
  for (const char* body : writes) {
    auto e = Engine({{"d.lua", Policy("d", "before_tool", body)}},
                    "data:\n  allow: [a, b, c]\n  limits: {max: 3}\n");
    Decision d = e->Evaluate(ToolCall("t"));
    EXPECT_EQ(d.effect, Effect::kDeny) << body;
    ASSERT_EQ(d.errors.size(), 1u) << body;
  }
}

TEST(PolicyEngine, EvaluatesFromManyThreads) {
  auto e = Engine({{"c.lua", Policy("c", "before_tool",
                                    "if call.tool == 'bad' then return deny('no') end")}});
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        const bool bad = (i + t) % 3 == 0;
        Decision d = e->Evaluate(ToolCall(bad ? "bad" : "good"));
        if (d.effect != (bad ? Effect::kDeny : Effect::kAllow)) ++wrong;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
}

// Lua states are pooled, not per thread: threads that evaluate once and end
// (an executor's, a thread per tool call) reuse one state instead of building
// one each, which costs about a hundred evaluations. A module-level counter
// tells which state ran.
TEST(PolicyEngine, ShortLivedThreadsReuseOneLuaState) {
  const std::string counting =
      "local evaluations = 0\n"
      "return { id = 'count', before_tool = function(call)\n"
      "  evaluations = evaluations + 1\n"
      "  return annotate('n', tostring(evaluations))\n"
      "end }";
  auto e = Engine({{"count.lua", counting}});
  auto evaluate_on_a_new_thread = [&] {
    std::string n;
    std::thread([&] {
      Decision d = e->Evaluate(ToolCall("t"));
      if (!d.annotations.empty()) n = d.annotations[0].second;
    }).join();
    return n;
  };
  for (int i = 1; i <= 100; ++i) {
    ASSERT_EQ(evaluate_on_a_new_thread(), std::to_string(i)) << "thread " << i;
  }
  // A reload drops the states of the old bundle.
  ASSERT_TRUE(e->ReloadSources({{"count.lua", counting}}).ok());
  EXPECT_EQ(evaluate_on_a_new_thread(), "1");
  EXPECT_EQ(evaluate_on_a_new_thread(), "2");
}

constexpr char kRateLimited[] = R"(version: 1
agents:
  support-bot:
    tools:
      - name: lookup
        operations: [read]
        rate_limit: 2/min
)";

// Evaluate = CheckPermissions + EvaluatePolicies: the permissions (and their
// rate limit tokens) are checked once, and only by the parts that check them.
TEST(PolicyEngine, PermissionsAndPoliciesEvaluateApartAndOnceTogether) {
  auto e = Engine({{"a.lua", Policy("a", "before_tool", "return allow('looked at it')")}}, "",
                  kRateLimited);
  auto clock = std::make_shared<ManualClock>(1'000 * kNsPerSecond);
  e->SetClock(clock);
  const CallInfo call = ToolCall("lookup");

  const Decision policies = e->EvaluatePolicies(call);
  ASSERT_EQ(policies.explain.size(), 1u);
  EXPECT_EQ(policies.explain[0].policy_id, "a");
  const Decision permissions = e->CheckPermissions(call);
  ASSERT_EQ(permissions.explain.size(), 1u);
  EXPECT_EQ(permissions.explain[0].policy_id, "permissions");
  EXPECT_EQ(permissions.effect, Effect::kAllow);
  EXPECT_EQ(permissions.policy_version, e->version());

  const Decision both = e->Evaluate(call);  // the second token
  ASSERT_EQ(both.explain.size(), 2u);
  EXPECT_EQ(both.explain[0].policy_id, "permissions");
  EXPECT_EQ(both.effect, Effect::kAllow);
  for (int i = 0; i < 5; ++i) e->EvaluatePolicies(call);  // takes no token
  const Decision limited = e->Evaluate(call);
  EXPECT_EQ(limited.effect, Effect::kDeny);
  EXPECT_EQ(limited.reasons[0].policy_id, "permissions");
  // Another hook gets no permissions vote.
  CallInfo model = call;
  model.hook = Hook::kBeforeModel;
  EXPECT_TRUE(e->CheckPermissions(model).explain.empty());
}

// Rate limits refill on the engine's clock, not on real time.
TEST(PolicyEngine, RateLimitsRefillOnTheEnginesClock) {
  auto e = Engine({{"a.lua", Policy("a", "before_model", "")}}, "", kRateLimited);
  auto clock = std::make_shared<ManualClock>(1'000 * kNsPerSecond);
  e->SetClock(clock);
  const CallInfo call = ToolCall("lookup");
  EXPECT_EQ(e->Evaluate(call).effect, Effect::kAllow);
  EXPECT_EQ(e->Evaluate(call).effect, Effect::kAllow);
  EXPECT_EQ(e->Evaluate(call).effect, Effect::kDeny);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(e->Evaluate(call).effect, Effect::kDeny);
  clock->Advance(30 * kNsPerSecond);
  EXPECT_EQ(e->Evaluate(call).effect, Effect::kAllow);
  EXPECT_EQ(e->Evaluate(call).effect, Effect::kDeny);
}

}  // namespace
}  // namespace bastion
