#include "policy/lua_sandbox.h"

#include <cstdlib>
#include <cstring>

#include <fmt/format.h>
#include <lua.hpp>

#include "policy/lua_patterns.h"

namespace bastion::policy {
namespace {

// The count hook fires every kHookInterval VM instructions: rare enough to
// cost little (~1%), frequent enough that a limit overshoots by at most that.
constexpr int kHookInterval = 1000;

Sandbox* Self(lua_State* L) { return *static_cast<Sandbox**>(lua_getextraspace(L)); }

int ReadOnlyError(lua_State* L) {
  return luaL_error(L, "attempt to modify a read-only table (policies cannot change globals "
                       "or libraries at call time; use local variables)");
}

// setmetatable, minus __gc: a finalizer would run policy code outside any
// evaluation, where no limit applies.
int SafeSetMetatable(lua_State* L) {
  if (lua_type(L, 2) == LUA_TTABLE) {
    lua_pushliteral(L, "__gc");
    if (lua_rawget(L, 2) != LUA_TNIL) {
      return luaL_error(L, "__gc metamethods are not allowed in policies");
    }
    lua_pop(L, 1);
  }
  lua_getglobal(L, "setmetatable");  // the real one, from the hidden globals
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, 1);
  return 1;
}

}  // namespace

// Pushes a read-only proxy of the table at `index`: reads fall through,
// writes fail, its metatable is locked, pairs() and # see the original.
void PushReadOnlyProxy(lua_State* L, int index) {
  index = lua_absindex(L, index);
  lua_newtable(L);                    // proxy
  lua_createtable(L, 0, 6);           // metatable
  lua_pushvalue(L, index);
  lua_setfield(L, -2, "__index");
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "__bastion_ro");
  lua_pushvalue(L, index);
  lua_pushcclosure(
      L,
      [](lua_State* L) -> int {
        lua_pushinteger(L, static_cast<lua_Integer>(lua_rawlen(L, lua_upvalueindex(1))));
        return 1;
      },
      1);
  lua_setfield(L, -2, "__len");
  lua_pushcfunction(L, ReadOnlyError);
  lua_setfield(L, -2, "__newindex");
  lua_pushliteral(L, "locked");
  lua_setfield(L, -2, "__metatable");
  lua_pushvalue(L, index);
  lua_pushcclosure(
      L,
      [](lua_State* L) -> int {
        lua_getglobal(L, "next");
        lua_pushvalue(L, lua_upvalueindex(1));
        lua_pushnil(L);
        return 3;
      },
      1);
  lua_setfield(L, -2, "__pairs");
  lua_setmetatable(L, -2);
}

int PushUnproxied(lua_State* L, int index) {
  index = lua_absindex(L, index);
  if (lua_type(L, index) == LUA_TTABLE && lua_getmetatable(L, index)) {
    const bool ours = lua_getfield(L, -1, "__bastion_ro") == LUA_TBOOLEAN;
    lua_pop(L, 1);
    if (ours) {
      lua_getfield(L, -1, "__index");
      lua_remove(L, -2);
      return lua_gettop(L);
    }
    lua_pop(L, 1);
  }
  lua_pushvalue(L, index);
  return lua_gettop(L);
}

void PushFrozenValue(lua_State* L, const Value& v, int depth) {
  switch (v.type()) {
    case Value::Type::kNull: lua_pushnil(L); return;
    case Value::Type::kBool: lua_pushboolean(L, v.as_bool()); return;
    case Value::Type::kInt: lua_pushinteger(L, v.as_int()); return;
    case Value::Type::kDouble: lua_pushnumber(L, v.as_double()); return;
    case Value::Type::kString:
      lua_pushlstring(L, v.as_string().data(), v.as_string().size());
      return;
    case Value::Type::kArray: {
      const auto& a = v.as_array();
      lua_createtable(L, static_cast<int>(a.size()), 0);
      for (size_t i = 0; i < a.size(); ++i) {
        PushFrozenValue(L, a[i], depth + 1);
        lua_rawseti(L, -2, static_cast<lua_Integer>(i + 1));
      }
      break;
    }
    case Value::Type::kObject: {
      const auto& o = v.as_object();
      lua_createtable(L, 0, static_cast<int>(o.size()));
      for (const auto& [key, item] : o) {
        lua_pushlstring(L, key.data(), key.size());
        PushFrozenValue(L, item, depth + 1);
        lua_rawset(L, -3);
      }
      break;
    }
  }
  PushReadOnlyProxy(L, -1);
  lua_remove(L, -2);
}

