#include "policy/lua_helpers.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include <fmt/format.h>
#include <lua.hpp>

#include "bastion/pii.h"
#include "bastion/glob.h"
#include "bastion/money.h"

namespace bastion::policy {

Counters::PolicyCounters* Counters::ForPolicy(const std::string& policy) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& pc = policies_[policy];
  if (pc == nullptr) pc = std::make_unique<PolicyCounters>();
  return pc.get();
}

void Counters::Sweep(PolicyCounters* pc, int64_t now_ns) {
  if (now_ns < pc->next_sweep_ns) return;
  int64_t next = INT64_MAX;
  size_t freed = 0;
  for (auto it = pc->windows.begin(); it != pc->windows.end();) {
    // Events older than two windows no longer count.
    const int64_t expires = it->second.start + 2 * it->second.length;
    if (now_ns >= expires) {
      freed += it->first.size() + kKeyOverhead;
      it = pc->windows.erase(it);
    } else {
      next = std::min(next, expires);
      ++it;
    }
  }
  pc->next_sweep_ns = next;
  bytes_.fetch_sub(freed, std::memory_order_relaxed);
}

void Counters::SweepOthers(PolicyCounters* self, int64_t now_ns) {
  std::vector<PolicyCounters*> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    all.reserve(policies_.size());
    for (const auto& [id, pc] : policies_) all.push_back(pc.get());
  }
  // The caller holds its own policy's mutex: another policy's is only tried,
  // so two policies sweeping each other cannot deadlock (one in use now is
  // skipped; its keys are swept by its own next add).
  for (PolicyCounters* pc : all) {
    if (pc == self || !pc->mu.try_lock()) continue;
    Sweep(pc, now_ns);
    pc->mu.unlock();
  }
}

