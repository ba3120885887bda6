// When the writer writes: async records in batches after async_batch_delay
// (or at once when a batch is full), waited appends by their own producers,
// and every record of every mode in one chain.
#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "bastion/ledger.h"
#include "test_util.h"

namespace bastion {
namespace {

using testing::SampleRecord;
using testing::TempDir;
using Clock = std::chrono::steady_clock;

std::unique_ptr<Ledger> Open(const std::string& path, const LedgerOptions& options) {
  auto opened = Ledger::Open(path, options);
  EXPECT_TRUE(opened.ok()) << opened.status().ToString();
  return opened.ok() ? std::move(*opened) : nullptr;
}

// Polls until the head reaches `seq` or `limit` passes; the time it took.
std::optional<Clock::duration> TimeUntilWritten(Ledger* ledger, uint64_t seq,
                                                Clock::duration limit) {
  const auto start = Clock::now();
  while (Clock::now() - start < limit) {
    if (ledger->GetHead()->seq >= seq) return Clock::now() - start;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return std::nullopt;
}

TEST(Writer, WritesAnAsyncRecordWithinTheBatchDelayWithoutAFlush) {
  TempDir dir;
  LedgerOptions options;
  options.async_batch_delay = std::chrono::milliseconds(5);
  auto ledger = Open(dir.Sub("l"), options);
  ASSERT_NE(ledger, nullptr);
  auto seq = ledger->Append(SampleRecord(0), Durability::kAsync);
  ASSERT_TRUE(seq.ok()) << seq.status().ToString();
  EXPECT_TRUE(TimeUntilWritten(ledger.get(), *seq, std::chrono::seconds(5)).has_value());
  // The writer went back to sleep: a later record is written too.
  auto later = ledger->Append(SampleRecord(1), Durability::kAsync);
  ASSERT_TRUE(later.ok());
  EXPECT_TRUE(TimeUntilWritten(ledger.get(), *later, std::chrono::seconds(5)).has_value());
}

TEST(Writer, HoldsAsyncRecordsForTheBatchDelay) {
  TempDir dir;
  LedgerOptions options;
  options.async_batch_delay = std::chrono::seconds(30);
  auto ledger = Open(dir.Sub("l"), options);
  ASSERT_NE(ledger, nullptr);
  auto seq = ledger->Append(SampleRecord(0), Durability::kAsync);
  ASSERT_TRUE(seq.ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(ledger->GetHead()->seq, 0u) << "written before its batch was due";
  ASSERT_TRUE(ledger->Flush().ok());  // a flush does not wait for the delay
  EXPECT_EQ(ledger->GetHead()->seq, *seq);
}

TEST(Writer, WritesAFullBatchAtOnce) {
  TempDir dir;
  LedgerOptions options;
  options.async_batch_delay = std::chrono::seconds(30);
  options.max_batch_records = 8;
  auto ledger = Open(dir.Sub("l"), options);
  ASSERT_NE(ledger, nullptr);
  uint64_t last = 0;
  for (int i = 0; i < 8; ++i) {
    auto seq = ledger->Append(SampleRecord(i), Durability::kAsync);
    ASSERT_TRUE(seq.ok());
    last = *seq;
  }
  EXPECT_TRUE(TimeUntilWritten(ledger.get(), last, std::chrono::seconds(5)).has_value())
      << "a full batch waited for the delay";
}

TEST(Writer, AFullQueueIsDrainedAtOnce) {
  TempDir dir;
  LedgerOptions options;
  options.async_batch_delay = std::chrono::seconds(30);
  options.queue_capacity = 4;
  auto ledger = Open(dir.Sub("l"), options);
  ASSERT_NE(ledger, nullptr);
  // More records than the queue holds: each append past the capacity waits
  // for room, which the writer makes without waiting for the delay.
  const auto start = Clock::now();
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(ledger->Append(SampleRecord(i), Durability::kAsync).ok());
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(10));
  ASSERT_TRUE(ledger->Flush().ok());
  EXPECT_EQ(ledger->GetHead()->seq, 20u);
}

TEST(Writer, AWaitedAppendWritesTheAsyncRecordsQueuedBeforeIt) {
  TempDir dir;
  LedgerOptions options;
  options.async_batch_delay = std::chrono::seconds(30);
  auto ledger = Open(dir.Sub("l"), options);
  ASSERT_NE(ledger, nullptr);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(ledger->Append(SampleRecord(i), Durability::kAsync).ok());
  auto waited = ledger->Append(SampleRecord(3), Durability::kGroup);
  ASSERT_TRUE(waited.ok());
  EXPECT_EQ(*waited, 4u);
  EXPECT_EQ(ledger->GetHead()->seq, 4u);
  for (uint64_t s = 1; s <= 4; ++s) EXPECT_TRUE(ledger->Get(s).ok()) << "record " << s;
}

TEST(Writer, MixedModesFromManyThreadsFormOneGapFreeChain) {
  TempDir dir;
  LedgerOptions options;
  options.async_batch_delay = std::chrono::microseconds(300);
  auto ledger = Open(dir.Sub("l"), options);
  ASSERT_NE(ledger, nullptr);
  constexpr int kThreads = 6, kEach = 150;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const Durability modes[] = {Durability::kAsync, Durability::kGroup, Durability::kSync};
      for (int i = 0; i < kEach; ++i) {
        Result<uint64_t> seq = (t + i) % 7 == 0
                                   ? ledger->AppendDeferred(SampleRecord(i))
                                   : ledger->Append(SampleRecord(i), modes[(t + i) % 3]);
        if (!seq.ok()) failures.fetch_add(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  ASSERT_TRUE(ledger->Flush().ok());
  EXPECT_EQ(ledger->GetHead()->seq, static_cast<uint64_t>(kThreads * kEach));
  VerifyReport report = ledger->Verify({});
  EXPECT_TRUE(report.ok) << report.message;
  EXPECT_EQ(report.records_checked, static_cast<uint64_t>(kThreads * kEach));
}

}  // namespace
}  // namespace bastion
