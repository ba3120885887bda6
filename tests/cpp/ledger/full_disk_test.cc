// A ledger on a file system that runs full: every affected call reports an
// IOError, the process lives on, nothing acknowledged is lost, and appends
// work again once there is room.
#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "bastion/ledger.h"
#include "small_fs.h"
#include "test_util.h"

namespace bastion {
namespace {

using testing::SampleRecord;
using testing::SmallFs;
using testing::TempDir;

Record Numbered(int i) {
  Record r = SampleRecord(i);
  r.input_summary = fmt::format("record number {} {}", i, std::string(200, 'p'));
  return r;
}

class FullDisk : public ::testing::TestWithParam<Durability> {
 protected:
  void SetUp() override {
    fs_ = std::make_unique<SmallFs>(tmp_.Sub("fs"), 2048);
    if (!fs_->mounted()) GTEST_SKIP() << fs_->error();
    path_ = tmp_.Sub("fs") + "/ledger";
  }

  // Appends until the store refuses (the disk is full); returns acked seqs.
  void AppendUntilRefused(Ledger* ledger, int* next, Status* refusal) {
    for (int tries = 0; tries < 20000; ++tries) {
      const int i = (*next)++;
      auto seq = ledger->Append(Numbered(i), GetParam());
      if (!seq.ok()) {
        *refusal = seq.status();
        return;
      }
      acked_[*seq] = i;
    }
  }

  void ExpectEveryAckedRecordKept(Ledger* ledger) {
    auto head = ledger->GetHead();
    ASSERT_TRUE(head.ok());
    EXPECT_EQ(head->seq, acked_.size()) << "records beyond the acknowledged ones, or a gap";
    for (const auto& [seq, i] : acked_) {
      auto rec = ledger->Get(seq);
      ASSERT_TRUE(rec.ok()) << "acknowledged record " << seq << ": " << rec.status().ToString();
      EXPECT_EQ(rec->record.input_summary, Numbered(i).input_summary) << "record " << seq;
    }
    VerifyReport report = ledger->Verify({});  // the stored Merkle tree too
    EXPECT_TRUE(report.ok) << report.message;
    // The tree the writer kept across the failed writes covers exactly the
    // records: its root is the one the records give.
    auto tree = ledger->TreeHeadAt();
    ASSERT_TRUE(tree.ok()) << tree.status().ToString();
    EXPECT_EQ(tree->size, head->seq);
    VerifyOptions trusted;
    trusted.trusted = {*tree};
    report = ledger->Verify(trusted);
    EXPECT_TRUE(report.ok) << report.message;
  }

  size_t acked_size() {
    std::lock_guard<std::mutex> lock(acked_mu_);
    return acked_.size();
  }

  void RunConcurrentAppenders(const std::function<Durability(int)>& mode_of);

