// Streamed output: the hold rule never lets a split pattern out in pieces, a
// deny stops the stream, and the outcome record says how the stream went.
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "bastion/guard.h"
#include "guard/stream.h"
#include "test_util.h"

namespace bastion {
namespace {

const std::string kDefaultBundle = std::string(BASTION_SOURCE_DIR) + "/policies/default";

// Whether `s` is valid UTF-8 (no sequence cut short or broken).
bool ValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const unsigned char b = s[i];
    const size_t n = b < 0x80 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += n;
  }
  return true;
}

std::string Attr(const Record& r, const std::string& key) {
  for (const auto& [k, v] : r.attributes) {
    if (k == key) return v;
  }
  return "";
}

class StreamTest : public ::testing::Test {
 protected:
  void Open(GuardOptions options) {
    auto g = Guard::Open(std::move(options));
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    guard_ = std::move(*g);
  }
  // A bundle that redacts every kind pii.find knows (the default bundle
  // leaves IP addresses alone).
  void OpenAllKinds() {
    const std::string dir = tmp_.Sub("all_kinds");
    testing::WriteFile(dir + "/all.lua", R"(
return {
  id = "all-kinds",
  on_chunk = function(call, chunk)
    local hits = pii.find(chunk.text)
    if #hits > 0 then return redact(hits, "pii") end
  end,
}
)");
    GuardOptions o;
    o.policy_dir = dir;
    Open(std::move(o));
  }
  void OpenDefault(bool ledger = false) {
    GuardOptions o;
    o.policy_dir = kDefaultBundle;
    if (ledger) o.ledger_path = tmp_.Sub("ledger");
    Open(std::move(o));
  }

  uint64_t Begin() {
    CallRequest r;
    r.call.hook = Hook::kBeforeModel;
    r.call.agent_id = "support";
    r.call.model = "gpt-4o";
    r.call.input = "hi";
    auto b = guard_->Begin(r);
    EXPECT_TRUE(b.ok()) << b.status().ToString();
    EXPECT_EQ(b->decision.effect, Effect::kAllow);
    return b->call_id;
  }

  // What on_chunk redacts in `text` seen whole: what a stream must release.
  std::string Whole(const std::string& text) {
    CallInfo c;
    c.hook = Hook::kOnChunk;
    c.chunk = text;
    Decision d = guard_->policies()->Evaluate(c);
    EXPECT_NE(d.effect, Effect::kDeny) << text;
    return ApplyRedactions(text, d.redactions, "chunk");
  }

  struct Streamed {
    std::string released;
    bool stopped = false;
  };
  // Streams `chunks` through a new call, finishes and ends it; every piece
  // released must be valid UTF-8 when the input is.
  Streamed Stream(const std::vector<std::string>& chunks) {
    const uint64_t id = Begin();
    Streamed out;
    for (const std::string& c : chunks) {
      auto r = guard_->Chunk(id, c);
      EXPECT_TRUE(r.ok()) << r.status().ToString();
      if (!r.ok()) return out;
      EXPECT_TRUE(ValidUtf8(r->text)) << "released '" << r->text << "'";
      out.released += r->text;
      out.stopped = out.stopped || r->stop;
    }
    auto f = guard_->FinishStream(id);
    EXPECT_TRUE(f.ok()) << f.status().ToString();
    if (f.ok()) {
      EXPECT_EQ(f->held_bytes, 0u);
      out.released += f->text;
      out.stopped = out.stopped || f->stop;
    }
    EXPECT_TRUE(guard_->End(id, CallOutcome{}).ok());
    return out;
  }

  std::vector<Record> Records() { return testing::AllRecords(guard_->ledger()); }

  testing::TempDir tmp_;
  std::unique_ptr<Guard> guard_;
};

struct SplitCase {
  const char* name;
  std::string text;
  std::string secret;  // must never be released
};

