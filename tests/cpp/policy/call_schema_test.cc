// The call schema (bastion/call.h): every field of CallInfo is in kCallFields
// once, its names are unique, its record fields exist, and the Lua view and
// RecordFromCall read every field through it.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "bastion/call.h"
#include "bastion/policy.h"

namespace bastion {
namespace {

// Counts the members of an aggregate: the most initializers `T{...}` takes.
struct AnyMember {
  template <class T>
  operator T() const;  // never defined: only used in unevaluated contexts
};
template <class T, class... Members>
constexpr int MemberCount() {
  if constexpr (requires { T{Members{}..., AnyMember{}}; }) {
    return MemberCount<T, Members..., AnyMember>();
  } else {
    return sizeof...(Members);
  }
}

TEST(CallSchema, EveryCallInfoMemberHasExactlyOneField) {
  EXPECT_EQ(MemberCount<CallInfo>(), kCallFieldCount)
      << "a member of CallInfo is missing from kCallFields (or listed twice)";
  // Member pointers compare only for equality.
  std::vector<std::string CallInfo::*> texts;
  std::vector<int64_t CallInfo::*> counts;
  std::map<CallFieldType, int> others;
  for (const CallField& f : kCallFields) {
    switch (f.type) {
      case CallFieldType::kString:
        ASSERT_NE(f.text, nullptr) << f.name;
        EXPECT_EQ(std::count(texts.begin(), texts.end(), f.text), 0) << f.name << " repeats a member";
        texts.push_back(f.text);
        break;
      case CallFieldType::kCount:
        ASSERT_NE(f.count, nullptr) << f.name;
        EXPECT_EQ(std::count(counts.begin(), counts.end(), f.count), 0)
            << f.name << " repeats a member";
        counts.push_back(f.count);
        break;
      default:
        EXPECT_EQ(++others[f.type], 1) << f.name << " repeats a member";
        EXPECT_EQ(f.text, nullptr) << f.name;
        EXPECT_EQ(f.count, nullptr) << f.name;
    }
  }
}

TEST(CallSchema, NamesAndAliasesAreUniqueAndAliasesNameFields) {
  std::set<std::string_view> names;
  for (const CallField& f : kCallFields) {
    EXPECT_TRUE(names.insert(f.name).second) << "duplicate name " << f.name;
    EXPECT_EQ(FindCallField(f.name), &f) << f.name;
  }
  for (const CallFieldAlias& a : kCallFieldAliases) {
    EXPECT_TRUE(names.insert(a.alias).second) << "alias " << a.alias << " is also a name";
    const CallField* f = FindCallField(a.alias);
    ASSERT_NE(f, nullptr) << a.alias;
    EXPECT_EQ(f->name, a.name) << a.alias;
  }
  EXPECT_EQ(FindCallField("no_such_field"), nullptr);
  // The Lua view finds names by their interned strings: Lua interns strings
  // of up to 40 bytes (LUAI_MAXSHORTLEN).
  for (std::string_view name : names) EXPECT_LE(name.size(), 40u) << name;
  std::set<std::string_view> tokens;
  for (const TokenField& t : kTokenFields) EXPECT_TRUE(tokens.insert(t.name).second) << t.name;
}

TEST(CallSchema, RecordFieldsExistAreDistinctAndAgreeOnPersonalData) {
  std::set<Field> used;
  for (const CallField& f : kCallFields) {
    if (!f.record) continue;
    EXPECT_TRUE(used.insert(*f.record).second) << f.name;
    // The record field has the call field's name (one name per concept).
    EXPECT_EQ(FieldName(*f.record), f.name);
    EXPECT_EQ(IsPersonalField(*f.record), f.personal) << f.name;
    switch (f.type) {
      case CallFieldType::kString:
        EXPECT_EQ(TypeOf(*f.record), FieldType::kString) << f.name;
        break;
      case CallFieldType::kCount:
        EXPECT_EQ(TypeOf(*f.record), FieldType::kInt) << f.name;
        break;
      case CallFieldType::kAttributes:
        EXPECT_EQ(TypeOf(*f.record), FieldType::kAttributes) << f.name;
        break;
      default:
        ADD_FAILURE() << f.name << " cannot become a record field";
    }
  }
  for (const TokenField& t : kTokenFields) {
    EXPECT_TRUE(used.insert(t.record).second) << t.name;
    EXPECT_EQ(FieldName(t.record), std::string(t.name) + "_tokens");
    EXPECT_EQ(TypeOf(t.record), FieldType::kUint) << t.name;
  }
}

// A call with every field set to a value of its own.
CallInfo EveryFieldSet() {
  CallInfo c;
  c.hook = Hook::kAfterTool;
  int64_t n = 1;
  for (const CallField& f : kCallFields) {
    if (f.type == CallFieldType::kString) c.*f.text = fmt::format("{}-value", f.name);
    if (f.type == CallFieldType::kCount) c.*f.count = 10 * n++;
  }
  for (const TokenField& t : kTokenFields) c.tokens.*t.member = 100 * n++;
  c.args = Value(Value::Object{{"k", Value("v")}});
  c.attributes = {{"channel", "web"}, {"region", "eu"}, {"channel", "email"}};
  return c;
}

TEST(CallSchema, RecordFromCallCopiesEveryRecordedField) {
  const CallInfo c = EveryFieldSet();
  Record r = RecordFromCall(c, "tool_call");
  EXPECT_EQ(r.action, "tool_call");
  for (const CallField& f : kCallFields) {
    if (f.type == CallFieldType::kString) {
      const std::string* got = f.record ? StringField(r, *f.record) : nullptr;
      if (f.record) EXPECT_EQ(*got, c.*f.text) << f.name;
    }
  }
  EXPECT_EQ(r.step_index, c.step_index);
  for (const TokenField& t : kTokenFields) EXPECT_EQ(*UintField(r, t.record), c.tokens.*t.member);
  // Attribute keys are unique in a record: the last value of a key wins.
  const std::vector<std::pair<std::string, std::string>> attributes = {{"channel", "email"},
                                                                       {"region", "eu"}};
  EXPECT_EQ(r.attributes, attributes);
  // Content is not copied: the guard records summaries of it.
  EXPECT_TRUE(r.input_summary.empty());
  EXPECT_TRUE(r.output_summary.empty());
  EXPECT_TRUE(ValidateRecord(r).ok());
}

TEST(CallSchema, RecordFromCallLeavesAnUnsetStepUnset) {
  CallInfo c;
  c.agent_id = "a";
  EXPECT_FALSE(RecordFromCall(c, "model_call").step_index.has_value());
}

// What a policy reads for each expression, one line each ("type:value").
std::vector<std::string> Read(const CallInfo& call, const std::vector<std::string>& expressions) {
  std::string lines;
  for (const std::string& e : expressions) {
    lines += fmt::format("    out[#out + 1] = type({0}) .. ':' .. tostring({0})\n", e);
  }
  auto e = PolicyEngine::FromSources({{"read.lua", fmt::format(R"(
return {{
  id = "read",
  after_tool = function(call)
    local out = {{}}
{}    return deny(table.concat(out, "\n"))
  end,
}}
)",
                                                                  lines)}});
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  if (!e.ok()) return {};
  Decision d = (*e)->Evaluate(call);
  EXPECT_TRUE(d.errors.empty()) << d.errors[0].message;
  if (d.reasons.size() != 1) return {};
  std::vector<std::string> out;
  std::istringstream in(d.reasons[0].message);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

TEST(CallSchema, LuaViewReadsEveryStringAndCountFieldByItsName) {
  const CallInfo c = EveryFieldSet();
  std::vector<std::string> expressions, expected;
  for (const CallField& f : kCallFields) {
    if (f.type == CallFieldType::kString) {
      expressions.push_back(fmt::format("call.{}", f.name));
      expected.push_back(fmt::format("string:{}", c.*f.text));
    } else if (f.type == CallFieldType::kCount) {
      expressions.push_back(fmt::format("call.{}", f.name));
      expected.push_back(fmt::format("number:{}", c.*f.count));
    }
  }
  for (const TokenField& t : kTokenFields) {
    expressions.push_back(fmt::format("call.tokens.{}", t.name));
    expected.push_back(fmt::format("number:{}", c.tokens.*t.member));
  }
  expressions.push_back("call.hook");
  expected.push_back("string:after_tool");
  EXPECT_EQ(Read(c, expressions), expected);
}

TEST(CallSchema, LuaAliasesReadTheSameAsTheirNames) {
  const CallInfo c = EveryFieldSet();
  std::vector<std::string> aliases, names;
  for (const CallFieldAlias& a : kCallFieldAliases) {
    aliases.push_back(fmt::format("call.{}", a.alias));
    names.push_back(fmt::format("call.{}", a.name));
  }
  // The grouped views read the same fields.
  const std::pair<const char*, const char*> grouped[] = {
      {"call.agent.id", "call.agent_id"},     {"call.agent.role", "call.agent_role"},
      {"call.agent.parent", "call.parent_agent_id"}, {"call.user.id", "call.user_id"},
      {"call.run.id", "call.run_id"},         {"call.run.step", "call.step_index"},
      {"call.run.step_index", "call.step_index"}, {"call.run.steps", "call.run_steps"},
      {"call.run.tool_calls", "call.run_tool_calls"}, {"call.run.thread_id", "call.thread_id"},
      {"call.run.trace_id", "call.trace_id"},
  };
  for (const auto& [view, name] : grouped) {
    aliases.push_back(view);
    names.push_back(name);
  }
  const std::vector<std::string> by_alias = Read(c, aliases);
  ASSERT_EQ(by_alias.size(), aliases.size());
  EXPECT_EQ(by_alias, Read(c, names));
  for (size_t i = 0; i < by_alias.size(); ++i) {
    EXPECT_NE(by_alias[i], "nil:nil") << aliases[i];
  }
}

TEST(CallSchema, PairsOverTheCallYieldsTheSetFieldsInTableOrder) {
  auto e = PolicyEngine::FromSources({{"pairs.lua", R"(
return {
  id = "pairs",
  before_tool = function(call)
    local names = {}
    for k, v in pairs(call) do
      if type(v) ~= "userdata" and call[k] ~= v then error("pairs and index disagree on " .. k) end
      names[#names + 1] = k
    end
    return deny(table.concat(names, ","))
  end,
})"}});
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  CallInfo c;
  c.hook = Hook::kBeforeTool;
  c.tool = "search";
  c.resource_id = "kb/1";
  c.step_index = 2;
  Decision d = (*e)->Evaluate(c);
  ASSERT_TRUE(d.errors.empty()) << d.errors[0].message;
  ASSERT_EQ(d.reasons.size(), 1u);
  // Views (args, tokens, attributes) are always present; unset strings are not.
  std::string expected;
  for (const CallField& f : kCallFields) {
    const bool set = f.type != CallFieldType::kString || !(c.*f.text).empty();
    if (set) expected += (expected.empty() ? "" : ",") + std::string(f.name);
  }
  EXPECT_EQ(d.reasons[0].message, expected);
}

}  // namespace
}  // namespace bastion
