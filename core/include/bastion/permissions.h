// Declarative permissions: which agent may call which tool, with which
// operation, on which resources and hosts, how often, and which data it may
// read. Least privilege: whatever no grant allows is denied, and the denial
// says which grant is missing.
//
//   auto loaded = bastion::Permissions::LoadFile("config/permissions.yaml");
//   if (!loaded.ok()) {  // "config/permissions.yaml:12:9: roles.support.tools[1]
//     die(loaded.status().ToString());  //  .operations: expected a list of strings"
//   }
//   std::shared_ptr<const bastion::Permissions> perms = *loaded;
//   bastion::RateLimiter limiter;  // lives as long as the process, across reloads
//
//   bastion::ToolRequest req;
//   req.agent_id = "support-bot";
//   req.tool = "issue_refund";
//   req.operation = "write";
//   req.resource_id = "order/A-1001";
//   bastion::ToolCheck check = perms->CheckTool(req);
//   if (!check.allowed) return Deny(check.reason);
//   if (!limiter.TryAcquire(check.rate_limits, NowNs())) return Deny("rate limit");
//   if (check.requires_approval) return AskAHuman(check.reason);
//
// The file (docs/permissions.md is the user guide, with examples):
//
//   version: 1                          # required; the only version there is
//   roles:                              # optional; name -> role
//     support:
//       tools:                          # tool grants (below)
//         - name: lookup_order
//           operations: [read]
//           resources: ["order/*"]
//           rate_limit: 10/s
//       data:                           # data grants (below)
//         - table: orders
//           columns: [id, status, total]
//           row_filter: "tenant_id = :tenant_id"
//           max_rows: 100
//       max_tokens: 200000              # token budget of the agent's model calls
//       requires_approval: [delete]     # operations that need a human, any tool
//   agents:                             # optional; agent id (or glob) -> entry
//     support-bot:
//       role: support                   # optional; must be defined under roles
//       tools: [...]                    # extra grants, same shape as a role's
//       data: [...]                     # extra data grants
//       max_tokens: 500000              # replaces the role's value
//       requires_approval: [write]      # added to the role's list
//     "*-readonly":
//       role: readonly
//
// A tool grant:
//   name               required  glob over tool names ("search_*", "*")
//   operations         required  non-empty list of words (read, write, delete,
//                                or your own: [A-Za-z0-9_.:-]+); "*" = any
//   resources          optional  non-empty list of globs; omitted = any resource
//   rate_limit         optional  "N/s", "N/min" or "N/h", 1 <= N <= 1000000: a
//                                token bucket holding N tokens, refilled at N per
//                                period, one bucket per (agent id, grant)
//   requires_approval  optional  true: every call this grant allows needs a human
//   network            optional  {allow: [domains], block: [domains]}, at least
//                                one of the two. With allow, the call's url must
//                                name a host on the list; block denies hosts even
//                                if allow (or another grant) would admit them.
//                                Omitted = the grant does not restrict hosts.
// A data grant:
//   table              required  glob over table names
//   columns            required  non-empty list of globs over column names;
//                                "*" = all (and admits a request for "*")
//   row_filter         optional  a predicate the caller must apply (Bastion does
//                                not parse it), e.g. "tenant_id = :tenant_id"
//   max_rows           optional  most rows one request may read
// Globs are those of bastion/glob.h ('*' stops at '/', '**' does not);
// domains those of DomainMatch. Strictness: unknown keys, duplicate keys,
// wrong types, empty lists, malformed globs, domains and rate limits, and
// agents naming an undefined role are all errors that name the source, line,
// column and field path; nothing is silently ignored.
//
// Matching (docs/permissions.md has the full rules and examples):
//  - Which entry applies to an agent: the agents: key equal to its id, else
//    the most specific glob key that matches it (longer pattern first, then
//    the one written first), else, if the request names a role, that role
//    alone. Only one entry applies; entries are not combined. The request's
//    agent_role is ignored when an entry matches (the file decides the role).
//  - A tool call is allowed if at least one of the entry's grants (its own
//    and its role's) whose name matches the tool allows the operation, covers
//    the resource and admits the host. All grants that allow the call add
//    their conditions: it needs approval if any of them requires approval or
//    the operation is in requires_approval, and it must take a token from
//    every one of their rate limits.
//  - A host on the block list of any grant matching the tool is denied.
//
// Thread safety: a Permissions is immutable once parsed; every method is const
// and may be called from any number of threads. Share it by shared_ptr and
// replace it wholesale to reload. The pointers inside ToolCheck, DataCheck and
// AgentGrants point into the Permissions and stay valid while it lives.
// RateLimiter holds the only mutable state; it is thread-safe and kept apart
// so that buckets survive a reload of the permissions.
//
// Nothing here throws: yaml-cpp's exceptions are caught and become Status.
#ifndef BASTION_PERMISSIONS_H_
#define BASTION_PERMISSIONS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "bastion/status.h"

