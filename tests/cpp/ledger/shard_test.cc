// Sharded ledgers: shards under <L>/shards/, read as one by OpenReader(L).
#include <algorithm>
#include <atomic>
#include <filesystem>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "bastion/ledger.h"
#include "raw_store.h"
#include "test_util.h"

namespace bastion {
namespace {

namespace fs = std::filesystem;
using testing::ExpectMentions;
using testing::OpenOrDie;
using testing::RawDb;
using testing::SampleRecord;
using testing::SeqKey;
using testing::TempDir;

constexpr int64_t kBase = 1'700'000'000'000'000'000;

std::string Shard(const std::string& ledger, const std::string& name) {
  auto p = ShardPath(ledger, name);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  fs::create_directories(fs::path(*p).parent_path());
  return *p;
}

// A record of `agent` at kBase + t ms.
Record At(int64_t t_ms, const std::string& agent, const std::string& action = "model_call") {
  Record r;
  r.action = action;
  r.agent_id = agent;
  r.timestamp_ns = kBase + t_ms * 1'000'000;
  return r;
}

std::unique_ptr<Ledger> Reader(const std::string& path) {
  auto opened = Ledger::OpenReader(path);
  EXPECT_TRUE(opened.ok()) << opened.status().ToString();
  return opened.ok() ? std::move(*opened) : nullptr;
}

// (time in ms from kBase, shard, seq) of each record of a page, in order.
using Row = std::tuple<int64_t, std::string, uint64_t>;
std::vector<Row> Rows(const QueryResult& page) {
  EXPECT_EQ(page.shards.size(), page.encoded.size());
  std::vector<Row> out;
  for (size_t i = 0; i < page.encoded.size(); ++i) {
    auto rec = DecodeStoredRecord(page.encoded[i]);
    EXPECT_TRUE(rec.ok()) << rec.status().ToString();
    if (!rec.ok()) continue;
    out.emplace_back((rec->record.timestamp_ns - kBase) / 1'000'000, page.shards[i], rec->seq);
  }
  return out;
}

std::vector<Row> All(Ledger& l, Query q) {
  auto page = l.Find(q);
  EXPECT_TRUE(page.ok()) << page.status().ToString();
  return page.ok() ? Rows(*page) : std::vector<Row>{};
}

// Three shards whose records interleave in time, with equal times across
// shards: a at 0, 3, 6, 9; b at 1, 3, 7; c at 2, 3, 8.
class ShardedLedger : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.Sub("l");
    fs::create_directories(path_);
    const std::vector<std::pair<std::string, std::vector<int64_t>>> plan = {
        {"a", {0, 3, 6, 9}}, {"b", {1, 3, 7}}, {"c", {2, 3, 8}}};
    for (const auto& [name, times] : plan) {
      auto w = OpenOrDie(Shard(path_, name));
      ASSERT_NE(w, nullptr);
      for (int64_t t : times) {
        ASSERT_TRUE(w->Append(At(t, name == "a" ? "planner" : "coder",
                                 t % 2 == 0 ? "tool_call" : "model_call"))
                        .ok());
      }
      ASSERT_TRUE(w->Close().ok());
    }
  }

  TempDir dir_;
  std::string path_;
};

TEST_F(ShardedLedger, FindOrdersEveryShardByTimeThenShardThenSeq) {
  auto r = Reader(path_);
  ASSERT_NE(r, nullptr);
  Query q;
  q.limit = 0;
  q.newest_first = false;
  const std::vector<Row> want = {{0, "a", 1}, {1, "b", 1}, {2, "c", 1}, {3, "a", 2},
                                 {3, "b", 2}, {3, "c", 2}, {6, "a", 3}, {7, "b", 3},
                                 {8, "c", 3}, {9, "a", 4}};
  EXPECT_EQ(All(*r, q), want);
  q.newest_first = true;
  std::vector<Row> reversed(want.rbegin(), want.rend());
  EXPECT_EQ(All(*r, q), reversed);
}

