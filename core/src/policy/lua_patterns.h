// Lua 5.4 string patterns (reference manual §6.4.1) with a step counter:
// string.find, string.match, string.gmatch and string.gsub, semantically the
// same as the standard library's, but charging their work as they go so that
// a policy matching an attacker's text cannot run past its instruction limit.
//
// Lua's count hook fires only between VM instructions, never inside a C
// function, so one stock string.find with a backtracking pattern (say
// "(.-)%s*=%s*(.-)%s*;" over a few kilobytes, or "%b()" over many
// parentheses) could run for minutes. Here every step of matching, one
// subject character tested against one pattern item, is counted, and
// `charge` is called with the count every so often (and once at the end):
//
//   lua_getglobal(L, "string");
//   InstallPatternFunctions(L, -1, [](lua_State* L, int64_t steps) {
//     // raise a Lua error here to stop the match
//   });
//
// Errors (malformed patterns, bad arguments) are raised as the standard
// library raises them, with the same messages.
#ifndef BASTION_POLICY_LUA_PATTERNS_H_
#define BASTION_POLICY_LUA_PATTERNS_H_

#include <cstdint>

struct lua_State;

namespace bastion::policy {

// Called with the steps done since the last call. It may raise a Lua error
// (lua_error / luaL_error), which ends the match; the matcher holds nothing
// that needs cleaning up.
using PatternCharge = void (*)(lua_State* L, int64_t steps);

// Steps done between two calls of the charge function (at most).
inline constexpr int64_t kPatternChargeInterval = 4096;

// Sets "find", "match", "gmatch" and "gsub" of the table at `index`.
void InstallPatternFunctions(lua_State* L, int index, PatternCharge charge);

}  // namespace bastion::policy

#endif  // BASTION_POLICY_LUA_PATTERNS_H_
