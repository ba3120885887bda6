// SHA-256 from OpenSSL's libcrypto (SHA-NI/AVX2 where the CPU has them). Each
// Sha256 object keeps its context for reuse on the ledger's hot path.
#ifndef BASTION_UTIL_SHA256_H_
#define BASTION_UTIL_SHA256_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "bastion/ledger.h"  // Hash

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
  struct Ctx;
  Ctx* ctx_;
};

}  // namespace bastion

#endif  // BASTION_UTIL_SHA256_H_
