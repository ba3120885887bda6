// The hash chain: hash(n) = SHA-256("BSTNLDG1" || seq || hash(n-1) || len(body)
// || body || personal_digest). See docs/ledger_format.md, "Chain hash".
#ifndef BASTION_LEDGER_HASH_CHAIN_H_
#define BASTION_LEDGER_HASH_CHAIN_H_

#include <string_view>

#include "bastion/ledger.h"
#include "ledger/record_codec.h"
#include "util/sha256.h"

namespace bastion::chain {

Hash ChainHash(Sha256* sha, uint64_t seq, const uint8_t* prev_hash, std::string_view body,
               const Hash& personal_digest);

// Recomputes the chain hash a parsed stored value should carry: the personal
// digest comes from the salt and plaintext, or is the stored one if erased.
Hash ExpectedHash(Sha256* sha, const codec::ValueView& view);

// Fills seq, prev_hash and hash into a value built by codec::EncodeValue and
// returns the new hash.
Hash Seal(Sha256* sha, std::string* value, uint64_t seq, const Hash& prev_hash,
          const Hash& personal_digest);

}  // namespace bastion::chain

#endif  // BASTION_LEDGER_HASH_CHAIN_H_