const SplitCase kSplitCases[] = {
    {"email", "Mail alice@example.com now, thanks.", "alice@example.com"},
    {"email_at_end", "write to bob.smith+news@mail.example.org", "bob.smith+news@mail.example.org"},
    {"card_spaces", "Card 4111 1111 1111 1111 expires 12/27.", "4111 1111 1111 1111"},
    {"card_dashes", "pay with 5555-5555-5555-4444 today", "5555-5555-5555-4444"},
    {"phone_international", "Call +1 415 555 2671 today.", "+1 415 555 2671"},
    {"phone_parenthesized", "Call (415) 555-2671 today.", "(415) 555-2671"},
    {"phone_korean", "전화 010-1234-5678 주세요", "010-1234-5678"},
    {"iban_digits", "Pay DE89 3704 0044 0532 0130 00 please.", "DE89 3704 0044 0532 0130 00"},
    {"iban_letter_groups", "to GB29 NWBK 6016 1331 9268 19 thanks", "GB29 NWBK 6016 1331 9268 19"},
    {"us_ssn", "SSN 123-45-6789 on file", "123-45-6789"},
    {"us_ssn_spaces", "SSN 123 45 6789 on file", "123 45 6789"},
    {"kr_rrn", "주민번호 900101-1234567 입니다", "900101-1234567"},
    {"secret", "token Xk9fQ2mP7vL3wR8tY6nB4hJ1 ok", "Xk9fQ2mP7vL3wR8tY6nB4hJ1"},
    {"ipv4", "host 192.168.10.24:8080 is up", "192.168.10.24"},
    {"ipv6", "via 2001:db8:85a3::8a2e:370:7334 now", "2001:db8:85a3::8a2e:370:7334"},
    {"api_key_anthropic", "key sk-ant-api03-Q2xhdWRlIGlzIGEgbW9kZWw_x done",
     "sk-ant-api03-Q2xhdWRlIGlzIGEgbW9kZWw_x"},
    {"api_key_aws", "id AKIAIOSFODNN7EXAMPLE here", "AKIAIOSFODNN7EXAMPLE"},
    {"private_key",
     "here:\n-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf\n"
     "9Cnzj4p4WGeKLs1Pt8QuKUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQ==\n"
     "-----END RSA PRIVATE KEY-----\nbye",
     "MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf"},
};

TEST_F(StreamTest, APatternSplitAtAnyByteIsReleasedOnlyRedacted) {
  OpenAllKinds();
  for (const SplitCase& c : kSplitCases) {
    const std::string whole = Whole(c.text);
    ASSERT_EQ(whole.find(c.secret), std::string::npos)
        << c.name << ": the bundle does not redact it whole: " << whole;
    for (size_t i = 1; i < c.text.size(); ++i) {
      Streamed s = Stream({c.text.substr(0, i), c.text.substr(i)});
      EXPECT_FALSE(s.stopped) << c.name;
      EXPECT_EQ(s.released, whole) << c.name << " split at byte " << i;
    }
  }
}

TEST_F(StreamTest, TheDefaultBundleRedactsSplitPatterns) {
  OpenDefault();
  for (const SplitCase& c : kSplitCases) {
    const std::string whole = Whole(c.text);
    if (whole.find(c.secret) != std::string::npos) continue;  // a kind it does not redact
    for (size_t i = 1; i < c.text.size(); ++i) {
      EXPECT_EQ(Stream({c.text.substr(0, i), c.text.substr(i)}).released, whole)
          << c.name << " split at byte " << i;
    }
  }
}

TEST_F(StreamTest, APatternStreamedOneByteAtATimeIsReleasedOnlyRedacted) {
  OpenAllKinds();
  for (const SplitCase& c : kSplitCases) {
    std::vector<std::string> bytes;
    for (char b : c.text) bytes.emplace_back(1, b);
    Streamed s = Stream(bytes);
    EXPECT_EQ(s.released, Whole(c.text)) << c.name;
    EXPECT_EQ(s.released.find(c.secret), std::string::npos) << c.name;
  }
}

