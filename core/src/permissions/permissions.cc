#include "bastion/permissions.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <initializer_list>
#include <unordered_map>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <yaml-cpp/yaml.h>

#include "bastion/glob.h"
#include "util/yaml_reader.h"

namespace bastion {
namespace {

using yaml::Field;
using yaml::HasControlChars;
using yaml::IndexPath;
using yaml::KindName;

constexpr int64_t kSecondNs = 1'000'000'000;
constexpr int64_t kMinuteNs = 60 * kSecondNs;
constexpr int64_t kHourNs = 60 * kMinuteNs;
constexpr uint32_t kMaxRateCount = 1'000'000;
constexpr int kVersion = 1;
constexpr char kKeySeparator = '\x1f';

std::string Join(const std::vector<std::string>& items) {
  return fmt::format("{}", fmt::join(items, ", "));
}

bool IsOperationWord(std::string_view op) {
  if (op == "*") return true;
  if (op.empty()) return false;
  for (char c : op) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '.' || c == ':' || c == '-')) {
      return false;
    }
  }
  return true;
}

// Caller-supplied text as reasons quote it: at most kMaxQuoted bytes (cut at a
// UTF-8 character boundary), then "...", so a huge id cannot bloat a reason.
constexpr size_t kMaxQuoted = 200;
std::string Clip(std::string_view s) {
  if (s.size() <= kMaxQuoted) return std::string(s);
  size_t cut = kMaxQuoted;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return fmt::format("{}...", s.substr(0, cut));
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// One role or agents: entry as written.
struct EntryDef {
  std::string name;
  std::string role;  // agents only; "" = none
  Field role_field;
  std::vector<ToolGrant> tools;
  std::vector<DataGrant> data;
  std::optional<uint64_t> max_tokens;
  std::vector<std::string> approvals;
  int line = 0;
};

bool MatchesAny(const std::vector<std::string>& patterns, std::string_view text) {
  for (const std::string& p : patterns) {
    if (GlobMatch(p, text)) return true;
  }
  return false;
}

bool DomainMatchesAny(const std::vector<std::string>& patterns, std::string_view host) {
  for (const std::string& p : patterns) {
    if (DomainMatch(p, host)) return true;
  }
  return false;
}

bool OperationAllowed(const std::vector<std::string>& operations, std::string_view op) {
  for (const std::string& o : operations) {
    if (o == "*" || o == op) return true;
  }
  return false;
}

}  // namespace

// ---------------------------------------------------------------------------
// RateLimit

std::string RateLimit::ToString() const {
  std::string_view unit = period_ns == kHourNs     ? "h"
                          : period_ns == kMinuteNs ? "min"
                          : period_ns == kSecondNs ? "s"
                                                   : "";
  if (unit.empty()) return fmt::format("{}/{}ns", count, period_ns);
  return fmt::format("{}/{}", count, unit);
}

Result<RateLimit> ParseRateLimit(std::string_view text) {
  const auto bad = [&](std::string_view why) {
    return Status::InvalidArgument(fmt::format("invalid rate limit '{}': {}", text, why));
  };
  const size_t slash = text.find('/');
  if (slash == std::string_view::npos) return bad("expected N/s, N/min or N/h");
  const std::string_view number = Trim(text.substr(0, slash));
  const std::string_view unit = Trim(text.substr(slash + 1));
  if (number.empty()) return bad("expected N/s, N/min or N/h");
  uint64_t count = 0;
  for (char c : number) {
    if (c < '0' || c > '9') return bad("expected N/s, N/min or N/h with N a whole number");
    count = count * 10 + static_cast<uint64_t>(c - '0');
    if (count > kMaxRateCount) break;
  }
  if (count == 0 || count > kMaxRateCount) {
    return bad(fmt::format("N must be between 1 and {}", kMaxRateCount));
  }
  RateLimit limit;
  limit.count = static_cast<uint32_t>(count);
  if (unit == "s") {
    limit.period_ns = kSecondNs;
  } else if (unit == "min") {
    limit.period_ns = kMinuteNs;
  } else if (unit == "h") {
    limit.period_ns = kHourNs;
  } else {
    return bad(fmt::format("unknown unit '{}' (use s, min or h)", unit));
  }
  return limit;
}

