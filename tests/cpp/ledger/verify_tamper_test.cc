// Tampering with a closed ledger's RocksDB behind its back, then verifying it
// through a reader (which opens even when the chain is broken).
#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "bastion/ledger.h"
#include "ledger/hash_chain.h"
#include "ledger/index_keys.h"
#include "ledger/raw_store.h"
#include "ledger/record_codec.h"
#include "ledger/writer.h"
#include "test_util.h"
#include "util/sha256.h"

namespace bastion {
namespace {

using testing::CopyLedger;
using testing::OpenOrDie;
using testing::RawDb;
using testing::SampleRecord;
using testing::SeqKey;
using testing::TempDir;

constexpr uint64_t kRecords = 20;

std::string Name(VerifyProblem p) { return std::string(VerifyProblemName(p)); }

std::string Describe(const VerifyReport& r) {
  return fmt::format("ok={} problem={} bad_seq={} cancelled={} checked={} message='{}' error='{}'",
                     r.ok, Name(r.problem), r.bad_seq, r.cancelled, r.records_checked,
                     r.message, r.error.ToString());
}

class VerifyTamper : public ::testing::Test {
 protected:
  // One golden ledger per test program: 20 records, each appended on its own
  // and its postings written with it (so each record has its own posting
  // blocks), then closed.
  static void SetUpTestSuite() {
    golden_dir_ = new TempDir();
    golden_ = golden_dir_->Sub("golden");
    LedgerOptions options;
    options.index_batch_records = 0;
    auto ledger = OpenOrDie(golden_, options);
    ASSERT_NE(ledger, nullptr);
    for (uint64_t i = 0; i < kRecords; ++i) {
      auto seq = ledger->Append(SampleRecord(static_cast<int>(i)), Durability::kSync);
      ASSERT_TRUE(seq.ok()) << seq.status().ToString();
      ASSERT_EQ(*seq, i + 1);
    }
    ASSERT_TRUE(ledger->Close().ok());
  }
  static void TearDownTestSuite() {
    delete golden_dir_;
    golden_dir_ = nullptr;
  }

  // A private copy of the golden ledger.
  std::string Fresh() {
    const std::string path = dir_.Sub(fmt::format("case-{}", ++cases_));
    CopyLedger(golden_, path);
    return path;
  }

  static VerifyReport VerifyWithReader(const std::string& path, VerifyOptions options = {}) {
    auto reader = Ledger::OpenReader(path);
    EXPECT_TRUE(reader.ok()) << reader.status().ToString();
    if (!reader.ok()) return VerifyReport{};
    return (*reader)->Verify(options);
  }

  // Applies `tamper` to a fresh copy and verifies it with a new reader.
  VerifyReport Tampered(const std::function<void(RawDb&)>& tamper, VerifyOptions options = {}) {
    const std::string path = Fresh();
    {
      auto raw = RawDb::Open(path);
      EXPECT_NE(raw, nullptr);
      if (!raw) return VerifyReport{};
      tamper(*raw);
    }
    last_path_ = path;
    return VerifyWithReader(path, std::move(options));
  }

  // `names_seq`: the message must mention bad_seq (false where the problem is
  // not about one record, e.g. a malformed key).
  static void ExpectProblem(const VerifyReport& r, VerifyProblem problem, uint64_t bad_seq,
                            const std::string& what, bool names_seq = true) {
    EXPECT_FALSE(r.ok) << what << ": " << Describe(r);
    EXPECT_EQ(Name(r.problem), Name(problem)) << what << ": " << Describe(r);
    EXPECT_EQ(r.bad_seq, bad_seq) << what << ": " << Describe(r);
    EXPECT_TRUE(r.error.ok()) << what << ": a chain problem is not a store error";
    EXPECT_FALSE(r.cancelled) << what;
    if (names_seq) {
      EXPECT_NE(r.message.find(std::to_string(bad_seq)), std::string::npos)
          << what << ": the message names the bad sequence number: " << r.message;
    }
  }

  static std::string Value(RawDb& raw, uint64_t seq) { return raw.Get(raw.records(), SeqKey(seq)); }

  static StoredRecord Decoded(const std::string& value) {
    StoredRecord out;
    Status s = codec::DecodeValue(value, &out);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }

  // A record that replaces `seq`: different content, correctly sealed onto
  // the stored previous record. Only its successor (or the head) can tell.
  static std::string Forge(RawDb& raw, uint64_t seq, const std::function<void(Record&)>& edit) {
    const StoredRecord old = Decoded(Value(raw, seq));
    Record r = old.record;
    edit(r);
    EXPECT_TRUE(ValidateRecord(r).ok());
    const uint8_t salt[codec::kSaltBytes] = {'f', 'o', 'r', 'g', 'e', 'd'};
    std::string value;
    Hash digest;
    codec::EncodeValue(r, salt, &value, &digest);
    Sha256 sha;
    chain::Seal(&sha, &value, seq, old.prev_hash, digest);
    return value;
  }

