#include "ledger/record_codec.h"

#include <pthread.h>

#include <atomic>
#include <cstring>
#include <utility>

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "util/sha256.h"
#include "util/utf8.h"

namespace bastion::codec {

void PutVarint(std::string* out, uint64_t v) {
  if (v < 0x80) {  // tags, most lengths
    out->push_back(static_cast<char>(v));
    return;
  }
  char buf[10];
  size_t n = 0;
  while (v >= 0x80) {
    buf[n++] = static_cast<char>((v & 0x7F) | 0x80);
    v >>= 7;
  }
  buf[n++] = static_cast<char>(v);
  out->append(buf, n);
}

bool GetVarint(std::string_view* in, uint64_t* v) {
  uint64_t result = 0;
  for (size_t i = 0; i < 10 && i < in->size(); ++i) {
    const uint8_t byte = static_cast<uint8_t>((*in)[i]);
    if (i == 9 && byte > 1) return false;  // overflows 64 bits
    result |= static_cast<uint64_t>(byte & 0x7F) << (7 * i);
    if ((byte & 0x80) == 0) {
      if (byte == 0 && i > 0) return false;  // overlong: not canonical
      in->remove_prefix(i + 1);
      *v = result;
      return true;
    }
  }
  return false;
}

void PutFixed64(std::string* out, uint64_t v) {
  char buf[8];
  for (int i = 0; i < 8; ++i) buf[i] = static_cast<char>(v >> (8 * i));
  out->append(buf, 8);
}

uint64_t GetFixed64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

uint32_t GetFixed32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

void PutFixed64BE(std::string* out, uint64_t v) {
  char buf[8];
  for (int i = 0; i < 8; ++i) buf[i] = static_cast<char>(v >> (56 - 8 * i));
  out->append(buf, 8);
}

uint64_t GetFixed64BE(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

namespace {

inline uint64_t ZigZag(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}
inline int64_t UnZigZag(uint64_t v) {
  return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1);
}

void PutString(std::string* out, std::string_view s) {
  PutVarint(out, s.size());
  out->append(s);
}

}  // namespace

namespace {

// The fields of each section (public, personal) in tag order, with their
// types: worked out once, not per field of every record encoded.
struct SectionFields {
  std::array<std::pair<Field, FieldType>, kFieldCount> fields;
  int count = 0;
};

const SectionFields& FieldsOf(bool personal) {
  static const std::array<SectionFields, 2> sections = [] {
    std::array<SectionFields, 2> out{};
    for (int i = 0; i < kFieldCount; ++i) {
      const Field f = static_cast<Field>(i);
      SectionFields& section = out[IsPersonalField(f) ? 1 : 0];
      section.fields[section.count++] = {f, TypeOf(f)};
    }
    return out;
  }();
  return sections[personal ? 1 : 0];
}

}  // namespace

void EncodeSection(const Record& r, bool personal, std::string* out) {
  const SectionFields& section = FieldsOf(personal);
  for (int i = 0; i < section.count; ++i) {
    const auto [f, type] = section.fields[i];
    switch (type) {
      case FieldType::kString: {
        const std::string& s = *StringField(r, f);
        if (s.empty()) break;
        PutVarint(out, TagOf(f));
        PutString(out, s);
        break;
      }
      case FieldType::kUint: {
        const uint64_t v = *UintField(const_cast<Record&>(r), f);
        if (v == 0) break;
        PutVarint(out, TagOf(f));
        PutVarint(out, v);
        break;
      }
      case FieldType::kInt: {
        int64_t v;
        if (f == Field::kStepIndex) {
          if (!r.step_index) break;
          v = *r.step_index;
        } else {
          v = *IntField(const_cast<Record&>(r), f);
          if (v == 0) break;
        }
        PutVarint(out, TagOf(f));
        PutVarint(out, ZigZag(v));
        break;
      }
      case FieldType::kReasons:
        if (r.reasons.empty()) break;
        PutVarint(out, TagOf(f));
        PutVarint(out, r.reasons.size());
        for (const Reason& reason : r.reasons) {
          PutString(out, reason.policy_id);
          PutString(out, reason.message);
        }
        break;
      case FieldType::kAttributes:
        if (r.attributes.empty()) break;
        PutVarint(out, TagOf(f));
        PutVarint(out, r.attributes.size());
        for (const auto& [key, value] : r.attributes) {
          PutString(out, key);
          PutString(out, value);
        }
        break;
    }
  }
}

namespace {

// Bumped in a forked child, whose salt pools (copies of its parent's) must
// not be used: parent and child would hand out the same salts.
std::atomic<uint64_t> fork_generation{0};

}  // namespace

Status NewSalt(uint8_t salt[kSaltBytes]) {
  constexpr size_t kPoolSalts = 256;
  static const bool fork_watched = pthread_atfork(nullptr, nullptr, [] {
    fork_generation.fetch_add(1, std::memory_order_relaxed);
  }) == 0;
  struct Pool {
    std::array<uint8_t, kPoolSalts * kSaltBytes> bytes;
    size_t used = kPoolSalts * kSaltBytes;  // empty
    uint64_t generation = 0;
  };
  thread_local Pool pool;
  if (!fork_watched) {  // a pool would outlive a fork unnoticed: one salt per draw
    if (RAND_bytes(salt, kSaltBytes) != 1) {
      return Status::Internal("the system random generator failed");
    }
    return Status::OK();
  }
  const uint64_t generation = fork_generation.load(std::memory_order_relaxed);
  if (pool.used == pool.bytes.size() || pool.generation != generation) {
    if (RAND_bytes(pool.bytes.data(), static_cast<int>(pool.bytes.size())) != 1) {
      return Status::Internal("the system random generator failed");
    }
    pool.used = 0;
    pool.generation = generation;
  }
  std::memcpy(salt, pool.bytes.data() + pool.used, kSaltBytes);
  OPENSSL_cleanse(pool.bytes.data() + pool.used, kSaltBytes);  // handed out once
  pool.used += kSaltBytes;
  return Status::OK();
}

Hash PersonalDigest(std::string_view salt_and_section) {
  thread_local Sha256 sha;
  sha.Update("BSTNPII1", 8);
  sha.Update(salt_and_section);
  return sha.Final();
}

void EncodeValue(const Record& r, const uint8_t salt[kSaltBytes], std::string* value,
                 Hash* private_digest) {
  value->clear();
  value->reserve(512);  // most records: no growth while encoding
  value->resize(kHeaderBytes, '\0');
  (*value)[kOffVersion] = static_cast<char>(kFormatVersion);
  EncodeSection(r, /*personal=*/false, value);
  const uint32_t body_len = static_cast<uint32_t>(value->size() - kHeaderBytes);
  for (int i = 0; i < 4; ++i) (*value)[kOffBodyLen + i] = static_cast<char>(body_len >> (8 * i));

  const size_t personal_len_at = value->size();
  value->append(4, '\0');
  const size_t personal_at = value->size();
  value->append(reinterpret_cast<const char*>(salt), kSaltBytes);
  EncodeSection(r, /*personal=*/true, value);
  const uint32_t personal_len = static_cast<uint32_t>(value->size() - personal_at);
  for (int i = 0; i < 4; ++i) {
    (*value)[personal_len_at + i] = static_cast<char>(personal_len >> (8 * i));
  }
  *private_digest =
      PersonalDigest(std::string_view(value->data() + personal_at, personal_len));
}

Status ParseValue(std::string_view value, ValueView* view) {
  if (value.size() < kHeaderBytes + 4) {
    return Status::Corruption(
        fmt::format("value is {} bytes, shorter than the {}-byte minimum", value.size(),
                    kHeaderBytes + 4));
  }
  if (static_cast<uint8_t>(value[kOffVersion]) != kFormatVersion) {
    return Status::Corruption(fmt::format("byte 0: unknown format version {}",
                                          static_cast<uint8_t>(value[kOffVersion])));
  }
  view->flags = static_cast<uint8_t>(value[kOffFlags]);
  if (view->flags & ~kFlagPersonalErased) {
    return Status::Corruption(fmt::format("byte 1: unknown flags 0x{:02x}", view->flags));
  }
  view->seq = GetFixed64(value.data() + kOffSeq);
  view->prev_hash = value.substr(kOffPrevHash, 32);
  view->hash = value.substr(kOffHash, 32);
  const uint64_t body_len = GetFixed32(value.data() + kOffBodyLen);
  if (kHeaderBytes + body_len + 4 > value.size()) {
    return Status::Corruption(fmt::format(
        "byte {}: body length {} runs past the end of the {}-byte value", kOffBodyLen, body_len,
        value.size()));
  }
  view->body = value.substr(kHeaderBytes, body_len);
  const size_t plen_at = kHeaderBytes + body_len;
  const uint64_t personal_len = GetFixed32(value.data() + plen_at);
  if (plen_at + 4 + personal_len != value.size()) {
    return Status::Corruption(
        fmt::format("byte {}: personal-data length {} does not end the {}-byte value", plen_at,
                    personal_len, value.size()));
  }
  view->personal = value.substr(plen_at + 4, personal_len);
  if (view->erased() ? personal_len != 32 : personal_len < kSaltBytes) {
    return Status::Corruption(fmt::format("byte {}: personal-data section of {} bytes is {}",
                                          plen_at, personal_len,
                                          view->erased() ? "not a 32-byte digest"
                                                         : "shorter than its salt"));
  }
  return Status::OK();
}

Status DecodeSection(std::string_view section, bool personal, FieldVisitor* visitor) {
  const size_t total = section.size();
  std::string_view in = section;
  uint64_t last_tag = 0;
  auto where = [&] { return total - in.size(); };
  auto get_string = [&](std::string_view* s, const char* what) -> Status {
    uint64_t len;
    const size_t at = where();
    if (!GetVarint(&in, &len) || len > in.size()) {
      return Status::Corruption(fmt::format("offset {}: bad length of {}", at, what));
    }
    *s = in.substr(0, len);
    in.remove_prefix(len);
    if (!IsValidUtf8(*s)) {
      return Status::Corruption(fmt::format("offset {}: {} is not valid UTF-8", at, what));
    }
    return Status::OK();
  };
  while (!in.empty()) {
    const size_t at = where();
    uint64_t tag;
    if (!GetVarint(&in, &tag)) return Status::Corruption(fmt::format("offset {}: bad tag", at));
    if (tag <= last_tag || tag == 0 || tag > static_cast<uint64_t>(kFieldCount)) {
      return Status::Corruption(fmt::format("offset {}: tag {} out of order or unknown", at, tag));
    }
    last_tag = tag;
    const Field f = static_cast<Field>(tag - 1);
    const std::string_view name = FieldName(f);
    if (IsPersonalField(f) != personal) {
      return Status::Corruption(fmt::format("offset {}: field '{}' in the wrong section", at, name));
    }
    switch (TypeOf(f)) {
      case FieldType::kString: {
        std::string_view s;
        BASTION_RETURN_IF_ERROR(get_string(&s, name.data()));
        if (s.empty()) return Status::Corruption(fmt::format("offset {}: empty '{}'", at, name));
        visitor->OnString(f, s);
        break;
      }
      case FieldType::kUint:
      case FieldType::kInt: {
        uint64_t v;
        if (!GetVarint(&in, &v)) {
          return Status::Corruption(fmt::format("offset {}: bad number in '{}'", at, name));
        }
        if (v == 0 && f != Field::kStepIndex) {
          return Status::Corruption(fmt::format("offset {}: zero '{}' stored", at, name));
        }
        if (TypeOf(f) == FieldType::kUint) {
          visitor->OnUint(f, v);
        } else {
          visitor->OnInt(f, UnZigZag(v));
        }
        break;
      }
      case FieldType::kReasons:
      case FieldType::kAttributes: {
        uint64_t count;
        const bool reasons = TypeOf(f) == FieldType::kReasons;
        const uint64_t limit = reasons ? kMaxReasons : kMaxAttributes;
        if (!GetVarint(&in, &count) || count == 0 || count > limit) {
          return Status::Corruption(fmt::format("offset {}: bad entry count in '{}'", at, name));
        }
        std::string_view prev_key;
        for (uint64_t i = 0; i < count; ++i) {
          std::string_view a, b;
          BASTION_RETURN_IF_ERROR(get_string(&a, name.data()));
          BASTION_RETURN_IF_ERROR(get_string(&b, name.data()));
          if (reasons) {
            visitor->OnReason(a, b);
          } else {
            if (a.empty() || (i > 0 && a <= prev_key)) {
              return Status::Corruption(
                  fmt::format("offset {}: attribute keys not sorted and unique", at));
            }
            prev_key = a;
            visitor->OnAttribute(a, b);
          }
        }
        break;
      }
    }
  }
  return Status::OK();
}

namespace {

class RecordBuilder final : public FieldVisitor {
 public:
  explicit RecordBuilder(Record* r) : r_(r) {}
  void OnString(Field f, std::string_view v) override { StringField(*r_, f)->assign(v); }
  void OnUint(Field f, uint64_t v) override { *UintField(*r_, f) = v; }
  void OnInt(Field f, int64_t v) override {
    if (f == Field::kStepIndex) {
      r_->step_index = v;
    } else {
      *IntField(*r_, f) = v;
    }
  }
  void OnReason(std::string_view p, std::string_view m) override {
    r_->reasons.push_back({std::string(p), std::string(m)});
  }
  void OnAttribute(std::string_view k, std::string_view v) override {
    r_->attributes.emplace_back(std::string(k), std::string(v));
  }