namespace {

// Copies the listed fields of the table at `from` into the table at `to`.
void CopyFields(lua_State* L, int from, int to, std::initializer_list<const char*> names) {
  from = lua_absindex(L, from);
  to = lua_absindex(L, to);
  for (const char* name : names) {
    lua_getfield(L, from, name);
    lua_setfield(L, to, name);
  }
}

}  // namespace

std::string ErrorText(lua_State* L, int index) {
  if (lua_type(L, index) == LUA_TSTRING) {
    size_t n = 0;
    const char* s = lua_tolstring(L, index, &n);
    return std::string(s, std::min<size_t>(n, 4096));
  }
  // Never call __tostring: that would run policy code while handling its error.
  return fmt::format("(error object is a {} value)", luaL_typename(L, index));
}

void* Sandbox::Alloc(void* ud, void* ptr, size_t osize, size_t nsize) {
  auto* self = static_cast<Sandbox*>(ud);
  const size_t old = ptr != nullptr ? osize : 0;
  if (nsize == 0) {
    std::free(ptr);
    self->used_ -= old;
    return nullptr;
  }
  if (self->limited_ && nsize > old &&
      (self->tripped_ == Stop::kMemory ||
       self->used_ + self->charged_ + (nsize - old) > self->limit_)) {
    self->Trip(Stop::kMemory);
    return nullptr;  // Lua raises "not enough memory"
  }
  void* p = std::realloc(ptr, nsize);
  if (p == nullptr) return nullptr;
  self->used_ = self->used_ - old + nsize;
  return p;
}

void Sandbox::Trip(Stop why) {
  if (tripped_ != Stop::kNone) return;
  tripped_ = why;
  // From now on every instruction raises again, so a pcall inside the policy
  // cannot swallow the limit and carry on. (lua_sethook may be called at any
  // time, even from a signal handler; here it may be from the allocator.)
  lua_sethook(L_, CountHook, LUA_MASKCOUNT, 1);
}

void Sandbox::RaiseTripped(lua_State* L) {
  // Under the memory limit pushing the message fails too, which raises
  // "not enough memory": the same error.
  if (tripped_ == Stop::kInstructions) {
    lua_pushliteral(L, "instruction limit exceeded");
  } else if (tripped_ == Stop::kMemory) {
    lua_pushliteral(L, "not enough memory");
  } else {
    lua_pushlstring(L, trip_message_.data(), trip_message_.size());
  }
  lua_error(L);
  std::abort();  // lua_error does not return
}

void Sandbox::CountHook(lua_State* L, lua_Debug* ar) {
  Sandbox* self = Self(L);
  if (!self->armed_) return;
  if (self->tripped_ == Stop::kNone) {
    self->budget_ -= kHookInterval;
    if (self->budget_ >= 0) return;
    self->NoteWhere(L, ar);
    self->Trip(Stop::kInstructions);
  }
  self->RaiseTripped(L);
}

void Sandbox::NoteWhere(lua_State* L, lua_Debug* ar) {
  if (lua_getinfo(L, "Sl", ar) != 0 && ar->currentline > 0) {
    *fmt::format_to_n(trip_where_, sizeof(trip_where_) - 1, "{}:{}", ar->short_src,
                      ar->currentline)
         .out = '\0';
  }
}

void Sandbox::ChargeInstructions(lua_State* L, int64_t n) {
  Sandbox* self = Self(L);
  if (!self->armed_) return;
  if (self->tripped_ == Stop::kNone) {
    self->budget_ -= n;
    if (self->budget_ >= 0) return;
    lua_Debug ar;
    if (lua_getstack(L, 1, &ar) != 0) self->NoteWhere(L, &ar);  // the C function's caller
    self->Trip(Stop::kInstructions);
  }
  self->RaiseTripped(L);
}