  TempDir tmp_;
  std::unique_ptr<SmallFs> fs_;
  std::string path_;
  std::mutex acked_mu_;
  std::map<uint64_t, int> acked_;  // seq -> record number; guarded by acked_mu_ when shared
};

TEST_P(FullDisk, ReportsEveryRefusedAppendAndRecoversWhenSpaceReturns) {
  LedgerOptions o;
  o.write_buffer_bytes = 256 << 10;
  o.index_batch_records = 64;
  auto opened = Ledger::Open(path_, o);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  std::unique_ptr<Ledger> ledger = std::move(*opened);
  int next = 0;
  for (; next < 50; ++next) {
    auto seq = ledger->Append(Numbered(next), GetParam());
    ASSERT_TRUE(seq.ok()) << seq.status().ToString();
    acked_[*seq] = next;
  }

  fs_->Fill();
  Status refusal;
  AppendUntilRefused(ledger.get(), &next, &refusal);
  ASSERT_FALSE(refusal.ok()) << "the full disk never refused an append";
  EXPECT_TRUE(refusal.IsIOError()) << refusal.ToString();
  EXPECT_NE(refusal.message().find(path_), std::string::npos) << refusal.message();
  // Every later append while the disk is full fails too, and says why.
  for (int k = 0; k < 5; ++k) {
    auto seq = ledger->Append(Numbered(next++), GetParam());
    ASSERT_FALSE(seq.ok()) << "append " << k << " succeeded on a full disk";
    EXPECT_TRUE(seq.status().IsIOError()) << seq.status().ToString();
  }
  EXPECT_TRUE(ledger->Flush().IsIOError());
  // Reads still work.
  ASSERT_TRUE(ledger->Get(1).ok());

  fs_->Free();
  for (int k = 0; k < 100; ++k) {
    const int i = next++;
    auto seq = ledger->Append(Numbered(i), GetParam());
    ASSERT_TRUE(seq.ok()) << "after freeing space, append " << k << ": " << seq.status().ToString();
    acked_[*seq] = i;
  }
  ASSERT_TRUE(ledger->Flush().ok());
  ExpectEveryAckedRecordKept(ledger.get());
  ASSERT_TRUE(ledger->Close().ok());

  auto reopened = Ledger::Open(path_, o);
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  ExpectEveryAckedRecordKept(reopened->get());
}

TEST_P(FullDisk, CloseOnAFullDiskKeepsWhatWasAcknowledged) {
  auto opened = Ledger::Open(path_);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  std::unique_ptr<Ledger> ledger = std::move(*opened);
  int next = 0;
  fs_->Fill();
  Status refusal;
  AppendUntilRefused(ledger.get(), &next, &refusal);
  ASSERT_FALSE(refusal.ok());
  (void)ledger->Close();  // may report the full disk; must not lose anything
  fs_->Free();
  auto reopened = Ledger::Open(path_);
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  ExpectEveryAckedRecordKept(reopened->get());
}

// Appenders on kThreads threads, thread t in durability mode_of(t), fill the
// disk and free it again: every refusal is an IOError, every acknowledged
// record is kept, and nobody hangs.
void FullDisk::RunConcurrentAppenders(const std::function<Durability(int)>& mode_of) {
  auto opened = Ledger::Open(path_);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  std::unique_ptr<Ledger> ledger = std::move(*opened);
  constexpr int kThreads = 4;
  std::atomic<int> refusals{0};
  std::atomic<bool> freed{false};
  std::atomic<int> after_free{0};
  std::vector<std::string> unexpected;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t * 1'000'000; after_free.load() < kThreads * 50; ++i) {
        // An append that starts once space is back must succeed.
        const bool space = freed.load();
        auto seq = ledger->Append(Numbered(i), mode_of(t));
        std::lock_guard<std::mutex> lock(acked_mu_);
        if (seq.ok()) {
          acked_[*seq] = i;
          if (freed.load()) after_free.fetch_add(1);
        } else if (space || !seq.status().IsIOError()) {
          unexpected.push_back(seq.status().ToString());
          return;
        } else {
          refusals.fetch_add(1);
        }
      }
    });
  }
  while (acked_size() < 200) std::this_thread::yield();
  fs_->Fill();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (refusals.load() < 20 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  fs_->Free();
  freed = true;
  for (auto& th : threads) th.join();
  EXPECT_GE(refusals.load(), 20) << "the full disk did not refuse appends";
  EXPECT_TRUE(unexpected.empty()) << unexpected.front();
  ExpectEveryAckedRecordKept(ledger.get());
  ASSERT_TRUE(ledger->Close().ok());
  auto reopened = Ledger::Open(path_);
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  ExpectEveryAckedRecordKept(reopened->get());
}

TEST_P(FullDisk, ConcurrentAppendersKeepEveryAcknowledgedRecord) {
  RunConcurrentAppenders([this](int) { return GetParam(); });
}

// Sync and group appenders together: a write failing while a sync append has
// claimed the next fsync must not wait for that claim (the claimant waits for
// the write lock the failing writer holds).
TEST_P(FullDisk, SyncAndGroupAppendersTogetherNeverHang) {
  const Durability other = GetParam() == Durability::kSync ? Durability::kGroup : Durability::kSync;
  RunConcurrentAppenders([&](int t) { return t % 2 == 0 ? GetParam() : other; });
}

INSTANTIATE_TEST_SUITE_P(Modes, FullDisk,
                         ::testing::Values(Durability::kSync, Durability::kGroup),
                         [](const auto& info) { return std::string(DurabilityName(info.param)); });

TEST(FullDiskAsync, ReportsTheRecordsItCouldNotWrite) {
  TempDir tmp;
  SmallFs fs(tmp.Sub("fs"), 2048);
  if (!fs.mounted()) GTEST_SKIP() << fs.error();
  const std::string path = tmp.Sub("fs") + "/ledger";
  auto opened = Ledger::Open(path);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  std::unique_ptr<Ledger> ledger = std::move(*opened);
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(ledger->Append(Numbered(i), Durability::kSync).ok());
  fs.Fill();
  Status refusal;
  for (int i = 0; i < 20000 && refusal.ok(); ++i) {
    auto seq = ledger->Append(Numbered(i), Durability::kAsync);
    if (!seq.ok()) refusal = seq.status();
    if (i % 100 == 99 && refusal.ok()) refusal = ledger->Flush();
  }
  ASSERT_FALSE(refusal.ok()) << "the full disk was never reported";
  EXPECT_TRUE(refusal.IsIOError()) << refusal.ToString();
  fs.Free();
  // The loss is reported once (unless the refusal above already was the
  // report), then the ledger writes again.
  Status flushed = ledger->Flush();
  if (!flushed.ok()) {
    EXPECT_NE(flushed.message().find("were not written"), std::string::npos) << flushed.message();
    flushed = ledger->Flush();
  }
  ASSERT_TRUE(flushed.ok()) << flushed.ToString();
  auto seq = ledger->Append(Numbered(99999), Durability::kSync);
  ASSERT_TRUE(seq.ok()) << seq.status().ToString();
  EXPECT_TRUE(ledger->Verify({}).ok);
  EXPECT_EQ(ledger->GetHead()->seq, *seq);
}

}  // namespace
}  // namespace bastion