TEST_F(ShardedLedger, PagesWithLimitAndCursorCoverEveryRecordOnce) {
  auto r = Reader(path_);
  ASSERT_NE(r, nullptr);
  for (bool newest_first : {false, true}) {
    for (size_t limit : {1u, 2u, 3u, 4u}) {
      Query q;
      q.limit = limit;
      q.newest_first = newest_first;
      std::vector<Row> paged;
      for (int pages = 0; pages < 20; ++pages) {
        auto page = r->Find(q);
        ASSERT_TRUE(page.ok()) << page.status().ToString();
        EXPECT_LE(page->encoded.size(), limit);
        auto rows = Rows(*page);
        paged.insert(paged.end(), rows.begin(), rows.end());
        if (page->next_cursor.empty()) break;
        q.cursor = page->next_cursor;
      }
      Query all;
      all.limit = 0;
      all.newest_first = newest_first;
      EXPECT_EQ(paged, All(*r, all)) << "limit " << limit << " newest_first " << newest_first;
    }
  }
}

TEST_F(ShardedLedger, FiltersAndTimeRangeApplyToEveryShard) {
  auto r = Reader(path_);
  ASSERT_NE(r, nullptr);
  Query q;
  q.action = "tool_call";  // even times
  q.newest_first = false;
  q.limit = 0;
  EXPECT_EQ(All(*r, q), (std::vector<Row>{{0, "a", 1}, {2, "c", 1}, {6, "a", 3}, {8, "c", 3}}));
  q.agent_id = "coder";
  q.limit = 1;
  auto first = r->Find(q);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(Rows(*first), (std::vector<Row>{{2, "c", 1}}));
  ASSERT_FALSE(first->next_cursor.empty());
  q.cursor = first->next_cursor;
  EXPECT_EQ(All(*r, q), (std::vector<Row>{{8, "c", 3}}));

  Query range;
  range.since_ns = kBase + 3'000'000;
  range.until_ns = kBase + 7'000'000;
  range.limit = 2;
  EXPECT_EQ(All(*r, range), (std::vector<Row>{{7, "b", 3}, {6, "a", 3}}));
  range.agent_id = "planner";
  range.limit = 0;
  EXPECT_EQ(All(*r, range), (std::vector<Row>{{6, "a", 3}, {3, "a", 2}}));
}

TEST_F(ShardedLedger, BadQueriesAndCursorsAreErrors) {
  auto r = Reader(path_);
  ASSERT_NE(r, nullptr);
  Query q;
  q.effect = "maybe";
  EXPECT_TRUE(r->Find(q).status().IsInvalidArgument());
  Query c;
  c.cursor = "s:4";  // a cursor of one ledger, not of a sharded one
  auto s = r->Find(c).status();
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  ExpectMentions(s, "sharded");
}

TEST_F(ShardedLedger, VerifyChecksEachChainAndSumsTheCounts) {
  auto r = Reader(path_);
  ASSERT_NE(r, nullptr);
  VerifyReport report = r->Verify({});
  EXPECT_TRUE(report.ok) << report.message;
  EXPECT_EQ(report.records_checked, 10u);
  EXPECT_FALSE(report.shard.has_value());
  ASSERT_EQ(report.shards.size(), 3u);
  EXPECT_EQ(report.shards[0].shard, "a");
  EXPECT_EQ(report.shards[1].records_checked, 3u);
  auto stats = r->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(stats->records, 10u);
  EXPECT_EQ(stats->by_shard, (std::map<std::string, uint64_t>{{"a", 4}, {"b", 3}, {"c", 3}}));
  EXPECT_EQ(stats->by_agent["coder"], 6u);
  EXPECT_EQ(stats->first_timestamp_ns, kBase);
  EXPECT_EQ(stats->last_timestamp_ns, kBase + 9'000'000);
  EXPECT_GT(stats->disk_bytes, 0u);
}