// ---------------------------------------------------------------------------
// AgentGrants

std::vector<const ToolGrant*> AgentGrants::ToolGrantsFor(std::string_view tool) const {
  std::vector<const ToolGrant*> out;
  if (auto it = exact_tools_.find(tool); it != exact_tools_.end()) {
    for (uint32_t i : it->second) out.push_back(&tools_[i]);
  }
  for (uint32_t i : glob_tools_) {
    if (GlobMatch(tools_[i].name, tool)) out.push_back(&tools_[i]);
  }
  return out;
}

std::vector<const DataGrant*> AgentGrants::DataGrantsFor(std::string_view table) const {
  std::vector<const DataGrant*> out;
  if (auto it = exact_tables_.find(table); it != exact_tables_.end()) {
    for (uint32_t i : it->second) out.push_back(&data_[i]);
  }
  for (uint32_t i : glob_tables_) {
    if (GlobMatch(data_[i].table, table)) out.push_back(&data_[i]);
  }
  return out;
}

bool AgentGrants::OperationNeedsApproval(std::string_view operation) const {
  return OperationAllowed(approval_operations_, operation);
}

std::string AgentGrants::Describe(std::string_view agent_id) const {
  if (role_.empty()) return fmt::format("agent '{}'", Clip(agent_id));
  return fmt::format("agent '{}' (role '{}')", Clip(agent_id), role_);
}

// ---------------------------------------------------------------------------
// Parsing

class PermissionsBuilder : private yaml::Reader {
 public:
  explicit PermissionsBuilder(std::string_view source) : yaml::Reader(std::string(source)) {}

  Result<std::shared_ptr<const Permissions>> Build(std::string_view yaml);

 private:
  Result<std::vector<std::string>> OperationList(const Field& f) const;
  Result<std::vector<std::string>> DomainList(const Field& f) const;

  Result<ToolGrant> ParseToolGrant(const Field& f) const;
  Result<DataGrant> ParseDataGrant(const Field& f) const;
  Result<EntryDef> ParseEntry(std::string name, const Field& f, bool is_agent) const;

};

Result<std::vector<std::string>> PermissionsBuilder::OperationList(const Field& f) const {
  auto list = StringList(f);
  if (!list.ok()) return list.status();
  for (size_t i = 0; i < list->size(); ++i) {
    if (!IsOperationWord((*list)[i])) {
      return Error(f.node[i].Mark(), IndexPath(f.path, i),
                   fmt::format("'{}' is not an operation (a word of letters, digits, _ . : - "
                               "or \"*\")",
                               (*list)[i]));
    }
  }
  return list;
}

Result<std::vector<std::string>> PermissionsBuilder::DomainList(const Field& f) const {
  auto list = StringList(f);
  if (!list.ok()) return list.status();
  for (size_t i = 0; i < list->size(); ++i) {
    if (Status s = ValidateDomainPattern((*list)[i]); !s.ok()) {
      return Error(f.node[i].Mark(), IndexPath(f.path, i),
                   fmt::format("invalid domain '{}': {}", (*list)[i], s.message()));
    }
  }
  return list;
}

