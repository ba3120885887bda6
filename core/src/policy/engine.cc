#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include <fmt/format.h>
#include <lua.hpp>

#include "bastion/policy.h"
#include "policy/bundle.h"
#include "policy/call_view.h"
#include "policy/lua_helpers.h"
#include "policy/lua_sandbox.h"
#include "util/path_arg.h"
#include "bastion/glob.h"

namespace bastion {

// --- names -------------------------------------------------------------------

namespace {
constexpr std::array<std::string_view, kHookCount> kHookNames = {
    "before_model", "after_model", "before_tool", "after_tool",
    "on_chunk",     "on_run_start", "on_run_end"};
}  // namespace

std::string_view HookName(Hook h) { return kHookNames[static_cast<size_t>(h)]; }

std::optional<Hook> HookFromName(std::string_view name) {
  for (size_t i = 0; i < kHookNames.size(); ++i) {
    if (kHookNames[i] == name) return static_cast<Hook>(i);
  }
  return std::nullopt;
}

// --- redactions --------------------------------------------------------------

std::string ApplyRedactions(std::string_view text, const std::vector<Redaction>& redactions,
                            std::string_view target) {
  std::vector<const Redaction*> spans;
  for (const Redaction& r : redactions) {
    if (r.target == target && r.start < r.end && r.start < text.size()) spans.push_back(&r);
  }
  if (spans.empty()) return std::string(text);
  std::sort(spans.begin(), spans.end(),
            [](const Redaction* a, const Redaction* b) { return a->start < b->start; });
  // Never cut a UTF-8 sequence: widen spans to character boundaries.
  auto is_cont = [&](size_t i) {
    return i < text.size() && (static_cast<unsigned char>(text[i]) & 0xC0) == 0x80;
  };
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  for (size_t i = 0; i < spans.size();) {
    size_t start = spans[i]->start;
    size_t end = std::min(spans[i]->end, text.size());
    const std::string& label = spans[i]->label;
    for (++i; i < spans.size() && spans[i]->start < end; ++i) {
      end = std::max(end, std::min(spans[i]->end, text.size()));
    }
    while (start > 0 && is_cont(start)) --start;
    while (is_cont(end)) ++end;
    if (start < pos) start = pos;  // widened into the previous span
    out.append(text.substr(pos, start - pos));
    out.append(label);
    pos = std::max(pos, end);
  }
  out.append(text.substr(std::min(pos, text.size())));
  return out;
}

namespace policy {
namespace {

// Decision constructors and small conveniences, in Lua, installed into the
// base environment before any policy loads.
constexpr std::string_view kPrelude = R"lua(
-- xpcall's message handler would run inside the error path, where Lua
-- disables hooks (so no instruction limit): call the handler after unwinding.
local pcall, pack, unpack = pcall, table.pack, table.unpack
function xpcall(f, handler, ...)
  local results = pack(pcall(f, ...))
  if results[1] then return unpack(results, 1, results.n) end
  local ok, handled = pcall(handler, results[2])
  return false, handled  -- like Lua, a failing handler's error becomes the result
end

local function decision(effect, message, fields)
  local d = fields or {}
  d.effect = effect
  if message ~= nil then d.message = tostring(message) end
  return d
end
function allow(message) return decision("allow", message) end
function deny(message) return decision("deny", message or "denied by policy") end
function require_approval(message)
  return decision("require_approval", message or "needs a human's approval")
end
function redact(hits, message, opts)
  opts = opts or {}
  return decision("modify", message or "redacted", {redact = hits, target = opts.target,
                                                    label = opts.label})
end
function downgrade(model, message)
  return decision("modify", message or ("model downgraded to " .. tostring(model)),
                  {downgrade = model})
end
function modify(t)
  t = t or {}
  t.effect = "modify"
  return t
end
function annotate(key, value)
  return decision("allow", nil, {annotations = {[key] = value}})
end
)lua";

struct Scope {
  std::vector<std::string> agents, roles, tools, models, tenants;
  static bool Any(const std::vector<std::string>& globs, std::string_view v) {
    if (globs.empty()) return true;
    for (const auto& g : globs) {
      if (GlobMatch(g, v)) return true;
    }
    return false;
  }
  bool Matches(const CallInfo& c) const {
    return Any(agents, c.agent_id) && Any(roles, c.agent_role) &&
           (tools.empty() || (!c.tool.empty() && Any(tools, c.tool))) &&
           (models.empty() || (!c.model.empty() && Any(models, c.model))) &&
           Any(tenants, c.tenant_id);
  }
};

struct Slot {
  std::string id;
  std::string file;
  std::array<int, kHookCount> refs;
  Scope scope;
  std::optional<bool> fail_open;
};

// Raw (metamethod-free) field access on the table at `index`.
int RawField(lua_State* L, int index, const char* key) {
  lua_pushstring(L, key);
  return lua_rawget(L, index < 0 ? index - 1 : index);
}

// Reads a policy's scope, the table at `index` (or bundle data): each
// dimension a glob or a non-empty list of globs. Anything else is a load error
// naming the policy and the field: a glob that cannot match, or a value the
// scope cannot read, would otherwise turn the policy off without a word.
Status ReadScope(lua_State* L, int index, const std::string& where, std::string_view code,
                 const std::string& id, Scope* scope) {
  auto error = [&](std::string_view field, std::string_view glob, std::string_view what) {
    const int line = policy::ScopeLine(code, glob);
    return Status::InvalidArgument(fmt::format("{}{}: policy '{}': {}{}{}", where,
                                               line > 0 ? fmt::format(":{}", line) : "", id,
                                               field, field.empty() ? "" : ": ", what));
  };
  auto add = [&](std::string_view field, std::string glob, std::vector<std::string>* list) {
    if (glob.empty()) return error(field, glob, "empty glob");
    if (Status s = ValidateGlob(glob); !s.ok()) {
      return error(field, glob, fmt::format("invalid glob '{}': {}", glob, s.message()));
    }
    list->push_back(std::move(glob));
    return Status::OK();
  };
  auto text = [&](int i) {
    size_t n = 0;
    const char* s = lua_tolstring(L, i, &n);
    return std::string(s, n);
  };
  if (lua_type(L, index) != LUA_TTABLE) {
    return error("scope", "", fmt::format("expected a table, found a {}", luaL_typename(L, index)));
  }
  const int sc = PushUnproxied(L, index);  // scope = data.scope
  lua_pushnil(L);
  while (lua_next(L, sc) != 0) {
    const std::string dim = lua_type(L, -2) == LUA_TSTRING ? text(-2) : "";
    std::vector<std::string>* list = dim == "agents"    ? &scope->agents
                                     : dim == "roles"   ? &scope->roles
                                     : dim == "tools"   ? &scope->tools
                                     : dim == "models"  ? &scope->models
                                     : dim == "tenants" ? &scope->tenants
                                                        : nullptr;
    if (list == nullptr) {
      const std::string key = lua_type(L, -2) == LUA_TSTRING
                                  ? fmt::format("'{}'", dim)
                                  : fmt::format("a {} key", luaL_typename(L, -2));
      return error("", "", fmt::format("unknown scope {} (expected agents, roles, tools, "
                                       "models, tenants)", key));
    }
    const std::string field = "scope." + dim;
    if (lua_type(L, -1) == LUA_TSTRING) {
      BASTION_RETURN_IF_ERROR(add(field, text(-1), list));
    } else if (lua_type(L, -1) == LUA_TTABLE) {
      const int t = PushUnproxied(L, -1);  // tools = data.network.url_tools
      const lua_Integer n = static_cast<lua_Integer>(lua_rawlen(L, t));
      lua_Integer keys = 0;
      lua_pushnil(L);
      while (lua_next(L, t) != 0) {
        ++keys;
        lua_pop(L, 1);
      }
      if (keys == 0) {
        return error(field, "", fmt::format("empty list (omit '{}' to leave it unrestricted)",
                                            dim));
      }
      if (keys != n) {
        return error(field, "", "expected a list of globs, found a table that is not a list");
      }
      for (lua_Integer i = 1; i <= n; ++i) {
        const std::string item = fmt::format("{}[{}]", field, i);
        if (lua_rawgeti(L, t, i) != LUA_TSTRING) {
          return error(item, "", fmt::format("expected a glob, found a {}", luaL_typename(L, -1)));
        }
        BASTION_RETURN_IF_ERROR(add(item, text(-1), list));
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    } else {
      return error(field, "", fmt::format("expected a glob or a list of globs, found a {}",
                                          luaL_typename(L, -1)));
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return Status::OK();
}

}  // namespace

// One thread's Lua state with a bundle loaded into it.
class Worker {
 public:
  static Result<std::unique_ptr<Worker>> Build(std::shared_ptr<const CompiledBundle> bundle,
                                               SharedState* shared);
  // The Lua policies' decision, after the permissions check when
  // `with_permissions`.
  Decision Evaluate(const CallInfo& call, bool with_permissions);
  std::vector<std::string> policy_ids() const {
    std::vector<std::string> ids;
    for (const Slot& s : slots_) ids.push_back(s.id);
    return ids;
  }
  uint64_t epoch = 0;

 private:
  Worker() = default;
  Status LoadPolicy(const std::string& file, const std::string& code);
  // Reads the decision table at the top of the stack into `out`.
  Status ReadDecision(const Slot& slot, Hook hook, PolicyOutcome* outcome, Decision* d,
                      std::string* risk);
  void Fail(const Slot& slot, std::string kind, std::string message, PolicyOutcome* outcome,
            Decision* d);

  Sandbox sandbox_;
  ViewContext ctx_;
  HelperContext helpers_;
  std::shared_ptr<const CompiledBundle> bundle_;
  std::vector<Slot> slots_;
};

Result<std::unique_ptr<Worker>> Worker::Build(std::shared_ptr<const CompiledBundle> bundle,
                                              SharedState* shared) {
  auto w = std::unique_ptr<Worker>(new Worker());
  if (!w->sandbox_.ok()) return Status::Internal("cannot create a Lua state (out of memory)");
  w->bundle_ = std::move(bundle);
  lua_State* L = w->sandbox_.L();
  InstallViews(L, &w->ctx_);
  w->helpers_.shared = shared;
  w->helpers_.bundle = w->bundle_.get();
  w->helpers_.views = &w->ctx_;
  InstallHelpers(L, &w->sandbox_, &w->helpers_);
  // The prelude runs with the mutable base as its environment.
  if (luaL_loadbufferx(L, kPrelude.data(), kPrelude.size(), "=prelude", "t") != LUA_OK) {
    return Status::Internal("prelude: " + ErrorText(L, -1));
  }
  w->sandbox_.PushBase();
  lua_setupvalue(L, -2, 1);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) return Status::Internal("prelude: " + ErrorText(L, -1));
  PushFrozenValue(L, w->bundle_->data);
  w->sandbox_.SetBaseField("data");

  for (const auto& [file, code] : w->bundle_->sources) {
    BASTION_RETURN_IF_ERROR(w->LoadPolicy(file, code));
  }
  for (size_t i = 0; i < w->slots_.size(); ++i) {
    if (w->slots_[i].id == "permissions" || w->slots_[i].id == "bastion") {
      return Status::InvalidArgument(fmt::format(
          "{}/{}: policy id '{}' is reserved for the engine's own checks", w->bundle_->name,
          w->slots_[i].file, w->slots_[i].id));
    }
    for (size_t j = 0; j < i; ++j) {
      if (w->slots_[i].id == w->slots_[j].id) {
        return Status::InvalidArgument(fmt::format(
            "{}/{}: policy id '{}' is already used by {}", w->bundle_->name, w->slots_[i].file,
            w->slots_[i].id, w->slots_[j].file));
      }
    }
  }
  w->sandbox_.FreezeChunks();  // from here on, policies' globals are read-only
  lua_settop(L, 0);
  lua_gc(L, LUA_GCCOLLECT, 0);
  return w;
}

Status Worker::LoadPolicy(const std::string& file, const std::string& code) {
  lua_State* L = sandbox_.L();
  const std::string where = bundle_->name.empty() ? file : bundle_->name + "/" + file;
  BASTION_RETURN_IF_ERROR(sandbox_.LoadChunk(code, where));
  // Loading runs the chunk once, under the same limits as a call.
  Sandbox::Stop stop;
  Status s = sandbox_.Call(0, bundle_->limits.instructions, bundle_->limits.memory_bytes, &stop);
  if (!s.ok()) {
    // Errors raised by the code say "file:line:"; a limit's message may not.
    if (s.message().rfind(where, 0) == 0) return Status::InvalidArgument(s.message());
    return Status::InvalidArgument(where + ": " + std::string(s.message()));
  }
  if (lua_type(L, -1) != LUA_TTABLE) {
    return Status::InvalidArgument(fmt::format(
        "{}: the file must return a policy table (got {})", where, luaL_typename(L, -1)));
  }
  const int t = lua_gettop(L);
  Slot slot;
  slot.file = file;
  slot.refs.fill(LUA_NOREF);
  // Every key must be known: a misspelt hook would otherwise never run.
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING) {
      return Status::InvalidArgument(where + ": policy table keys must be strings");
    }
    const std::string key = lua_tostring(L, -2);
    if (auto hook = HookFromName(key)) {
      if (lua_type(L, -1) != LUA_TFUNCTION) {
        return Status::InvalidArgument(
            fmt::format("{}: '{}' must be a function, not a {}", where, key, luaL_typename(L, -1)));
      }
      lua_pushvalue(L, -1);
      slot.refs[static_cast<size_t>(*hook)] = luaL_ref(L, LUA_REGISTRYINDEX);
    } else if (key == "id") {
      if (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) == 0) {
        return Status::InvalidArgument(where + ": 'id' must be a non-empty string");
      }
      slot.id = lua_tostring(L, -1);
    } else if (key == "fail_open") {
      if (lua_type(L, -1) != LUA_TBOOLEAN) {
        return Status::InvalidArgument(where + ": 'fail_open' must be true or false");
      }
      slot.fail_open = lua_toboolean(L, -1);
    } else if (key == "scope") {
      // Read once the id is known, for its errors.
    } else if (key != "description") {
      return Status::InvalidArgument(fmt::format(
          "{}: unknown field '{}' (expected id, description, scope, fail_open, or a hook: "
          "before_model, after_model, before_tool, after_tool, on_chunk, on_run_start, "
          "on_run_end)",
          where, key));
    }
    lua_pop(L, 1);
  }
  if (slot.id.empty()) slot.id = file.substr(0, file.size() - (file.ends_with(".lua") ? 4 : 0));
  if (RawField(L, t, "scope") != LUA_TNIL) {
    BASTION_RETURN_IF_ERROR(ReadScope(L, -1, where, code, slot.id, &slot.scope));
  }
  lua_pop(L, 1);
  if (std::all_of(slot.refs.begin(), slot.refs.end(), [](int r) { return r == LUA_NOREF; })) {
    return Status::InvalidArgument(where + ": the policy implements no hook");
  }
  lua_settop(L, 0);
  slots_.push_back(std::move(slot));
  return Status::OK();
}