bool Sandbox::ChargeMemory(lua_State* L, size_t bytes) {
  Sandbox* self = Self(L);
  if (!self->limited_) return true;
  if (self->tripped_ == Stop::kMemory || self->used_ + self->charged_ + bytes > self->limit_) {
    self->Trip(Stop::kMemory);
    return false;
  }
  self->charged_ += bytes;
  return true;
}

void Sandbox::Abort(lua_State* L, Stop why, std::string message) {
  Sandbox* self = Self(L);
  if (!self->armed_ || self->tripped_ != Stop::kNone) return;
  self->trip_message_ = std::move(message);
  self->Trip(why);
}

Sandbox::Sandbox() {
  L_ = lua_newstate(Alloc, this);
  if (L_ == nullptr) return;
  *static_cast<Sandbox**>(lua_getextraspace(L_)) = this;
  lua_State* L = L_;

  luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
  luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 1);
  luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 1);
  luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 1);
  luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 1);
  luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 1);
  lua_settop(L, 0);

  // string.dump would turn functions into bytecode; remove it from the real
  // table, which strings reach through their metatable.
  lua_getglobal(L, LUA_STRLIBNAME);
  lua_pushnil(L);
  lua_setfield(L, -2, "dump");
  // The pattern functions: the stock ones cannot be interrupted (the count
  // hook never fires inside a C function); ours charge each matching step
  // as one instruction. Strings reach them through their metatable too.
  InstallPatternFunctions(L, -1, [](lua_State* L, int64_t steps) {
    Sandbox::ChargeInstructions(L, steps);
  });
  lua_pop(L, 1);
  // Lock the string metatable: getmetatable("") returns "locked".
  lua_pushliteral(L, "");
  lua_getmetatable(L, -1);
  lua_pushliteral(L, "locked");
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 2);

  lua_newtable(L);  // base: what policies may see
  const int base = lua_gettop(L);
  lua_pushglobaltable(L);
  CopyFields(L, -1, base,
             {"assert", "error", "ipairs", "next", "pairs", "pcall", "rawequal", "rawlen",
              "rawget", "select", "tonumber", "tostring", "type", "xpcall", "getmetatable"});
  lua_pop(L, 1);
  lua_pushcfunction(L, SafeSetMetatable);
  lua_setfield(L, base, "setmetatable");
  lua_pushstring(L, LUA_VERSION);
  lua_setfield(L, base, "_VERSION");

  for (const char* lib : {LUA_STRLIBNAME, LUA_TABLIBNAME, LUA_MATHLIBNAME, LUA_UTF8LIBNAME}) {
    lua_getglobal(L, lib);
    PushReadOnlyProxy(L, -1);
    lua_setfield(L, base, lib);
    lua_pop(L, 1);
  }
  lua_getglobal(L, LUA_TABLIBNAME);
  lua_getfield(L, -1, "unpack");
  lua_setfield(L, base, "unpack");
  lua_pop(L, 1);
  // os: time only.
  lua_newtable(L);
  lua_getglobal(L, LUA_OSLIBNAME);
  CopyFields(L, -1, -2, {"time", "clock", "date", "difftime"});
  lua_pop(L, 1);
  PushReadOnlyProxy(L, -1);
  lua_setfield(L, base, LUA_OSLIBNAME);
  lua_pop(L, 1);

  lua_pushvalue(L, base);
  base_ref_ = luaL_ref(L, LUA_REGISTRYINDEX);  // the mutable base, for SetBaseField
  lua_settop(L, 0);

  lua_sethook(L, CountHook, LUA_MASKCOUNT, kHookInterval);
}

Sandbox::~Sandbox() {
  if (L_ != nullptr) lua_close(L_);
}

void Sandbox::PushBase() { lua_rawgeti(L_, LUA_REGISTRYINDEX, base_ref_); }

void Sandbox::SetBaseField(const char* name) {
  PushBase();
  lua_insert(L_, -2);
  lua_setfield(L_, -2, name);
  lua_pop(L_, 1);
}