Result<ToolGrant> PermissionsBuilder::ParseToolGrant(const Field& f) const {
  std::vector<std::pair<std::string, Field>> members;
  BASTION_RETURN_IF_ERROR(
      GetMembers(f, {"name", "operations", "resources", "rate_limit", "requires_approval", "network"},
              "key", &members));
  ToolGrant grant;
  grant.where = f.path;
  grant.line = f.mark.line + 1;
  bool has_name = false, has_operations = false;
  for (const auto& [key, value] : members) {
    if (key == "name") {
      auto name = String(value);
      if (!name.ok()) return name.status();
      if (name->empty()) return Error(value, "empty tool name");
      if (Status s = ValidateGlob(*name); !s.ok()) {
        return Error(value, fmt::format("invalid glob '{}': {}", *name, s.message()));
      }
      grant.name = std::move(*name);
      has_name = true;
    } else if (key == "operations") {
      auto ops = OperationList(value);
      if (!ops.ok()) return ops.status();
      grant.operations = std::move(*ops);
      has_operations = true;
    } else if (key == "resources") {
      auto resources = GlobList(value);
      if (!resources.ok()) return resources.status();
      grant.resources = std::move(*resources);
    } else if (key == "rate_limit") {
      auto text = String(value);
      if (!text.ok()) return text.status();
      auto limit = ParseRateLimit(*text);
      if (!limit.ok()) return Error(value, limit.status().message());
      grant.rate_limit = *limit;
    } else if (key == "requires_approval") {
      auto b = Bool(value);
      if (!b.ok()) return b.status();
      grant.requires_approval = *b;
    } else if (key == "network") {
      std::vector<std::pair<std::string, Field>> net;
      BASTION_RETURN_IF_ERROR(GetMembers(value, {"allow", "block"}, "key", &net));
      if (net.empty()) return Error(value, "expected 'allow' and/or 'block'");
      NetworkRules rules;
      for (const auto& [nk, nv] : net) {
        auto domains = DomainList(nv);
        if (!domains.ok()) return domains.status();
        (nk == "allow" ? rules.allow : rules.block) = std::move(*domains);
      }
      grant.network = std::move(rules);
    }
  }
  if (!has_name) return Error(f, "missing required key 'name'");
  if (!has_operations) return Error(f, "missing required key 'operations'");
  return grant;
}

Result<DataGrant> PermissionsBuilder::ParseDataGrant(const Field& f) const {
  std::vector<std::pair<std::string, Field>> members;
  BASTION_RETURN_IF_ERROR(
      GetMembers(f, {"table", "columns", "row_filter", "max_rows"}, "key", &members));
  DataGrant grant;
  grant.where = f.path;
  grant.line = f.mark.line + 1;
  bool has_table = false, has_columns = false;
  for (const auto& [key, value] : members) {
    if (key == "table") {
      auto table = String(value);
      if (!table.ok()) return table.status();
      if (table->empty()) return Error(value, "empty table name");
      if (Status s = ValidateGlob(*table); !s.ok()) {
        return Error(value, fmt::format("invalid glob '{}': {}", *table, s.message()));
      }
      grant.table = std::move(*table);
      has_table = true;
    } else if (key == "columns") {
      auto columns = GlobList(value);
      if (!columns.ok()) return columns.status();
      grant.columns = std::move(*columns);
      has_columns = true;
    } else if (key == "row_filter") {
      auto filter = String(value);
      if (!filter.ok()) return filter.status();
      if (filter->empty()) return Error(value, "empty row filter (omit the key instead)");
      grant.row_filter = std::move(*filter);
    } else if (key == "max_rows") {
      auto n = Unsigned(value);
      if (!n.ok()) return n.status();
      grant.max_rows = *n;
    }
  }
  if (!has_table) return Error(f, "missing required key 'table'");
  if (!has_columns) return Error(f, "missing required key 'columns' (use [\"*\"] for all)");
  return grant;
}