namespace bastion {

// ---------------------------------------------------------------------------
// What the file declares (read-only views for the guard and for Lua).

struct RateLimit {
  uint32_t count = 0;     // tokens per period, and the burst
  int64_t period_ns = 0;  // one second, minute or hour
  // "10/s", "600/min", "5/h".
  std::string ToString() const;
  bool operator==(const RateLimit&) const = default;
};

// Parses "N/s", "N/min" or "N/h" (spaces around the '/' allowed), with
// 1 <= N <= 1000000. InvalidArgument says what is wrong.
Result<RateLimit> ParseRateLimit(std::string_view text);

struct NetworkRules {
  std::vector<std::string> allow;  // domain patterns; empty: any host not blocked
  std::vector<std::string> block;  // domain patterns; beat allow
};

struct ToolGrant {
  std::string name;                     // glob over tool names
  std::vector<std::string> operations;  // "*" = any
  std::vector<std::string> resources;   // globs; empty = any resource
  std::optional<RateLimit> rate_limit;
  bool requires_approval = false;
  std::optional<NetworkRules> network;  // unset: no host restrictions
  // Where the grant was written: "roles.support.tools[1]". Names the grant in
  // reasons and keys its rate-limit buckets.
  std::string where;
  int line = 0;  // 1-based line in the source
};

struct DataGrant {
  std::string table;                 // glob over table names
  std::vector<std::string> columns;  // globs; "*" = all
  std::string row_filter;            // "" = none
  std::optional<uint64_t> max_rows;  // unset = no limit
  std::string where;                 // "roles.support.data[0]"
  int line = 0;
};

namespace internal {
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using IndexMap =
    std::unordered_map<std::string, std::vector<uint32_t>, StringHash, std::equal_to<>>;
}  // namespace internal

// Everything one agent may do: its agents: entry merged with the entry's role,
// or a role alone (for agents not listed). Owned by the Permissions.
class AgentGrants {
 public:
  // The agents: key that matched; "" when resolved by role alone.
  const std::string& entry() const { return entry_; }
  // "" when the entry names no role.
  const std::string& role() const { return role_; }
  // The entry's own grants first, then the role's, each in file order.
  const std::vector<ToolGrant>& tools() const { return tools_; }
  const std::vector<DataGrant>& data() const { return data_; }
  // The entry's max_tokens, else the role's; nullopt when neither sets one.
  std::optional<uint64_t> max_tokens() const { return max_tokens_; }
  // The role's requires_approval operations, then the entry's; "*" = all.
  const std::vector<std::string>& approval_operations() const { return approval_operations_; }

  // Grants whose name matches `tool` (or whose table matches `table`), most
  // specific first: exact names before globs, longer globs before shorter,
  // then the entry's before the role's, then file order.
  std::vector<const ToolGrant*> ToolGrantsFor(std::string_view tool) const;
  std::vector<const DataGrant*> DataGrantsFor(std::string_view table) const;
  // True if `operation` is in approval_operations (or that holds "*").
  bool OperationNeedsApproval(std::string_view operation) const;

  // How reasons name the agent: "agent 'support-bot' (role 'support')", or
  // "agent 'x'" when there is no role.
  std::string Describe(std::string_view agent_id) const;

 private:
  friend class PermissionsBuilder;

