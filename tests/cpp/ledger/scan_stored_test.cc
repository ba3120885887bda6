#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "bastion/ledger.h"
#include "test_util.h"

namespace bastion {
namespace {

using testing::OpenOrDie;
using testing::SampleRecord;
using testing::TempDir;

TEST(ScanStored, YieldsTheStoredValuesOfARangeInOrder) {
  TempDir dir;
  auto ledger = OpenOrDie(dir.Sub("l"));
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(ledger->Append(SampleRecord(i)).ok());
  ASSERT_TRUE(ledger->Flush().ok());
  std::vector<uint64_t> seqs;
  Status s = ledger->ScanStored(5, 9, [&](uint64_t seq, std::string_view stored) {
    seqs.push_back(seq);
    auto decoded = DecodeStoredRecord(stored);
    EXPECT_TRUE(decoded.ok()) << decoded.status().ToString();
    auto got = ledger->Get(seq);
    EXPECT_TRUE(got.ok());
    if (decoded.ok() && got.ok()) {
      EXPECT_EQ(decoded->seq, seq);
      EXPECT_EQ(decoded->hash, got->hash);
      EXPECT_EQ(decoded->record, got->record);
    }
    return true;
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(seqs, (std::vector<uint64_t>{5, 6, 7, 8, 9}));
}

TEST(ScanStored, StopsWhenTheCallbackSaysSoAndEndsAtTheHead) {
  TempDir dir;
  auto ledger = OpenOrDie(dir.Sub("l"));
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(ledger->Append(SampleRecord(i)).ok());
  ASSERT_TRUE(ledger->Flush().ok());
  std::vector<uint64_t> seqs;
  ASSERT_TRUE(ledger->ScanStored(1, 100, [&](uint64_t seq, std::string_view) {
    seqs.push_back(seq);
    return seq < 3;
  }).ok());
  EXPECT_EQ(seqs, (std::vector<uint64_t>{1, 2, 3}));
  seqs.clear();
  ASSERT_TRUE(ledger->ScanStored(4, UINT64_MAX, [&](uint64_t seq, std::string_view) {
    seqs.push_back(seq);
    return true;
  }).ok());
  EXPECT_EQ(seqs, (std::vector<uint64_t>{4, 5, 6}));
  seqs.clear();
  ASSERT_TRUE(ledger->ScanStored(7, 9, [&](uint64_t seq, std::string_view) {
    seqs.push_back(seq);
    return true;
  }).ok());
  EXPECT_TRUE(seqs.empty());
}

TEST(ScanStored, RejectsAReversedRangeAndAClosedLedger) {
  TempDir dir;
  auto ledger = OpenOrDie(dir.Sub("l"));
  const auto none = [](uint64_t, std::string_view) { return true; };
  Status s = ledger->ScanStored(5, 4, none);
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  ASSERT_TRUE(ledger->Close().ok());
  EXPECT_TRUE(ledger->ScanStored(1, 2, none).IsFailedPrecondition());
}

}  // namespace
}  // namespace bastion