Counters::AddResult Counters::Add(const std::string& policy, std::string_view key,
                                  int64_t window_ns, double amount, int64_t now_ns,
                                  const Limits& limits) {
  AddResult out;
  if (window_ns <= 0) {
    out.error = "counter window must be positive";
    return out;
  }
  if (key.size() > limits.max_key_bytes) {
    out.error = fmt::format(
        "counter key of {} bytes, over the {}-byte limit (limits.counter_key_bytes)", key.size(),
        limits.max_key_bytes);
    return out;
  }
  PolicyCounters* pc = ForPolicy(policy);
  std::lock_guard<std::mutex> lock(pc->mu);
  std::string k(key);
  auto it = pc->windows.find(k);
  if (it == pc->windows.end()) {
    const size_t cost = key.size() + kKeyOverhead;
    if (pc->windows.size() >= limits.max_keys ||
        bytes_.load(std::memory_order_relaxed) + cost > limits.max_bytes) {
      Sweep(pc, now_ns);
    }
    if (bytes_.load(std::memory_order_relaxed) + cost > limits.max_bytes) {
      SweepOthers(pc, now_ns);  // the byte bound is shared by every policy
    }
    if (pc->windows.size() >= limits.max_keys) {
      out.error = fmt::format("policy '{}' holds {} live counter keys, the limit "
                              "(limits.counter_keys)",
                              policy, pc->windows.size());
      return out;
    }
    // Reserve the bytes first, so concurrent adds of other policies cannot
    // pass the bound together.
    if (bytes_.fetch_add(cost, std::memory_order_relaxed) + cost > limits.max_bytes) {
      bytes_.fetch_sub(cost, std::memory_order_relaxed);
      out.error = fmt::format("counters hold {} KB, the limit (limits.counter_memory_kb: {})",
                              bytes_.load(std::memory_order_relaxed) / 1024,
                              limits.max_bytes / 1024);
      return out;
    }
    it = pc->windows.emplace(std::move(k), Window{}).first;
    out.new_bytes = cost;
  }
  Window& w = it->second;
  const int64_t start = now_ns - (now_ns % window_ns);
  if (start != w.start) {
    w.previous = start - w.start == window_ns ? w.current : 0;
    w.current = 0;
    w.start = start;
  }
  w.length = window_ns;
  w.current += amount;
  pc->next_sweep_ns = std::min(pc->next_sweep_ns, w.start + 2 * w.length);
  const double elapsed = static_cast<double>(now_ns - start) / static_cast<double>(window_ns);
  out.ok = true;
  out.count = w.previous * (1.0 - elapsed) + w.current;
  return out;
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

// Lua is built as C and raises errors with longjmp, which skips the
// destructors of every C++ frame it crosses. Helpers that hold C++ objects
// therefore compute into locals without raising, then push their results in
// RunProtected: an error while pushing (the memory limit) returns to the
// helper's frame, whose locals are destroyed normally before the error is
// raised again.
struct Pushed {
  int results = 0;
  bool raise = false;  // the error object is on top of the stack
};

// `push` pushes its results and returns how many, or pushes an error message
// and returns -1. It may only read data owned by the caller's frame.
template <typename F>
Pushed RunProtected(lua_State* L, F& push) {
  struct Call {
    F* push;
    Pushed out;
  } call{&push, {}};
  const lua_CFunction trampoline = [](lua_State* L) -> int {
    auto* c = static_cast<Call*>(lua_touserdata(L, 1));
    lua_remove(L, 1);
    const int n = (*c->push)(L);
    c->out = n < 0 ? Pushed{1, true} : Pushed{n, false};
    return c->out.results;
  };
  lua_pushcfunction(L, trampoline);
  lua_pushlightuserdata(L, &call);
  if (lua_pcall(L, 1, LUA_MULTRET, 0) != LUA_OK) return {1, true};
  return call.out;
}

int Finish(lua_State* L, const Pushed& p) {
  if (p.raise) return lua_error(L);
  return p.results;
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
  const PiiKinds kinds = KindsArg(L, 2);
  Pushed p;
  {
    const std::vector<PiiMatch> matches = FindPii(text, kinds);
    auto push = [&](lua_State* L) -> int {
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
    };
    p = RunProtected(L, push);
  }
  return Finish(L, p);
}

int PiiHas(lua_State* L) {
  const std::string_view text = CheckView(L, 1);
  const PiiKinds kinds = KindsArg(L, 2);
  lua_pushboolean(L, !FindPii(text, kinds).empty());
  return 1;
}

// pii.mask(text [, kinds [, "label"|"partial"]]) -> masked text, count
int PiiMask(lua_State* L) {
  const std::string_view text = CheckView(L, 1);
  const PiiKinds kinds = KindsArg(L, 2);
  MaskStyle style = MaskStyle::kLabel;
  if (!lua_isnoneornil(L, 3)) {
    const std::string_view s = CheckView(L, 3);
    if (s == "partial") {
      style = MaskStyle::kPartial;
    } else if (s != "label") {
      return luaL_error(L, "mask style must be 'label' or 'partial'");
    }
  }
  Pushed p;
  {
    const std::vector<PiiMatch> matches = FindPii(text, kinds);
    const std::string masked = MaskPii(text, matches, style);
    auto push = [&](lua_State* L) -> int {
      lua_pushlstring(L, masked.data(), masked.size());
      lua_pushinteger(L, static_cast<lua_Integer>(matches.size()));
      return 2;
    };
    p = RunProtected(L, push);
  }
  return Finish(L, p);
}

// What the permissions check of `call` asks: its agent, tool, operation,
// resource and (for a tool that fetches) the `url` argument.
ToolRequest ToolRequestOf(const CallInfo& call) {
  ToolRequest req;
  req.agent_id = call.agent_id;
  req.agent_role = call.agent_role;
  req.tool = call.tool;
  req.operation = call.operation;
  req.resource_id = call.resource_id;
  if (const Value* url = call.args.Find("url"); url && url->type() == Value::Type::kString) {
    req.url = url->as_string();
  }
  return req;
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
  ToolRequest req = ToolRequestOf(*call);
  if (!lua_isnoneornil(L, 1)) req.tool = CheckView(L, 1);
  if (!lua_isnoneornil(L, 2)) req.operation = CheckView(L, 2);
  if (!lua_isnoneornil(L, 3)) req.resource_id = CheckView(L, 3);
  req.url = lua_isnoneornil(L, 4) ? std::string_view() : CheckView(L, 4);
  Pushed p;
  {
    const ToolCheck check = perms->CheckTool(req);
    auto push = [&](lua_State* L) -> int {
      lua_pushboolean(L, check.allowed);
      lua_pushlstring(L, check.reason.data(), check.reason.size());
      lua_pushboolean(L, check.requires_approval);
      return 3;
    };
    p = RunProtected(L, push);
  }
  return Finish(L, p);
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
// counted across every thread; keys are private to the calling policy. A new
// key is charged to the evaluation's memory; past a counter bound the
// evaluation stops (counter_limit), whatever the policy catches.
int CounterAdd(lua_State* L) {
  HelperContext* ctx = Ctx(L);
  if (ctx->policy_id == nullptr) return luaL_error(L, "counter.add outside a hook");
  const std::string_view key = CheckView(L, 1);
  const double window = luaL_checknumber(L, 2);
  const double amount = luaL_optnumber(L, 3, 1.0);
  if (!(window >= 0.001 && window <= 366 * 86400.0)) {
    return luaL_error(L, "counter window must be between 1 ms and 366 days, in seconds");
  }
  if (!std::isfinite(amount)) return luaL_error(L, "counter amount must be finite");
  bool ok = false, charged = true;
  double n = 0;
  {
    const PolicyLimits& limits = ctx->bundle->limits;
    Counters::AddResult r = ctx->shared->counters.Add(
        *ctx->policy_id, key, static_cast<int64_t>(window * 1e9), amount, ctx->shared->NowNs(),
        {limits.counter_keys, limits.counter_key_bytes, limits.counter_memory_bytes});
    ok = r.ok;
    n = r.count;
    if (!ok) {
      Sandbox::Abort(L, Sandbox::Stop::kCounters, "counter.add: " + r.error);
    } else if (r.new_bytes > 0) {
      charged = Sandbox::ChargeMemory(L, r.new_bytes);
    }
  }
  // No C++ object is alive past this point: raising is safe.
  if (!ok) return luaL_error(L, "counter limit exceeded");
  if (!charged) return luaL_error(L, "not enough memory");
  lua_pushnumber(L, n);
  return 1;
}

// --- budget, slo, cost: read-only views of the attached PolicyState ---

// Lua numbers are doubles: amounts cross into policies as USD, read-only.
double Usd(NanoUsd amount) { return UsdFromNanoUsd(amount); }

struct StateCall {
  std::shared_ptr<const PolicyState> state;
  const CallInfo* call = nullptr;
};

// The attached state and the current call; never raises.
Result<StateCall> LookupState(lua_State* L, const char* fn) {
  HelperContext* ctx = Ctx(L);
  StateCall out{ctx->shared->State(), ctx->views->call};
  if (out.call == nullptr) return Status::FailedPrecondition(fmt::format("{} outside a hook", fn));
  if (out.state == nullptr) {
    return Status::FailedPrecondition(
        fmt::format("{}: no budgets, SLOs or prices are attached", fn));
  }
  return out;
}

std::string_view OptView(lua_State* L, int index) {
  return lua_isnoneornil(L, index) ? std::string_view() : CheckView(L, index);
}

int PushError(lua_State* L, const Status& s) {
  lua_pushlstring(L, s.message().data(), s.message().size());
  return -1;
}

void SetNumber(lua_State* L, const char* field, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, field);
}

void SetString(lua_State* L, const char* field, std::string_view v) {
  lua_pushlstring(L, v.data(), v.size());
  lua_setfield(L, -2, field);
}

Result<PolicyState::BudgetView> QueryBudget(lua_State* L, const char* fn, std::string_view id,
                                            std::string_view key) {
  auto sc = LookupState(L, fn);
  if (!sc.ok()) return sc.status();
  return sc->state->Budget(id, key, *sc->call);
}

// budget.get(id [, key]) -> {limit, admissible, spent, reserved, remaining
// (USD), used (fraction of the limit committed), key, window}
int BudgetGet(lua_State* L) {
  const std::string_view id = CheckView(L, 1);
  const std::string_view key = OptView(L, 2);
  Pushed p;
  {
    const auto b = QueryBudget(L, "budget.get", id, key);
    auto push = [&](lua_State* L) -> int {
      if (!b.ok()) return PushError(L, b.status());
      lua_createtable(L, 0, 8);
      SetNumber(L, "limit", Usd(b->limit_nanousd));
      SetNumber(L, "admissible", Usd(b->admissible_nanousd));
      SetNumber(L, "spent", Usd(b->spent_nanousd));
      SetNumber(L, "reserved", Usd(b->reserved_nanousd));
      SetNumber(L, "remaining", Usd(b->remaining_nanousd));
      SetNumber(L, "used",
                b->limit_nanousd > 0
                    ? static_cast<double>(b->spent_nanousd + b->reserved_nanousd) /
                          static_cast<double>(b->limit_nanousd)
                    : 0.0);
      SetString(L, "key", b->key);
      SetString(L, "window", b->window);
      return 1;
    };
    p = RunProtected(L, push);
  }
  return Finish(L, p);
}

// budget.remaining(id [, key]) -> USD left to admit in the current window
int BudgetRemaining(lua_State* L) {
  const std::string_view id = CheckView(L, 1);
  const std::string_view key = OptView(L, 2);
  Pushed p;
  {
    const auto b = QueryBudget(L, "budget.remaining", id, key);
    auto push = [&](lua_State* L) -> int {
      if (!b.ok()) return PushError(L, b.status());
      lua_pushnumber(L, Usd(b->remaining_nanousd));
      return 1;
    };
    p = RunProtected(L, push);
  }
  return Finish(L, p);
}

Result<PolicyState::SloView> QuerySlo(lua_State* L, const char* fn, std::string_view id,
                                      std::string_view subject) {
  auto sc = LookupState(L, fn);
  if (!sc.ok()) return sc.status();
  return sc->state->Slo(id, subject, *sc->call);
}

// slo.get(id [, subject]) -> {subject, calls, success_rate, target,
// error_budget_remaining, p50_ms, p95_ms, p99_ms, breaker, firing = {...},
// cost_today}
int SloGet(lua_State* L) {
  const std::string_view id = CheckView(L, 1);
  const std::string_view subject = OptView(L, 2);
  Pushed p;
  {
    const auto v = QuerySlo(L, "slo.get", id, subject);
    auto push = [&](lua_State* L) -> int {
      if (!v.ok()) return PushError(L, v.status());
      lua_createtable(L, 0, 11);
      SetString(L, "subject", v->subject);
      lua_pushinteger(L, static_cast<lua_Integer>(v->calls));
      lua_setfield(L, -2, "calls");
      SetNumber(L, "success_rate", v->success_rate);
      SetNumber(L, "target", v->target);
      SetNumber(L, "error_budget_remaining", v->error_budget_remaining);
      SetNumber(L, "p50_ms", v->p50_ns / 1e6);
      SetNumber(L, "p95_ms", v->p95_ns / 1e6);
      SetNumber(L, "p99_ms", v->p99_ns / 1e6);
      SetString(L, "breaker", v->breaker);
      SetNumber(L, "cost_today", Usd(v->cost_today_nanousd));
      lua_createtable(L, static_cast<int>(v->firing.size()), 0);
      for (size_t i = 0; i < v->firing.size(); ++i) {
        lua_pushlstring(L, v->firing[i].data(), v->firing[i].size());
        lua_rawseti(L, -2, static_cast<lua_Integer>(i + 1));
      }
      lua_setfield(L, -2, "firing");
      return 1;
    };
    p = RunProtected(L, push);
  }
  return Finish(L, p);
}

// slo.burn_rate(id, window_seconds [, subject]) -> error-budget burn rate
int SloBurnRate(lua_State* L) {
  const std::string_view id = CheckView(L, 1);
  const double window = luaL_checknumber(L, 2);
  const std::string_view subject = OptView(L, 3);
  if (!(window >= 1 && window <= 400 * 86400.0)) {
    return luaL_error(L, "slo.burn_rate: window must be between 1 second and 400 days");
  }
  Pushed p;
  {
    Result<double> rate = [&]() -> Result<double> {
      auto sc = LookupState(L, "slo.burn_rate");
      if (!sc.ok()) return sc.status();
      return sc->state->BurnRate(id, subject, static_cast<int64_t>(window * 1e9), *sc->call);
    }();
    auto push = [&](lua_State* L) -> int {
      if (!rate.ok()) return PushError(L, rate.status());
      lua_pushnumber(L, *rate);
      return 1;
    };
    p = RunProtected(L, push);
  }
  return Finish(L, p);
}

// slo.breaker(id [, subject]) -> "closed" | "open" | "half-open"
int SloBreaker(lua_State* L) {
  const std::string_view id = CheckView(L, 1);
  const std::string_view subject = OptView(L, 2);
  Pushed p;
  {
    const auto v = QuerySlo(L, "slo.breaker", id, subject);
    auto push = [&](lua_State* L) -> int {
      if (!v.ok()) return PushError(L, v.status());
      if (v->breaker.empty()) {
        lua_pushfstring(L, "slo.breaker: SLO '%s' has no circuit breaker", lua_tostring(L, 1));
        return -1;
      }
      lua_pushlstring(L, v->breaker.data(), v->breaker.size());
      return 1;
    };
    p = RunProtected(L, push);
  }
  return Finish(L, p);
}

// cost.estimate(model, input_tokens, output_tokens) -> USD, or nil when the
// model has no price
int CostEstimate(lua_State* L) {
  const std::string_view model = CheckView(L, 1);
  const lua_Integer in = luaL_checkinteger(L, 2);
  const lua_Integer out = luaL_checkinteger(L, 3);
  if (in < 0 || out < 0) return luaL_error(L, "cost.estimate: token counts must be >= 0");
  Pushed p;
  {
    Result<int64_t> cost = [&]() -> Result<int64_t> {
      auto sc = LookupState(L, "cost.estimate");
      if (!sc.ok()) return sc.status();
      return sc->state->Price(model, in, out);
    }();
    auto push = [&](lua_State* L) -> int {
      if (cost.ok()) {
        lua_pushnumber(L, Usd(*cost));
      } else if (cost.status().IsNotFound()) {
        lua_pushnil(L);
      } else {
        return PushError(L, cost.status());
      }
      return 1;
    };
    p = RunProtected(L, push);
  }
  return Finish(L, p);
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
  AddLibrary(L, sandbox, ctx, "budget", {{"get", BudgetGet}, {"remaining", BudgetRemaining}});
  AddLibrary(L, sandbox, ctx, "slo",
             {{"get", SloGet}, {"burn_rate", SloBurnRate}, {"breaker", SloBreaker}});
  AddLibrary(L, sandbox, ctx, "cost", {{"estimate", CostEstimate}});
}

std::optional<PolicyOutcome> CheckToolPermissions(const Permissions& permissions,
                                                  SharedState* shared, const CallInfo& call) {
  if (call.hook != Hook::kBeforeTool) return std::nullopt;
  PolicyOutcome outcome;
  outcome.policy_id = "permissions";
  outcome.applied = true;
  const ToolRequest req = ToolRequestOf(call);
  const ToolCheck check = permissions.CheckTool(req);
  if (!check.allowed) {
    outcome.effect = Effect::kDeny;
    outcome.message = check.reason;
    return outcome;
  }
  if (!check.rate_limits.empty()) {
    size_t refused = 0;
    Result<bool> taken = shared->rate_limits != nullptr
                             ? shared->rate_limits->Acquire(check.rate_limits, shared->NowNs(),
                                                            &refused)
                             : Result<bool>(shared->rate_limiter.TryAcquire(
                                   check.rate_limits, shared->NowNs()));
    if (!taken.ok()) {  // fail closed
      outcome.effect = Effect::kDeny;
      outcome.failed = true;
      outcome.message = fmt::format("rate limit of tool '{}' could not be checked: {}", call.tool,
                                    taken.status().message());
      return outcome;
    }
    if (!*taken) {
      outcome.effect = Effect::kDeny;
      outcome.message = fmt::format(
          "rate limit of tool '{}' exceeded ({})", call.tool,
          check.rate_limits[std::min(refused, check.rate_limits.size() - 1)].limit.ToString());
      return outcome;
    }
  }
  if (check.requires_approval) {
    outcome.effect = Effect::kRequireApproval;
    outcome.message = check.reason.empty()
                          ? fmt::format("tool '{}' ({}) requires approval", call.tool, call.operation)
                          : check.reason;
  } else {
    outcome.effect = Effect::kAllow;
  }
  return outcome;
}

}  // namespace bastion::policy