void Worker::Fail(const Slot& slot, std::string kind, std::string message,
                  PolicyOutcome* outcome, Decision* d) {
  outcome->failed = true;
  const bool open = slot.fail_open.value_or(bundle_->fail_open);
  if (!open) {
    outcome->effect = Effect::kDeny;
    outcome->message = fmt::format("policy '{}' failed ({}): {}", slot.id, kind, message);
  }
  d->errors.push_back({slot.id, std::move(kind), std::move(message)});
}

Status Worker::ReadDecision(const Slot& slot, Hook hook, PolicyOutcome* outcome, Decision* d,
                            std::string* risk) {
  lua_State* L = sandbox_.L();
  const int t = lua_gettop(L);
  if (lua_type(L, t) == LUA_TNIL) return Status::OK();  // no opinion
  if (lua_type(L, t) != LUA_TTABLE) {
    return Status::InvalidArgument(fmt::format(
        "returned a {}; return nil or a decision (allow, deny, require_approval, redact, ...)",
        luaL_typename(L, t)));
  }
  if (RawField(L, t, "effect") != LUA_TSTRING) {
    return Status::InvalidArgument("returned a table without an 'effect' string");
  }
  auto effect = EffectFromName(lua_tostring(L, -1));
  if (!effect) {
    return Status::InvalidArgument(fmt::format("returned an unknown effect '{}'",
                                               ErrorText(L, -1).substr(0, 64)));
  }
  lua_pop(L, 1);
  outcome->effect = *effect;
  if (RawField(L, t, "message") == LUA_TSTRING) outcome->message = lua_tostring(L, -1);
  lua_pop(L, 1);
  if (RawField(L, t, "risk") == LUA_TSTRING) *risk = lua_tostring(L, -1);
  lua_pop(L, 1);
  if (RawField(L, t, "downgrade") == LUA_TSTRING && !d->model_downgrade) {
    d->model_downgrade = lua_tostring(L, -1);
  }
  lua_pop(L, 1);
  if (RawField(L, t, "annotations") == LUA_TTABLE) {
    const int a = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, a) != 0) {
      if (lua_type(L, -2) == LUA_TSTRING &&
          (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER ||
           lua_type(L, -1) == LUA_TBOOLEAN)) {
        std::string v = lua_type(L, -1) == LUA_TBOOLEAN ? (lua_toboolean(L, -1) ? "true" : "false")
                                                        : std::string(lua_tostring(L, -1));
        d->annotations.emplace_back(lua_tostring(L, -2), std::move(v));
      }
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  // Redactions: one hit {start=, stop=} or a list of them; 1-based, inclusive
  // offsets as string.find returns them.
  std::string target;
  if (RawField(L, t, "target") == LUA_TSTRING) target = lua_tostring(L, -1);
  lua_pop(L, 1);
  if (target.empty()) {
    target = hook == Hook::kOnChunk                                ? "chunk"
             : (hook == Hook::kAfterModel || hook == Hook::kAfterTool) ? "output"
                                                                       : "input";
  }
  std::string label;
  if (RawField(L, t, "label") == LUA_TSTRING) label = lua_tostring(L, -1);
  lua_pop(L, 1);
  if (RawField(L, t, "redact") == LUA_TTABLE) {
    const int r = lua_gettop(L);
    auto read_hit = [&](int h) -> Status {
      lua_Integer start = 0, stop = 0;
      if (RawField(L, h, "start") == LUA_TNUMBER) start = lua_tointeger(L, -1);
      lua_pop(L, 1);
      if (RawField(L, h, "stop") == LUA_TNUMBER) stop = lua_tointeger(L, -1);
      lua_pop(L, 1);
      if (start < 1 || stop < start) {
        return Status::InvalidArgument(
            fmt::format("redaction span {}..{} is not a 1-based, inclusive range", start, stop));
      }
      Redaction red;
      red.target = target;
      red.start = static_cast<size_t>(start - 1);
      red.end = static_cast<size_t>(stop);
      red.policy_id = slot.id;
      if (RawField(L, h, "label") == LUA_TSTRING) {
        red.label = lua_tostring(L, -1);
      } else if (!label.empty()) {
        red.label = label;
      } else {
        std::string kind = "REDACTED";
        if (RawField(L, h, "kind") == LUA_TSTRING) {
          kind = lua_tostring(L, -1);
          std::transform(kind.begin(), kind.end(), kind.begin(), ::toupper);
        }
        lua_pop(L, 1);
        red.label = "[" + kind + "]";
      }
      lua_pop(L, 1);
      d->redactions.push_back(std::move(red));
      return Status::OK();
    };
    if (RawField(L, r, "start") != LUA_TNIL) {
      lua_pop(L, 1);
      BASTION_RETURN_IF_ERROR(read_hit(r));
    } else {
      lua_pop(L, 1);
      const lua_Integer n = static_cast<lua_Integer>(lua_rawlen(L, r));
      for (lua_Integer i = 1; i <= n; ++i) {
        if (lua_rawgeti(L, r, i) != LUA_TTABLE) {
          return Status::InvalidArgument(fmt::format("redact[{}] is not a table", i));
        }
        BASTION_RETURN_IF_ERROR(read_hit(lua_gettop(L)));
        lua_pop(L, 1);
      }
    }
  }
  lua_pop(L, 1);
  return Status::OK();
}

