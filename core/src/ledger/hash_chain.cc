#include "ledger/hash_chain.h"

#include <cstring>

namespace bastion::chain {

Hash ChainHash(Sha256* sha, uint64_t seq, const uint8_t* prev_hash, std::string_view body,
               const Hash& personal_digest) {
  uint8_t head[8 + 8 + 32 + 4];
  std::memcpy(head, "BSTNLDG1", 8);
  for (int i = 0; i < 8; ++i) head[8 + i] = static_cast<uint8_t>(seq >> (8 * i));
  std::memcpy(head + 16, prev_hash, 32);
  const uint32_t len = static_cast<uint32_t>(body.size());
  for (int i = 0; i < 4; ++i) head[48 + i] = static_cast<uint8_t>(len >> (8 * i));
  sha->Update(head, sizeof(head));
  sha->Update(body);
  sha->Update(personal_digest.data(), personal_digest.size());
  return sha->Final();
}

Hash ExpectedHash(Sha256* sha, const codec::ValueView& view) {
  Hash personal;
  if (view.erased()) {
    std::memcpy(personal.data(), view.personal.data(), 32);
  } else {
    personal = codec::PersonalDigest(view.personal);
  }
  return ChainHash(sha, view.seq, reinterpret_cast<const uint8_t*>(view.prev_hash.data()),
                   view.body, personal);
}

Hash Seal(Sha256* sha, std::string* value, uint64_t seq, const Hash& prev_hash,
          const Hash& personal_digest) {
  char* p = value->data();
  for (int i = 0; i < 8; ++i) p[codec::kOffSeq + i] = static_cast<char>(seq >> (8 * i));
  std::memcpy(p + codec::kOffPrevHash, prev_hash.data(), 32);
  const uint32_t body_len = codec::GetFixed32(p + codec::kOffBodyLen);
  const Hash h = ChainHash(sha, seq, prev_hash.data(),
                           std::string_view(p + codec::kHeaderBytes, body_len), personal_digest);
  std::memcpy(p + codec::kOffHash, h.data(), 32);
  return h;
}

}  // namespace bastion::chain
