// The one combine rule of bastion/decision.h.
#include "bastion/decision.h"

#include <gtest/gtest.h>

namespace bastion {
namespace {

TEST(Decision, AnEmptyDecisionDenies) {
  const Decision d{};
  EXPECT_EQ(d.effect, Effect::kDeny);
  EXPECT_FALSE(d.decided);
  ASSERT_EQ(d.reasons.size(), 1u);
  EXPECT_EQ(d.reasons[0].policy_id, "bastion");
  EXPECT_EQ(d.reasons[0].message, "no decision was made");
}

TEST(Decision, TheFirstVoteReplacesTheEmptyDenial) {
  Decision d;
  d.Vote(Effect::kAllow, "a", "");
  EXPECT_EQ(d.effect, Effect::kAllow);
  EXPECT_TRUE(d.decided);
  EXPECT_TRUE(d.reasons.empty());  // an allow without a message is no reason
  ASSERT_EQ(d.explain.size(), 1u);
  EXPECT_TRUE(d.explain[0].applied);
}

TEST(Decision, DefaultAllowStandsUntilAVoteObjects) {
  Decision d = Decision::DefaultAllow();
  EXPECT_EQ(d.effect, Effect::kAllow);
  EXPECT_TRUE(d.reasons.empty());
  d.Vote(Effect::kAllow, "ok", "fine by me");
  EXPECT_EQ(d.reasons, (std::vector<Reason>{{"ok", "fine by me"}}));
}

TEST(Decision, TheStrictestEffectWinsWithItsReasons) {
  struct Case {
    const char* name;
    std::vector<Effect> votes;
    Effect effect;
    std::vector<std::string> voters;  // the reasons, in order
  };
  const Case cases[] = {
      {"modify over allow", {Effect::kAllow, Effect::kModify}, Effect::kModify, {"v1"}},
      {"approval over modify", {Effect::kModify, Effect::kRequireApproval, Effect::kModify},
       Effect::kRequireApproval, {"v1"}},
      {"deny over everything", {Effect::kRequireApproval, Effect::kDeny, Effect::kModify,
                                Effect::kDeny}, Effect::kDeny, {"v1", "v3"}},
      {"equal votes all count", {Effect::kModify, Effect::kModify}, Effect::kModify,
       {"v0", "v1"}},
  };
  for (const Case& c : cases) {
    Decision d = Decision::DefaultAllow();
    for (size_t i = 0; i < c.votes.size(); ++i) {
      d.Vote(c.votes[i], "v" + std::to_string(i), "said " + std::to_string(i));
    }
    EXPECT_EQ(d.effect, c.effect) << c.name;
    std::vector<std::string> voters;
    for (const Reason& r : d.reasons) voters.push_back(r.policy_id);
    EXPECT_EQ(voters, c.voters) << c.name;
    EXPECT_EQ(d.explain.size(), c.votes.size()) << c.name;
  }
}

TEST(Decision, MergeCombinesVotesAndKeepsObligations) {
  Decision policies = Decision::DefaultAllow();
  policies.Vote(Effect::kModify, "pii", "redacted");
  policies.redactions.push_back({"input", 0, 3, "[EMAIL]", "pii"});
  policies.model_downgrade = "small";
  policies.risk_level = "medium";
  policies.policy_version = "v2";

  Decision d = Decision::DefaultAllow();
  d.Vote(Effect::kRequireApproval, "permissions", "a human");
  d.risk_level = "low";
  d.Merge(policies);
  EXPECT_EQ(d.effect, Effect::kRequireApproval);
  EXPECT_EQ(d.reasons, (std::vector<Reason>{{"permissions", "a human"}}));
  ASSERT_EQ(d.redactions.size(), 1u);
  EXPECT_EQ(d.model_downgrade, "small");
  EXPECT_EQ(d.risk_level, "medium");
  EXPECT_EQ(d.policy_version, "v2");
  ASSERT_EQ(d.explain.size(), 2u);
  EXPECT_EQ(d.explain[1].policy_id, "pii");

  // An empty decision merged in is a denial: nobody decided.
  d.Merge(Decision{});
  EXPECT_EQ(d.effect, Effect::kDeny);
  EXPECT_EQ(d.reasons[0].message, "no decision was made");
  d.Vote(Effect::kAllow, "late", "too late");
  EXPECT_EQ(d.effect, Effect::kDeny);

  // Into a bare DefaultAllow, a merge is the merged decision itself.
  Decision bare = Decision::DefaultAllow();
  bare.Merge(policies);
  EXPECT_EQ(bare.effect, Effect::kModify);
  EXPECT_EQ(bare.reasons, policies.reasons);
}

TEST(Decision, AHumanVerdictResolvesRequireApproval) {
  Decision approved = Decision::DefaultAllow();
  approved.Vote(Effect::kRequireApproval, "refunds", "a human");
  approved.Resolve(true, "approval", "approved by ann");
  EXPECT_EQ(approved.effect, Effect::kAllow);
  EXPECT_EQ(approved.reasons, (std::vector<Reason>{{"approval", "approved by ann"}}));

  Decision modified = Decision::DefaultAllow();
  modified.Vote(Effect::kModify, "slo:x", "downgraded");
  modified.Vote(Effect::kRequireApproval, "refunds", "a human");
  modified.Resolve(true, "approval", "approved by ann");
  EXPECT_EQ(modified.effect, Effect::kModify);  // the downgrade still applies

  Decision rejected = Decision::DefaultAllow();
  rejected.Vote(Effect::kRequireApproval, "refunds", "a human");
  rejected.Resolve(false, "approval", "rejected by ann");
  EXPECT_EQ(rejected.effect, Effect::kDeny);
  EXPECT_EQ(rejected.reasons, (std::vector<Reason>{{"approval", "rejected by ann"}}));
}

}  // namespace
}  // namespace bastion