 private:
  Record* r_;
};

}  // namespace

Status DecodeValue(std::string_view value, StoredRecord* out) {
  ValueView view;
  BASTION_RETURN_IF_ERROR(ParseValue(value, &view));
  out->seq = view.seq;
  std::memcpy(out->prev_hash.data(), view.prev_hash.data(), 32);
  std::memcpy(out->hash.data(), view.hash.data(), 32);
  out->personal_data_erased = view.erased();
  out->record = Record();
  RecordBuilder builder(&out->record);
  return DecodeFields(view, &builder);
}

Status DecodeFields(const ValueView& view, FieldVisitor* visitor) {
  Status s = DecodeSection(view.body, /*personal=*/false, visitor);
  if (!s.ok()) return s.WithContext("public section");
  if (!view.erased()) {
    s = DecodeSection(view.personal.substr(kSaltBytes), /*personal=*/true, visitor);
    if (!s.ok()) return s.WithContext("personal section");
  }
  return Status::OK();
}

std::string RecordKey(uint64_t seq) {
  std::string key;
  PutFixed64BE(&key, seq);
  return key;
}

}  // namespace bastion::codec

namespace bastion {

Status VisitStoredRecord(std::string_view encoded, StoredPlace* place,
                         RecordFieldVisitor* visitor) {
  codec::ValueView view;
  BASTION_RETURN_IF_ERROR(codec::ParseValue(encoded, &view));
  place->seq = view.seq;
  std::memcpy(place->hash.data(), view.hash.data(), place->hash.size());
  place->personal_data_erased = view.erased();
  return codec::DecodeFields(view, visitor);
}

}  // namespace bastion
