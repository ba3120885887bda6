// A Lua 5.4 state for running untrusted policy code: only safe libraries,
// read-only shared tables, a memory limit enforced by the allocator and an
// instruction limit enforced by a count hook. One per thread, never shared.
#ifndef BASTION_POLICY_LUA_SANDBOX_H_
#define BASTION_POLICY_LUA_SANDBOX_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "bastion/status.h"
#include "bastion/value.h"

struct lua_State;
struct lua_Debug;

namespace bastion::policy {

class Sandbox {
 public:
  Sandbox();
  ~Sandbox();
  Sandbox(const Sandbox&) = delete;
  Sandbox& operator=(const Sandbox&) = delete;

  lua_State* L() const { return L_; }
  bool ok() const { return L_ != nullptr; }

  // The sandbox's base environment (read-only proxy of the safe globals);
  // pushes it onto the stack.
  void PushBase();
  // Adds `name` = value at the top of the stack to the base environment
  // (pops it). Only while setting up, before any policy code runs.
  void SetBaseField(const char* name);

  // Loads `code` as a text chunk named `chunk_name` (binary chunks are
  // refused) with a fresh environment whose reads fall through to the base
  // and whose writes are allowed until Freeze(). Leaves the function on the
  // stack. Errors carry "file:line: message".
  Status LoadChunk(std::string_view code, const std::string& chunk_name);
  // Makes the globals of every chunk loaded so far read-only.
  void FreezeChunks();

  // Arms the limits for one evaluation: `instructions` VM instructions and
  // `memory_bytes` of growth from now.
  void Arm(int64_t instructions, size_t memory_bytes);
  // Disarms them; returns what stopped the last call, if anything.
  enum class Stop { kNone, kInstructions, kMemory };
  Stop Disarm();

  // Calls the function below `nargs` arguments on the stack, with limits
  // armed as given, leaving one result. On failure returns the error text
  // (never running policy code to produce it) and `*stop` says why.
  Status Call(int nargs, int64_t instructions, size_t memory_bytes, Stop* stop);

 private:
  static void* Alloc(void* ud, void* ptr, size_t osize, size_t nsize);
  static void CountHook(lua_State* L, lua_Debug* ar);

  lua_State* L_ = nullptr;
  size_t used_ = 0;
  size_t limit_ = 0;
  bool limited_ = false;
  bool memory_hit_ = false;
  int64_t budget_ = 0;
  bool armed_ = false;
  bool killed_ = false;
  int base_ref_ = -2;  // LUA_NOREF
};

// The error at the top of the stack as text, without calling metamethods.
std::string ErrorText(lua_State* L, int index);

// Pushes a read-only proxy of the table at `index` (reads, ipairs, pairs and
// # see the table; writes and setmetatable fail).
void PushReadOnlyProxy(lua_State* L, int index);
// Pushes `v` as Lua values, tables wrapped in read-only proxies at every level.
void PushFrozenValue(lua_State* L, const Value& v, int depth = 0);
// Pushes the table behind a read-only proxy at `index` (or the value itself if
// it is no proxy) and returns its stack index. For C code that iterates raw.
int PushUnproxied(lua_State* L, int index);

}  // namespace bastion::policy

#endif  // BASTION_POLICY_LUA_SANDBOX_H_
