// Read-only Lua views of a CallInfo and of Values (tool arguments, bundle
// data). Views are userdata whose __index reads the C++ struct on demand, so
// building the view of a call costs nothing per field. A view outlives its
// call only as a stale handle: using it later raises an error, never touches
// freed memory.
#ifndef BASTION_POLICY_CALL_VIEW_H_
#define BASTION_POLICY_CALL_VIEW_H_

#include <array>
#include <cstdint>

#include "bastion/policy.h"

struct lua_State;

namespace bastion::policy {

// What the views read; owned by the thread's worker.
struct ViewContext {
  const CallInfo* call = nullptr;  // null between evaluations
  uint64_t generation = 1;         // bumped per evaluation; stale views fail
  // Registry references of the fixed views (set by InstallViews).
  int call_ref = -1;
  std::array<int, 6> part_refs{};  // agent, user, run, tokens, attributes, text
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
