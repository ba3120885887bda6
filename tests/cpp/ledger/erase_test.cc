// Ledger::Erase: what an erased record and the erasure record hold, that the
// chain and the indexes stay consistent, that no file keeps the erased values,
// and that a process killed during an erasure leaves the old or the erased
// state (never a mix) and no trace once a writer has reopened it.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "bastion/ledger.h"
#include "ledger/erase.h"
#include "ledger/rocks_store.h"
#include "ledger/writer.h"
#include "test_util.h"

extern char** environ;

namespace bastion {
namespace {

namespace fs = std::filesystem;
using testing::OpenOrDie;
using testing::SampleRecord;
using testing::TempDir;

// Personal values of the data subject, and of another user who stays. Their
// 4-byte substrings occur nowhere else, so in a table block compressed with
// LZ4 the first occurrence of each stays a literal and a byte scan finds it.
constexpr std::string_view kGone = "qJ7vErAsEdMk";
constexpr std::string_view kKept = "wX3kKePtMkZn";
const std::string kGoneUser = std::string(kGone) + "-user";
const std::string kKeptUser = std::string(kKept) + "-user";

Record PersonRecord(const std::string& marker, const std::string& user, int i) {
  Record r = SampleRecord(i);
  r.user_id = user;
  r.input_summary = fmt::format("{} asked question {}", marker, i);
  r.output_summary = fmt::format("{} got answer {}", marker, i);
  r.approved_by = fmt::format("{}-approver", marker);
  r.attributes = {{fmt::format("{}-key", marker), fmt::format("{}-value-{}", marker, i)},
                  {"channel", "web"}};
  return r;
}

std::vector<Hash> ChainHashes(Ledger* ledger) {
  std::vector<Hash> out;
  auto head = ledger->GetHead();
  EXPECT_TRUE(head.ok());
  for (uint64_t seq = 1; head.ok() && seq <= head->seq; ++seq) {
    auto rec = ledger->Get(seq);
    EXPECT_TRUE(rec.ok()) << rec.status().ToString();
    out.push_back(rec.ok() ? rec->hash : Hash{});
  }
  return out;
}

std::vector<uint64_t> QuerySeqs(Ledger* ledger, Query q) {
  q.limit = 0;
  q.newest_first = false;
  auto page = ledger->Find(q);
  EXPECT_TRUE(page.ok()) << page.status().ToString();
  std::vector<uint64_t> out;
  if (!page.ok()) return out;
  for (const auto& e : page->encoded) out.push_back(DecodeStoredRecord(e)->seq);
  return out;
}

std::vector<uint64_t> UserSeqs(Ledger* ledger, const std::string& user) {
  Query q;
  q.user_id = user;
  return QuerySeqs(ledger, q);
}

void ExpectVerifies(Ledger* ledger) {
  VerifyOptions o;
  o.check_indexes = true;
  VerifyReport report = ledger->Verify(o);
  EXPECT_TRUE(report.ok) << report.message << " " << report.error.ToString();
}

// Every regular file under `dir` (quarantine folders included), with the
// files that hold `needle` byte for byte.
std::vector<std::string> FilesHolding(const std::string& dir, std::string_view needle) {
  std::vector<std::string> out;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    if (testing::ReadFile(entry.path().string()).find(needle) != std::string::npos) {
      out.push_back(entry.path().filename().string());
    }
  }
  return out;
}

EraseRequest ByUser(const std::string& user) {
  EraseRequest r;
  r.user_id = user;
  r.reason = "GDPR art. 17 request #12";
  r.by = "dpo@example.com";
  return r;
}

void ExpectErased(Ledger* ledger, uint64_t seq) {
  auto rec = ledger->Get(seq);
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  EXPECT_TRUE(rec->personal_data_erased) << "record " << seq;
  EXPECT_EQ(rec->record.user_id, "") << "record " << seq;
  EXPECT_EQ(rec->record.input_summary, "");
  EXPECT_EQ(rec->record.output_summary, "");
  EXPECT_EQ(rec->record.approved_by, "");
  EXPECT_TRUE(rec->record.attributes.empty());
}

TEST(Erase, ErasesAUsersRecordsKeepingChainHashesAndPublicFields) {
  TempDir dir;
  auto ledger = OpenOrDie(dir.Sub("l"));
  std::vector<uint64_t> gone;
  for (int i = 0; i < 40; ++i) {
    const bool g = i % 3 == 1;
    auto seq = ledger->Append(PersonRecord(g ? std::string(kGone) : std::string(kKept),
                                           g ? kGoneUser : kKeptUser, i));
    ASSERT_TRUE(seq.ok());
    if (g) gone.push_back(*seq);
  }
  const std::vector<Hash> before = ChainHashes(ledger.get());
  auto public_before = ledger->Get(gone[2]);
  ASSERT_TRUE(public_before.ok());

  auto report = ledger->Erase(ByUser(kGoneUser));
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->erased, gone.size());
  EXPECT_EQ(report->already_erased, 0u);
  EXPECT_EQ(report->seqs, gone);
  EXPECT_EQ(report->erasure_seq, 41u);