TEST_F(StreamTest, TextWithoutPatternsIsReleasedUpToItsLastWord) {
  OpenDefault();
  const uint64_t id = Begin();
  struct Step {
    const char* chunk;
    const char* released;
    size_t held;
  };
  const Step steps[] = {
      {"The quick", "The ", 5},  // "quick" may still grow
      {" brown fo", "quick brown ", 2},
      {"x jumps. ", "fox jumps. ", 0},
      {"Over 3 lazy", "Over ", 6},  // "3 lazy": a space after a digit groups
      {" dogs and", "3 lazy dogs ", 3},
  };
  for (const Step& s : steps) {
    auto r = guard_->Chunk(id, s.chunk);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_FALSE(r->stop);
    EXPECT_EQ(r->text, s.released) << "after '" << s.chunk << "'";
    EXPECT_EQ(r->held_bytes, s.held) << "after '" << s.chunk << "'";
  }
  auto f = guard_->FinishStream(id);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->text, "and");
  EXPECT_EQ(f->held_bytes, 0u);
}

TEST_F(StreamTest, TheHoldRuleCutsWhereAPatternCouldStillGrow) {
  struct Case {
    std::string text;
    size_t cut;
  };
  const Case cases[] = {
      {"", 0},
      {"hello ", 6},
      {"hello world", 6},
      {"Mail alice@exa", 5},
      {"card 4111 ", 5},             // a group and its separator
      {"I am", 0},                   // a capital may start a group
      {"ok (415) 555", 3},
      {"card 4111 1111 1111", 5},
      {"call +1 415 555", 5},
      {"to (415) 555", 3},           // ')' then a digit
      {"to GB29 NWBK ", 3},          // upper-case groups
      {"a  4111", 3},                // a double space separates
      {"line\n4111", 5},             // so does a newline
      {"x 1\t2", 2},                 // a tab groups like a space
      {"안녕 4111", 7},               // a non-ASCII byte ends a word
      {"ab \xEC\x95", 3},            // an incomplete UTF-8 sequence is held
      {"ab \xEC\x95\x88", 6},        // a complete one is not
      {std::string(300, 'a'), 44},   // at most hold_bytes are held
  };
  for (const Case& c : cases) {
    EXPECT_EQ(guard::StreamCut(c.text, 256), c.cut) << "'" << c.text << "'";
  }
  // The cap never cuts a UTF-8 sequence: 100 three-byte characters, 256 held.
  std::string korean;
  for (int i = 0; i < 100; ++i) korean += "한";
  EXPECT_EQ(guard::StreamCut(korean, 256), 300u);
  EXPECT_EQ(guard::StreamCut(korean + "abcd", 2), 302u);  // the cap cuts ASCII only
}

TEST_F(StreamTest, KoreanTextOneByteAtATimeIsNeverSplitInsideACharacter) {
  OpenDefault();
  const std::string text = "안녕하세요, 고객님. 주문 번호는 A-1001 이고 연락처는 010-1234-5678 입니다.";
  std::vector<std::string> bytes;
  for (char b : text) bytes.emplace_back(1, b);
  Streamed s = Stream(bytes);  // checks every piece is valid UTF-8
  EXPECT_EQ(s.released, Whole(text));
  EXPECT_EQ(s.released.find("010-1234"), std::string::npos);
}

TEST_F(StreamTest, ALongRunWithoutBreaksIsHeldAtMostHoldBytes) {
  GuardOptions o;
  o.policy_dir = kDefaultBundle;
  o.stream_hold_bytes = 64;
  Open(std::move(o));
  const uint64_t id = Begin();
  std::string released;
  for (int i = 0; i < 100; ++i) {
    auto r = guard_->Chunk(id, "abcdefghij");  // one case: no secret
    ASSERT_TRUE(r.ok());
    EXPECT_LE(r->held_bytes, 64u);
    released += r->text;
  }
  EXPECT_EQ(released.size(), 1000u - 64u);
  auto f = guard_->FinishStream(id);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->text.size(), 64u);
}

