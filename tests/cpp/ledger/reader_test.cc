// Readers: RocksDB secondary instances that follow a writer.
#include <atomic>
#include <filesystem>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "bastion/ledger.h"
#include "test_util.h"

namespace bastion {
namespace {

using testing::OpenOrDie;
using testing::SampleRecord;
using testing::TempDir;

std::unique_ptr<Ledger> OpenReaderOrDie(const std::string& path, ReaderOptions options = {}) {
  auto opened = Ledger::OpenReader(path, options);
  EXPECT_TRUE(opened.ok()) << opened.status().ToString();
  return opened.ok() ? std::move(*opened) : nullptr;
}

size_t CountAll(Ledger& l) {
  Query q;
  q.limit = 0;
  auto r = l.Find(q);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? r->encoded.size() : 0;
}

TEST(LedgerReader, SeesRecordsAsOfOpenUntilRefresh) {
  TempDir dir;
  auto writer = OpenOrDie(dir.Sub("l"));
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(writer->Append(SampleRecord(i)).ok());
  auto reader = OpenReaderOrDie(dir.Sub("l"));
  ASSERT_NE(reader, nullptr);
  EXPECT_TRUE(reader->read_only());
  EXPECT_FALSE(writer->read_only());
  EXPECT_EQ(reader->GetHead()->seq, 5u);
  EXPECT_EQ(reader->GetHead()->hash, writer->GetHead()->hash);
  EXPECT_EQ(reader->Get(5)->record, SampleRecord(5 - 1));

  for (int i = 5; i < 12; ++i) ASSERT_TRUE(writer->Append(SampleRecord(i)).ok());
  // Not yet visible.
  EXPECT_EQ(reader->GetHead()->seq, 5u);
  EXPECT_TRUE(reader->Get(6).status().IsNotFound()) << reader->Get(6).status().ToString();
  EXPECT_EQ(CountAll(*reader), 5u);
  Query by_agent;
  by_agent.agent_id = SampleRecord(6).agent_id;
  by_agent.limit = 0;
  EXPECT_EQ(reader->Find(by_agent)->encoded.size(), 1u) << "only record 2 (SampleRecord(1))";
  VerifyReport before = reader->Verify({});
  EXPECT_TRUE(before.ok) << before.message;
  EXPECT_EQ(before.records_checked, 5u);

  ASSERT_TRUE(reader->Refresh().ok());
  EXPECT_EQ(reader->GetHead()->seq, 12u);
  EXPECT_EQ(reader->GetHead()->hash, writer->GetHead()->hash);
  auto got = reader->Get(12);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->record, SampleRecord(11));
  EXPECT_EQ(got->hash, writer->Get(12)->hash);
  EXPECT_EQ(CountAll(*reader), 12u);
  EXPECT_EQ(reader->Find(by_agent)->encoded.size(), 3u) << "SampleRecord(1), (6) and (11)";
  VerifyReport after = reader->Verify({});
  EXPECT_TRUE(after.ok) << after.message;
  EXPECT_EQ(after.records_checked, 12u);
  auto stats = reader->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->records, 12u);

  // Refresh with nothing new is harmless.
  ASSERT_TRUE(reader->Refresh().ok());
  EXPECT_EQ(reader->GetHead()->seq, 12u);
}

TEST(LedgerReader, SeesAsyncRecordsOnceTheWriterFlushed) {
  TempDir dir;
  auto writer = OpenOrDie(dir.Sub("l"));
  auto reader = OpenReaderOrDie(dir.Sub("l"));
  ASSERT_NE(reader, nullptr);
  EXPECT_EQ(reader->GetHead()->seq, 0u);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(writer->Append(SampleRecord(i), Durability::kAsync).ok());
  ASSERT_TRUE(writer->Flush().ok());
  ASSERT_TRUE(reader->Refresh().ok());
  EXPECT_EQ(reader->GetHead()->seq, 100u);
  EXPECT_TRUE(reader->Verify({}).ok);
}

TEST(LedgerReader, AppendOnAReaderIsFailedPrecondition) {
  TempDir dir;
  {
    auto writer = OpenOrDie(dir.Sub("l"));
    ASSERT_TRUE(writer->Append(SampleRecord(0)).ok());
  }
  auto reader = OpenReaderOrDie(dir.Sub("l"));
  ASSERT_NE(reader, nullptr);
  for (Durability d : {Durability::kSync, Durability::kGroup, Durability::kAsync}) {
    auto seq = reader->Append(SampleRecord(1), d);
    EXPECT_TRUE(seq.status().IsFailedPrecondition()) << seq.status().ToString();
    auto first = reader->AppendBatch({SampleRecord(1), SampleRecord(2)}, d);
    EXPECT_TRUE(first.status().IsFailedPrecondition()) << first.status().ToString();
  }
  EXPECT_TRUE(reader->Append(SampleRecord(1)).status().IsFailedPrecondition());
  EXPECT_TRUE(reader->Flush().ok()) << "nothing to flush";
  EXPECT_EQ(reader->GetHead()->seq, 1u);
  // Nothing was written.
  auto writer = OpenOrDie(dir.Sub("l"));
  EXPECT_EQ(writer->GetHead()->seq, 1u);
}