  for (uint64_t seq : gone) ExpectErased(ledger.get(), seq);
  auto after = ledger->Get(gone[2]);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->record.agent_id, public_before->record.agent_id);
  EXPECT_EQ(after->record.timestamp_ns, public_before->record.timestamp_ns);
  EXPECT_EQ(after->record.cost_nanousd, public_before->record.cost_nanousd);
  EXPECT_EQ(after->prev_hash, public_before->prev_hash);
  auto kept = ledger->Get(1);
  ASSERT_TRUE(kept.ok());
  EXPECT_FALSE(kept->personal_data_erased);
  EXPECT_EQ(kept->record.user_id, kKeptUser);

  std::vector<Hash> now = ChainHashes(ledger.get());
  now.pop_back();  // the erasure record
  EXPECT_EQ(now, before) << "erasure changed a chain hash";
  ExpectVerifies(ledger.get());
  EXPECT_TRUE(UserSeqs(ledger.get(), kGoneUser).empty());
  EXPECT_EQ(UserSeqs(ledger.get(), kKeptUser).size(), 40 - gone.size());
  // Public filters still find the erased records.
  Query by_agent;
  by_agent.agent_id = public_before->record.agent_id;
  const auto agent_seqs = QuerySeqs(ledger.get(), by_agent);
  EXPECT_NE(std::find(agent_seqs.begin(), agent_seqs.end(), gone[2]), agent_seqs.end());

  // The erasure record says who, why, how many and which, and nothing erased.
  auto erasure = ledger->Get(report->erasure_seq);
  ASSERT_TRUE(erasure.ok());
  const Record& e = erasure->record;
  EXPECT_EQ(e.action, "erasure");
  EXPECT_EQ(e.agent_id, "dpo@example.com");
  EXPECT_EQ(e.risk_level, "high");
  ASSERT_EQ(e.reasons.size(), 1u);
  EXPECT_EQ(e.reasons[0].policy_id, "bastion.erasure");
  const std::string& msg = e.reasons[0].message;
  EXPECT_NE(msg.find("dpo@example.com"), std::string::npos) << msg;
  EXPECT_NE(msg.find("GDPR art. 17 request #12"), std::string::npos) << msg;
  EXPECT_NE(msg.find(fmt::format("{} records", gone.size())), std::string::npos) << msg;
  EXPECT_NE(msg.find(fmt::format("{}, {}", gone[0], gone[1])), std::string::npos) << msg;
  std::map<std::string, std::string> attrs(e.attributes.begin(), e.attributes.end());
  EXPECT_EQ(attrs["erased_records"], std::to_string(gone.size()));
  EXPECT_EQ(attrs["reason"], "GDPR art. 17 request #12");
  EXPECT_TRUE(attrs["seqs"].starts_with(fmt::format("{}, {}, ", gone[0], gone[1])))
      << attrs["seqs"];
  auto raw = ledger->Find(Query{.action = "erasure"});
  ASSERT_TRUE(raw.ok());
  ASSERT_EQ(raw->encoded.size(), 1u);
  EXPECT_EQ(raw->encoded[0].find(kGone), std::string::npos) << "the erasure record names the user";
}

