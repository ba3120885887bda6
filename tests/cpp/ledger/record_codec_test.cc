#include "ledger/record_codec.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "bastion/ledger.h"
#include "ledger/raw_store.h"
#include "util/sha256.h"
#include "test_util.h"

namespace bastion {
namespace {

using testing::SampleRecord;

constexpr uint8_t kSaltA[codec::kSaltBytes] = {1, 2,  3,  4,  5,  6,  7,  8,
                                               9, 10, 11, 12, 13, 14, 15, 16};
constexpr uint8_t kSaltB[codec::kSaltBytes] = {0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7,
                                               0xA8, 0xA9, 0xAA, 0xAB, 0xAC, 0xAD, 0xAE, 0xAF};

std::string Encode(const Record& r, const uint8_t* salt = kSaltA, Hash* digest = nullptr) {
  std::string value;
  Hash d;
  codec::EncodeValue(r, salt, &value, digest ? digest : &d);
  return value;
}

std::string Var(uint64_t v) {
  std::string s;
  codec::PutVarint(&s, v);
  return s;
}
std::string T(Field f) { return Var(codec::TagOf(f)); }
std::string S(std::string_view s) { return Var(s.size()) + std::string(s); }

std::string Hex(std::string_view s) {
  std::string out;
  for (unsigned char c : s) out += fmt::format("{:02x}", c);
  return out;
}

// Records every visit, in order, as text.
class Capture final : public codec::FieldVisitor {
 public:
  std::vector<std::string> events;
  void OnString(Field f, std::string_view v) override {
    events.push_back(fmt::format("{}={}", FieldName(f), v));
  }
  void OnUint(Field f, uint64_t v) override {
    events.push_back(fmt::format("{}=u{}", FieldName(f), v));
  }
  void OnInt(Field f, int64_t v) override {
    events.push_back(fmt::format("{}=i{}", FieldName(f), v));
  }
  void OnReason(std::string_view p, std::string_view m) override {
    events.push_back(fmt::format("reason={}|{}", p, m));
  }
  void OnAttribute(std::string_view k, std::string_view v) override {
    events.push_back(fmt::format("attr={}|{}", k, v));
  }
};

// Copies field `f` of `from` into `to`.
void CopyField(const Record& from, Field f, Record* to) {
  switch (TypeOf(f)) {
    case FieldType::kString: *StringField(*to, f) = *StringField(from, f); break;
    case FieldType::kUint: *UintField(*to, f) = *UintField(const_cast<Record&>(from), f); break;
    case FieldType::kInt:
      if (f == Field::kStepIndex) {
        to->step_index = from.step_index;
      } else {
        *IntField(*to, f) = *IntField(const_cast<Record&>(from), f);
      }
      break;
    case FieldType::kReasons: to->reasons = from.reasons; break;
    case FieldType::kAttributes: to->attributes = from.attributes; break;
  }
}

Record EveryFieldSet() {
  Record r;
  for (int i = 0; i < kFieldCount; ++i) {
    const Field f = static_cast<Field>(i);
    if (std::string* s = StringField(r, f)) *s = fmt::format("{}-v\xc3\xa9", FieldName(f));
  }
  r.effect = "modify";
  r.tokens = {1, 2, 3, 4, 5};
  r.cost_nanousd = 6;
  r.timestamp_ns = 7;
  r.duration_ns = 8;
  r.step_index = 9;
  r.reasons = {{"p1", "m1"}, {"p2", "m2"}};
  r.attributes = {{"a", "1"}, {"b", "2"}};
  return r;
}

// ---------------------------------------------------------------------------
// Wire constants: changing any of these changes the on-disk format.

TEST(RecordCodec, FieldTagsAndLayoutConstantsAreStable) {
  EXPECT_EQ(codec::TagOf(Field::kAgentId), 1u);
  EXPECT_EQ(codec::TagOf(Field::kUserId), 4u);
  EXPECT_EQ(codec::TagOf(Field::kAction), 6u);
  EXPECT_EQ(codec::TagOf(Field::kInputTokens), 13u);
  EXPECT_EQ(codec::TagOf(Field::kCostUsd), 18u);
  EXPECT_EQ(codec::TagOf(Field::kReasons), 20u);
  EXPECT_EQ(codec::TagOf(Field::kTimestampNs), 21u);
  EXPECT_EQ(codec::TagOf(Field::kStepIndex), 29u);
  EXPECT_EQ(codec::TagOf(Field::kAttributes), 34u);
  EXPECT_EQ(kFieldCount, 34);
  EXPECT_EQ(codec::kOffSeq, 2u);
  EXPECT_EQ(codec::kOffPrevHash, 10u);
  EXPECT_EQ(codec::kOffHash, 42u);
  EXPECT_EQ(codec::kOffBodyLen, 74u);
  EXPECT_EQ(codec::kHeaderBytes, 78u);
}

TEST(RecordCodec, EncodesAMinimalRecordToTheDocumentedBytes) {
  Record r;
  r.action = "x";
  Hash digest;
  const std::string value = Encode(r, kSaltA, &digest);
  std::string expected(78, '\0');
  expected[0] = 1;  // version; flags, seq, prev_hash and hash stay zero
  expected[74] = 3;  // body_len, little-endian
  expected += std::string("\x06\x01x", 3);  // tag 6 (action), length 1, "x"
  expected += std::string("\x10\x00\x00\x00", 4);  // personal_len 16: the salt alone
  expected.append(reinterpret_cast<const char*>(kSaltA), 16);
  EXPECT_EQ(Hex(value), Hex(expected));
  EXPECT_EQ(digest, codec::PersonalDigest(std::string_view(expected).substr(85)));
}

TEST(RecordCodec, EncodesNumbersAsMinimalZigZagVarints) {
  Record r;
  r.action = "a";
  r.tokens.input = 300;
  r.cost_nanousd = 1;
  r.duration_ns = 64;
  r.step_index = 0;
  std::string body;
  codec::EncodeSection(r, /*personal=*/false, &body);
  // action | input_tokens 300 = ac 02 | cost zigzag(1) = 2 | duration zigzag(64) = 128 = 80 01
  // | step_index 0 is stored because it is set.
  EXPECT_EQ(Hex(body), "060161" "0dac02" "1202" "168001" "1d00");
}

TEST(RecordCodec, PersonalFieldsGoOnlyIntoThePersonalSection) {
  for (int i = 0; i < kFieldCount; ++i) {
    const Field f = static_cast<Field>(i);
    Record full = EveryFieldSet();
    Record one;
    CopyField(full, f, &one);
    std::string pub, personal;
    codec::EncodeSection(one, false, &pub);
    codec::EncodeSection(one, true, &personal);
    const bool is_personal = IsPersonalField(f);
    EXPECT_EQ(pub.empty(), is_personal) << FieldName(f);
    EXPECT_EQ(personal.empty(), !is_personal) << FieldName(f);
    const std::string& section = is_personal ? personal : pub;
    ASSERT_FALSE(section.empty()) << FieldName(f);
    std::string_view in = section;
    uint64_t tag;
    ASSERT_TRUE(codec::GetVarint(&in, &tag));
    EXPECT_EQ(tag, codec::TagOf(f)) << FieldName(f);
  }
  const std::set<Field> expected_personal = {Field::kUserId, Field::kInputSummary,
                                             Field::kOutputSummary, Field::kApprovedBy,
                                             Field::kAttributes};
  for (int i = 0; i < kFieldCount; ++i) {
    const Field f = static_cast<Field>(i);
    EXPECT_EQ(IsPersonalField(f), expected_personal.count(f) == 1) << FieldName(f);
  }
}

// ---------------------------------------------------------------------------
// Round trips.

struct RoundTripCase {
  std::string name;
  Record record;
};

std::vector<RoundTripCase> RoundTripCases() {
  std::vector<RoundTripCase> cases;
  for (int i = 0; i < 24; ++i) cases.push_back({fmt::format("SampleRecord({})", i), SampleRecord(i)});
  {
    Record r;
    r.action = "model_call";
    cases.push_back({"only action", r});
  }
  {
    Record r = SampleRecord(5);
    r.step_index = 0;
    cases.push_back({"step_index zero", r});
  }
  {
    Record r = SampleRecord(5);
    r.step_index.reset();
    cases.push_back({"step_index unset", r});
  }
  {
    Record r;
    r.action = "budget_alert";
    const uint64_t u = std::numeric_limits<uint64_t>::max();
    const int64_t i = std::numeric_limits<int64_t>::max();
    r.tokens = {u, u - 1, u, 1ULL << 63, (1ULL << 63) - 1};
    r.cost_nanousd = i;
    r.timestamp_ns = i;
    r.duration_ns = i - 1;
    r.step_index = i;
    cases.push_back({"huge ints", r});
  }
  {
    Record r;
    r.action = "a";
    r.tokens = {1, 127, 128, 16383, 16384};
    r.cost_nanousd = 63;
    r.timestamp_ns = 64;
    r.duration_ns = 8191;
    r.step_index = 8192;
    cases.push_back({"varint length boundaries", r});
  }
  cases.push_back({"every field set", EveryFieldSet()});
  {
    Record r;
    r.action = "\xe6\x97\xa5\xe6\x9c\xac";
    r.user_id = "\xf0\x9f\x98\x80 user";
    r.agent_id = "agent\xc3\xa9";
    r.attributes = {{"\xc3\xa9t\xc3\xa9", "\xe2\x82\xac"}};
    cases.push_back({"non-ASCII text", r});
  }
  {
    Record r;
    r.action = "a";
    r.reasons = {{"p", ""}, {"", "m"}, {"", ""}};
    r.attributes = {{"empty", ""}, {"k", "v"}};
    cases.push_back({"empty reason parts and attribute values", r});
  }
  {
    Record r;
    r.action = "a";
    r.input_summary.assign(kMaxSummaryBytes, 'i');
    for (size_t k = 0; k < kMaxSummaryBytes / 4; ++k) r.output_summary += "\xf0\x9f\x98\x80";
    r.run_id.assign(kMaxIdBytes, 'r');
    cases.push_back({"maximum-size strings", r});
  }
  {
    Record r;
    r.action = "a";
    for (size_t k = 0; k < kMaxAttributes; ++k) {
      r.attributes.emplace_back(fmt::format("key-{:04}", k), fmt::format("v{}", k));
    }
    for (size_t k = 0; k < kMaxReasons; ++k) {
      r.reasons.push_back({fmt::format("p{}", k), fmt::format("m{}", k)});
    }
    cases.push_back({"maximum counts of attributes and reasons", r});
  }
  {
    Record r;
    r.action = "a";
    r.user_id = "only-personal";
    cases.push_back({"a single personal field", r});
  }
  return cases;
}

TEST(RecordCodec, RoundTripsEveryFieldOfEveryCase) {
  for (RoundTripCase& c : RoundTripCases()) {
    SCOPED_TRACE(c.name);
    ASSERT_TRUE(ValidateRecord(c.record).ok()) << ValidateRecord(c.record).ToString();
    const std::string value = Encode(c.record);
    StoredRecord out;
    Status s = codec::DecodeValue(value, &out);
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_EQ(out.record, c.record);
    EXPECT_EQ(out.record.step_index.has_value(), c.record.step_index.has_value());
    EXPECT_FALSE(out.personal_data_erased);
    EXPECT_EQ(out.seq, 0u);
    EXPECT_EQ(out.prev_hash, Hash{});
    EXPECT_EQ(out.hash, Hash{});
    // The public API decodes the same way.
    auto pub = DecodeStoredRecord(value);
    ASSERT_TRUE(pub.ok()) << pub.status().ToString();
    EXPECT_EQ(pub->record, c.record);
  }
}

TEST(RecordCodec, RoundTripsNegativeNumbersThroughZigZag) {
  // ValidateRecord rejects negative values, but the codec itself must be
  // sign-agnostic: a negative int is never mistaken for a huge one.
  Record r;
  r.action = "a";
  r.cost_nanousd = std::numeric_limits<int64_t>::min();
  r.timestamp_ns = -1;
  r.duration_ns = -64;
  r.step_index = -1;
  StoredRecord out;
  ASSERT_TRUE(codec::DecodeValue(Encode(r), &out).ok());
  EXPECT_EQ(out.record, r);
}

TEST(RecordCodec, StepIndexZeroIsStoredButUnsetIsNot) {
  Record unset;
  unset.action = "a";
  Record zero = unset;
  zero.step_index = 0;
  const std::string a = Encode(unset), b = Encode(zero);
  EXPECT_NE(a, b);
  EXPECT_EQ(b.size(), a.size() + 2) << "tag 29 and a zero varint";
  StoredRecord da, db;
  ASSERT_TRUE(codec::DecodeValue(a, &da).ok());
  ASSERT_TRUE(codec::DecodeValue(b, &db).ok());
  EXPECT_FALSE(da.record.step_index.has_value());
  ASSERT_TRUE(db.record.step_index.has_value());
  EXPECT_EQ(*db.record.step_index, 0);
}

TEST(RecordCodec, ZeroNumbersAndEmptyStringsAreNotStored) {
  Record r;
  r.action = "a";
  r.agent_id = "";
  r.tokens = {};
  r.cost_nanousd = 0;
  Record only_action;
  only_action.action = "a";
  EXPECT_EQ(Encode(r), Encode(only_action));
  EXPECT_EQ(Encode(r).size(), codec::kHeaderBytes + 3 + 4 + codec::kSaltBytes);
}

// ---------------------------------------------------------------------------
// Canonical encoding.

TEST(RecordCodec, SameRecordAndSaltGiveIdenticalBytes) {
  for (RoundTripCase& c : RoundTripCases()) {
    ASSERT_TRUE(ValidateRecord(c.record).ok()) << c.name;
    Record copy = c.record;
    Hash d1, d2;
    EXPECT_EQ(Encode(c.record, kSaltA, &d1), Encode(copy, kSaltA, &d2)) << c.name;
    EXPECT_EQ(d1, d2) << c.name;
  }
}

TEST(RecordCodec, DecodingAndReencodingReproducesTheExactBytes) {
  for (RoundTripCase& c : RoundTripCases()) {
    ASSERT_TRUE(ValidateRecord(c.record).ok()) << c.name;
    const std::string value = Encode(c.record, kSaltB);
    StoredRecord out;
    ASSERT_TRUE(codec::DecodeValue(value, &out).ok()) << c.name;
    EXPECT_EQ(Encode(out.record, kSaltB), value) << c.name;
  }
}

TEST(RecordCodec, AttributeOrderDoesNotChangeTheValidatedEncoding) {
  Record a = SampleRecord(3);
  a.attributes = {{"zeta", "1"}, {"alpha", "2"}, {"mid", "3"}};
  Record b = SampleRecord(3);
  b.attributes = {{"mid", "3"}, {"zeta", "1"}, {"alpha", "2"}};
  ASSERT_TRUE(ValidateRecord(a).ok());
  ASSERT_TRUE(ValidateRecord(b).ok());
  EXPECT_EQ(Encode(a), Encode(b));
  StoredRecord out;
  ASSERT_TRUE(codec::DecodeValue(Encode(a), &out).ok());
  ASSERT_EQ(out.record.attributes.size(), 3u);
  EXPECT_EQ(out.record.attributes[0].first, "alpha");
  EXPECT_EQ(out.record.attributes[2].first, "zeta");
}

TEST(RecordCodec, SaltChangesOnlyThePersonalSectionAndItsDigest) {
  Record r = SampleRecord(4);
  ASSERT_TRUE(ValidateRecord(r).ok());
  Hash da, db;
  const std::string a = Encode(r, kSaltA, &da), b = Encode(r, kSaltB, &db);
  ASSERT_EQ(a.size(), b.size());
  codec::ValueView va, vb;
  ASSERT_TRUE(codec::ParseValue(a, &va).ok());
  ASSERT_TRUE(codec::ParseValue(b, &vb).ok());
  EXPECT_EQ(va.body, vb.body);
  EXPECT_EQ(va.personal.substr(codec::kSaltBytes), vb.personal.substr(codec::kSaltBytes));
  EXPECT_NE(va.personal.substr(0, codec::kSaltBytes), vb.personal.substr(0, codec::kSaltBytes));
  EXPECT_NE(da, db) << "the salt must hide equal personal data behind different digests";
  EXPECT_EQ(da, codec::PersonalDigest(va.personal));
  EXPECT_EQ(db, codec::PersonalDigest(vb.personal));
}

TEST(RecordCodec, PersonalDigestIsSha256OfDomainSaltAndSection) {
  const std::string section = std::string(reinterpret_cast<const char*>(kSaltA), 16) + "section";
  EXPECT_EQ(codec::PersonalDigest(section), Sha256::Digest("BSTNPII1" + section));
}

// ---------------------------------------------------------------------------
// Varints and fixed-width helpers.

TEST(RecordCodec, VarintsRoundTripAndUseMinimalLength) {
  std::vector<uint64_t> values = {0, 1, 127, 128, 255, 300, 16383, 16384,
                                  std::numeric_limits<uint64_t>::max()};
  for (int b = 0; b < 64; ++b) {
    values.push_back(1ULL << b);
    values.push_back((1ULL << b) - 1);
    values.push_back((1ULL << b) + 1);
  }
  for (uint64_t v : values) {
    const std::string enc = Var(v);
    size_t bits = 0;
    for (uint64_t x = v; x; x >>= 1) ++bits;
    EXPECT_EQ(enc.size(), std::max<size_t>(1, (bits + 6) / 7)) << v;
    const std::string buffer = enc + "rest";
    std::string_view in = buffer;
    uint64_t got;
    ASSERT_TRUE(codec::GetVarint(&in, &got)) << v;
    EXPECT_EQ(got, v);
    EXPECT_EQ(in, "rest") << "GetVarint must consume exactly the varint";
  }
}

TEST(RecordCodec, GetVarintRejectsMalformedInput) {
  struct Case {
    const char* name;
    std::string bytes;
  } cases[] = {
      {"empty", ""},
      {"truncated one byte", "\x80"},
      {"truncated nine bytes", std::string(9, '\xff')},
      {"overlong zero", std::string("\x80\x00", 2)},
      {"overlong one", std::string("\x81\x00", 2)},
      {"overlong three bytes", std::string("\xff\x80\x00", 3)},
      {"over 64 bits (10th byte 2)", std::string(9, '\xff') + "\x02"},
      {"over 64 bits (10th byte 0x7f)", std::string(9, '\xff') + "\x7f"},
      {"eleven bytes", std::string(10, '\xff') + "\x01"},
  };
  for (const auto& c : cases) {
    std::string_view in = c.bytes;
    uint64_t v = 12345;
    EXPECT_FALSE(codec::GetVarint(&in, &v)) << c.name;
    EXPECT_EQ(in.size(), c.bytes.size()) << c.name << ": input must be left untouched";
  }
}

TEST(RecordCodec, FixedWidthHelpersUseTheirByteOrder) {
  std::string le, be;
  codec::PutFixed64(&le, 0x0102030405060708ULL);
  codec::PutFixed64BE(&be, 0x0102030405060708ULL);
  EXPECT_EQ(Hex(le), "0807060504030201");
  EXPECT_EQ(Hex(be), "0102030405060708");
  EXPECT_EQ(codec::GetFixed64(le.data()), 0x0102030405060708ULL);
  EXPECT_EQ(codec::GetFixed64BE(be.data()), 0x0102030405060708ULL);
  EXPECT_EQ(codec::GetFixed32(le.data()), 0x05060708u);
  const std::string high("\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8", 8);
  EXPECT_EQ(codec::GetFixed64(high.data()), 0xf8f9fafbfcfdfeffULL);
  EXPECT_EQ(codec::GetFixed64BE(high.data()), 0xfffefdfcfbfaf9f8ULL);
}

// ---------------------------------------------------------------------------
// Strict decoding of sections.

struct BadSection {
  const char* name;
  bool personal;
  std::string bytes;
  const char* message;  // expected in the Corruption message
};

std::vector<BadSection> BadSections() {
  const std::string max9(9, '\xff');
  return {
      {"tags out of order", false, T(Field::kModel) + S("m") + T(Field::kAction) + S("a"),
       "tag 6 out of order or unknown"},
      {"repeated tag", false, T(Field::kAction) + S("a") + T(Field::kAction) + S("b"),
       "tag 6 out of order or unknown"},
      {"tag zero", false, Var(0) + S("a"), "tag 0 out of order or unknown"},
      {"unknown tag 35", false, Var(35) + S("a"), "tag 35 out of order or unknown"},
      {"unknown two-byte tag", false, Var(1000) + S("a"), "tag 1000 out of order or unknown"},
      {"unknown tag after valid fields", false, T(Field::kAction) + S("a") + Var(99) + S("b"),
       "offset 3: tag 99"},
      {"personal field in the public section", false, T(Field::kUserId) + S("u"),
       "field 'user_id' in the wrong section"},
      {"public field in the personal section", true, T(Field::kAction) + S("a"),
       "field 'action' in the wrong section"},
      {"overlong tag varint", false, std::string("\x86\x00", 2) + S("a"), "offset 0: bad tag"},
      {"truncated tag varint", false, T(Field::kAction) + S("a") + "\x86", "offset 3: bad tag"},
      {"overlong string length", false, T(Field::kAction) + std::string("\x81\x00", 2) + "a",
       "bad length of action"},
      {"string length past the end", false, T(Field::kAction) + Var(5) + "ab",
       "bad length of action"},
      {"missing string length", false, T(Field::kAction), "bad length of action"},
      {"trailing tag without value", false, T(Field::kAction) + S("a") + T(Field::kModel),
       "bad length of model"},
      {"empty public string", false, T(Field::kAction) + Var(0), "empty 'action'"},
      {"empty personal string", true, T(Field::kUserId) + Var(0), "empty 'user_id'"},
      {"invalid UTF-8 byte", false, T(Field::kAction) + S("a\xff"),
       "action is not valid UTF-8"},
      {"overlong UTF-8", false, T(Field::kModel) + S("\xc0\xaf"), "model is not valid UTF-8"},
      {"UTF-8 surrogate", false, T(Field::kTool) + S("\xed\xa0\x80"), "tool is not valid UTF-8"},
      {"truncated UTF-8", true, T(Field::kUserId) + S("u\xe6\x97"),
       "user_id is not valid UTF-8"},
      {"zero input_tokens", false, T(Field::kInputTokens) + Var(0),
       "zero 'input_tokens' stored"},
      {"zero reasoning_tokens", false, T(Field::kReasoningTokens) + Var(0),
       "zero 'reasoning_tokens' stored"},
      {"zero cost", false, T(Field::kCostUsd) + Var(0), "zero 'cost_usd' stored"},
      {"zero timestamp", false, T(Field::kTimestampNs) + Var(0), "zero 'timestamp_ns' stored"},
      {"zero duration", false, T(Field::kDurationNs) + Var(0), "zero 'duration_ns' stored"},
      {"overlong number", false, T(Field::kInputTokens) + std::string("\x81\x00", 2),
       "bad number in 'input_tokens'"},
      {"overlong zero number", false, T(Field::kStepIndex) + std::string("\x80\x00", 2),
       "bad number in 'step_index'"},
      {"number over 64 bits", false, T(Field::kOutputTokens) + max9 + "\x02",
       "bad number in 'output_tokens'"},
      {"eleven-byte number", false, T(Field::kCostUsd) + max9 + "\xff\x01",
       "bad number in 'cost_usd'"},
      {"truncated number", false, T(Field::kTimestampNs) + "\x80", "bad number in 'timestamp_ns'"},
      {"zero reasons", false, T(Field::kReasons) + Var(0), "bad entry count in 'reasons'"},
      {"too many reasons", false, T(Field::kReasons) + Var(kMaxReasons + 1) + S("p") + S("m"),
       "bad entry count in 'reasons'"},
      {"overlong reason count", false,
       T(Field::kReasons) + std::string("\x81\x00", 2) + S("p") + S("m"),
       "bad entry count in 'reasons'"},
      {"reason without message", false, T(Field::kReasons) + Var(1) + S("p"),
       "bad length of reasons"},
      {"fewer reasons than counted", false, T(Field::kReasons) + Var(2) + S("p") + S("m"),
       "bad length of reasons"},
      {"invalid UTF-8 in a reason", false, T(Field::kReasons) + Var(1) + S("p") + S("\xff"),
       "reasons is not valid UTF-8"},
      {"attributes unsorted", true,
       T(Field::kAttributes) + Var(2) + S("b") + S("1") + S("a") + S("2"),
       "attribute keys not sorted and unique"},
      {"attributes with a repeated key", true,
       T(Field::kAttributes) + Var(2) + S("a") + S("1") + S("a") + S("2"),
       "attribute keys not sorted and unique"},
      {"attribute with an empty key", true, T(Field::kAttributes) + Var(1) + S("") + S("v"),
       "attribute keys not sorted and unique"},
      {"zero attributes", true, T(Field::kAttributes) + Var(0), "bad entry count in 'attributes'"},
      {"too many attributes", true, T(Field::kAttributes) + Var(kMaxAttributes + 1),
       "bad entry count in 'attributes'"},
      {"invalid UTF-8 attribute value", true, T(Field::kAttributes) + Var(1) + S("k") + S("\xfe"),
       "attributes is not valid UTF-8"},
      {"personal tags out of order", true,
       T(Field::kOutputSummary) + S("o") + T(Field::kInputSummary) + S("i"),
       "tag 11 out of order or unknown"},
  };
}

TEST(RecordCodec, DecoderRejectsEachMalformedSection) {
  for (const BadSection& c : BadSections()) {
    Capture capture;
    Status s = codec::DecodeSection(c.bytes, c.personal, &capture);
    EXPECT_TRUE(s.IsCorruption()) << c.name << ": " << s.ToString() << " for " << Hex(c.bytes);
    EXPECT_NE(s.message().find(c.message), std::string::npos)
        << c.name << ": message '" << s.message() << "' lacks '" << c.message << "'";
  }
}

TEST(RecordCodec, DecoderRejectsMalformedSectionsInsideAWholeValue) {
  for (const BadSection& c : BadSections()) {
    // Splice the bad section into a valid value's public or personal part.
    std::string body = c.personal ? T(Field::kAction) + S("a") : c.bytes;
    std::string personal = std::string(reinterpret_cast<const char*>(kSaltA), 16) +
                           (c.personal ? c.bytes : std::string());
    std::string value(codec::kHeaderBytes, '\0');
    value[0] = static_cast<char>(codec::kFormatVersion);
    const uint32_t bl = static_cast<uint32_t>(body.size());
    for (int i = 0; i < 4; ++i) value[codec::kOffBodyLen + i] = static_cast<char>(bl >> (8 * i));
    value += body;
    const uint32_t pl = static_cast<uint32_t>(personal.size());
    for (int i = 0; i < 4; ++i) value.push_back(static_cast<char>(pl >> (8 * i)));
    value += personal;
    StoredRecord out;
    Status s = codec::DecodeValue(value, &out);
    EXPECT_TRUE(s.IsCorruption()) << c.name << ": " << s.ToString();
    const char* section = c.personal ? "personal section: " : "public section: ";
    EXPECT_EQ(s.message().rfind(section, 0), 0u) << c.name << ": " << s.message();
  }
}

TEST(RecordCodec, DecoderAcceptsStrictButUnusualSections) {
  struct Case {
    const char* name;
    bool personal;
    std::string bytes;
    std::vector<std::string> events;
  } cases[] = {
      {"empty section", false, "", {}},
      {"step_index zero", false, T(Field::kStepIndex) + Var(0), {"step_index=i0"}},
      {"tags with gaps", false, T(Field::kAgentId) + S("g") + T(Field::kPolicyVersion) + S("p"),
       {"agent_id=g", "policy_version=p"}},
      {"largest uint", false, T(Field::kCacheWriteTokens) + Var(~0ULL),
       {"cache_write_tokens=u18446744073709551615"}},
      {"largest zigzag int", false, T(Field::kCostUsd) + Var(~0ULL),
       {"cost_usd=i-9223372036854775808"}},
      {"empty reason strings", false, T(Field::kReasons) + Var(1) + S("") + S(""), {"reason=|"}},
      {"last personal tag", true, T(Field::kApprovedBy) + S("b") + T(Field::kAttributes) +
                                      Var(2) + S("a") + S("") + S("b") + S("2"),
       {"approved_by=b", "attr=a|", "attr=b|2"}},
  };
  for (const auto& c : cases) {
    Capture capture;
    Status s = codec::DecodeSection(c.bytes, c.personal, &capture);
    EXPECT_TRUE(s.ok()) << c.name << ": " << s.ToString();
    EXPECT_EQ(capture.events, c.events) << c.name;
  }
}

TEST(RecordCodec, DecodeOfTruncatedValueFailsAtEveryLength) {
  for (int i : {0, 3, 10}) {
    Record r = SampleRecord(i);
    ASSERT_TRUE(ValidateRecord(r).ok());
    const std::string value = Encode(r);
    for (size_t len = 0; len < value.size(); ++len) {
      StoredRecord out;
      Status s = codec::DecodeValue(std::string_view(value).substr(0, len), &out);
      ASSERT_TRUE(s.IsCorruption()) << "record " << i << " truncated to " << len << " of "
                                    << value.size() << " bytes: " << s.ToString();
    }
    StoredRecord out;
    EXPECT_TRUE(codec::DecodeValue(value, &out).ok());
    EXPECT_TRUE(codec::DecodeValue(value + '\0', &out).IsCorruption()) << "one trailing byte";
  }
}

// A prefix of a section decodes iff it ends exactly on a field boundary; the
// boundaries are where the encodings of growing subsets of the fields end.
TEST(RecordCodec, TruncatedSectionDecodesOnlyAtFieldBoundaries) {
  for (int i : {0, 10}) {
    Record full = SampleRecord(i);
    full.reasons.push_back({"p2", "second"});
    ASSERT_TRUE(ValidateRecord(full).ok());
    for (bool personal : {false, true}) {
      std::string section;
      codec::EncodeSection(full, personal, &section);
      std::set<size_t> boundaries = {0};
      Record partial;
      for (int f = 0; f < kFieldCount; ++f) {
        CopyField(full, static_cast<Field>(f), &partial);
        std::string prefix;
        codec::EncodeSection(partial, personal, &prefix);
        ASSERT_EQ(section.substr(0, prefix.size()), prefix) << "encoding is in tag order";
        boundaries.insert(prefix.size());
      }
      ASSERT_GT(boundaries.size(), 3u);
      for (size_t len = 0; len <= section.size(); ++len) {
        Capture capture;
        Status s = codec::DecodeSection(std::string_view(section).substr(0, len), personal,
                                        &capture);
        EXPECT_EQ(s.ok(), boundaries.count(len) == 1)
            << (personal ? "personal" : "public") << " section of record " << i
            << " truncated to " << len << " of " << section.size() << ": " << s.ToString();
      }
    }
  }
}

// ---------------------------------------------------------------------------
// ParseValue: the framing around the sections.

std::string Frame(uint8_t version, uint8_t flags, std::string_view body,
                  std::string_view personal) {
  std::string value(codec::kHeaderBytes, '\0');
  value[0] = static_cast<char>(version);
  value[1] = static_cast<char>(flags);
  const uint32_t bl = static_cast<uint32_t>(body.size());
  for (int i = 0; i < 4; ++i) value[codec::kOffBodyLen + i] = static_cast<char>(bl >> (8 * i));
  value.append(body);
  const uint32_t pl = static_cast<uint32_t>(personal.size());
  for (int i = 0; i < 4; ++i) value.push_back(static_cast<char>(pl >> (8 * i)));
  value.append(personal);
  return value;
}

void SetLen(std::string* value, size_t at, uint32_t len) {
  for (int i = 0; i < 4; ++i) (*value)[at + i] = static_cast<char>(len >> (8 * i));
}

TEST(RecordCodec, ParseValueRejectsBadFraming) {
  Record r = SampleRecord(2);
  ASSERT_TRUE(ValidateRecord(r).ok());
  const std::string good = Encode(r);
  codec::ValueView gv;
  ASSERT_TRUE(codec::ParseValue(good, &gv).ok());
  const size_t plen_at = codec::kHeaderBytes + gv.body.size();
  const uint32_t plen = static_cast<uint32_t>(gv.personal.size());
  const std::string salt(16, 's');

  struct Case {
    std::string name;
    std::string value;
    std::string message;
  };
  std::vector<Case> cases = {
      {"empty value", "", "value is 0 bytes, shorter than the 82-byte minimum"},
      {"one byte", "\x01", "value is 1 bytes"},
      {"81 bytes", good.substr(0, 81), "value is 81 bytes"},
      {"header only", good.substr(0, codec::kHeaderBytes), "shorter than the 82-byte minimum"},
  };
  for (int version : {0, 2, 255}) {
    std::string v = good;
    v[0] = static_cast<char>(version);
    cases.push_back({fmt::format("version {}", version), v,
                     fmt::format("byte 0: unknown format version {}", version)});
  }
  for (int flags : {0x02, 0x03, 0x80, 0xff}) {
    std::string v = good;
    v[1] = static_cast<char>(flags);
    cases.push_back({fmt::format("flags 0x{:02x}", flags), v,
                     fmt::format("byte 1: unknown flags 0x{:02x}", flags)});
  }
  for (uint32_t bl : {static_cast<uint32_t>(good.size()), 0xffffffffu,
                      static_cast<uint32_t>(good.size() - codec::kHeaderBytes - 3)}) {
    std::string v = good;
    SetLen(&v, codec::kOffBodyLen, bl);
    cases.push_back({fmt::format("body length {}", bl), v, "byte 74: body length"});
  }
  for (uint32_t pl : {plen + 1, plen - 1, 0u, 0xffffffffu}) {
    std::string v = good;
    SetLen(&v, plen_at, pl);
    cases.push_back({fmt::format("personal length {} (real {})", pl, plen), v,
                     fmt::format("byte {}: personal-data length {} does not end", plen_at, pl)});
  }
  cases.push_back({"trailing byte", good + "x", "does not end the"});
  cases.push_back({"body length one short", [&] {
                     std::string v = good;
                     SetLen(&v, codec::kOffBodyLen, static_cast<uint32_t>(gv.body.size() - 1));
                     return v;
                   }(),
                   "personal-data length"});
  cases.push_back({"no salt", Frame(1, 0, "", ""), "personal-data section of 0 bytes is shorter than its salt"});
  cases.push_back({"15-byte salt", Frame(1, 0, "", salt.substr(0, 15)),
                   "section of 15 bytes is shorter than its salt"});
  cases.push_back({"erased flag on a plaintext value", [&] {
                     std::string v = good;
                     v[1] = 1;
                     return v;
                   }(),
                   fmt::format("section of {} bytes is not a 32-byte digest", plen)});
  cases.push_back({"erased with a 31-byte digest", Frame(1, 1, "", std::string(31, 'd')),
                   "not a 32-byte digest"});
  cases.push_back({"erased with a 33-byte digest", Frame(1, 1, "", std::string(33, 'd')),
                   "not a 32-byte digest"});

  for (const Case& c : cases) {
    codec::ValueView view;
    Status s = codec::ParseValue(c.value, &view);
    EXPECT_TRUE(s.IsCorruption()) << c.name << ": " << s.ToString();
    EXPECT_NE(s.message().find(c.message), std::string::npos)
        << c.name << ": message '" << s.message() << "' lacks '" << c.message << "'";
    StoredRecord out;
    EXPECT_TRUE(codec::DecodeValue(c.value, &out).IsCorruption()) << c.name;
    auto pub = DecodeStoredRecord(c.value);
    EXPECT_TRUE(pub.status().IsCorruption()) << c.name;
  }
}

TEST(RecordCodec, ParseValueSplitsAValidValue) {
  Record r = SampleRecord(6);
  ASSERT_TRUE(ValidateRecord(r).ok());
  std::string value = Encode(r);
  for (int i = 0; i < 8; ++i) value[codec::kOffSeq + i] = static_cast<char>(0x11 * (i + 1));
  for (int i = 0; i < 32; ++i) value[codec::kOffPrevHash + i] = static_cast<char>(i);
  for (int i = 0; i < 32; ++i) value[codec::kOffHash + i] = static_cast<char>(100 + i);
  codec::ValueView view;
  ASSERT_TRUE(codec::ParseValue(value, &view).ok());
  EXPECT_EQ(view.flags, 0);
  EXPECT_FALSE(view.erased());
  EXPECT_EQ(view.seq, 0x8877665544332211ULL) << "seq is little-endian";
  EXPECT_EQ(view.prev_hash, std::string_view(value).substr(10, 32));
  EXPECT_EQ(view.hash, std::string_view(value).substr(42, 32));
  std::string body;
  codec::EncodeSection(r, false, &body);
  EXPECT_EQ(view.body, body);
  std::string personal;
  codec::EncodeSection(r, true, &personal);
  EXPECT_EQ(view.personal,
            std::string(reinterpret_cast<const char*>(kSaltA), 16) + personal);
  // Smallest valid value: empty body, salt only.
  EXPECT_TRUE(codec::ParseValue(Frame(1, 0, "", std::string(16, 's')), &view).ok());
  EXPECT_TRUE(codec::ParseValue(Frame(1, 1, "", std::string(32, 'd')), &view).ok());
  EXPECT_TRUE(view.erased());
}

TEST(RecordCodec, DecodesAnErasedValueWithoutItsPersonalFields) {
  Record r = SampleRecord(8);
  r.approved_by = "manager";
  ASSERT_TRUE(ValidateRecord(r).ok());
  const std::string erased = testing::ErasedView(Encode(r));
  StoredRecord out;
  Status s = codec::DecodeValue(erased, &out);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(out.personal_data_erased);
  Record expected = r;
  expected.user_id.clear();
  expected.input_summary.clear();
  expected.output_summary.clear();
  expected.approved_by.clear();
  expected.attributes.clear();
  EXPECT_EQ(out.record, expected);
}

}  // namespace
}  // namespace bastion

