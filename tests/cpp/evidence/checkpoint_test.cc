#include <gtest/gtest.h>

#include <string>

#include "bastion/evidence.h"
#include "evidence/note_text.h"
#include "test_util.h"

namespace bastion {
namespace {

using testing::ExpectMentions;

constexpr std::string_view kName = "audit.example.com/ledger";

Hash SampleRoot() {
  Hash h;
  for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<uint8_t>(i * 7 + 1);
  return h;
}

SigningKey NewKey(std::string_view name = kName) {
  auto k = SigningKey::Generate(name);
  EXPECT_TRUE(k.ok()) << k.status().ToString();
  return std::move(*k);
}

NoteVerifier VerifierOf(const SigningKey& key) {
  auto v = NoteVerifier::Parse(key.VerifierText());
  EXPECT_TRUE(v.ok()) << v.status().ToString();
  return std::move(*v);
}

std::string Signed(const SigningKey& key, uint64_t size, const Hash& root) {
  auto note = SignCheckpoint(key, size, root);
  EXPECT_TRUE(note.ok()) << note.status().ToString();
  return *note;
}

TEST(Checkpoint, RoundTrips) {
  const SigningKey key = NewKey();
  const std::string note = Signed(key, 1234, SampleRoot());
  EXPECT_EQ(note.substr(0, note.find("\n\n") + 1), CheckpointBody(kName, 1234, SampleRoot()));
  auto cp = OpenCheckpoint(note, VerifierOf(key));
  ASSERT_TRUE(cp.ok()) << cp.status().ToString();
  EXPECT_EQ(cp->origin, kName);
  EXPECT_EQ(cp->size, 1234u);
  EXPECT_EQ(cp->root, SampleRoot());
  EXPECT_TRUE(cp->extensions.empty());
  EXPECT_EQ(cp->key_id, key.key_id());
}

TEST(Checkpoint, BodyAndSignatureLineHaveTheC2spShape) {
  const SigningKey key = NewKey();
  const std::string note = Signed(key, 0, Hash{});
  const std::string body = std::string(kName) + "\n0\n" + note::Base64Encode(std::string(32, '\0')) + "\n";
  ASSERT_EQ(note.substr(0, body.size()), body);
  const std::string sig_line = note.substr(body.size() + 1);
  const std::string prefix = "\xE2\x80\x94 " + std::string(kName) + " ";
  ASSERT_EQ(sig_line.substr(0, prefix.size()), prefix);
  ASSERT_EQ(sig_line.back(), '\n');
  auto sig = note::Base64Decode(sig_line.substr(prefix.size(), sig_line.size() - prefix.size() - 1));
  ASSERT_TRUE(sig.has_value());
  ASSERT_EQ(sig->size(), 68u);
  const uint32_t id = (uint32_t(uint8_t((*sig)[0])) << 24) | (uint32_t(uint8_t((*sig)[1])) << 16) |
                      (uint32_t(uint8_t((*sig)[2])) << 8) | uint8_t((*sig)[3]);
  EXPECT_EQ(id, key.key_id());
}

TEST(Checkpoint, KeyIdIsTheC2spHashOfNameAndKey) {
  const SigningKey key = NewKey();
  EXPECT_EQ(key.key_id(), note::KeyId(kName, key.public_key()));
  const std::string text = key.VerifierText();
  EXPECT_EQ(text.substr(0, kName.size() + 10), std::string(kName) + "+" + note::Hex8(key.key_id()) + "+");
  auto raw = note::Base64Decode(text.substr(kName.size() + 10));
  ASSERT_TRUE(raw.has_value());
  ASSERT_EQ(raw->size(), 33u);
  EXPECT_EQ((*raw)[0], '\x01');
  EXPECT_EQ(raw->substr(1), std::string(key.public_key().begin(), key.public_key().end()));
}

TEST(Checkpoint, RejectsAnotherKeysSignature) {
  const SigningKey key = NewKey();
  const SigningKey other = NewKey("someone-else");
  auto cp = OpenCheckpoint(Signed(key, 5, SampleRoot()), VerifierOf(other));
  ASSERT_TRUE(cp.status().IsCorruption()) << cp.status().ToString();
  ExpectMentions(cp.status(), "checkpoint is not signed by someone-else+" + note::Hex8(other.key_id()));
}

TEST(Checkpoint, RejectsAKeyOfTheSameNameWithAnotherId) {
  const SigningKey key = NewKey();
  const SigningKey twin = NewKey();  // same name, other key material
  ASSERT_NE(key.key_id(), twin.key_id());
  auto cp = OpenCheckpoint(Signed(key, 5, SampleRoot()), VerifierOf(twin));
  ASSERT_TRUE(cp.status().IsCorruption()) << cp.status().ToString();
  ExpectMentions(cp.status(), "checkpoint is not signed by");
  ExpectMentions(cp.status(), "another key of the same name, key id " + note::Hex8(key.key_id()));
}

TEST(Checkpoint, RejectsASignatureWhoseIdMatchesButKeyDoesNot) {
  // A forged signature line carrying the verifier's name and id.
  const SigningKey key = NewKey();
  const SigningKey twin = NewKey();
  std::string note = Signed(twin, 5, SampleRoot());
  const size_t at = note.rfind(' ') + 1;
  auto sig = note::Base64Decode(note.substr(at, note.size() - at - 1));
  ASSERT_TRUE(sig.has_value());
  for (int i = 0; i < 4; ++i) (*sig)[i] = char(key.key_id() >> (24 - 8 * i));
  note = note.substr(0, at) + note::Base64Encode(*sig) + "\n";
  auto cp = OpenCheckpoint(note, VerifierOf(key));
  ASSERT_TRUE(cp.status().IsCorruption()) << cp.status().ToString();
  ExpectMentions(cp.status(), "does not verify (altered body or wrong key)");
}

TEST(Checkpoint, RejectsAnOriginOtherThanTheKeyName) {
  const SigningKey key = NewKey();
  auto note = key.Sign(CheckpointBody("another.log/x", 3, SampleRoot()));
  ASSERT_TRUE(note.ok());
  auto cp = OpenCheckpoint(*note, VerifierOf(key));
  ASSERT_TRUE(cp.status().IsInvalidArgument()) << cp.status().ToString();
  ExpectMentions(cp.status(), "line 1: origin 'another.log/x' is not the verifier key's name");
}

TEST(Checkpoint, EveryFlippedByteFails) {
  const SigningKey key = NewKey("k");
  const NoteVerifier v = VerifierOf(key);
  const std::string note = Signed(key, 7, SampleRoot());
  for (size_t i = 0; i < note.size(); ++i) {
    for (uint8_t bit : {0x01, 0x20, 0x80}) {
      std::string bad = note;
      bad[i] = char(uint8_t(bad[i]) ^ bit);
      auto cp = OpenCheckpoint(bad, v);
      EXPECT_FALSE(cp.ok()) << "byte " << i << " xor " << int(bit) << " passed";
    }
  }
}

TEST(Checkpoint, AcceptsExtensionsAndOtherSignatures) {
  const SigningKey key = NewKey();
  const SigningKey witness = NewKey("witness.example");
  const std::string body = CheckpointBody(kName, 9, SampleRoot()) + "extra line\n";
  auto a = key.Sign(body);
  auto b = witness.Sign(body);
  ASSERT_TRUE(a.ok() && b.ok());
  // Cosigned: both signature lines after the one blank line.
  const std::string note = *a + b->substr(body.size() + 1);
  auto cp = OpenCheckpoint(note, VerifierOf(key));
  ASSERT_TRUE(cp.ok()) << cp.status().ToString();
  EXPECT_EQ(cp->extensions, std::vector<std::string>{"extra line"});
  auto by_witness = OpenCheckpoint(note, VerifierOf(witness));
  EXPECT_FALSE(by_witness.ok());  // the origin is not the witness's name
  ExpectMentions(by_witness.status(), "line 1: origin");
}

TEST(Checkpoint, RejectsMalformedNotes) {
  const SigningKey key = NewKey("k");
  const NoteVerifier v = VerifierOf(key);
  const std::string good = Signed(key, 7, SampleRoot());
  const std::string body = CheckpointBody("k", 7, SampleRoot());
  const std::string sig_line = good.substr(body.size() + 1);
  const auto sign = [&](const std::string& b) {
    auto n = key.Sign(b);
    EXPECT_TRUE(n.ok()) << n.status().ToString();
    return n.ok() ? *n : std::string();
  };
  struct Case {
    std::string name, note, error;
  } cases[] = {
      {"empty", "", "signed note is empty"},
      {"unsigned", body, "no blank line before its signatures"},
      {"crlf", "k\r\n7\r\n" + good.substr(4), "carriage return"},
      {"control", "k\x01" + good.substr(1), "control character 0x01"},
      {"bad utf8", "k\xff" + good.substr(1), "not valid UTF-8"},
      {"no final newline", good.substr(0, good.size() - 1), "does not end in"},
      {"not a dash", body + "\n- k AAAA\n", "a signature line starts with"},
      {"no signature field", body + "\n\xE2\x80\x94 k\n", "expected '<key name> <signature>'"},
      {"bad signature base64", body + "\n\xE2\x80\x94 k ***\n", "is not base64"},
      {"short signature", body + "\n\xE2\x80\x94 k AAAA\n", "is not base64 of a key id"},
      {"bad name on a line", body + "\n\xE2\x80\x94 a+b AAAAAAA=\n", "contains '+'"},
      {"leading zero", sign("k\n07\n" + body.substr(4)), "line 2: tree size '07' has a leading zero"},
      {"not decimal", sign("k\n7a\n" + body.substr(4)), "line 2: tree size '7a' is not a decimal"},
      {"overflow", sign("k\n18446744073709551616\n" + body.substr(4)), "larger than 2^64-1"},
      {"empty size", sign("k\n\n" + body.substr(4)), "line 2: tree size is empty"},
      {"short root", sign("k\n7\nAAAA\n"), "line 3: root hash is 3 bytes"},
      {"bad root", sign("k\n7\n!!!!\n"), "line 3: root hash '!!!!' is not valid base64"},
      {"two lines", sign("k\n7\n"), "checkpoint has 2 lines"},
      {"empty extension", sign(body + "\nx\n"), "line 4: extension line is empty"},
      {"too big", std::string(kMaxSignedNoteBytes + 1, 'a'), "more than"},
  };
  for (const Case& c : cases) {
    auto cp = OpenCheckpoint(c.note, v);
    EXPECT_FALSE(cp.ok()) << c.name;
    EXPECT_NE(cp.status().message().find(c.error), std::string::npos)
        << c.name << ": " << cp.status().ToString();
  }
  std::string many = body + "\n";
  for (size_t i = 0; i <= kMaxNoteSignatures; ++i) many += sig_line;
  auto cp = OpenCheckpoint(many, v);
  ExpectMentions(cp.status(), "more than 100 signatures");
}

TEST(NoteVerifier, RejectsMalformedKeys) {
  const SigningKey key = NewKey("k");
  const std::string good = key.VerifierText();  // k+<id>+<key>
  const std::string id = good.substr(2, 8);
  const std::string pub = good.substr(11);
  const auto raw = [](std::string bytes) { return note::Base64Encode(bytes); };
  std::string pk(key.public_key().begin(), key.public_key().end());
  struct Case {
    std::string name, text, error;
  } cases[] = {
      {"empty", "", "verifier key is empty"},
      {"one field", "k", "a field is missing"},
      {"two fields", "k+" + id, "a field is missing"},
      {"empty name", "+" + id + "+" + pub, "key name is empty"},
      {"space in name", "a b+" + id + "+" + pub, "contains whitespace"},
      {"short id", "k+1234567+" + pub, "is not 8 hex digits"},
      {"hex id", "k+1234567g+" + pub, "is not 8 hex digits"},
      {"no key", "k+" + id + "+", "the key is missing"},
      {"bad base64", "k+" + id + "+abc", "not valid base64"},
      {"algorithm", "k+" + id + "+" + raw("\x02" + pk), "algorithm byte is 0x02"},
      {"short key", "k+" + id + "+" + raw("\x01" + pk.substr(1)), "got 31"},
      {"wrong id", "k+" + note::Hex8(key.key_id() ^ 1) + "+" + pub, "does not match the name and key"},
      {"other name", "j+" + id + "+" + pub, "does not match the name and key"},
  };
  for (const Case& c : cases) {
    auto v = NoteVerifier::Parse(c.text);
    ASSERT_FALSE(v.ok()) << c.name;
    EXPECT_TRUE(v.status().IsInvalidArgument()) << c.name;
    EXPECT_NE(v.status().message().find(c.error), std::string::npos)
        << c.name << ": " << v.status().ToString();
  }
  auto v = NoteVerifier::Parse(" " + good + "\n");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->name(), "k");
  EXPECT_EQ(v->key_id(), key.key_id());
}

TEST(SigningKey, NamesFollowTheC2spRules) {
  for (std::string_view bad : {"", "a b", "a+b", "tab\there", "nl\n", "nbsp\xC2\xA0x",
                               "em\xE2\x80\x83space", "\xff"}) {
    auto k = SigningKey::Generate(bad);
    EXPECT_TRUE(k.status().IsInvalidArgument()) << "'" << bad << "' was accepted";
  }
  ExpectMentions(SigningKey::Generate("a+b").status(), "contains '+'");
  ExpectMentions(SigningKey::Generate("a b").status(), "whitespace");
  ExpectMentions(SigningKey::Generate("").status(), "empty");
  EXPECT_TRUE(SigningKey::Generate("sum.golang.org").ok());
  EXPECT_TRUE(SigningKey::Generate("ledger/\xC3\xA9t\xC3\xA9").ok());  // UTF-8 is fine
}

TEST(SigningKey, PemRoundTrips) {
  const SigningKey key = NewKey();
  auto pem_or = key.ToPem();
  ASSERT_TRUE(pem_or.ok());
  const std::string pem = *pem_or;
  EXPECT_EQ(pem.substr(0, 21 + kName.size()), "bastion-signing-key: " + std::string(kName));
  EXPECT_NE(pem.find("\n-----BEGIN PRIVATE KEY-----\n"), std::string::npos);
  auto back = SigningKey::FromText(pem);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->name(), key.name());
  EXPECT_EQ(back->key_id(), key.key_id());
  EXPECT_EQ(back->VerifierText(), key.VerifierText());
  // Ed25519 is deterministic: the same key signs the same body identically.
  EXPECT_EQ(Signed(*back, 3, SampleRoot()), Signed(key, 3, SampleRoot()));
}