TEST(Erase, BySeqsCountsAlreadyErasedAndCompactsRanges) {
  TempDir dir;
  auto ledger = OpenOrDie(dir.Sub("l"));
  for (int i = 0; i < 12; ++i) ASSERT_TRUE(ledger->Append(SampleRecord(i)).ok());
  EraseRequest r;
  r.seqs = {5, 3, 4, 9, 4};
  r.reason = "wrongly recorded";
  r.by = "ops";
  auto first = ledger->Erase(r);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->erased, 4u);
  EXPECT_EQ(first->seqs, (std::vector<uint64_t>{3, 4, 5, 9}));
  auto erasure = ledger->Get(first->erasure_seq);
  ASSERT_TRUE(erasure.ok());
  EXPECT_NE(erasure->record.reasons[0].message.find("3-5, 9"), std::string::npos)
      << erasure->record.reasons[0].message;

  r.seqs = {9, 10};
  auto second = ledger->Erase(r);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(second->erased, 1u);
  EXPECT_EQ(second->already_erased, 1u);
  EXPECT_EQ(second->seqs, std::vector<uint64_t>{10});
  auto nine = ledger->Get(9);
  ASSERT_TRUE(nine.ok());
  EXPECT_TRUE(nine->personal_data_erased);
  for (uint64_t seq : {1, 2, 6, 7, 8, 11, 12}) {
    EXPECT_FALSE(ledger->Get(seq)->personal_data_erased) << seq;
  }
  // Records of the same users that were not listed stay findable.
  EXPECT_TRUE(UserSeqs(ledger.get(), "user-2").empty());  // 3 and 10, both erased
  EXPECT_EQ(UserSeqs(ledger.get(), "user-3"), std::vector<uint64_t>{11});  // 4 is erased
  ExpectVerifies(ledger.get());
}