Decision Worker::Evaluate(const CallInfo& call, bool with_permissions) {
  lua_State* L = sandbox_.L();
  Decision d = Decision::DefaultAllow();
  d.policy_version = bundle_->version;
  d.explain.reserve(slots_.size() + 1);
  std::string risk = call.risk_level;
  const size_t hook_index = static_cast<size_t>(call.hook);
  ctx_.call = &call;
  ++ctx_.generation;

  if (with_permissions && bundle_->permissions) {
    if (auto vote = CheckToolPermissions(*bundle_->permissions, helpers_.shared, call)) {
      if (vote->failed) d.errors.push_back({"permissions", "store_unavailable", vote->message});
      d.explain.push_back(std::move(*vote));
    }
  }

  for (const Slot& slot : slots_) {
    PolicyOutcome& outcome = d.explain.emplace_back();
    outcome.policy_id = slot.id;
    const int ref = slot.refs[hook_index];
    if (ref == LUA_NOREF || !slot.scope.Matches(call)) continue;
    outcome.applied = true;
    helpers_.policy_id = &slot.id;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    PushCallView(L, ctx_);
    PushTextView(L, ctx_);
    Sandbox::Stop stop;
    Status s = sandbox_.Call(2, bundle_->limits.instructions, bundle_->limits.memory_bytes, &stop);
    if (!s.ok()) {
      // A limit hit decides the failure even if the policy caught its error
      // and returned a decision: Call reports the limit, not the return.
      Fail(slot,
           stop == Sandbox::Stop::kInstructions ? "instruction_limit"
           : stop == Sandbox::Stop::kMemory     ? "memory_limit"
           : stop == Sandbox::Stop::kCounters   ? "counter_limit"
                                                : "runtime",
           s.message(), &outcome, &d);
    } else {
      std::string policy_risk;
      const size_t redactions_before = d.redactions.size();
      const size_t annotations_before = d.annotations.size();
      const bool had_downgrade = d.model_downgrade.has_value();
      Status r = ReadDecision(slot, call.hook, &outcome, &d, &policy_risk);
      if (!r.ok()) {
        // A malformed decision contributes nothing but its failure.
        d.redactions.resize(redactions_before);
        d.annotations.resize(annotations_before);
        if (!had_downgrade) d.model_downgrade.reset();
        outcome.effect.reset();
        outcome.message.clear();
        Fail(slot, "bad_return", r.message(), &outcome, &d);
      } else if (!policy_risk.empty() && RiskRank(policy_risk) > RiskRank(risk)) {
        risk = policy_risk;
      }
    }
    lua_settop(L, 0);
  }
  helpers_.policy_id = nullptr;
  ctx_.call = nullptr;

  for (const PolicyOutcome& o : d.explain) {
    if (o.effect) d.Combine(*o.effect, o.policy_id, o.message);
  }
  d.risk_level = std::move(risk);
  return d;
}

}  // namespace policy