  static inline TempDir* golden_dir_ = nullptr;
  static inline std::string golden_;
  TempDir dir_;
  int cases_ = 0;
  std::string last_path_;
};

TEST_F(VerifyTamper, IntactLedgerVerifies) {
  const std::string path = Fresh();
  uint64_t bytes = 0;
  {
    auto raw = RawDb::Open(path);
    ASSERT_NE(raw, nullptr);
    for (const auto& [k, v] : raw->Scan(raw->records())) bytes += v.size();
  }
  for (bool indexes : {true, false}) {
    VerifyOptions o;
    o.check_indexes = indexes;
    VerifyReport r = VerifyWithReader(path, o);
    EXPECT_TRUE(r.ok) << Describe(r);
    EXPECT_EQ(r.problem, VerifyProblem::kNone);
    EXPECT_EQ(r.records_checked, kRecords);
    EXPECT_EQ(r.bytes_checked, bytes);
    EXPECT_EQ(r.from_seq, 1u);
    EXPECT_EQ(r.to_seq, kRecords);
    EXPECT_FALSE(r.cancelled);
  }
  // The writer sees the same.
  auto ledger = OpenOrDie(path);
  VerifyReport r = ledger->Verify({});
  EXPECT_TRUE(r.ok) << Describe(r);
}

// Which check must catch a flipped byte at `off` of a stored value.
VerifyProblem ProblemForOffset(size_t off, size_t plen_at) {
  if (off < codec::kOffSeq) return VerifyProblem::kUndecodable;            // version, flags
  if (off < codec::kOffPrevHash) return VerifyProblem::kMisplaced;         // seq
  if (off < codec::kOffHash) return VerifyProblem::kBrokenLink;            // prev_hash
  if (off < codec::kOffBodyLen) return VerifyProblem::kHashMismatch;       // hash
  if (off < codec::kHeaderBytes) return VerifyProblem::kUndecodable;       // body_len
  if (off < plen_at) return VerifyProblem::kHashMismatch;                  // body
  if (off < plen_at + 4) return VerifyProblem::kUndecodable;               // personal_len
  return VerifyProblem::kHashMismatch;                                     // salt, personal
}

// Flips single bytes of record `target` (restoring it after each), with one
// reader following the raw primary (Refresh after each change), and checks
// that Verify names `target` and the check that must catch that byte.
// `stride` > 1 tests every stride-th byte of the body and personal parts but
// still every byte of the header and the length fields.
void ExpectEveryFlipDetected(const std::string& path, uint64_t target,
                             std::initializer_list<uint8_t> masks, size_t stride = 1) {
  auto raw = RawDb::Open(path);
  ASSERT_NE(raw, nullptr);
  auto opened = Ledger::OpenReader(path);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  std::unique_ptr<Ledger> reader = std::move(*opened);
  const std::string original = raw->Get(raw->records(), SeqKey(target));
  codec::ValueView view;
  ASSERT_TRUE(codec::ParseValue(original, &view).ok());
  const size_t plen_at = codec::kHeaderBytes + view.body.size();
  int failures = 0;
  size_t checked = 0;
  for (size_t off = 0; off < original.size() && failures < 10; ++off) {
    const bool framing = off < codec::kHeaderBytes || (off >= plen_at && off < plen_at + 4);
    if (!framing && off % stride != 0 && off + 1 != original.size()) continue;
    for (uint8_t mask : masks) {
      std::string tampered = original;
      tampered[off] = static_cast<char>(tampered[off] ^ mask);
      raw->Put(raw->records(), SeqKey(target), tampered);
      ASSERT_TRUE(reader->Refresh().ok());
      const VerifyReport r = reader->Verify({});
      const VerifyProblem want = ProblemForOffset(off, plen_at);
      if (r.ok || r.bad_seq != target || r.problem != want) {
        ++failures;
        ADD_FAILURE() << "record " << target << ", byte " << off << " of " << original.size()
                      << " ^ 0x" << std::hex << int(mask) << std::dec << ": expected "
                      << Name(want) << " at " << target << ", got " << Describe(r);
      }
      ++checked;
      raw->Put(raw->records(), SeqKey(target), original);
    }
  }
  ASSERT_TRUE(reader->Refresh().ok());
  const VerifyReport restored = reader->Verify({});
  EXPECT_TRUE(restored.ok) << "after restoring record " << target << ": " << Describe(restored);
  if (stride == 1) {
    EXPECT_EQ(checked, masks.size() * original.size());
  }
}

TEST_F(VerifyTamper, DetectsFlipOfEveryByte) {
  // A middle record: XOR 0x01 and XOR 0x80 at every offset, one at a time.
  ExpectEveryFlipDetected(Fresh(), 10, {0x01, 0x80});
}

TEST_F(VerifyTamper, DetectsByteFlipsInTheFirstAndLastRecord) {
  // The first record links to the all-zero genesis hash and the last one is
  // named by the head: every header byte, and a sample of the rest.
  ExpectEveryFlipDetected(Fresh(), 1, {0x01}, /*stride=*/5);
  ExpectEveryFlipDetected(Fresh(), kRecords, {0x01}, /*stride=*/5);
}

TEST_F(VerifyTamper, DetectsByteFlipsAfterAFreshReopen) {
  // The same detection with the full close / reopen cycle, for one byte of
  // each part of the value.
  const size_t offsets[] = {0, 1, 5, 20, 50, 76, 80, 0 /* personal_len */, 0 /* last */};
  for (size_t i = 0; i < std::size(offsets); ++i) {
    size_t off = offsets[i];
    size_t plen_at = 0;
    VerifyReport r = Tampered([&](RawDb& raw) {
      std::string v = Value(raw, 10);
      codec::ValueView view;
      ASSERT_TRUE(codec::ParseValue(v, &view).ok());
      plen_at = codec::kHeaderBytes + view.body.size();
      if (i == std::size(offsets) - 2) off = plen_at;
      if (i == std::size(offsets) - 1) off = v.size() - 1;
      v[off] = static_cast<char>(v[off] ^ 0x01);
      raw.Put(raw.records(), SeqKey(10), v);
    });
    ExpectProblem(r, ProblemForOffset(off, plen_at), 10, fmt::format("byte {}", off));
  }
}

TEST_F(VerifyTamper, DetectsADeletedMiddleRecordAsAGap) {
  VerifyReport r = Tampered([](RawDb& raw) { raw.Delete(raw.records(), SeqKey(10)); });
  ExpectProblem(r, VerifyProblem::kGap, 10, "record 10 deleted");
  r = Tampered([](RawDb& raw) {
    raw.Delete(raw.records(), SeqKey(1));
  });
  ExpectProblem(r, VerifyProblem::kGap, 1, "record 1 deleted");
  r = Tampered([](RawDb& raw) {
    for (uint64_t s = 5; s <= 8; ++s) raw.Delete(raw.records(), SeqKey(s));
  });
  ExpectProblem(r, VerifyProblem::kGap, 5, "records 5..8 deleted");
}

TEST_F(VerifyTamper, DetectsDeletedLastRecordsAsTruncation) {
  VerifyReport r = Tampered([](RawDb& raw) {
    for (uint64_t s = 18; s <= kRecords; ++s) raw.Delete(raw.records(), SeqKey(s));
  });
  ExpectProblem(r, VerifyProblem::kTruncated, 18, "records 18..20 deleted");
  r = Tampered([](RawDb& raw) { raw.Delete(raw.records(), SeqKey(kRecords)); });
  ExpectProblem(r, VerifyProblem::kTruncated, kRecords, "last record deleted");
  r = Tampered([](RawDb& raw) {
    for (uint64_t s = 1; s <= kRecords; ++s) raw.Delete(raw.records(), SeqKey(s));
  });
  ExpectProblem(r, VerifyProblem::kTruncated, 1, "every record deleted");
  // A writer refuses such a ledger.
  auto writer = Ledger::Open(last_path_);
  EXPECT_TRUE(writer.status().IsCorruption()) << writer.status().ToString();
}

TEST_F(VerifyTamper, DetectsSwappedRecordsAsMisplaced) {
  VerifyReport r = Tampered([](RawDb& raw) {
    const std::string a = Value(raw, 5), b = Value(raw, 12);
    raw.Put(raw.records(), SeqKey(5), b);
    raw.Put(raw.records(), SeqKey(12), a);
  });
  ExpectProblem(r, VerifyProblem::kMisplaced, 5, "records 5 and 12 swapped");
  r = Tampered([](RawDb& raw) {
    const std::string a = Value(raw, 19), b = Value(raw, 20);
    raw.Put(raw.records(), SeqKey(19), b);
    raw.Put(raw.records(), SeqKey(20), a);
  });
  ExpectProblem(r, VerifyProblem::kMisplaced, 19, "last two records swapped");
}

TEST_F(VerifyTamper, DetectsACopyStoredUnderAnotherKey) {
  // A copy of record 3 stored as record 9: its header still says 3.
  VerifyReport r = Tampered([](RawDb& raw) {
    raw.Put(raw.records(), SeqKey(9), Value(raw, 3));
  });
  ExpectProblem(r, VerifyProblem::kMisplaced, 9, "record 3 copied over record 9");
  // A key that is not 8 bytes between records 5 and 6.
  r = Tampered([](RawDb& raw) {
    raw.Put(raw.records(), SeqKey(5) + "x", Value(raw, 5));
  });
  ExpectProblem(r, VerifyProblem::kMisplaced, 6, "9-byte key after record 5",
                /*names_seq=*/false);
  EXPECT_NE(r.message.find("follows record 5"), std::string::npos) << r.message;
}

TEST_F(VerifyTamper, DetectsRecordsPastTheHead) {
  VerifyReport r = Tampered([](RawDb& raw) {
    raw.Put(raw.records(), SeqKey(kRecords + 1), Value(raw, kRecords));
  });
  ExpectProblem(r, VerifyProblem::kExtraRecords, kRecords + 1, "copy of the last record as 21");
  r = Tampered([](RawDb& raw) {
    raw.Put(raw.records(), SeqKey(kRecords + 5), Value(raw, 2));
  });
  ExpectProblem(r, VerifyProblem::kExtraRecords, kRecords + 5, "copy of record 2 as 25");
  // A correctly chained record 21 appended behind the ledger's back (head not
  // moved) is still extra.
  r = Tampered([](RawDb& raw) {
    Record rec = SampleRecord(99);
    ASSERT_TRUE(ValidateRecord(rec).ok());
    const uint8_t salt[codec::kSaltBytes] = {};
    std::string value;
    Hash digest;
    codec::EncodeValue(rec, salt, &value, &digest);
    Head head;
    ASSERT_TRUE(DecodeHead(raw.Get(raw.meta(), std::string(kMetaHeadKey)), &head));
    Sha256 sha;
    chain::Seal(&sha, &value, kRecords + 1, head.hash, digest);
    raw.Put(raw.records(), SeqKey(kRecords + 1), value);
  });
  ExpectProblem(r, VerifyProblem::kExtraRecords, kRecords + 1, "chained record 21, head at 20");
}

TEST_F(VerifyTamper, DetectsAReSealedForgeryAtItsSuccessor) {
  // The forged record 10 is internally consistent (its hash matches its
  // content and it links to record 9), so the chain breaks at record 11.
  VerifyReport r = Tampered([this](RawDb& raw) {
    raw.Put(raw.records(), SeqKey(10), Forge(raw, 10, [](Record& rec) {
              rec.effect = "allow";
              rec.tool = "refund";
            }));
  });
  ExpectProblem(r, VerifyProblem::kBrokenLink, 11, "record 10 forged");
  {
    // The forgery itself reads fine.
    auto reader = Ledger::OpenReader(last_path_);
    ASSERT_TRUE(reader.ok());
    auto got = (*reader)->Get(10);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(got->record.tool, "refund");
  }
  // Forging only personal data (through the digest) is caught the same way.
  r = Tampered([this](RawDb& raw) {
    raw.Put(raw.records(), SeqKey(4), Forge(raw, 4, [](Record& rec) { rec.user_id = "someone"; }));
  });
  ExpectProblem(r, VerifyProblem::kBrokenLink, 5, "record 4's user forged");
  // Forging the last record leaves the head pointing at the old hash.
  r = Tampered([this](RawDb& raw) {
    raw.Put(raw.records(), SeqKey(kRecords),
            Forge(raw, kRecords, [](Record& rec) { rec.cost_nanousd = 1; }));
  });
  ExpectProblem(r, VerifyProblem::kHeadMismatch, kRecords, "last record forged");
}

TEST_F(VerifyTamper, ForgingTheLastRecordAndTheHeadIsCaughtOnlyByTheIndexes) {
  // Rewriting the tail and the head leaves a self-consistent chain; only an
  // external anchor of the head would catch it. Here the forgery changed an
  // indexed field, so the index check still sees it.
  VerifyReport r = Tampered([this](RawDb& raw) {
    const std::string forged =
        Forge(raw, kRecords, [](Record& rec) { rec.agent_id = "impostor"; });
    raw.Put(raw.records(), SeqKey(kRecords), forged);
    Head head{kRecords, {}};
    std::memcpy(head.hash.data(), forged.data() + codec::kOffHash, 32);
    raw.Put(raw.meta(), std::string(kMetaHeadKey), EncodeHead(head));
  });
  ExpectProblem(r, VerifyProblem::kIndexInconsistent, kRecords, "last record and head forged");
  VerifyOptions no_indexes;
  no_indexes.check_indexes = false;
  VerifyReport chain_only = VerifyWithReader(last_path_, no_indexes);
  EXPECT_TRUE(chain_only.ok) << Describe(chain_only);
}

TEST_F(VerifyTamper, DetectsACorruptedHead) {
  VerifyReport r = Tampered([](RawDb& raw) {
    raw.Put(raw.meta(), std::string(kMetaHeadKey), "garbage");
  });
  ExpectProblem(r, VerifyProblem::kHeadMismatch, kRecords, "head not 40 bytes");
  EXPECT_TRUE(Ledger::Open(last_path_).status().IsCorruption());

  r = Tampered([](RawDb& raw) {
    std::string head = raw.Get(raw.meta(), std::string(kMetaHeadKey));
    head[20] = static_cast<char>(head[20] ^ 0x01);  // a byte of the hash
    raw.Put(raw.meta(), std::string(kMetaHeadKey), head);
  });
  ExpectProblem(r, VerifyProblem::kHeadMismatch, kRecords, "head hash flipped");
  EXPECT_TRUE(Ledger::Open(last_path_).status().IsCorruption());

  r = Tampered([](RawDb& raw) {
    const StoredRecord rec19 = Decoded(Value(raw, kRecords - 1));
    raw.Put(raw.meta(), std::string(kMetaHeadKey), EncodeHead({kRecords - 1, rec19.hash}));
  });
  ExpectProblem(r, VerifyProblem::kExtraRecords, kRecords, "head rolled back to 19");
  EXPECT_TRUE(Ledger::Open(last_path_).status().IsCorruption());

  r = Tampered([](RawDb& raw) {
    std::string head = raw.Get(raw.meta(), std::string(kMetaHeadKey));
    head[0] = static_cast<char>(kRecords + 5);  // seq, little-endian
    raw.Put(raw.meta(), std::string(kMetaHeadKey), head);
  });
  ExpectProblem(r, VerifyProblem::kTruncated, kRecords + 1, "head moved forward to 25");

  r = Tampered([](RawDb& raw) { raw.Delete(raw.meta(), std::string(kMetaHeadKey)); });
  ExpectProblem(r, VerifyProblem::kHeadMismatch, kRecords, "head deleted");
  EXPECT_EQ(r.message, "the chain head (meta key 'head') is missing; the last stored record is 20");
}

// Index tampering. The golden ledger appends one record per write batch, so
// every record has its own posting block per indexed value.
class VerifyTamperIndex : public VerifyTamper {
 protected:
  static std::string AgentKey(uint64_t seq) {
    return index::PostingKey(index::Kind::kAgent,
                             index::ValueHash(SampleRecord(static_cast<int>(seq - 1)).agent_id),
                             seq);
  }
  static std::string TimeKeyOf(uint64_t seq) {
    return index::TimeKey(SampleRecord(static_cast<int>(seq - 1)).timestamp_ns, seq);
  }

