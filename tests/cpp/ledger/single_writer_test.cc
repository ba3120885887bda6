// One writer per ledger directory, whatever path leads to it: aliases of the
// path in the same process, and a second process, get Busy; readers do not.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "bastion/guard.h"
#include "bastion/ledger.h"
#include "test_util.h"

extern char** environ;

namespace bastion {
namespace {

namespace fs = std::filesystem;
using testing::OpenOrDie;
using testing::SampleRecord;
using testing::TempDir;

#ifndef BASTION_CRASH_WRITER
#error "BASTION_CRASH_WRITER must name the bastion_crash_writer program"
#endif

// Every other spelling of `dir` (which is "<parent>/<name>").
std::vector<std::string> Aliases(const TempDir& tmp, const std::string& name) {
  const std::string link = tmp.Sub("link-to-" + name);
  fs::create_directory_symlink(tmp.Sub(name), link);
  return {link, tmp.path() + "/./" + name, tmp.path() + "//" + name, tmp.Sub(name) + "/",
          tmp.Sub("sub/../" + name)};
}

void ExpectInUse(const Status& s, const std::string& alias, const std::string& canonical) {
  EXPECT_TRUE(s.IsBusy()) << alias << ": " << s.ToString();
  EXPECT_NE(s.message().find("in use"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find(canonical), std::string::npos)
      << "'" << s.message() << "' does not name the directory " << canonical;
}

TEST(SingleWriter, EveryAliasOfAnOpenLedgerIsBusy) {
  TempDir tmp;
  fs::create_directory(tmp.Sub("sub"));
  auto ledger = OpenOrDie(tmp.Sub("l"));
  ASSERT_NE(ledger, nullptr);
  ASSERT_TRUE(ledger->Append(SampleRecord(1)).ok());
  const std::string canonical = fs::canonical(tmp.Sub("l")).string();
  for (const std::string& alias : Aliases(tmp, "l")) {
    auto second = Ledger::Open(alias);
    ExpectInUse(second.status(), alias, canonical);
  }
  // The same spelling too (RocksDB alone catches this one).
  ExpectInUse(Ledger::Open(tmp.Sub("l")).status(), tmp.Sub("l"), canonical);
  // The first writer is unharmed.
  ASSERT_TRUE(ledger->Append(SampleRecord(2)).ok());
  EXPECT_EQ(ledger->GetHead()->seq, 2u);
}

TEST(SingleWriter, ClosingReleasesTheDirectory) {
  TempDir tmp;
  fs::create_directory(tmp.Sub("sub"));
  auto ledger = OpenOrDie(tmp.Sub("l"));
  ASSERT_TRUE(ledger->Append(SampleRecord(1)).ok());
  ASSERT_TRUE(ledger->Close().ok());
  for (const std::string& alias : Aliases(tmp, "l")) {
    auto again = Ledger::Open(alias);
    ASSERT_TRUE(again.ok()) << alias << ": " << again.status().ToString();
    ASSERT_TRUE((*again)->Append(SampleRecord(2)).ok());
    ASSERT_TRUE((*again)->Close().ok());
  }
  auto last = OpenOrDie(tmp.Sub("l"));
  EXPECT_EQ(last->GetHead()->seq, 6u);
  EXPECT_TRUE(last->Verify({}).ok);
}

TEST(SingleWriter, ADestroyedLedgerReleasesTheDirectory) {
  TempDir tmp;
  { auto ledger = OpenOrDie(tmp.Sub("l")); }
  EXPECT_NE(OpenOrDie(tmp.Sub("l") + "/"), nullptr);
}

TEST(SingleWriter, ReadersOpenBesideTheWriterByAnySpelling) {
  TempDir tmp;
  fs::create_directory(tmp.Sub("sub"));
  auto ledger = OpenOrDie(tmp.Sub("l"));
  ASSERT_TRUE(ledger->Append(SampleRecord(1)).ok());
  ASSERT_TRUE(ledger->Flush().ok());
  for (const std::string& alias : Aliases(tmp, "l")) {
    auto reader = Ledger::OpenReader(alias);
    ASSERT_TRUE(reader.ok()) << alias << ": " << reader.status().ToString();
    EXPECT_EQ((*reader)->GetHead()->seq, 1u);
  }
  ASSERT_TRUE(ledger->Append(SampleRecord(2)).ok());
}

TEST(SingleWriter, ASecondProcessIsBusy) {
  TempDir tmp;
  auto ledger = OpenOrDie(tmp.Sub("l"));
  ASSERT_TRUE(ledger->Append(SampleRecord(1)).ok());
  const std::string alias = tmp.path() + "/./l/";
  const std::string err = tmp.Sub("stderr");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const char* argv[] = {BASTION_CRASH_WRITER, alias.c_str(), "sync", "1", nullptr};
  pid_t pid = -1;
  ASSERT_EQ(posix_spawn(&pid, BASTION_CRASH_WRITER, &actions, nullptr,
                        const_cast<char* const*>(argv), environ),
            0);
  posix_spawn_file_actions_destroy(&actions);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "the second writer died instead of failing";
  EXPECT_EQ(WEXITSTATUS(status), 1) << "the second writer opened the ledger";
  std::ifstream in(err);
  const std::string said((std::istreambuf_iterator<char>(in)), {});
  EXPECT_NE(said.find("Busy"), std::string::npos) << said;
  EXPECT_NE(said.find("in use"), std::string::npos) << said;
  // Nothing was appended behind the writer's back.
  ASSERT_TRUE(ledger->Append(SampleRecord(2)).ok());
  EXPECT_EQ(ledger->GetHead()->seq, 2u);
  EXPECT_TRUE(ledger->Verify({}).ok);
}

TEST(SingleWriter, AGuardsLedgerCannotBeOpenedAgain) {
  TempDir tmp;
  GuardOptions o;
  o.ledger_path = tmp.Sub("guard") + "/ledger";
  fs::create_directory(tmp.Sub("guard"));
  auto guard = Guard::Open(o);
  ASSERT_TRUE(guard.ok()) << guard.status().ToString();
  const std::string canonical = fs::canonical(o.ledger_path).string();
  for (const std::string& alias :
       {o.ledger_path, tmp.Sub("guard") + "/./ledger/", tmp.path() + "//guard//ledger"}) {
    ExpectInUse(Ledger::Open(alias).status(), alias, canonical);
  }
  // A second guard on the same directory is refused the same way.
  GuardOptions again = o;
  again.ledger_path = tmp.Sub("guard") + "/ledger/";
  ExpectInUse(Guard::Open(again).status(), again.ledger_path, canonical);
  EXPECT_TRUE(Ledger::OpenReader(o.ledger_path).ok());
}

TEST(SingleWriter, TheLockFileIsDocumentedByName) {
  TempDir tmp;
  auto ledger = OpenOrDie(tmp.Sub("l"));
  EXPECT_TRUE(fs::exists(tmp.Sub("l") + "/bastion.lock"));
  // RocksDB's info log is not written into the ledger's directory.
  EXPECT_FALSE(fs::exists(tmp.Sub("l") + "/LOG"));
}

TEST(SingleWriter, ANewLedgerMayBeNamedWithATrailingSlash) {
  TempDir tmp;
  auto ledger = OpenOrDie(tmp.Sub("new") + "/");
  ASSERT_NE(ledger, nullptr);
  ASSERT_TRUE(ledger->Append(SampleRecord(1)).ok());
  EXPECT_TRUE(Ledger::Open(tmp.Sub("new")).status().IsBusy());
}

TEST(SingleWriter, OpenWithoutCreateDoesNotCreateTheDirectory) {
  TempDir tmp;
  LedgerOptions o;
  o.create_if_missing = false;
  EXPECT_TRUE(Ledger::Open(tmp.Sub("absent"), o).status().IsNotFound());
  EXPECT_FALSE(fs::exists(tmp.Sub("absent")));
}

TEST(SingleWriter, ANulInThePathIsRejected) {
  TempDir tmp;
  const std::string path = tmp.Sub("l") + std::string("\0x", 2);
  auto opened = Ledger::Open(path);
  ASSERT_TRUE(opened.status().IsInvalidArgument()) << opened.status().ToString();
  EXPECT_NE(opened.status().message().find("ledger path"), std::string::npos);
  EXPECT_NE(opened.status().message().find("NUL"), std::string::npos);
  EXPECT_FALSE(fs::exists(tmp.Sub("l")));
  EXPECT_TRUE(Ledger::OpenReader(path).status().IsInvalidArgument());
  ReaderOptions ro;
  ro.secondary_path = tmp.Sub("s") + std::string("\0", 1);
  EXPECT_TRUE(Ledger::OpenReader(tmp.Sub("l"), ro).status().IsInvalidArgument());
}

}  // namespace
}  // namespace bastion
