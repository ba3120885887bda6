// A Lua 5.4 state for running untrusted policy code: only safe libraries,
// read-only shared tables, a memory limit enforced by the allocator and an
// instruction limit enforced by a count hook (and charged by the pattern
// matcher, which replaces the string library's). One per thread, never shared.
//
// A limit, once hit, is sticky for the rest of the evaluation: every later VM
// instruction raises again (and, for memory, every later allocation fails), so
// pcall cannot swallow it, and Call() fails whatever the policy returns.
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

  // What stopped an evaluation.
  enum class Stop {
    kNone,
    kInstructions,  // the instruction budget (VM instructions, pattern steps)
    kMemory,        // the memory budget (Lua allocations, charged counter keys)
    kCounters,      // a bound of the shared counters (keys, key size, bytes)
  };

  // Arms the limits for one evaluation: `instructions` VM instructions and
  // `memory_bytes` of growth from now.
  void Arm(int64_t instructions, size_t memory_bytes);
  // Disarms them; returns what stopped the last call, if anything.
  Stop Disarm();

  // Calls the function below `nargs` arguments on the stack, with limits
  // armed as given, leaving one result. On failure returns the error text
  // (never running policy code to produce it) and `*stop` says why. Once a
  // limit was hit the call fails, even if the policy caught the error and
  // returned normally.
  Status Call(int nargs, int64_t instructions, size_t memory_bytes, Stop* stop);

  // For C functions running inside an evaluation (`L` is this sandbox's
  // state). Each raises a Lua error when the limit is hit, so callers must
  // hold no C++ objects with destructors.
  //
  // Charges `n` instructions' worth of work to the evaluation's budget.
  static void ChargeInstructions(lua_State* L, int64_t n);
  // Charges `bytes` held outside Lua on the evaluation's behalf to its memory
  // budget (no raise: returns false, and the evaluation is stopped, if they
  // do not fit).
  static bool ChargeMemory(lua_State* L, size_t bytes);
  // Stops the evaluation for good as `why` with `message` (no raise; the
  // caller raises, and so does every later instruction).
  static void Abort(lua_State* L, Stop why, std::string message);

 private:
  static void* Alloc(void* ud, void* ptr, size_t osize, size_t nsize);
  static void CountHook(lua_State* L, lua_Debug* ar);
  // Records the first limit hit and makes every later instruction raise.
  void Trip(Stop why);
  // Remembers "file:line" of the function `ar` describes, if it has a line.
  void NoteWhere(lua_State* L, lua_Debug* ar);
  // Raises the error of the limit that stopped the evaluation.
  [[noreturn]] void RaiseTripped(lua_State* L);

  lua_State* L_ = nullptr;
  size_t used_ = 0;     // bytes the Lua state holds
  size_t charged_ = 0;  // bytes charged by ChargeMemory this evaluation
  size_t limit_ = 0;
  size_t memory_limit_ = 0;  // as armed, for messages
  bool limited_ = false;
  int64_t budget_ = 0;
  int64_t instruction_limit_ = 0;  // as armed, for messages
  bool armed_ = false;
  Stop tripped_ = Stop::kNone;
  std::string trip_message_;  // set by Abort
  char trip_where_[96] = {};  // "file:line" where the instruction limit hit, if known
  int base_ref_ = -2;         // LUA_NOREF
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