// --- the engine ----------------------------------------------------------------

class PolicyEngine::Impl {
 public:
  Status Install(std::shared_ptr<policy::CompiledBundle> bundle) {
    // Compile once here so a broken bundle never replaces a working one.
    auto probe = policy::Worker::Build(bundle, &shared);
    if (!probe.ok()) return probe.status();
    std::lock_guard<std::mutex> lock(mu);
    current = std::move(bundle);
    epoch.fetch_add(1, std::memory_order_release);
    return Status::OK();
  }

  std::shared_ptr<const policy::CompiledBundle> Current() const {
    std::lock_guard<std::mutex> lock(mu);
    return current;
  }

  // A worker (Lua state) for the bundle in force, lent to one evaluation.
  // Workers are pooled, not kept per thread: frameworks run calls on threads
  // that come and go (executors, a thread per tool call), and a fresh Lua
  // state costs about a hundred times an evaluation. A worker built for an
  // earlier bundle is dropped when it comes back.
  class Lease {
   public:
    Lease(const Impl* engine, std::unique_ptr<policy::Worker> w)
        : engine_(engine), worker_(std::move(w)) {}
    Lease(Lease&&) = default;
    ~Lease() {
      if (worker_) engine_->GiveBack(std::move(worker_));
    }
    policy::Worker* get() const { return worker_.get(); }

