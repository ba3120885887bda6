#include "ledger/index_keys.h"

#include <fmt/format.h>

#include "ledger/record_codec.h"

namespace bastion::index {

Field FieldOf(Kind kind) {
  switch (kind) {
    case Kind::kUser: return Field::kUserId;
    case Kind::kAgent: return Field::kAgentId;
    case Kind::kTenant: return Field::kTenantId;
    case Kind::kAction: return Field::kAction;
    case Kind::kTool: return Field::kTool;
    case Kind::kEffect: return Field::kEffect;
    case Kind::kRisk: return Field::kRiskLevel;
    case Kind::kRun: return Field::kRunId;
    case Kind::kTrace: return Field::kTraceId;
    case Kind::kTime: return Field::kTimestampNs;
  }
  return Field::kAction;
}

std::string_view KindName(Kind kind) {
  if (kind == Kind::kTime) return "time";
  return FieldName(FieldOf(kind));
}

uint64_t ValueHash(std::string_view value) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : value) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

std::string PostingPrefix(Kind kind, uint64_t value_hash) {
  std::string key;
  key.reserve(kPostingKeyBytes);
  key.push_back(static_cast<char>(kind));
  codec::PutFixed64BE(&key, value_hash);
  return key;
}

std::string PostingKey(Kind kind, uint64_t value_hash, uint64_t first_seq) {
  std::string key = PostingPrefix(kind, value_hash);
  codec::PutFixed64BE(&key, first_seq);
  return key;
}

std::string TimeKey(int64_t timestamp_ns, uint64_t seq) {
  std::string key;
  key.reserve(kTimeKeyBytes);
  key.push_back(static_cast<char>(Kind::kTime));
  codec::PutFixed64BE(&key, static_cast<uint64_t>(timestamp_ns) ^ (1ULL << 63));
  codec::PutFixed64BE(&key, seq);
  return key;
}

void EncodePostings(const uint64_t* seqs, size_t n, std::string* out) {
  codec::PutVarint(out, n);
  for (size_t i = 1; i < n; ++i) codec::PutVarint(out, seqs[i] - seqs[i - 1]);
}

Status DecodePostings(uint64_t first_seq, std::string_view value, std::vector<uint64_t>* out) {
  uint64_t count;
  if (!codec::GetVarint(&value, &count) || count == 0 || count > (1u << 24)) {
    return Status::Corruption(fmt::format("posting block at seq {}: bad count", first_seq));
  }
  uint64_t seq = first_seq;
  out->push_back(seq);
  for (uint64_t i = 1; i < count; ++i) {
    uint64_t gap;
    // A gap past UINT64_MAX would wrap and break the ascending order.
    if (!codec::GetVarint(&value, &gap) || gap == 0 || gap > UINT64_MAX - seq) {
      return Status::Corruption(fmt::format("posting block at seq {}: bad gap", first_seq));
    }
    seq += gap;
    out->push_back(seq);
  }
  if (!value.empty()) {
    return Status::Corruption(fmt::format("posting block at seq {}: trailing bytes", first_seq));
  }
  return Status::OK();
}

void IndexedFields::OnString(Field f, std::string_view v) {
  for (int i = 0; i < kPostingKinds; ++i) {
    if (FieldOf(PostingKind(i)) == f) values[i] = v;
  }
}

namespace {
template <typename ValueOf>
IndexEntries EntriesOf(ValueOf value_of) {
  IndexEntries e;
  for (int i = 0; i < kPostingKinds; ++i) {
    const std::string_view v = value_of(i);
    if (v.empty()) continue;
    e.present |= static_cast<uint16_t>(1u << i);
    e.hashes[i] = ValueHash(v);
  }
  return e;
}
}  // namespace

IndexEntries EntriesFor(const Record& r) {
  return EntriesOf([&](int i) -> std::string_view { return *StringField(r, FieldOf(PostingKind(i))); });
}

IndexEntries EntriesFor(const IndexedFields& fields) {
  return EntriesOf([&](int i) { return fields.values[i]; });
}

}  // namespace bastion::index
