#include "ledger/hash_chain.h"

#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "bastion/ledger.h"
#include "ledger/raw_store.h"
#include "ledger/record_codec.h"
#include "test_util.h"
#include "util/sha256.h"

namespace bastion {
namespace {

using testing::ErasedView;
using testing::SampleRecord;

constexpr uint8_t kSalt[codec::kSaltBytes] = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6};

struct Encoded {
  std::string value;
  Hash digest;
};

Encoded EncodeSample(int i, const uint8_t* salt = kSalt) {
  Record r = SampleRecord(i);
  EXPECT_TRUE(ValidateRecord(r).ok());
  Encoded e;
  codec::EncodeValue(r, salt, &e.value, &e.digest);
  return e;
}

Hash SomeHash(uint8_t seed) {
  Hash h;
  for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<uint8_t>(seed + 31 * i);
  return h;
}

codec::ValueView Parse(const std::string& value) {
  codec::ValueView view;
  Status s = codec::ParseValue(value, &view);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return view;
}

Hash Expected(const std::string& value) {
  Sha256 sha;
  return chain::ExpectedHash(&sha, Parse(value));
}

Hash StoredHash(const std::string& value) {
  Hash h;
  std::memcpy(h.data(), value.data() + codec::kOffHash, 32);
  return h;
}

TEST(HashChain, SealFillsSeqPrevHashAndHash) {
  Encoded e = EncodeSample(3);
  const std::string before = e.value;
  const Hash prev = SomeHash(7);
  Sha256 sha;
  const Hash h = chain::Seal(&sha, &e.value, 0x0102030405060708ULL, prev, e.digest);
  ASSERT_EQ(e.value.size(), before.size());
  codec::ValueView view = Parse(e.value);
  EXPECT_EQ(view.seq, 0x0102030405060708ULL);
  EXPECT_EQ(std::string(e.value.data() + codec::kOffSeq, 8),
            std::string("\x08\x07\x06\x05\x04\x03\x02\x01", 8))
      << "seq is stored little-endian";
  EXPECT_EQ(view.prev_hash, std::string_view(reinterpret_cast<const char*>(prev.data()), 32));
  EXPECT_EQ(StoredHash(e.value), h);
  EXPECT_NE(h, Hash{});
  // Nothing else changes.
  EXPECT_EQ(e.value.substr(0, codec::kOffSeq), before.substr(0, codec::kOffSeq));
  EXPECT_EQ(e.value.substr(codec::kOffBodyLen), before.substr(codec::kOffBodyLen));
}

TEST(HashChain, ChainHashIsSha256OfTheDocumentedInput) {
  Encoded e = EncodeSample(5);
  const codec::ValueView view = Parse(e.value);
  const Hash prev = SomeHash(1);
  const uint64_t seq = 42;
  // "BSTNLDG1" || seq (8, LE) || prev_hash (32) || len(body) (4, LE) || body || digest
  std::string input = "BSTNLDG1";
  codec::PutFixed64(&input, seq);
  input.append(reinterpret_cast<const char*>(prev.data()), 32);
  const uint32_t len = static_cast<uint32_t>(view.body.size());
  for (int i = 0; i < 4; ++i) input.push_back(static_cast<char>(len >> (8 * i)));
  input.append(view.body);
  input.append(reinterpret_cast<const char*>(e.digest.data()), 32);
  Sha256 sha;
  EXPECT_EQ(chain::ChainHash(&sha, seq, prev.data(), view.body, e.digest),
            Sha256::Digest(input));
  // The same Sha256 object gives the same answer again (it resets after use).
  EXPECT_EQ(chain::ChainHash(&sha, seq, prev.data(), view.body, e.digest),
            Sha256::Digest(input));
}

TEST(HashChain, ExpectedHashEqualsTheSealedHash) {
  Sha256 sha;
  Hash prev{};
  for (int i = 0; i < 10; ++i) {
    Encoded e = EncodeSample(i);
    const Hash h = chain::Seal(&sha, &e.value, i + 1, prev, e.digest);
    EXPECT_EQ(chain::ExpectedHash(&sha, Parse(e.value)), h) << "record " << i + 1;
    EXPECT_EQ(Expected(e.value), StoredHash(e.value)) << "record " << i + 1;
    prev = h;
  }
}

TEST(HashChain, HashDependsOnSeqPrevHashAndSalt) {
  Sha256 sha;
  Encoded a = EncodeSample(2);
  std::string v1 = a.value, v2 = a.value, v3 = a.value;
  const Hash h1 = chain::Seal(&sha, &v1, 5, SomeHash(1), a.digest);
  const Hash h2 = chain::Seal(&sha, &v2, 6, SomeHash(1), a.digest);
  const Hash h3 = chain::Seal(&sha, &v3, 5, SomeHash(2), a.digest);
  EXPECT_NE(h1, h2) << "same content at another seq";
  EXPECT_NE(h1, h3) << "same content after another record";
  Encoded b = EncodeSample(2, /*salt=*/reinterpret_cast<const uint8_t*>("another salt!!!!"));
  const Hash h4 = chain::Seal(&sha, &b.value, 5, SomeHash(1), b.digest);
  EXPECT_NE(h1, h4) << "same content with another salt";
}

TEST(HashChain, ChangingAnyCoveredByteChangesTheExpectedHash) {
  Sha256 sha;
  Encoded e = EncodeSample(10);
  chain::Seal(&sha, &e.value, 17, SomeHash(3), e.digest);
  const Hash original = Expected(e.value);
  ASSERT_EQ(original, StoredHash(e.value));
  const codec::ValueView view = Parse(e.value);
  const size_t plen_at = codec::kHeaderBytes + view.body.size();
  size_t covered = 0;
  for (size_t off = 0; off < e.value.size(); ++off) {
    // Version, flags and the two length fields are checked by ParseValue, and
    // the stored hash is what is compared against; every other byte is hashed.
    const bool framing = off < codec::kOffSeq ||
                         (off >= codec::kOffBodyLen && off < codec::kHeaderBytes) ||
                         (off >= plen_at && off < plen_at + 4);
    const bool stored_hash = off >= codec::kOffHash && off < codec::kOffBodyLen;
    if (framing) continue;
    for (uint8_t mask : {0x01, 0x80}) {
      std::string tampered = e.value;
      tampered[off] = static_cast<char>(tampered[off] ^ mask);
      codec::ValueView tv;
      ASSERT_TRUE(codec::ParseValue(tampered, &tv).ok()) << "offset " << off;
      const Hash h = chain::ExpectedHash(&sha, tv);
      if (stored_hash) {
        EXPECT_EQ(h, original) << "the stored hash is not an input: offset " << off;
      } else {
        EXPECT_NE(h, original) << "offset " << off << " mask " << int(mask)
                               << " is not covered by the chain hash";
      }
    }
    if (!stored_hash) ++covered;
  }
  EXPECT_EQ(covered, 8 + 32 + view.body.size() + view.personal.size());
}

TEST(HashChain, ErasedViewKeepsTheSameChainHash) {
  Sha256 sha;
  Hash prev{};
  for (int i = 0; i < 12; ++i) {
    Encoded e = EncodeSample(i);
    prev = chain::Seal(&sha, &e.value, i + 1, prev, e.digest);
    const std::string erased = ErasedView(e.value);
    codec::ValueView ev = Parse(erased);
    ASSERT_TRUE(ev.erased());
    ASSERT_EQ(ev.personal.size(), 32u);
    EXPECT_EQ(ev.personal, std::string_view(reinterpret_cast<const char*>(e.digest.data()), 32))
        << "the erased section is the digest the writer committed to";
    EXPECT_EQ(chain::ExpectedHash(&sha, ev), prev) << "record " << i + 1;
    EXPECT_EQ(StoredHash(erased), prev);
    EXPECT_LT(erased.size(), e.value.size());
    // The erased value still decodes, without the personal fields.
    StoredRecord out;
    ASSERT_TRUE(codec::DecodeValue(erased, &out).ok());
    EXPECT_TRUE(out.personal_data_erased);
    EXPECT_TRUE(out.record.user_id.empty());
    EXPECT_EQ(out.record.agent_id, SampleRecord(i).agent_id);
  }
}

TEST(HashChain, TamperingWithAnErasedViewChangesTheHash) {
  Sha256 sha;
  Encoded e = EncodeSample(4);
  const Hash h = chain::Seal(&sha, &e.value, 1, Hash{}, e.digest);
  const std::string erased = ErasedView(e.value);
  const size_t digest_at = erased.size() - 32;
  for (size_t off = digest_at; off < erased.size(); ++off) {
    std::string t = erased;
    t[off] = static_cast<char>(t[off] ^ 0x01);
    EXPECT_NE(Expected(t), h) << "digest byte " << off - digest_at;
  }
  // An "erasure" that writes the digest of other data (e.g. a different salt)
  // does not verify.
  Encoded other = EncodeSample(4, reinterpret_cast<const uint8_t*>("0123456789abcdef"));
  std::string forged = erased;
  forged.replace(digest_at, 32, reinterpret_cast<const char*>(other.digest.data()), 32);
  EXPECT_NE(Expected(forged), h);
  // Clearing the flag on an erased view makes the digest look like a
  // (salt + section) plaintext, which hashes differently.
  std::string unflagged = erased;
  unflagged[codec::kOffFlags] = 0;
  EXPECT_NE(Expected(unflagged), h);
}

}  // namespace
}  // namespace bastion