   private:
    const Impl* engine_;
    std::unique_ptr<policy::Worker> worker_;
  };

  // nullptr (and *error) only if a Lua state cannot be built.
  Lease Borrow(std::string* error) const {
    const uint64_t e = epoch.load(std::memory_order_acquire);
    // This thread's slot first: without contention it is one atomic exchange,
    // and threads evaluating at once mostly use different slots.
    std::unique_ptr<policy::Worker> w(slots[SlotOfThisThread()].exchange(nullptr));
    if (w && w->epoch == e) return Lease(this, std::move(w));
    std::vector<std::unique_ptr<policy::Worker>> stale;  // destroyed unlocked
    if (w) stale.push_back(std::move(w));
    {
      std::lock_guard<std::mutex> lock(pool_mu);
      while (!idle.empty()) {
        w = std::move(idle.back());
        idle.pop_back();
        if (w->epoch == e) return Lease(this, std::move(w));
        stale.push_back(std::move(w));
      }
    }
    for (auto& slot : slots) {  // idle in another thread's slot
      w.reset(slot.exchange(nullptr));
      if (w && w->epoch == e) return Lease(this, std::move(w));
      if (w) stale.push_back(std::move(w));
    }
    auto built = policy::Worker::Build(Current(), &shared);
    if (!built.ok()) {
      *error = built.status().message();
      return Lease(this, nullptr);
    }
    (*built)->epoch = e;
    return Lease(this, std::move(*built));
  }

