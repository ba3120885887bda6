// One model or tool call as policies see it, and the schema of its fields.
//
//   bastion::CallInfo call;
//   call.hook = bastion::Hook::kBeforeTool;
//   call.agent_id = "support-bot";
//   call.tool = "issue_refund";
//   call.resource_id = "orders/A-1001";
//
//   for (const bastion::CallField& f : bastion::kCallFields) { ... f.name ... }
//   bastion::Record r = bastion::RecordFromCall(call, "tool_call");
//
// kCallFields lists every field of a call exactly once: its name (the same in
// Lua, Python and the docs), where it lives in CallInfo, the ledger Record
// field it becomes, and whether it holds personal data. The Lua call view, the
// Python conversion, the Python stubs and the ledger record of a call all read
// this one table, so a field added here reaches every layer (and the tests of
// each layer fail until it does). Older names stay readable through
// kCallFieldAliases; everything inside the code uses the names of the table.
#ifndef BASTION_CALL_H_
#define BASTION_CALL_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bastion/record.h"
#include "bastion/value.h"

namespace bastion {

enum class Hook : uint8_t {
  kBeforeModel, kAfterModel, kBeforeTool, kAfterTool, kOnChunk, kOnRunStart, kOnRunEnd,
};
inline constexpr int kHookCount = 7;
std::string_view HookName(Hook h);  // "before_model", ...
std::optional<Hook> HookFromName(std::string_view name);

// A description of one call, as policies see it (read-only). Field names are
// the ledger record's where the record has the field (docs/ledger_format.md).
struct CallInfo {
  Hook hook = Hook::kBeforeTool;
  // who
  std::string agent_id, agent_role, parent_agent_id, user_id, tenant_id;
  // what
  std::string model, tool, operation, resource_id;
  Value args;          // tool arguments (JSON-like)
  std::string input;   // prompt / tool input text (before_*)
  std::string output;  // model or tool output (after_*)
  std::string chunk;   // the window of recent streamed text (on_chunk)
  TokenUsage tokens;
  // context
  std::string run_id, thread_id, trace_id, risk_level;
  int64_t step_index = 0;
  int64_t run_steps = 0;       // steps so far in this run
  int64_t run_tool_calls = 0;  // tool calls so far in this run
  std::vector<std::pair<std::string, std::string>> attributes;
};

// How a field is held, and so how each layer reads and converts it.
enum class CallFieldType : uint8_t {
  kHook,        // CallInfo::hook; read as its name ("before_tool")
  kString,      // a std::string member (`text`); unset when empty
  kCount,       // an int64_t member (`count`), >= 0
  kArgs,        // CallInfo::args, a JSON-like Value
  kTokens,      // CallInfo::tokens, a mapping of kTokenFields
  kAttributes,  // CallInfo::attributes, a mapping of strings to strings
};

struct CallField {
  std::string_view name;
  CallFieldType type;
  std::string CallInfo::*text = nullptr;  // kString
  int64_t CallInfo::*count = nullptr;     // kCount
  // The ledger field RecordFromCall copies the value to; unset: the field is
  // not recorded as such (content is recorded as a summary by the guard).
  std::optional<Field> record;
  // Personal data (erasable). For recorded fields, IsPersonalField(*record).
  bool personal = false;
};

// Every field of a call, once, in the order the docs list them.
inline constexpr CallField kCallFields[] = {
    {.name = "hook", .type = CallFieldType::kHook, .record = std::nullopt},
    // who
    {.name = "agent_id", .type = CallFieldType::kString, .text = &CallInfo::agent_id,
     .record = Field::kAgentId},
    {.name = "agent_role", .type = CallFieldType::kString, .text = &CallInfo::agent_role,
     .record = Field::kAgentRole},
    {.name = "parent_agent_id", .type = CallFieldType::kString,
     .text = &CallInfo::parent_agent_id, .record = Field::kParentAgentId},
    {.name = "user_id", .type = CallFieldType::kString, .text = &CallInfo::user_id,
     .record = Field::kUserId, .personal = true},
    {.name = "tenant_id", .type = CallFieldType::kString, .text = &CallInfo::tenant_id,
     .record = Field::kTenantId},
    // what
    {.name = "model", .type = CallFieldType::kString, .text = &CallInfo::model,
     .record = Field::kModel},
    {.name = "tool", .type = CallFieldType::kString, .text = &CallInfo::tool,
     .record = Field::kTool},
    {.name = "operation", .type = CallFieldType::kString, .text = &CallInfo::operation,
     .record = Field::kOperation},
    {.name = "resource_id", .type = CallFieldType::kString, .text = &CallInfo::resource_id,
     .record = Field::kResourceId},
    {.name = "args", .type = CallFieldType::kArgs, .record = std::nullopt, .personal = true},
    {.name = "input", .type = CallFieldType::kString, .text = &CallInfo::input,
     .record = std::nullopt, .personal = true},
    {.name = "output", .type = CallFieldType::kString, .text = &CallInfo::output,
     .record = std::nullopt, .personal = true},
    {.name = "chunk", .type = CallFieldType::kString, .text = &CallInfo::chunk,
     .record = std::nullopt, .personal = true},
    {.name = "tokens", .type = CallFieldType::kTokens, .record = std::nullopt},
    // context
    {.name = "run_id", .type = CallFieldType::kString, .text = &CallInfo::run_id,
     .record = Field::kRunId},
    {.name = "thread_id", .type = CallFieldType::kString, .text = &CallInfo::thread_id,
     .record = Field::kThreadId},
    {.name = "trace_id", .type = CallFieldType::kString, .text = &CallInfo::trace_id,
     .record = Field::kTraceId},
    {.name = "risk_level", .type = CallFieldType::kString, .text = &CallInfo::risk_level,
     .record = Field::kRiskLevel},
    {.name = "step_index", .type = CallFieldType::kCount, .count = &CallInfo::step_index,
     .record = Field::kStepIndex},
    {.name = "run_steps", .type = CallFieldType::kCount, .count = &CallInfo::run_steps,
     .record = std::nullopt},
    {.name = "run_tool_calls", .type = CallFieldType::kCount,
     .count = &CallInfo::run_tool_calls, .record = std::nullopt},
    {.name = "attributes", .type = CallFieldType::kAttributes, .record = Field::kAttributes,
     .personal = true},
};
inline constexpr int kCallFieldCount = static_cast<int>(std::size(kCallFields));

// The token counts of CallInfo::tokens, by their TokenUsage names.
struct TokenField {
  std::string_view name;
  uint64_t TokenUsage::*member;
  Field record;
};
inline constexpr TokenField kTokenFields[] = {
    {"input", &TokenUsage::input, Field::kInputTokens},
    {"output", &TokenUsage::output, Field::kOutputTokens},
    {"cache_read", &TokenUsage::cache_read, Field::kCacheReadTokens},
    {"cache_write", &TokenUsage::cache_write, Field::kCacheWriteTokens},
    {"reasoning", &TokenUsage::reasoning, Field::kReasoningTokens},
};

// Older names, accepted where users write calls (Python keyword arguments and
// dicts, the Lua call view) and nowhere else.
struct CallFieldAlias {
  std::string_view alias;
  std::string_view name;  // a name of kCallFields
};
inline constexpr CallFieldAlias kCallFieldAliases[] = {
    {"resource", "resource_id"},
    {"step", "step_index"},
    {"tenant", "tenant_id"},
    {"risk", "risk_level"},
};

// The field named `name` (or an alias of it); nullptr if there is none.
const CallField* FindCallField(std::string_view name);

// The record every ledger entry about `call` starts from: `action` and each
// recorded field of kCallFields (token counts included; step_index only when
// not 0). The caller adds what the call does not know (span, effect, cost...).
Record RecordFromCall(const CallInfo& call, std::string_view action);

}  // namespace bastion

#endif  // BASTION_CALL_H_
