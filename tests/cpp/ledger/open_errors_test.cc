// Every way Ledger::Open / OpenReader can be handed the wrong directory.
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include "bastion/ledger.h"
#include "ledger/raw_store.h"
#include "ledger/writer.h"
#include "test_util.h"

namespace bastion {
namespace {

namespace fs = std::filesystem;
using testing::OpenOrDie;
using testing::RawDb;
using testing::SampleRecord;
using testing::ExpectMentions;
using testing::ReadFile;
using testing::TempDir;
using testing::WriteFile;

// A closed ledger with a few records.
std::string MakeLedger(const TempDir& dir, const std::string& name = "l") {
  const std::string path = dir.Sub(name);
  auto ledger = OpenOrDie(path);
  EXPECT_NE(ledger, nullptr);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(ledger->Append(SampleRecord(i)).ok());
  EXPECT_TRUE(ledger->Close().ok());
  return path;
}

// A RocksDB database with the given column families (besides "default").
void MakeRocksDb(const std::string& path, const std::vector<std::string>& families) {
  rocksdb::Options options;
  options.create_if_missing = true;
  rocksdb::DB* db = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(options, path, &db).ok());
  std::unique_ptr<rocksdb::DB> owned(db);
  for (const auto& name : families) {
    rocksdb::ColumnFamilyHandle* h = nullptr;
    ASSERT_TRUE(db->CreateColumnFamily(rocksdb::ColumnFamilyOptions(), name, &h).ok());
    ASSERT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
  }
  ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), "someone", "else's data").ok());
  ASSERT_TRUE(db->Close().ok());
}

std::vector<std::string> Families(const std::string& path) {
  std::vector<std::string> families;
  EXPECT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::Options(), path, &families).ok());
  std::sort(families.begin(), families.end());
  return families;
}

std::string ManifestOf(const std::string& path) {
  std::string current = ReadFile(path + "/CURRENT");
  while (!current.empty() && current.back() == '\n') current.pop_back();
  return path + "/" + current;
}

TEST(LedgerOpen, MissingParentDirectoryIsNotFoundNamingThePath) {
  TempDir dir;
  const std::string path = dir.Sub("no-such-dir/ledger");
  auto opened = Ledger::Open(path);
  ASSERT_TRUE(opened.status().IsNotFound()) << opened.status().ToString();
  ExpectMentions(opened.status(), path);
  ExpectMentions(opened.status(), dir.Sub("no-such-dir"));
  EXPECT_FALSE(fs::exists(dir.Sub("no-such-dir"))) << "nothing may be created";
}

TEST(LedgerOpen, NoLedgerWithoutCreateIfMissingIsNotFound) {
  TempDir dir;
  LedgerOptions options;
  options.create_if_missing = false;
  fs::create_directory(dir.Sub("empty"));
  auto opened = Ledger::Open(dir.Sub("empty"), options);
  ASSERT_TRUE(opened.status().IsNotFound()) << opened.status().ToString();
  ExpectMentions(opened.status(), dir.Sub("empty"));
  EXPECT_TRUE(fs::is_empty(dir.Sub("empty"))) << "nothing may be created";

  opened = Ledger::Open(dir.Sub("absent"), options);
  ASSERT_TRUE(opened.status().IsNotFound()) << opened.status().ToString();
  EXPECT_FALSE(fs::exists(dir.Sub("absent")));

  // An existing ledger opens without create_if_missing.
  const std::string path = MakeLedger(dir);
  auto existing = Ledger::Open(path, options);
  ASSERT_TRUE(existing.ok()) << existing.status().ToString();
  EXPECT_EQ((*existing)->GetHead()->seq, 5u);
}

TEST(LedgerOpen, APathThatIsAFileIsInvalidArgument) {
  TempDir dir;
  const std::string path = dir.Sub("file");
  WriteFile(path, "not a directory");
  auto opened = Ledger::Open(path);
  ASSERT_TRUE(opened.status().IsInvalidArgument()) << opened.status().ToString();
  ExpectMentions(opened.status(), path);
  EXPECT_EQ(ReadFile(path), "not a directory") << "the file must be left alone";
}

TEST(LedgerOpen, ASecondWriterInTheSameProcessIsBusy) {
  TempDir dir;
  const std::string path = dir.Sub("l");
  auto first = OpenOrDie(path);
  ASSERT_NE(first, nullptr);
  ASSERT_TRUE(first->Append(SampleRecord(1)).ok());
  auto second = Ledger::Open(path);
  ASSERT_TRUE(second.status().IsBusy()) << second.status().ToString();
  ExpectMentions(second.status(), "already open for writing");
  ExpectMentions(second.status(), path);
  // The first writer is unaffected, and the path opens again once it closes.
  EXPECT_EQ(*first->Append(SampleRecord(2)), 2u);
  ASSERT_TRUE(first->Close().ok());
  auto third = Ledger::Open(path);
  ASSERT_TRUE(third.ok()) << third.status().ToString();
  EXPECT_EQ((*third)->GetHead()->seq, 2u);
}

