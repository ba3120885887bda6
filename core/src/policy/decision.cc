// Decision: the one combine rule (bastion/decision.h).
#include "bastion/decision.h"

#include <array>

namespace bastion {

namespace {
constexpr std::array<std::string_view, 4> kEffectNames = {"allow", "modify", "require_approval",
                                                          "deny"};

// An allow vote is a reason only when it says something.
bool IsReason(Effect effect, std::string_view message) {
  return effect != Effect::kAllow || !message.empty();
}
}  // namespace

std::string_view EffectName(Effect e) { return kEffectNames[static_cast<size_t>(e)]; }

std::optional<Effect> EffectFromName(std::string_view name) {
  for (size_t i = 0; i < kEffectNames.size(); ++i) {
    if (kEffectNames[i] == name) return static_cast<Effect>(i);
  }
  return std::nullopt;
}

int RiskRank(std::string_view level) {
  if (level == "low") return 0;
  if (level == "medium") return 1;
  if (level == "high") return 2;
  if (level == "critical") return 3;
  return -1;
}

Decision::Decision()
    : reasons{Reason{std::string(kNoDecisionVoter), std::string(kNoDecisionMessage)}} {}

Decision Decision::DefaultAllow() { return Decision(AllowTag{}); }

void Decision::Combine(Effect vote, std::string_view voter, std::string_view message) {
  if (!decided || vote > effect) {
    decided = true;
    effect = vote;
    reasons.clear();
  } else if (vote < effect) {
    return;
  }
  if (IsReason(vote, message)) reasons.push_back(Reason{std::string(voter), std::string(message)});
}

void Decision::Vote(Effect vote, std::string voter, std::string message) {
  Combine(vote, voter, message);
  PolicyOutcome& o = explain.emplace_back();
  o.policy_id = std::move(voter);
  o.effect = vote;
  o.message = std::move(message);
  o.applied = true;
}

void Decision::Merge(Decision other) {
  other.decided = true;  // an empty decision merged in is a vote to deny
  const bool pristine = decided && effect == Effect::kAllow && reasons.empty() &&
                        redactions.empty() && !model_downgrade && annotations.empty() &&
                        risk_level.empty() && errors.empty() && policy_version.empty() &&
                        explain.empty();
  if (pristine) {  // this is a bare DefaultAllow: the merge is `other` itself
    *this = std::move(other);
    return;
  }
  if (!decided || other.effect > effect) {
    decided = true;
    effect = other.effect;
    reasons = std::move(other.reasons);
  } else if (other.effect == effect) {
    for (Reason& r : other.reasons) {
      if (IsReason(effect, r.message)) reasons.push_back(std::move(r));
    }
  }
  for (Redaction& r : other.redactions) redactions.push_back(std::move(r));
  if (!model_downgrade) model_downgrade = std::move(other.model_downgrade);
  for (auto& a : other.annotations) annotations.push_back(std::move(a));
  if (!other.risk_level.empty() && RiskRank(other.risk_level) > RiskRank(risk_level)) {
    risk_level = std::move(other.risk_level);
  }
  for (PolicyError& e : other.errors) errors.push_back(std::move(e));
  if (!other.policy_version.empty()) policy_version = std::move(other.policy_version);
  for (PolicyOutcome& o : other.explain) explain.push_back(std::move(o));
}

void Decision::Resolve(bool approved, std::string voter, std::string message) {
  if (!approved) {
    Vote(Effect::kDeny, std::move(voter), std::move(message));
    return;
  }
  // What the other votes and the obligations make of the call.
  Effect rest = redactions.empty() && !model_downgrade ? Effect::kAllow : Effect::kModify;
  for (const PolicyOutcome& o : explain) {
    if (o.effect == Effect::kModify) rest = Effect::kModify;
  }
  decided = true;
  effect = rest;
  reasons = {Reason{voter, message}};
  PolicyOutcome& o = explain.emplace_back();
  o.policy_id = std::move(voter);
  o.effect = Effect::kAllow;
  o.message = std::move(message);
  o.applied = true;
}

}  // namespace bastion
