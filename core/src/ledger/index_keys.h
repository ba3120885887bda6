// Keys of the secondary indexes (column family "index").
//
// Posting key:  kind (1 byte) | FNV-1a-64(value) (8, big-endian) | first seq (8, BE)
//   value:      varint count, then count-1 varint gaps between ascending seqs
// Time key:     kTime (1 byte) | timestamp_ns (8, BE) | seq (8, BE); empty value
//
// Values are hashed so keys stay short and no personal data sits in index
// keys; a hash collision only adds a candidate, which the query drops after
// comparing the record's field.
#ifndef BASTION_LEDGER_INDEX_KEYS_H_
#define BASTION_LEDGER_INDEX_KEYS_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "bastion/record.h"
#include "bastion/status.h"

namespace bastion::index {

enum class Kind : uint8_t {
  kUser = 1, kAgent, kTenant, kAction, kTool, kEffect, kRisk, kRun, kTrace,
  kTime = 10,
};
inline constexpr int kPostingKinds = 9;  // kUser..kTrace
inline constexpr size_t kPostingKeyBytes = 17;
inline constexpr size_t kTimeKeyBytes = 17;

// The record field a posting index covers.
Field FieldOf(Kind kind);
inline Kind PostingKind(int i) { return static_cast<Kind>(i + 1); }
std::string_view KindName(Kind kind);

uint64_t ValueHash(std::string_view value);

std::string PostingPrefix(Kind kind, uint64_t value_hash);  // 9 bytes
std::string PostingKey(Kind kind, uint64_t value_hash, uint64_t first_seq);
std::string TimeKey(int64_t timestamp_ns, uint64_t seq);

// `seqs` ascending, non-empty; seqs[0] goes into the key, not the value.
void EncodePostings(const uint64_t* seqs, size_t n, std::string* out);
// Appends the block's seqs (ascending) to `out`.
Status DecodePostings(uint64_t first_seq, std::string_view value, std::vector<uint64_t>* out);

// What the producer computes once per record for the writer.
struct IndexEntries {
  uint16_t present = 0;  // bit i: posting kind i+1 has a value
  std::array<uint64_t, kPostingKinds> hashes{};
};
IndexEntries EntriesFor(const Record& r);

}  // namespace bastion::index

#endif  // BASTION_LEDGER_INDEX_KEYS_H_