TEST(LedgerReader, ReaderAndWriterWorkOnTheSamePathAtOnce) {
  TempDir dir;
  const std::string path = dir.Sub("l");
  auto writer = OpenOrDie(path);
  ASSERT_TRUE(writer->Append(SampleRecord(0)).ok());
  auto reader = OpenReaderOrDie(path);
  auto reader2 = OpenReaderOrDie(path);
  ASSERT_NE(reader, nullptr);
  ASSERT_NE(reader2, nullptr);
  constexpr int kAppends = 400;
  std::atomic<bool> done{false};
  std::thread producer([&] {
    for (int i = 1; i <= kAppends; ++i) {
      auto seq = writer->Append(SampleRecord(i), i % 2 ? Durability::kGroup : Durability::kSync);
      if (!seq.ok()) {
        ADD_FAILURE() << seq.status().ToString();
        break;
      }
    }
    done = true;
  });
  uint64_t last_seen = 0;
  int rounds = 0;
  bool failed = false;
  while ((!done || rounds < 3) && !failed) {
    Status s = reader->Refresh();
    auto head = reader->GetHead();
    if (!s.ok() || !head.ok()) {
      ADD_FAILURE() << s.ToString() << " / " << head.status().ToString();
      failed = true;
      break;
    }
    EXPECT_GE(head->seq, last_seen) << "a reader's head never goes back";
    last_seen = head->seq;
    VerifyReport r = reader->Verify({});
    if (!r.ok) {
      ADD_FAILURE() << "round " << rounds << ": " << r.message;
      failed = true;
    }
    EXPECT_EQ(r.records_checked, head->seq);
    if (head->seq > 0) {
      auto rec = reader->Get(head->seq);
      EXPECT_TRUE(rec.ok()) << rec.status().ToString();
      if (rec.ok()) {
        EXPECT_EQ(rec->hash, head->hash);
      }
    }
    ++rounds;
  }
  producer.join();
  ASSERT_FALSE(failed);
  EXPECT_GE(rounds, 3);
  ASSERT_TRUE(reader->Refresh().ok());
  EXPECT_EQ(reader->GetHead()->seq, static_cast<uint64_t>(kAppends + 1));
  EXPECT_EQ(CountAll(*reader), static_cast<size_t>(kAppends + 1));
  EXPECT_EQ(reader2->GetHead()->seq, 1u) << "the second reader has not refreshed";
  ASSERT_TRUE(reader2->Refresh().ok());
  EXPECT_EQ(reader2->GetHead()->seq, static_cast<uint64_t>(kAppends + 1));
  EXPECT_TRUE(writer->Verify({}).ok);
  // The writer keeps working while readers are open, and closes cleanly.
  EXPECT_EQ(*writer->Append(SampleRecord(999)), static_cast<uint64_t>(kAppends + 2));
  ASSERT_TRUE(writer->Close().ok());
  ASSERT_TRUE(reader->Refresh().ok());
  EXPECT_EQ(reader->GetHead()->seq, static_cast<uint64_t>(kAppends + 2));
}

TEST(LedgerReader, UsesAndKeepsAnExplicitSecondaryPath) {
  TempDir dir;
  {
    auto writer = OpenOrDie(dir.Sub("l"));
    ASSERT_TRUE(writer->Append(SampleRecord(0)).ok());
  }
  ReaderOptions options;
  options.secondary_path = dir.Sub("secondary");
  std::filesystem::create_directory(options.secondary_path);
  {
    auto reader = OpenReaderOrDie(dir.Sub("l"), options);
    ASSERT_NE(reader, nullptr);
    EXPECT_EQ(reader->GetHead()->seq, 1u);
    ASSERT_TRUE(reader->Close().ok());
    EXPECT_TRUE(reader->Close().ok()) << "idempotent";
    EXPECT_TRUE(reader->GetHead().status().IsFailedPrecondition());
    EXPECT_TRUE(reader->Refresh().IsFailedPrecondition());
    EXPECT_FALSE(reader->Verify({}).ok);
  }
  EXPECT_TRUE(std::filesystem::is_directory(options.secondary_path))
      << "a caller's secondary path is not removed";
}

TEST(LedgerReader, RefreshOnAWriterIsANoOp) {
  TempDir dir;
  auto writer = OpenOrDie(dir.Sub("l"));
  ASSERT_TRUE(writer->Append(SampleRecord(0)).ok());
  EXPECT_TRUE(writer->Refresh().ok());
  EXPECT_EQ(writer->GetHead()->seq, 1u);
}

}  // namespace
}  // namespace bastion
