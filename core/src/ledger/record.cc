#include <algorithm>
#include <array>
#include <string>
#include <type_traits>

#include <fmt/format.h>

#include "bastion/record.h"
#include "util/utf8.h"

namespace bastion {
namespace {

constexpr std::array<std::string_view, kFieldCount> kFieldNames = {
    "agent_id", "agent_role", "parent_agent_id", "user_id", "tenant_id",
    "action", "model", "tool", "operation", "resource_id", "input_summary", "output_summary",
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
    "reasoning_tokens", "cost_usd", "effect", "reasons",
    "timestamp_ns", "duration_ns", "trace_id", "span_id", "parent_span_id",
    "request_id", "run_id", "thread_id", "step_index", "risk_level", "policy_version",
    "approval_status", "approved_by", "attributes",
};

// `field` names the field in an error: a string, or a callable making the
// name, called only on an error (records are checked on every append).
template <typename Name>
Status CheckString(const Name& field, std::string_view value, size_t limit) {
  auto name = [&]() -> std::string {
    if constexpr (std::is_invocable_v<const Name&>) {
      return field();
    } else {
      return std::string(field);
    }
  };
  if (value.size() > limit) {
    return Status::InvalidArgument(
        fmt::format("field '{}' is {} bytes, over its limit of {}", name(), value.size(), limit));
  }
  size_t bad = FindInvalidUtf8(value);
  if (bad != std::string_view::npos) {
    return Status::InvalidArgument(
        fmt::format("field '{}' is not valid UTF-8 (byte {})", name(), bad));
  }
  return Status::OK();
}

}  // namespace

std::string_view FieldName(Field f) { return kFieldNames[static_cast<size_t>(f)]; }

std::optional<Field> FieldFromName(std::string_view name) {
  for (size_t i = 0; i < kFieldNames.size(); ++i) {
    if (kFieldNames[i] == name) return static_cast<Field>(i);
  }
  return std::nullopt;
}

bool IsPersonalField(Field f) {
  switch (f) {
    case Field::kUserId:
    case Field::kInputSummary:
    case Field::kOutputSummary:
    case Field::kApprovedBy:
    case Field::kAttributes:
      return true;
    default:
      return false;
  }
}

Status ValidateRecord(Record& r) {
  if (r.action.empty()) return Status::InvalidArgument("field 'action' is required");
  const std::pair<Field, const std::string*> ids[] = {
      {Field::kAgentId, &r.agent_id},         {Field::kAgentRole, &r.agent_role},
      {Field::kParentAgentId, &r.parent_agent_id}, {Field::kUserId, &r.user_id},
      {Field::kTenantId, &r.tenant_id},       {Field::kAction, &r.action},
      {Field::kModel, &r.model},              {Field::kTool, &r.tool},
      {Field::kOperation, &r.operation},      {Field::kResourceId, &r.resource_id},
      {Field::kEffect, &r.effect},            {Field::kTraceId, &r.trace_id},
      {Field::kSpanId, &r.span_id},           {Field::kParentSpanId, &r.parent_span_id},
      {Field::kRequestId, &r.request_id},     {Field::kRunId, &r.run_id},
      {Field::kThreadId, &r.thread_id},       {Field::kRiskLevel, &r.risk_level},
      {Field::kPolicyVersion, &r.policy_version}, {Field::kApprovalStatus, &r.approval_status},
      {Field::kApprovedBy, &r.approved_by},
  };
  for (const auto& [field, value] : ids) {
    BASTION_RETURN_IF_ERROR(CheckString(FieldName(field), *value, kMaxIdBytes));
  }
  BASTION_RETURN_IF_ERROR(CheckString("input_summary", r.input_summary, kMaxSummaryBytes));
  BASTION_RETURN_IF_ERROR(CheckString("output_summary", r.output_summary, kMaxSummaryBytes));

  if (!r.effect.empty() &&
      std::find(std::begin(kEffects), std::end(kEffects), r.effect) == std::end(kEffects)) {
    return Status::InvalidArgument(fmt::format(
        "field 'effect' is '{}'; expected one of allow, modify, require_approval, deny",
        r.effect));
  }
  if (r.cost_nanousd < 0) return Status::InvalidArgument("field 'cost_usd' is negative");
  if (r.duration_ns < 0) return Status::InvalidArgument("field 'duration_ns' is negative");
  if (r.timestamp_ns < 0) return Status::InvalidArgument("field 'timestamp_ns' is negative");
  if (r.step_index && *r.step_index < 0) {
    return Status::InvalidArgument("field 'step_index' is negative");
  }

  if (r.reasons.size() > kMaxReasons) {
    return Status::InvalidArgument(
        fmt::format("field 'reasons' has {} entries, over its limit of {}", r.reasons.size(),
                    kMaxReasons));
  }
  for (size_t i = 0; i < r.reasons.size(); ++i) {
    BASTION_RETURN_IF_ERROR(
        CheckString([i] { return fmt::format("reasons[{}].policy_id", i); },
                    r.reasons[i].policy_id, kMaxIdBytes));
    BASTION_RETURN_IF_ERROR(
        CheckString([i] { return fmt::format("reasons[{}].message", i); },
                    r.reasons[i].message, kMaxReasonMessageBytes));
  }

  if (r.attributes.size() > kMaxAttributes) {
    return Status::InvalidArgument(
        fmt::format("field 'attributes' has {} entries, over its limit of {}",
                    r.attributes.size(), kMaxAttributes));
  }
  std::sort(r.attributes.begin(), r.attributes.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (size_t i = 0; i < r.attributes.size(); ++i) {
    const std::string& key = r.attributes[i].first;
    const std::string& value = r.attributes[i].second;
    if (key.empty()) return Status::InvalidArgument("field 'attributes' has an empty key");
    BASTION_RETURN_IF_ERROR(CheckString("attributes key", key, kMaxAttributeKeyBytes));
    BASTION_RETURN_IF_ERROR(
        CheckString([&key] { return fmt::format("attributes['{}']", key); }, value,
                    kMaxAttributeValueBytes));
    if (i > 0 && r.attributes[i - 1].first == key) {
      return Status::InvalidArgument(fmt::format("field 'attributes' repeats key '{}'", key));
    }
  }
  return Status::OK();
}

}  // namespace bastion

namespace bastion {

FieldType TypeOf(Field f) {
  switch (f) {
    case Field::kInputTokens:
    case Field::kOutputTokens:
    case Field::kCacheReadTokens:
    case Field::kCacheWriteTokens:
    case Field::kReasoningTokens:
      return FieldType::kUint;
    case Field::kCostUsd:
    case Field::kTimestampNs:
    case Field::kDurationNs:
    case Field::kStepIndex:
      return FieldType::kInt;
    case Field::kReasons:
      return FieldType::kReasons;
    case Field::kAttributes:
      return FieldType::kAttributes;
    default:
      return FieldType::kString;
  }
}

std::string* StringField(Record& r, Field f) {
  switch (f) {
    case Field::kAgentId: return &r.agent_id;
    case Field::kAgentRole: return &r.agent_role;
    case Field::kParentAgentId: return &r.parent_agent_id;
    case Field::kUserId: return &r.user_id;
    case Field::kTenantId: return &r.tenant_id;
    case Field::kAction: return &r.action;
    case Field::kModel: return &r.model;
    case Field::kTool: return &r.tool;
    case Field::kOperation: return &r.operation;
    case Field::kResourceId: return &r.resource_id;
    case Field::kInputSummary: return &r.input_summary;
    case Field::kOutputSummary: return &r.output_summary;
    case Field::kEffect: return &r.effect;
    case Field::kTraceId: return &r.trace_id;
    case Field::kSpanId: return &r.span_id;
    case Field::kParentSpanId: return &r.parent_span_id;
    case Field::kRequestId: return &r.request_id;
    case Field::kRunId: return &r.run_id;
    case Field::kThreadId: return &r.thread_id;
    case Field::kRiskLevel: return &r.risk_level;
    case Field::kPolicyVersion: return &r.policy_version;
    case Field::kApprovalStatus: return &r.approval_status;
    case Field::kApprovedBy: return &r.approved_by;
    default: return nullptr;
  }
}

const std::string* StringField(const Record& r, Field f) {
  return StringField(const_cast<Record&>(r), f);
}

uint64_t* UintField(Record& r, Field f) {
  switch (f) {
    case Field::kInputTokens: return &r.tokens.input;
    case Field::kOutputTokens: return &r.tokens.output;
    case Field::kCacheReadTokens: return &r.tokens.cache_read;
    case Field::kCacheWriteTokens: return &r.tokens.cache_write;
    case Field::kReasoningTokens: return &r.tokens.reasoning;
    default: return nullptr;
  }
}

int64_t* IntField(Record& r, Field f) {
  switch (f) {
    case Field::kCostUsd: return &r.cost_nanousd;
    case Field::kTimestampNs: return &r.timestamp_ns;
    case Field::kDurationNs: return &r.duration_ns;
    default: return nullptr;
  }
}

}  // namespace bastion
