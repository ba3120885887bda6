#include "util/sha256.h"

#include <openssl/evp.h>

#include <cstdlib>
#include <cstring>

namespace bastion {
namespace {

const EVP_MD* Sha256Md() {
  // Fetched once: EVP_sha256() would look the implementation up on every init.
  static const EVP_MD* md = [] {
    EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    return fetched != nullptr ? static_cast<const EVP_MD*>(fetched) : EVP_sha256();
  }();
  return md;
}

}  // namespace

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr) std::abort();  // out of memory: nothing sensible to do
  Reset();
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_); }

void Sha256::Reset() {
  if (EVP_DigestInit_ex2(ctx_, Sha256Md(), nullptr) != 1) std::abort();
}

void Sha256::Update(const void* data, size_t n) {
  if (n != 0) EVP_DigestUpdate(ctx_, data, n);
}

Hash Sha256::Final() {
  Hash out;
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx_, out.data(), &len);
  Reset();
  return out;
}

Hash Sha256::Digest(std::string_view data) {
  thread_local Sha256 sha;
  sha.Update(data);
  return sha.Final();
}

}  // namespace bastion