  void GiveBack(std::unique_ptr<policy::Worker> w) const {
    if (w->epoch != epoch.load(std::memory_order_acquire)) return;  // a reload happened
    policy::Worker* expected = nullptr;
    if (slots[SlotOfThisThread()].compare_exchange_strong(expected, w.get())) {
      w.release();
      return;
    }
    std::lock_guard<std::mutex> lock(pool_mu);
    // After a burst of concurrent evaluations, keep a bounded number idle.
    if (idle.size() < kMaxIdleWorkers) idle.push_back(std::move(w));
  }

  static size_t SlotOfThisThread() {
    static std::atomic<size_t> next{0};
    thread_local const size_t slot = next.fetch_add(1, std::memory_order_relaxed) % kSlots;
    return slot;
  }

  ~Impl() {
    for (auto& slot : slots) delete slot.exchange(nullptr);
  }

  static constexpr size_t kSlots = 16;
  static constexpr size_t kMaxIdleWorkers = 64;
  mutable std::mutex mu;
  std::shared_ptr<const policy::CompiledBundle> current;  // guarded by mu
  std::atomic<uint64_t> epoch{0};
  mutable policy::SharedState shared;  // counters and rate limits: shared, thread-safe
  // Idle workers: one per slot (owned; taken and put back atomically), and
  // the rest in `idle`.
  mutable std::array<std::atomic<policy::Worker*>, kSlots> slots{};
  mutable std::mutex pool_mu;
  mutable std::vector<std::unique_ptr<policy::Worker>> idle;  // guarded by pool_mu
};

