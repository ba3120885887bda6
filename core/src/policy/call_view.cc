#include "policy/call_view.h"

#include <cstring>
#include <string_view>

#include <lua.hpp>

namespace bastion::policy {
namespace {

const char kCallMeta[] = "bastion.call";
const char kSubMeta[] = "bastion.callpart";
const char kValueMeta[] = "bastion.value";

enum class Part : uint8_t { kAgent, kUser, kRun, kTokens, kAttributes, kText };

struct SubView {
  ViewContext* ctx;
  Part part;
};

struct ValueView {
  ViewContext* ctx;
  const Value* value;
  uint64_t generation;  // 0: static (bundle data), never stale
};

const CallInfo& Current(lua_State* L, ViewContext* ctx) {
  if (ctx->call == nullptr) {
    luaL_error(L, "the call view was used outside the hook it was passed to");
  }
  return *ctx->call;
}

void PushString(lua_State* L, const std::string& s) {
  if (s.empty()) {
    lua_pushnil(L);
  } else {
    lua_pushlstring(L, s.data(), s.size());
  }
}

void PushValue(lua_State* L, ViewContext* ctx, const Value* v, uint64_t generation) {
  switch (v->type()) {
    case Value::Type::kNull: lua_pushnil(L); return;
    case Value::Type::kBool: lua_pushboolean(L, v->as_bool()); return;
    case Value::Type::kInt: lua_pushinteger(L, v->as_int()); return;
    case Value::Type::kDouble: lua_pushnumber(L, v->as_double()); return;
    case Value::Type::kString:
      lua_pushlstring(L, v->as_string().data(), v->as_string().size());
      return;
    case Value::Type::kArray:
    case Value::Type::kObject: {
      auto* view = static_cast<ValueView*>(lua_newuserdatauv(L, sizeof(ValueView), 0));
      *view = ValueView{ctx, v, generation};
      luaL_setmetatable(L, kValueMeta);
      return;
    }
  }
}

// `trusted`: called as a metamethod of the view, so no type check is needed;
// otherwise (the pairs iterator, callable with anything) the type is checked.
const Value* CheckValue(lua_State* L, int index, ValueView** out = nullptr, bool trusted = true) {
  auto* view = static_cast<ValueView*>(trusted ? lua_touserdata(L, index)
                                               : luaL_checkudata(L, index, kValueMeta));
  if (view->generation != 0 && view->generation != view->ctx->generation) {
    luaL_error(L, "a view of call arguments was used after its call ended");
  }
  if (out) *out = view;
  return view->value;
}

int ValueIndex(lua_State* L) {
  ValueView* view;
  const Value* v = CheckValue(L, 1, &view);
  if (v->type() == Value::Type::kArray) {
    if (!lua_isinteger(L, 2)) return lua_pushnil(L), 1;
    const lua_Integer i = lua_tointeger(L, 2);
    const auto& a = v->as_array();
    if (i < 1 || static_cast<size_t>(i) > a.size()) return lua_pushnil(L), 1;
    PushValue(L, view->ctx, &a[i - 1], view->generation);
    return 1;
  }
  if (lua_type(L, 2) != LUA_TSTRING) return lua_pushnil(L), 1;
  size_t n;
  const char* k = lua_tolstring(L, 2, &n);
  const Value* member = v->Find(std::string_view(k, n));
  if (member == nullptr) return lua_pushnil(L), 1;
  PushValue(L, view->ctx, member, view->generation);
  return 1;
}

int ValueLen(lua_State* L) {
  const Value* v = CheckValue(L, 1);
  lua_pushinteger(L, static_cast<lua_Integer>(v->type() == Value::Type::kArray
                                                  ? v->as_array().size()
                                                  : v->as_object().size()));
  return 1;
}

// pairs(view): iterates arrays as 1..n and objects in insertion order.
int ValueNext(lua_State* L) {
  ValueView* view;
  const Value* v = CheckValue(L, 1, &view, /*trusted=*/false);
  lua_Integer i = lua_isnil(L, 2) ? 0 : -1;
  if (v->type() == Value::Type::kArray) {
    if (i != 0) i = lua_tointeger(L, 2);
    const auto& a = v->as_array();
    if (static_cast<size_t>(i) >= a.size()) return lua_pushnil(L), 1;
    lua_pushinteger(L, i + 1);
    PushValue(L, view->ctx, &a[i], view->generation);
    return 2;
  }
  const auto& o = v->as_object();
  size_t next = 0;
  if (i != 0) {
    size_t n;
    const char* k = lua_tolstring(L, 2, &n);
    while (next < o.size() && o[next].first != std::string_view(k, n)) ++next;
    ++next;
  }
  if (next >= o.size()) return lua_pushnil(L), 1;
  lua_pushlstring(L, o[next].first.data(), o[next].first.size());
  PushValue(L, view->ctx, &o[next].second, view->generation);
  return 2;
}

int ValuePairs(lua_State* L) {
  CheckValue(L, 1);
  lua_pushcfunction(L, ValueNext);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}

int ReadOnly(lua_State* L) { return luaL_error(L, "the call is read-only"); }

int SubIndex(lua_State* L) {
  // Reachable only through the locked metatable, so argument 1 is a SubView.
  auto* sub = static_cast<SubView*>(lua_touserdata(L, 1));
  const CallInfo& c = Current(L, sub->ctx);
  size_t n;
  const char* k = luaL_checklstring(L, 2, &n);
  const std::string_view key(k, n);
  switch (sub->part) {
    case Part::kAgent:
      if (key == "id") return PushString(L, c.agent_id), 1;
      if (key == "role") return PushString(L, c.agent_role), 1;
      if (key == "parent") return PushString(L, c.parent_agent_id), 1;
      break;
    case Part::kUser:
      if (key == "id") return PushString(L, c.user_id), 1;
      break;
    case Part::kRun:
      if (key == "id") return PushString(L, c.run_id), 1;
      if (key == "step") return lua_pushinteger(L, c.step_index), 1;
      if (key == "steps") return lua_pushinteger(L, c.run_steps), 1;
      if (key == "tool_calls") return lua_pushinteger(L, c.run_tool_calls), 1;
      if (key == "thread_id") return PushString(L, c.thread_id), 1;
      if (key == "trace_id") return PushString(L, c.trace_id), 1;
      break;
    case Part::kTokens: {
      const TokenUsage& t = c.tokens;
      const uint64_t* v = key == "input"         ? &t.input
                          : key == "output"      ? &t.output
                          : key == "cache_read"  ? &t.cache_read
                          : key == "cache_write" ? &t.cache_write
                          : key == "reasoning"   ? &t.reasoning
                                                 : nullptr;
      if (v) return lua_pushinteger(L, static_cast<lua_Integer>(*v)), 1;
      break;
    }
    case Part::kAttributes:
      for (const auto& [ak, av] : c.attributes) {
        if (ak == key) return lua_pushlstring(L, av.data(), av.size()), 1;
      }
      break;
    case Part::kText: {
      const std::string* text = nullptr;
      const char* kind = "input";
      switch (c.hook) {
        case Hook::kAfterModel:
        case Hook::kAfterTool: text = &c.output; kind = "output"; break;
        case Hook::kOnChunk: text = &c.chunk; kind = "chunk"; break;
        default: text = &c.input; break;
      }
      if (key == "text") return lua_pushlstring(L, text->data(), text->size()), 1;
      if (key == "kind") return lua_pushstring(L, kind), 1;
      break;
    }
  }
  lua_pushnil(L);
  return 1;
}

int CallIndex(lua_State* L) {
  ViewContext* ctx = *static_cast<ViewContext**>(lua_touserdata(L, 1));  // see SubIndex
  const CallInfo& c = Current(L, ctx);
  size_t n;
  const char* k = luaL_checklstring(L, 2, &n);
  const std::string_view key(k, n);
  auto sub = [&](Part part) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, ctx->part_refs[static_cast<size_t>(part)]);
    return 1;
  };
  switch (key.empty() ? 0 : key[0]) {
    case 'a':
      if (key == "agent") return sub(Part::kAgent);
      if (key == "args") {
        // A call without arguments reads as an empty table, so `call.args.x`
        // is nil rather than an error that fails the policy.
        static const Value kNoArgs{Value::Object{}};
        PushValue(L, ctx, c.args.is_null() ? &kNoArgs : &c.args, ctx->generation);
        return 1;
      }
      if (key == "agent_id") return PushString(L, c.agent_id), 1;
      if (key == "agent_role") return PushString(L, c.agent_role), 1;
      if (key == "attributes") return sub(Part::kAttributes);
      break;
    case 'c':
      if (key == "chunk") return PushString(L, c.chunk), 1;
      break;
    case 'h':
      if (key == "hook") return lua_pushstring(L, std::string(HookName(c.hook)).c_str()), 1;
      break;
    case 'i':
      if (key == "input") return PushString(L, c.input), 1;
      break;
    case 'm':
      if (key == "model") return PushString(L, c.model), 1;
      break;
    case 'o':
      if (key == "operation") return PushString(L, c.operation), 1;
      if (key == "output") return PushString(L, c.output), 1;
      break;
    case 'r':
      if (key == "resource") return PushString(L, c.resource), 1;
      if (key == "risk" || key == "risk_level") return PushString(L, c.risk_level), 1;
      if (key == "run") return sub(Part::kRun);
      if (key == "run_id") return PushString(L, c.run_id), 1;
      break;
    case 's':
      if (key == "step") return lua_pushinteger(L, c.step_index), 1;
      break;
    case 't':
      if (key == "tool") return PushString(L, c.tool), 1;
      if (key == "tenant" || key == "tenant_id") return PushString(L, c.tenant_id), 1;
      if (key == "tokens") return sub(Part::kTokens);
      if (key == "thread_id") return PushString(L, c.thread_id), 1;
      if (key == "trace_id") return PushString(L, c.trace_id), 1;
      break;
    case 'u':
      if (key == "user") return sub(Part::kUser);
      if (key == "user_id") return PushString(L, c.user_id), 1;
      break;
  }
  lua_pushnil(L);
  return 1;
}