  // Checks the problem with indexes checked, and that the chain alone passes.
  void ExpectIndexProblem(const std::function<void(RawDb&)>& tamper, uint64_t bad_seq,
                          const std::string& what, bool names_seq = true) {
    VerifyReport r = Tampered(tamper);
    ExpectProblem(r, VerifyProblem::kIndexInconsistent, bad_seq, what, names_seq);
    VerifyOptions o;
    o.check_indexes = false;
    VerifyReport chain_only = VerifyWithReader(last_path_, o);
    EXPECT_TRUE(chain_only.ok) << what << " with check_indexes=false: " << Describe(chain_only);
  }
};

TEST_F(VerifyTamperIndex, GoldenLedgerHasOnePostingBlockPerRecord) {
  const std::string path = Fresh();
  auto raw = RawDb::Open(path);
  ASSERT_NE(raw, nullptr);
  for (uint64_t seq = 1; seq <= kRecords; ++seq) {
    EXPECT_EQ(raw->Get(raw->index(), AgentKey(seq)), "\x01") << "record " << seq;
    EXPECT_EQ(raw->Get(raw->index(), TimeKeyOf(seq)), "") << "record " << seq;
  }
}

TEST_F(VerifyTamperIndex, DetectsADeletedIndexEntry) {
  ExpectIndexProblem([](RawDb& raw) { raw.Delete(raw.index(), TimeKeyOf(7)); }, 7,
                     "time entry of record 7 deleted");
  ExpectIndexProblem([](RawDb& raw) { raw.Delete(raw.index(), AgentKey(7)); }, 7,
                     "agent posting of record 7 deleted");
  ExpectIndexProblem(
      [](RawDb& raw) {
        raw.Delete(raw.index(), AgentKey(12));
        raw.Delete(raw.index(), TimeKeyOf(4));
      },
      4, "two entries deleted");
}

TEST_F(VerifyTamperIndex, DetectsACorruptedIndexEntry) {
  ExpectIndexProblem([](RawDb& raw) { raw.Put(raw.index(), AgentKey(7), std::string(1, '\0')); },
                     7, "posting block of record 7 with count 0");
  // Record 7's block claiming record 8 too: the entry that is wrong is the one
  // for record 8 (whose agent differs), so record 8 is reported.
  ExpectIndexProblem([](RawDb& raw) { raw.Put(raw.index(), AgentKey(7), "\x02\x01"); }, 8,
                     "posting block of record 7 claims record 8 too");
  ExpectIndexProblem(
      [](RawDb& raw) {
        raw.Delete(raw.index(), TimeKeyOf(7));
        raw.Put(raw.index(),
                index::TimeKey(SampleRecord(6).timestamp_ns + 1, 7), "");
      },
      7, "time entry of record 7 with another timestamp");
  ExpectIndexProblem(
      [](RawDb& raw) {
        raw.Put(raw.index(), index::PostingKey(index::Kind::kRisk, index::ValueHash("medium"), 7),
                "\x01");
      },
      7, "extra risk posting for record 7");
  ExpectIndexProblem([](RawDb& raw) { raw.Put(raw.index(), std::string("\x02" "abc"), ""); }, 1,
                     "malformed index key", /*names_seq=*/false);
}

TEST_F(VerifyTamperIndex, DetectsIndexEntriesThatPointPastTheHead) {
  // The writer puts records, index entries and head in one batch, so an entry
  // naming a record that does not exist can only come from tampering.
  ExpectIndexProblem(
      [](RawDb& raw) { raw.Put(raw.index(), index::TimeKey(SampleRecord(3).timestamp_ns, 30), ""); },
      30, "time entry for record 30");
  ExpectIndexProblem(
      [](RawDb& raw) {
        raw.Put(raw.index(),
                index::PostingKey(index::Kind::kAgent, index::ValueHash("agent-1"), 25), "\x01");
      },
      25, "agent posting for record 25");
}

// Postings are gathered in memory and written later than their records, with
// the index mark (meta key "indexed") saying which records they cover. A crash
// leaves the mark behind the head and the later records without postings:
// that state is consistent, queries still find those records, and opening the
// ledger writes their postings.
class IndexMark : public VerifyTamperIndex {
 protected:
  // The golden ledger as a crash after record `mark` would leave it.
  static void CrashedAfter(RawDb& raw, uint64_t mark) {
    for (const auto& [key, value] : raw.Scan(raw.index())) {
      if (key.size() == index::kPostingKeyBytes &&
          key[0] != static_cast<char>(index::Kind::kTime) &&
          codec::GetFixed64BE(key.data() + 9) > mark) {
        raw.Delete(raw.index(), key);
      }
    }
    raw.Put(raw.meta(), std::string(kMetaIndexedKey), EncodeIndexed(mark));
  }