TEST(LedgerOpen, ARocksDbThatIsNotALedgerIsInvalidArgumentAndLeftAlone) {
  TempDir dir;
  const std::string path = dir.Sub("other");
  MakeRocksDb(path, {});
  auto opened = Ledger::Open(path);
  ASSERT_TRUE(opened.status().IsInvalidArgument()) << opened.status().ToString();
  ExpectMentions(opened.status(), "not a Bastion ledger");
  ExpectMentions(opened.status(), path);
  EXPECT_EQ(Families(path), std::vector<std::string>{"default"})
      << "opening must not add column families to someone else's database";

  auto reader = Ledger::OpenReader(path);
  ASSERT_TRUE(reader.status().IsInvalidArgument()) << reader.status().ToString();
  ExpectMentions(reader.status(), "not a Bastion ledger");
}

TEST(LedgerOpen, ADatabaseMissingOneColumnFamilyIsNotALedger) {
  TempDir dir;
  const std::string path = dir.Sub("partial");
  MakeRocksDb(path, {"records", "meta"});
  auto opened = Ledger::Open(path);
  ASSERT_TRUE(opened.status().IsInvalidArgument()) << opened.status().ToString();
  ExpectMentions(opened.status(), "no 'index' column family");
  EXPECT_EQ(Families(path), (std::vector<std::string>{"default", "meta", "records"}));
}

TEST(LedgerOpen, AnotherFormatIsInvalidArgumentForWriterAndReader) {
  TempDir dir;
  const std::string path = MakeLedger(dir);
  {
    auto raw = RawDb::Open(path);
    ASSERT_NE(raw, nullptr);
    raw->Put(raw->meta(), std::string(kMetaFormatKey), "bastion-ledger/99");
  }
  auto opened = Ledger::Open(path);
  ASSERT_TRUE(opened.status().IsInvalidArgument()) << opened.status().ToString();
  ExpectMentions(opened.status(), "bastion-ledger/99");
  auto reader = Ledger::OpenReader(path);
  ASSERT_TRUE(reader.status().IsInvalidArgument()) << reader.status().ToString();
  ExpectMentions(reader.status(), "bastion-ledger/99");
}

TEST(LedgerOpen, RecordsWithoutAFormatMarkerAreCorruption) {
  TempDir dir;
  const std::string path = MakeLedger(dir);
  {
    auto raw = RawDb::Open(path);
    ASSERT_NE(raw, nullptr);
    raw->Delete(raw->meta(), std::string(kMetaFormatKey));
  }
  auto opened = Ledger::Open(path);
  ASSERT_TRUE(opened.status().IsCorruption()) << opened.status().ToString();
  ExpectMentions(opened.status(), "no format marker");
}

TEST(LedgerOpen, AHeadThatDisagreesWithTheRecordsIsCorruption) {
  TempDir dir;
  const std::string path = MakeLedger(dir);
  {
    auto raw = RawDb::Open(path);
    ASSERT_NE(raw, nullptr);
    raw->Delete(raw->records(), testing::SeqKey(5));
  }
  auto opened = Ledger::Open(path);
  ASSERT_TRUE(opened.status().IsCorruption()) << opened.status().ToString();
  ExpectMentions(opened.status(), "names record 5 but the last stored record is 4");
  // A reader still opens, to find out what is wrong.
  auto reader = Ledger::OpenReader(path);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  EXPECT_EQ((*reader)->Verify({}).problem, VerifyProblem::kTruncated);
}

TEST(LedgerOpen, ZeroQueueCapacityOrBatchSizeIsInvalidArgument) {
  TempDir dir;
  LedgerOptions options;
  options.queue_capacity = 0;
  EXPECT_TRUE(Ledger::Open(dir.Sub("a"), options).status().IsInvalidArgument());
  options = {};
  options.max_batch_records = 0;
  EXPECT_TRUE(Ledger::Open(dir.Sub("b"), options).status().IsInvalidArgument());
}

