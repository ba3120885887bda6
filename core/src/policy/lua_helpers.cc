#include "policy/lua_helpers.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <lua.hpp>

#include "bastion/pii.h"
#include "bastion/glob.h"

namespace bastion::policy {

double Counters::Add(const std::string& key, int64_t window_ns, double amount, int64_t now_ns) {
  Shard& shard = shards_[std::hash<std::string>()(key) % kShards];
  std::lock_guard<std::mutex> lock(shard.mu);
  Window& w = shard.windows[key];
  const int64_t start = now_ns - (now_ns % window_ns);
  if (start != w.start) {
    w.previous = start - w.start == window_ns ? w.current : 0;
    w.current = 0;
    w.start = start;
  }
  w.current += amount;
  const double elapsed = static_cast<double>(now_ns - start) / static_cast<double>(window_ns);
  return w.previous * (1.0 - elapsed) + w.current;
}

namespace {

HelperContext* Ctx(lua_State* L) {
  return static_cast<HelperContext*>(lua_touserdata(L, lua_upvalueindex(1)));
}

std::string_view CheckView(lua_State* L, int index) {
  size_t n = 0;
  const char* s = luaL_checklstring(L, index, &n);
  return {s, n};
}

int GlobMatchFn(lua_State* L) {
  lua_pushboolean(L, GlobMatch(CheckView(L, 1), CheckView(L, 2)));
  return 1;
}

int DomainMatchFn(lua_State* L) {
  lua_pushboolean(L, DomainMatch(CheckView(L, 1), CheckView(L, 2)));
  return 1;
}

int UrlHostFn(lua_State* L) {
  auto host = HostOfUrl(CheckView(L, 1));
  if (host) {
    lua_pushlstring(L, host->data(), host->size());
  } else {
    lua_pushnil(L);
  }
  return 1;
}

// The kinds named by the optional argument at `index`: a name, a list of
// names, or nil for all of them.
PiiKinds KindsArg(lua_State* L, int index) {
  if (lua_isnoneornil(L, index)) return kAllPii;
  auto one = [&](int i) -> PiiKinds {
    size_t n;
    const char* s = luaL_checklstring(L, i, &n);
    auto kind = PiiKindFromName(std::string_view(s, n));
    if (!kind) luaL_error(L, "unknown PII kind '%s'", s);
    return PiiKindBit(*kind);
  };
  if (lua_type(L, index) == LUA_TSTRING) return one(index);
  luaL_checktype(L, index, LUA_TTABLE);
  const int t = PushUnproxied(L, index);  // a list from the bundle's data, too
  PiiKinds kinds = 0;
  const lua_Integer n = static_cast<lua_Integer>(lua_rawlen(L, t));
  for (lua_Integer i = 1; i <= n; ++i) {
    lua_rawgeti(L, t, i);
    kinds |= one(lua_gettop(L));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return kinds;
}

// pii.find(text [, kinds]) -> { {kind=, start=, stop=, text=}, ... } (1-based)
int PiiFind(lua_State* L) {
  const std::string_view text = CheckView(L, 1);
  const std::vector<PiiMatch> matches = FindPii(text, KindsArg(L, 2));
  lua_createtable(L, static_cast<int>(matches.size()), 0);
  for (size_t i = 0; i < matches.size(); ++i) {
    const PiiMatch& m = matches[i];
    lua_createtable(L, 0, 4);
    const std::string_view kind = PiiKindName(m.kind);
    lua_pushlstring(L, kind.data(), kind.size());
    lua_setfield(L, -2, "kind");
    lua_pushinteger(L, static_cast<lua_Integer>(m.start + 1));
    lua_setfield(L, -2, "start");
    lua_pushinteger(L, static_cast<lua_Integer>(m.end));
    lua_setfield(L, -2, "stop");
    lua_pushlstring(L, text.data() + m.start, m.end - m.start);
    lua_setfield(L, -2, "text");
    lua_rawseti(L, -2, static_cast<lua_Integer>(i + 1));
  }
  return 1;
}

int PiiHas(lua_State* L) {
  lua_pushboolean(L, !FindPii(CheckView(L, 1), KindsArg(L, 2)).empty());
  return 1;
}

// pii.mask(text [, kinds [, "label"|"partial"]]) -> masked text, count
int PiiMask(lua_State* L) {
  const std::string_view text = CheckView(L, 1);
  const std::vector<PiiMatch> matches = FindPii(text, KindsArg(L, 2));
  MaskStyle style = MaskStyle::kLabel;
  if (!lua_isnoneornil(L, 3)) {
    const std::string_view s = CheckView(L, 3);
    if (s == "partial") {
      style = MaskStyle::kPartial;
    } else if (s != "label") {
      return luaL_error(L, "mask style must be 'label' or 'partial'");
    }
  }
  const std::string masked = MaskPii(text, matches, style);
  lua_pushlstring(L, masked.data(), masked.size());
  lua_pushinteger(L, static_cast<lua_Integer>(matches.size()));
  return 2;
}

// permissions.check([tool [, operation [, resource [, url]]]]) ->
//   allowed, reason, requires_approval — for the calling agent; omitted
//   arguments default to the current call's.
int PermissionsCheck(lua_State* L) {
  HelperContext* ctx = Ctx(L);
  const CallInfo* call = ctx->views->call;
  if (call == nullptr) return luaL_error(L, "permissions.check outside a hook");
  const Permissions* perms = ctx->bundle->permissions.get();
  if (perms == nullptr) {
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "the bundle has no permissions.yaml");
    lua_pushboolean(L, 0);
    return 3;
  }
  ToolRequest req;
  req.agent_id = call->agent_id;
  req.agent_role = call->agent_role;
  req.tool = lua_isnoneornil(L, 1) ? std::string_view(call->tool) : CheckView(L, 1);
  req.operation = lua_isnoneornil(L, 2) ? std::string_view(call->operation) : CheckView(L, 2);
  req.resource = lua_isnoneornil(L, 3) ? std::string_view(call->resource) : CheckView(L, 3);
  if (!lua_isnoneornil(L, 4)) req.url = CheckView(L, 4);
  const ToolCheck check = perms->CheckTool(req);
  lua_pushboolean(L, check.allowed);
  lua_pushlstring(L, check.reason.data(), check.reason.size());
  lua_pushboolean(L, check.requires_approval);
  return 3;
}

int PermissionsMaxTokens(lua_State* L) {
  HelperContext* ctx = Ctx(L);
  const CallInfo* call = ctx->views->call;
  if (call == nullptr) return luaL_error(L, "permissions.max_tokens outside a hook");
  const Permissions* perms = ctx->bundle->permissions.get();
  std::optional<uint64_t> max;
  if (perms != nullptr) max = perms->MaxTokens(call->agent_id, call->agent_role);
  if (max) {
    lua_pushinteger(L, static_cast<lua_Integer>(*max));
  } else {
    lua_pushnil(L);
  }
  return 1;
}

// counter.add(key, window_seconds [, amount]) -> events in the last window,
// counted across every thread; keys are private to the calling policy.
int CounterAdd(lua_State* L) {
  HelperContext* ctx = Ctx(L);
  if (ctx->policy_id == nullptr) return luaL_error(L, "counter.add outside a hook");
  const std::string_view key = CheckView(L, 1);
  const double window = luaL_checknumber(L, 2);
  const double amount = luaL_optnumber(L, 3, 1.0);
  if (!(window > 0 && window <= 366 * 86400.0)) {
    return luaL_error(L, "counter window must be between 0 and 366 days, in seconds");
  }
  if (!std::isfinite(amount)) return luaL_error(L, "counter amount must be finite");
  const std::string full = *ctx->policy_id + '\0' + std::string(key);
  const double n = ctx->shared->counters.Add(full, static_cast<int64_t>(window * 1e9), amount,
                                             ctx->shared->now_ns());
  lua_pushnumber(L, n);
  return 1;
}

void AddLibrary(lua_State* L, Sandbox* sandbox, HelperContext* ctx, const char* name,
                std::initializer_list<std::pair<const char*, lua_CFunction>> fns) {
  lua_newtable(L);
  for (const auto& [fname, fn] : fns) {
    lua_pushlightuserdata(L, ctx);
    lua_pushcclosure(L, fn, 1);
    lua_setfield(L, -2, fname);
  }
  // Read-only to policies: the base itself is only reachable through a proxy,
  // and each library table is wrapped the same way.
  lua_newtable(L);
  lua_createtable(L, 0, 3);
  lua_pushvalue(L, -3);
  lua_setfield(L, -2, "__index");
  lua_pushliteral(L, "locked");
  lua_setfield(L, -2, "__metatable");
  lua_pushcfunction(L, [](lua_State* L) -> int {
    return luaL_error(L, "attempt to modify a read-only library");
  });
  lua_setfield(L, -2, "__newindex");
  lua_setmetatable(L, -2);
  lua_remove(L, -2);
  sandbox->SetBaseField(name);
}

}  // namespace

void InstallHelpers(lua_State* L, Sandbox* sandbox, HelperContext* ctx) {
  AddLibrary(L, sandbox, ctx, "glob", {{"match", GlobMatchFn}});
  AddLibrary(L, sandbox, ctx, "domain", {{"match", DomainMatchFn}});
  AddLibrary(L, sandbox, ctx, "url", {{"host", UrlHostFn}});
  AddLibrary(L, sandbox, ctx, "pii", {{"find", PiiFind}, {"has", PiiHas}, {"mask", PiiMask}});
  AddLibrary(L, sandbox, ctx, "permissions",
             {{"check", PermissionsCheck}, {"max_tokens", PermissionsMaxTokens}});
  AddLibrary(L, sandbox, ctx, "counter", {{"add", CounterAdd}});
}

void EnforcePermissions(const Permissions& permissions, const HelperContext& ctx,
                        const CallInfo& call, Decision* d) {
  if (call.hook != Hook::kBeforeTool) return;
  PolicyOutcome& outcome = d->explain.emplace_back();
  outcome.policy_id = "permissions";
  outcome.applied = true;
  ToolRequest req;
  req.agent_id = call.agent_id;
  req.agent_role = call.agent_role;
  req.tool = call.tool;
  req.operation = call.operation;
  req.resource = call.resource;
  if (const Value* url = call.args.Find("url"); url && url->type() == Value::Type::kString) {
    req.url = url->as_string();
  }
  const ToolCheck check = permissions.CheckTool(req);
  if (!check.allowed) {
    outcome.effect = Effect::kDeny;
    outcome.message = check.reason;
    return;
  }
  if (!check.rate_limits.empty() &&
      !ctx.shared->rate_limiter.TryAcquire(check.rate_limits, ctx.shared->now_ns())) {
    outcome.effect = Effect::kDeny;
    outcome.message = fmt::format("rate limit of tool '{}' exceeded ({})", call.tool,
                                  check.rate_limits.front().limit.ToString());
    return;
  }
  if (check.requires_approval) {
    outcome.effect = Effect::kRequireApproval;
    outcome.message = check.reason.empty()
                          ? fmt::format("tool '{}' ({}) requires approval", call.tool, call.operation)
                          : check.reason;
    return;
  }
  outcome.effect = Effect::kAllow;
}

}  // namespace bastion::policy
