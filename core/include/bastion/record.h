// The audit record: who did what, when, and in which context.
//
//   bastion::Record r;
//   r.action = "tool_call";
//   r.agent_id = "support-bot";
//   r.user_id = "u-42";               // personal data: erasable later
//   r.tool = "refund";
//   r.operation = "write";
//   r.effect = "require_approval";
//   r.reasons.push_back({"write-tools-need-approval", "refunds need a human"});
//   r.attributes.emplace_back("order_id", "A-1001");
//
// Every string is UTF-8. Empty strings and zero numbers mean "not set" and are
// not stored. Personal-data fields (see IsPersonalField) are committed to the
// hash chain through a salted digest, so their plaintext can be erased later
// while the chain still verifies; docs/ledger_format.md has the details.
#ifndef BASTION_RECORD_H_
#define BASTION_RECORD_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bastion/status.h"

namespace bastion {

struct Reason {
  std::string policy_id;
  std::string message;
  bool operator==(const Reason&) const = default;
};

struct TokenUsage {
  uint64_t input = 0;
  uint64_t output = 0;
  uint64_t cache_read = 0;
  uint64_t cache_write = 0;
  uint64_t reasoning = 0;
  bool operator==(const TokenUsage&) const = default;
};

struct Record {
  // --- who ---
  std::string agent_id;
  std::string agent_role;
  std::string parent_agent_id;
  std::string user_id;  // personal
  std::string tenant_id;

  // --- what ---
  std::string action;  // required: model_call, tool_call, approval, budget_alert, ...
  std::string model;
  std::string tool;
  std::string operation;  // read, write, delete, ...
  std::string resource_id;
  std::string input_summary;   // personal
  std::string output_summary;  // personal
  TokenUsage tokens;
  int64_t cost_nanousd = 0;  // exact cost in units of 1e-9 USD
  std::string effect;        // "", allow, modify, require_approval, deny
  std::vector<Reason> reasons;

  // --- when ---
  int64_t timestamp_ns = 0;  // UTC, ns since the Unix epoch; 0 = "now" at append
  int64_t duration_ns = 0;
  std::string trace_id;
  std::string span_id;
  std::string parent_span_id;

  // --- context ---
  std::string request_id;
  std::string run_id;
  std::string thread_id;
  std::optional<int64_t> step_index;
  std::string risk_level;
  std::string policy_version;
  std::string approval_status;
  std::string approved_by;  // personal
  // Free-form key/value context. Keys are unique; stored sorted by key.
  std::vector<std::pair<std::string, std::string>> attributes;  // personal

  bool operator==(const Record&) const = default;
};

// Size limits enforced by ValidateRecord. Fixed by the format, not options, so
// that every reader can rely on them.
inline constexpr size_t kMaxIdBytes = 1024;            // ids, names, short labels
inline constexpr size_t kMaxSummaryBytes = 64 * 1024;  // input/output summaries
inline constexpr size_t kMaxAttributes = 256;
inline constexpr size_t kMaxAttributeKeyBytes = 256;
inline constexpr size_t kMaxAttributeValueBytes = 16 * 1024;
inline constexpr size_t kMaxReasons = 256;
inline constexpr size_t kMaxReasonMessageBytes = 4 * 1024;
inline constexpr size_t kMaxRecordBytes = 1024 * 1024;  // whole encoded record

// The allowed values of Record::effect.
inline constexpr std::string_view kEffects[] = {"allow", "modify", "require_approval", "deny"};

// Checks a record before it is appended: `action` set, every string valid
// UTF-8 and within its limit, `effect` one of kEffects (or empty), attribute
// keys non-empty and unique, counts non-negative. Sorts `attributes` by key.
// On failure returns InvalidArgument naming the field, e.g.
// "field 'user_id' is not valid UTF-8 (byte 3)".
Status ValidateRecord(Record& record);

// Field names as they appear in Python dicts, the CLI and docs.
enum class Field : uint8_t {
  kAgentId, kAgentRole, kParentAgentId, kUserId, kTenantId,
  kAction, kModel, kTool, kOperation, kResourceId, kInputSummary, kOutputSummary,
  kInputTokens, kOutputTokens, kCacheReadTokens, kCacheWriteTokens, kReasoningTokens,
  kCostUsd, kEffect, kReasons,
  kTimestampNs, kDurationNs, kTraceId, kSpanId, kParentSpanId,
  kRequestId, kRunId, kThreadId, kStepIndex, kRiskLevel, kPolicyVersion,
  kApprovalStatus, kApprovedBy, kAttributes,
};
inline constexpr int kFieldCount = static_cast<int>(Field::kAttributes) + 1;
std::string_view FieldName(Field f);
std::optional<Field> FieldFromName(std::string_view name);
// True for the fields committed through the erasable personal-data digest.
bool IsPersonalField(Field f);

enum class FieldType : uint8_t { kString, kUint, kInt, kReasons, kAttributes };
FieldType TypeOf(Field f);
// The string member behind `f`, or nullptr if `f` is not a string field.
std::string* StringField(Record& r, Field f);
const std::string* StringField(const Record& r, Field f);
// The numeric member behind `f` (kUint and kInt fields), or nullptr.
// step_index is optional: use Record::step_index directly.
uint64_t* UintField(Record& r, Field f);
int64_t* IntField(Record& r, Field f);

}  // namespace bastion

#endif  // BASTION_RECORD_H_
