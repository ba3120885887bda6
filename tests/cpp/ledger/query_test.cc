// Ledger::Find against a brute-force filter over every record read with Get.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>

#include <gtest/gtest.h>

#include "bastion/ledger.h"
#include "ledger/index_keys.h"
#include "ledger/raw_store.h"
#include "test_util.h"

namespace bastion {
namespace {

using testing::OpenOrDie;
using testing::RawDb;
using testing::SampleRecord;
using testing::TempDir;

constexpr int kRecords = 300;
constexpr int64_t kBaseNs = 1'700'000'000'000'000'000;

// SampleRecord with timestamps out of sequence order and with ties (i and
// i + 101 share one), all four effects, and some indexed fields left unset.
Record QueryRecord(int i) {
  Record r = SampleRecord(i);
  r.timestamp_ns = kBaseNs + static_cast<int64_t>((i * 37) % 101) * 1000;
  if (i % 7 == 3) r.effect = "modify";
  if (i % 11 == 5) r.effect = "require_approval";
  if (i % 13 == 0) r.user_id.clear();
  if (i % 19 == 6) r.risk_level = "medium";
  if (i % 9 == 4) r.risk_level.clear();
  if (i % 17 == 2) r.trace_id.clear();
  return r;
}

std::string Describe(const Query& q) {
  std::string out;
  auto add = [&](const char* name, const auto& v) {
    if (v) out += fmt::format("{}={} ", name, *v);
  };
  add("user_id", q.user_id);
  add("agent_id", q.agent_id);
  add("tenant_id", q.tenant_id);
  add("action", q.action);
  add("tool", q.tool);
  add("effect", q.effect);
  add("risk_level", q.risk_level);
  add("run_id", q.run_id);
  add("trace_id", q.trace_id);
  add("since", q.since_ns);
  add("until", q.until_ns);
  out += q.newest_first ? "newest-first" : "oldest-first";
  out += fmt::format(" limit={}", q.limit);
  return out;
}

// The nine equality filters, as (query member, record member) pairs.
struct FilterField {
  const char* name;
  std::optional<std::string> Query::*query;
  std::string Record::*record;
};
const FilterField kFilters[] = {
    {"user_id", &Query::user_id, &Record::user_id},
    {"agent_id", &Query::agent_id, &Record::agent_id},
    {"tenant_id", &Query::tenant_id, &Record::tenant_id},
    {"action", &Query::action, &Record::action},
    {"tool", &Query::tool, &Record::tool},
    {"effect", &Query::effect, &Record::effect},
    {"risk_level", &Query::risk_level, &Record::risk_level},
    {"run_id", &Query::run_id, &Record::run_id},
    {"trace_id", &Query::trace_id, &Record::trace_id},
};

// How the records are appended, and so how their postings are laid out: one
// block per record, large blocks, or (kMixedBatches, kUnindexedTail) partly or
// wholly not yet in the posting lists, where queries read the records.
enum class AppendMode {
  kOneByOne,
  kOneBigBatch,
  kSmallWriterBatches,
  kMixedBatches,
  kUnindexedTail,
};

std::string ModeName(const ::testing::TestParamInfo<AppendMode>& info) {
  switch (info.param) {
    case AppendMode::kOneByOne: return "OneByOne";
    case AppendMode::kOneBigBatch: return "OneBigBatch";
    case AppendMode::kSmallWriterBatches: return "SmallWriterBatches";
    case AppendMode::kMixedBatches: return "MixedBatches";
    case AppendMode::kUnindexedTail: return "UnindexedTail";
  }
  return "Unknown";
}

class LedgerFind : public ::testing::TestWithParam<AppendMode> {
 protected:
  void SetUp() override {
    LedgerOptions options;
    options.index_interval = std::chrono::hours(1);  // postings by count only
    switch (GetParam()) {
      case AppendMode::kOneByOne:
      case AppendMode::kOneBigBatch: options.index_batch_records = 0; break;
      case AppendMode::kSmallWriterBatches:
        options.max_batch_records = 7;
        options.index_batch_records = 0;
        break;
      case AppendMode::kMixedBatches: options.index_batch_records = 50; break;
      default: break;
    }
    ledger_ = OpenOrDie(dir_.Sub("l"), options);
    ASSERT_NE(ledger_, nullptr);
    std::vector<Record> records;
    for (int i = 0; i < kRecords; ++i) records.push_back(QueryRecord(i));
    switch (GetParam()) {
      case AppendMode::kOneByOne:
      case AppendMode::kUnindexedTail:
        // Each Append waits for its write: one write batch per record, and
        // (kOneByOne) one posting block per indexed value and record.
        for (auto& r : records) ASSERT_TRUE(ledger_->Append(r, Durability::kGroup).ok());
        break;
      case AppendMode::kOneBigBatch:
      case AppendMode::kSmallWriterBatches:
        ASSERT_EQ(*ledger_->AppendBatch(records, Durability::kGroup), 1u);
        break;
      case AppendMode::kMixedBatches: {
        size_t at = 0;
        for (size_t n = 1; at < records.size(); n = n % 23 + 1) {
          const size_t take = std::min(n, records.size() - at);
          std::vector<Record> chunk(records.begin() + at, records.begin() + at + take);
          auto first = ledger_->AppendBatch(chunk, Durability::kGroup);
          ASSERT_TRUE(first.ok()) << first.status().ToString();
          ASSERT_EQ(*first, at + 1);
          at += take;
        }
        break;
      }
    }
    ASSERT_EQ(ledger_->GetHead()->seq, static_cast<uint64_t>(kRecords));
    for (uint64_t seq = 1; seq <= kRecords; ++seq) {
      auto got = ledger_->Get(seq);
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      ASSERT_EQ(got->seq, seq);
      all_.push_back(*got);
    }
  }