TEST_F(StreamTest, AMatchReachingTheEndIsHeldPastTheHoldCapUntilTheWindowIsFull) {
  GuardOptions o;
  o.policy_dir = kDefaultBundle;
  o.stream_hold_bytes = 16;
  o.chunk_window_bytes = 512;
  Open(std::move(o));
  const uint64_t id = Begin();
  // A private key's body grows line by line: the match reaches the end of
  // the text, so nothing of it is released until 512 bytes are pending.
  auto r = guard_->Chunk(id, "key:\n-----BEGIN PRIVATE KEY-----\n");
  ASSERT_TRUE(r.ok());
  std::string released = r->text;
  const std::string line = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n";
  size_t most_held = 0;
  for (int i = 0; i < 20; ++i) {
    r = guard_->Chunk(id, line);
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE(r->stop);
    most_held = std::max(most_held, r->held_bytes);
    EXPECT_LE(r->held_bytes, 512u);
    released += r->text;
  }
  EXPECT_GT(most_held, 400u);  // held well past stream_hold_bytes
  auto f = guard_->FinishStream(id);
  ASSERT_TRUE(f.ok());
  released += f->text;
  EXPECT_EQ(released.find("MIIEvQ"), std::string::npos) << released;
  EXPECT_NE(released.find("[API_KEY]"), std::string::npos) << released;
}

TEST_F(StreamTest, FinishStreamReleasesTheHeldTailOnceAndOnlyOnce) {
  OpenDefault();
  const uint64_t id = Begin();
  auto a = guard_->Chunk(id, "Mail alice@exa");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->text, "Mail ");
  EXPECT_EQ(a->held_bytes, 9u);
  auto b = guard_->Chunk(id, "mple.com");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->text, "");
  EXPECT_EQ(b->held_bytes, 17u);
  auto f = guard_->FinishStream(id);
  ASSERT_TRUE(f.ok());
  EXPECT_FALSE(f->stop);
  EXPECT_EQ(f->text, "[EMAIL]");
  EXPECT_EQ(f->held_bytes, 0u);

  auto again = guard_->FinishStream(id);
  EXPECT_TRUE(again.status().IsFailedPrecondition()) << again.status().ToString();
  auto late = guard_->Chunk(id, "more");
  EXPECT_TRUE(late.status().IsFailedPrecondition()) << late.status().ToString();
  testing::ExpectMentions(late.status(), "FinishStream");
  ASSERT_TRUE(guard_->End(id, CallOutcome{}).ok());
  EXPECT_TRUE(guard_->Chunk(id, "x").status().IsNotFound());
  EXPECT_TRUE(guard_->FinishStream(id).status().IsNotFound());
}

TEST_F(StreamTest, ADenyStopsTheStreamAndReleasesNothingMore) {
  OpenDefault(/*ledger=*/true);
  const uint64_t id = Begin();
  auto a = guard_->Chunk(id, "This is for internal ");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->text, "This is for internal ");
  auto b = guard_->Chunk(id, "use only: the plan");  // "internal use only" spans the chunks
  ASSERT_TRUE(b.ok());
  EXPECT_TRUE(b->stop);
  EXPECT_EQ(b->text, "");
  EXPECT_EQ(b->held_bytes, 0u);
  EXPECT_EQ(b->decision.effect, Effect::kDeny);
  ASSERT_FALSE(b->decision.reasons.empty());
  EXPECT_EQ(b->decision.reasons[0].policy_id, "forbidden-output");
  for (int i = 0; i < 2; ++i) {
    auto later = guard_->Chunk(id, "and the rest");
    ASSERT_TRUE(later.ok());
    EXPECT_TRUE(later->stop);
    EXPECT_EQ(later->text, "");
    EXPECT_EQ(later->decision.effect, Effect::kDeny);
  }
  auto f = guard_->FinishStream(id);
  ASSERT_TRUE(f.ok());
  EXPECT_TRUE(f->stop);
  EXPECT_EQ(f->text, "");

  CallOutcome out;
  out.output = "This is for internal ";
  ASSERT_TRUE(guard_->End(id, out).ok());
  const Record outcome = Records().back();
  EXPECT_EQ(Attr(outcome, "phase"), "outcome");
  EXPECT_EQ(outcome.effect, "deny");
  EXPECT_EQ(Attr(outcome, "error"), "stream_stopped");
  EXPECT_EQ(Attr(outcome, "stream_stop_chunk"), "2");
  EXPECT_EQ(Attr(outcome, "stream_stop_byte"), "21");
  EXPECT_EQ(Attr(outcome, "stream_stop_policies"), "forbidden-output");
  EXPECT_EQ(Attr(outcome, "stream_stop_at"), "");
  EXPECT_EQ(Attr(outcome, "stream_chunks"), "2");  // the ones after the stop are not counted
  EXPECT_EQ(Attr(outcome, "stream_released_bytes"), "21");
  EXPECT_EQ(Attr(outcome, "stream_unreleased_bytes"), "18");
  ASSERT_FALSE(outcome.reasons.empty());
  EXPECT_EQ(outcome.reasons.back().policy_id, "forbidden-output");
  EXPECT_NE(outcome.reasons.back().message.find("internal use only"), std::string::npos);
}

