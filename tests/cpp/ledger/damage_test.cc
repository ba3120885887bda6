// Damaged files: every kind of file RocksDB keeps, damaged or removed, must
// give a writer open, a reader open or verify that fails and says what is
// wrong, never an "ok" ledger with fewer records. A damaged write-ahead log is
// repaired only on request, with the loss recorded in the chain.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

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

void FlipByteAt(const std::string& path, size_t offset) {
  std::string bytes = ReadFile(path);
  ASSERT_LT(offset, bytes.size()) << path;
  bytes[offset] = static_cast<char>(bytes[offset] ^ 0x5a);
  WriteFile(path, bytes);
}

// The ledger's files whose name starts with `prefix` or ends with `suffix`.
std::vector<std::string> FilesOf(const std::string& dir, const std::string& prefix,
                                 const std::string& suffix = "\x01") {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    const std::string name = e.path().filename().string();
    const bool ends = name.size() >= suffix.size() &&
                      name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    if (name.rfind(prefix, 0) == 0 || ends) out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Name -> content of every file RocksDB keeps data in (not its info LOG).
std::map<std::string, std::string> DataFiles(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (!e.is_regular_file() || name.rfind("LOG", 0) == 0 || name == "LOCK") continue;
    out[name] = ReadFile(e.path().string());
  }
  return out;
}

// `n` records appended in sync mode, then closed: they are all in the WAL.
std::string LedgerInWal(const TempDir& dir, int n) {
  const std::string path = dir.Sub("l");
  auto ledger = OpenOrDie(path);
  EXPECT_NE(ledger, nullptr);
  for (int i = 0; i < n; ++i) EXPECT_TRUE(ledger->Append(SampleRecord(i), Durability::kSync).ok());
  EXPECT_TRUE(ledger->Close().ok());
  return path;
}

// A ledger whose records are in table files (a reopen flushes the WAL), and
// then a few more in the WAL: every kind of file exists.
std::string LedgerWithTables(const TempDir& dir) {
  const std::string path = LedgerInWal(dir, 50);
  auto ledger = OpenOrDie(path);
  EXPECT_NE(ledger, nullptr);
  for (int i = 50; i < 60; ++i) EXPECT_TRUE(ledger->Append(SampleRecord(i)).ok());
  EXPECT_TRUE(ledger->Close().ok());
  EXPECT_FALSE(FilesOf(path, "\x01", ".sst").empty()) << "the reopen should have flushed";
  return path;
}

// What a writer open, a reader open and a reader's verify make of `path`:
// each must fail, with a message; none may say "ok".
void ExpectDamageReported(const std::string& path, const std::string& what) {
  SCOPED_TRACE(what);
  auto writer = Ledger::Open(path);
  EXPECT_FALSE(writer.ok()) << "a writer opened a damaged ledger (" << what << ")";
  if (!writer.ok()) {
    EXPECT_FALSE(writer.status().message().empty());
    ExpectMentions(writer.status(), path);
  } else {
    EXPECT_FALSE((*writer)->Verify({}).ok);
  }
  writer = Result<std::unique_ptr<Ledger>>(Status::Internal("closed"));  // release the lock
  auto reader = Ledger::OpenReader(path);
  if (!reader.ok()) {
    ExpectMentions(reader.status(), path);
    return;
  }
  VerifyReport report = (*reader)->Verify({});
  EXPECT_FALSE(report.ok) << "verify said '" << report.message << "' of a damaged ledger ("
                          << what << ")";
  EXPECT_FALSE(report.message.empty());
}

