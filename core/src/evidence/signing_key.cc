// SigningKey, NoteVerifier and key names. OpenSSL's EVP API does the
// Ed25519 work; this file only moves bytes between it and the text forms.
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <optional>
#include <string_view>

#include <fmt/format.h>

#include "bastion/evidence.h"
#include "evidence/note_text.h"
#include "util/utf8.h"

namespace bastion {
namespace {

constexpr std::string_view kPemHeader = "bastion-signing-key: ";
constexpr std::string_view kGoPrefix = "PRIVATE+KEY+";
// A PEM key is a few hundred bytes; BIO_new_mem_buf takes an int length.
constexpr size_t kMaxKeyTextBytes = 64 << 10;

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};

// Wipes a buffer that held key material when it goes out of scope.
class Wiped {
 public:
  explicit Wiped(std::string* s) : s_(s) {}
  ~Wiped() {
    if (!s_->empty()) OPENSSL_cleanse(s_->data(), s_->size());
  }
  Wiped(const Wiped&) = delete;
  Wiped& operator=(const Wiped&) = delete;

 private:
  std::string* s_;
};

// The Unicode code point starting at s[*i] (s is valid UTF-8); advances *i.
uint32_t NextCodePoint(std::string_view s, size_t* i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(*i);
  uint32_t cp;
  int n;
  if (c < 0x80) { cp = c; n = 1; }
  else if (c < 0xE0) { cp = c & 0x1F; n = 2; }
  else if (c < 0xF0) { cp = c & 0x0F; n = 3; }
  else { cp = c & 0x07; n = 4; }
  for (int k = 1; k < n; ++k) cp = (cp << 6) | (b(*i + k) & 0x3F);
  *i += n;
  return cp;
}

// Unicode White_Space (what Go's unicode.IsSpace accepts).
bool IsUnicodeSpace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

Result<PkeyPtr> PkeyFromSeed(std::string_view seed) {
  EVP_PKEY* p = EVP_PKEY_new_raw_private_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(seed.data()),
      seed.size());
  if (p == nullptr) return Status::Internal("OpenSSL refused an Ed25519 private key");
  return PkeyPtr(p);
}

std::string_view TrimSpace(std::string_view s) {
  const auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

// The fields of a key text "<name>+<hex8 id>+<key>": the name and the id
// hold no '+', the base64 key may. Nullopt when a field is missing.
struct KeyFields {
  std::string_view name, id, key;
};
std::optional<KeyFields> SplitKeyText(std::string_view text) {
  const size_t p1 = text.find('+');
  const size_t p2 = p1 == std::string_view::npos ? p1 : text.find('+', p1 + 1);
  if (p2 == std::string_view::npos) return std::nullopt;
  return KeyFields{text.substr(0, p1), text.substr(p1 + 1, p2 - p1 - 1), text.substr(p2 + 1)};
}

}  // namespace

Status CheckKeyName(std::string_view name) {
  if (name.empty()) return Status::InvalidArgument("key name is empty");
  if (name.size() > kMaxKeyNameBytes) {
    return Status::InvalidArgument(
        fmt::format("key name is {} bytes, more than {}", name.size(), kMaxKeyNameBytes));
  }
  const size_t bad = FindInvalidUtf8(name);
  if (bad != std::string_view::npos) {
    return Status::InvalidArgument(fmt::format("key name is not valid UTF-8 (byte {})", bad));
  }
  for (size_t i = 0; i < name.size();) {
    const size_t at = i;
    const uint32_t cp = NextCodePoint(name, &i);
    if (IsUnicodeSpace(cp)) {
      return Status::InvalidArgument(
          fmt::format("key name contains whitespace (byte {}): names have none", at));
    }
    if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp < 0xA0)) {
      return Status::InvalidArgument(
          fmt::format("key name contains control character U+{:04X} (byte {})", cp, at));
    }
    if (cp == '+') {
      return Status::InvalidArgument(
          fmt::format("key name contains '+' (byte {}): '+' separates the fields of a key", at));
    }
  }
  return Status::OK();
}

// ---------------------------------------------------------------- SigningKey

struct SigningKey::Pkey {
  PkeyPtr p;
};

SigningKey::SigningKey(std::string name, std::unique_ptr<Pkey> pkey)
    : name_(std::move(name)), pkey_(std::move(pkey)) {
  size_t len = public_key_.size();
  // Cannot fail for an Ed25519 key, which every constructor checks.
  EVP_PKEY_get_raw_public_key(pkey_->p.get(), public_key_.data(), &len);
  key_id_ = note::KeyId(name_, public_key_);
}

SigningKey::SigningKey(SigningKey&&) noexcept = default;
SigningKey& SigningKey::operator=(SigningKey&&) noexcept = default;
SigningKey::~SigningKey() = default;  // EVP_PKEY_free wipes the key