TEST(SigningKey, ReadsGoSignerKeys) {
  // A fixed seed: 32 bytes 0..31.
  std::string seed;
  for (int i = 0; i < 32; ++i) seed += char(i);
  const std::string payload = note::Base64Encode("\x01" + seed);
  // The id is computed from the public key; learn it from the error first.
  auto probe = SigningKey::FromText("PRIVATE+KEY+go.example+00000000+" + payload);
  ASSERT_TRUE(probe.status().IsInvalidArgument());
  ExpectMentions(probe.status(), "key id 00000000 does not match the key");
  const std::string msg = probe.status().message();
  const std::string id = msg.substr(msg.find("its id is ") + 10, 8);
  auto key = SigningKey::FromText("PRIVATE+KEY+go.example+" + id + "+" + payload + "\n");
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_EQ(key->name(), "go.example");
  EXPECT_EQ(note::Hex8(key->key_id()), id);
  EXPECT_EQ(key->key_id(), note::KeyId("go.example", key->public_key()));
  // RFC 8032 derives the public key from the seed; the PEM form keeps it.
  auto again = SigningKey::FromText(*key->ToPem());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->public_key(), key->public_key());

  struct Case {
    std::string text, error;
  } cases[] = {
      {"PRIVATE+KEY+go.example+" + id, "a field is missing"},
      {"PRIVATE+KEY+go.example+xyz+" + payload, "not 8 hex digits"},
      {"PRIVATE+KEY+go.example+" + id + "+@@@@", "not valid base64"},
      {"PRIVATE+KEY+go.example+" + id + "+" + note::Base64Encode("\x02" + seed), "algorithm byte"},
      {"PRIVATE+KEY+go.example+" + id + "+" + note::Base64Encode("\x01" + seed.substr(2)),
       "32 bytes after the algorithm byte, got 30"},
      {"PRIVATE+KEY+a b+" + id + "+" + payload, "whitespace"},
      {"just text", "expected a first line 'bastion-signing-key: <name>'"},
      {"bastion-signing-key: k", "PEM block after the first line is missing"},
      {"bastion-signing-key: k\nnot pem\n", "not an unencrypted PEM private key"},
  };
  for (const Case& c : cases) {
    auto k = SigningKey::FromText(c.text);
    ASSERT_FALSE(k.ok()) << c.text;
    EXPECT_NE(k.status().message().find(c.error), std::string::npos)
        << c.text << ": " << k.status().ToString();
    // Errors never quote key material.
    EXPECT_EQ(k.status().message().find(payload), std::string::npos);
  }
}