TEST(LedgerDamage, DamagedWalRefusesTheWriterNamingTheLogAndTheLastIntactRecord) {
  TempDir dir;
  const std::string path = LedgerInWal(dir, 1000);
  const auto wals = FilesOf(path, "\x01", ".log");
  ASSERT_EQ(wals.size(), 1u);
  const size_t size = fs::file_size(wals[0]);
  FlipByteAt(wals[0], size * 3 / 10);
  const auto before = DataFiles(path);

  auto opened = Ledger::Open(path);
  ASSERT_TRUE(opened.status().IsCorruption()) << opened.status().ToString();
  const Status& s = opened.status();
  ExpectMentions(s, path);
  ExpectMentions(s, fs::path(wals[0]).filename().string());
  ExpectMentions(s, "last intact record");
  ExpectMentions(s, "repair");
  EXPECT_EQ(DataFiles(path), before) << "a failed open must change nothing";

  // The reader refuses too, with the same diagnosis.
  auto reader = Ledger::OpenReader(path);
  ASSERT_TRUE(reader.status().IsCorruption()) << reader.status().ToString();
  ExpectMentions(reader.status(), "last intact record");
  EXPECT_EQ(DataFiles(path), before);

  // Opening again gives the same answer: the failed open recovered nothing.
  opened = Ledger::Open(path);
  ASSERT_TRUE(opened.status().IsCorruption()) << opened.status().ToString();
}

TEST(LedgerDamage, RepairNeedsConsentThenKeepsTheIntactPrefixAndRecordsTheLoss) {
  TempDir dir;
  const std::string path = LedgerInWal(dir, 1000);
  const auto wals = FilesOf(path, "\x01", ".log");
  ASSERT_EQ(wals.size(), 1u);
  FlipByteAt(wals[0], fs::file_size(wals[0]) * 3 / 10);
  const std::string damaged_wal = ReadFile(wals[0]);
  const auto before = DataFiles(path);

  RepairOptions no_consent;
  auto refused = Ledger::Repair(path, no_consent);
  ASSERT_TRUE(refused.status().IsFailedPrecondition()) << refused.status().ToString();
  ExpectMentions(refused.status(), "accept_loss");
  EXPECT_EQ(DataFiles(path), before) << "a refused repair must change nothing";

  RepairOptions options;
  options.accept_loss = true;
  options.by = "ops-oncall";
  options.reason = "disk scrub found a bad sector";
  auto repaired = Ledger::Repair(path, options);
  ASSERT_TRUE(repaired.ok()) << repaired.status().ToString();
  const RepairReport& r = *repaired;
  EXPECT_TRUE(r.repaired);
  // The flip is at 30 % of the log: about record 300 of 1000.
  EXPECT_GT(r.last_intact_seq, 200u);
  EXPECT_LT(r.last_intact_seq, 400u);
  EXPECT_EQ(r.lost_through_seq, 1000u) << "the records after the damaged one still show in the log";
  EXPECT_EQ(r.repair_seq, r.last_intact_seq + 1);
  ASSERT_EQ(r.damaged_files.size(), 1u);
  EXPECT_EQ(r.damaged_files[0], fs::path(wals[0]).filename().string());
  ASSERT_TRUE(fs::is_directory(r.quarantine_path)) << r.quarantine_path;
  EXPECT_EQ(ReadFile(r.quarantine_path + "/" + r.damaged_files[0]), damaged_wal)
      << "the damaged log is kept aside, byte for byte";

  auto ledger = OpenOrDie(path);
  ASSERT_NE(ledger, nullptr);
  VerifyReport report = ledger->Verify({});
  EXPECT_TRUE(report.ok) << report.message;
  EXPECT_EQ(report.records_checked, r.repair_seq);
  for (uint64_t seq = 1; seq <= r.last_intact_seq; ++seq) {
    auto rec = ledger->Get(seq);
    ASSERT_TRUE(rec.ok()) << seq << ": " << rec.status().ToString();
    EXPECT_EQ(rec->record.input_summary, SampleRecord(static_cast<int>(seq - 1)).input_summary);
  }
  auto rec = ledger->Get(r.repair_seq);
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  EXPECT_EQ(rec->record.action, "repair");
  EXPECT_EQ(rec->record.agent_id, "ops-oncall");
  std::map<std::string, std::string> attrs(rec->record.attributes.begin(),
                                           rec->record.attributes.end());
  EXPECT_EQ(attrs["last_intact_seq"], std::to_string(r.last_intact_seq));
  EXPECT_EQ(attrs["lost_from_seq"], std::to_string(r.last_intact_seq + 1));
  EXPECT_EQ(attrs["lost_through_seq"], "1000");
  EXPECT_EQ(attrs["damaged_files"], r.damaged_files[0]);
  EXPECT_EQ(attrs["reason"], "disk scrub found a bad sector");
  ASSERT_EQ(rec->record.reasons.size(), 1u);
  ExpectMentions(Status::Corruption(rec->record.reasons[0].message),
                 fmt::format("records {}..1000", r.last_intact_seq + 1));
  // The ledger appends after the repair record.
  auto next = ledger->Append(SampleRecord(7), Durability::kSync);
  ASSERT_TRUE(next.ok()) << next.status().ToString();
  EXPECT_EQ(*next, r.repair_seq + 1);
  ASSERT_TRUE(ledger->Close().ok());

  // A second repair finds nothing to do and changes nothing.
  auto again = Ledger::Repair(path, options);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_FALSE(again->repaired);
  EXPECT_EQ(OpenOrDie(path)->GetHead()->seq, r.repair_seq + 1);
}