TEST_F(ShardedLedger, VerifyNamesTheDamagedShard) {
  {
    auto raw = RawDb::Open(path_ + "/shards/b");
    ASSERT_NE(raw, nullptr);
    std::string value = raw->Get(raw->records(), SeqKey(2));
    value[value.size() - 40] ^= 0x01;
    raw->Put(raw->records(), SeqKey(2), value);
  }
  auto r = Reader(path_);
  ASSERT_NE(r, nullptr);
  VerifyReport report = r->Verify({});
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.shard, "b");
  EXPECT_EQ(report.problem, VerifyProblem::kHashMismatch) << report.message;
  EXPECT_EQ(report.bad_seq, 2u);
  EXPECT_TRUE(report.message.starts_with("shard 'b': ")) << report.message;
  ASSERT_EQ(report.shards.size(), 3u);
  EXPECT_TRUE(report.shards[0].ok);
  EXPECT_FALSE(report.shards[1].ok);
  EXPECT_TRUE(report.shards[2].ok);
  // The shards after the damaged one are still checked.
  EXPECT_EQ(report.shards[2].records_checked, 3u);
  EXPECT_EQ(report.records_checked, report.shards[0].records_checked +
                                        report.shards[1].records_checked + 3u);
}

TEST_F(ShardedLedger, OneChainOperationsNameTheShardPaths) {
  auto r = Reader(path_);
  ASSERT_NE(r, nullptr);
  const std::vector<Status> errors = {
      r->GetHead().status(),          r->Get(1).status(),
      r->TreeHeadAt().status(),       r->InclusionProof(1).status(),
      r->ConsistencyProof(1, 1).status(), r->Checkpoints().status(),
      r->ScanStored(1, 2, [](uint64_t, std::string_view) { return true; }),
  };
  for (const Status& s : errors) {
    EXPECT_TRUE(s.IsFailedPrecondition()) << s.ToString();
    ExpectMentions(s, path_ + "/shards/a");
  }
  EXPECT_TRUE(r->Append(At(1, "x")).status().IsFailedPrecondition());
  VerifyOptions trusted;
  trusted.trusted.push_back(TreeHead{1, {}});
  VerifyReport report = r->Verify(trusted);
  EXPECT_TRUE(report.error.IsFailedPrecondition()) << report.error.ToString();
  ExpectMentions(report.error, "shards/");
  VerifyOptions range;
  range.from_seq = 2;
  EXPECT_TRUE(r->Verify(range).error.IsInvalidArgument());
}

TEST_F(ShardedLedger, RefreshFindsNewShardsAndRecords) {
  auto r = Reader(path_);
  ASSERT_NE(r, nullptr);
  auto d = OpenOrDie(Shard(path_, "d"));
  ASSERT_NE(d, nullptr);
  ASSERT_TRUE(d->Append(At(5, "late"), Durability::kSync).ok());
  // A shard folder a writer has only just made: no CURRENT yet.
  fs::create_directories(path_ + "/shards/e");
  Query q;
  q.limit = 0;
  EXPECT_EQ(All(*r, q).size(), 10u) << "as of open";
  ASSERT_TRUE(r->Refresh().ok());
  auto rows = All(*r, q);
  ASSERT_EQ(rows.size(), 11u);
  EXPECT_EQ(rows[4], (Row{5, "d", 1}));
  ASSERT_TRUE(d->Append(At(10, "late"), Durability::kSync).ok());
  ASSERT_TRUE(r->Refresh().ok());
  rows = All(*r, q);
  ASSERT_EQ(rows.size(), 12u);
  EXPECT_EQ(rows[0], (Row{10, "d", 2}));
  EXPECT_TRUE(r->Verify({}).ok);
}

