#include "util/sha256.h"

#include <string>

#include <gtest/gtest.h>

#include "bastion/ledger.h"

namespace bastion {
namespace {

std::string HexOf(std::string_view data) { return HashToHex(Sha256::Digest(data)); }

// FIPS 180-2 / NIST CSRC example vectors.
TEST(Sha256, MatchesKnownVectors) {
  struct Case {
    const char* name;
    std::string input;
    const char* hex;
  } cases[] = {
      {"empty", "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
      {"abc", "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
      {"448-bit message", "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
      {"896-bit message",
       "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlm"
       "nopqrsmnopqrstnopqrstu",
       "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
      {"one million 'a'", std::string(1000000, 'a'),
       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"},
  };
  for (const auto& c : cases) EXPECT_EQ(HexOf(c.input), c.hex) << c.name;
}

TEST(Sha256, IncrementalUpdatesEqualOneShotDigest) {
  const std::string data = "The quick brown fox jumps over the lazy dog, several times over.";
  const Hash whole = Sha256::Digest(data);
  for (size_t split = 0; split <= data.size(); ++split) {
    Sha256 sha;
    sha.Update(data.substr(0, split));
    sha.Update(data.data() + split, data.size() - split);
    EXPECT_EQ(sha.Final(), whole) << "split at " << split;
  }
  Sha256 bytewise;
  for (char c : data) bytewise.Update(&c, 1);
  EXPECT_EQ(bytewise.Final(), whole);
}

TEST(Sha256, FinalResetsForTheNextDigest) {
  Sha256 sha;
  sha.Update("abc");
  const Hash first = sha.Final();
  sha.Update("abc");
  EXPECT_EQ(sha.Final(), first) << "Final must start a fresh digest";
  EXPECT_EQ(HashToHex(sha.Final()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
      << "a digest of nothing after Final is the empty digest";
}

TEST(Sha256, ResetDiscardsPendingInput) {
  Sha256 sha;
  sha.Update("garbage that must not count");
  sha.Reset();
  sha.Update("abc");
  EXPECT_EQ(HashToHex(sha.Final()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256, EmptyUpdatesChangeNothing) {
  Sha256 sha;
  sha.Update(nullptr, 0);
  sha.Update("a");
  sha.Update("", 0);
  sha.Update("bc");
  EXPECT_EQ(HashToHex(sha.Final()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256, HashesBinaryDataIncludingNulBytes) {
  const std::string with_nul("a\0b", 3);
  EXPECT_NE(Sha256::Digest(with_nul), Sha256::Digest("ab"));
  EXPECT_NE(Sha256::Digest(with_nul), Sha256::Digest("a"));
}

TEST(HashToHex, WritesLowercaseHexOfAll32Bytes) {
  Hash h{};
  for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<uint8_t>(i * 8 + 7);
  EXPECT_EQ(HashToHex(h),
            "070f171f272f373f474f575f676f777f878f979fa7afb7bfc7cfd7dfe7eff7ff");
  EXPECT_EQ(HashToHex(Hash{}), std::string(64, '0'));
}

}  // namespace
}  // namespace bastion