  // What Find must return: a brute-force filter over every stored record.
  std::vector<uint64_t> BruteForce(const Query& q) const {
    bool has_equality = false;
    for (const auto& f : kFilters) has_equality |= (q.*f.query).has_value();
    std::vector<const StoredRecord*> hits;
    for (const StoredRecord& s : all_) {
      bool match = true;
      for (const auto& f : kFilters) {
        if ((q.*f.query) && *(q.*f.query) != s.record.*f.record) match = false;
      }
      if (q.since_ns && s.record.timestamp_ns < *q.since_ns) match = false;
      if (q.until_ns && s.record.timestamp_ns > *q.until_ns) match = false;
      if (match) hits.push_back(&s);
    }
    const bool by_time = !has_equality && (q.since_ns || q.until_ns);
    std::sort(hits.begin(), hits.end(), [&](const StoredRecord* a, const StoredRecord* b) {
      if (by_time && a->record.timestamp_ns != b->record.timestamp_ns) {
        return a->record.timestamp_ns < b->record.timestamp_ns;
      }
      return a->seq < b->seq;
    });
    if (q.newest_first) std::reverse(hits.begin(), hits.end());
    std::vector<uint64_t> seqs;
    for (const auto* h : hits) seqs.push_back(h->seq);
    return seqs;
  }

  // Every page of `q` (which must have no cursor), checking each page's shape
  // and that each result is the stored record.
  std::vector<uint64_t> FindAll(Query q, size_t* pages = nullptr) {
    std::vector<uint64_t> seqs;
    size_t n = 0;
    while (true) {
      auto page = ledger_->Find(q);
      EXPECT_TRUE(page.ok()) << Describe(q) << ": " << page.status().ToString();
      if (!page.ok()) break;
      ++n;
      if (q.limit != 0) {
        EXPECT_LE(page->encoded.size(), q.limit) << Describe(q);
        EXPECT_EQ(page->next_cursor.empty(), page->encoded.size() < q.limit)
            << Describe(q) << ": a full page, and only a full page, has a cursor";
      } else {
        EXPECT_TRUE(page->next_cursor.empty()) << Describe(q) << ": unlimited has no next page";
      }
      for (const std::string& e : page->encoded) {
        auto rec = DecodeStoredRecord(e);
        EXPECT_TRUE(rec.ok()) << rec.status().ToString();
        if (!rec.ok()) continue;
        seqs.push_back(rec->seq);
        if (rec->seq >= 1 && rec->seq <= all_.size()) {
          EXPECT_EQ(rec->record, all_[rec->seq - 1].record) << "record " << rec->seq;
          EXPECT_EQ(rec->hash, all_[rec->seq - 1].hash) << "record " << rec->seq;
        }
      }
      if (page->next_cursor.empty()) break;
      if (n > all_.size() + 2) {
        ADD_FAILURE() << Describe(q) << ": paging does not end";
        break;
      }
      q.cursor = page->next_cursor;
    }
    if (pages) *pages = n;
    return seqs;
  }

