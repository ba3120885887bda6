#include "ledger/index_keys.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "ledger/record_codec.h"
#include "test_util.h"

namespace bastion {
namespace {

using index::Kind;
using testing::SampleRecord;

std::string Var(uint64_t v) {
  std::string s;
  codec::PutVarint(&s, v);
  return s;
}

std::string Hex(std::string_view s) {
  std::string out;
  for (unsigned char c : s) out += fmt::format("{:02x}", c);
  return out;
}

TEST(IndexKeys, PostingsRoundTrip) {
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  std::vector<std::vector<uint64_t>> lists = {
      {1},
      {7},
      {1, 2, 3, 4, 5},
      {5, 1000, 1000000, 1ULL << 40},
      {1, max},
      {max - 2, max - 1, max},
      {0, 1},
  };
  std::mt19937_64 rng(42);
  std::vector<uint64_t> random_list;
  uint64_t s = 1;
  for (int i = 0; i < 5000; ++i) {
    s += 1 + rng() % (i % 10 == 0 ? 1000000 : 3);
    random_list.push_back(s);
  }
  lists.push_back(random_list);
  for (const auto& seqs : lists) {
    std::string value;
    index::EncodePostings(seqs.data(), seqs.size(), &value);
    std::vector<uint64_t> out = {999};  // DecodePostings appends
    Status st = index::DecodePostings(seqs[0], value, &out);
    ASSERT_TRUE(st.ok()) << st.ToString() << " for " << seqs.size() << " seqs from " << seqs[0];
    ASSERT_EQ(out.size(), seqs.size() + 1);
    EXPECT_EQ(out[0], 999u);
    EXPECT_TRUE(std::equal(seqs.begin(), seqs.end(), out.begin() + 1))
        << seqs.size() << " seqs from " << seqs[0];
  }
}

TEST(IndexKeys, PostingsValueIsCountThenGaps) {
  const uint64_t seqs[] = {10, 11, 15, 300};
  std::string value;
  index::EncodePostings(seqs, 4, &value);
  EXPECT_EQ(Hex(value), "04" "01" "04" "9d02");  // count 4, gaps 1, 4, 285
  value.clear();
  index::EncodePostings(seqs, 1, &value);
  EXPECT_EQ(Hex(value), "01") << "the first seq lives in the key, not the value";
}

TEST(IndexKeys, CorruptedPostingsAreRejected) {
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  struct Case {
    const char* name;
    uint64_t first;
    std::string value;
    const char* message;
  } cases[] = {
      {"empty value", 5, "", "posting block at seq 5: bad count"},
      {"count zero", 5, Var(0), "bad count"},
      {"count over 2^24", 5, Var((1u << 24) + 1), "bad count"},
      {"overlong count", 5, std::string("\x81\x00", 2), "bad count"},
      {"truncated count", 5, "\x82", "bad count"},
      {"missing gap", 5, Var(2), "posting block at seq 5: bad gap"},
      {"fewer gaps than counted", 5, Var(3) + Var(1), "bad gap"},
      {"zero gap (repeated seq)", 5, Var(2) + Var(0), "bad gap"},
      {"overlong gap", 5, Var(2) + std::string("\x81\x00", 2), "bad gap"},
      {"truncated gap", 5, Var(2) + "\xff", "bad gap"},
      {"trailing bytes", 5, Var(1) + Var(3), "posting block at seq 5: trailing bytes"},
      {"trailing bytes after gaps", 5, Var(2) + Var(1) + "x", "trailing bytes"},
      {"gap past the largest seq", max - 1, Var(2) + Var(5), "bad gap"},
      {"gap wrapping back below the first seq", 100, Var(2) + Var(max - 10), "bad gap"},
  };
  for (const auto& c : cases) {
    std::vector<uint64_t> out;
    Status s = index::DecodePostings(c.first, c.value, &out);
    EXPECT_TRUE(s.IsCorruption()) << c.name << ": " << s.ToString() << ", decoded "
                                  << out.size() << " seqs";
    EXPECT_NE(s.message().find(c.message), std::string::npos)
        << c.name << ": message '" << s.message() << "' lacks '" << c.message << "'";
  }
}

TEST(IndexKeys, PostingKeyIsKindHashAndFirstSeqBigEndian) {
  const std::string key = index::PostingKey(Kind::kAgent, 0x0102030405060708ULL, 0x1122ULL);
  ASSERT_EQ(key.size(), index::kPostingKeyBytes);
  EXPECT_EQ(Hex(key), "02" "0102030405060708" "0000000000001122");
  const std::string prefix = index::PostingPrefix(Kind::kAgent, 0x0102030405060708ULL);
  EXPECT_EQ(prefix.size(), 9u);
  EXPECT_EQ(key.substr(0, 9), prefix);
}

TEST(IndexKeys, PostingKeysOfOneValueSortByFirstSeq) {
  const uint64_t h = index::ValueHash("agent-1");
  const uint64_t seqs[] = {0, 1, 2, 255, 256, 65535, 65536, 1ULL << 32, 1ULL << 56,
                           std::numeric_limits<uint64_t>::max()};
  for (size_t i = 1; i < std::size(seqs); ++i) {
    EXPECT_LT(index::PostingKey(Kind::kAgent, h, seqs[i - 1]),
              index::PostingKey(Kind::kAgent, h, seqs[i]))
        << seqs[i - 1] << " vs " << seqs[i];
  }
  // Keys of one (kind, value) are contiguous: another value never sorts between them.
  const std::string lo = index::PostingKey(Kind::kAgent, h, 0);
  const std::string hi = index::PostingKey(Kind::kAgent, h, std::numeric_limits<uint64_t>::max());
  for (uint64_t other : {h - 1, h + 1}) {
    const std::string k = index::PostingKey(Kind::kAgent, other, 5);
    EXPECT_TRUE(k < lo || k > hi);
  }
}

TEST(IndexKeys, TimeKeysSortByTimestampThenSeqAcrossTheSign) {
  const int64_t min = std::numeric_limits<int64_t>::min();
  const int64_t max = std::numeric_limits<int64_t>::max();
  const int64_t times[] = {min, min + 1, -1'700'000'000'000'000'000, -256, -1, 0, 1, 255, 256,
                           1'700'000'000'000'000'000, max - 1, max};
  const uint64_t seqs[] = {0, 1, 2, 1000, std::numeric_limits<uint64_t>::max()};
  struct Entry {
    int64_t ts;
    uint64_t seq;
    std::string key;
  };
  std::vector<Entry> entries;
  for (int64_t ts : times) {
    for (uint64_t seq : seqs) entries.push_back({ts, seq, index::TimeKey(ts, seq)});
  }
  std::mt19937 rng(7);
  std::shuffle(entries.begin(), entries.end(), rng);
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.key < b.key; });
  for (size_t i = 1; i < entries.size(); ++i) {
    const Entry& a = entries[i - 1];
    const Entry& b = entries[i];
    EXPECT_TRUE(a.ts < b.ts || (a.ts == b.ts && a.seq < b.seq))
        << "(" << a.ts << ", " << a.seq << ") sorts before (" << b.ts << ", " << b.seq << ")";
  }
  for (const Entry& e : entries) {
    ASSERT_EQ(e.key.size(), index::kTimeKeyBytes);
    EXPECT_EQ(static_cast<uint8_t>(e.key[0]), static_cast<uint8_t>(Kind::kTime));
    EXPECT_EQ(static_cast<int64_t>(codec::GetFixed64BE(e.key.data() + 1) ^ (1ULL << 63)), e.ts);
    EXPECT_EQ(codec::GetFixed64BE(e.key.data() + 9), e.seq);
  }
}