// Two repairs started together: whatever the interleaving, the loss is
// recorded once and the chain verifies.
TEST(LedgerDamage, ConcurrentRepairsRecordTheLossOnce) {
  for (int round = 0; round < 3; ++round) {
    TempDir dir;
    const std::string path = LedgerInWal(dir, 1000);
    const auto wals = FilesOf(path, "\x01", ".log");
    ASSERT_EQ(wals.size(), 1u);
    FlipByteAt(wals[0], fs::file_size(wals[0]) * 3 / 10);
    RepairOptions options;
    options.accept_loss = true;
    std::vector<Result<RepairReport>> results(2, Status::Internal("not run"));
    std::vector<std::thread> repairs;
    for (int i = 0; i < 2; ++i) {
      repairs.emplace_back([&, i] { results[i] = Ledger::Repair(path, options); });
    }
    for (auto& t : repairs) t.join();
    int repaired = 0;
    uint64_t repair_seq = 0;
    for (const auto& r : results) {
      if (r.ok() && r->repaired) {
        ++repaired;
        repair_seq = r->repair_seq;
      }
    }
    EXPECT_EQ(repaired, 1) << round << ": " << results[0].status().ToString() << " / "
                           << results[1].status().ToString();
    auto ledger = OpenOrDie(path);
    ASSERT_NE(ledger, nullptr);
    EXPECT_TRUE(ledger->Verify({}).ok);
    EXPECT_EQ(ledger->GetHead()->seq, repair_seq) << "one repair record, at the head";
  }
}

TEST(LedgerDamage, RepairOfAnUndamagedLedgerChangesNothing) {
  TempDir dir;
  const std::string path = LedgerInWal(dir, 10);
  RepairOptions options;
  options.accept_loss = true;
  auto repaired = Ledger::Repair(path, options);
  ASSERT_TRUE(repaired.ok()) << repaired.status().ToString();
  EXPECT_FALSE(repaired->repaired);
  EXPECT_FALSE(fs::exists(path + "/quarantine"));
  EXPECT_EQ(OpenOrDie(path)->GetHead()->seq, 10u);
  EXPECT_TRUE(Ledger::Repair(dir.Sub("absent"), options).status().IsNotFound());
}

