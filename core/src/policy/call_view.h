// Read-only Lua views of a CallInfo and of Values (tool arguments, bundle
// data). Views are userdata whose __index reads the C++ struct on demand, so
// building the view of a call costs nothing per field. A view outlives its
// call only as a stale handle: using it later raises an error, never touches
// freed memory. The call view's names are those of kCallFields and
// kCallFieldAliases (bastion/call.h); pairs(call) walks kCallFields.
#ifndef BASTION_POLICY_CALL_VIEW_H_
#define BASTION_POLICY_CALL_VIEW_H_

#include <array>
#include <cstdint>

#include "bastion/policy.h"

struct lua_State;

namespace bastion::policy {

// A name the views know (a field of kCallFields, an alias, a part's key),
// found by the address of its Lua string: Lua interns short strings, so while
// the state keeps the string alive every string with those bytes is that one.
struct ViewName {
  const char* key = nullptr;  // lua_tostring of the anchored string
  int16_t call = -1;          // what it reads on the call view (-1: nothing)
  std::array<int16_t, 4> parts{-1, -1, -1, -1};  // ... on agent, user, run, tokens
};

// What the views read; owned by the thread's worker.
struct ViewContext {
  const CallInfo* call = nullptr;  // null between evaluations
  uint64_t generation = 1;         // bumped per evaluation; stale views fail
  // Registry references of the fixed views (set by InstallViews).
  int call_ref = -1;
  std::array<int, 6> part_refs{};  // agent, user, run, tokens, attributes, text
  // The names, by address (open addressing), and the registry reference of
  // the table that keeps their strings alive.
  std::array<ViewName, 128> names{};
  int names_ref = -1;
};

// on_chunk's `chunk.final`: true while a FinalChunk lives on this thread (the
// guard's evaluation of a stream's last window; evaluations run on the
// calling thread). It describes the evaluation, not the call, so it is not a
// CallInfo member (those are exactly kCallFields).
class FinalChunk {
 public:
  FinalChunk();
  ~FinalChunk();
  FinalChunk(const FinalChunk&) = delete;
  FinalChunk& operator=(const FinalChunk&) = delete;
};

// Registers the view metatables in `L` and creates the fixed views; call once
// per state. `ctx` must outlive the state.
void InstallViews(lua_State* L, ViewContext* ctx);
// Pushes the fixed view of the current call / of its hook's text (a view with
// .text and .kind).
void PushCallView(lua_State* L, const ViewContext& ctx);
void PushTextView(lua_State* L, const ViewContext& ctx);

}  // namespace bastion::policy

#endif  // BASTION_POLICY_CALL_VIEW_H_
