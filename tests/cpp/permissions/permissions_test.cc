#include "bastion/permissions.h"

#include <atomic>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "test_util.h"

namespace bastion {
namespace {

// The example of docs/permissions.md, plus a few entries the tests need.
constexpr std::string_view kYaml = R"(version: 1
roles:
  support:
    tools:
      - name: lookup_order
        operations: [read]
        resources: ["order/*"]
        rate_limit: 10/s
      - name: issue_refund
        operations: [write]
        resources: ["order/*"]
        requires_approval: true
      - name: http_get
        operations: [read]
        network:
          allow: ["*.example.com", "api.partner.io"]
          block: ["evil.example.com"]
      - name: "kb_*"
        operations: ["*"]
      - name: delete_ticket
        operations: [delete]
        resources: ["ticket/**"]
    data:
      - table: orders
        columns: [id, status, total]
        row_filter: "tenant_id = :tenant_id"
        max_rows: 100
      - table: "audit_*"
        columns: ["*"]
    max_tokens: 200000
    requires_approval: [delete]
  readonly:
    tools:
      - name: "*"
        operations: [read]
    max_tokens: 50_000
  blank: {}
agents:
  support-bot:
    role: support
    tools:
      - name: send_email
        operations: [write]
        rate_limit: 2/min
      - name: lookup_order
        operations: [read]
        resources: ["order/*", "customer/*"]
        rate_limit: 100/h
    max_tokens: 500000
  "*-readonly":
    role: readonly
  "support-*":
    role: support
    requires_approval: [write]
  "eu-*-readonly":
    role: readonly
    max_tokens: 1000
  net-bot:
    role: support
    tools:
      - name: http_get
        operations: [read]
        network:
          allow: ["*"]
  lonely-bot:
    tools:
      - name: ping
        operations: [read]
  locked-bot: {}
)";

std::shared_ptr<const Permissions> Fixture() {
  static const std::shared_ptr<const Permissions> perms = [] {
    auto parsed = Permissions::Parse(kYaml, "permissions.yaml");
    EXPECT_TRUE(parsed.ok()) << parsed.status().ToString();
    return parsed.ok() ? *parsed : nullptr;
  }();
  return perms;
}

// ---------------------------------------------------------------------------
// CheckTool

struct ToolCase {
  const char* name;
  const char* agent;
  const char* role;
  const char* tool;
  const char* operation;
  const char* resource_id;
  const char* url;
  bool allowed;
  bool approval;
  const char* reason;  // exact reason
};

const ToolCase kToolCases[] = {
    // allowed
    {"role grant allows", "stranger", "support", "lookup_order", "read", "order/42", "", true,
     false, "allowed by grant 'lookup_order' (roles.support.tools[0])"},
    {"agent's own grant decides first", "support-bot", "", "lookup_order", "read", "customer/7", "",
     true, false, "allowed by grant 'lookup_order' (agents.support-bot.tools[1])"},
    {"agent's extra tool", "support-bot", "", "send_email", "write", "", "", true, false,
     "allowed by grant 'send_email' (agents.support-bot.tools[0])"},
    {"glob tool name, any operation", "support-bot", "", "kb_search", "summarize", "", "", true,
     false, "allowed by grant 'kb_*' (roles.support.tools[3])"},
    {"no resources = any resource", "support-bot", "", "kb_search", "read", "doc/1/2", "", true,
     false, "allowed by grant 'kb_*' (roles.support.tools[3])"},
    {"double star resource", "support-bot", "", "delete_ticket", "delete", "ticket/2024/7", "",
     true, true,
     "allowed by grant 'delete_ticket' (roles.support.tools[4]); operation 'delete' requires "
     "approval for agent 'support-bot' (role 'support')"},
    // approval
    {"grant requires approval", "support-bot", "", "issue_refund", "write", "order/9", "", true,
     true,
     "allowed by grant 'issue_refund' (roles.support.tools[1]); grant 'issue_refund' "
     "(roles.support.tools[1]) requires approval"},
    {"entry adds approval for write", "support-eu", "", "issue_refund", "write", "order/9", "",
     true, true,
     "allowed by grant 'issue_refund' (roles.support.tools[1]); grant 'issue_refund' "
     "(roles.support.tools[1]) requires approval; operation 'write' requires approval for "
     "agent 'support-eu' (role 'support')"},
    // denied: no grants
    {"unknown agent without role", "x", "", "lookup_order", "read", "order/1", "", false, false,
     "agent 'x' has no grants"},
    {"unknown agent, unknown role", "x", "ghost", "lookup_order", "read", "order/1", "", false,
     false, "agent 'x' has no grants (role 'ghost' is not defined)"},
    {"listed agent without any grant", "locked-bot", "support", "lookup_order", "read", "order/1",
     "", false, false, "agent 'locked-bot' has no grant for tool 'lookup_order'"},
    {"no grant for tool", "support-bot", "", "delete_user", "delete", "user/1", "", false, false,
     "agent 'support-bot' (role 'support') has no grant for tool 'delete_user'"},
    {"entry without role", "lonely-bot", "", "lookup_order", "read", "order/1", "", false, false,
     "agent 'lonely-bot' has no grant for tool 'lookup_order'"},
    // denied: operation, resource
    {"wrong operation", "stranger", "support", "issue_refund", "delete", "order/1", "", false,
     false, "grant 'issue_refund' allows operations [write], not 'delete'"},
    {"no operation given", "stranger", "support", "issue_refund", "", "order/1", "", false, false,
     "grant 'issue_refund' allows operations [write], and the call names none"},
    {"resource not covered", "stranger", "support", "lookup_order", "read", "user/42", "", false,
     false, "grant 'lookup_order' does not cover resource 'user/42' (allowed: order/*)"},
    {"star does not cross slash", "stranger", "support", "lookup_order", "read", "order/1/items",
     "", false, false,
     "grant 'lookup_order' does not cover resource 'order/1/items' (allowed: order/*)"},
    {"no resource given", "stranger", "support", "lookup_order", "read", "", "", false, false,
     "grant 'lookup_order' is limited to resources (allowed: order/*), and the call names none"},
    {"identical refusals are merged", "support-bot", "", "lookup_order", "write", "order/1", "",
     false, false, "grant 'lookup_order' allows operations [read], not 'write'"},  // said once
    {"second grant refuses for another reason", "support-bot", "", "lookup_order", "read", "user/1",
     "", false, false,
     "grant 'lookup_order' does not cover resource 'user/1' (allowed: order/*, customer/*); "
     "grant 'lookup_order' does not cover resource 'user/1' (allowed: order/*)"},
    // network
    {"allowlisted subdomain", "stranger", "support", "http_get", "read", "",
     "https://api.example.com/v1/x", true, false,
     "allowed by grant 'http_get' (roles.support.tools[2])"},
    {"allowlisted exact host with port and userinfo", "stranger", "support", "http_get", "read", "",
     "https://u:p@API.Partner.io:8443/", true, false,
     "allowed by grant 'http_get' (roles.support.tools[2])"},
    {"blocked beats allowed", "stranger", "support", "http_get", "read", "",
     "https://evil.example.com/steal", false, false,
     "host 'evil.example.com' is blocked for tool 'http_get'"},
    {"blocked with trailing dot and case", "stranger", "support", "http_get", "read", "",
     "https://EVIL.example.com./", false, false,
     "host 'evil.example.com' is blocked for tool 'http_get'"},
    {"not in allowlist", "stranger", "support", "http_get", "read", "", "https://x.io/", false,
     false,
     "host 'x.io' is not in the allowlist of tool 'http_get' (allowed: *.example.com, "
     "api.partner.io)"},
    {"apex not in wildcard allowlist", "stranger", "support", "http_get", "read", "",
     "https://example.com/", false, false,
     "host 'example.com' is not in the allowlist of tool 'http_get' (allowed: *.example.com, "
     "api.partner.io)"},
    {"allowlist needs a url", "stranger", "support", "http_get", "read", "", "", false, false,
     "grant 'http_get' admits only listed hosts, and the call names no url"},
    {"garbage url", "stranger", "support", "http_get", "read", "", "javascript:alert(1)", false,
     false, "url 'javascript:alert(1)' has no valid host (tool 'http_get' has network rules)"},
    {"backslash trick", "stranger", "support", "http_get", "read", "",
     "https://evil.io\\@api.example.com/", false, false,
     "url 'https://evil.io\\@api.example.com/' has no valid host (tool 'http_get' has network "
     "rules)"},
    {"another grant admits any host", "net-bot", "", "http_get", "read", "", "https://x.io/", true,
     false, "allowed by grant 'http_get' (agents.net-bot.tools[0])"},
    {"block of any matching grant wins", "net-bot", "", "http_get", "read", "",
     "https://evil.example.com/", false, false,
     "host 'evil.example.com' is blocked for tool 'http_get'"},
    {"url ignored without network rules", "stranger", "support", "kb_search", "read", "",
     "not a url", true, false, "allowed by grant 'kb_*' (roles.support.tools[3])"},
    // agent globs, specificity, role fallback
    {"exact id beats pattern", "support-bot", "", "send_email", "write", "", "", true, false,
     "allowed by grant 'send_email' (agents.support-bot.tools[0])"},
    {"pattern entry", "support-eu", "", "lookup_order", "read", "order/1", "", true, false,
     "allowed by grant 'lookup_order' (roles.support.tools[0])"},
    {"longer pattern wins", "support-readonly", "", "issue_refund", "write", "order/1", "", false,
     false, "grant '*' allows operations [read], not 'write'"},
    {"longest pattern wins", "eu-x-readonly", "", "anything", "read", "", "", true, false,
     "allowed by grant '*' (roles.readonly.tools[0])"},
    {"request role ignored for listed agent", "support-readonly", "support", "issue_refund",
     "write", "order/1", "", false, false, "grant '*' allows operations [read], not 'write'"},
    {"role fallback", "someone", "readonly", "weather", "read", "", "", true, false,
     "allowed by grant '*' (roles.readonly.tools[0])"},
    {"empty role has no grants", "someone", "blank", "weather", "read", "", "", false, false,
     "agent 'someone' (role 'blank') has no grant for tool 'weather'"},
};

TEST(PermissionsCheckTool, Table) {
  auto perms = Fixture();
  ASSERT_NE(perms, nullptr);
  for (const ToolCase& c : kToolCases) {
    ToolRequest req;
    req.agent_id = c.agent;
    req.agent_role = c.role;
    req.tool = c.tool;
    req.operation = c.operation;
    req.resource_id = c.resource_id;
    req.url = c.url;
    const ToolCheck check = perms->CheckTool(req);
    EXPECT_EQ(check.allowed, c.allowed) << c.name << ": " << check.reason;
    EXPECT_EQ(check.requires_approval, c.approval) << c.name << ": " << check.reason;
    EXPECT_EQ(check.reason, c.reason) << c.name;
    EXPECT_EQ(check.grant != nullptr, c.allowed) << c.name;
    if (!c.allowed) EXPECT_TRUE(check.rate_limits.empty()) << c.name;
  }
}

TEST(PermissionsCheckTool, RateLimitsOfEveryAdmittingGrant) {
  auto perms = Fixture();
  ToolRequest req;
  req.agent_id = "support-bot";
  req.tool = "lookup_order";
  req.operation = "read";
  req.resource_id = "order/7";  // both the entry's and the role's grant admit it
  const ToolCheck both = perms->CheckTool(req);
  ASSERT_TRUE(both.allowed) << both.reason;
  ASSERT_EQ(both.rate_limits.size(), 2u);
  EXPECT_EQ(both.rate_limits[0].key,
            std::string("support-bot\x1f") + "agents.support-bot.tools[1]");
  EXPECT_EQ(both.rate_limits[0].limit.ToString(), "100/h");
  EXPECT_EQ(both.rate_limits[1].key, std::string("support-bot\x1f") + "roles.support.tools[0]");
  EXPECT_EQ(both.rate_limits[1].limit.ToString(), "10/s");
  EXPECT_EQ(both.grant->where, "agents.support-bot.tools[1]");

  req.resource_id = "customer/7";  // only the entry's grant
  const ToolCheck one = perms->CheckTool(req);
  ASSERT_TRUE(one.allowed);
  ASSERT_EQ(one.rate_limits.size(), 1u);
  EXPECT_EQ(one.rate_limits[0].limit.ToString(), "100/h");

  // Buckets are per agent id, also for agents resolved through one pattern.
  req.agent_id = "support-a";
  req.resource_id = "order/1";
  const ToolCheck a = perms->CheckTool(req);
  req.agent_id = "support-b";
  const ToolCheck b = perms->CheckTool(req);
  ASSERT_EQ(a.rate_limits.size(), 1u);
  ASSERT_EQ(b.rate_limits.size(), 1u);
  EXPECT_NE(a.rate_limits[0].key, b.rate_limits[0].key);

  // Rate limits are enforced with a RateLimiter: 10/s from the role's grant.
  RateLimiter limiter;
  int granted = 0;
  for (int i = 0; i < 50; ++i) granted += limiter.TryAcquire(a.rate_limits, 0) ? 1 : 0;
  EXPECT_EQ(granted, 10);
}

TEST(PermissionsCheckTool, ReasonsClipHugeCallerText) {
  auto perms = Fixture();
  const std::string huge_tool(100000, 't');
  // 199 ASCII bytes, then 2-byte characters: the cut must not split one.
  std::string huge_agent(199, 'a');
  for (int i = 0; i < 2500; ++i) huge_agent += "\xc3\xa9";
  ToolRequest req;
  req.agent_id = huge_agent;
  req.agent_role = "support";
  req.tool = huge_tool;
  req.operation = "read";
  const ToolCheck check = perms->CheckTool(req);
  EXPECT_FALSE(check.allowed);
  EXPECT_EQ(check.reason, fmt::format("agent '{}...' (role 'support') has no grant for tool '{}...'",
                                      std::string(199, 'a'), std::string(200, 't')));
}

TEST(PermissionsCheckTool, ConcurrentChecksAgree) {
  auto perms = Fixture();
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        const ToolCase& c = kToolCases[(i + t) % std::size(kToolCases)];
        ToolRequest req{c.agent, c.role, c.tool, c.operation, c.resource_id, c.url};
        const ToolCheck check = perms->CheckTool(req);
        if (check.allowed != c.allowed || check.reason != c.reason) ++mismatches;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

// ---------------------------------------------------------------------------
// CheckData, MaxTokens, Find

TEST(PermissionsCheckData, Table) {
  auto perms = Fixture();
  struct Case {
    const char* name;
    const char* agent;
    const char* role;
    const char* table;
    std::vector<std::string> columns;
    std::optional<uint64_t> rows;
    bool allowed;
    const char* reason;
  } cases[] = {
      // clang-format off
      {"allowed columns", "support-bot", "", "orders", {"id", "status"}, 10, true,
       "allowed by data grant 'orders' (roles.support.data[0])"},
      {"rows unknown", "support-bot", "", "orders", {"total"}, std::nullopt, true,
       "allowed by data grant 'orders' (roles.support.data[0])"},
      {"no columns named", "support-bot", "", "orders", {}, 100, true,
       "allowed by data grant 'orders' (roles.support.data[0])"},
      {"column not allowed", "support-bot", "", "orders", {"id", "email", "phone"}, 1, false,
       "grant 'orders' does not allow columns [email, phone] of table 'orders' (allowed: id, "
       "status, total)"},
      {"all columns not allowed", "support-bot", "", "orders", {"*"}, 1, false,
       "grant 'orders' does not allow columns [*] of table 'orders' (allowed: id, status, "
       "total)"},
      {"too many rows", "support-bot", "", "orders", {"id"}, 500, false,
       "grant 'orders' allows at most 100 rows, not 500"},
      {"no data grant", "support-bot", "", "users", {"id"}, 1, false,
       "agent 'support-bot' (role 'support') has no data grant for table 'users'"},
      {"glob table, all columns", "support-bot", "", "audit_2024", {"*"}, 1000000, true,
       "allowed by data grant 'audit_*' (roles.support.data[1])"},
      {"glob table, any column", "support-bot", "", "audit_log", {"who", "what"}, std::nullopt,
       true, "allowed by data grant 'audit_*' (roles.support.data[1])"},
      {"role fallback", "someone", "support", "orders", {"id"}, 1, true,
       "allowed by data grant 'orders' (roles.support.data[0])"},
      {"unknown agent", "someone", "", "orders", {"id"}, 1, false,
       "agent 'someone' has no grants"},
      {"role without data", "x-readonly", "", "orders", {"id"}, 1, false,
       "agent 'x-readonly' (role 'readonly') has no data grant for table 'orders'"},
      // clang-format on
  };
  for (const auto& c : cases) {
    DataRequest req;
    req.agent_id = c.agent;
    req.agent_role = c.role;
    req.table = c.table;
    req.columns = c.columns;
    req.rows = c.rows;
    const DataCheck check = perms->CheckData(req);
    EXPECT_EQ(check.allowed, c.allowed) << c.name << ": " << check.reason;
    EXPECT_EQ(check.reason, c.reason) << c.name;
  }

  DataRequest req;
  req.agent_id = "support-bot";
  req.table = "orders";
  req.columns = {"id"};
  const DataCheck check = perms->CheckData(req);
  ASSERT_TRUE(check.allowed);
  EXPECT_EQ(check.row_filter, "tenant_id = :tenant_id");
  EXPECT_EQ(check.max_rows, 100u);
  EXPECT_EQ(check.grant->where, "roles.support.data[0]");
}

TEST(PermissionsMaxTokens, EntryOverridesRole) {
  auto perms = Fixture();
  EXPECT_EQ(perms->MaxTokens("support-bot", ""), 500000u);      // the entry's
  EXPECT_EQ(perms->MaxTokens("support-eu", ""), 200000u);       // its role's
  EXPECT_EQ(perms->MaxTokens("x-readonly", ""), 50000u);        // 50_000
  EXPECT_EQ(perms->MaxTokens("eu-x-readonly", ""), 1000u);      // longer pattern
  EXPECT_EQ(perms->MaxTokens("someone", "readonly"), 50000u);   // role fallback
  EXPECT_EQ(perms->MaxTokens("lonely-bot", ""), std::nullopt);  // none set
  EXPECT_EQ(perms->MaxTokens("someone", ""), std::nullopt);     // no grants
  EXPECT_EQ(perms->MaxTokens("someone", "blank"), std::nullopt);
}

TEST(PermissionsFind, ExposesMergedGrants) {
  auto perms = Fixture();
  const AgentGrants* bot = perms->Find("support-bot", "readonly");
  ASSERT_NE(bot, nullptr);
  EXPECT_EQ(bot->entry(), "support-bot");
  EXPECT_EQ(bot->role(), "support");
  ASSERT_EQ(bot->tools().size(), 7u);  // 2 own + 5 of the role
  EXPECT_EQ(bot->tools()[0].name, "send_email");
  EXPECT_EQ(bot->tools()[0].line, 42);
  EXPECT_EQ(bot->tools()[2].where, "roles.support.tools[0]");
  EXPECT_EQ(bot->data().size(), 2u);
  EXPECT_EQ(bot->approval_operations(), std::vector<std::string>{"delete"});
  EXPECT_TRUE(bot->OperationNeedsApproval("delete"));
  EXPECT_FALSE(bot->OperationNeedsApproval("write"));

  const std::vector<const ToolGrant*> lookup = bot->ToolGrantsFor("lookup_order");
  ASSERT_EQ(lookup.size(), 2u);
  EXPECT_EQ(lookup[0]->where, "agents.support-bot.tools[1]");
  EXPECT_EQ(lookup[1]->where, "roles.support.tools[0]");
  EXPECT_EQ(bot->ToolGrantsFor("kb_x").size(), 1u);
  EXPECT_TRUE(bot->ToolGrantsFor("nothing").empty());

  const ToolGrant& http = bot->tools()[4];
  ASSERT_TRUE(http.network.has_value());
  EXPECT_EQ(http.network->allow, (std::vector<std::string>{"*.example.com", "api.partner.io"}));
  EXPECT_EQ(http.network->block, std::vector<std::string>{"evil.example.com"});

  const AgentGrants* eu = perms->Find("support-eu", "");
  ASSERT_NE(eu, nullptr);
  EXPECT_EQ(eu->entry(), "support-*");
  EXPECT_EQ(eu->approval_operations(), (std::vector<std::string>{"delete", "write"}));

  EXPECT_EQ(perms->Find("support-readonly", "")->entry(), "*-readonly");
  EXPECT_EQ(perms->Find("eu-1-readonly", "")->entry(), "eu-*-readonly");
  const AgentGrants* fallback = perms->Find("nobody", "readonly");
  ASSERT_NE(fallback, nullptr);
  EXPECT_EQ(fallback->entry(), "");
  EXPECT_EQ(fallback->role(), "readonly");
  EXPECT_EQ(perms->Find("nobody", ""), nullptr);
  EXPECT_EQ(perms->Find("nobody", "ghost"), nullptr);
  EXPECT_EQ(perms->FindRole("support")->tools().size(), 5u);
  EXPECT_EQ(perms->FindRole("ghost"), nullptr);
  EXPECT_EQ(perms->role_names(), (std::vector<std::string>{"support", "readonly", "blank"}));
  EXPECT_EQ(perms->agent_keys().size(), 7u);
  EXPECT_EQ(perms->source_name(), "permissions.yaml");
}

TEST(PermissionsFind, EqualLengthPatternsPreferTheFirstWritten) {
  auto parsed = Permissions::Parse(R"(version: 1
roles:
  a: {max_tokens: 1}
  b: {max_tokens: 2}
agents:
  "x-*":
    role: a
  "*-y":
    role: b
)",
                                   "t.yaml");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ((*parsed)->MaxTokens("x-y", ""), 1u);
}

TEST(PermissionsParse, MinimalDocumentDeniesEverything) {
  auto parsed = Permissions::Parse("version: 1\n", "min.yaml");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  ToolRequest req;
  req.agent_id = "a";
  req.agent_role = "r";
  req.tool = "t";
  const ToolCheck check = (*parsed)->CheckTool(req);
  EXPECT_FALSE(check.allowed);
  EXPECT_EQ(check.reason, "agent 'a' has no grants (role 'r' is not defined)");
}

// ---------------------------------------------------------------------------
// Errors: each names source, line, column and field path.

struct ErrorCase {
  const char* name;
  const char* yaml;
  const char* error;  // the whole message after "t.yaml:"
};

const ErrorCase kErrorCases[] = {
    {"malformed yaml", "version: 1\nroles:\n  a: [1, 2\n",
     "4:1: malformed YAML: end of sequence flow not found"},
    {"tab indentation", "version: 1\nroles:\n\ta: {}\n", "3:3: malformed YAML: "},
    {"empty document", "", "1:1: empty document (expected a mapping starting with 'version: 1')"},
    {"comment only", "# nothing\n",
     "1:1: empty document (expected a mapping starting with 'version: 1')"},
    {"two documents", "version: 1\n---\nversion: 1\n",
     "3:1: more than one YAML document (remove the extra '---')"},
    {"root is a list", "- version: 1\n",
     "1:1: expected a mapping with version, roles and agents, found a list"},
    {"missing version", "roles: {}\n",
     "1:1: missing required key 'version' (write 'version: 1' first)"},
    {"unsupported version", "version: 2\n",
     "1:10: version: unsupported version 2 (this build reads version 1)"},
    {"version not a number", "version: one\n",
     "1:10: version: expected a non-negative integer, found 'one'"},
    {"unknown top-level key", "version: 1\nrole: {}\n",
     "2:1: unknown key 'role' (did you mean 'roles'?)"},
    {"unknown key far from any", "version: 1\nfrobnicate: 1\n",
     "2:1: unknown key 'frobnicate' (allowed: version, roles, agents)"},
    {"duplicate top-level key", "version: 1\nroles: {}\nroles: {}\n",
     "3:1: duplicate key 'roles' (first defined at line 2)"},
    {"roles not a mapping", "version: 1\nroles: [a]\n",
     "2:8: roles: expected a mapping, found a list"},
    {"role is empty", "version: 1\nroles:\n  support:\n",
     "3:3: roles.support: expected a mapping, found nothing"},
    {"duplicate role", "version: 1\nroles:\n  a: {}\n  b: {}\n  a: {}\n",
     "5:3: roles: duplicate role 'a' (first defined at line 3)"},
    {"unknown role key", "version: 1\nroles:\n  a:\n    tool: []\n",
     "4:5: roles.a: unknown key 'tool' (did you mean 'tools'?)"},
    {"role key only agents have", "version: 1\nroles:\n  a:\n    role: b\n",
     "4:5: roles.a: unknown key 'role' (allowed: tools, data, max_tokens, requires_approval)"},
    {"tools not a list", "version: 1\nroles:\n  a:\n    tools: {name: x}\n",
     "4:12: roles.a.tools: expected a list of tools grants, found a mapping"},
    {"tools empty", "version: 1\nroles:\n  a:\n    tools: []\n",
     "4:12: roles.a.tools: must not be empty (omit the key instead)"},
    {"tool grant is a string", "version: 1\nroles:\n  a:\n    tools:\n      - lookup_order\n",
     "5:9: roles.a.tools[0]: expected a mapping, found a scalar"},
    {"operations not a list",
     "version: 1\nroles:\n  support:\n    tools:\n      - name: a\n        operations: [read]\n"
     "      - name: b\n        operations: write\n",
     "8:21: roles.support.tools[1].operations: expected a list of strings"},
    {"operations empty",
     "version: 1\nroles:\n  a:\n    tools:\n      - name: a\n        operations: []\n",
     "6:21: roles.a.tools[0].operations: must not be empty (omit the key instead)"},
    {"operation not a word",
     "version: 1\nroles:\n  a:\n    tools:\n      - name: a\n        operations: [read, 're ad']\n",
     "6:28: roles.a.tools[0].operations[1]: 're ad' is not an operation (a word of letters, "
     "digits, _ . : - or \"*\")"},
    {"operation is a list",
     "version: 1\nroles:\n  a:\n    tools:\n      - name: a\n        operations: [[read]]\n",
     "6:22: roles.a.tools[0].operations[0]: expected a string, found a list"},
    {"typo in grant key",
     "version: 1\nroles:\n  a:\n    tools:\n      - name: a\n        operation: [read]\n",
     "6:9: roles.a.tools[0]: unknown key 'operation' (did you mean 'operations'?)"},
    {"missing name", "version: 1\nroles:\n  a:\n    tools:\n      - operations: [read]\n",
     "5:9: roles.a.tools[0]: missing required key 'name'"},
    {"missing operations", "version: 1\nroles:\n  a:\n    tools:\n      - name: x\n",
     "5:9: roles.a.tools[0]: missing required key 'operations'"},
    {"empty name",
     "version: 1\nroles:\n  a:\n    tools:\n      - name: ''\n        operations: [read]\n",
     "5:15: roles.a.tools[0].name: empty tool name"},
    {"bad tool glob",
     "version: 1\nroles:\n  a:\n    tools:\n      - name: 'x[a'\n        operations: [read]\n",
     "5:15: roles.a.tools[0].name: invalid glob 'x[a': unterminated character class at offset 1"},
    {"bad resource glob",
     "version: 1\nroles:\n  a:\n    tools:\n      - name: x\n        operations: [read]\n"
     "        resources: ['order/*', 'order/[a-']\n",
     "7:32: roles.a.tools[0].resources[1]: invalid glob 'order/[a-': unterminated character "
     "class at offset 6"},
    {"empty resource",
     "version: 1\nroles:\n  a:\n    tools:\n      - name: x\n        operations: [read]\n"
     "        resources: ['']\n",
     "7:21: roles.a.tools[0].resources[0]: empty pattern"},
    {"rate limit unit",
     "version: 1\nroles:\n  a:\n    tools:\n      - name: x\n        operations: [read]\n"
     "        rate_limit: 10/sec\n",
     "7:21: roles.a.tools[0].rate_limit: invalid rate limit '10/sec': unknown unit 'sec' (use "
     "s, min or h)"},
    {"rate limit zero",
     "version: 1\nroles:\n  a:\n    tools:\n      - name: x\n        operations: [read]\n"
     "        rate_limit: 0/s\n",
     "7:21: roles.a.tools[0].rate_limit: invalid rate limit '0/s': N must be between 1 and "
     "1000000"},
    {"rate limit too high",
     "version: 1\nroles:\n  a:\n    tools:\n      - name: x\n        operations: [read]\n"
     "        rate_limit: 99999999999/h\n",
     "7:21: roles.a.tools[0].rate_limit: invalid rate limit '99999999999/h': N must be between "
     "1 and 1000000"},
    {"rate limit no slash",
     "version: 1\nroles:\n  a:\n    tools:\n      - name: x\n        operations: [read]\n"
     "        rate_limit: 10\n",
     "7:21: roles.a.tools[0].rate_limit: invalid rate limit '10': expected N/s, N/min or N/h"},
    {"rate limit not a number",
     "version: 1\nroles:\n  a:\n    tools:\n      - name: x\n        operations: [read]\n"
     "        rate_limit: ten/s\n",
     "7:21: roles.a.tools[0].rate_limit: invalid rate limit 'ten/s': expected N/s, N/min or "
     "N/h with N a whole number"},
    {"rate limit negative",
     "version: 1\nroles:\n  a:\n    tools:\n      - name: x\n        operations: [read]\n"
     "        rate_limit: -1/s\n",
     "7:21: roles.a.tools[0].rate_limit: invalid rate limit '-1/s': expected N/s, N/min or "
     "N/h with N a whole number"},
    {"requires_approval not a bool",
     "version: 1\nroles:\n  a:\n    tools:\n      - name: x\n        operations: [read]\n"
     "        requires_approval: yes\n",
     "7:28: roles.a.tools[0].requires_approval: expected true or false, found 'yes'"},
    {"network empty",
     "version: 1\nroles:\n  a:\n    tools:\n      - name: x\n        operations: [read]\n"
     "        network: {}\n",
     "7:18: roles.a.tools[0].network: expected 'allow' and/or 'block'"},
    {"network unknown key",
     "version: 1\nroles:\n  a:\n    tools:\n      - name: x\n        operations: [read]\n"
     "        network:\n          deny: [x.io]\n",
     "8:11: roles.a.tools[0].network: unknown key 'deny' (allowed: allow, block)"},
    {"network bad domain",
     "version: 1\nroles:\n  a:\n    tools:\n      - name: x\n        operations: [read]\n"
     "        network:\n          allow: ['*.example.com', 'api.*.com']\n",
     "8:36: roles.a.tools[0].network.allow[1]: invalid domain 'api.*.com': '*' is only allowed "
     "as a whole leading label (\"*.example.com\")"},
    {"network block not a list",
     "version: 1\nroles:\n  a:\n    tools:\n      - name: x\n        operations: [read]\n"
     "        network:\n          block: evil.io\n",
     "8:18: roles.a.tools[0].network.block: expected a list of strings"},
    {"data missing columns", "version: 1\nroles:\n  a:\n    data:\n      - table: orders\n",
     "5:9: roles.a.data[0]: missing required key 'columns' (use [\"*\"] for all)"},
    {"data missing table", "version: 1\nroles:\n  a:\n    data:\n      - columns: [id]\n",
     "5:9: roles.a.data[0]: missing required key 'table'"},
    {"data columns not a list",
     "version: 1\nroles:\n  a:\n    data:\n      - table: t\n        columns: id\n",
     "6:18: roles.a.data[0].columns: expected a list of strings"},
    {"data max_rows not a number",
     "version: 1\nroles:\n  a:\n    data:\n      - table: t\n        columns: [id]\n"
     "        max_rows: many\n",
     "7:19: roles.a.data[0].max_rows: expected a non-negative integer, found 'many'"},
    {"data max_rows negative",
     "version: 1\nroles:\n  a:\n    data:\n      - table: t\n        columns: [id]\n"
     "        max_rows: -1\n",
     "7:19: roles.a.data[0].max_rows: expected a non-negative integer, found '-1'"},
    {"data row_filter not a string",
     "version: 1\nroles:\n  a:\n    data:\n      - table: t\n        columns: [id]\n"
     "        row_filter: {a: 1}\n",
     "7:21: roles.a.data[0].row_filter: expected a string, found a mapping"},
    {"data typo", "version: 1\nroles:\n  a:\n    data:\n      - table: t\n        column: [id]\n",
     "6:9: roles.a.data[0]: unknown key 'column' (did you mean 'columns'?)"},
    {"max_tokens too large", "version: 1\nroles:\n  a:\n    max_tokens: 99999999999999999999\n",
     "4:17: roles.a.max_tokens: '99999999999999999999' is too large"},
    {"max_tokens a list", "version: 1\nroles:\n  a:\n    max_tokens: [1]\n",
     "4:17: roles.a.max_tokens: expected a non-negative integer, found a list"},
    {"role requires_approval is a bool", "version: 1\nroles:\n  a:\n    requires_approval: true\n",
     "4:24: roles.a.requires_approval: expected a list of operations (requires_approval: true "
     "belongs on a tool grant)"},
    {"agents not a mapping", "version: 1\nagents: [bot]\n",
     "2:9: agents: expected a mapping, found a list"},
    {"unknown role referenced",
     "version: 1\nroles:\n  support: {}\nagents:\n  bot:\n    role: suport\n",
     "6:11: agents.bot.role: unknown role 'suport' (defined: support)"},
    {"role referenced without roles", "version: 1\nagents:\n  bot:\n    role: support\n",
     "4:11: agents.bot.role: unknown role 'support' (no roles are defined)"},
    {"duplicate agents", "version: 1\nagents:\n  support-bot: {}\n  other: {}\n  support-bot: {}\n",
     "5:3: agents: duplicate agent 'support-bot' (first defined at line 3)"},
    {"bad agent glob", "version: 1\nagents:\n  'bot-[x': {}\n",
     "3:3: agents[\"bot-[x\"]: invalid agent glob 'bot-[x': unterminated character class at "
     "offset 4"},
    {"agent key typo", "version: 1\nagents:\n  bot:\n    rol: x\n",
     "4:5: agents.bot: unknown key 'rol' (did you mean 'role'?)"},
    {"agent entry empty", "version: 1\nagents:\n  bot:\n",
     "3:3: agents.bot: expected a mapping, found nothing"},
    {"agent grant error path",
     "version: 1\nagents:\n  '*-ro':\n    tools:\n      - name: x\n        operations: read\n",
     "6:21: agents[\"*-ro\"].tools[0].operations: expected a list of strings"},
    {"agent role not a string", "version: 1\nagents:\n  bot:\n    role: [a]\n",
     "4:11: agents.bot.role: expected a string, found a list"},
    {"key is not a string", "version: 1\nroles:\n  [a, b]: {}\n",
     "3:3: roles: keys must be strings"},
    {"control character in agent id", "version: 1\nagents:\n  \"bot\\x01\": {}\n",
     "3:3: agents[\"bot\x01\"]: agent names may not contain control characters"},
};

TEST(PermissionsParse, ErrorsNameLineColumnAndField) {
  for (const ErrorCase& c : kErrorCases) {
    auto parsed = Permissions::Parse(c.yaml, "t.yaml");
    ASSERT_FALSE(parsed.ok()) << c.name << ": parsed although it should not";
    EXPECT_TRUE(parsed.status().IsInvalidArgument()) << c.name;
    const std::string want = std::string("t.yaml:") + c.error;
    const std::string& got = parsed.status().message();
    EXPECT_EQ(got.substr(0, want.size()), want) << c.name << "\n   got: " << got;
  }
}

TEST(PermissionsParse, NeverThrowsOnDamagedInput) {
  // Every prefix of a valid document, and random byte damage to it: each
  // either parses or fails with a Status; nothing throws or crashes.
  const std::string doc(kYaml);
  int failures = 0;
  for (size_t n = 0; n <= doc.size(); n += 7) {
    auto parsed = Permissions::Parse(std::string_view(doc).substr(0, n), "prefix.yaml");
    if (!parsed.ok()) {
      ++failures;
      EXPECT_EQ(parsed.status().message().rfind("prefix.yaml", 0), 0u)
          << parsed.status().ToString();
    }
  }
  EXPECT_GT(failures, 0);
  std::mt19937 rng(7);
  const char junk[] = "[]{}:,-*&!|>'\"#%@` \n\t\\?0a\x01\xff";
  for (int i = 0; i < 2000; ++i) {
    std::string damaged = doc;
    for (int k = 0; k < 3; ++k) damaged[rng() % damaged.size()] = junk[rng() % (sizeof(junk) - 1)];
    auto parsed = Permissions::Parse(damaged, "damaged.yaml");
    if (!parsed.ok()) EXPECT_FALSE(parsed.status().message().empty());
  }
  // Deep nesting is refused, not a stack overflow.
  auto deep = Permissions::Parse(std::string(100000, '['), "deep.yaml");
  EXPECT_FALSE(deep.ok());
}

TEST(PermissionsParse, ParseRateLimit) {
  struct Case {
    const char* text;
    std::optional<RateLimit> want;
  } cases[] = {
      {"10/s", RateLimit{10, 1'000'000'000}},
      {"600/min", RateLimit{600, 60'000'000'000}},
      {"5/h", RateLimit{5, 3'600'000'000'000}},
      {" 3 / s ", RateLimit{3, 1'000'000'000}},
      {"1000000/s", RateLimit{1000000, 1'000'000'000}},
      {"1000001/s", std::nullopt},
      {"0/s", std::nullopt},
      {"10/m", std::nullopt},
      {"10/S", std::nullopt},
      {"/s", std::nullopt},
      {"10/", std::nullopt},
      {"1.5/s", std::nullopt},
      {"", std::nullopt},
  };
  for (const auto& c : cases) {
    auto got = ParseRateLimit(c.text);
    EXPECT_EQ(got.ok(), c.want.has_value()) << "'" << c.text << "'";
    if (got.ok() && c.want) EXPECT_EQ(*got, *c.want) << "'" << c.text << "'";
  }
  EXPECT_EQ((RateLimit{10, 1'000'000'000}).ToString(), "10/s");
  EXPECT_EQ((RateLimit{600, 60'000'000'000}).ToString(), "600/min");
  EXPECT_EQ((RateLimit{5, 3'600'000'000'000}).ToString(), "5/h");
}

TEST(PermissionsLoadFile, ReadsAndNamesTheFile) {
  testing::TempDir dir;
  const std::string good = dir.Sub("permissions.yaml");
  std::ofstream(good) << kYaml;
  auto loaded = Permissions::LoadFile(good);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ((*loaded)->source_name(), good);

  const std::string bad = dir.Sub("bad.yaml");
  std::ofstream(bad) << "version: 1\nroles:\n  a:\n    tools: 3\n";
  auto failed = Permissions::LoadFile(bad);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().message(),
            bad + ":4:12: roles.a.tools: expected a list of tools grants, found a scalar");

  auto missing = Permissions::LoadFile(dir.Sub("nope.yaml"));
  EXPECT_TRUE(missing.status().IsNotFound()) << missing.status().ToString();
  EXPECT_NE(missing.status().message().find("nope.yaml"), std::string::npos);

  auto directory = Permissions::LoadFile(dir.path());
  EXPECT_FALSE(directory.ok());
  EXPECT_NE(directory.status().message().find("is a directory"), std::string::npos);
}

TEST(PermissionsParse, DocsExampleParses) {
  // docs/permissions.md's full example, kept in sync by hand.
  std::ifstream in(std::string(BASTION_SOURCE_DIR) + "/docs/permissions.md");
  ASSERT_TRUE(in.good());
  const std::string md((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Every ```yaml block that starts with "version:" must parse.
  int blocks = 0;
  for (size_t at = md.find("```yaml\n"); at != std::string::npos;
       at = md.find("```yaml\n", at + 1)) {
    const size_t begin = at + 8;
    const size_t end = md.find("```", begin);
    ASSERT_NE(end, std::string::npos);
    const std::string block = md.substr(begin, end - begin);
    if (block.rfind("version:", 0) != 0) continue;
    ++blocks;
    auto parsed = Permissions::Parse(block, fmt::format("docs block {}", blocks));
    ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
    if (block.find("ops-intern") != std::string::npos) {
      // What the guide says about its last example.
      ToolRequest req;
      req.agent_id = "ops-1";
      req.tool = "service_restart";
      req.operation = "restart";
      req.resource_id = "svc/staging/web";
      ToolCheck check = (*parsed)->CheckTool(req);
      EXPECT_TRUE(check.allowed && !check.requires_approval) << check.reason;
      req.resource_id = "svc/prod/web";
      check = (*parsed)->CheckTool(req);
      EXPECT_TRUE(check.allowed && check.requires_approval) << check.reason;
      ASSERT_EQ(check.rate_limits.size(), 1u);
      EXPECT_EQ(check.rate_limits[0].limit.ToString(), "5/min");
      req.agent_id = "ops-intern";
      check = (*parsed)->CheckTool(req);
      EXPECT_EQ(check.reason, "agent 'ops-intern' has no grant for tool 'service_restart'");
    }
  }
  EXPECT_GE(blocks, 3);
}

// ---------------------------------------------------------------------------
// RateLimiter

constexpr int64_t kSec = 1'000'000'000;

TEST(RateLimiter, BurstThenEmpty) {
  RateLimiter limiter;
  const RateLimit limit{10, kSec};
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(limiter.TryAcquire("k", limit, 0)) << "token " << i;
  EXPECT_FALSE(limiter.TryAcquire("k", limit, 0));
  EXPECT_EQ(limiter.Available("k", limit, 0), 0u);
  EXPECT_EQ(limiter.Available("other", limit, 0), 10u);
}

TEST(RateLimiter, RefillsOverSimulatedTime) {
  RateLimiter limiter;
  const RateLimit limit{10, kSec};  // one token per 100 ms
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(limiter.TryAcquire("k", limit, 0));
  EXPECT_FALSE(limiter.TryAcquire("k", limit, 99'999'999));
  EXPECT_TRUE(limiter.TryAcquire("k", limit, 100'000'000));
  EXPECT_FALSE(limiter.TryAcquire("k", limit, 100'000'000));
  // After a long pause the bucket is full, not fuller.
  EXPECT_EQ(limiter.Available("k", limit, 3600 * kSec), 10u);
  int granted = 0;
  while (limiter.TryAcquire("k", limit, 3600 * kSec)) ++granted;
  EXPECT_EQ(granted, 10);
}

TEST(RateLimiter, ExactFractionalRefill) {
  RateLimiter limiter;
  const RateLimit limit{3, kSec};  // one token per 333 333 333.3 ns
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(limiter.TryAcquire("k", limit, 0));
  EXPECT_FALSE(limiter.TryAcquire("k", limit, 333'333'333));
  EXPECT_TRUE(limiter.TryAcquire("k", limit, 333'333'334));
  // Ten simulated minutes of one attempt per millisecond: the burst, then
  // exactly 3 per second over the 599.999 s that follow (1799.997 tokens).
  RateLimiter fresh;
  int granted = 0;
  for (int64_t ms = 0; ms < 600'000; ++ms) granted += fresh.TryAcquire("k", limit, ms * 1'000'000);
  EXPECT_EQ(granted, 3 + 1799);
}

TEST(RateLimiter, TimeGoingBackwardsRefillsNothing) {
  RateLimiter limiter;
  const RateLimit limit{1, kSec};
  ASSERT_TRUE(limiter.TryAcquire("k", limit, 10 * kSec));
  EXPECT_FALSE(limiter.TryAcquire("k", limit, 5 * kSec));
  EXPECT_FALSE(limiter.TryAcquire("k", limit, 10 * kSec + kSec / 2));
  EXPECT_TRUE(limiter.TryAcquire("k", limit, 11 * kSec));
  // Extreme clocks do not overflow.
  EXPECT_TRUE(limiter.TryAcquire("x", limit, INT64_MIN));
  EXPECT_TRUE(limiter.TryAcquire("x", limit, INT64_MAX));
}

TEST(RateLimiter, KeysAreIndependent) {
  RateLimiter limiter;
  const RateLimit limit{1, kSec};
  EXPECT_TRUE(limiter.TryAcquire("a", limit, 0));
  EXPECT_TRUE(limiter.TryAcquire("b", limit, 0));
  EXPECT_FALSE(limiter.TryAcquire("a", limit, 0));
  EXPECT_EQ(limiter.size(), 2u);
}

TEST(RateLimiter, ChangedLimitKeepsWholeTokensCapped) {
  RateLimiter limiter;
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(limiter.TryAcquire("k", RateLimit{10, kSec}, 0));
  // 6 tokens left; a reload lowers the limit to 2/min: capped to 2.
  EXPECT_EQ(limiter.Available("k", RateLimit{2, 60 * kSec}, 0), 2u);
  EXPECT_TRUE(limiter.TryAcquire("k", RateLimit{2, 60 * kSec}, 0));
  EXPECT_TRUE(limiter.TryAcquire("k", RateLimit{2, 60 * kSec}, 0));
  EXPECT_FALSE(limiter.TryAcquire("k", RateLimit{2, 60 * kSec}, 0));
  EXPECT_TRUE(limiter.TryAcquire("k", RateLimit{2, 60 * kSec}, 30 * kSec));
}

TEST(RateLimiter, InvalidLimitsGrantNothing) {
  RateLimiter limiter;
  EXPECT_FALSE(limiter.TryAcquire("k", RateLimit{0, kSec}, 0));
  EXPECT_FALSE(limiter.TryAcquire("k", RateLimit{1, 0}, 0));
  EXPECT_FALSE(limiter.TryAcquire("k", RateLimit{1000000, INT64_MAX}, 0));
  EXPECT_FALSE(limiter.TryAcquire({{"k", RateLimit{1, kSec}}, {"j", RateLimit{0, kSec}}}, 0));
  EXPECT_EQ(limiter.Available("k", RateLimit{0, kSec}, 0), 0u);
}

TEST(RateLimiter, SeveralBucketsAllOrNothing) {
  RateLimiter limiter;
  const RateLimit one{1, kSec}, five{5, kSec};
  const std::vector<RateLimitRef> refs = {{"a", five}, {"b", one}};
  EXPECT_TRUE(limiter.TryAcquire(std::vector<RateLimitRef>{}, 0));
  EXPECT_TRUE(limiter.TryAcquire(refs, 0));
  EXPECT_FALSE(limiter.TryAcquire(refs, 0));       // "b" is empty ...
  EXPECT_EQ(limiter.Available("a", five, 0), 4u);  // ... so "a" kept its token
  // A key listed twice needs two tokens.
  EXPECT_TRUE(limiter.TryAcquire({{"c", RateLimit{2, kSec}}, {"c", RateLimit{2, kSec}}}, 0));
  EXPECT_FALSE(limiter.TryAcquire({{"d", one}, {"d", one}}, 0));
  EXPECT_EQ(limiter.Available("d", one, 0), 1u);
}

TEST(RateLimiter, PruneDropsOnlyFullBuckets) {
  RateLimiter limiter;
  const RateLimit limit{2, kSec};
  ASSERT_TRUE(limiter.TryAcquire("used", limit, 0));
  ASSERT_TRUE(limiter.TryAcquire("drained", limit, 0));
  ASSERT_TRUE(limiter.TryAcquire("drained", limit, 0));
  EXPECT_EQ(limiter.Prune(0), 0u);
  EXPECT_EQ(limiter.Prune(kSec / 2), 1u);  // "used" is full again
  EXPECT_EQ(limiter.size(), 1u);
  EXPECT_EQ(limiter.Prune(kSec), 1u);
  EXPECT_EQ(limiter.size(), 0u);
}

TEST(RateLimiter, RacingThreadsNeverExceedTheBurst) {
  RateLimiter limiter;
  const RateLimit limit{1000, kSec};
  constexpr int kThreads = 8;
  std::atomic<int> granted{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      while (!go.load()) std::this_thread::yield();
      for (int i = 0; i < 5000; ++i) {
        if (limiter.TryAcquire("shared", limit, 42)) ++granted;
      }
    });
  }
  go = true;
  for (auto& th : threads) th.join();
  EXPECT_EQ(granted.load(), 1000);
}

TEST(RateLimiter, RacingThreadsWithAdvancingClockStayWithinRate) {
  RateLimiter limiter;
  const RateLimit limit{50, kSec};
  constexpr int kThreads = 8;
  constexpr int64_t kStep = 1'000'000;  // each attempt advances the clock by 1 ms
  std::atomic<int64_t> clock{0};
  std::atomic<int> granted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 4000; ++i) {
        const int64_t now = clock.fetch_add(kStep);
        if (limiter.TryAcquire("shared", limit, now)) ++granted;
      }
    });
  }
  for (auto& th : threads) th.join();
  const int64_t elapsed = clock.load();  // 32 simulated seconds
  const int64_t bound = 50 + elapsed * 50 / kSec;
  EXPECT_LE(granted.load(), bound);
  EXPECT_GE(granted.load(), bound * 9 / 10);  // and the threads did get their share
}

TEST(RateLimiter, RacingMultiBucketAcquisitionsRespectEveryBucket) {
  RateLimiter limiter;
  const RateLimit limit{300, kSec};
  std::atomic<int> ab{0}, bc{0}, ca{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      const std::vector<RateLimitRef> refs[] = {
          {{"a", limit}, {"b", limit}}, {{"b", limit}, {"c", limit}}, {{"c", limit}, {"a", limit}}};
      std::atomic<int>* counters[] = {&ab, &bc, &ca};
      for (int i = 0; i < 2000; ++i) {
        const int which = (i + t) % 3;
        if (limiter.TryAcquire(refs[which], 7)) ++*counters[which];
      }
    });
  }
  for (auto& th : threads) th.join();
  // Each bucket gave at most 300 tokens, and each success took from two.
  EXPECT_LE(ab.load() + ca.load(), 300);
  EXPECT_LE(ab.load() + bc.load(), 300);
  EXPECT_LE(bc.load() + ca.load(), 300);
  // And what is left is exactly what was not taken.
  EXPECT_EQ(limiter.Available("a", limit, 7), 300u - ab.load() - ca.load());
  EXPECT_EQ(limiter.Available("b", limit, 7), 300u - ab.load() - bc.load());
  EXPECT_EQ(limiter.Available("c", limit, 7), 300u - bc.load() - ca.load());
  EXPECT_GT(ab.load() + bc.load() + ca.load(), 300);
}

TEST(RateLimiter, ManyKeysManyThreads) {
  RateLimiter limiter;
  const RateLimit limit{3, kSec};
  constexpr int kKeys = 500;
  std::vector<std::atomic<int>> per_key(kKeys);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5 * kKeys; ++i) {
        const int k = (i * 7 + t) % kKeys;
        if (limiter.TryAcquire(fmt::format("agent-{}\x1fgrant", k), limit, 0)) ++per_key[k];
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int k = 0; k < kKeys; ++k) EXPECT_EQ(per_key[k].load(), 3) << "key " << k;
  EXPECT_EQ(limiter.size(), static_cast<size_t>(kKeys));
}

}  // namespace
}  // namespace bastion
