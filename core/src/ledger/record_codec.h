// The canonical binary encoding of a record, and the stored value around it.
// docs/ledger_format.md specifies every byte; keep the two in step.
#ifndef BASTION_LEDGER_RECORD_CODEC_H_
#define BASTION_LEDGER_RECORD_CODEC_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "bastion/ledger.h"
#include "bastion/record.h"
#include "bastion/status.h"

namespace bastion::codec {

inline constexpr uint8_t kFormatVersion = 1;
inline constexpr uint8_t kFlagPersonalErased = 0x01;
inline constexpr size_t kOffVersion = 0;
inline constexpr size_t kOffFlags = 1;
inline constexpr size_t kOffSeq = 2;
inline constexpr size_t kOffPrevHash = 10;
inline constexpr size_t kOffHash = 42;
inline constexpr size_t kOffBodyLen = 74;
inline constexpr size_t kHeaderBytes = 78;
inline constexpr size_t kSaltBytes = 16;

// Wire tag of a field: its Field value + 1. Tags ascend within a section.
inline constexpr uint64_t TagOf(Field f) { return static_cast<uint64_t>(f) + 1; }

// Appends the canonical encoding of `r`'s public (personal == false) or
// personal fields to `out`. `r` must have passed ValidateRecord.
void EncodeSection(const Record& r, bool personal, std::string* out);

// A fresh salt for one record, from the system random generator. Each thread
// draws salts for many records per call to the generator (a call costs
// microseconds, whatever its size) and hands them out one at a time; a forked
// child draws its own. Internal if the generator fails.
Status NewSalt(uint8_t salt[kSaltBytes]);

// Builds the whole stored value with seq, prev_hash and hash left zero (the
// writer fills them) and returns the personal-data digest in `*digest`.
void EncodeValue(const Record& r, const uint8_t salt[kSaltBytes], std::string* value,
                 Hash* private_digest);

// The parts of a stored value, as views into it.
struct ValueView {
  uint8_t flags = 0;
  uint64_t seq = 0;
  std::string_view prev_hash;  // 32 bytes
  std::string_view hash;       // 32 bytes
  std::string_view body;       // public section
  std::string_view personal;   // salt + personal section, or a 32-byte digest if erased
  bool erased() const { return flags & kFlagPersonalErased; }
};

// Splits a stored value; Corruption names the byte offset of the problem.
Status ParseValue(std::string_view value, ValueView* view);

// Receives decoded fields in tag order, as views into the encoded bytes.
using FieldVisitor = RecordFieldVisitor;

// Decodes one section strictly: tags ascending and belonging to the section,
// minimal varints, no default values, valid UTF-8, nothing left over.
Status DecodeSection(std::string_view section, bool personal, FieldVisitor* visitor);

// Decodes both sections of a parsed value into `visitor` (the personal one
// only while it is not erased); errors say which section.
Status DecodeFields(const ValueView& view, FieldVisitor* visitor);

// Decodes header and both sections (personal fields stay empty if erased).
Status DecodeValue(std::string_view value, StoredRecord* out);

// The key of record `seq` in the records column family (8 bytes, big-endian).
std::string RecordKey(uint64_t seq);

// The digest that commits the chain to the personal fields.
Hash PersonalDigest(std::string_view salt_and_section);

// Low-level helpers shared with the index encoding.
void PutVarint(std::string* out, uint64_t v);
bool GetVarint(std::string_view* in, uint64_t* v);  // false: truncated/overlong
void PutFixed64(std::string* out, uint64_t v);
uint64_t GetFixed64(const char* p);
uint32_t GetFixed32(const char* p);
void PutFixed64BE(std::string* out, uint64_t v);
uint64_t GetFixed64BE(const char* p);

}  // namespace bastion::codec

#endif  // BASTION_LEDGER_RECORD_CODEC_H_
