// Little-endian fixed-width integers and u32-length strings: the encoding of
// the budget state's and the call journal's values. Reads are bounds-checked
// and report damage by returning false.
#ifndef BASTION_UTIL_BYTE_CODEC_H_
#define BASTION_UTIL_BYTE_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace bastion {

inline void PutU64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
inline void PutI64(std::string* out, int64_t v) { PutU64(out, static_cast<uint64_t>(v)); }
inline void PutStr(std::string* out, std::string_view s) {
  const auto n = static_cast<uint32_t>(s.size());
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((n >> (8 * i)) & 0xFF));
  out->append(s);
}

class ByteWriter {
 public:
  std::string out;
  void Byte(uint8_t b) { out.push_back(static_cast<char>(b)); }
  void Bool(bool b) { Byte(b ? 1 : 0); }
  void U64(uint64_t v) { PutU64(&out, v); }
  void I64(int64_t v) { PutI64(&out, v); }
  void Str(std::string_view s) { PutStr(&out, s); }
};

class ByteReader {
 public:
  explicit ByteReader(std::string_view data) : data_(data) {}
  bool Byte(uint8_t* b) {
    if (pos_ >= data_.size()) return false;
    *b = static_cast<uint8_t>(data_[pos_++]);
    return true;
  }
  bool Bool(bool* b) {
    uint8_t v;
    if (!Byte(&v) || v > 1) return false;
    *b = v == 1;
    return true;
  }
  bool U64(uint64_t* v) {
    if (data_.size() - pos_ < 8) return false;
    uint64_t r = 0;
    for (int i = 0; i < 8; ++i) r |= uint64_t{static_cast<uint8_t>(data_[pos_ + i])} << (8 * i);
    pos_ += 8;
    *v = r;
    return true;
  }
  bool I64(int64_t* v) {
    uint64_t u;
    if (!U64(&u)) return false;
    *v = static_cast<int64_t>(u);
    return true;
  }
  // A count of elements of at least `min_bytes` each: more than the bytes
  // left can hold is damage, not a reason to allocate.
  bool Count(uint64_t* n, size_t min_bytes = 1) {
    return U64(n) && *n <= (data_.size() - pos_) / min_bytes;
  }
  bool Str(std::string* s) {
    if (data_.size() - pos_ < 4) return false;
    uint32_t n = 0;
    for (int i = 0; i < 4; ++i) n |= uint32_t{static_cast<uint8_t>(data_[pos_ + i])} << (8 * i);
    pos_ += 4;
    if (data_.size() - pos_ < n) return false;
    s->assign(data_.substr(pos_, n));
    pos_ += n;
    return true;
  }
  bool done() const { return pos_ == data_.size(); }
  size_t pos() const { return pos_; }

 private:
  std::string_view data_;
  size_t pos_ = 0;
};

}  // namespace bastion

#endif  // BASTION_UTIL_BYTE_CODEC_H_
