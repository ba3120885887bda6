// Hostile policies: each must be stopped with a clear reason, fail closed,
// never crash, and leave the engine serving the next call.
#include <cctype>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "bastion/policy.h"

namespace bastion {
namespace {

struct HostileCase {
  const char* name;
  const char* body;          // the before_tool hook's body
  const char* error_kind;    // expected PolicyError::kind
  const char* message_part;  // expected in the error message
};

const HostileCase kCases[] = {
    {"infinite loop", "while true do end", "instruction_limit", "instruction limit exceeded"},
    {"loop in pcall", "while true do pcall(function() while true do end end) end",
     "instruction_limit", "instruction limit"},
    {"pcall swallowing the limit", "local ok repeat ok = pcall(function() for i=1,1e12 do end end) until false",
     "instruction_limit", "instruction limit"},
    // Whichever limit it reaches first (stack, memory or instructions) stops it.
    {"deep recursion", "local function f(n) return f(n + 1) + 1 end return f(1)", "*", ""},
    {"deep recursion through pcall", "local function f() return pcall(f) end return f()", "*", ""},
    {"string.rep bomb", "local s = string.rep('x', 1 << 30) return deny(s)", "memory_limit",
     "not enough memory"},
    {"doubling strings", "local s = 'x' while true do s = s .. s end", "memory_limit",
     "not enough memory"},
    {"table growth", "local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 1000) .. i end",
     "memory_limit", "not enough memory"},
    {"io", "return io.open('/etc/passwd')", "runtime", "io"},
    {"os.execute", "return os.execute('true')", "runtime", "execute"},
    {"os.exit", "os.exit(1)", "runtime", "exit"},
    {"debug", "return debug.getinfo(1)", "runtime", "debug"},
    {"require", "return require('os')", "runtime", "require"},
    {"load", "return load('return 1')()", "runtime", "load"},
    {"loadstring", "return loadstring('return 1')()", "runtime", "loadstring"},
    {"dofile", "return dofile('/etc/passwd')", "runtime", "dofile"},
    {"string.dump", "return string.dump(function() end)", "runtime", "dump"},
    {"collectgarbage", "collectgarbage('stop')", "runtime", "collectgarbage"},
    {"package", "return package.loaded", "runtime", "package"},
    {"global write at call time", "leaked = 1", "runtime", "read-only"},
    {"library write", "string.upper = nil", "runtime", "read-only"},
    {"library write via string metatable", "getmetatable('').__index.upper = nil", "runtime",
     "index"},
    {"metatable of the call", "setmetatable(call, {})", "runtime", "table expected"},
    {"write into the call", "call.tool = 'other'", "runtime", "read-only"},
    {"replace env metatable", "setmetatable(_ENV, nil)", "runtime", "protected metatable"},
    {"__gc finalizer", "setmetatable({}, {__gc = function() while true do end end})", "runtime",
     "__gc"},
    {"error with table", "error({})", "runtime", "error object is a table"},
    {"error with __tostring", "error(setmetatable({}, {__tostring = function() while true do "
                              "end end}))",
     "runtime", "error object is a table"},
    {"error inside error handler", "xpcall(function() error('a') end, function() error('b') end)"
                                   " error('after')",
     "runtime", "after"},
    {"handler loops forever", "xpcall(function() error('a') end, function() while true do end end)",
     "instruction_limit", "instruction limit"},
    {"coroutine", "return coroutine.wrap(function() end)", "runtime", "coroutine"},
    {"view kept past its call", "stash_view = call", "runtime", "read-only"},
    // A limit hit inside pcall stays hit: whatever the policy does next (return
    // a decision, raise something else, call a handler), the evaluation fails.
    {"memory limit caught by pcall", "pcall(string.rep, 'x', 1 << 30) return allow('fine')",
     "memory_limit", "not enough memory"},
    {"pii.find result caught by pcall",
     "local ok, hits = pcall(pii.find, string.rep('card 4111 1111 1111 1111 ', 20000)) "
     "if ok then return redact(hits) end",
     "memory_limit", "not enough memory"},
    {"memory limit then error with a table", "pcall(string.rep, 'x', 1 << 30) error({})",
     "memory_limit", "not enough memory"},
    {"memory limit then a loop without allocations",
     "pcall(string.rep, 'x', 1 << 30) local n = 0 for i = 1, 10 do n = n + i end return nil",
     "memory_limit", "not enough memory"},
    {"memory limit in xpcall with a handler",
     "xpcall(string.rep, function(e) return 'handled' end, 'x', 1 << 30) return allow()",
     "memory_limit", "not enough memory"},
    {"memory limit in xpcall with an allocating handler",
     "xpcall(string.rep, function(e) local t = {} for i = 1, 100 do t[i] = {i} end return t end, "
     "'x', 1 << 30) return allow()",
     "memory_limit", "not enough memory"},
    {"memory limit in nested pcalls",
     "pcall(pcall, pcall, string.rep, 'x', 1 << 30) return allow()", "memory_limit",
     "not enough memory"},
    {"memory limit then a to-be-closed variable",
     "do local c <close> = setmetatable({}, {__close = function() end}) "
     "pcall(string.rep, 'x', 1 << 30) end return allow()",
     "memory_limit", "not enough memory"},
    {"table growth caught by pcall",
     "pcall(function() local t = {} for i = 1, 1e9 do t[i] = i end end) return allow()",
     "memory_limit", "not enough memory"},
    {"coroutine to escape the limits",
     "local co = coroutine.wrap(function() pcall(string.rep, 'x', 1 << 30) end) co() "
     "return allow()",
     "runtime", "coroutine"},
    {"instruction limit then error with a table",
     "pcall(function() while true do end end) error({})", "instruction_limit",
     "instruction limit exceeded"},
    {"instruction limit then return", "pcall(function() while true do end end) return allow()",
     "instruction_limit", "instruction limit exceeded"},
    // Pattern matching is charged to the instruction budget: the attacker's
    // text cannot make a match run past it.
    {"backtracking pattern", "return string.find(string.rep('x = ', 500), '(.-)%s*=%s*(.-)%s*;')",
     "instruction_limit", "instruction limit exceeded"},
    {"nested lazy repetitions", "return string.find(string.rep('a', 100000), '.-.-.-.-x')",
     "instruction_limit", "instruction limit exceeded"},
    {"balance over many parentheses", "return string.find(string.rep('(', 500000), '%b()')",
     "instruction_limit", "instruction limit exceeded"},
    {"pattern as a string method", "return (string.rep('a', 100000)):match('.-.-.-.-x')",
     "instruction_limit", "instruction limit exceeded"},
    {"pattern through the string metatable",
     "local find = getmetatable('').__index.find return find(string.rep('a', 100000), '.-.-.-x')",
     "runtime", "index"},
    {"gsub", "return (string.gsub(string.rep('a', 50000), '.-.-b', ''))", "instruction_limit",
     "instruction limit exceeded"},
    {"gmatch", "for m in string.gmatch(string.rep('a', 50000), '.-.-b') do end",
     "instruction_limit", "instruction limit exceeded"},
    {"pattern limit caught by pcall",
     "pcall(string.find, string.rep('a', 100000), '.-.-.-.-x') return allow()",
     "instruction_limit", "instruction limit exceeded"},
    {"pattern errors caught by pcall after long matches",
     "local s = string.rep('a', 1000) .. 'x' "
     "for i = 1, 1000 do pcall(string.find, s, '.-x%') end return allow()",
     "instruction_limit", "instruction limit exceeded"},
    {"gsub function errors caught by pcall after long matches",
     "local s = string.rep('a', 1000) .. 'x' "
     "for i = 1, 1000 do pcall(string.gsub, s, '.-x', error) end return allow()",
     "instruction_limit", "instruction limit exceeded"},
    {"gsub with a function that loops",
     "return string.gsub('abc', '%a', function() while true do end end)", "instruction_limit",
     "instruction limit exceeded"},
    // Counter state lives outside Lua: it is bounded, and charged.
    {"counter key too long", "return counter.add(string.rep('k', 1024), 60)", "counter_limit",
     "limits.counter_key_bytes"},
    {"counter key bound caught by pcall",
     "pcall(counter.add, string.rep('k', 1024), 60) return allow()", "counter_limit",
     "limits.counter_key_bytes"},
    // A window that rounds to no time at all must not reach a division.
    {"counter window of no time", "return counter.add('k', 1e-10)", "runtime",
     "counter window must be between 1 ms and 366 days"},
};

class HostilePolicy : public ::testing::TestWithParam<HostileCase> {};

TEST_P(HostilePolicy, IsStoppedAndTheEngineKeepsServing) {
  {
    const HostileCase& c = GetParam();
    const std::string source = fmt::format(
        "return {{ id = 'hostile', before_tool = function(call) {} end }}", c.body);
    auto e = PolicyEngine::FromSources(
        {{"hostile.lua", source},
         {"z_ok.lua", "return { id = 'ok', before_tool = function(call) "
                      "if call.tool == 'bad' then return deny('bad tool') end end }"}},
        "limits:\n  instructions: 200000\n  memory_kb: 1024\n");
    ASSERT_TRUE(e.ok()) << c.name << ": " << e.status().ToString();
    CallInfo call;
    call.hook = Hook::kBeforeTool;
    call.tool = "good";
    for (int round = 0; round < 2; ++round) {  // a second call on the same state
      Decision d = (*e)->Evaluate(call);
      EXPECT_EQ(d.effect, Effect::kDeny) << c.name;
      ASSERT_EQ(d.errors.size(), 1u) << c.name;
      if (std::string_view(c.error_kind) != "*") {
        EXPECT_EQ(d.errors[0].kind, c.error_kind) << c.name << ": " << d.errors[0].message;
      }
      EXPECT_NE(d.errors[0].message.find(c.message_part), std::string::npos)
          << c.name << ": " << d.errors[0].message;
      EXPECT_EQ(d.errors[0].policy_id, "hostile") << c.name;
      // The well-behaved policy still ran and saw the call.
      ASSERT_EQ(d.explain.size(), 2u) << c.name;
      EXPECT_TRUE(d.explain[1].applied) << c.name;
      EXPECT_FALSE(d.explain[1].failed) << c.name;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, HostilePolicy, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<HostileCase>& info) {
                           std::string name;
                           for (char ch : std::string(info.param.name)) {
                             name += std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
                           }
                           return name;
                         });

TEST(HostilePolicyState, AViewStashedAtLoadOrInAnUpvalueFailsCleanlyLater) {
  auto e = PolicyEngine::FromSources({{"s.lua", R"(
    local kept
    return { id = 's', before_tool = function(call)
      if kept == nil then kept = call.args; return nil end
      return deny(tostring(kept.x))
    end })"}});
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  CallInfo c;
  c.hook = Hook::kBeforeTool;
  c.args = Value(Value::Object{{"x", Value("first")}});
  EXPECT_EQ((*e)->Evaluate(c).effect, Effect::kAllow);
  c.args = Value(Value::Object{{"x", Value("second")}});
  Decision d = (*e)->Evaluate(c);
  EXPECT_EQ(d.effect, Effect::kDeny);
  ASSERT_EQ(d.errors.size(), 1u);
  EXPECT_NE(d.errors[0].message.find("used after its call ended"), std::string::npos)
      << d.errors[0].message;
}

TEST(HostilePolicyState, LimitMessagesNameTheLimitAndWhereItWasHit) {
  auto e = PolicyEngine::FromSources(
      {{"loop.lua", "return { id = 'loop', before_tool = function(call)\n"
                    "  if call.tool == 'match' then\n"
                    "    return string.find(string.rep('a', 100000), '.-.-.-x')\n"
                    "  end\n"
                    "  if call.tool == 'loop' then while true do end end\n"
                    "end }\n"},
       {"a_long_file_name_for_the_first_message.lua",
        "return { before_tool = function(call)\n"
        "  if call.tool == 'long' then while true do end end\n"
        "end }\n"}},
      "limits:\n  instructions: 100000\n");
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  CallInfo c;
  c.hook = Hook::kBeforeTool;
  const std::pair<const char*, const char*> cases[] = {
      {"long", "a_long_file_name_for_the_first_message.lua:2"},
      {"loop", "loop.lua:5"},
      {"match", "loop.lua:3"},
  };
  for (const auto& [tool, where] : cases) {
    c.tool = tool;
    Decision d = (*e)->Evaluate(c);
    ASSERT_EQ(d.errors.size(), 1u) << tool;
    EXPECT_EQ(d.errors[0].kind, "instruction_limit") << tool;
    EXPECT_EQ(d.errors[0].message,
              fmt::format("instruction limit exceeded (100000 per evaluation) at {}", where))
        << tool;
  }
}

TEST(HostilePolicyState, MemoryIsReclaimedBetweenCalls) {
  // Each call allocates close to the limit; garbage from earlier calls must
  // not count against later ones.
  auto e = PolicyEngine::FromSources(
      {{"m.lua", "return { id = 'm', before_tool = function(call) "
                 "local t = {} for i = 1, 20000 do t[i] = i end return nil end }"}},
      "limits:\n  memory_kb: 1024\n");
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  CallInfo c;
  c.hook = Hook::kBeforeTool;
  for (int i = 0; i < 200; ++i) {
    Decision d = (*e)->Evaluate(c);
    ASSERT_EQ(d.effect, Effect::kAllow) << "call " << i << ": "
                                        << (d.errors.empty() ? "" : d.errors[0].message);
  }
}

}  // namespace
}  // namespace bastion