  void ExpectFinds(Query q) {
    for (bool newest : {true, false}) {
      q.newest_first = newest;
      EXPECT_EQ(FindAll(q), BruteForce(q)) << Describe(q);
    }
  }

  TempDir dir_;
  std::unique_ptr<Ledger> ledger_;
  std::vector<StoredRecord> all_;
};

TEST_P(LedgerFind, EachEqualityFilterMatchesBruteForce) {
  for (const FilterField& f : kFilters) {
    // Enumerated filters reject other values (FilterValuesThatCanMatchNothing...).
    const bool enumerated = std::string(f.name) == "effect" || std::string(f.name) == "risk_level";
    std::set<std::string> values;
    if (!enumerated) values.insert("no-such-value");
    for (const auto& s : all_) {
      if (!(s.record.*f.record).empty()) values.insert(s.record.*f.record);
    }
    ASSERT_GE(values.size(), 3u) << f.name << " needs several values to be a real test";
    for (const std::string& v : values) {
      Query q;
      q.limit = 0;
      q.*f.query = v;
      const std::vector<uint64_t> expected = BruteForce(q);
      if (v != "no-such-value") {
        EXPECT_FALSE(expected.empty()) << f.name << "=" << v;
      }
      ExpectFinds(q);
    }
  }
}

TEST_P(LedgerFind, CombinedFiltersReturnTheIntersection) {
  size_t nonempty = 0;
  for (int j = 0; j < kRecords; j += 7) {
    const Record& r = all_[j].record;
    // Filters on record j's values; a field j leaves unset is not filtered on.
    auto set = [&](Query& q, const FilterField& f, const std::string& v) {
      if (!v.empty()) q.*f.query = v;
    };
    const FilterField& user = kFilters[0];
    const FilterField& agent = kFilters[1];
    const FilterField& tenant = kFilters[2];
    const FilterField& action = kFilters[3];
    const FilterField& tool = kFilters[4];
    const FilterField& effect = kFilters[5];
    const FilterField& risk = kFilters[6];
    const FilterField& run = kFilters[7];
    const FilterField& trace = kFilters[8];
    std::vector<Query> queries(6);
    set(queries[0], agent, r.agent_id);
    set(queries[0], tenant, r.tenant_id);
    set(queries[1], user, r.user_id);
    set(queries[1], action, r.action);
    set(queries[2], run, r.run_id);
    set(queries[2], risk, r.risk_level);
    set(queries[3], tool, r.tool.empty() ? "tool-0" : r.tool);
    set(queries[3], effect, r.effect);
    set(queries[3], tenant, r.tenant_id);
    set(queries[4], trace, r.trace_id);
    set(queries[4], user, r.user_id);
    for (const FilterField& f : kFilters) set(queries[5], f, r.*f.record);  // all at once
    for (Query& q : queries) {
      q.limit = 0;
      if (!BruteForce(q).empty()) ++nonempty;
      ExpectFinds(q);
    }
  }
  EXPECT_GT(nonempty, 100u) << "most combinations must match something";
  // Filters that each match but never together.
  Query disjoint;
  disjoint.action = "model_call";
  disjoint.tool = "tool-0";  // only tool_call records have a tool
  disjoint.limit = 0;
  ASSERT_TRUE(BruteForce(disjoint).empty());
  ExpectFinds(disjoint);
}

TEST_P(LedgerFind, TimeRangeAloneIsOrderedByTimestamp) {
  const int64_t us = 1000;
  struct Range {
    const char* name;
    std::optional<int64_t> since, until;
  } ranges[] = {
      {"since only", kBaseNs + 40 * us, std::nullopt},
      {"until only", std::nullopt, kBaseNs + 60 * us},
      {"both", kBaseNs + 10 * us, kBaseNs + 90 * us},
      {"a single instant with ties", kBaseNs + 37 * us, kBaseNs + 37 * us},
      {"everything", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()},
      {"first instant", kBaseNs, kBaseNs},
      {"last instant", kBaseNs + 100 * us, std::nullopt},
      {"between instants", kBaseNs + 5 * us + 1, kBaseNs + 6 * us - 1},
      {"before everything", std::nullopt, kBaseNs - 1},
      {"after everything", kBaseNs + 100 * us + 1, std::nullopt},
  };
  for (const Range& r : ranges) {
    SCOPED_TRACE(r.name);
    Query q;
    q.since_ns = r.since;
    q.until_ns = r.until;
    q.limit = 0;
    ExpectFinds(q);
  }
  // The data really is out of sequence order, so the test tells the orders apart.
  Query q;
  q.since_ns = kBaseNs;
  q.limit = 0;
  q.newest_first = false;
  std::vector<uint64_t> by_time = FindAll(q);
  ASSERT_EQ(by_time.size(), static_cast<size_t>(kRecords));
  EXPECT_FALSE(std::is_sorted(by_time.begin(), by_time.end()));
  for (size_t i = 1; i < by_time.size(); ++i) {
    const auto& a = all_[by_time[i - 1] - 1].record;
    const auto& b = all_[by_time[i] - 1].record;
    ASSERT_LE(a.timestamp_ns, b.timestamp_ns);
    if (a.timestamp_ns == b.timestamp_ns) {
      ASSERT_LT(by_time[i - 1], by_time[i]) << "ties by seq";
    }
  }
}

TEST_P(LedgerFind, FilterValuesThatCanMatchNothingAreInvalidArguments) {
  const int64_t us = 1000;
  struct Case {
    const char* name;
    std::function<void(Query*)> set;
    const char* message;
  } cases[] = {
      {"effect 'denied'", [](Query* q) { q->effect = "denied"; },
       "query filter 'effect' is 'denied'; expected one of allow, modify, require_approval, deny"},
      {"effect in capitals", [](Query* q) { q->effect = "DENY"; },
       "query filter 'effect' is 'DENY'; expected one of allow, modify, require_approval, deny"},
      {"risk 'severe'", [](Query* q) { q->risk_level = "severe"; },
       "query filter 'risk_level' is 'severe'; expected one of low, medium, high, critical"},
      {"empty action", [](Query* q) { q->action = ""; },
       "query filter 'action' is empty; leave it unset to match every record"},
      {"oversized agent id", [](Query* q) { q->agent_id = std::string(1025, 'a'); },
       "query filter 'agent_id' is 1025 bytes; a stored value has at most 1024"},
      {"since after until",
       [&](Query* q) {
         q->since_ns = kBaseNs + 50 * us;
         q->until_ns = kBaseNs + 40 * us;
       },
       "since <= until"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Query q;
    q.agent_id = "agent-1";
    c.set(&q);
    auto found = ledger_->Find(q);
    ASSERT_TRUE(found.status().IsInvalidArgument()) << found.status().ToString();
    EXPECT_NE(found.status().message().find(c.message), std::string::npos)
        << found.status().message();
  }
  // The valid values of the same filters are accepted.
  for (const char* effect : {"allow", "modify", "require_approval", "deny"}) {
    Query q;
    q.effect = effect;
    EXPECT_TRUE(ledger_->Find(q).ok()) << effect;
  }
  for (const char* risk : {"low", "medium", "high", "critical"}) {
    Query q;
    q.risk_level = risk;
    EXPECT_TRUE(ledger_->Find(q).ok()) << risk;
  }
}

TEST_P(LedgerFind, TimeRangeWithEqualityFiltersIsOrderedBySeq) {
  const int64_t us = 1000;
  for (const FilterField& f : kFilters) {
    Query q;
    q.*f.query = all_[3].record.*f.record;  // QueryRecord(3) sets every indexed field
    q.since_ns = kBaseNs + 20 * us;
    q.until_ns = kBaseNs + 80 * us;
    q.limit = 0;
    ExpectFinds(q);
    q.until_ns.reset();
    ExpectFinds(q);
  }
  Query q;
  q.agent_id = "agent-2";
  q.tenant_id = "tenant-0";
  q.since_ns = kBaseNs + 50 * us;
  q.limit = 0;
  q.newest_first = false;
  std::vector<uint64_t> got = FindAll(q);
  ASSERT_GT(got.size(), 3u);
  EXPECT_TRUE(std::is_sorted(got.begin(), got.end()));
  EXPECT_EQ(got, BruteForce(q));
}

TEST_P(LedgerFind, NoFiltersReturnsEveryRecordInSequenceOrder) {
  Query q;
  q.limit = 0;
  ExpectFinds(q);
  q.newest_first = true;
  std::vector<uint64_t> got = FindAll(q);
  ASSERT_EQ(got.size(), static_cast<size_t>(kRecords));
  EXPECT_EQ(got.front(), static_cast<uint64_t>(kRecords));
  EXPECT_EQ(got.back(), 1u);
}

TEST_P(LedgerFind, PagingVisitsEveryMatchExactlyOnceInBothDirections) {
  std::vector<Query> queries(7);
  queries[1].agent_id = "agent-3";
  queries[2].tenant_id = "tenant-1";
  queries[2].action = "model_call";
  queries[3].since_ns = kBaseNs + 30'000;
  queries[3].until_ns = kBaseNs + 70'000;
  queries[4].since_ns = kBaseNs + 30'000;
  queries[4].agent_id = "agent-1";
  queries[5].trace_id = "trace-7";
  queries[6].until_ns = kBaseNs + 50'000;
  for (Query q : queries) {
    for (size_t limit : {1, 2, 3, 7, 50, kRecords, kRecords + 1}) {
      for (bool newest : {true, false}) {
        q.limit = limit;
        q.newest_first = newest;
        size_t pages = 0;
        const std::vector<uint64_t> got = FindAll(q, &pages);
        const std::vector<uint64_t> expected = BruteForce(q);
        ASSERT_EQ(got, expected) << Describe(q);
        std::set<uint64_t> unique(got.begin(), got.end());
        EXPECT_EQ(unique.size(), got.size()) << Describe(q) << ": a record was visited twice";
        // ceil(n / limit) full-or-last pages, plus one empty page when n is a
        // multiple of the limit.
        EXPECT_EQ(pages, expected.size() / limit + 1) << Describe(q);
      }
    }
  }
}

TEST_P(LedgerFind, LimitZeroIsUnlimitedAndTheDefaultIsOneHundred) {
  Query q;
  q.limit = 0;
  auto all = ledger_->Find(q);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->encoded.size(), static_cast<size_t>(kRecords));
  EXPECT_TRUE(all->next_cursor.empty());

  Query dflt;
  EXPECT_EQ(dflt.limit, 100u);
  auto page = ledger_->Find(dflt);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->encoded.size(), 100u);
  EXPECT_FALSE(page->next_cursor.empty());
  EXPECT_EQ(DecodeStoredRecord(page->encoded.front())->seq, static_cast<uint64_t>(kRecords))
      << "newest first by default";

