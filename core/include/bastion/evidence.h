// Signing keys and signed checkpoints: the ledger's tree head, signed so that
// an auditor holding only the public verifier key can check it offline.
//
//   auto key = bastion::SigningKey::Generate("audit.example.com/ledger");
//   if (!key.ok()) { report(key.status()); return; }
//   bastion::Result<std::string> pem = key->ToPem(); // store it, mode 0600
//   std::string verifier = key->VerifierText();     // give it to auditors
//
//   bastion::Result<std::string> note = bastion::SignCheckpoint(*key, size, root);
//
//   auto v = bastion::NoteVerifier::Parse(verifier);
//   bastion::Result<bastion::Checkpoint> cp = bastion::OpenCheckpoint(*note, *v);
//   if (!cp.ok()) std::cerr << cp.status().message() << "\n";
//
// Formats (C2SP, the formats of Go's golang.org/x/mod/sumdb/note and of
// transparency-log witnesses, so their tools read what Bastion writes):
//   signed note        https://c2sp.org/signed-note     Ed25519 only
//   checkpoint body    https://c2sp.org/tlog-checkpoint
//   verifier key       <name>+<hex8 key id>+<base64(0x01 || 32-byte public key)>
//   Go signer key      PRIVATE+KEY+<name>+<hex8 key id>+<base64(0x01 || 32-byte seed)>
// The key id is the first 4 bytes (big-endian) of
// SHA-256(name || "\n" || 0x01 || public key).
//
// Thread safety: a SigningKey and a NoteVerifier are immutable once built;
// their const methods may be called from any number of threads at once.
#ifndef BASTION_EVIDENCE_H_
#define BASTION_EVIDENCE_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "bastion/ledger.h"  // Hash
#include "bastion/status.h"

namespace bastion {

// Limits of what OpenCheckpoint reads; a note past them is rejected unread.
inline constexpr size_t kMaxSignedNoteBytes = 1 << 20;
inline constexpr size_t kMaxNoteSignatures = 100;
// A key name's longest form, in bytes.
inline constexpr size_t kMaxKeyNameBytes = 1024;

// An Ed25519 private key and its name. The key material lives in OpenSSL's
// memory and is wiped when the key is destroyed; copies made to read or write
// it are wiped as soon as they are used.
class SigningKey {
 public:
  // A fresh key from OpenSSL's CSPRNG. InvalidArgument for a bad name (see
  // CheckKeyName); Internal if OpenSSL fails.
  static Result<SigningKey> Generate(std::string_view name);

  // Reads either form:
  //   (a) "bastion-signing-key: <name>\n" followed by a PKCS#8 PEM block
  //       ("-----BEGIN PRIVATE KEY-----") holding an Ed25519 key (ToPem);
  //   (b) Go's signer key "PRIVATE+KEY+<name>+<hex8 id>+<base64(0x01 || seed)>"
  //       (surrounding whitespace ignored); the id must match the key.
  // InvalidArgument naming what is wrong (never quoting key material).
  static Result<SigningKey> FromText(std::string_view text);

  SigningKey(SigningKey&&) noexcept;
  SigningKey& operator=(SigningKey&&) noexcept;
  ~SigningKey();

  // Form (a) of FromText. The string holds the private key: the caller wipes
  // it (OPENSSL_cleanse) once written. Internal only if OpenSSL fails.
  Result<std::string> ToPem() const;

  const std::string& name() const { return name_; }
  uint32_t key_id() const { return key_id_; }
  const std::array<uint8_t, 32>& public_key() const { return public_key_; }
  // The verifier key text for this key (public; give it to auditors).
  std::string VerifierText() const;

  // The complete signed note: `note_body`, "\n", then one signature line
  // "— <name> <base64(key id || Ed25519 signature)>\n". InvalidArgument if the
  // body is empty, does not end in "\n", or is not valid note text (UTF-8, no
  // control characters other than "\n").
  Result<std::string> Sign(std::string_view note_body) const;