TEST(Erase, RejectsBadRequestsWithoutWriting) {
  TempDir dir;
  auto ledger = OpenOrDie(dir.Sub("l"));
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(ledger->Append(SampleRecord(i)).ok());
  struct Case {
    const char* name;
    EraseRequest request;
    const char* mentions;
  } cases[] = {
      {"nothing named", {std::nullopt, {}, "why", "who"}, "no records"},
      {"empty user", {"", {}, "why", "who"}, "'user_id'"},
      {"no reason", {"user-1", {}, "", "who"}, "'reason'"},
      {"no by", {"user-1", {}, "why", ""}, "'by'"},
      {"long by", {"user-1", {}, "why", std::string(2000, 'x')}, "'by'"},
      {"missing seq", {std::nullopt, {2, 77}, "why", "who"}, "no record 77"},
      {"seq zero", {std::nullopt, {0}, "why", "who"}, "no record 0"},
      {"reason names the user", {"user-1", {}, "request of user-1", "who"}, "user id"},
      {"by names a listed record's user", {std::nullopt, {3}, "why", "user-2"}, "user id"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto r = ledger->Erase(c.request);
    ASSERT_FALSE(r.ok());
    EXPECT_TRUE(r.status().IsInvalidArgument()) << r.status().ToString();
    testing::ExpectMentions(r.status(), c.mentions);
  }
  EXPECT_EQ(ledger->GetHead()->seq, 5u);
  for (uint64_t seq = 1; seq <= 5; ++seq) EXPECT_FALSE(ledger->Get(seq)->personal_data_erased);
  ASSERT_TRUE(ledger->Close().ok());

  auto reader = Ledger::OpenReader(dir.Sub("l"));
  ASSERT_TRUE(reader.ok());
  auto r = (*reader)->Erase(ByUser("user-1"));
  EXPECT_TRUE(r.status().IsFailedPrecondition()) << r.status().ToString();
  auto closed = ledger->Erase(ByUser("user-1"));
  EXPECT_TRUE(closed.status().IsFailedPrecondition()) << closed.status().ToString();
}

TEST(Erase, AUserWithoutRecordsStillGetsAnErasureRecord) {
  TempDir dir;
  auto ledger = OpenOrDie(dir.Sub("l"));
  ASSERT_TRUE(ledger->Append(SampleRecord(1)).ok());
  auto r = ledger->Erase(ByUser("nobody"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->erased, 0u);
  EXPECT_EQ(r->erasure_seq, 2u);
  EXPECT_NE(ledger->Get(2)->record.reasons[0].message.find("no record"), std::string::npos);
  ExpectVerifies(ledger.get());
}

TEST(Erase, FindsRecordsWhosePostingsWereStillInMemory) {
  TempDir dir;
  LedgerOptions o;
  o.index_batch_records = 100000;
  o.index_interval = std::chrono::hours(1);
  auto ledger = OpenOrDie(dir.Sub("l"), o);
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(ledger->Append(PersonRecord(std::string(kGone), i % 2 ? kGoneUser : "x", i)).ok());
  }
  // Durable (the group fsync is due after 10 ms), the postings still in memory.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto r = ledger->Erase(ByUser(kGoneUser));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->erased, 15u);
  ExpectVerifies(ledger.get());
  ASSERT_TRUE(ledger->Close().ok());
  auto again = OpenOrDie(dir.Sub("l"), o);
  ExpectVerifies(again.get());
  EXPECT_TRUE(UserSeqs(again.get(), kGoneUser).empty());
  EXPECT_EQ(UserSeqs(again.get(), "x").size(), 15u);
}

// An erasure rewrites stored posting blocks only: it relies on Flush storing
// the postings of every record written, even when their deadline is far.
TEST(Flush, StoresThePostingsOfEveryRecordWritten) {
  TempDir dir;
  LedgerOptions o;
  o.index_batch_records = 100000;
  o.index_interval = std::chrono::hours(1);
  auto ledger = OpenOrDie(dir.Sub("l"), o);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(ledger->Append(SampleRecord(i)).ok());
  auto mark_now = [&]() -> uint64_t {
    auto store = RocksStore::OpenSecondary(dir.Sub("l"), ReaderOptions{});
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    auto mark = ReadIndexMark(store->get(), nullptr);
    EXPECT_TRUE(mark.ok());
    return mark.ok() ? mark->value_or(0) : 0;
  };
  // Long enough for the group fsync: the records are durable, Flush has
  // nothing left to fsync.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(mark_now(), 0u) << "the postings were written before their deadline";
  ASSERT_TRUE(ledger->Flush().ok());
  EXPECT_EQ(mark_now(), 10u);
}

TEST(Erase, ConcurrentAppendsAreNeitherLostNorCorrupted) {
  TempDir dir;
  LedgerOptions o;
  o.index_batch_records = 64;  // postings written often, racing the erasure
  auto ledger = OpenOrDie(dir.Sub("l"), o);
  std::vector<uint64_t> before;
  for (int i = 0; i < 300; ++i) {
    auto seq = ledger->Append(PersonRecord(std::string(kGone), i % 3 ? "other" : kGoneUser, i));
    ASSERT_TRUE(seq.ok());
    if (i % 3 == 0) before.push_back(*seq);
  }
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<std::pair<uint64_t, std::string>> acked;  // seq, span_id
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; !stop.load() && i < 20000; ++i) {
        Record r = PersonRecord(std::string(kKept), i % 2 ? kGoneUser : "other", i);
        r.span_id = fmt::format("t{}-{}", t, i);
        auto seq = ledger->Append(r, t == 0 ? Durability::kSync : Durability::kGroup);
        ASSERT_TRUE(seq.ok()) << seq.status().ToString();
        std::lock_guard<std::mutex> lock(mu);
        acked.emplace_back(*seq, r.span_id);
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  auto report = ledger->Erase(ByUser(kGoneUser));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  stop = true;
  for (auto& t : threads) t.join();
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  for (uint64_t seq : before) {
    EXPECT_TRUE(std::binary_search(report->seqs.begin(), report->seqs.end(), seq)) << seq;
    ExpectErased(ledger.get(), seq);
  }
  ASSERT_TRUE(ledger->Flush().ok());
  ExpectVerifies(ledger.get());
  std::set<uint64_t> erased(report->seqs.begin(), report->seqs.end());
  for (const auto& [seq, span] : acked) {
    auto rec = ledger->Get(seq);
    ASSERT_TRUE(rec.ok()) << seq;
    EXPECT_EQ(rec->record.span_id, span) << seq;
    EXPECT_EQ(rec->personal_data_erased, erased.count(seq) == 1) << seq;
  }
  // Whatever a query by the user finds is the user's, erased or not.
  for (uint64_t seq : UserSeqs(ledger.get(), kGoneUser)) {
    EXPECT_EQ(ledger->Get(seq)->record.user_id, kGoneUser);
  }
  ASSERT_TRUE(ledger->Close().ok());
  auto again = OpenOrDie(dir.Sub("l"));
  ExpectVerifies(again.get());
}

TEST(EraseNoTrace, NoFileOfTheDirectoryHoldsAnErasedValue) {
  TempDir dir;
  const std::string path = dir.Sub("l");
  LedgerOptions o;
  o.write_buffer_bytes = 64 << 10;  // many table files, compacted into lower levels
  o.max_batch_records = 64;
  {
    auto ledger = OpenOrDie(path, o);
    int i = 0;
    for (int round = 0; round < 12; ++round) {
      std::vector<Record> batch;
      for (int k = 0; k < 200; ++k, ++i) {
        const bool g = i % 5 == 0;
        batch.push_back(PersonRecord(g ? std::string(kGone) : std::string(kKept),
                                     g ? kGoneUser : kKeptUser, i));
      }
      ASSERT_TRUE(ledger->AppendBatch(std::move(batch), Durability::kGroup).ok());
    }
    ASSERT_TRUE(ledger->Close().ok());
  }
  auto ledger = OpenOrDie(path, o);
  // And some only in the memtable and the current log.
  for (int k = 0; k < 20; ++k) {
    ASSERT_TRUE(ledger->Append(PersonRecord(std::string(kGone), kGoneUser, 5000 + k)).ok());
  }
  size_t tables = 0;
  for (const auto& e : fs::directory_iterator(path)) tables += e.path().extension() == ".sst";
  EXPECT_GE(tables, 3u);
  RecordProperty("tables_before", static_cast<int>(tables));
  ASSERT_FALSE(FilesHolding(path, kGone).empty()) << "the scan finds nothing to begin with";

  auto report = ledger->Erase(ByUser(kGoneUser));
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->erased, 2400u / 5 + 20);
  EXPECT_EQ(FilesHolding(path, kGone), std::vector<std::string>{})
      << "erased values are still on disk after Erase returned";
  ASSERT_TRUE(ledger->Close().ok());
  EXPECT_EQ(FilesHolding(path, kGone), std::vector<std::string>{});
  EXPECT_FALSE(FilesHolding(path, kKept).empty()) << "the scan does not see stored values";
  auto again = OpenOrDie(path, o);
  ExpectVerifies(again.get());
  EXPECT_EQ(again->Get(1)->record.user_id, "");
  EXPECT_EQ(again->Get(2)->record.user_id, kKeptUser);
}