Result<SigningKey> SigningKey::Generate(std::string_view name) {
  BASTION_RETURN_IF_ERROR(CheckKeyName(name));
  EVP_PKEY* p = nullptr;
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr);
  const bool ok = ctx != nullptr && EVP_PKEY_keygen_init(ctx) == 1 && EVP_PKEY_keygen(ctx, &p) == 1;
  EVP_PKEY_CTX_free(ctx);
  if (!ok) return Status::Internal("OpenSSL could not generate an Ed25519 key");
  auto pkey = std::make_unique<Pkey>();
  pkey->p.reset(p);
  return SigningKey(std::string(name), std::move(pkey));
}

Result<SigningKey> SigningKey::FromText(std::string_view text) {
  text = TrimSpace(text);
  if (text.substr(0, kGoPrefix.size()) == kGoPrefix) {
    // PRIVATE+KEY+<name>+<hex8 id>+<base64(0x01 || seed)>
    const std::optional<KeyFields> fields = SplitKeyText(text.substr(kGoPrefix.size()));
    if (!fields) {
      return Status::InvalidArgument(
          "signer key: expected PRIVATE+KEY+<name>+<key id>+<key>, a field is missing");
    }
    const auto [name, id_text, key_text] = *fields;
    Status s = CheckKeyName(name);
    if (!s.ok()) return s.WithContext("signer key");
    const auto id = note::ParseHex8(id_text);
    if (!id) return Status::InvalidArgument("signer key: key id is not 8 hex digits");
    std::optional<std::string> raw = note::Base64Decode(key_text);
    if (!raw) return Status::InvalidArgument("signer key: the key is not valid base64");
    Wiped wipe(&*raw);
    if (raw->empty() || uint8_t((*raw)[0]) != note::kEd25519) {
      return Status::InvalidArgument(
          "signer key: algorithm byte is not 0x01 (Ed25519, the only one supported)");
    }
    if (raw->size() != 33) {
      return Status::InvalidArgument(fmt::format(
          "signer key: an Ed25519 key is 32 bytes after the algorithm byte, got {}",
          raw->size() - 1));
    }
    auto pkey = PkeyFromSeed(std::string_view(*raw).substr(1));
    if (!pkey.ok()) return pkey.status();
    auto holder = std::make_unique<Pkey>();
    holder->p = std::move(*pkey);
    SigningKey key(std::string(name), std::move(holder));
    if (key.key_id() != *id) {
      return Status::InvalidArgument(fmt::format(
          "signer key: key id {} does not match the key (its id is {})", note::Hex8(*id),
          note::Hex8(key.key_id())));
    }
    return key;
  }

  if (text.substr(0, kPemHeader.size()) != kPemHeader) {
    return Status::InvalidArgument(
        "signing key: expected a first line 'bastion-signing-key: <name>' followed by a "
        "PEM private key, or a signer key 'PRIVATE+KEY+<name>+<key id>+<key>'");
  }
  const size_t eol = text.find('\n');
  if (eol == std::string_view::npos) {
    return Status::InvalidArgument("signing key: the PEM block after the first line is missing");
  }
  std::string_view name = text.substr(kPemHeader.size(), eol - kPemHeader.size());
  if (!name.empty() && name.back() == '\r') name.remove_suffix(1);
  Status s = CheckKeyName(name);
  if (!s.ok()) return s.WithContext("signing key");
  const std::string_view pem = text.substr(eol + 1);
  if (pem.size() > kMaxKeyTextBytes) {
    return Status::InvalidArgument(fmt::format("signing key: {} bytes of PEM; a key is a few "
                                               "hundred", pem.size()));
  }
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return Status::Internal("OpenSSL could not allocate a buffer");
  // No password callback: an encrypted key fails here instead of prompting
  // on the terminal.
  pem_password_cb* no_password = [](char*, int, int, void*) { return 0; };
  EVP_PKEY* p = PEM_read_bio_PrivateKey(bio.get(), nullptr, no_password, nullptr);
  if (p == nullptr) {
    return Status::InvalidArgument(
        "signing key: the text after the first line is not an unencrypted PEM private key");
  }
  auto holder = std::make_unique<Pkey>();
  holder->p.reset(p);
  if (EVP_PKEY_get_id(p) != EVP_PKEY_ED25519) {
    return Status::InvalidArgument("signing key: the PEM key is not an Ed25519 key");
  }
  return SigningKey(std::string(name), std::move(holder));
}

Result<std::string> SigningKey::ToPem() const {
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_secmem()));
  std::string out;
  out.reserve(kPemHeader.size() + name_.size() + 512);  // no reallocation leaves a copy
  out.append(fmt::format("{}{}\n", kPemHeader, name_));
  if (!bio ||
      PEM_write_bio_PrivateKey(bio.get(), pkey_->p.get(), nullptr, nullptr, 0, nullptr,
                               nullptr) != 1) {
    return Status::Internal("OpenSSL could not write the key as PEM");
  }
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  out.append(data, static_cast<size_t>(n));
  return out;  // BIO_s_secmem wipes its buffer when freed
}