PolicyEngine::PolicyEngine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PolicyEngine::~PolicyEngine() = default;

Result<std::unique_ptr<PolicyEngine>> PolicyEngine::Load(const std::string& dir) {
  BASTION_RETURN_IF_ERROR(CheckPathArgument(dir, "the policy bundle path"));
  auto bundle = policy::ReadBundleDir(dir);
  if (!bundle.ok()) return bundle.status();
  auto impl = std::make_unique<Impl>();
  BASTION_RETURN_IF_ERROR(impl->Install(std::move(*bundle)));
  return std::unique_ptr<PolicyEngine>(new PolicyEngine(std::move(impl)));
}

Result<std::unique_ptr<PolicyEngine>> PolicyEngine::FromSources(
    std::vector<std::pair<std::string, std::string>> sources, std::string bundle_yaml,
    std::string permissions_yaml) {
  auto bundle = policy::MakeBundle("", std::move(sources), bundle_yaml, permissions_yaml);
  if (!bundle.ok()) return bundle.status();
  auto impl = std::make_unique<Impl>();
  BASTION_RETURN_IF_ERROR(impl->Install(std::move(*bundle)));
  return std::unique_ptr<PolicyEngine>(new PolicyEngine(std::move(impl)));
}

Status PolicyEngine::Reload(const std::string& dir) {
  BASTION_RETURN_IF_ERROR(CheckPathArgument(dir, "the policy bundle path"));
  auto bundle = policy::ReadBundleDir(dir);
  if (!bundle.ok()) return bundle.status();
  return impl_->Install(std::move(*bundle));
}

