#ifndef BASTION_UTIL_UTF8_H_
#define BASTION_UTIL_UTF8_H_

#include <cstddef>
#include <string_view>

namespace bastion {

// Returns the offset of the first byte that makes `s` invalid UTF-8 (RFC 3629:
// no overlong forms, no surrogates, nothing above U+10FFFF), or npos if `s` is
// valid. A truncated sequence at the end reports the offset where it starts.
size_t FindInvalidUtf8(std::string_view s);

inline bool IsValidUtf8(std::string_view s) { return FindInvalidUtf8(s) == std::string_view::npos; }

}  // namespace bastion

#endif  // BASTION_UTIL_UTF8_H_
