// What a policy reads from a call whose fields were never set: every field of
// the call view, with its type and value when absent (docs/policies.md lists
// the same table).
#include <gtest/gtest.h>

#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "bastion/policy.h"

namespace bastion {
namespace {

using Sources = std::vector<std::pair<std::string, std::string>>;

// Each expression, as a policy sees it on a before_tool call with nothing set.
// The policy describes a value as "type:tostring" (scalars) or "type" (views).
const std::pair<const char*, const char*> kAbsent[] = {
    {"call.hook", "string:before_tool"},
    {"call.agent", "userdata"},
    {"call.agent.id", "nil:nil"},
    {"call.agent.role", "nil:nil"},
    {"call.agent.parent", "nil:nil"},
    {"call.agent_id", "nil:nil"},
    {"call.agent_role", "nil:nil"},
    {"call.parent_agent_id", "nil:nil"},
    {"call.user", "userdata"},
    {"call.user.id", "nil:nil"},
    {"call.user_id", "nil:nil"},
    {"call.tenant", "nil:nil"},
    {"call.tenant_id", "nil:nil"},
    {"call.model", "nil:nil"},
    {"call.tool", "nil:nil"},
    {"call.operation", "nil:nil"},
    {"call.resource_id", "nil:nil"},
    {"call.resource", "nil:nil"},
    {"call.args", "userdata"},
    {"#call.args", "number:0"},
    {"call.args.amount", "nil:nil"},
    {"call.args[1]", "nil:nil"},
    {"next_pair(call.args)", "nil:nil"},
    {"call.input", "nil:nil"},
    {"call.output", "nil:nil"},
    {"call.chunk", "nil:nil"},
    {"call.tokens", "userdata"},
    {"call.tokens.input", "number:0"},
    {"call.tokens.output", "number:0"},
    {"call.tokens.cache_read", "number:0"},
    {"call.tokens.cache_write", "number:0"},
    {"call.tokens.reasoning", "number:0"},
    {"call.run", "userdata"},
    {"call.run.id", "nil:nil"},
    {"call.run.step", "number:0"},
    {"call.run.step_index", "number:0"},
    {"call.run.steps", "number:0"},
    {"call.run.tool_calls", "number:0"},
    {"call.run.thread_id", "nil:nil"},
    {"call.run.trace_id", "nil:nil"},
    {"call.run_id", "nil:nil"},
    {"call.thread_id", "nil:nil"},
    {"call.trace_id", "nil:nil"},
    {"call.step_index", "number:0"},
    {"call.step", "number:0"},
    {"call.run_steps", "number:0"},
    {"call.run_tool_calls", "number:0"},
    {"call.risk", "nil:nil"},
    {"call.risk_level", "nil:nil"},
    {"call.attributes", "userdata"},
    {"call.attributes.channel", "nil:nil"},
    {"call.no_such_field", "nil:nil"},
    {"call[1]", "nil:nil"},
    {"next_pair(call)", "string:hook"},
    {"text.text", "string:"},
    {"text.kind", "string:input"},
};

std::string PolicyReading(const std::vector<std::string>& expressions) {
  std::string lines;
  for (const std::string& e : expressions) {
    lines += fmt::format("    out[#out + 1] = describe({})\n", e);
  }
  return fmt::format(R"(
local function describe(v)
  local t = type(v)
  if t == "userdata" or t == "table" then return t end
  return t .. ":" .. tostring(v)
end
local function next_pair(view)
  for k, v in pairs(view) do return k end
  return nil
end
return {{
  id = "fields",
  before_tool = function(call, text)
    local out = {{}}
{}    return deny(table.concat(out, "\n"))
  end,
}}
)",
                     lines);
}

TEST(CallFields, EveryAbsentFieldHasItsDocumentedTypeAndValue) {
  std::vector<std::string> expressions;
  for (const auto& [expr, _] : kAbsent) expressions.emplace_back(expr);
  auto e = PolicyEngine::FromSources(Sources{{"fields.lua", PolicyReading(expressions)}});
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  CallInfo call;  // nothing set
  call.hook = Hook::kBeforeTool;
  Decision d = (*e)->Evaluate(call);
  ASSERT_TRUE(d.errors.empty()) << d.errors[0].message;
  ASSERT_EQ(d.reasons.size(), 1u);
  std::istringstream lines(d.reasons[0].message);
  std::string line;
  for (const auto& [expr, expected] : kAbsent) {
    ASSERT_TRUE(std::getline(lines, line)) << expr;
    EXPECT_EQ(line, expected) << expr;
  }
}

TEST(CallFields, ArgumentlessCallRunsTheDocumentedArgsPattern) {
  // Before, call.args was nil without arguments and this policy failed
  // closed on every such call.
  auto e = PolicyEngine::FromSources(Sources{{"refunds.lua", R"(
return {
  id = "big-refunds",
  before_tool = function(call)
    if (call.args.amount or 0) > 100 then return require_approval("big refund") end
  end,
})"}});
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  CallInfo call;
  call.hook = Hook::kBeforeTool;
  call.tool = "refund";
  Decision d = (*e)->Evaluate(call);
  EXPECT_EQ(d.effect, Effect::kAllow);
  EXPECT_TRUE(d.errors.empty()) << d.errors[0].message;
  call.args = Value(Value::Object{{"amount", Value(int64_t{250})}});
  EXPECT_EQ((*e)->Evaluate(call).effect, Effect::kRequireApproval);
}

TEST(CallFields, EmptyArgsViewIsReadOnlyAndGoesStaleWithItsCall) {
  auto e = PolicyEngine::FromSources(Sources{
      {"w.lua", "return { id = 'w', before_tool = function(call) call.args.x = 1 end }"},
      {"k.lua", R"(
local kept
return {
  id = "k",
  before_tool = function(call)
    if kept == nil then kept = call.args; return nil end
    return deny(tostring(kept.x))
  end,
})"}});
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  CallInfo call;
  call.hook = Hook::kBeforeTool;
  Decision first = (*e)->Evaluate(call);
  ASSERT_EQ(first.errors.size(), 1u);
  EXPECT_EQ(first.errors[0].policy_id, "w");
  EXPECT_NE(first.errors[0].message.find("read-only"), std::string::npos)
      << first.errors[0].message;
  // The pool may hand the next call another state: evaluate until the state
  // that kept the view gets one.
  bool stale = false;
  for (int i = 0; i < 8 && !stale; ++i) {
    for (const auto& err : (*e)->Evaluate(call).errors) {
      if (err.policy_id == "k") {
        EXPECT_NE(err.message.find("after its call ended"), std::string::npos) << err.message;
        stale = true;
      }
    }
  }
  EXPECT_TRUE(stale);
}

}  // namespace
}  // namespace bastion
