#include "bastion/ledger.h"

#include <thread>

#include <gtest/gtest.h>

#include "test_util.h"

namespace bastion {
namespace {

using testing::OpenOrDie;
using testing::SampleRecord;
using testing::TempDir;

TEST(Ledger, AppendsAndReadsBackEveryField) {
  TempDir dir;
  auto ledger = OpenOrDie(dir.Sub("l"));
  Record r = SampleRecord(10);
  auto seq = ledger->Append(r, Durability::kSync);
  ASSERT_TRUE(seq.ok()) << seq.status().ToString();
  EXPECT_EQ(*seq, 1u);
  auto got = ledger->Get(1);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->seq, 1u);
  EXPECT_EQ(got->prev_hash, Hash{});
  EXPECT_EQ(got->record, r);
  auto head = ledger->GetHead();
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->seq, 1u);
  EXPECT_EQ(head->hash, got->hash);
}

TEST(Ledger, SequenceNumbersAreGapFreeAcrossModesAndReopen) {
  TempDir dir;
  {
    auto ledger = OpenOrDie(dir.Sub("l"));
    EXPECT_EQ(*ledger->Append(SampleRecord(0), Durability::kSync), 1u);
    EXPECT_EQ(*ledger->Append(SampleRecord(1), Durability::kGroup), 2u);
    EXPECT_EQ(*ledger->Append(SampleRecord(2), Durability::kAsync), 3u);
    std::vector<Record> batch = {SampleRecord(3), SampleRecord(4)};
    EXPECT_EQ(*ledger->AppendBatch(batch, Durability::kGroup), 4u);
    ASSERT_TRUE(ledger->Close().ok());
  }
  auto ledger = OpenOrDie(dir.Sub("l"));
  EXPECT_EQ(ledger->GetHead()->seq, 5u);
  EXPECT_EQ(*ledger->Append(SampleRecord(5)), 6u);
  auto report = ledger->Verify({});
  EXPECT_TRUE(report.ok) << report.message;
  EXPECT_EQ(report.records_checked, 6u);
}

TEST(Ledger, DeferredRecordsAreWrittenByTheNextWaitedAppendOrWithinTheInterval) {
  TempDir dir;
  LedgerOptions options;
  options.group_sync_interval = std::chrono::milliseconds(20);
  auto opened = Ledger::Open(dir.Sub("l"), options);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  std::unique_ptr<Ledger> ledger = std::move(*opened);
  // Covered by a waited append that follows it.
  auto deferred = ledger->AppendDeferred(SampleRecord(0));
  ASSERT_TRUE(deferred.ok());
  auto waited = ledger->Append(SampleRecord(1), Durability::kGroup);
  ASSERT_TRUE(waited.ok());
  EXPECT_TRUE(ledger->Get(*deferred).ok());
  EXPECT_TRUE(ledger->Get(*waited).ok());
  // Alone: the writer writes it within the interval.
  auto alone = ledger->AppendDeferred(SampleRecord(2));
  ASSERT_TRUE(alone.ok());
  bool written = false;
  for (int i = 0; i < 200 && !written; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    written = ledger->GetHead()->seq >= *alone;
  }
  EXPECT_TRUE(written);
  // And an async append after a deferred one is not held back by it.
  ASSERT_TRUE(ledger->AppendDeferred(SampleRecord(3)).ok());
  auto async = ledger->Append(SampleRecord(4), Durability::kAsync);
  ASSERT_TRUE(async.ok());
  ASSERT_TRUE(ledger->Flush().ok());
  EXPECT_EQ(ledger->GetHead()->seq, *async);
  EXPECT_TRUE(ledger->Verify({}).ok);
}

TEST(Ledger, ChainLinksEachRecordToThePrevious) {
  TempDir dir;
  auto ledger = OpenOrDie(dir.Sub("l"));
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(ledger->Append(SampleRecord(i)).ok());
  for (uint64_t s = 2; s <= 5; ++s) {
    EXPECT_EQ(ledger->Get(s)->prev_hash, ledger->Get(s - 1)->hash) << "record " << s;
  }
}

TEST(Ledger, FillsTimestampWhenUnset) {
  TempDir dir;
  auto ledger = OpenOrDie(dir.Sub("l"));
  Record r;
  r.action = "model_call";
  const auto before = std::chrono::system_clock::now().time_since_epoch();
  ASSERT_TRUE(ledger->Append(r).ok());
  const int64_t ts = ledger->Get(1)->record.timestamp_ns;
  EXPECT_GE(ts, std::chrono::duration_cast<std::chrono::nanoseconds>(before).count());
}