TEST(LedgerDamage, ATornLastWriteIsNotDamage) {
  // A crash in the middle of writing the log leaves its last record cut
  // short; that record was never acknowledged, so the writer opens.
  TempDir dir;
  const std::string path = LedgerInWal(dir, 20);
  const auto wals = FilesOf(path, "\x01", ".log");
  ASSERT_EQ(wals.size(), 1u);
  const std::string wal = ReadFile(wals[0]);
  WriteFile(wals[0], wal.substr(0, wal.size() - 40));
  auto ledger = OpenOrDie(path);
  ASSERT_NE(ledger, nullptr);
  // Closing wrote the postings last: the cut may have taken them rather than
  // record 20, whose postings opening rewrites from the record.
  EXPECT_GE(ledger->GetHead()->seq, 19u);
  EXPECT_TRUE(ledger->Verify({}).ok);
}

TEST(LedgerDamage, DeletedTablesAreReported) {
  TempDir dir;
  const std::string path = LedgerWithTables(dir);
  for (const auto& f : FilesOf(path, "\x01", ".sst")) fs::remove(f);
  ExpectDamageReported(path, "every table file deleted");
  auto writer = Ledger::Open(path);
  ASSERT_TRUE(writer.status().IsCorruption()) << writer.status().ToString();
  // The writer's open names the first missing file (RocksDB looks for an
  // .sst under its old .ldb name too); a reader (a secondary instance skips
  // files it cannot open) finds the marker gone with them.
  ExpectMentions(writer.status(), "No such file");
  auto reader = Ledger::OpenReader(path);
  ASSERT_TRUE(reader.status().IsCorruption()) << reader.status().ToString();
  ExpectMentions(reader.status(), "damaged");
}

TEST(LedgerDamage, DeletedCurrentFileIsReportedAndNoNewLedgerIsCreatedOverTheFiles) {
  TempDir dir;
  const std::string path = LedgerWithTables(dir);
  fs::remove(path + "/CURRENT");
  const auto before = DataFiles(path);
  for (const Status& s : {Ledger::Open(path).status(), Ledger::OpenReader(path).status()}) {
    EXPECT_TRUE(s.IsCorruption()) << s.ToString();
    ExpectMentions(s, "has no CURRENT file but holds a ledger's files");
  }
  EXPECT_EQ(DataFiles(path), before) << "no new database may be created over the old files";
}

TEST(LedgerDamage, FlippedBytesInEveryKindOfFileAreReported) {
  struct Kind {
    const char* name;
    const char* prefix;
    const char* suffix;
  } kinds[] = {
      {"table", "\x01", ".sst"},  {"write-ahead log", "\x01", ".log"},
      {"MANIFEST", "MANIFEST-", "\x01"}, {"CURRENT", "CURRENT", "\x01"},
  };
  for (const Kind& kind : kinds) {
    for (double where : {0.1, 0.5, 0.9}) {
      SCOPED_TRACE(fmt::format("{} at {}", kind.name, where));
      TempDir dir;
      const std::string path = LedgerWithTables(dir);
      const auto files = FilesOf(path, kind.prefix, kind.suffix);
      ASSERT_FALSE(files.empty()) << kind.name;
      for (const auto& f : files) FlipByteAt(f, static_cast<size_t>(fs::file_size(f) * where));
      ExpectDamageReported(path, fmt::format("a byte flipped at {} of every {} file", where,
                                             kind.name));
    }
  }
}

TEST(LedgerDamage, DamagedOptionsFilesHoldNoRecordsAndAreReplaced) {
  // OPTIONS-* files only describe the settings of the last open (the ledger
  // passes its own on every open, and reads none back): damage to them loses
  // nothing, and the next writer open writes a fresh one.
  TempDir dir;
  const std::string path = LedgerWithTables(dir);
  const auto files = FilesOf(path, "OPTIONS-");
  ASSERT_FALSE(files.empty());
  std::map<std::string, std::string> damaged;
  for (const auto& f : files) {
    std::string bytes = ReadFile(f);
    for (size_t i = 0; i < bytes.size(); i += 7) bytes[i] = static_cast<char>(bytes[i] ^ 0x5a);
    WriteFile(f, bytes);
    damaged[f] = bytes;
  }
  auto reader = Ledger::OpenReader(path);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  VerifyReport report = (*reader)->Verify({});
  EXPECT_TRUE(report.ok) << report.message;
  EXPECT_EQ(report.records_checked, 60u);
  ASSERT_TRUE((*reader)->Close().ok());
  auto ledger = OpenOrDie(path);
  ASSERT_NE(ledger, nullptr);
  EXPECT_EQ(ledger->GetHead()->seq, 60u);
  const auto now = FilesOf(path, "OPTIONS-");
  ASSERT_FALSE(now.empty());
  EXPECT_NE(ReadFile(now.back()), damaged.rbegin()->second) << "a fresh OPTIONS file is written";
}