TEST(LedgerOpen, CorruptedCurrentFileIsAnErrorNotACrash) {
  const std::string contents[] = {
      "garbage without a newline",
      "MANIFEST-999999\n",  // names a manifest that does not exist
      std::string("\0\0\0\xff\xfe\n", 6),
      "",
  };
  for (const std::string& garbage : contents) {
    SCOPED_TRACE("CURRENT = '" + garbage + "'");
    TempDir dir;
    const std::string path = MakeLedger(dir);
    WriteFile(path + "/CURRENT", garbage);
    auto opened = Ledger::Open(path);
    ASSERT_FALSE(opened.ok());
    EXPECT_TRUE(opened.status().IsCorruption() || opened.status().IsIOError())
        << opened.status().ToString();
    ExpectMentions(opened.status(), path);
    // A reader cannot tell a damaged CURRENT from a writer switching to a new
    // MANIFEST (RocksDB says "try again" for the latter), so only failure is
    // required of it.
    auto reader = Ledger::OpenReader(path);
    EXPECT_FALSE(reader.ok());
  }
}

TEST(LedgerOpen, DamagedManifestIsAnErrorNotACrash) {
  struct Damage {
    const char* name;
    std::function<std::string(const std::string&)> apply;
  } damages[] = {
      {"empty", [](const std::string&) { return std::string(); }},
      {"truncated to half", [](const std::string& m) { return m.substr(0, m.size() / 2); }},
      {"truncated to 10 bytes", [](const std::string& m) { return m.substr(0, 10); }},
      {"garbage", [](const std::string& m) { return std::string(m.size(), '\x5a'); }},
  };
  for (const auto& d : damages) {
    SCOPED_TRACE(d.name);
    TempDir dir;
    const std::string path = MakeLedger(dir);
    const std::string manifest = ManifestOf(path);
    ASSERT_TRUE(fs::exists(manifest)) << manifest;
    WriteFile(manifest, d.apply(ReadFile(manifest)));
    auto opened = Ledger::Open(path);
    ASSERT_FALSE(opened.ok()) << "a damaged MANIFEST must not open";
    EXPECT_TRUE(opened.status().IsCorruption() || opened.status().IsIOError())
        << "a damaged ledger is not 'not a ledger': " << opened.status().ToString();
    ExpectMentions(opened.status(), path);
    auto reader = Ledger::OpenReader(path);
    EXPECT_FALSE(reader.ok());
  }
}

TEST(LedgerOpenReader, MissingPathIsNotFound) {
  TempDir dir;
  auto reader = Ledger::OpenReader(dir.Sub("absent"));
  ASSERT_TRUE(reader.status().IsNotFound()) << reader.status().ToString();
  ExpectMentions(reader.status(), dir.Sub("absent"));
  fs::create_directory(dir.Sub("empty"));
  reader = Ledger::OpenReader(dir.Sub("empty"));
  EXPECT_TRUE(reader.status().IsNotFound()) << reader.status().ToString();
  EXPECT_TRUE(fs::is_empty(dir.Sub("empty")));
}

// Points TMPDIR (where readers put their scratch directory) elsewhere for the
// lifetime of the object.
class ScopedTmpdir {
 public:
  explicit ScopedTmpdir(const std::string& path) {
    if (const char* old = getenv("TMPDIR")) old_ = old;
    setenv("TMPDIR", path.c_str(), 1);
  }
  ~ScopedTmpdir() {
    if (old_) {
      setenv("TMPDIR", old_->c_str(), 1);
    } else {
      unsetenv("TMPDIR");
    }
  }

 private:
  std::optional<std::string> old_;
};

TEST(LedgerOpenReader, RemovesItsTemporaryDirectoryOnCloseAndAfterAFailedOpen) {
  TempDir dir;
  const std::string good = MakeLedger(dir, "good");
  const std::string damaged = MakeLedger(dir, "damaged");
  WriteFile(damaged + "/CURRENT", "garbage");
  const std::string other = dir.Sub("other");
  MakeRocksDb(other, {});
  const std::string tmp = dir.Sub("tmp");
  fs::create_directory(tmp);
  ScopedTmpdir scoped(tmp);

  EXPECT_FALSE(Ledger::OpenReader(damaged).ok());
  EXPECT_FALSE(Ledger::OpenReader(other).ok());
  EXPECT_TRUE(fs::is_empty(tmp)) << "a failed open must not leave its scratch directory";

  auto reader = Ledger::OpenReader(good);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  EXPECT_FALSE(fs::is_empty(tmp)) << "an open reader keeps its scratch directory under TMPDIR";
  ASSERT_TRUE((*reader)->Close().ok());
  EXPECT_TRUE(fs::is_empty(tmp)) << "Close removes it";
}

}  // namespace
}  // namespace bastion
