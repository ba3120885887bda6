#include "util/sha256.h"

// The one-shot SHA256_* functions skip EVP's per-call provider and parameter
// handling (~150 ns per digest, which is a third of hashing a 300-byte record)
// and use the same SHA-NI/AVX code. They are deprecated in OpenSSL 3 in favour
// of EVP, not removed.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>

#include <cstring>

namespace bastion {

struct Sha256::Ctx {
  SHA256_CTX c;
};

Sha256::Sha256() : ctx_(new Ctx) { Reset(); }

Sha256::~Sha256() { delete ctx_; }

void Sha256::Reset() { SHA256_Init(&ctx_->c); }

void Sha256::Update(const void* data, size_t n) {
  if (n != 0) SHA256_Update(&ctx_->c, data, n);
}

Hash Sha256::Final() {
  Hash out;
  SHA256_Final(out.data(), &ctx_->c);
  Reset();
  return out;
}

Hash Sha256::Digest(std::string_view data) {
  Hash out;
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data());
  return out;
}

}  // namespace bastion
