// Read-only Lua views of a CallInfo and of Values (tool arguments, bundle
// data). Views are userdata whose __index reads the C++ struct on demand, so
// building the view of a call costs nothing per field. A view outlives its
// call only as a stale handle: using it later raises an error, never touches
// freed memory.
#ifndef BASTION_POLICY_CALL_VIEW_H_
#define BASTION_POLICY_CALL_VIEW_H_

#include <cstdint>

#include "bastion/policy.h"

struct lua_State;

namespace bastion::policy {

// What the views read; owned by the thread's worker.
struct ViewContext {
  const CallInfo* call = nullptr;  // null between evaluations
  uint64_t generation = 1;         // bumped per evaluation; stale views fail
};

// Registers the view metatables in `L` and creates the fixed views; call once
// per state. `ctx` must outlive the state.
void InstallViews(lua_State* L, ViewContext* ctx);
// Pushes the fixed view of the current call / of its hook's text (a table-like
// view with .text and .kind).
void PushCallView(lua_State* L);
void PushTextView(lua_State* L);
// Pushes a view of `v` that never goes stale (`v` must outlive the state), or
// the plain Lua value for scalars.
void PushStaticValue(lua_State* L, const Value* v);
// The Value behind the view at `index`, or nullptr if it is not a live view.
const Value* ToValue(lua_State* L, int index);

}  // namespace bastion::policy

#endif  // BASTION_POLICY_CALL_VIEW_H_