TEST(SigningKey, SignRejectsBadBodies) {
  const SigningKey key = NewKey();
  ExpectMentions(key.Sign("").status(), "end in");
  ExpectMentions(key.Sign("no newline").status(), "end in");
  ExpectMentions(key.Sign("a\rb\n").status(), "carriage return");
  ExpectMentions(key.Sign("\xff\n").status(), "UTF-8");
}

TEST(Base64, IsStrict) {
  EXPECT_EQ(note::Base64Encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(note::Base64Encode("fo"), "Zm8=");
  EXPECT_EQ(note::Base64Encode("f"), "Zg==");
  EXPECT_EQ(note::Base64Decode("Zm8="), "fo");
  EXPECT_EQ(note::Base64Decode("Zg=="), "f");
  EXPECT_FALSE(note::Base64Decode("Zh==").has_value());  // non-zero unused bits
  EXPECT_FALSE(note::Base64Decode("Zm9=").has_value());
  EXPECT_FALSE(note::Base64Decode("Zg").has_value());
  EXPECT_FALSE(note::Base64Decode("Zg=a").has_value());
  EXPECT_FALSE(note::Base64Decode("Z===").has_value());
  EXPECT_FALSE(note::Base64Decode("Zg==Zg==").has_value());
  EXPECT_FALSE(note::Base64Decode("Zm 9").has_value());
}

}  // namespace
}  // namespace bastion
