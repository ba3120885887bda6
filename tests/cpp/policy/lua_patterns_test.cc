// The step-counted pattern functions against the standard library's: every
// case runs through both, in one plain Lua state, and must give the same
// results (values, types, and error messages).
#include "policy/lua_patterns.h"

#include <chrono>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <lua.hpp>

namespace bastion::policy {
namespace {

int64_t g_steps = 0;
int64_t g_step_limit = INT64_MAX;

void CountSteps(lua_State* L, int64_t steps) {
  g_steps += steps;
  if (g_steps > g_step_limit) luaL_error(L, "step limit");
}

// A plain state with the standard library, and ours as the global `ours`.
class PatternState {
 public:
  PatternState() {
    L_ = luaL_newstate();
    luaL_openlibs(L_);
    lua_newtable(L_);
    InstallPatternFunctions(L_, -1, CountSteps);
    lua_setglobal(L_, "ours");
    g_steps = 0;
    g_step_limit = INT64_MAX;
  }
  ~PatternState() { lua_close(L_); }
  lua_State* L() const { return L_; }

  // Runs `code`; returns its string result, or the error.
  std::string Run(const std::string& code) {
    if (luaL_loadstring(L_, code.c_str()) != LUA_OK || lua_pcall(L_, 0, 1, 0) != LUA_OK) {
      std::string err = lua_tostring(L_, -1);
      lua_pop(L_, 1);
      return "error: " + err;
    }
    std::string out = lua_isstring(L_, -1) ? lua_tostring(L_, -1) : "";
    lua_pop(L_, 1);
    return out;
  }