TEST(EraseNoTrace, ReportsQuarantineFoldersItLeavesAlone) {
  TempDir dir;
  const std::string path = dir.Sub("l");
  auto ledger = OpenOrDie(path);
  ASSERT_TRUE(ledger->Append(PersonRecord(std::string(kGone), kGoneUser, 1)).ok());
  fs::create_directories(fs::path(path) / "quarantine" / "20261207T131500Z");
  auto report = ledger->Erase(ByUser(kGoneUser));
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->quarantine_folders,
            std::vector<std::string>{"quarantine/20261207T131500Z"});
}

// --- crashes ---------------------------------------------------------------

// Run as a child process (the test binary itself, with these variables set):
// opens the ledger, appends records of the data subject, and erases them,
// killing itself with SIGKILL at the stage BASTION_ERASE_KILL_AT names (or
// being killed by the parent at any moment after it printed "erasing").
const char* kill_at = nullptr;

TEST(EraseCrashChild, Run) {
  const char* path = std::getenv("BASTION_ERASE_CHILD");
  if (path == nullptr) GTEST_SKIP() << "runs only as the crash tests' child";
  kill_at = std::getenv("BASTION_ERASE_KILL_AT");
  SetEraseStageHookForTesting([](std::string_view stage) {
    if (kill_at != nullptr && stage == kill_at) raise(SIGKILL);
  });
  LedgerOptions o;
  o.write_buffer_bytes = 64 << 10;
  auto ledger = OpenOrDie(path, o);
  ASSERT_NE(ledger, nullptr);
  for (int k = 0; k < 30; ++k) {
    ASSERT_TRUE(ledger->Append(PersonRecord(std::string(kGone), kGoneUser, 9000 + k),
                               Durability::kSync)
                    .ok());
  }
  std::printf("erasing\n");
  std::fflush(stdout);
  auto r = ledger->Erase(ByUser(kGoneUser));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_TRUE(ledger->Close().ok());
  std::printf("erased\n");
  std::fflush(stdout);
}