Status PolicyEngine::ReloadSources(std::vector<std::pair<std::string, std::string>> sources,
                                   std::string bundle_yaml, std::string permissions_yaml) {
  auto bundle = policy::MakeBundle("", std::move(sources), bundle_yaml, permissions_yaml);
  if (!bundle.ok()) return bundle.status();
  return impl_->Install(std::move(*bundle));
}

namespace {

// Evaluate and EvaluatePolicies.
Decision EvaluateWith(const PolicyEngine::Impl& impl, const CallInfo& call,
                      bool with_permissions) {
  std::string error;
  const PolicyEngine::Impl::Lease worker = impl.Borrow(&error);
  if (worker.get() == nullptr) {
    // Cannot happen for an installed bundle short of running out of memory;
    // fail closed all the same.
    Decision d = Decision::DefaultAllow();
    d.Combine(Effect::kDeny, "bastion", "policy engine unavailable: " + error);
    d.errors.push_back({"bastion", "runtime", error});
    return d;
  }
  return worker.get()->Evaluate(call, with_permissions);
}

}  // namespace

Decision PolicyEngine::Evaluate(const CallInfo& call) const {
  return EvaluateWith(*impl_, call, true);
}

Decision PolicyEngine::EvaluatePolicies(const CallInfo& call) const {
  return EvaluateWith(*impl_, call, false);
}

Decision PolicyEngine::CheckPermissions(const CallInfo& call) const {
  const std::shared_ptr<const policy::CompiledBundle> bundle = impl_->Current();
  Decision d = Decision::DefaultAllow();
  d.policy_version = bundle->version;
  d.risk_level = call.risk_level;
  if (bundle->permissions) {
    if (auto vote = policy::CheckToolPermissions(*bundle->permissions, &impl_->shared, call)) {
      d.Combine(*vote->effect, vote->policy_id, vote->message);
      if (vote->failed) d.errors.push_back({"permissions", "store_unavailable", vote->message});
      d.explain.push_back(std::move(*vote));
    }
  }
  return d;
}

std::string PolicyEngine::version() const { return impl_->Current()->version; }

std::vector<std::string> PolicyEngine::policy_ids() const {
  std::string error;
  const Impl::Lease w = impl_->Borrow(&error);
  return w.get() ? w.get()->policy_ids() : std::vector<std::string>{};
}

std::shared_ptr<const Permissions> PolicyEngine::permissions() const {
  return impl_->Current()->permissions;
}

void PolicyEngine::SetState(std::shared_ptr<const PolicyState> state) {
  impl_->shared.SetState(std::move(state));
}

void PolicyEngine::SetRateLimits(std::shared_ptr<RateLimits> limits) {
  impl_->shared.rate_limits = std::move(limits);
}

void PolicyEngine::SetClock(std::shared_ptr<const Clock> clock) {
  impl_->shared.SetClock(std::move(clock));
}

}  // namespace bastion