TEST(ShardedLedgerMain, RefreshWhileWritersCreateShardsNeverFails) {
  TempDir dir;
  const std::string path = dir.Sub("l");
  fs::create_directories(path + "/shards");
  auto r = Reader(path);
  ASSERT_NE(r, nullptr);
  constexpr int kShards = 24;
  std::atomic<bool> done{false};
  std::thread writers([&] {
    for (int i = 0; i < kShards; ++i) {
      auto w = OpenOrDie(Shard(path, fmt::format("s{:02}", i)));
      if (w) (void)w->Append(At(i, "x"), Durability::kSync);
    }
    done = true;
  });
  int refreshes = 0;
  while (!done) {
    Status s = r->Refresh();
    ASSERT_TRUE(s.ok()) << s.ToString();
    ++refreshes;
  }
  writers.join();
  ASSERT_TRUE(r->Refresh().ok());
  Query q;
  q.limit = 0;
  EXPECT_EQ(All(*r, q).size(), static_cast<size_t>(kShards));
  EXPECT_GT(refreshes, 0);
}

TEST(ShardedLedgerMain, MainShardAndShardsReadAsOne) {
  TempDir dir;
  const std::string path = dir.Sub("l");
  auto main = OpenOrDie(path);
  ASSERT_NE(main, nullptr);
  ASSERT_TRUE(main->Append(At(2, "main")).ok());
  auto w = OpenOrDie(Shard(path, "w1"));
  ASSERT_NE(w, nullptr);
  ASSERT_TRUE(w->Append(At(1, "w")).ok());
  ASSERT_TRUE(w->Append(At(2, "w")).ok());
  ASSERT_TRUE(main->Append(At(3, "main")).ok());
  ASSERT_TRUE(main->Flush().ok());
  ASSERT_TRUE(w->Flush().ok());
  // Both writers still hold their directories; the main one keeps working
  // with a shards/ folder inside it.
  auto r = Reader(path);
  ASSERT_NE(r, nullptr);
  Query q;
  q.limit = 0;
  q.newest_first = false;
  EXPECT_EQ(All(*r, q), (std::vector<Row>{{1, "w1", 1}, {2, "", 1}, {2, "w1", 2}, {3, "", 2}}));
  auto one = r->Find(q);
  ASSERT_TRUE(one.ok());
  auto rec = DecodeStoredRecord(one->encoded[1]);
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->record.agent_id, "main");
  VerifyReport report = r->Verify({});
  EXPECT_TRUE(report.ok) << report.message;
  EXPECT_EQ(report.records_checked, 4u);
  ASSERT_EQ(report.shards.size(), 2u);
  EXPECT_EQ(report.shards[0].shard, "");
  ASSERT_TRUE(r->Close().ok());

  // The main shard reopened (RocksDB's file cleanup runs) and written to:
  // the shard beside its files is intact.
  ASSERT_TRUE(main->Close().ok());
  ASSERT_TRUE(w->Close().ok());
  main = OpenOrDie(path);
  ASSERT_NE(main, nullptr);
  for (int i = 0; i < 200; ++i) ASSERT_TRUE(main->Append(SampleRecord(i)).ok());
  ASSERT_TRUE(main->Close().ok());
  r = Reader(path);
  ASSERT_NE(r, nullptr);
  report = r->Verify({});
  EXPECT_TRUE(report.ok) << report.message;
  EXPECT_EQ(report.records_checked, 204u);
  // The main shard alone, opened as one ledger, is still a plain reader.
  auto plain = Reader(path + "/shards/w1");
  ASSERT_NE(plain, nullptr);
  EXPECT_EQ(plain->GetHead()->seq, 2u);
}