TEST_F(StreamTest, TheCallersErrorClassWinsOverStreamStopped) {
  OpenDefault(/*ledger=*/true);
  const uint64_t id = Begin();
  ASSERT_TRUE(guard_->Chunk(id, "internal use only")->stop);
  CallOutcome out;
  out.ok = false;
  out.error_class = "stopped_by_policy";
  ASSERT_TRUE(guard_->End(id, out).ok());
  EXPECT_EQ(Attr(Records().back(), "error"), "stopped_by_policy");
}

TEST_F(StreamTest, TheOutcomeRecordSummarizesTheStream) {
  OpenDefault(/*ledger=*/true);
  const uint64_t id = Begin();
  for (const char* c : {"Hello, mail ", "alice@example.com", " or bob@example.org", " now"}) {
    ASSERT_TRUE(guard_->Chunk(id, c).ok());
  }
  auto f = guard_->FinishStream(id);
  ASSERT_TRUE(f.ok());
  CallOutcome out;
  out.output = "whatever the caller shows";
  ASSERT_TRUE(guard_->End(id, out).ok());
  const Record outcome = Records().back();
  EXPECT_EQ(outcome.effect, "allow");
  EXPECT_EQ(Attr(outcome, "error"), "");
  EXPECT_EQ(Attr(outcome, "stream_chunks"), "4");
  EXPECT_EQ(Attr(outcome, "stream_released_bytes"), "52");
  // Evaluations whose redactions reached text not released yet: the second
  // chunk's (which held the first address), the third's, the fourth's.
  EXPECT_EQ(Attr(outcome, "stream_redacted_chunks"), "3");
  EXPECT_EQ(Attr(outcome, "stream_unreleased_bytes"), "");
  EXPECT_EQ(Attr(outcome, "stream_stop_chunk"), "");
  EXPECT_EQ(outcome.output_summary, "whatever the caller shows");
}

TEST_F(StreamTest, EndWithoutFinishRecordsTheHeldBytesItDidNotRelease) {
  OpenDefault(/*ledger=*/true);
  const uint64_t id = Begin();
  ASSERT_TRUE(guard_->Chunk(id, "Mail alice@exa").ok());
  ASSERT_TRUE(guard_->End(id, CallOutcome{}).ok());
  const Record outcome = Records().back();
  EXPECT_EQ(Attr(outcome, "stream_released_bytes"), "5");
  EXPECT_EQ(Attr(outcome, "stream_unreleased_bytes"), "9");
}

