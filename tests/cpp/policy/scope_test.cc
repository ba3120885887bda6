// A policy's scope is checked when the bundle loads: a glob that cannot match,
// or a value the scope cannot read, is a load error naming the file, the line
// where the source spells it, the policy and the field, never a policy that
// silently stops running.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "bastion/policy.h"
#include "policy/bundle.h"

namespace bastion {
namespace {

using Sources = std::vector<std::pair<std::string, std::string>>;

std::string Load(const std::string& file, const std::string& code,
                 const std::string& bundle_yaml = "") {
  auto e = PolicyEngine::FromSources(Sources{{file, code}}, bundle_yaml);
  return e.ok() ? "" : e.status().message();
}

TEST(PolicyScope, MalformedGlobIsALoadErrorWithFileLinePolicyAndField) {
  const std::string code =
      "return {\n"
      "  id = 'no-deletes',\n"
      "  scope = {\n"
      "    tools = {'lookup', 'delete_[*'},\n"
      "  },\n"
      "  before_tool = function(call) return deny('no deletes') end,\n"
      "}\n";
  const std::string error = Load("no_deletes.lua", code);
  EXPECT_NE(error.find("no_deletes.lua:4: policy 'no-deletes': scope.tools[2]: invalid glob "
                       "'delete_[*'"),
            std::string::npos)
      << error;
}

TEST(PolicyScope, BadValuesAreLoadErrors) {
  struct Case {
    const char* scope;  // the Lua expression of the scope
    const char* expected;
  } cases[] = {
      {"{ agents = 'support-[' }", "p.lua:1: policy 'p': scope.agents: invalid glob 'support-['"},
      {"{ tools = {'ok', 'a\\\\'} }", "scope.tools[2]: invalid glob"},
      {"{ models = {'[z-a]*'} }", "scope.models[1]: invalid glob '[z-a]*'"},
      {"{ tools = '' }", "policy 'p': scope.tools: empty glob"},
      {"{ tools = {'a', ''} }", "policy 'p': scope.tools[2]: empty glob"},
      {"{ tools = 5 }", "scope.tools: expected a glob or a list of globs, found a number"},
      {"{ tools = true }", "scope.tools: expected a glob or a list of globs, found a boolean"},
      {"{ tools = {'a', 7} }", "scope.tools[2]: expected a glob, found a number"},
      {"{ tools = {{'a'}} }", "scope.tools[1]: expected a glob, found a table"},
      {"{ tools = {} }", "scope.tools: empty list (omit 'tools' to leave it unrestricted)"},
      {"{ tools = {name = 'a'} }", "scope.tools: expected a list of globs, found a table that is "
                                   "not a list"},
      {"{ tools = {'a', x = 'b'} }", "found a table that is not a list"},
      {"{ tool = {'a'} }", "policy 'p': unknown scope 'tool' (expected agents, roles, tools, "
                           "models, tenants)"},
      {"{ 'tools' }", "policy 'p': unknown scope a number key"},
      {"'tools'", "policy 'p': scope: expected a table, found a string"},
      {"7", "policy 'p': scope: expected a table, found a number"},
  };
  for (const Case& c : cases) {
    const std::string code = std::string("return { id = 'p', scope = ") + c.scope +
                             ", before_tool = function() return deny('x') end }";
    const std::string error = Load("p.lua", code);
    EXPECT_NE(error.find(c.expected), std::string::npos)
        << "scope = " << c.scope << "\n  expected: " << c.expected << "\n  got: " << error;
  }
}

TEST(PolicyScope, ErrorNamesTheDefaultIdAndTheScopeLineForGlobsFromData) {
  const std::string code =
      "-- tools from the bundle's data\n"
      "return {\n"
      "  scope = { tools = data.tools },\n"
      "  before_tool = function() return deny('x') end,\n"
      "}\n";
  const std::string error = Load("from_data.lua", code, "data:\n  tools: [ok, 'bad[']\n");
  EXPECT_NE(error.find("from_data.lua:3: policy 'from_data': scope.tools[2]: invalid glob "
                       "'bad['"),
            std::string::npos)
      << error;
  const std::string empty = Load("from_data.lua", code, "data:\n  tools: []\n");
  EXPECT_NE(empty.find("scope.tools: empty list"), std::string::npos) << empty;
}

TEST(PolicyScope, ValidScopesLoadAndDecide) {
  struct Case {
    const char* scope;
    const char* bundle_yaml;
  } cases[] = {
      {"{ tools = 'refund' }", ""},
      {"{ tools = {'lookup', 'ref*'}, agents = {'support-*'} }", ""},
      {"{ tools = data.tools }", "data:\n  tools: [refund]\n"},
      // The whole scope from data: before, its dimensions were never read.
      {"data.scope", "data:\n  scope: {tools: [refund], roles: [support]}\n"},
  };
  for (const Case& c : cases) {
    const std::string code = std::string("return { id = 'p', scope = ") + c.scope +
                             ", before_tool = function() return deny('scoped') end }";
    auto e = PolicyEngine::FromSources(Sources{{"p.lua", code}}, c.bundle_yaml);
    ASSERT_TRUE(e.ok()) << c.scope << ": " << e.status().ToString();
    CallInfo call;
    call.hook = Hook::kBeforeTool;
    call.agent_id = "support-bot";
    call.agent_role = "support";
    call.tool = "refund";
    EXPECT_EQ((*e)->Evaluate(call).effect, Effect::kDeny) << c.scope;
    call.tool = "delete_user";
    EXPECT_EQ((*e)->Evaluate(call).effect, Effect::kAllow) << c.scope;
  }
}

TEST(PolicyScope, ScopeLineFindsTheScopeAndTheGlob) {
  const std::string code =
      "local scoped = 1\n"
      "local t = { x = 1 }\n"
      "t.scope = 2\n"
      "if scope == nil then end\n"
      "return {\n"
      "  scope = {\n"
      "    tools = {\"a[\"},\n"
      "  },\n"
      "}\n";
  EXPECT_EQ(policy::ScopeLine(code, ""), 6);
  EXPECT_EQ(policy::ScopeLine(code, "a["), 7);
  EXPECT_EQ(policy::ScopeLine(code, "not there"), 6);
  EXPECT_EQ(policy::ScopeLine("return { before_tool = f }", ""), 0);
}

}  // namespace
}  // namespace bastion