  std::string entry_;
  std::string role_;
  std::vector<ToolGrant> tools_;
  std::vector<DataGrant> data_;
  std::optional<uint64_t> max_tokens_;
  std::vector<std::string> approval_operations_;
  // Compiled lookups: exact names hashed, globs in specificity order.
  internal::IndexMap exact_tools_, exact_tables_;
  std::vector<uint32_t> glob_tools_, glob_tables_;
};

// ---------------------------------------------------------------------------
// Checks.

// One tool call to check. The views must stay valid during CheckTool only.
struct ToolRequest {
  std::string_view agent_id;
  // The caller's idea of the agent's role: used only when no agents: entry
  // matches agent_id. "" = none.
  std::string_view agent_role;
  std::string_view tool;
  std::string_view operation;  // read, write, delete, ...; "" = none given
  std::string_view resource_id;  // "" = none given (only grants without
                                 // resources, or with a glob matching "", admit it)
  // The URL the tool will reach, checked against network rules. "" = none
  // given: grants with an allow list then do not admit the call.
  std::string_view url;
};

// A token to take before the call: bucket `key` under `limit`.
struct RateLimitRef {
  std::string key;  // agent id + '\x1f' + grant.where
  RateLimit limit;
  bool operator==(const RateLimitRef&) const = default;
};

struct ToolCheck {
  bool allowed = false;
  // Only when allowed: a human must approve the call first.
  bool requires_approval = false;
  // Denied: what is missing, e.g. "grant 'issue_refund' allows operations
  // [write], not 'delete'" (one clause per grant that matched the tool, joined
  // by "; "). Allowed: which grant allows it, then why approval is needed.
  std::string reason;
  // Allowed: the most specific grant that allows the call. Points into the
  // Permissions. nullptr when denied.
  const ToolGrant* grant = nullptr;
  // Allowed: every rate limit of every grant that allows the call; take them
  // all (RateLimiter::TryAcquire) before the call. Empty when denied.
  std::vector<RateLimitRef> rate_limits;
};

struct DataRequest {
  std::string_view agent_id;
  std::string_view agent_role;  // as in ToolRequest
  std::string_view table;
  // Columns to read; "*" asks for all of them. Empty: none named (COUNT(*)).
  std::vector<std::string> columns;
  // Rows the request would read, if known: checked against max_rows.
  std::optional<uint64_t> rows;
};

struct DataCheck {
  bool allowed = false;
  std::string reason;  // denied: what is missing; allowed: which grant
  // Allowed: the most specific grant that admits the whole request, whose
  // conditions the caller must enforce: apply row_filter, read at most
  // max_rows. Copies of grant->row_filter and grant->max_rows.
  const DataGrant* grant = nullptr;
  std::string row_filter;
  std::optional<uint64_t> max_rows;
};

// ---------------------------------------------------------------------------

class Permissions {
 public:
  // Parses and compiles a permissions document. `source_name` (a file path or
  // any label) starts every error message: "<source>:<line>:<column>: <field
  // path>: <what is wrong>". Errors are InvalidArgument.
  static Result<std::shared_ptr<const Permissions>> Parse(std::string_view yaml,
                                                          std::string_view source_name);
  // Reads `path` and parses it, naming errors after `path`. NotFound or
  // IOError when the file cannot be read.
  static Result<std::shared_ptr<const Permissions>> LoadFile(const std::string& path);

  ~Permissions();
  Permissions(const Permissions&) = delete;
  Permissions& operator=(const Permissions&) = delete;

  // Decides one tool call (see "Matching" above). Denials, in the order they
  // are checked, name:
  //   "agent 'x' has no grants"                       (no entry, no known role)
  //   "agent 'a' (role 'r') has no grant for tool 't'"
  //   "url 'u' has no valid host (tool 't' has network rules)"
  //   "host 'h' is blocked for tool 't'"
  // and then, for each grant that matches the tool, the first of:
  //   "grant 'g' allows operations [a, b], not 'op'"
  //   "grant 'g' does not cover resource 'r' (allowed: p1, p2)"
  //   "host 'h' is not in the allowlist of tool 't' (allowed: d1, d2)"
  //   "grant 'g' admits only listed hosts, and the call names no url"
  // Text from the request is quoted in reasons clipped to 200 bytes (at a
  // UTF-8 character boundary) plus "...".
  ToolCheck CheckTool(const ToolRequest& request) const;

  // Decides one data access. Denials name the agent and table ("agent 'a'
  // (role 'r') has no data grant for table 't'"), then for each grant matching
  // the table, the first of: the columns it does not allow ("grant 'orders'
  // does not allow columns [email] of table 'orders' (allowed: id, status)"),
  // or the row limit ("grant 'orders' allows at most 100 rows, not 500").
  DataCheck CheckData(const DataRequest& request) const;