struct ChildRun {
  bool saw_erasing = false;
  int wait_status = 0;
};

// Starts the child; with `delay`, SIGKILLs it that long after it said
// "erasing".
ChildRun RunChild(const std::string& path, const std::string& stage,
                  std::optional<std::chrono::microseconds> delay) {
  ChildRun run;
  int fds[2];
  if (pipe(fds) != 0) {
    ADD_FAILURE() << "pipe";
    return run;
  }
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
  env_strings.push_back("BASTION_ERASE_CHILD=" + path);
  if (!stage.empty()) env_strings.push_back("BASTION_ERASE_KILL_AT=" + stage);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  const std::string self = fs::read_symlink("/proc/self/exe").string();
  const char* argv[] = {self.c_str(), "--gtest_filter=EraseCrashChild.Run", nullptr};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  posix_spawn_file_actions_addclose(&actions, fds[1]);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, self.c_str(), &actions, nullptr,
                             const_cast<char* const*>(argv), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    ADD_FAILURE() << "posix_spawn " << self;
    return run;
  }
  std::string out;
  char buf[4096];
  while (true) {
    const ssize_t got = read(fds[0], buf, sizeof(buf));
    if (got <= 0) break;
    out.append(buf, static_cast<size_t>(got));
    if (!run.saw_erasing && out.find("erasing\n") != std::string::npos) {
      run.saw_erasing = true;
      if (delay) {
        std::this_thread::sleep_for(*delay);
        kill(pid, SIGKILL);
      }
    }
  }
  close(fds[0]);
  while (waitpid(pid, &run.wait_status, 0) < 0 && errno == EINTR) {
  }
  return run;
}