 private:
  lua_State* L_;
};

// The comparison driver: `check(name, ...)` calls string[name] and ours[name]
// with the same arguments and records any difference in `mismatches`.
constexpr const char* kDriver = R"lua(
mismatches, checked = {}, 0

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) == "function" or type(v) == "table" then return type(v) end
  return math.type(v) and (math.type(v) .. ":" .. tostring(v)) or tostring(v)
end

-- The function's name in an argument error depends on how it was reached.
local function normalize(msg)
  msg = tostring(msg)
  return (msg:gsub("to '[^']*'", "to '?'"))
end

local function results(lib, name, ...)
  local f = lib[name]
  local out = {}
  local r
  if name == "gmatch" then
    r = table.pack(pcall(function(...)
      local rows = {}
      local it = f(...)
      for _ = 1, 200 do
        local got = table.pack(it())
        if got[1] == nil then break end
        local row = {}
        for i = 1, got.n do row[i] = show(got[i]) end
        rows[#rows + 1] = table.concat(row, ",")
      end
      return table.concat(rows, ";")
    end, ...))
  else
    r = table.pack(pcall(f, ...))
  end
  if not r[1] then return "error: " .. normalize(r[2]) end
  for i = 2, r.n do out[#out + 1] = show(r[i]) end
  return table.concat(out, " ")
end

function check(name, ...)
  checked = checked + 1
  local want = results(string, name, ...)
  local got = results(ours, name, ...)
  if want ~= got then
    local args = table.pack(...)
    local shown = {}
    for i = 1, args.n do shown[i] = show(args[i]) end
    mismatches[#mismatches + 1] = string.format("%s(%s): stock %s, ours %s", name,
      table.concat(shown, ", "), want, got)
  end
end

function report()
  local n = #mismatches
  local head = {}
  for i = 1, math.min(n, 25) do head[i] = mismatches[i] end
  return string.format("%d of %d differ\n%s", n, checked, table.concat(head, "\n"))
end
)lua";

// Hand-picked cases: every feature of §6.4.1, its corners, and its errors.
constexpr const char* kCorpus = R"lua(
local subjects = {
  "", "a", "hello world", "  key = value ; other=2;", "f(a(b)c)d(e", "THE (quick) brown fox",
  "abc123def456", "x^y$z", "a.b.c", "%%a%b", "\0a\0b", "aaa", "ab]cd[ef", "tab\tnl\nend",
  "caf\195\169 na\195\175ve", "1-2-3", "[[nested]]", "a,b,,c", "  ", "key=val",
}
local patterns = {
  "", "a", "o", "l+", "l*", "l-", "l?", "x*", ".", ".-", ".*", "^h", "^", "$", "d$", "o$",
  "^hello", "world$", "^$", "%a+", "%A+", "%d+", "%D", "%l+", "%u+", "%s+", "%S+", "%w+",
  "%W", "%p", "%P+", "%x+", "%c", "%g+", "%G", "%z", "%.", "%%", "%]", "[%]]", "[]]", "[^]]+",
  "[a-c]+", "[^a-c]+", "[%a_][%w_]*", "[%d%.]+", "[a-]", "[-a]", "[a%-z]+", "[^%s]+", "[.]",
  "(%a+)", "(%a+) (%a+)", "()", "()a()", "(a)(b)?", "((a)(b))", "(h)(e)(l)(l)(o)",
  "%b()", "%b[]", "%b((", "%bxy", "%f[%a]%a+", "%f[%A]", "%f[%w]%w+%f[%W]", "%f[^%z]",
  "(a)%1", "(%a)%1", "(.)%1", "(a*(.)%w(%s*))", "(.-)%s*=%s*(.-)%s*;", "^(%s*)(.-)(%s*)$",
  "x^y", "a$b", "a%$", "[%a-]+", "[!-/]+", "%S-%s", "(()a)", "[^%d]", "(%d)-(%d)", "%d-%d",
  ".-b", "a.-c", "a-b", "(.)(.)(.)", "[\0]", "%z+", "\0", "[^\0]+", "a?a?a?aaa",
}
for _, s in ipairs(subjects) do
  for _, p in ipairs(patterns) do
    check("find", s, p)
    check("match", s, p)
    check("gmatch", s, p)
    check("gsub", s, p, "<%0>")
  end
  for _, init in ipairs({0, 1, 2, 5, -1, -3, -100, 100, #s, #s + 1, #s + 2}) do
    check("find", s, "%a+", init)
    check("find", s, "", init)
    check("find", s, "a", init)
    check("find", s, "a", init, true)
    check("find", s, "%a", init, true)
    check("match", s, "(%a)(%a*)", init)
    check("match", s, "()", init)
    check("gmatch", s, "%a+", init)
    check("gmatch", s, "", init)
  end
end
-- Plain finds, and patterns with no special characters.
for _, p in ipairs({"", "o w", "world", "%a", "(", "[", ".", "xyz", "hello world!", "d"}) do
  check("find", "hello world", p, 1, true)
  check("find", "hello world", p)
  check("find", "hello world", p, 3, false)
  check("find", "hello world", p, nil, true)
end
-- Replacements.
local fns = {
  function(a) return a:upper() end,
  function() return nil end,
  function() return false end,
  function(a, b) return (b or "") .. a end,
  function() return 42 end,
  function() return 1.5 end,
  function() return {} end,
  function(...) return select("#", ...) end,
}
local tables = {
  {hello = "HI", world = 7, a = false},
  {},
  setmetatable({}, {__index = function(_, k) return "<" .. tostring(k) .. ">" end}),
}
local templates = {"", "x", "%0", "%1", "%2", "[%1|%2]", "%%", "100%%", "%", "a%", "%a", "%9",
                   "%0%0", "%1%0%1"}
for _, s in ipairs({"hello world", "a=1, b=2", "", "aaa", "x(y)z"}) do
  for _, p in ipairs({"%a+", "(%a)(%a*)", "()", "(%a+)=(%d+)", "", "^%a", "o", "(o)", "x*",
                      "%b()", "()(%a)"}) do
    for _, t in ipairs(templates) do check("gsub", s, p, t) end
    for _, f in ipairs(fns) do check("gsub", s, p, f) end
    for _, t in ipairs(tables) do check("gsub", s, p, t) end
    for _, n in ipairs({0, 1, 2, -1}) do check("gsub", s, p, "<%0>", n) end
    check("gsub", s, p, 5)
    check("gsub", s, p, 2.5)
    check("gsub", s, p, true)
    check("gsub", s, p)
  end
end
-- Errors.
for _, p in ipairs({"%", "[a", "[^", "[", "(", ")", "a)", "(()", "%b", "%ba", "%f", "%fa",
                    "%1", "(a)%2", "(a%1)", "%0", "[%",
                    string.rep("(", 34) .. "a" .. string.rep(")", 34),  -- too many captures
                    string.rep("a?", 300),  -- too complex
                    string.rep("(", 40)}) do
  check("find", "a", p)
  check("match", "aaa", p)
  check("gmatch", "a", p)
  check("gsub", "a", p, "x")
end
check("find", nil, "a")
check("find", "a", nil)
check("find", "a", "a", "x")
check("find", 12345, 3)
check("match", 3.5, "%d")
check("gsub", "a", "a")
check("gsub", "a", "a", "x", "y")
check("gmatch", {}, "a")
check("find", "a", {})
-- Patterns that start with a literal character (searches skip to it).
for _, s in ipairs({"password=hunter2; password=x", "aXbXcX", "", "pppp", "p", "x=1 p"}) do
  for _, p in ipairs({"p", "password=%S+", "p+", "p%w*", "X", "X$", "pa(%a+)", "=", "p()"}) do
    for _, n in ipairs({0, 1, 2, 100}) do
      check("gsub", s, p, "<%0>", n)
      check("gsub", s, p, string.upper, n)
    end
    check("find", s, p, 2)
    check("match", s, p, -3)
    check("gmatch", s, p)
    check("gmatch", s, p, 3)
  end
end
-- A caret is no anchor in gmatch.
check("gmatch", "^a^a", "^a")
check("gsub", "hello", "^h", "j")
check("gsub", "hh", "^h", "j")
)lua";

// Random patterns over a small alphabet, against random subjects.
constexpr const char* kRandom = R"lua(
math.randomseed(20241207)
local atoms = {"a", "b", "c", ".", "%a", "%d", "%s", "%w", "%p", "%A", "%S", "[ab]", "[^a]",
  "[a-c]", "[%d_]", "[]a]", "%b()", "%bab", "%f[%w]", "%f[%W]", "(", ")", "()", "%1", "%2",
  "%.", "%%", "x", "(", ")", "$", "^", "-", "[", "%"}
local quantifiers = {"", "", "", "*", "+", "-", "?"}
local chars = {"a", "b", "c", "(", ")", " ", ".", "1", "_", "A", "%", "x", "\n", "]"}
local function pattern()
  local parts = {}
  for i = 1, math.random(1, 7) do
    local atom = atoms[math.random(#atoms)]
    parts[i] = atom .. quantifiers[math.random(#quantifiers)]
  end
  return table.concat(parts)
end
local function subject()
  local parts = {}
  for i = 1, math.random(0, 14) do parts[i] = chars[math.random(#chars)] end
  return table.concat(parts)
end
for _ = 1, 6000 do
  local s, p = subject(), pattern()
  check("find", s, p)
  check("match", s, p, math.random(-3, 4))
  check("gmatch", s, p)
  check("gsub", s, p, "[%0]")
  check("gsub", s, p, function(a) return "<" .. tostring(a) .. ">" end)
end
-- Character soup: mostly malformed patterns, and every byte where it can be.
local soup = {"%", "[", "]", "^", "-", "(", ")", "$", ".", "*", "+", "?", "a", "b", "f", "1",
              "\0", "\255", "%b", "%f"}
for _ = 1, 3000 do
  local parts = {}
  for i = 1, math.random(1, 10) do parts[i] = soup[math.random(#soup)] end
  local p, s = table.concat(parts), subject() .. "\255\0"
  check("find", s, p)
  check("match", s, p)
  check("gsub", s, p, "%0")
end
)lua";

TEST(LuaPatterns, AgreeWithTheStandardLibraryOnTheCorpus) {
  PatternState st;
  ASSERT_EQ(st.Run(kDriver), "");
  ASSERT_EQ(st.Run(kCorpus), "");
  const std::string report = st.Run("return report()");
  EXPECT_EQ(report.rfind("0 of ", 0), 0u) << report;
  // The corpus is large enough to mean something.
  EXPECT_GT(std::stoi(report.substr(report.find("of ") + 3)), 10000) << report;
}

TEST(LuaPatterns, AgreeWithTheStandardLibraryOnRandomPatterns) {
  PatternState st;
  ASSERT_EQ(st.Run(kDriver), "");
  ASSERT_EQ(st.Run(kRandom), "");
  const std::string report = st.Run("return report()");
  EXPECT_EQ(report.rfind("0 of ", 0), 0u) << report;
}

TEST(LuaPatterns, MethodCallsReachTheInstalledFunctions) {
  PatternState st;
  // Installed into the string library itself, strings' methods use them.
  lua_getglobal(st.L(), "string");
  InstallPatternFunctions(st.L(), -1, CountSteps);
  lua_pop(st.L(), 1);
  g_steps = 0;
  EXPECT_EQ(st.Run("local s = 'key = value;' return table.concat({s:find('(%w+)%s*=')}, ',')"),
            "1,5,key");
  EXPECT_GT(g_steps, 0);
}

struct Pathological {
  const char* name;
  const char* code;
};

// Each would run for minutes (or forever) with the stock functions.
const Pathological kPathological[] = {
    {"lazy captures over a prompt",
     "return string.find(string.rep('x = ', 3000), '(.-)%s*=%s*(.-)%s*;')"},
    {"nested lazy repetitions", "return string.find(string.rep('a', 100000), '.-.-.-.-x')"},
    {"balance over many parentheses", "return string.find(string.rep('(', 500000), '%b()')"},
    {"greedy repetitions", "return string.match(string.rep('a', 100000), '.*.*.*x')"},
    {"gsub", "return string.gsub(string.rep('a', 50000), '.-.-b', '')"},
    {"gmatch", "for m in string.gmatch(string.rep('a', 50000), '.-.-b') do end"},
    {"back reference", "return string.find(string.rep('a', 100000), '(a*)%1b')"},
    {"frontier", "return string.find(string.rep('a', 100000), '.-%f[b]')"},
    {"set", "return string.find(string.rep('a', 100000), '[' .. string.rep('b', 50000) .. ']')"},
};

TEST(LuaPatterns, PathologicalPatternsAreStoppedByTheirStepBudget) {
  for (const Pathological& c : kPathological) {
    PatternState st;
    lua_getglobal(st.L(), "string");
    InstallPatternFunctions(st.L(), -1, CountSteps);
    lua_pop(st.L(), 1);
    g_steps = 0;
    g_step_limit = 2'000'000;
    const auto start = std::chrono::steady_clock::now();
    const std::string out = st.Run(c.code);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_NE(out.find("step limit"), std::string::npos) << c.name << ": " << out;
    EXPECT_LT(seconds, 2.0) << c.name;
    // Charged about what was done: a scan (%b, a back reference) is charged
    // whole, so the charge may pass the budget by one subject length.
    EXPECT_LE(g_steps, g_step_limit + 600'000) << c.name;
  }
}

TEST(LuaPatterns, OrdinaryMatchesCostStepsInProportionToTheSubject) {
  PatternState st;
  g_steps = 0;
  st.Run("local s = string.rep('lorem ipsum dolor 12 sit amet ', 1000) "
         "local n = 0 for w in ours.gmatch(s, '%a+') do n = n + 1 end return n");
  const int64_t gmatch_steps = g_steps;
  EXPECT_GT(gmatch_steps, 30'000);   // every character is looked at
  EXPECT_LT(gmatch_steps, 200'000);  // a few steps each, not a quadratic number
  g_steps = 0;
  EXPECT_EQ(st.Run("return tostring(ours.find(string.rep('x', 100000) .. 'needle', "
                   "'needle', 1, true))"),
            "100001");
  EXPECT_GT(g_steps, 0);  // plain finds are charged too, by the bytes scanned
  EXPECT_LT(g_steps, 100'000);
}

}  // namespace
}  // namespace bastion::policy