namespace bastion {
namespace {

std::string NewSaltBytes() {
  uint8_t salt[codec::kSaltBytes];
  EXPECT_TRUE(codec::NewSalt(salt).ok());
  return std::string(reinterpret_cast<const char*>(salt), sizeof(salt));
}

TEST(NewSaltTest, EverySaltIsFreshAcrossPoolRefills) {
  // 1000 salts span several per-thread pools: none repeats, none is zero.
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    const std::string salt = NewSaltBytes();
    EXPECT_NE(salt, std::string(codec::kSaltBytes, '\0')) << "salt " << i;
    EXPECT_TRUE(seen.insert(salt).second) << "salt " << i << " repeats";
  }
}

TEST(NewSaltTest, AForkedChildDoesNotReuseItsParentsSalts) {
  NewSaltBytes();  // the parent's pool now holds salts it has not handed out
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    uint8_t salt[codec::kSaltBytes];
    const bool ok = codec::NewSalt(salt).ok();
    const ssize_t n = ok ? write(fds[1], salt, sizeof(salt)) : 0;
    _exit(n == static_cast<ssize_t>(sizeof(salt)) ? 0 : 1);
  }
  close(fds[1]);
  std::string from_child(codec::kSaltBytes, '\0');
  ASSERT_EQ(read(fds[0], from_child.data(), from_child.size()),
            static_cast<ssize_t>(codec::kSaltBytes));
  close(fds[0]);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  // The parent's next salt came from the pool the child copied.
  EXPECT_NE(NewSaltBytes(), from_child);
}

}  // namespace
}  // namespace bastion