// The ledger after a killed erasure: either as before it (its records of the
// subject intact, no erasure record after them) or fully erased (the erasure
// record last, no record of the subject intact); every erased record has an
// erasure record after it, and verify passes. Once a writer has reopened and
// closed it, no file holds an erased value unless intact records hold it.
void CheckAfterCrash(const std::string& path, const std::string& what) {
  SCOPED_TRACE(what);
  LedgerOptions o;
  o.write_buffer_bytes = 64 << 10;
  auto ledger = OpenOrDie(path, o);
  ASSERT_NE(ledger, nullptr);
  ExpectVerifies(ledger.get());
  const uint64_t head = ledger->GetHead()->seq;
  uint64_t last_erased = 0, last_erasure = 0;
  size_t intact = 0;
  for (uint64_t seq = 1; seq <= head; ++seq) {
    auto rec = ledger->Get(seq);
    ASSERT_TRUE(rec.ok());
    if (rec->record.action == "erasure") {
      last_erasure = seq;
    } else if (rec->personal_data_erased) {
      last_erased = seq;
    } else if (rec->record.user_id == kGoneUser) {
      ++intact;
    }
  }
  EXPECT_TRUE(last_erased == 0 || last_erasure > last_erased)
      << "record " << last_erased << " erased without an erasure record after it";
  const bool erased_state = last_erasure == head;
  if (erased_state) {
    EXPECT_EQ(intact, 0u) << "an erasure record, and records of the subject left intact";
    EXPECT_TRUE(UserSeqs(ledger.get(), kGoneUser).empty());
  } else {
    EXPECT_GT(intact, 0u);
  }
  ASSERT_TRUE(ledger->Close().ok());
  if (erased_state) {
    EXPECT_EQ(FilesHolding(path, kGone), std::vector<std::string>{});
  } else {
    EXPECT_FALSE(FilesHolding(path, kGone).empty());
  }
  EXPECT_FALSE(FilesHolding(path, kKept).empty());
}

void SeedLedger(const std::string& path) {
  LedgerOptions o;
  o.write_buffer_bytes = 64 << 10;
  auto ledger = OpenOrDie(path, o);
  std::vector<Record> batch;
  for (int i = 0; i < 600; ++i) {
    const bool g = i % 4 == 0;
    batch.push_back(PersonRecord(g ? std::string(kGone) : std::string(kKept),
                                 g ? kGoneUser : kKeptUser, i));
  }
  ASSERT_TRUE(ledger->AppendBatch(std::move(batch), Durability::kSync).ok());
  ASSERT_TRUE(ledger->Close().ok());
}

class EraseCrash : public ::testing::TestWithParam<const char*> {};

TEST_P(EraseCrash, KilledAtAStageLeavesTheOldOrTheErasedState) {
  TempDir dir;
  const std::string path = dir.Sub("l");
  SeedLedger(path);
  ChildRun run = RunChild(path, GetParam(), std::nullopt);
  ASSERT_TRUE(run.saw_erasing);
  ASSERT_TRUE(WIFSIGNALED(run.wait_status) && WTERMSIG(run.wait_status) == SIGKILL)
      << "the child did not die at stage " << GetParam() << "; status " << run.wait_status;
  CheckAfterCrash(path, GetParam());
  // "prepared" is before the write: nothing happened.
  auto ledger = OpenOrDie(path);
  const bool has_erasure = !QuerySeqs(ledger.get(), Query{.action = "erasure"}).empty();
  EXPECT_EQ(has_erasure, std::string_view(GetParam()) != "prepared");
}

INSTANTIATE_TEST_SUITE_P(Stages, EraseCrash,
                         ::testing::Values("prepared", "written", "flushed", "compacted",
                                           "scrubbed"));

TEST(EraseCrash, KilledAtVariedMomentsLeavesTheOldOrTheErasedState) {
  TempDir dir;
  const std::string path = dir.Sub("l");
  SeedLedger(path);
  int killed = 0, finished = 0;
  for (int us : {0, 300, 1000, 3000, 8000, 20000}) {
    ChildRun run = RunChild(path, "", std::chrono::microseconds(us));
    ASSERT_TRUE(run.saw_erasing);
    if (WIFSIGNALED(run.wait_status)) {
      ++killed;
    } else {
      ASSERT_TRUE(WIFEXITED(run.wait_status) && WEXITSTATUS(run.wait_status) == 0)
          << "status " << run.wait_status;
      ++finished;
    }
    CheckAfterCrash(path, fmt::format("killed {} us after the erasure began", us));
  }
  RecordProperty("killed", killed);
  RecordProperty("finished", finished);
}

}  // namespace
}  // namespace bastion