Result<EntryDef> PermissionsBuilder::ParseEntry(std::string name, const Field& f,
                                                bool is_agent) const {
  std::vector<std::pair<std::string, Field>> members;
  if (is_agent) {
    BASTION_RETURN_IF_ERROR(
        GetMembers(f, {"role", "tools", "data", "max_tokens", "requires_approval"}, "key", &members));
  } else {
    BASTION_RETURN_IF_ERROR(
        GetMembers(f, {"tools", "data", "max_tokens", "requires_approval"}, "key", &members));
  }
  EntryDef entry;
  entry.name = std::move(name);
  entry.line = f.mark.line + 1;
  for (const auto& [key, value] : members) {
    if (key == "role") {
      auto role = String(value);
      if (!role.ok()) return role.status();
      if (role->empty()) return Error(value, "empty role name");
      entry.role = std::move(*role);
      entry.role_field = value;
    } else if (key == "tools" || key == "data") {
      if (!value.node.IsSequence()) {
        return Error(value, fmt::format("expected a list of {} grants, found {}", key,
                                        KindName(value.node)));
      }
      if (value.node.size() == 0) return Error(value, "must not be empty (omit the key instead)");
      for (size_t i = 0; i < value.node.size(); ++i) {
        Field item;
        item.node = value.node[i];
        item.mark = item.node.IsNull() ? value.mark : item.node.Mark();
        item.path = IndexPath(value.path, i);
        if (key == "tools") {
          auto grant = ParseToolGrant(item);
          if (!grant.ok()) return grant.status();
          entry.tools.push_back(std::move(*grant));
        } else {
          auto grant = ParseDataGrant(item);
          if (!grant.ok()) return grant.status();
          entry.data.push_back(std::move(*grant));
        }
      }
    } else if (key == "max_tokens") {
      auto n = Unsigned(value);
      if (!n.ok()) return n.status();
      entry.max_tokens = *n;
    } else if (key == "requires_approval") {
      if (value.node.IsScalar()) {
        return Error(value,
                     "expected a list of operations (requires_approval: true belongs on a tool "
                     "grant)");
      }
      auto ops = OperationList(value);
      if (!ops.ok()) return ops.status();
      entry.approvals = std::move(*ops);
    }
  }
  return entry;
}

namespace {

// Indexes grants by name: exact names hashed, globs sorted longest first (then
// in list order, which already puts an entry's grants before its role's).
template <typename Grant, typename NameOf>
void IndexGrants(const std::vector<Grant>& grants, NameOf name_of, internal::IndexMap* exact,
                 std::vector<uint32_t>* globs) {
  for (uint32_t i = 0; i < grants.size(); ++i) {
    const std::string& name = name_of(grants[i]);
    if (IsGlobPattern(name)) {
      globs->push_back(i);
    } else {
      (*exact)[name].push_back(i);
    }
  }
  std::stable_sort(globs->begin(), globs->end(), [&](uint32_t a, uint32_t b) {
    return name_of(grants[a]).size() > name_of(grants[b]).size();
  });
}

}  // namespace

