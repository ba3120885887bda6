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
#include "ledger/record_codec.h"

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

// Collects, while an encoded record decodes, the fields the indexes cover:
// values[i] is posting kind i+1's field (empty when unset), as a view into the
// encoded bytes, plus the timestamp.
class IndexedFields final : public codec::FieldVisitor {
 public:
  std::array<std::string_view, kPostingKinds> values;
  int64_t timestamp_ns = 0;
  std::string_view Of(Kind kind) const { return values[static_cast<int>(kind) - 1]; }

  void OnString(Field f, std::string_view v) override;
  void OnUint(Field, uint64_t) override {}
  void OnInt(Field f, int64_t v) override {
    if (f == Field::kTimestampNs) timestamp_ns = v;
  }
  void OnReason(std::string_view, std::string_view) override {}
  void OnAttribute(std::string_view, std::string_view) override {}
};
IndexEntries EntriesFor(const IndexedFields& fields);

}  // namespace bastion::index

#endif  // BASTION_LEDGER_INDEX_KEYS_H_