TEST_F(StreamTest, AFailingPolicyStopsTheStreamAndFinalIsSeenAtTheEnd) {
  const std::string dir = tmp_.Sub("policies");
  testing::WriteFile(dir + "/hostile.lua", R"(
return {
  id = "hostile",
  on_chunk = function(call, chunk)
    if string.find(chunk.text, "boom", 1, true) then error("exploded") end
    if chunk.final ~= (string.find(chunk.text, "END", 1, true) ~= nil) then
      error("final is " .. tostring(chunk.final))
    end
  end,
}
)");
  GuardOptions o;
  o.policy_dir = dir;
  o.ledger_path = tmp_.Sub("ledger");
  Open(std::move(o));

  const uint64_t exploding = Begin();
  auto a = guard_->Chunk(exploding, "fine so far ");
  ASSERT_TRUE(a.ok());
  EXPECT_FALSE(a->stop);
  auto b = guard_->Chunk(exploding, "then boom");
  ASSERT_TRUE(b.ok());
  EXPECT_TRUE(b->stop);
  EXPECT_EQ(b->text, "");
  ASSERT_EQ(b->decision.errors.size(), 1u);
  EXPECT_EQ(b->decision.errors[0].policy_id, "hostile");
  ASSERT_TRUE(guard_->End(exploding, CallOutcome{}).ok());
  EXPECT_EQ(Attr(Records().back(), "stream_stop_policies"), "hostile");

  // chunk.final is false on every chunk and true at FinishStream, where this
  // policy denies.
  const uint64_t ending = Begin();
  auto c = guard_->Chunk(ending, "all good, END");
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->stop) << "final was not false on a chunk";
  const uint64_t finishing = Begin();
  auto d = guard_->Chunk(finishing, "all good, ");
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d->stop);
  auto e = guard_->Chunk(finishing, "END");
  EXPECT_TRUE(e->stop);  // "END" seen while final is false
  const uint64_t last = Begin();
  ASSERT_FALSE(guard_->Chunk(last, "the last words")->stop);
  auto f = guard_->FinishStream(last);
  ASSERT_TRUE(f.ok());
  EXPECT_TRUE(f->stop);  // final is true, and there is no END: the policy errs
  EXPECT_EQ(f->text, "");
  ASSERT_TRUE(guard_->End(last, CallOutcome{}).ok());
  const Record outcome = Records().back();
  EXPECT_EQ(Attr(outcome, "stream_stop_at"), "finish");
  EXPECT_EQ(Attr(outcome, "stream_stop_chunk"), "2");
  EXPECT_EQ(Attr(outcome, "stream_stop_byte"), "9");  // "the last " was out
}

TEST_F(StreamTest, TheWindowIsTheHeldTextAfterABoundedContext) {
  const std::string dir = tmp_.Sub("policies");
  testing::WriteFile(dir + "/size.lua", R"(
return {
  id = "window-size",
  on_chunk = function(call, chunk)
    if #chunk.text > 120 then return deny("a window of " .. #chunk.text .. " bytes") end
    if string.find(chunk.text, "^%a") then return deny("the window starts mid-word") end
  end,
}
)");
  for (size_t context : {100, 200}) {
    GuardOptions o;
    o.policy_dir = dir;
    o.chunk_context_bytes = context;
    Open(std::move(o));
    const uint64_t id = Begin();
    bool stopped = false;
    for (int i = 0; i < 100 && !stopped; ++i) {
      auto r = guard_->Chunk(id, i % 3 == 2 ? "\nwords" : " words");
      ASSERT_TRUE(r.ok());
      stopped = r->stop;
    }
    // At most 100 bytes of context (from a word's start) and the held word
    // with the new chunk: never more than 111.
    EXPECT_EQ(stopped, context == 200) << "context " << context;
  }
}

TEST_F(StreamTest, WithoutABundleEveryChunkIsReleasedAtOnce) {
  Open(GuardOptions{});
  const uint64_t id = Begin();
  auto a = guard_->Chunk(id, "Mail alice@exa");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->text, "Mail alice@exa");
  EXPECT_EQ(a->held_bytes, 0u);
  auto f = guard_->FinishStream(id);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->text, "");
}

TEST_F(StreamTest, OpenRefusesAHoldLargerThanTheWindow) {
  GuardOptions o;
  o.chunk_window_bytes = 100;
  o.stream_hold_bytes = 200;
  auto g = Guard::Open(o);
  ASSERT_TRUE(g.status().IsInvalidArgument());
  testing::ExpectMentions(g.status(), "stream_hold_bytes");
}

TEST_F(StreamTest, CallsStreamConcurrently) {
  OpenDefault();
  const std::string text = "Reach me at carol@example.net or +44 20 7946 0958 any time. ";
  const std::string whole = Whole(text + text);
  std::vector<std::string> results(4);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < results.size(); ++t) {
    threads.emplace_back([&, t] {
      std::vector<std::string> pieces;
      for (size_t i = 0; i < 2 * text.size(); i += 3 + t) {
        pieces.push_back((text + text).substr(i, 3 + t));
      }
      results[t] = Stream(pieces).released;
    });
  }
  for (std::thread& t : threads) t.join();
  for (const std::string& r : results) EXPECT_EQ(r, whole);
}

}  // namespace
}  // namespace bastion