 private:
  struct Pkey;
  SigningKey(std::string name, std::unique_ptr<Pkey> pkey);
  std::string name_;
  uint32_t key_id_ = 0;
  std::array<uint8_t, 32> public_key_{};
  std::unique_ptr<Pkey> pkey_;
};

// A public Ed25519 verifier key of the signed-note format.
class NoteVerifier {
 public:
  // "<name>+<hex8 key id>+<base64(0x01 || 32-byte public key)>". InvalidArgument
  // naming what is wrong: a missing field, a bad name, a key id that is not 8
  // hex digits or does not match the key, bad base64, an algorithm byte other
  // than 0x01 (Ed25519), a key of the wrong length.
  static Result<NoteVerifier> Parse(std::string_view text);

  NoteVerifier(NoteVerifier&&) noexcept;
  NoteVerifier& operator=(NoteVerifier&&) noexcept;
  ~NoteVerifier();

  const std::string& name() const { return name_; }
  uint32_t key_id() const { return key_id_; }
  // "<name>+<hex8 key id>".
  std::string Label() const;
  // True if `signature` (64 bytes) is this key's Ed25519 signature of `msg`.
  bool Verify(std::string_view msg, std::string_view signature) const;

 private:
  struct Pkey;
  NoteVerifier() = default;
  std::string name_;
  uint32_t key_id_ = 0;
  std::unique_ptr<Pkey> pkey_;
};

// OK if `name` may name a key: non-empty, at most kMaxKeyNameBytes, valid
// UTF-8, no whitespace (ASCII or Unicode), no control character, no '+'.
// InvalidArgument naming the rule it breaks otherwise.
Status CheckKeyName(std::string_view name);

// The C2SP tlog-checkpoint body: "<origin>\n<decimal size>\n<base64 root>\n".
std::string CheckpointBody(std::string_view origin, uint64_t size, const Hash& root);

// The checkpoint of a tree of `size` leaves with root `root`, signed by `key`,
// whose name is the origin line. A complete signed note; Internal only if
// OpenSSL fails.
Result<std::string> SignCheckpoint(const SigningKey& key, uint64_t size, const Hash& root);

struct Checkpoint {
  std::string origin;
  uint64_t size = 0;
  Hash root{};
  // Lines after the root hash, in order (without their "\n").
  std::vector<std::string> extensions;
  // The id of the key whose signature was checked.
  uint32_t key_id = 0;
};

// Opens a signed checkpoint: checks the note strictly (at most
// kMaxSignedNoteBytes and kMaxNoteSignatures, "\n" line endings only, valid
// UTF-8, no control characters, well-formed signature lines), requires a valid
// signature by `verifier` (name and key id; signatures by other keys are
// ignored, and every signature by `verifier` must verify), then parses the
// body: an origin equal to the verifier's name (a checkpoint names the log it
// belongs to, and a log's key carries the log's name), a decimal size without
// leading zeros, the base64 of exactly 32 bytes, and non-empty extension lines.
// Errors name what and where:
//   InvalidArgument  the note or its body is malformed ("line 2: tree size
//                    '01' has a leading zero"), or the origin differs
//   Corruption       "checkpoint is not signed by <name>+<id>", or "signature
//                    by <name> does not verify (altered body or wrong key)"
Result<Checkpoint> OpenCheckpoint(std::string_view signed_note, const NoteVerifier& verifier);

// Verifies `ledger` (Ledger::Verify with `options`) against `trusted`, a
// checkpoint OpenCheckpoint opened with `verifier`, and against every
// checkpoint the ledger holds under the verifier's key id, each of which
// must verify too. A history rewritten or rolled back after one of them fails
// (kCheckpointMismatch / kRolledBack, naming the smallest disagreeing size);
// a stored checkpoint of this key whose signature fails is reported as
// kCheckpointMismatch at its size. Of more than 1024 stored checkpoints an
// even sample (and the newest) is checked. Errors are the ledger's.
Result<VerifyReport> VerifyAgainstCheckpoint(Ledger& ledger, const Checkpoint& trusted,
                                             const NoteVerifier& verifier,
                                             VerifyOptions options);

}  // namespace bastion

#endif  // BASTION_EVIDENCE_H_