TEST(Ledger, RejectsInvalidRecordsAndWritesNothing) {
  TempDir dir;
  auto ledger = OpenOrDie(dir.Sub("l"));
  struct Case {
    const char* name;
    std::function<void(Record&)> mutate;
    const char* expected;
  } cases[] = {
      {"missing action", [](Record& r) { r.action.clear(); }, "'action' is required"},
      {"invalid utf8", [](Record& r) { r.user_id = "ab\xff"; }, "'user_id' is not valid UTF-8 (byte 2)"},
      {"overlong utf8", [](Record& r) { r.agent_id = "\xc0\xaf"; }, "'agent_id' is not valid UTF-8"},
      {"surrogate", [](Record& r) { r.tool = "\xed\xa0\x80"; }, "'tool' is not valid UTF-8"},
      {"oversized id", [](Record& r) { r.run_id.assign(kMaxIdBytes + 1, 'x'); }, "'run_id' is 1025 bytes"},
      {"oversized summary", [](Record& r) { r.input_summary.assign(kMaxSummaryBytes + 1, 'x'); }, "'input_summary'"},
      {"bad effect", [](Record& r) { r.effect = "maybe"; }, "'effect' is 'maybe'"},
      {"negative cost", [](Record& r) { r.cost_nanousd = -1; }, "'cost_usd' is negative"},
      {"duplicate attribute", [](Record& r) { r.attributes = {{"k", "1"}, {"k", "2"}}; }, "repeats key 'k'"},
      {"empty attribute key", [](Record& r) { r.attributes = {{"", "1"}}; }, "empty key"},
      {"binary attribute", [](Record& r) { r.attributes = {{"k", std::string("\x00\xfe", 2)}}; }, "attributes['k']"},
  };
  for (const auto& c : cases) {
    Record r = testing::SampleRecord(1);
    c.mutate(r);
    auto seq = ledger->Append(r);
    ASSERT_FALSE(seq.ok()) << c.name;
    EXPECT_TRUE(seq.status().IsInvalidArgument()) << c.name;
    EXPECT_NE(seq.status().message().find(c.expected), std::string::npos)
        << c.name << ": " << seq.status().message();
  }
  EXPECT_EQ(ledger->GetHead()->seq, 0u);
  // A batch with one bad record appends none of them.
  std::vector<Record> batch = {SampleRecord(1), SampleRecord(2)};
  batch[1].user_id = "\xff";
  auto seq = ledger->AppendBatch(batch);
  ASSERT_FALSE(seq.ok());
  EXPECT_NE(seq.status().message().find("record 1 of the batch"), std::string::npos);
  EXPECT_EQ(ledger->GetHead()->seq, 0u);
}

TEST(Ledger, ManyProducersGetDistinctConsecutiveSequences) {
  TempDir dir;
  auto ledger = OpenOrDie(dir.Sub("l"));
  constexpr int kThreads = 8, kPerThread = 300;
  std::vector<std::vector<uint64_t>> got(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const Durability modes[] = {Durability::kSync, Durability::kGroup, Durability::kAsync};
      for (int i = 0; i < kPerThread; ++i) {
        auto seq = ledger->Append(SampleRecord(t * kPerThread + i), modes[(t + i) % 3]);
        ASSERT_TRUE(seq.ok()) << seq.status().ToString();
        got[t].push_back(*seq);
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_TRUE(ledger->Flush().ok());
  std::vector<uint64_t> all;
  for (auto& v : got) all.insert(all.end(), v.begin(), v.end());
  std::sort(all.begin(), all.end());
  for (size_t i = 0; i < all.size(); ++i) ASSERT_EQ(all[i], i + 1);
  auto report = ledger->Verify({});
  EXPECT_TRUE(report.ok) << report.message;
  EXPECT_EQ(report.records_checked, static_cast<uint64_t>(kThreads * kPerThread));
}

TEST(Ledger, ClosedLedgerRefusesWork) {
  TempDir dir;
  auto ledger = OpenOrDie(dir.Sub("l"));
  ASSERT_TRUE(ledger->Append(SampleRecord(1)).ok());
  ASSERT_TRUE(ledger->Close().ok());
  EXPECT_TRUE(ledger->Close().ok());  // idempotent
  auto seq = ledger->Append(SampleRecord(2));
  EXPECT_TRUE(seq.status().IsFailedPrecondition()) << seq.status().ToString();
  EXPECT_TRUE(ledger->GetHead().status().IsFailedPrecondition());
  EXPECT_FALSE(ledger->read_only());  // closed, but it was a writer
}

TEST(Ledger, AsyncRecordsAreAllWrittenByClose) {
  TempDir dir;
  {
    LedgerOptions o;
    o.queue_capacity = 64;  // forces backpressure
    auto ledger = OpenOrDie(dir.Sub("l"), o);
    for (int i = 0; i < 2000; ++i) ASSERT_TRUE(ledger->Append(SampleRecord(i), Durability::kAsync).ok());
    ASSERT_TRUE(ledger->Close().ok());
  }
  auto ledger = OpenOrDie(dir.Sub("l"));
  EXPECT_EQ(ledger->GetHead()->seq, 2000u);
  EXPECT_TRUE(ledger->Verify({}).ok);
}

TEST(Ledger, StatsCountRecordsByActionEffectAndAgent) {
  TempDir dir;
  auto ledger = OpenOrDie(dir.Sub("l"));
  for (int i = 0; i < 30; ++i) ASSERT_TRUE(ledger->Append(SampleRecord(i)).ok());
  auto stats = ledger->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(stats->records, 30u);
  EXPECT_EQ(stats->head.seq, 30u);
  EXPECT_EQ(stats->by_action["tool_call"], 10u);
  EXPECT_EQ(stats->by_action["model_call"], 20u);
  EXPECT_EQ(stats->by_effect["deny"], 3u);
  EXPECT_EQ(stats->by_agent["agent-0"], 6u);
  EXPECT_EQ(stats->format, "bastion-ledger/2");
  EXPECT_GT(stats->disk_bytes, 0u);
  EXPECT_EQ(stats->first_timestamp_ns, SampleRecord(0).timestamp_ns);
  EXPECT_EQ(stats->last_timestamp_ns, SampleRecord(29).timestamp_ns);
}

}  // namespace
}  // namespace bastion