  // The model-token limit of the agent's entry or role; nullopt when none is
  // set or no grants apply to the agent.
  std::optional<uint64_t> MaxTokens(std::string_view agent_id, std::string_view agent_role) const;

  // The grants that apply to an agent (see "Matching"), or nullptr if none.
  const AgentGrants* Find(std::string_view agent_id, std::string_view agent_role) const;
  // The grants of a role alone, or nullptr if it is not defined.
  const AgentGrants* FindRole(std::string_view role) const;

  // Role names and agents: keys, in file order.
  std::vector<std::string> role_names() const;
  std::vector<std::string> agent_keys() const;
  const std::string& source_name() const { return source_name_; }

 private:
  friend class PermissionsBuilder;
  Permissions() = default;

  std::string source_name_;
  // Every AgentGrants: one per role (role alone), then one per agents: entry.
  std::vector<AgentGrants> grants_;
  std::unordered_map<std::string, uint32_t, internal::StringHash, std::equal_to<>> roles_;
  std::unordered_map<std::string, uint32_t, internal::StringHash, std::equal_to<>> exact_agents_;
  std::vector<uint32_t> agent_patterns_;  // most specific first
  std::vector<std::string> role_order_, agent_order_;
};

// ---------------------------------------------------------------------------

// Where rate-limit tokens are taken: this process (RateLimiter, the default)
// or a fleet's shared store (SharedRateLimits, bastion/fleet_limits.h).
class RateLimits {
 public:
  virtual ~RateLimits() = default;
  // One token from each ref's bucket, all or none (a key listed twice needs
  // two tokens). True: taken; true for an empty list. False: refused,
  // nothing taken, and *refused (if given) is the index of the first ref
  // that had no token. An error (Unavailable) means the store could not be
  // asked: nothing was taken and the call must not run.
  virtual Result<bool> Acquire(const std::vector<RateLimitRef>& refs, int64_t now_ns,
                               size_t* refused = nullptr) = 0;
};

// Token buckets for rate limits, keyed by RateLimitRef::key. Time is passed in
// (nanoseconds on any monotonic clock the caller likes) so that tests can
// simulate it; a time earlier than a bucket's last one counts as no time
// passing. A new bucket starts full (N tokens); it refills continuously at N
// per period, in exact integer arithmetic, and never holds more than N. If a
// key's limit changes (a reload), the bucket keeps its whole tokens, capped to
// the new burst.
//
// Thread-safe: any number of threads may call any method at once. Buckets are
// spread over 64 mutex-guarded shards, so threads contend only when their
// keys share a shard. Memory grows with the number of keys; Prune drops
// buckets that have refilled (they are equivalent to new ones).
class RateLimiter final : public RateLimits {
 public:
  RateLimiter();
  ~RateLimiter() override;
  RateLimiter(const RateLimiter&) = delete;
  RateLimiter& operator=(const RateLimiter&) = delete;

  // Takes one token from bucket `key` if it has one. False (and nothing taken)
  // otherwise, and when `limit` is invalid: count or period_ns 0, or
  // count * period_ns above 2^62 (ParseRateLimit never makes one).
  bool TryAcquire(std::string_view key, const RateLimit& limit, int64_t now_ns);
  // Takes one token from each bucket, all or none, atomically with respect to
  // other calls (a key listed twice needs two tokens). True for an empty list.
  bool TryAcquire(const std::vector<RateLimitRef>& refs, int64_t now_ns);
  // TryAcquire of the list; never an error.
  Result<bool> Acquire(const std::vector<RateLimitRef>& refs, int64_t now_ns,
                       size_t* refused = nullptr) override;

  // Whole tokens bucket `key` would hold at `now_ns` (N for an unknown key);
  // takes none.
  uint64_t Available(std::string_view key, const RateLimit& limit, int64_t now_ns) const;

  // Drops the buckets that are full at `now_ns`. Returns how many it dropped.
  size_t Prune(int64_t now_ns);
  // Number of buckets held.
  size_t size() const;

  struct Shard;

 private:
  std::unique_ptr<Shard[]> shards_;
};

}  // namespace bastion

#endif  // BASTION_PERMISSIONS_H_