TEST(IndexKeys, TimeKeysSortAfterEveryPostingKey) {
  const std::string last_posting = index::PostingKey(
      Kind::kTrace, std::numeric_limits<uint64_t>::max(), std::numeric_limits<uint64_t>::max());
  EXPECT_LT(last_posting, index::TimeKey(std::numeric_limits<int64_t>::min(), 0));
  for (int i = 1; i < index::kPostingKinds; ++i) {
    EXPECT_LT(index::PostingPrefix(index::PostingKind(i - 1), ~0ULL),
              index::PostingPrefix(index::PostingKind(i), 0));
  }
}

TEST(IndexKeys, ValueHashIsFnv1a64) {
  EXPECT_EQ(index::ValueHash(""), 0xcbf29ce484222325ULL);
  EXPECT_EQ(index::ValueHash("a"), 0xaf63dc4c8601ec8cULL);
  EXPECT_EQ(index::ValueHash("foobar"), 0x85944171f73967e8ULL);
  EXPECT_NE(index::ValueHash("agent-1"), index::ValueHash("agent-2"));
}

TEST(IndexKeys, EachPostingKindCoversItsField) {
  const std::pair<Kind, Field> expected[] = {
      {Kind::kUser, Field::kUserId},     {Kind::kAgent, Field::kAgentId},
      {Kind::kTenant, Field::kTenantId}, {Kind::kAction, Field::kAction},
      {Kind::kTool, Field::kTool},       {Kind::kEffect, Field::kEffect},
      {Kind::kRisk, Field::kRiskLevel},  {Kind::kRun, Field::kRunId},
      {Kind::kTrace, Field::kTraceId},
  };
  ASSERT_EQ(std::size(expected), static_cast<size_t>(index::kPostingKinds));
  for (int i = 0; i < index::kPostingKinds; ++i) {
    EXPECT_EQ(index::PostingKind(i), expected[i].first) << i;
    EXPECT_EQ(index::FieldOf(expected[i].first), expected[i].second) << i;
    EXPECT_EQ(index::KindName(expected[i].first), FieldName(expected[i].second));
    EXPECT_EQ(static_cast<int>(expected[i].first), i + 1) << "kind bytes are part of the format";
  }
  EXPECT_EQ(index::KindName(Kind::kTime), "time");
  EXPECT_EQ(static_cast<int>(Kind::kTime), 10);
}

TEST(IndexKeys, EntriesForHashesEveryIndexedFieldThatIsSet) {
  for (int i = 0; i < 12; ++i) {
    const Record r = SampleRecord(i);
    const index::IndexEntries e = index::EntriesFor(r);
    for (int k = 0; k < index::kPostingKinds; ++k) {
      const Field f = index::FieldOf(index::PostingKind(k));
      const std::string& v = *StringField(r, f);
      EXPECT_EQ((e.present >> k) & 1, v.empty() ? 0 : 1) << "record " << i << " " << FieldName(f);
      EXPECT_EQ(e.hashes[k], v.empty() ? 0 : index::ValueHash(v))
          << "record " << i << " " << FieldName(f);
    }
    EXPECT_EQ(e.present >> index::kPostingKinds, 0) << "no bits past the posting kinds";
  }
  EXPECT_EQ(index::EntriesFor(SampleRecord(3)).present, 0x1FF) << "every indexed field set";
  EXPECT_EQ(index::EntriesFor(SampleRecord(1)).present, 0x1FF & ~(1 << 4)) << "no tool";
  Record only_action;
  only_action.action = "model_call";
  const index::IndexEntries e = index::EntriesFor(only_action);
  EXPECT_EQ(e.present, 1 << 3);
  EXPECT_EQ(e.hashes[3], index::ValueHash("model_call"));
}

}  // namespace
}  // namespace bastion