Result<std::shared_ptr<const Permissions>> PermissionsBuilder::Build(std::string_view yaml) {
  auto loaded = Load(yaml, "a mapping starting with 'version: 1'");
  if (!loaded.ok()) return loaded.status();
  const Field root = std::move(*loaded);
  if (!root.node.IsMap()) {
    return Error(root, fmt::format("expected a mapping with version, roles and agents, found {}",
                                   KindName(root.node)));
  }
  std::vector<std::pair<std::string, Field>> top;
  BASTION_RETURN_IF_ERROR(GetMembers(root, {"version", "roles", "agents"}, "key", &top));

  bool has_version = false;
  std::vector<EntryDef> roles, agents;
  for (const auto& [key, value] : top) {
    if (key == "version") {
      BASTION_RETURN_IF_ERROR(Version(value, kVersion));
      has_version = true;
    } else {
      const bool is_agent = key == "agents";
      std::vector<std::pair<std::string, Field>> entries;
      BASTION_RETURN_IF_ERROR(GetMembers(value, {}, is_agent ? "agent" : "role", &entries));
      for (auto& [name, field] : entries) {
        if (HasControlChars(name)) {
          return Error(field.key_mark, field.path,
                       fmt::format("{} names may not contain control characters",
                                   is_agent ? "agent" : "role"));
        }
        if (is_agent && IsGlobPattern(name)) {
          if (Status s = ValidateGlob(name); !s.ok()) {
            return Error(field.key_mark, field.path,
                         fmt::format("invalid agent glob '{}': {}", name, s.message()));
          }
        }
        auto entry = ParseEntry(name, field, is_agent);
        if (!entry.ok()) return entry.status();
        (is_agent ? agents : roles).push_back(std::move(*entry));
      }
    }
  }
  if (!has_version) return Error(root, "missing required key 'version' (write 'version: 1' first)");

  std::shared_ptr<Permissions> perms(new Permissions());
  perms->source_name_ = source();

  auto compile = [](AgentGrants* g) {
    IndexGrants(
        g->tools_, [](const ToolGrant& t) -> const std::string& { return t.name; },
        &g->exact_tools_, &g->glob_tools_);
    IndexGrants(
        g->data_, [](const DataGrant& d) -> const std::string& { return d.table; },
        &g->exact_tables_, &g->glob_tables_);
  };

  for (EntryDef& role : roles) {
    AgentGrants g;
    g.role_ = role.name;
    g.tools_ = std::move(role.tools);
    g.data_ = std::move(role.data);
    g.max_tokens_ = role.max_tokens;
    g.approval_operations_ = std::move(role.approvals);
    compile(&g);
    perms->roles_.emplace(role.name, static_cast<uint32_t>(perms->grants_.size()));
    perms->role_order_.push_back(role.name);
    perms->grants_.push_back(std::move(g));
  }

  for (EntryDef& agent : agents) {
    AgentGrants g;
    g.entry_ = agent.name;
    g.tools_ = std::move(agent.tools);
    g.data_ = std::move(agent.data);
    g.max_tokens_ = agent.max_tokens;
    if (!agent.role.empty()) {
      auto it = perms->roles_.find(agent.role);
      if (it == perms->roles_.end()) {
        std::string known = perms->role_order_.empty()
                                ? std::string("no roles are defined")
                                : fmt::format("defined: {}", Join(perms->role_order_));
        return Error(agent.role_field, fmt::format("unknown role '{}' ({})", agent.role, known));
      }
      const AgentGrants& role = perms->grants_[it->second];
      g.role_ = agent.role;
      g.tools_.insert(g.tools_.end(), role.tools_.begin(), role.tools_.end());
      g.data_.insert(g.data_.end(), role.data_.begin(), role.data_.end());
      if (!g.max_tokens_) g.max_tokens_ = role.max_tokens_;
      g.approval_operations_ = role.approval_operations_;
    }
    g.approval_operations_.insert(g.approval_operations_.end(), agent.approvals.begin(),
                                  agent.approvals.end());
    compile(&g);
    const auto index = static_cast<uint32_t>(perms->grants_.size());
    if (IsGlobPattern(agent.name)) {
      perms->agent_patterns_.push_back(index);
    } else {
      perms->exact_agents_.emplace(agent.name, index);
    }
    perms->agent_order_.push_back(agent.name);
    perms->grants_.push_back(std::move(g));
  }
  // Most specific pattern first: longer, then earlier in the file.
  std::stable_sort(perms->agent_patterns_.begin(), perms->agent_patterns_.end(),
                   [&](uint32_t a, uint32_t b) {
                     return perms->grants_[a].entry_.size() > perms->grants_[b].entry_.size();
                   });
  return std::shared_ptr<const Permissions>(std::move(perms));
}

// ---------------------------------------------------------------------------
// Permissions

Permissions::~Permissions() = default;

Result<std::shared_ptr<const Permissions>> Permissions::Parse(std::string_view yaml,
                                                              std::string_view source_name) {
  try {
    return PermissionsBuilder(source_name).Build(yaml);
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(fmt::format("{}: {}", source_name, e.what()));
  } catch (const std::exception& e) {
    return Status::Internal(fmt::format("{}: {}", source_name, e.what()));
  }
}

Result<std::shared_ptr<const Permissions>> Permissions::LoadFile(const std::string& path) {
  auto content = yaml::ReadConfigFile(path, "permissions");
  if (!content.ok()) return content.status();
  return Parse(*content, path);
}

