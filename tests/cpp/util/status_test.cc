#include "bastion/status.h"

#include <memory>
#include <string>
#include <utility>

#include <gtest/gtest.h>

namespace bastion {
namespace {

using Code = Status::Code;

TEST(Status, DefaultIsOkWithEmptyMessage) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.code(), Code::kOk);
  EXPECT_EQ(s.message(), "");
  EXPECT_EQ(s.ToString(), "OK");
  EXPECT_TRUE(Status::OK().ok());
}

TEST(Status, EachFactorySetsItsCodeAndPredicate) {
  struct Case {
    Status status;
    Code code;
    const char* prefix;
  } cases[] = {
      {Status::InvalidArgument("m"), Code::kInvalidArgument, "Invalid argument: m"},
      {Status::NotFound("m"), Code::kNotFound, "Not found: m"},
      {Status::Corruption("m"), Code::kCorruption, "Corruption: m"},
      {Status::IOError("m"), Code::kIOError, "IO error: m"},
      {Status::Busy("m"), Code::kBusy, "Busy: m"},
      {Status::FailedPrecondition("m"), Code::kFailedPrecondition, "Failed precondition: m"},
      {Status::Internal("m"), Code::kInternal, "Internal error: m"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.prefix);
    EXPECT_FALSE(c.status.ok());
    EXPECT_EQ(c.status.code(), c.code);
    EXPECT_EQ(c.status.message(), "m");
    EXPECT_EQ(c.status.ToString(), c.prefix);
    EXPECT_EQ(c.status.IsInvalidArgument(), c.code == Code::kInvalidArgument);
    EXPECT_EQ(c.status.IsNotFound(), c.code == Code::kNotFound);
    EXPECT_EQ(c.status.IsCorruption(), c.code == Code::kCorruption);
    EXPECT_EQ(c.status.IsIOError(), c.code == Code::kIOError);
    EXPECT_EQ(c.status.IsBusy(), c.code == Code::kBusy);
    EXPECT_EQ(c.status.IsFailedPrecondition(), c.code == Code::kFailedPrecondition);
  }
}

TEST(Status, CodeNameCoversEveryCode) {
  EXPECT_STREQ(Status::CodeName(Code::kOk), "OK");
  EXPECT_STREQ(Status::CodeName(Code::kInvalidArgument), "Invalid argument");
  EXPECT_STREQ(Status::CodeName(Code::kNotFound), "Not found");
  EXPECT_STREQ(Status::CodeName(Code::kCorruption), "Corruption");
  EXPECT_STREQ(Status::CodeName(Code::kIOError), "IO error");
  EXPECT_STREQ(Status::CodeName(Code::kBusy), "Busy");
  EXPECT_STREQ(Status::CodeName(Code::kFailedPrecondition), "Failed precondition");
  EXPECT_STREQ(Status::CodeName(Code::kInternal), "Internal error");
}

TEST(Status, AnErrorWithAnEmptyMessageIsStillAnError) {
  Status s = Status::Corruption("");
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(s.IsCorruption());
  EXPECT_EQ(s.ToString(), "Corruption: ");
}

TEST(Status, CopiesAreDeepAndIndependent) {
  Status a = Status::NotFound("record 7");
  Status b = a;
  EXPECT_EQ(b.code(), Code::kNotFound);
  EXPECT_EQ(b.message(), "record 7");
  a = Status::Busy("other");
  EXPECT_EQ(b.ToString(), "Not found: record 7") << "the copy must not share state";
  Status c;
  c = b;
  EXPECT_EQ(c.ToString(), "Not found: record 7");
  c = Status::OK();
  EXPECT_TRUE(c.ok());
  EXPECT_FALSE(b.ok());
  b = c;  // assigning OK over an error clears it
  EXPECT_TRUE(b.ok());
  Status f = Status::IOError("x");
  Status& alias = f;
  f = alias;  // self-assignment keeps the value
  EXPECT_EQ(f.ToString(), "IO error: x");
}

TEST(Status, MovesTransferTheError) {
  Status a = Status::Corruption("bad");
  Status b = std::move(a);
  EXPECT_EQ(b.ToString(), "Corruption: bad");
  Status c;
  c = std::move(b);
  EXPECT_EQ(c.ToString(), "Corruption: bad");
}

TEST(Status, WithContextPrefixesTheMessageAndKeepsTheCode) {
  Status s = Status::Corruption("chain hash mismatch").WithContext("record 17");
  EXPECT_TRUE(s.IsCorruption());
  EXPECT_EQ(s.message(), "record 17: chain hash mismatch");
  EXPECT_EQ(s.ToString(), "Corruption: record 17: chain hash mismatch");
  EXPECT_EQ(s.WithContext("ledger").message(), "ledger: record 17: chain hash mismatch");
}

TEST(Status, WithContextOnOkStaysOk) {
  Status s = Status::OK().WithContext("anything");
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.message(), "");
}

TEST(Result, HoldsAValue) {
  Result<int> r = 42;
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r.status().ok());
  EXPECT_EQ(*r, 42);
  EXPECT_EQ(r.value(), 42);
  *r = 7;
  EXPECT_EQ(r.value(), 7);
}

TEST(Result, HoldsAnError) {
  Result<int> r = Status::NotFound("no record 3");
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsNotFound());
  EXPECT_EQ(r.status().message(), "no record 3");
}

TEST(Result, SupportsMoveOnlyValuesAndArrow) {
  Result<std::unique_ptr<std::string>> r = std::make_unique<std::string>("ledger");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(**r, "ledger");
  std::unique_ptr<std::string> taken = std::move(r).value();
  EXPECT_EQ(*taken, "ledger");

  Result<std::string> s = std::string("abc");
  EXPECT_EQ(s->size(), 3u);
  std::string moved = *std::move(s);
  EXPECT_EQ(moved, "abc");
}

Status FailsAt(int step, int* reached) {
  for (int i = 0; i < 3; ++i) {
    BASTION_RETURN_IF_ERROR(i == step ? Status::IOError("step " + std::to_string(i))
                                      : Status::OK());
    *reached = i;
  }
  return Status::OK();
}

TEST(Status, ReturnIfErrorReturnsTheFirstErrorAndStops) {
  int reached = -1;
  Status s = FailsAt(1, &reached);
  EXPECT_EQ(s.ToString(), "IO error: step 1");
  EXPECT_EQ(reached, 0);
  reached = -1;
  EXPECT_TRUE(FailsAt(5, &reached).ok());
  EXPECT_EQ(reached, 2);
}

}  // namespace
}  // namespace bastion