std::string SigningKey::VerifierText() const {
  std::string raw(1, char(note::kEd25519));
  raw.append(reinterpret_cast<const char*>(public_key_.data()), public_key_.size());
  return fmt::format("{}+{}+{}", name_, note::Hex8(key_id_), note::Base64Encode(raw));
}

Result<std::string> SigningKey::Sign(std::string_view note_body) const {
  if (note_body.empty() || note_body.back() != '\n') {
    return Status::InvalidArgument("note body must be non-empty and end in \"\\n\"");
  }
  const std::string bad = note::CheckNoteText(note_body);
  if (!bad.empty()) return Status::InvalidArgument("note body: " + bad);
  std::string sig(4 + 64, '\0');
  for (int i = 0; i < 4; ++i) sig[i] = char(key_id_ >> (24 - 8 * i));
  size_t sig_len = 64;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const bool ok =
      ctx != nullptr &&
      EVP_DigestSignInit(ctx, nullptr, nullptr, nullptr, pkey_->p.get()) == 1 &&
      EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data() + 4), &sig_len,
                     reinterpret_cast<const unsigned char*>(note_body.data()),
                     note_body.size()) == 1 &&
      sig_len == 64;
  EVP_MD_CTX_free(ctx);
  if (!ok) return Status::Internal("OpenSSL could not sign with Ed25519");
  std::string out(note_body);
  out += '\n';
  out += note::kSigPrefix;
  out += name_;
  out += ' ';
  out += note::Base64Encode(sig);
  out += '\n';
  return out;
}

// -------------------------------------------------------------- NoteVerifier

struct NoteVerifier::Pkey {
  PkeyPtr p;
};

NoteVerifier::NoteVerifier(NoteVerifier&&) noexcept = default;
NoteVerifier& NoteVerifier::operator=(NoteVerifier&&) noexcept = default;
NoteVerifier::~NoteVerifier() = default;

Result<NoteVerifier> NoteVerifier::Parse(std::string_view text) {
  text = TrimSpace(text);
  // <name>+<hex8 id>+<base64 key>
  if (text.empty()) return Status::InvalidArgument("verifier key is empty");
  const std::optional<KeyFields> fields = SplitKeyText(text);
  if (!fields) {
    return Status::InvalidArgument(
        "verifier key: expected <name>+<key id>+<key>, a field is missing");
  }
  const auto [name, id_text, key_text] = *fields;
  Status s = CheckKeyName(name);
  if (!s.ok()) return s.WithContext("verifier key");
  const auto id = note::ParseHex8(id_text);
  if (!id) {
    return Status::InvalidArgument(
        fmt::format("verifier key: key id '{}' is not 8 hex digits", id_text));
  }
  if (key_text.empty()) return Status::InvalidArgument("verifier key: the key is missing");
  const std::optional<std::string> raw = note::Base64Decode(key_text);
  if (!raw) return Status::InvalidArgument("verifier key: the key is not valid base64");
  if (uint8_t((*raw)[0]) != note::kEd25519) {
    return Status::InvalidArgument(fmt::format(
        "verifier key: algorithm byte is 0x{:02x}, not 0x01 (Ed25519, the only one supported)",
        uint8_t((*raw)[0])));
  }
  if (raw->size() != 33) {
    return Status::InvalidArgument(fmt::format(
        "verifier key: an Ed25519 key is 32 bytes after the algorithm byte, got {}",
        raw->size() - 1));
  }
  std::array<uint8_t, 32> pub;
  std::copy(raw->begin() + 1, raw->end(), pub.begin());
  const uint32_t actual = note::KeyId(name, pub);
  if (actual != *id) {
    return Status::InvalidArgument(fmt::format(
        "verifier key: key id {} does not match the name and key (their id is {})",
        note::Hex8(*id), note::Hex8(actual)));
  }
  EVP_PKEY* p = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, pub.data(), pub.size());
  if (p == nullptr) return Status::InvalidArgument("verifier key: not an Ed25519 public key");
  NoteVerifier v;
  v.name_ = std::string(name);
  v.key_id_ = actual;
  v.pkey_ = std::make_unique<Pkey>();
  v.pkey_->p.reset(p);
  return v;
}

std::string NoteVerifier::Label() const {
  return fmt::format("{}+{}", name_, note::Hex8(key_id_));
}

bool NoteVerifier::Verify(std::string_view msg, std::string_view signature) const {
  if (signature.size() != 64) return false;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const bool ok =
      ctx != nullptr &&
      EVP_DigestVerifyInit(ctx, nullptr, nullptr, nullptr, pkey_->p.get()) == 1 &&
      EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(signature.data()),
                       signature.size(), reinterpret_cast<const unsigned char*>(msg.data()),
                       msg.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

}  // namespace bastion