const AgentGrants* Permissions::Find(std::string_view agent_id, std::string_view agent_role) const {
  if (auto it = exact_agents_.find(agent_id); it != exact_agents_.end()) {
    return &grants_[it->second];
  }
  for (uint32_t i : agent_patterns_) {
    if (GlobMatch(grants_[i].entry(), agent_id)) return &grants_[i];
  }
  return agent_role.empty() ? nullptr : FindRole(agent_role);
}

const AgentGrants* Permissions::FindRole(std::string_view role) const {
  auto it = roles_.find(role);
  return it == roles_.end() ? nullptr : &grants_[it->second];
}

std::vector<std::string> Permissions::role_names() const { return role_order_; }
std::vector<std::string> Permissions::agent_keys() const { return agent_order_; }

namespace {

std::string NoGrants(std::string_view agent_id, std::string_view agent_role,
                     const Permissions& perms) {
  if (!agent_role.empty() && perms.FindRole(agent_role) == nullptr) {
    return fmt::format("agent '{}' has no grants (role '{}' is not defined)", Clip(agent_id),
                       Clip(agent_role));
  }
  return fmt::format("agent '{}' has no grants", Clip(agent_id));
}

// Why `grant` does not admit the call, or "" if it does.
std::string ToolGrantRefusal(const ToolGrant& grant, const ToolRequest& req,
                             const std::optional<std::string>& host) {
  if (!OperationAllowed(grant.operations, req.operation)) {
    if (req.operation.empty()) {
      return fmt::format("grant '{}' allows operations [{}], and the call names none", grant.name,
                         Join(grant.operations));
    }
    return fmt::format("grant '{}' allows operations [{}], not '{}'", grant.name,
                       Join(grant.operations), Clip(req.operation));
  }
  if (!grant.resources.empty() && !MatchesAny(grant.resources, req.resource_id)) {
    if (req.resource_id.empty()) {
      return fmt::format(
          "grant '{}' is limited to resources (allowed: {}), and the call names none", grant.name,
          Join(grant.resources));
    }
    return fmt::format("grant '{}' does not cover resource '{}' (allowed: {})", grant.name,
                       Clip(req.resource_id), Join(grant.resources));
  }
  if (grant.network && !grant.network->allow.empty()) {
    if (!host) {
      return fmt::format("grant '{}' admits only listed hosts, and the call names no url",
                         grant.name);
    }
    if (!DomainMatchesAny(grant.network->allow, *host)) {
      return fmt::format("host '{}' is not in the allowlist of tool '{}' (allowed: {})", *host,
                         Clip(req.tool), Join(grant.network->allow));
    }
  }
  return "";
}

}  // namespace