TEST(ShardedLedgerMain, AReaderOpenedBeforeTheFirstShardSeesItAfterRefresh) {
  TempDir dir;
  const std::string path = dir.Sub("l");
  auto main = OpenOrDie(path);
  ASSERT_NE(main, nullptr);
  ASSERT_TRUE(main->Append(At(1, "main")).ok());
  ASSERT_TRUE(main->Flush().ok());
  auto r = Reader(path);  // one ledger: no shards yet
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->GetHead()->seq, 1u);
  // A second worker starts and takes a shard.
  auto w = OpenOrDie(Shard(path, "w1"));
  ASSERT_NE(w, nullptr);
  ASSERT_TRUE(w->Append(At(2, "w")).ok());
  ASSERT_TRUE(w->Flush().ok());
  ASSERT_TRUE(r->Refresh().ok());
  Query q;
  q.limit = 0;
  q.newest_first = false;
  EXPECT_EQ(All(*r, q), (std::vector<Row>{{1, "", 1}, {2, "w1", 1}}));
  EXPECT_TRUE(r->GetHead().status().IsFailedPrecondition());  // one chain per shard now
  EXPECT_TRUE(r->Verify({}).ok);
}

TEST(ShardedLedgerMain, EmptyShardsAndAnEmptyShardsFolder) {
  TempDir dir;
  const std::string path = dir.Sub("l");
  fs::create_directories(path + "/shards");
  auto r = Reader(path);
  ASSERT_NE(r, nullptr);
  Query q;
  q.limit = 0;
  EXPECT_TRUE(All(*r, q).empty());
  EXPECT_TRUE(r->Verify({}).ok);
  Query bad;
  bad.risk_level = "extreme";
  EXPECT_TRUE(r->Find(bad).status().IsInvalidArgument()) << "checked without any shard too";
  auto empty = OpenOrDie(Shard(path, "idle"));
  ASSERT_NE(empty, nullptr);
  auto w = OpenOrDie(Shard(path, "busy"));
  ASSERT_NE(w, nullptr);
  ASSERT_TRUE(w->Append(At(1, "x"), Durability::kSync).ok());
  ASSERT_TRUE(r->Refresh().ok());
  EXPECT_EQ(All(*r, q), (std::vector<Row>{{1, "busy", 1}}));
  VerifyReport report = r->Verify({});
  EXPECT_TRUE(report.ok) << report.message;
  EXPECT_EQ(report.shards.size(), 2u);
  EXPECT_EQ(r->Stats()->by_shard, (std::map<std::string, uint64_t>{{"busy", 1}, {"idle", 0}}));
}

TEST(ShardNames, ValidAndInvalid) {
  for (const std::string& good :
       std::vector<std::string>{"w1", "host-1", "a.b_c-D", "0", std::string(64, 'x')}) {
    EXPECT_TRUE(ValidateShardName(good).ok()) << good;
  }
  const std::string too_long(65, 'x');
  const std::vector<std::string> bad = {"", ".hidden", "a/b", "..", "sp ace", "tab\t", "é",
                                        too_long, std::string("nul\0x", 5)};
  for (const std::string& name : bad) {
    Status s = ValidateShardName(name);
    EXPECT_TRUE(s.IsInvalidArgument()) << "'" << name << "' accepted";
    ExpectMentions(s, "shard name");
  }
  auto p = ShardPath("/var/l", "w1");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(*p, "/var/l/shards/w1");
  auto no = ShardPath("/var/l", "../x");
  EXPECT_TRUE(no.status().IsInvalidArgument());
  ExpectMentions(no.status(), "'../x'");
  EXPECT_TRUE(ShardPath("", "w1").status().IsInvalidArgument());
}

TEST(ShardNames, AReaderRefusesAFolderWithABadNameAndIgnoresHiddenOnes) {
  TempDir dir;
  const std::string path = dir.Sub("l");
  fs::create_directories(path + "/shards/.tmp");
  auto r = Reader(path);
  ASSERT_NE(r, nullptr);
  fs::create_directories(path + "/shards/bad name");
  auto opened = Ledger::OpenReader(path);
  ASSERT_FALSE(opened.ok());
  EXPECT_TRUE(opened.status().IsInvalidArgument()) << opened.status().ToString();
  ExpectMentions(opened.status(), "'bad name'");
}

}  // namespace
}  // namespace bastion
