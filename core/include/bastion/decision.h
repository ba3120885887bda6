// A decision on one call, and the one rule by which votes become it.
//
// Every part that has a say on a call votes: the bundle's permissions, each
// Lua policy, the guard's SLO and budget stages, a human approving or
// rejecting. A vote is an effect, the voter's id and a message. They combine
// by one rule, here and nowhere else:
//
//   - the strictest effect wins: deny > require_approval > modify > allow;
//   - the reasons are the votes of the winning effect, in the order they were
//     cast (an allow vote is a reason only when it says something);
//   - obligations (redactions, a model downgrade, annotations) are merged, in
//     order; the first model downgrade stands;
//   - the risk level is the strictest named; errors are all kept.
//
// An empty decision -- default-constructed, nobody voted -- DENIES, with the
// reason "no decision was made": code that forgets to decide fails closed. A
// voter that admits whatever nobody objects to (the policy engine, the guard)
// starts from Decision::DefaultAllow(), its own explicit allow.
//
//   bastion::Decision d = bastion::Decision::DefaultAllow();
//   d.Vote(bastion::Effect::kModify, "slo:models", "downgraded to small");
//   d.Vote(bastion::Effect::kDeny, "budget:daily", "over budget");
//   // d.effect == kDeny; d.reasons == {{"budget:daily", "over budget"}}
//
// Thread safety: a Decision is a value; distinct objects are independent.
#ifndef BASTION_DECISION_H_
#define BASTION_DECISION_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bastion/record.h"

namespace bastion {

// Ordered from least to most strict: the strictest effect of all votes wins.
enum class Effect : uint8_t { kAllow = 0, kModify = 1, kRequireApproval = 2, kDeny = 3 };
std::string_view EffectName(Effect e);
std::optional<Effect> EffectFromName(std::string_view name);

// Where a redaction applies, and what replaces the span.
struct Redaction {
  std::string target;  // "input", "output", "chunk", or "args.<path>"
  size_t start = 0;    // byte offsets into the target text, [start, end)
  size_t end = 0;
  std::string label;   // replacement, e.g. "[EMAIL]"
  std::string policy_id;
  bool operator==(const Redaction&) const = default;
};

struct PolicyError {
  std::string policy_id;
  // "runtime", "instruction_limit", "memory_limit", "counter_limit", "bad_return"
  std::string kind;
  std::string message;
};

// What one voter said, for explain mode and the audit record.
struct PolicyOutcome {
  std::string policy_id;
  std::optional<Effect> effect;  // unset: the policy did not apply or abstained
  std::string message;
  bool applied = false;  // in scope and implements the hook
  bool failed = false;
};

// "low" 0, "medium" 1, "high" 2, "critical" 3; anything else -1.
int RiskRank(std::string_view level);

// The reason an empty decision denies with.
inline constexpr std::string_view kNoDecisionVoter = "bastion";
inline constexpr std::string_view kNoDecisionMessage = "no decision was made";

struct Decision {
  // An empty decision: deny, "no decision was made", until the first vote.
  Decision();

  // An explicit allow that stands until a vote says otherwise; no reason.
  static Decision DefaultAllow();

  Effect effect = Effect::kDeny;
  // The votes behind the final effect (for allow: those that said something).
  std::vector<Reason> reasons;
  // Obligations merged from every vote, in order.
  std::vector<Redaction> redactions;
  std::optional<std::string> model_downgrade;  // the first downgrade
  std::vector<std::pair<std::string, std::string>> annotations;
  std::string risk_level;  // the strictest of the call's and the voters' levels
  std::vector<PolicyError> errors;
  std::string policy_version;
  std::vector<PolicyOutcome> explain;  // every voter, in order
  // False while nobody voted (and the decision denies for that). The first
  // vote replaces the empty decision's denial.
  bool decided = false;

  // Combines one vote into effect and reasons (the rule above); `explain` is
  // left alone (the policy engine writes it itself).
  void Combine(Effect vote, std::string_view voter, std::string_view message);
  // A vote that also goes on the explain trail as applied: what a guard stage
  // casts.
  void Vote(Effect vote, std::string voter, std::string message);
  // Combines every vote of `other` (its effect and reasons, as one vote each),
  // and merges its obligations, risk, errors and explain trail after this
  // decision's. An empty `other` counts as its denial. The policy version
  // becomes other's when it has one.
  void Merge(Decision other);
  // A human's verdict on a require_approval decision. Rejected: a deny vote by
  // `voter`. Approved: the require_approval votes are answered, so the effect
  // is what the other votes and obligations make it (modify or allow), and
  // the verdict is the only reason.
  void Resolve(bool approved, std::string voter, std::string message);

 private:
  struct AllowTag {};
  explicit Decision(AllowTag) : effect(Effect::kAllow), decided(true) {}
};

}  // namespace bastion

#endif  // BASTION_DECISION_H_