  // Every agent's records, newest first and oldest first, two per page.
  static std::vector<std::vector<uint64_t>> FindAllByAgent(Ledger& ledger) {
    std::vector<std::vector<uint64_t>> out;
    for (int agent = 0; agent < 5; ++agent) {  // SampleRecord's five agents
      for (bool newest_first : {true, false}) {
        Query q;
        q.agent_id = fmt::format("agent-{}", agent);
        q.newest_first = newest_first;
        q.limit = 2;
        std::vector<uint64_t> seqs;
        for (int page = 0; page < 20; ++page) {
          auto res = ledger.Find(q);
          EXPECT_TRUE(res.ok()) << res.status().ToString();
          if (!res.ok()) break;
          for (const auto& e : res->encoded) seqs.push_back(Decoded(e).seq);
          if (res->next_cursor.empty()) break;
          q.cursor = res->next_cursor;
        }
        out.push_back(seqs);
      }
    }
    return out;
  }

  static std::vector<std::vector<uint64_t>> FindAllByAgent(const std::string& path) {
    auto reader = Ledger::OpenReader(path);
    EXPECT_TRUE(reader.ok()) << reader.status().ToString();
    if (!reader.ok()) return {};
    return FindAllByAgent(**reader);
  }
};

TEST_F(IndexMark, ACrashBeforeThePostingsAreWrittenLosesNoQueryResult) {
  const auto expected = FindAllByAgent(Fresh());
  ASSERT_EQ(expected.size(), 10u);
  size_t found = 0;
  for (const auto& seqs : expected) found += seqs.size();
  ASSERT_EQ(found, 2 * kRecords);  // each record once per direction

  VerifyReport r = Tampered([](RawDb& raw) { CrashedAfter(raw, 10); });
  EXPECT_TRUE(r.ok) << Describe(r);
  EXPECT_EQ(FindAllByAgent(last_path_), expected) << "records 11..20 are read, not looked up";

  r = Tampered([](RawDb& raw) { CrashedAfter(raw, 0); });
  EXPECT_TRUE(r.ok) << Describe(r);
  EXPECT_EQ(FindAllByAgent(last_path_), expected) << "no postings at all";

  // Opening as the writer rebuilds the missing postings.
  auto ledger = OpenOrDie(last_path_);
  ASSERT_NE(ledger, nullptr);
  EXPECT_EQ(FindAllByAgent(*ledger), expected);
  ASSERT_TRUE(ledger->Close().ok());
  {
    auto raw = RawDb::Open(last_path_);
    ASSERT_NE(raw, nullptr);
    EXPECT_EQ(raw->Get(raw->meta(), std::string(kMetaIndexedKey)), EncodeIndexed(kRecords));
  }
  r = VerifyWithReader(last_path_);
  EXPECT_TRUE(r.ok) << Describe(r);
  EXPECT_EQ(FindAllByAgent(last_path_), expected);
}

TEST_F(IndexMark, PostingsPastTheMarkOrAMarkPastTheHeadAreReported) {
  // Postings of records 11..20 present but the mark at 10: the writer never
  // leaves that (postings and mark are one write).
  ExpectIndexProblem(
      [](RawDb& raw) { raw.Put(raw.meta(), std::string(kMetaIndexedKey), EncodeIndexed(10)); },
      11, "postings past the index mark");
  ExpectIndexProblem(
      [](RawDb& raw) {
        raw.Put(raw.meta(), std::string(kMetaIndexedKey), EncodeIndexed(kRecords + 3));
      },
      kRecords + 3, "index mark past the head");
  EXPECT_TRUE(Ledger::Open(last_path_).status().IsCorruption());
  ExpectIndexProblem(
      [](RawDb& raw) { raw.Put(raw.meta(), std::string(kMetaIndexedKey), "\x05"); }, kRecords,
      "index mark of 1 byte", /*names_seq=*/false);
  EXPECT_TRUE(Ledger::Open(last_path_).status().IsCorruption());
}

TEST_F(VerifyTamper, VerifiesOnlyTheRequestedRange) {
  // Record 15 tampered (a body byte): ranges that exclude it pass.
  const std::string path = Fresh();
  {
    auto raw = RawDb::Open(path);
    ASSERT_NE(raw, nullptr);
    std::string v = Value(*raw, 15);
    v[codec::kHeaderBytes + 2] = static_cast<char>(v[codec::kHeaderBytes + 2] ^ 0x01);
    raw->Put(raw->records(), SeqKey(15), v);
  }
  auto reader = Ledger::OpenReader(path);
  ASSERT_TRUE(reader.ok());
  auto verify = [&](std::optional<uint64_t> from, std::optional<uint64_t> to) {
    VerifyOptions o;
    o.from_seq = from;
    o.to_seq = to;
    return (*reader)->Verify(o);
  };
  VerifyReport r = verify(1, 10);
  EXPECT_TRUE(r.ok) << Describe(r);
  EXPECT_EQ(r.records_checked, 10u);
  EXPECT_EQ(r.from_seq, 1u);
  EXPECT_EQ(r.to_seq, 10u);
  r = verify(std::nullopt, 14);
  EXPECT_TRUE(r.ok) << Describe(r);
  EXPECT_EQ(r.records_checked, 14u);
  r = verify(16, std::nullopt);
  EXPECT_TRUE(r.ok) << Describe(r);
  EXPECT_EQ(r.records_checked, 5u);
  EXPECT_EQ(r.to_seq, kRecords);
  ExpectProblem(verify(11, 20), VerifyProblem::kHashMismatch, 15, "range 11..20");
  ExpectProblem(verify(15, 15), VerifyProblem::kHashMismatch, 15, "range 15..15");
  ExpectProblem(verify(std::nullopt, std::nullopt), VerifyProblem::kHashMismatch, 15, "all");
  // to_seq past the head is clamped to it; from 0 means from 1.
  r = verify(0, 1000);
  EXPECT_EQ(r.to_seq, kRecords);
  EXPECT_EQ(r.from_seq, 1u);
  EXPECT_EQ(r.bad_seq, 15u);
  // A reversed range is a mistake, not an empty range that passes.
  r = verify(10, 5);
  EXPECT_FALSE(r.ok) << Describe(r);
  EXPECT_TRUE(r.error.IsInvalidArgument()) << Describe(r);
  EXPECT_EQ(r.error.message(),
            "verify: from_seq 10 is after to_seq 5; the range is inclusive, from_seq <= to_seq");
  EXPECT_EQ(r.records_checked, 0u);
}

TEST_F(VerifyTamper, VerifyingFromPastTheHeadChecksNothingAndPasses) {
  // "Verify what was appended since my last check" when nothing was.
  const std::string path = Fresh();
  VerifyOptions o;
  o.from_seq = kRecords + 1;
  VerifyReport r = VerifyWithReader(path, o);
  EXPECT_TRUE(r.ok) << Describe(r);
  EXPECT_EQ(r.records_checked, 0u);
  EXPECT_EQ(r.problem, VerifyProblem::kNone);
  // ... but records appended behind the ledger's back past the head still show.
  o.from_seq = kRecords + 1;
  r = Tampered([](RawDb& raw) { raw.Put(raw.records(), SeqKey(kRecords + 1), Value(raw, 1)); },
               o);
  ExpectProblem(r, VerifyProblem::kExtraRecords, kRecords + 1, "extra record, from past head");
}

TEST_F(VerifyTamper, RangeStartingAfterAMissingRecordReportsTheGapBeforeIt) {
  VerifyOptions o;
  o.from_seq = 10;
  VerifyReport r =
      Tampered([](RawDb& raw) { raw.Delete(raw.records(), SeqKey(9)); }, o);
  ExpectProblem(r, VerifyProblem::kGap, 9, "record 9 missing, verify from 10");
}

TEST_F(VerifyTamper, IndexCheckOfARangeLooksOnlyAtThatRange) {
  VerifyOptions late;
  late.from_seq = 10;
  VerifyReport r = Tampered(
      [](RawDb& raw) { raw.Delete(raw.index(), index::TimeKey(SampleRecord(6).timestamp_ns, 7)); },
      late);
  EXPECT_TRUE(r.ok) << Describe(r);
  VerifyOptions early;
  early.to_seq = 9;
  ExpectProblem(VerifyWithReader(last_path_, early), VerifyProblem::kIndexInconsistent, 7,
                "time entry of 7 deleted, verify 1..9");
}

// Progress and cancellation need more than one chunk of records (2048).
class VerifyProgress : public ::testing::Test {
 protected:
  static constexpr uint64_t kMany = 5000;
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    auto ledger = OpenOrDie(dir_->Sub("big"));
    ASSERT_NE(ledger, nullptr);
    std::vector<Record> records;
    for (uint64_t i = 0; i < kMany; ++i) records.push_back(SampleRecord(static_cast<int>(i)));
    ASSERT_TRUE(ledger->AppendBatch(records, Durability::kSync).ok());
    ASSERT_TRUE(ledger->Close().ok());
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static VerifyReport Run(VerifyOptions o) {
    auto reader = Ledger::OpenReader(dir_->Sub("big"));
    EXPECT_TRUE(reader.ok()) << reader.status().ToString();
    if (!reader.ok()) return {};
    return (*reader)->Verify(o);
  }
  static inline TempDir* dir_ = nullptr;
};

TEST_F(VerifyProgress, ReportsMonotonicProgressEndingAtTheTotal) {
  for (bool indexes : {true, false}) {
    SCOPED_TRACE(indexes ? "with indexes" : "chain only");
    std::vector<std::pair<uint64_t, uint64_t>> calls;
    VerifyOptions o;
    o.check_indexes = indexes;
    o.threads = 2;
    o.progress = [&](uint64_t done, uint64_t total) {
      calls.emplace_back(done, total);
      return true;
    };
    VerifyReport r = Run(o);
    ASSERT_TRUE(r.ok) << Describe(r);
    EXPECT_EQ(r.records_checked, kMany);
    // Records to check: each record once, and once more for the indexes.
    const uint64_t total = indexes ? 2 * kMany : kMany;
    ASSERT_FALSE(calls.empty());
    for (size_t i = 0; i < calls.size(); ++i) {
      EXPECT_EQ(calls[i].second, total) << "call " << i;
      EXPECT_LE(calls[i].first, total) << "call " << i;
      if (i > 0) {
        EXPECT_GE(calls[i].first, calls[i - 1].first) << "call " << i;
      }
    }
    EXPECT_EQ(calls.back(), std::make_pair(total, total)) << "a finished run ends at the total";
    if (indexes) {
      const size_t in_index_pass = std::count_if(calls.begin(), calls.end() - 1, [](auto& c) {
        return c.first > kMany;
      });
      EXPECT_GT(in_index_pass, 0u) << "the index pass reports progress too";
    }
  }
}

TEST_F(VerifyProgress, ReturningFalseCancelsAndStopsCalling) {
  // With indexes checked the callback is always called before the end (at
  // least once per index kind), so the first call can always cancel.
  int calls = 0;
  VerifyOptions o;
  o.progress = [&](uint64_t, uint64_t) {
    ++calls;
    return false;
  };
  VerifyReport r = Run(o);
  EXPECT_FALSE(r.ok);
  EXPECT_TRUE(r.cancelled);
  EXPECT_EQ(r.problem, VerifyProblem::kNone);
  EXPECT_TRUE(r.error.ok());
  EXPECT_EQ(r.message, "verification cancelled");
  EXPECT_EQ(calls, 1) << "no more calls after the callback said stop";
  EXPECT_LE(r.records_checked, kMany);
}

TEST_F(VerifyProgress, ReturningFalseCancelsDuringTheIndexPass) {
  bool stopped = false;
  int calls_after_stop = 0;
  uint64_t stopped_at = 0;
  VerifyOptions o;
  o.progress = [&](uint64_t done, uint64_t) {
    if (stopped) {
      ++calls_after_stop;
      return false;
    }
    if (done > kMany) {  // the index pass has made progress
      stopped = true;
      stopped_at = done;
      return false;
    }
    return true;
  };
  VerifyReport r = Run(o);
  EXPECT_FALSE(r.ok) << Describe(r);
  EXPECT_TRUE(r.cancelled);
  EXPECT_EQ(r.problem, VerifyProblem::kNone) << "a cancelled index pass proves nothing wrong";
  EXPECT_EQ(r.message, "verification cancelled");
  EXPECT_EQ(r.records_checked, kMany) << "the record pass had finished";
  ASSERT_TRUE(stopped);
  EXPECT_LT(stopped_at, 2 * kMany);
  EXPECT_EQ(calls_after_stop, 0) << "the index pass must stop when told to";
}

}  // namespace
}  // namespace bastion