TEST(LedgerDamage, MissingOrGarbledFormatMarkerIsReported) {
  for (const char* value : {"", "\xff\xfe garbage", "bastion-ledger/1\n"}) {
    SCOPED_TRACE(::testing::Message() << "marker '" << value << "'");
    TempDir dir;
    const std::string path = LedgerWithTables(dir);
    {
      auto raw = RawDb::Open(path);
      ASSERT_NE(raw, nullptr);
      raw->Put(raw->meta(), std::string(kMetaFormatKey), value);
    }
    ExpectDamageReported(path, "a garbled format marker");
    for (const Status& s : {Ledger::Open(path).status(), Ledger::OpenReader(path).status()}) {
      EXPECT_TRUE(s.IsCorruption()) << s.ToString();
      ExpectMentions(s, "format marker (meta key 'format') is garbled");
    }
  }
  TempDir dir;
  const std::string path = LedgerWithTables(dir);
  {
    auto raw = RawDb::Open(path);
    ASSERT_NE(raw, nullptr);
    raw->Delete(raw->meta(), std::string(kMetaFormatKey));
  }
  ExpectDamageReported(path, "no format marker");
  for (const Status& s : {Ledger::Open(path).status(), Ledger::OpenReader(path).status()}) {
    EXPECT_TRUE(s.IsCorruption()) << s.ToString();
    ExpectMentions(s, "no format marker");
  }
}

TEST(LedgerDamage, MissingHeadIsReported) {
  TempDir dir;
  const std::string path = LedgerWithTables(dir);
  {
    auto raw = RawDb::Open(path);
    ASSERT_NE(raw, nullptr);
    raw->Delete(raw->meta(), std::string(kMetaHeadKey));
  }
  ExpectDamageReported(path, "no chain head");
  auto reader = Ledger::OpenReader(path);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  VerifyReport report = (*reader)->Verify({});
  EXPECT_EQ(report.problem, VerifyProblem::kHeadMismatch);
  EXPECT_EQ(report.message, "the chain head (meta key 'head') is missing; the last stored record is 60");
}

TEST(LedgerDamage, AMetaColumnFamilyEmptiedBehindTheLedgersBackIsReported) {
  // The records remain, but the head and the marker are gone.
  TempDir dir;
  const std::string path = LedgerWithTables(dir);
  {
    auto raw = RawDb::Open(path);
    ASSERT_NE(raw, nullptr);
    for (const auto& [k, v] : raw->Scan(raw->meta())) raw->Delete(raw->meta(), k);
  }
  ExpectDamageReported(path, "meta emptied");
}

TEST(LedgerDamage, EveryKeyDeletedIsReported) {
  // The store is reduced to an empty one: no records, no head, no marker.
  TempDir dir;
  const std::string path = LedgerWithTables(dir);
  {
    auto raw = RawDb::Open(path);
    ASSERT_NE(raw, nullptr);
    for (auto* cf : {raw->records(), raw->index(), raw->meta()}) {
      for (const auto& [k, v] : raw->Scan(cf)) raw->Delete(cf, k);
    }
  }
  // A store emptied this way is indistinguishable from a ledger that was
  // created and never written to, except for its marker: gone here.
  ExpectDamageReported(path, "everything deleted");
}

}  // namespace
}  // namespace bastion