  Query by_agent;
  by_agent.agent_id = "agent-0";
  by_agent.limit = 0;
  auto agent = ledger_->Find(by_agent);
  ASSERT_TRUE(agent.ok());
  EXPECT_EQ(agent->encoded.size(), static_cast<size_t>(kRecords / 5));
  EXPECT_TRUE(agent->next_cursor.empty());

  Query by_time;
  by_time.since_ns = kBaseNs;
  by_time.limit = 0;
  auto time = ledger_->Find(by_time);
  ASSERT_TRUE(time.ok());
  EXPECT_EQ(time->encoded.size(), static_cast<size_t>(kRecords));
  EXPECT_TRUE(time->next_cursor.empty());
}

INSTANTIATE_TEST_SUITE_P(AppendModes, LedgerFind,
                         ::testing::Values(AppendMode::kOneByOne, AppendMode::kOneBigBatch,
                                           AppendMode::kSmallWriterBatches,
                                           AppendMode::kMixedBatches,
                                           AppendMode::kUnindexedTail),
                         ModeName);

TEST(LedgerFindCursor, MalformedOrForeignCursorIsInvalidArgument) {
  TempDir dir;
  auto ledger = OpenOrDie(dir.Sub("l"));
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(ledger->Append(QueryRecord(i)).ok());
  const char* bad[] = {"x", "s:", "s:abc", "s:1x", "s:-1", "s: 1", "s:18446744073709551616",
                       "t:", "t:5", "t:a:1", "t:1:b", "t:1:", "t::1", "S:1", " s:1", "q:1",
                       "s:1:2"};
  Query by_seq;
  Query by_agent;
  by_agent.agent_id = "agent-1";
  Query by_time;
  by_time.since_ns = 0;
  for (const char* cursor : bad) {
    for (Query* q : {&by_seq, &by_agent, &by_time}) {
      q->cursor = cursor;
      auto r = ledger->Find(*q);
      EXPECT_TRUE(r.status().IsInvalidArgument())
          << "cursor '" << cursor << "' with " << Describe(*q) << ": " << r.status().ToString();
    }
  }
  // A cursor from a time-only query does not continue an indexed query, and
  // the other way round.
  by_time.cursor.clear();
  by_time.limit = 2;
  auto time_page = ledger->Find(by_time);
  ASSERT_TRUE(time_page.ok());
  ASSERT_EQ(time_page->next_cursor.substr(0, 2), "t:");
  by_agent.cursor = time_page->next_cursor;
  EXPECT_TRUE(ledger->Find(by_agent).status().IsInvalidArgument());
  by_seq.cursor = time_page->next_cursor;
  EXPECT_TRUE(ledger->Find(by_seq).status().IsInvalidArgument());

  by_agent.cursor.clear();
  by_agent.limit = 1;
  auto agent_page = ledger->Find(by_agent);
  ASSERT_TRUE(agent_page.ok());
  ASSERT_FALSE(agent_page->next_cursor.empty());
  by_time.cursor = agent_page->next_cursor;
  EXPECT_TRUE(ledger->Find(by_time).status().IsInvalidArgument());
}

TEST(LedgerFindEmpty, EveryKindOfQueryOnAnEmptyLedgerFindsNothing) {
  TempDir dir;
  auto ledger = OpenOrDie(dir.Sub("l"));
  std::vector<Query> queries(4);
  queries[1].agent_id = "a";
  queries[2].since_ns = 0;
  queries[3].user_id = "u";
  queries[3].until_ns = 5;
  for (Query& q : queries) {
    for (bool newest : {true, false}) {
      q.newest_first = newest;
      auto r = ledger->Find(q);
      ASSERT_TRUE(r.ok()) << Describe(q) << ": " << r.status().ToString();
      EXPECT_TRUE(r->encoded.empty()) << Describe(q);
      EXPECT_TRUE(r->next_cursor.empty()) << Describe(q);
    }
  }
}

// Index keys hash the value, so an index entry can name a record whose field
// differs (a hash collision, or a stray entry). Find must check the record.
TEST(LedgerFindIndex, DropsCandidatesWhoseFieldDiffersOrWhoseRecordIsMissing) {
  TempDir dir;
  const std::string path = dir.Sub("l");
  {
    auto ledger = OpenOrDie(path);
    for (int i = 0; i < 30; ++i) ASSERT_TRUE(ledger->Append(QueryRecord(i)).ok());
    ASSERT_TRUE(ledger->Close().ok());
  }
  {
    auto raw = RawDb::Open(path);
    ASSERT_NE(raw, nullptr);
    // "ghost" claims records 5 and 6, whose agent is something else.
    raw->Put(raw->index(), index::PostingKey(index::Kind::kAgent, index::ValueHash("ghost"), 5),
             std::string("\x02\x01", 2));
    // agent-0's list gains a record past the head.
    raw->Put(raw->index(),
             index::PostingKey(index::Kind::kAgent, index::ValueHash("agent-0"), 1000), "\x01");
    // A time entry past the head.
    raw->Put(raw->index(), index::TimeKey(kBaseNs + 1, 2000), "");
  }
  auto ledger = OpenOrDie(path);
  Query ghost;
  ghost.agent_id = "ghost";
  ghost.limit = 0;
  auto r = ledger->Find(ghost);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->encoded.empty());

  for (bool newest : {true, false}) {
    Query agent0;
    agent0.agent_id = "agent-0";
    agent0.limit = 0;
    agent0.newest_first = newest;
    auto a = ledger->Find(agent0);
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    std::vector<uint64_t> seqs;
    for (const auto& e : a->encoded) seqs.push_back(DecodeStoredRecord(e)->seq);
    std::vector<uint64_t> expected = {1, 6, 11, 16, 21, 26};
    if (newest) std::reverse(expected.begin(), expected.end());
    EXPECT_EQ(seqs, expected);

    Query time;
    time.since_ns = kBaseNs;
    time.limit = 0;
    time.newest_first = newest;
    auto t = ledger->Find(time);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    EXPECT_EQ(t->encoded.size(), 30u);
  }
}

}  // namespace
}  // namespace bastion
