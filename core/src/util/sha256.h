// SHA-256 over OpenSSL's EVP interface. The digest algorithm is fetched once
// per process and each Sha256 object reuses its context, which matters on the
// ledger's hot path (a fresh EVP_Digest per call costs ~50% more).
#ifndef BASTION_UTIL_SHA256_H_
#define BASTION_UTIL_SHA256_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "bastion/ledger.h"  // Hash

typedef struct evp_md_ctx_st EVP_MD_CTX;

namespace bastion {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  // Starts a new digest; called by the constructor and by Final.
  void Reset();
  void Update(const void* data, size_t n);
  void Update(std::string_view s) { Update(s.data(), s.size()); }
  // Writes the digest of everything since the last Reset and resets.
  Hash Final();

  static Hash Digest(std::string_view data);

 private:
  EVP_MD_CTX* ctx_;
};

}  // namespace bastion

#endif  // BASTION_UTIL_SHA256_H_