ToolCheck Permissions::CheckTool(const ToolRequest& req) const {
  ToolCheck check;
  const AgentGrants* agent = Find(req.agent_id, req.agent_role);
  if (agent == nullptr) {
    check.reason = NoGrants(req.agent_id, req.agent_role, *this);
    return check;
  }
  const std::vector<const ToolGrant*> candidates = agent->ToolGrantsFor(req.tool);
  if (candidates.empty()) {
    check.reason =
        fmt::format("{} has no grant for tool '{}'", agent->Describe(req.agent_id), Clip(req.tool));
    return check;
  }

  // The host, if any grant has network rules to check it against.
  std::optional<std::string> host;
  const bool network_rules = std::any_of(candidates.begin(), candidates.end(),
                                         [](const ToolGrant* g) { return g->network.has_value(); });
  if (network_rules && !req.url.empty()) {
    host = HostOfUrl(req.url);
    if (!host) {
      check.reason = fmt::format("url '{}' has no valid host (tool '{}' has network rules)",
                                 Clip(req.url), Clip(req.tool));
      return check;
    }
    for (const ToolGrant* g : candidates) {
      if (g->network && DomainMatchesAny(g->network->block, *host)) {
        check.reason = fmt::format("host '{}' is blocked for tool '{}'", *host, Clip(req.tool));
        return check;
      }
    }
  }

  std::vector<const ToolGrant*> admitting;
  std::vector<std::string> refusals;
  for (const ToolGrant* g : candidates) {
    std::string refusal = ToolGrantRefusal(*g, req, host);
    if (refusal.empty()) {
      admitting.push_back(g);
    } else if (std::find(refusals.begin(), refusals.end(), refusal) == refusals.end()) {
      refusals.push_back(std::move(refusal));  // identical clauses once
    }
  }
  if (admitting.empty()) {
    check.reason = fmt::format("{}", fmt::join(refusals, "; "));
    return check;
  }

  check.allowed = true;
  check.grant = admitting.front();
  check.reason = fmt::format("allowed by grant '{}' ({})", check.grant->name, check.grant->where);
  std::vector<std::string> approvals;
  for (const ToolGrant* g : admitting) {
    if (g->requires_approval) {
      approvals.push_back(fmt::format("grant '{}' ({}) requires approval", g->name, g->where));
    }
    if (g->rate_limit) {
      std::string key;
      key.reserve(req.agent_id.size() + 1 + g->where.size());
      key.append(req.agent_id).push_back(kKeySeparator);
      key.append(g->where);
      check.rate_limits.push_back({std::move(key), *g->rate_limit});
    }
  }
  if (agent->OperationNeedsApproval(req.operation)) {
    approvals.push_back(fmt::format("operation '{}' requires approval for {}", Clip(req.operation),
                                    agent->Describe(req.agent_id)));
  }
  if (!approvals.empty()) {
    check.requires_approval = true;
    check.reason += fmt::format("; {}", fmt::join(approvals, "; "));
  }
  return check;
}

DataCheck Permissions::CheckData(const DataRequest& req) const {
  DataCheck check;
  const AgentGrants* agent = Find(req.agent_id, req.agent_role);
  if (agent == nullptr) {
    check.reason = NoGrants(req.agent_id, req.agent_role, *this);
    return check;
  }
  const std::vector<const DataGrant*> candidates = agent->DataGrantsFor(req.table);
  if (candidates.empty()) {
    check.reason = fmt::format("{} has no data grant for table '{}'", agent->Describe(req.agent_id),
                               Clip(req.table));
    return check;
  }
  std::vector<std::string> refusals;
  for (const DataGrant* g : candidates) {
    const bool all_columns =
        std::find_if(g->columns.begin(), g->columns.end(), [](const std::string& c) {
          return c == "*" || c == "**";
        }) != g->columns.end();
    std::vector<std::string> missing;
    for (const std::string& column : req.columns) {
      const bool ok = column == "*" ? all_columns : MatchesAny(g->columns, column);
      if (!ok) missing.push_back(Clip(column));
    }
    std::string refusal;
    if (!missing.empty()) {
      refusal = fmt::format("grant '{}' does not allow columns [{}] of table '{}' (allowed: {})",
                            g->table, Clip(Join(missing)), Clip(req.table), Join(g->columns));
    } else if (req.rows && g->max_rows && *req.rows > *g->max_rows) {
      refusal = fmt::format("grant '{}' allows at most {} rows, not {}", g->table, *g->max_rows,
                            *req.rows);
    }
    if (!refusal.empty()) {
      if (std::find(refusals.begin(), refusals.end(), refusal) == refusals.end()) {
        refusals.push_back(std::move(refusal));
      }
      continue;
    }
    check.allowed = true;
    check.grant = g;
    check.row_filter = g->row_filter;
    check.max_rows = g->max_rows;
    check.reason = fmt::format("allowed by data grant '{}' ({})", g->table, g->where);
    return check;
  }
  check.reason = fmt::format("{}", fmt::join(refusals, "; "));
  return check;
}

std::optional<uint64_t> Permissions::MaxTokens(std::string_view agent_id,
                                               std::string_view agent_role) const {
  const AgentGrants* agent = Find(agent_id, agent_role);
  return agent == nullptr ? std::nullopt : agent->max_tokens();
}

}  // namespace bastion
