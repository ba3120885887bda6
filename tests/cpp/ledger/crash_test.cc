// Kills a writer process (bastion_crash_writer) with SIGKILL mid-stream and
// checks what survives: the chain always, and every acknowledged record in
// sync and group mode.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstring>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "bastion/ledger.h"
#include "test_util.h"

extern char** environ;

#ifndef BASTION_CRASH_WRITER
#error "BASTION_CRASH_WRITER must name the bastion_crash_writer program"
#endif

namespace bastion {
namespace {

using testing::TempDir;

constexpr size_t kWantAcks = 2000;
constexpr auto kTimeCap = std::chrono::seconds(4);
constexpr int kThreads = 4;

struct CrashRun {
  std::vector<uint64_t> acked;  // in the order printed
  bool killed_by_us = false;
  int wait_status = 0;
  std::string stray_output;
};

// Parses complete "ack <seq>" lines out of `buffer`, leaving a partial line.
void ParseAcks(std::string* buffer, CrashRun* run) {
  size_t start = 0;
  for (size_t nl; (nl = buffer->find('\n', start)) != std::string::npos; start = nl + 1) {
    const std::string line = buffer->substr(start, nl - start);
    if (line.rfind("ack ", 0) == 0) {
      run->acked.push_back(std::stoull(line.substr(4)));
    } else {
      run->stray_output += line + "\n";
    }
  }
  buffer->erase(0, start);
}

// Starts the writer, reads acks until kWantAcks or kTimeCap, SIGKILLs it, and
// drains what it printed before it died.
CrashRun RunAndKill(const std::string& path, Durability mode) {
  CrashRun run;
  int fds[2];
  if (pipe(fds) != 0) {
    ADD_FAILURE() << "pipe: " << strerror(errno);
    return run;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  posix_spawn_file_actions_addclose(&actions, fds[1]);
  const std::string mode_name(DurabilityName(mode));
  const std::string threads = std::to_string(kThreads);
  const char* argv[] = {BASTION_CRASH_WRITER, path.c_str(), mode_name.c_str(), threads.c_str(),
                        nullptr};
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, BASTION_CRASH_WRITER, &actions, nullptr,
                             const_cast<char* const*>(argv), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    ADD_FAILURE() << "posix_spawn " << BASTION_CRASH_WRITER << ": " << strerror(rc);
    return run;
  }

  std::string buffer;
  char chunk[4096];
  const auto deadline = std::chrono::steady_clock::now() + kTimeCap;
  bool eof = false;
  while (run.acked.size() < kWantAcks && !eof) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fds[0], POLLIN, 0};
    const int n = poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    const ssize_t got = read(fds[0], chunk, sizeof(chunk));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      eof = true;
      break;
    }
    buffer.append(chunk, static_cast<size_t>(got));
    ParseAcks(&buffer, &run);
  }
  run.killed_by_us = !eof && kill(pid, SIGKILL) == 0;
  // Everything printed before the kill is an acknowledgement too.
  while (true) {
    const ssize_t got = read(fds[0], chunk, sizeof(chunk));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    buffer.append(chunk, static_cast<size_t>(got));
  }
  ParseAcks(&buffer, &run);
  close(fds[0]);
  while (waitpid(pid, &run.wait_status, 0) < 0 && errno == EINTR) {
  }
  return run;
}

std::string ModeName(const ::testing::TestParamInfo<Durability>& info) {
  std::string name(DurabilityName(info.param));
  name[0] = static_cast<char>(std::toupper(name[0]));
  return name;
}

class CrashTest : public ::testing::TestWithParam<Durability> {};

TEST_P(CrashTest, KilledWriterLeavesAVerifiableLedgerWithEveryAcknowledgedRecord) {
  const Durability mode = GetParam();
  // Acknowledged records must survive a process crash unless they were only
  // queued (async).
  const bool acks_are_durable = mode != Durability::kAsync;
  TempDir dir;
  const std::string path = dir.Sub("l");
  uint64_t previous_head = 0;
  for (int round = 1; round <= 2; ++round) {
    SCOPED_TRACE(::testing::Message() << "round " << round);
    CrashRun run = RunAndKill(path, mode);
    ASSERT_TRUE(run.killed_by_us) << "the writer died on its own; status " << run.wait_status;
    ASSERT_TRUE(WIFSIGNALED(run.wait_status) && WTERMSIG(run.wait_status) == SIGKILL)
        << "wait status " << run.wait_status;
    EXPECT_EQ(run.stray_output, "");
    ASSERT_FALSE(run.acked.empty()) << "the writer acknowledged nothing";
    std::set<uint64_t> unique(run.acked.begin(), run.acked.end());
    EXPECT_EQ(unique.size(), run.acked.size()) << "a sequence number was acknowledged twice";
    EXPECT_GT(*unique.begin(), previous_head) << "sequence numbers continue after the restart";
    const uint64_t max_acked = *unique.rbegin();

    // A writer must reopen the crashed ledger.
    auto opened = Ledger::Open(path);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    std::unique_ptr<Ledger> ledger = std::move(*opened);
    auto head = ledger->GetHead();
    ASSERT_TRUE(head.ok());
    VerifyReport report = ledger->Verify({});
    EXPECT_TRUE(report.ok) << report.message;
    EXPECT_EQ(report.records_checked, head->seq);
    EXPECT_GE(head->seq, previous_head) << "records from the previous round were lost";

    if (acks_are_durable) {
      EXPECT_GE(head->seq, max_acked)
          << "acknowledged record " << max_acked << " is missing; head is " << head->seq;
      size_t missing = 0;
      for (uint64_t seq : unique) {
        auto rec = ledger->Get(seq);
        if (!rec.ok()) {
          if (++missing <= 5) ADD_FAILURE() << "acknowledged record " << seq << ": "
                                            << rec.status().ToString();
          continue;
        }
        EXPECT_EQ(rec->seq, seq);
        EXPECT_EQ(rec->record.agent_role, "crash-test");
      }
      EXPECT_EQ(missing, 0u);
    }
    // Every record up to the head reads back, acknowledged or not.
    for (uint64_t seq = previous_head + 1; seq <= head->seq; ++seq) {
      auto rec = ledger->Get(seq);
      ASSERT_TRUE(rec.ok()) << "record " << seq << ": " << rec.status().ToString();
    }
    ASSERT_TRUE(ledger->Close().ok());
    previous_head = head->seq;
    RecordProperty(fmt::format("round{}_acks", round), static_cast<int>(run.acked.size()));
  }
  // And the ledger keeps working after two crashes.
  auto ledger = testing::OpenOrDie(path);
  ASSERT_NE(ledger, nullptr);
  auto seq = ledger->Append(testing::SampleRecord(1), Durability::kSync);
  ASSERT_TRUE(seq.ok()) << seq.status().ToString();
  EXPECT_EQ(*seq, previous_head + 1);
  EXPECT_TRUE(ledger->Verify({}).ok);
}

INSTANTIATE_TEST_SUITE_P(Modes, CrashTest,
                         ::testing::Values(Durability::kSync, Durability::kGroup,
                                           Durability::kAsync),
                         ModeName);

}  // namespace
}  // namespace bastion