void NewMeta(lua_State* L, const char* name, lua_CFunction index) {
  luaL_newmetatable(L, name);
  lua_pushcfunction(L, index);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, ReadOnly);
  lua_setfield(L, -2, "__newindex");
  lua_pushliteral(L, "locked");
  lua_setfield(L, -2, "__metatable");
}

}  // namespace

void InstallViews(lua_State* L, ViewContext* ctx) {
  NewMeta(L, kCallMeta, CallIndex);
  lua_pop(L, 1);
  NewMeta(L, kSubMeta, SubIndex);
  lua_pop(L, 1);
  NewMeta(L, kValueMeta, ValueIndex);
  lua_pushcfunction(L, ValueLen);
  lua_setfield(L, -2, "__len");
  lua_pushcfunction(L, ValuePairs);
  lua_setfield(L, -2, "__pairs");
  lua_pop(L, 1);

  *static_cast<ViewContext**>(lua_newuserdatauv(L, sizeof(ViewContext*), 0)) = ctx;
  luaL_setmetatable(L, kCallMeta);
  ctx->call_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  for (size_t i = 0; i < ctx->part_refs.size(); ++i) {
    *static_cast<SubView*>(lua_newuserdatauv(L, sizeof(SubView), 0)) =
        SubView{ctx, static_cast<Part>(i)};
    luaL_setmetatable(L, kSubMeta);
    ctx->part_refs[i] = luaL_ref(L, LUA_REGISTRYINDEX);
  }
}

void PushCallView(lua_State* L, const ViewContext& ctx) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, ctx.call_ref);
}

void PushTextView(lua_State* L, const ViewContext& ctx) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, ctx.part_refs[static_cast<size_t>(Part::kText)]);
}

}  // namespace bastion::policy
