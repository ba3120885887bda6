// The writer's fsyncs: a sync append returns only after an fsync that started
// once its record was written, concurrent sync appends share fsyncs, and a
// group append is written while an fsync is under way, never waiting for it.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "bastion/ledger.h"
#include "ledger/index_keys.h"
#include "ledger/record_codec.h"
#include "ledger/rocks_store.h"
#include "ledger/writer.h"
#include "test_util.h"

namespace bastion {
namespace {

using testing::SampleRecord;
using testing::TempDir;

PendingRecord Pending(int i) {
  Record r = SampleRecord(i);
  r.timestamp_ns = 1'700'000'000'000'000'000 + i;
  const uint8_t salt[codec::kSaltBytes] = {};
  PendingRecord p;
  codec::EncodeValue(r, salt, &p.value, &p.personal_digest);
  p.index = index::EntriesFor(r);
  p.timestamp_ns = r.timestamp_ns;
  p.awaited = true;
  return p;
}

// Submits one record its caller waits for; its sequence number and epoch.
Writer::Ticket SubmitOne(Writer* writer, int i) {
  std::vector<PendingRecord> records;
  records.push_back(Pending(i));
  auto ticket = writer->Submit(&records, Writer::Handoff::kCaller);
  EXPECT_TRUE(ticket.ok()) << ticket.status().ToString();
  return ticket.ok() ? *ticket : Writer::Ticket{};
}

// Raises `max` to `v`.
void RaiseTo(std::atomic<uint64_t>* max, uint64_t v) {
  uint64_t cur = max->load();
  while (cur < v && !max->compare_exchange_weak(cur, v)) {
  }
}

// A gate an fsync hook blocks on until the test opens it.
class Gate {
 public:
  void Enter() {
    std::unique_lock<std::mutex> lock(mu_);
    entered_ = true;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
  }
  bool AwaitEntered(std::chrono::seconds limit) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, limit, [&] { return entered_; });
  }
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool entered_ = false;
  bool open_ = false;
};

class WriterSync : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = RocksStore::OpenPrimary(dir_.Sub("l"), options_);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
  }
  void TearDown() override {
    if (writer_) EXPECT_TRUE(writer_->Stop().ok());
    writer_.reset();
    store_.reset();
  }
  // Starts the writer with `hooks` (set before any record is submitted).
  void Start(Writer::SyncHooks hooks) {
    writer_ = std::make_unique<Writer>(store_.get(), options_, Head{}, 0);
    writer_->SetSyncHooksForTesting(std::move(hooks));
  }

  TempDir dir_;
  LedgerOptions options_;
  std::unique_ptr<RocksStore> store_;
  // What the hooks see; members, so they outlive the writer.
  std::atomic<uint64_t> synced_{0};  // the last record a finished fsync covers
  std::atomic<int> fsyncs_{0};       // finished fsyncs
  Gate gate_;
  std::atomic<bool> hooks_first_{false};
  std::atomic<uint64_t> blocked_upto_{0};
  std::unique_ptr<Writer> writer_;
};

TEST_F(WriterSync, ConcurrentSyncAppendsReturnOnlyAfterAnFsyncThatCoversThem) {
  Writer::SyncHooks hooks;
  // A slow fsync, so that appends arrive while one is under way.
  hooks.before = [](uint64_t) { std::this_thread::sleep_for(std::chrono::milliseconds(1)); };
  hooks.after = [this](uint64_t upto) {
    fsyncs_.fetch_add(1);
    RaiseTo(&synced_, upto);
  };
  Start(std::move(hooks));
  constexpr int kThreads = 8, kEach = 40;
  std::atomic<int> uncovered{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        const Writer::Ticket ticket = SubmitOne(writer_.get(), t * kEach + i);
        if (!writer_->Wait(ticket.first, ticket.epoch, /*durable=*/true).ok()) {
          failed.fetch_add(1);
        } else if (synced_.load() < ticket.first) {
          uncovered.fetch_add(1);  // returned before an fsync covered it
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(uncovered.load(), 0);
  EXPECT_EQ(writer_->head().seq, static_cast<uint64_t>(kThreads * kEach));
  // Appends that arrived during an fsync shared the next one.
  EXPECT_LT(fsyncs_.load(), kThreads * kEach);
}

TEST_F(WriterSync, AGroupAppendIsWrittenWhileAnFsyncIsUnderWay) {
  hooks_first_ = true;
  Writer::SyncHooks hooks;
  hooks.before = [this](uint64_t upto) {
    if (hooks_first_.exchange(false)) {
      blocked_upto_ = upto;
      gate_.Enter();  // holds the first fsync until the test opens the gate
    }
  };
  hooks.after = [this](uint64_t upto) { RaiseTo(&synced_, upto); };
  Start(std::move(hooks));

  // A sync append whose fsync blocks.
  std::atomic<bool> sync_returned{false};
  const Writer::Ticket s1 = SubmitOne(writer_.get(), 1);
  auto sync1 = std::async(std::launch::async, [&] {
    Status s = writer_->Wait(s1.first, s1.epoch, /*durable=*/true);
    sync_returned = true;
    return s;
  });
  if (!gate_.AwaitEntered(std::chrono::seconds(30))) {
    gate_.Open();
    FAIL() << "no fsync started";
  }
  EXPECT_EQ(blocked_upto_.load(), s1.first);

  // A group append completes meanwhile; a sync append queued meanwhile waits
  // for a later fsync.
  const Writer::Ticket g = SubmitOne(writer_.get(), 2);
  auto group = std::async(std::launch::async,
                          [&] { return writer_->Wait(g.first, g.epoch, /*durable=*/false); });
  const Writer::Ticket s2 = SubmitOne(writer_.get(), 3);
  auto sync2 = std::async(std::launch::async, [&] {
    Status s = writer_->Wait(s2.first, s2.epoch, /*durable=*/true);
    return s.ok() && synced_.load() >= s2.first;  // covered when it returns
  });
  const bool group_done =
      group.wait_for(std::chrono::seconds(30)) == std::future_status::ready;
  EXPECT_TRUE(group_done) << "the group append waited for the fsync under way";
  EXPECT_FALSE(sync_returned.load()) << "a sync append returned before its fsync ended";
  EXPECT_EQ(synced_.load(), 0u);

  gate_.Open();
  EXPECT_TRUE(sync1.get().ok());
  EXPECT_TRUE(group.get().ok());
  EXPECT_TRUE(sync2.get()) << "the second sync append returned before an fsync covered it";
  EXPECT_GE(synced_.load(), s2.first);
  EXPECT_EQ(writer_->head().seq, 3u);
}

TEST_F(WriterSync, FlushFsyncsGroupAppends) {
  Writer::SyncHooks hooks;
  hooks.after = [this](uint64_t upto) { RaiseTo(&synced_, upto); };
  options_.group_sync_interval = std::chrono::hours(1);  // no fsync by deadline
  Start(std::move(hooks));
  for (int i = 0; i < 5; ++i) {
    const Writer::Ticket t = SubmitOne(writer_.get(), i);
    ASSERT_TRUE(writer_->Wait(t.first, t.epoch, /*durable=*/false).ok());
  }
  EXPECT_EQ(synced_.load(), 0u) << "a group append was fsynced before its deadline";
  ASSERT_TRUE(writer_->Flush().ok());
  EXPECT_EQ(synced_.load(), 5u);
}

}  // namespace
}  // namespace bastion