Status Sandbox::LoadChunk(std::string_view code, const std::string& chunk_name) {
  lua_State* L = L_;
  const std::string name = "@" + chunk_name;
  // "t": text only; a precompiled (binary) chunk could break the VM.
  if (luaL_loadbufferx(L, code.data(), code.size(), name.c_str(), "t") != LUA_OK) {
    std::string msg = ErrorText(L, -1);
    lua_pop(L, 1);
    // Syntax errors start with "file:line:"; others (a binary chunk) do not.
    if (msg.rfind(chunk_name, 0) != 0) msg = chunk_name + ": " + msg;
    return Status::InvalidArgument(msg);
  }
  // A fresh _ENV: reads fall through to a read-only view of the base.
  lua_newtable(L);              // env
  lua_createtable(L, 0, 2);     // its metatable
  PushBase();
  PushReadOnlyProxy(L, -1);
  lua_remove(L, -2);
  lua_setfield(L, -2, "__index");
  lua_pushliteral(L, "locked");
  lua_setfield(L, -2, "__metatable");
  // Remember the metatable so FreezeChunks can close the environment later.
  if (lua_getfield(L, LUA_REGISTRYINDEX, "bastion.env_metas") != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "bastion.env_metas");
  }
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, static_cast<lua_Integer>(lua_rawlen(L, -2)) + 1);
  lua_pop(L, 1);
  lua_setmetatable(L, -2);
  if (lua_setupvalue(L, -2, 1) == nullptr) lua_pop(L, 1);  // no _ENV upvalue: nothing global
  return Status::OK();
}

void Sandbox::FreezeChunks() {
  lua_State* L = L_;
  if (lua_getfield(L, LUA_REGISTRYINDEX, "bastion.env_metas") == LUA_TTABLE) {
    const lua_Integer n = static_cast<lua_Integer>(lua_rawlen(L, -1));
    for (lua_Integer i = 1; i <= n; ++i) {
      lua_rawgeti(L, -1, i);
      lua_pushcfunction(L, ReadOnlyError);
      lua_setfield(L, -2, "__newindex");
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
}

void Sandbox::Arm(int64_t instructions, size_t memory_bytes) {
  budget_ = instructions;
  instruction_limit_ = instructions;
  armed_ = true;
  tripped_ = Stop::kNone;
  trip_message_.clear();
  trip_where_[0] = '\0';
  charged_ = 0;
  limit_ = used_ + memory_bytes;
  memory_limit_ = memory_bytes;
  limited_ = true;
}

Sandbox::Stop Sandbox::Disarm() {
  armed_ = false;
  limited_ = false;
  charged_ = 0;
  const Stop stop = tripped_;
  if (stop != Stop::kNone) lua_sethook(L_, CountHook, LUA_MASKCOUNT, kHookInterval);
  tripped_ = Stop::kNone;
  return stop;
}

Status Sandbox::Call(int nargs, int64_t instructions, size_t memory_bytes, Stop* stop) {
  Arm(instructions, memory_bytes);
  const int rc = lua_pcall(L_, nargs, 1, 0);
  *stop = Disarm();
  if (rc == LUA_OK && *stop == Stop::kNone) return Status::OK();
  if (rc == LUA_ERRMEM && *stop == Stop::kNone) *stop = Stop::kMemory;
  // The limit's own message: what reached the top may be whatever the
  // policy raised (or returned) after catching it.
  std::string msg;
  switch (*stop) {
    case Stop::kInstructions:
      msg = fmt::format("instruction limit exceeded ({} per evaluation){}{}", instruction_limit_,
                        trip_where_[0] != '\0' ? " at " : "", trip_where_);
      break;
    case Stop::kMemory:
      msg = fmt::format("not enough memory ({} KB per evaluation)", memory_limit_ / 1024);
      break;
    case Stop::kCounters:
      msg = trip_message_;
      break;
    case Stop::kNone:
      msg = ErrorText(L_, -1);
      break;
  }
  lua_pop(L_, 1);
  lua_pushnil(L_);  // keep "one result" on the stack
  return Status::FailedPrecondition(msg);
}

}  // namespace bastion::policy
