#include "policy/call_view.h"

#include <cstdint>
#include <cstring>
#include <iterator>
#include <string_view>
#include <tuple>
#include <utility>

#include <lua.hpp>

namespace bastion::policy {
namespace {

thread_local bool t_final_chunk = false;  // see FinalChunk

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

// What a name of the call view (or of one of its parts) reads: the names are
// kCallFields' and kCallFieldAliases', plus the grouped parts below. Each maps
// to a code, found by the address of the interned key (ViewName), so a lookup
// is a pointer hash and compare on every evaluation's hot path.
constexpr int16_t kTokenCode = 100;  // + index into kTokenFields
constexpr int16_t kPartCode = 200;   // + Part: a grouped view
constexpr size_t kPartsByName = 4;   // agent, user, run, tokens: ViewName::parts

struct PartName {
  Part part;
  std::string_view key;
  std::string_view field;  // a name of kCallFields
};
// call.agent.id, call.run.steps, ...: the call's fields grouped by subject.
constexpr PartName kPartNames[] = {
    {Part::kAgent, "id", "agent_id"},
    {Part::kAgent, "role", "agent_role"},
    {Part::kAgent, "parent", "parent_agent_id"},
    {Part::kUser, "id", "user_id"},
    {Part::kRun, "id", "run_id"},
    {Part::kRun, "step", "step_index"},
    {Part::kRun, "step_index", "step_index"},
    {Part::kRun, "steps", "run_steps"},
    {Part::kRun, "tool_calls", "run_tool_calls"},
    {Part::kRun, "thread_id", "thread_id"},
    {Part::kRun, "trace_id", "trace_id"},
};
constexpr std::pair<std::string_view, Part> kCallParts[] = {
    {"agent", Part::kAgent}, {"user", Part::kUser}, {"run", Part::kRun}};

int16_t FieldCode(std::string_view name) {
  const CallField* f = FindCallField(name);
  return f == nullptr ? -1 : static_cast<int16_t>(f - kCallFields);
}

size_t Slot(const ViewContext& ctx, const char* key) {
  const uint64_t h = (reinterpret_cast<uintptr_t>(key) >> 3) * 0x9E3779B97F4A7C15ull;
  return static_cast<size_t>(h >> 32) & (ctx.names.size() - 1);
}

// The entry of the string at `index` (nullptr: a name the views do not know).
// Numbers are converted and name nothing; keys of other types raise.
const ViewName* Find(lua_State* L, const ViewContext& ctx, int index) {
  const char* key = lua_tolstring(L, index, nullptr);
  if (key == nullptr) luaL_checklstring(L, index, nullptr);  // raises
  for (size_t i = Slot(ctx, key);; i = (i + 1) & (ctx.names.size() - 1)) {
    const ViewName& n = ctx.names[i];
    if (n.key == key) return &n;
    if (n.key == nullptr) return nullptr;
  }
}

// The entry for `name`, added (and its string anchored in the table on top of
// the stack) if new.
ViewName& Add(lua_State* L, ViewContext* ctx, std::string_view name) {
  const char* key = lua_pushlstring(L, name.data(), name.size());
  lua_pushboolean(L, 1);
  lua_rawset(L, -3);
  for (size_t i = Slot(*ctx, key);; i = (i + 1) & (ctx->names.size() - 1)) {
    ViewName& n = ctx->names[i];
    if (n.key == key) return n;
    if (n.key == nullptr) {
      n.key = key;
      return n;
    }
  }
}

// Fills ctx->names and anchors their strings in the registry.
void InstallNames(lua_State* L, ViewContext* ctx) {
  static_assert(std::size(kCallFields) + std::size(kCallFieldAliases) + std::size(kCallParts) +
                        std::size(kPartNames) + std::size(kTokenFields) <
                    std::tuple_size_v<decltype(ViewContext::names)> / 2,
                "the name table must stay sparse");
  ctx->names = {};  // addresses are only meaningful in the state they came from
  lua_newtable(L);
  for (int16_t i = 0; i < kCallFieldCount; ++i) Add(L, ctx, kCallFields[i].name).call = i;
  for (const CallFieldAlias& a : kCallFieldAliases) Add(L, ctx, a.alias).call = FieldCode(a.name);
  for (const auto& [name, part] : kCallParts) {
    Add(L, ctx, name).call = static_cast<int16_t>(kPartCode + static_cast<int16_t>(part));
  }
  for (const PartName& p : kPartNames) {
    Add(L, ctx, p.key).parts[static_cast<size_t>(p.part)] = FieldCode(p.field);
  }
  for (int16_t i = 0; i < static_cast<int16_t>(std::size(kTokenFields)); ++i) {
    Add(L, ctx, kTokenFields[i].name).parts[static_cast<size_t>(Part::kTokens)] =
        static_cast<int16_t>(kTokenCode + i);
  }
  ctx->names_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

void PushPart(lua_State* L, ViewContext* ctx, Part part) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, ctx->part_refs[static_cast<size_t>(part)]);
}

// Pushes what `code` reads from `c`: nil for an unset string.
void PushField(lua_State* L, ViewContext* ctx, const CallInfo& c, int16_t code) {
  if (code >= kPartCode) return PushPart(L, ctx, static_cast<Part>(code - kPartCode));
  if (code >= kTokenCode) {
    const uint64_t n = c.tokens.*kTokenFields[code - kTokenCode].member;
    return lua_pushinteger(L, static_cast<lua_Integer>(n));
  }
  const CallField& f = kCallFields[code];
  switch (f.type) {
    case CallFieldType::kString: return PushString(L, c.*f.text);
    case CallFieldType::kCount: return lua_pushinteger(L, c.*f.count);
    case CallFieldType::kHook: {
      const std::string_view hook = HookName(c.hook);
      return static_cast<void>(lua_pushlstring(L, hook.data(), hook.size()));
    }
    case CallFieldType::kArgs: {
      // A call without arguments reads as an empty table, so `call.args.x`
      // is nil rather than an error that fails the policy.
      static const Value kNoArgs{Value::Object{}};
      return PushValue(L, ctx, c.args.is_null() ? &kNoArgs : &c.args, ctx->generation);
    }
    case CallFieldType::kTokens: return PushPart(L, ctx, Part::kTokens);
    case CallFieldType::kAttributes: return PushPart(L, ctx, Part::kAttributes);
  }
}

int SubIndex(lua_State* L) {
  // Reachable only through the locked metatable, so argument 1 is a SubView.
  auto* sub = static_cast<SubView*>(lua_touserdata(L, 1));
  const CallInfo& c = Current(L, sub->ctx);
  if (sub->part == Part::kAttributes || sub->part == Part::kText) {
    size_t n;
    const char* k = luaL_checklstring(L, 2, &n);
    const std::string_view key(k, n);
    if (sub->part == Part::kAttributes) {
      for (const auto& [ak, av] : c.attributes) {
        if (ak == key) return lua_pushlstring(L, av.data(), av.size()), 1;
      }
      return lua_pushnil(L), 1;
    }
    const std::string* text = &c.input;
    const char* kind = "input";
    switch (c.hook) {
      case Hook::kAfterModel:
      case Hook::kAfterTool: text = &c.output; kind = "output"; break;
      case Hook::kOnChunk: text = &c.chunk; kind = "chunk"; break;
      default: break;
    }
    if (key == "text") return lua_pushlstring(L, text->data(), text->size()), 1;
    if (key == "kind") return lua_pushstring(L, kind), 1;
    // on_chunk: whether the stream has ended (its last evaluation).
    if (key == "final" && c.hook == Hook::kOnChunk) return lua_pushboolean(L, t_final_chunk), 1;
    return lua_pushnil(L), 1;
  }
  static_assert(static_cast<size_t>(Part::kTokens) < kPartsByName);
  const ViewName* name = Find(L, *sub->ctx, 2);
  const int16_t code = name ? name->parts[static_cast<size_t>(sub->part)] : -1;
  if (code < 0) return lua_pushnil(L), 1;
  PushField(L, sub->ctx, c, code);
  return 1;
}

int CallIndex(lua_State* L) {
  ViewContext* ctx = *static_cast<ViewContext**>(lua_touserdata(L, 1));  // see SubIndex
  const CallInfo& c = Current(L, ctx);
  const ViewName* name = Find(L, *ctx, 2);
  if (name == nullptr || name->call < 0) return lua_pushnil(L), 1;
  PushField(L, ctx, c, name->call);
  return 1;
}

// pairs(call): the set fields of the call, by their names, in table order.
int CallNext(lua_State* L) {
  ViewContext* ctx = *static_cast<ViewContext**>(luaL_checkudata(L, 1, kCallMeta));
  const CallInfo& c = Current(L, ctx);
  int16_t i = 0;
  if (!lua_isnil(L, 2)) {
    const ViewName* name = Find(L, *ctx, 2);
    if (name == nullptr || name->call < 0 || name->call >= kCallFieldCount) {
      return luaL_error(L, "pairs(call): '%s' is not a field of the call",
                        luaL_tolstring(L, 2, nullptr));
    }
    i = static_cast<int16_t>(name->call + 1);
  }
  for (; i < kCallFieldCount; ++i) {
    PushField(L, ctx, c, i);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      continue;
    }
    lua_pushlstring(L, kCallFields[i].name.data(), kCallFields[i].name.size());
    lua_insert(L, -2);
    return 2;
  }
  return lua_pushnil(L), 1;
}

int CallPairs(lua_State* L) {
  lua_pushcfunction(L, CallNext);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}

void NewMeta(lua_State* L, const char* name, lua_CFunction index, int upvalues = 0) {
  lua_pushcclosure(L, index, upvalues);
  luaL_newmetatable(L, name);
  lua_insert(L, -2);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, ReadOnly);
  lua_setfield(L, -2, "__newindex");
  lua_pushliteral(L, "locked");
  lua_setfield(L, -2, "__metatable");
}

}  // namespace

FinalChunk::FinalChunk() { t_final_chunk = true; }
FinalChunk::~FinalChunk() { t_final_chunk = false; }

void InstallViews(lua_State* L, ViewContext* ctx) {
  InstallNames(L, ctx);
  NewMeta(L, kCallMeta, CallIndex);
  lua_pushcfunction(L, CallPairs);
  lua_setfield(L, -2, "__pairs");
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
