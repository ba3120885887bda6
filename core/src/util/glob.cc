#include "bastion/glob.h"

#include <cstdint>

#include <fmt/format.h>

namespace bastion {
namespace {

// ---------------------------------------------------------------------------
// Characters: one well-formed UTF-8 sequence, or one stray byte.

struct Char {
  uint32_t value;  // the code point, or kStrayByte + byte
  uint32_t len;    // bytes
};

// Stray bytes decode above every code point, so they never equal a literal
// code point nor fall inside a class range (both are at most U+10FFFF).
constexpr uint32_t kStrayByte = 0x110000;

bool IsContinuation(unsigned char c) { return (c & 0xC0) == 0x80; }

// Decodes the character at s[i] (i < s.size()). Shortest forms only, no
// surrogates, nothing above U+10FFFF (RFC 3629); anything else is a stray byte.
Char DecodeChar(std::string_view s, size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) return {b0, 1};
  uint32_t len, cp;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
    cp = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    cp = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;  // overlong
    if (b0 == 0xED) hi = 0x9F;  // surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    cp = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;  // overlong
    if (b0 == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return {kStrayByte + b0, 1};
  }
  if (i + len > s.size()) return {kStrayByte + b0, 1};
  const auto b1 = static_cast<unsigned char>(s[i + 1]);
  if (b1 < lo || b1 > hi) return {kStrayByte + b0, 1};
  for (uint32_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if (!IsContinuation(b)) return {kStrayByte + b0, 1};
    cp = (cp << 6) | (b & 0x3F);
  }
  return {cp, len};
}

// ---------------------------------------------------------------------------
// Pattern elements, read on the fly: matching never allocates.

enum class Kind : uint8_t { kEnd, kLiteral, kAny, kClass, kStar, kDoubleStar, kError };

struct Element {
  Kind kind = Kind::kEnd;
  uint32_t ch = 0;       // kLiteral: the character
  size_t set_begin = 0;  // kClass: the members, pattern[set_begin, set_end)
  size_t set_end = 0;
  bool negated = false;    // kClass
  size_t next = 0;         // where the next element starts
  const char* error = "";  // kError: what is wrong
  size_t error_at = 0;     // kError: byte offset
};

Element Error(const char* what, size_t at) {
  Element e;
  e.kind = Kind::kError;
  e.error = what;
  e.error_at = at;
  return e;
}

// Reads one set member at pattern[q] (q < size): an escaped or plain
// character. Returns false on a lone trailing '\'.
bool ReadSetChar(std::string_view pattern, size_t* q, Char* out) {
  if (pattern[*q] == '\\') {
    if (*q + 1 >= pattern.size()) return false;
    ++*q;
  }
  *out = DecodeChar(pattern, *q);
  *q += out->len;
  return true;
}

// Parses the class starting at pattern[p] == '['.
Element ReadClass(std::string_view pattern, size_t p) {
  Element e;
  e.kind = Kind::kClass;
  size_t q = p + 1;
  if (q < pattern.size() && (pattern[q] == '!' || pattern[q] == '^')) {
    e.negated = true;
    ++q;
  }
  e.set_begin = q;
  bool first = true;
  for (;;) {
    if (q >= pattern.size()) return Error("unterminated character class", p);
    if (pattern[q] == ']' && !first) break;
    first = false;
    const size_t member_at = q;
    Char lo;
    if (!ReadSetChar(pattern, &q, &lo)) return Error("unterminated character class", p);
    Char hi = lo;
    if (q + 1 < pattern.size() && pattern[q] == '-' && pattern[q + 1] != ']') {
      ++q;
      if (!ReadSetChar(pattern, &q, &hi)) return Error("unterminated character class", p);
      if (hi.value < lo.value) return Error("character range is out of order", member_at);
    }
    if (lo.value == '/' || hi.value == '/') {
      return Error("'/' inside [...] can never match", member_at);
    }
  }
  e.set_end = q;
  e.next = q + 1;
  return e;
}

Element ReadElement(std::string_view pattern, size_t p) {
  Element e;
  if (p >= pattern.size()) {
    e.next = p;
    return e;  // kEnd
  }
  switch (pattern[p]) {
    case '*': {
      size_t q = p;
      while (q < pattern.size() && pattern[q] == '*') ++q;
      e.kind = q - p >= 2 ? Kind::kDoubleStar : Kind::kStar;
      e.next = q;
      return e;
    }
    case '?':
      e.kind = Kind::kAny;
      e.next = p + 1;
      return e;
    case '[':
      return ReadClass(pattern, p);
    case '\\': {
      if (p + 1 >= pattern.size()) return Error("trailing '\\' escapes nothing", p);
      const Char c = DecodeChar(pattern, p + 1);
      e.kind = Kind::kLiteral;
      e.ch = c.value;
      e.next = p + 1 + c.len;
      return e;
    }
    default: {
      const Char c = DecodeChar(pattern, p);
      e.kind = Kind::kLiteral;
      e.ch = c.value;
      e.next = p + c.len;
      return e;
    }
  }
}

bool ClassMatches(std::string_view pattern, const Element& e, uint32_t ch) {
  if (ch == '/') return false;
  bool in_set = false;
  size_t q = e.set_begin;
  while (q < e.set_end && !in_set) {
    Char lo{0, 1}, hi{0, 1};
    ReadSetChar(pattern, &q, &lo);  // validated by ReadClass
    hi = lo;
    if (q + 1 < e.set_end && pattern[q] == '-') {  // as ReadClass decided
      ++q;
      ReadSetChar(pattern, &q, &hi);
    }
    in_set = ch >= lo.value && ch <= hi.value;
  }
  return in_set != e.negated;
}

// True if the single-character element `e` matches `c`.
bool ElementMatches(std::string_view pattern, const Element& e, const Char& c) {
  switch (e.kind) {
    case Kind::kLiteral:
      return e.ch == c.value;
    case Kind::kAny:
      return c.value != '/';
    case Kind::kClass:
      return ClassMatches(pattern, e, c.value);
    default:
      return false;
  }
}

// ---------------------------------------------------------------------------
// Hosts.

char LowerAscii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (LowerAscii(a[i]) != LowerAscii(b[i])) return false;
  }
  return true;
}

// Drops the brackets of an IPv6 literal, or one trailing dot of a name.
std::string_view StripHost(std::string_view h) {
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') return h.substr(1, h.size() - 2);
  if (!h.empty() && h.back() == '.') h.remove_suffix(1);
  return h;
}

bool IsHexDigit(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

bool IsIpv4(std::string_view s) {
  int parts = 0;
  size_t i = 0;
  while (true) {
    size_t start = i;
    int value = 0;
    while (i < s.size() && IsDigit(s[i]) && i - start < 3) value = value * 10 + (s[i++] - '0');
    if (i == start || value > 255) return false;
    if (i - start > 1 && s[start] == '0') return false;  // no octal-looking parts
    ++parts;
    if (i == s.size()) break;
    if (s[i] != '.' || parts == 4) return false;
    ++i;
  }
  return parts == 4;
}

// RFC 4291 text form: up to eight groups of 1-4 hex digits, at most one "::",
// optionally ending in a dotted IPv4 address. No zone identifiers.
bool IsIpv6(std::string_view s) {
  if (s.size() < 2) return false;
  int groups = 0;
  bool compressed = false;
  size_t i = 0;
  if (s.substr(0, 2) == "::") {
    compressed = true;
    i = 2;
    if (i == s.size()) return true;  // "::"
  } else if (s[0] == ':') {
    return false;
  }
  while (i < s.size()) {
    // An IPv4 tail takes the place of two groups.
    const size_t colon = s.find(':', i);
    const std::string_view rest = s.substr(i, colon == std::string_view::npos ? colon : colon - i);
    if (colon == std::string_view::npos && rest.find('.') != std::string_view::npos) {
      if (!IsIpv4(rest)) return false;
      groups += 2;
      i = s.size();
      break;
    }
    if (rest.empty() || rest.size() > 4) return false;
    for (char c : rest) {
      if (!IsHexDigit(c)) return false;
    }
    ++groups;
    i += rest.size();
    if (i == s.size()) break;
    // s[i] == ':'
    if (i + 1 < s.size() && s[i + 1] == ':') {
      if (compressed) return false;
      compressed = true;
      i += 2;
      if (i == s.size()) break;
    } else {
      ++i;
      if (i == s.size()) return false;  // trailing single ':'
    }
  }
  return compressed ? groups <= 7 : groups == 8;
}

bool IsNameChar(char c) { return IsAlpha(c) || IsDigit(c) || c == '-' || c == '_'; }

// Dot-separated, non-empty labels of letters, digits, '-' and '_'.
Status CheckHostName(std::string_view name) {
  if (name.empty()) return Status::InvalidArgument("empty host name");
  if (name.size() > 253) return Status::InvalidArgument("host name longer than 253 characters");
  size_t label = 0;
  for (size_t i = 0; i <= name.size(); ++i) {
    if (i == name.size() || name[i] == '.') {
      if (label == 0) return Status::InvalidArgument("empty label in host name");
      if (label > 63) return Status::InvalidArgument("label longer than 63 characters");
      label = 0;
      continue;
    }
    if (name[i] == '*') {
      return Status::InvalidArgument(
          "'*' is only allowed as a whole leading label (\"*.example.com\")");
    }
    if (!IsNameChar(name[i])) {
      return Status::InvalidArgument(
          fmt::format("character '{}' is not allowed in a host name", name[i]));
    }
    ++label;
  }
  return Status::OK();
}

}  // namespace

bool IsGlobPattern(std::string_view pattern) {
  return pattern.find_first_of("*?[\\") != std::string_view::npos;
}

Status ValidateGlob(std::string_view pattern) {
  size_t p = 0;
  while (p < pattern.size()) {
    const Element e = ReadElement(pattern, p);
    if (e.kind == Kind::kError) {
      return Status::InvalidArgument(fmt::format("{} at offset {}", e.error, e.error_at));
    }
    p = e.next;
  }
  return Status::OK();
}

// Two pointers p (pattern) and t (text) advance together over literal
// elements. A '*' remembers where it stands (star_*): on a mismatch it swallows
// one more character, unless that character is '/', and matching resumes after
// it. A '**' remembers its place likewise (dstar_*) and is the fallback when
// the last '*' can grow no more; reaching a '**' forgets every earlier
// backtrack point, because a '**' can absorb whatever they could have.
//
// Correctness of keeping one '*' point: for a fixed start, taking each
// star-free segment at its earliest position leaves the next '*' a run that is
// a superset of any other choice's, and that run contains no '/' because
// neither the earlier run nor the segment (which ?, [..] and literals other
// than '/' make of non-'/' characters) does.
//
// Speed-up of the '**' fallback: when the last '*' is stuck at text position s
// (a '/' or the end) and no literal '/' stands between the '**' and that '*',
// every restart of the '**' before s would get the '*' stuck at s again with
// fewer choices, so the '**' jumps straight to s. This keeps patterns like
// "**a*b" linear on long inputs.
bool GlobMatch(std::string_view pattern, std::string_view text) {
  const size_t n = text.size();
  size_t p = 0, t = 0;

  bool have_star = false;
  size_t star_p = 0;        // pattern position right after the '*'
  size_t star_t = 0;        // text position the '*' run currently ends at
  bool star_slash = false;  // a literal '/' was matched between the '**' and the '*'

  bool have_dstar = false;
  size_t dstar_p = 0, dstar_t = 0;

  bool slash_since_dstar = false;

  for (;;) {
    if (p < pattern.size()) {
      const Element e = ReadElement(pattern, p);
      switch (e.kind) {
        case Kind::kError:
          return false;
        case Kind::kDoubleStar:
          have_dstar = true;
          dstar_p = p = e.next;
          dstar_t = t;
          have_star = false;
          slash_since_dstar = false;
          continue;
        case Kind::kStar:
          have_star = true;
          star_p = p = e.next;
          star_t = t;
          star_slash = slash_since_dstar;
          continue;
        default:
          if (t < n) {
            const Char c = DecodeChar(text, t);
            if (ElementMatches(pattern, e, c)) {
              if (c.value == '/') slash_since_dstar = true;
              p = e.next;
              t += c.len;
              continue;
            }
          }
          break;
      }
    } else if (t == n) {
      return true;
    }

    // Mismatch, or one side ran out before the other.
    if (have_star && star_t < n && text[star_t] != '/') {
      star_t += DecodeChar(text, star_t).len;
      t = star_t;
      p = star_p;
      slash_since_dstar = star_slash;
      continue;
    }
    if (have_dstar && dstar_t < n) {
      size_t next = dstar_t + DecodeChar(text, dstar_t).len;
      if (have_star && !star_slash && star_t > next) next = star_t;
      dstar_t = t = next;
      p = dstar_p;
      have_star = false;
      slash_since_dstar = false;
      continue;
    }
    return false;
  }
}

bool DomainMatch(std::string_view pattern, std::string_view host) {
  host = StripHost(host);
  if (host.empty()) return false;
  if (pattern == "*") return true;
  pattern = StripHost(pattern);
  if (pattern.size() >= 2 && pattern[0] == '*' && pattern[1] == '.') {
    const std::string_view suffix = pattern.substr(1);  // ".example.com"
    return host.size() > suffix.size() &&
           EqualsIgnoreCase(host.substr(host.size() - suffix.size()), suffix);
  }
  return !pattern.empty() && EqualsIgnoreCase(pattern, host);
}

Status ValidateDomainPattern(std::string_view pattern) {
  if (pattern == "*") return Status::OK();
  if (pattern.empty()) return Status::InvalidArgument("empty domain pattern");
  if (pattern.front() == '[') {
    if (pattern.back() != ']' || !IsIpv6(pattern.substr(1, pattern.size() - 2))) {
      return Status::InvalidArgument("malformed IPv6 literal");
    }
    return Status::OK();
  }
  if (pattern.find(':') != std::string_view::npos) {
    return IsIpv6(pattern) ? Status::OK() : Status::InvalidArgument("malformed IPv6 literal");
  }
  if (pattern.back() == '.') pattern.remove_suffix(1);
  if (pattern.size() >= 2 && pattern[0] == '*' && pattern[1] == '.') {
    Status s = CheckHostName(pattern.substr(2));
    if (!s.ok()) return s;
    if (IsIpv4(pattern.substr(2))) {
      return Status::InvalidArgument("\"*.\" cannot precede an IP address");
    }
    return Status::OK();
  }
  return CheckHostName(pattern);
}

std::string NormalizeHost(std::string_view host) {
  host = StripHost(host);
  std::string out(host);
  for (char& c : out) c = LowerAscii(c);
  return out;
}

std::optional<std::string> HostOfUrl(std::string_view url) {
  for (char c : url) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7F) return std::nullopt;
  }
  // scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), then "://"
  if (url.empty() || !IsAlpha(url[0])) return std::nullopt;
  size_t i = 1;
  while (i < url.size() &&
         (IsAlpha(url[i]) || IsDigit(url[i]) || url[i] == '+' || url[i] == '-' || url[i] == '.')) {
    ++i;
  }
  if (url.substr(i, 3) != "://") return std::nullopt;
  i += 3;

  const size_t end = url.find_first_of("/?#", i);
  std::string_view authority = url.substr(i, end == std::string_view::npos ? end : end - i);
  if (authority.find('\\') != std::string_view::npos) return std::nullopt;
  if (const size_t at = authority.rfind('@'); at != std::string_view::npos) {
    authority.remove_prefix(at + 1);
  }

  std::string_view host, port;
  bool has_port = false;
  bool ipv6 = false;
  if (!authority.empty() && authority[0] == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    host = authority.substr(1, close - 1);
    if (!IsIpv6(host)) return std::nullopt;
    ipv6 = true;
    std::string_view rest = authority.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':') return std::nullopt;
      has_port = true;
      port = rest.substr(1);
    }
  } else {
    const size_t colon = authority.find(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) {
      has_port = true;
      port = authority.substr(colon + 1);
    }
  }
  if (has_port) {
    if (port.size() > 5) return std::nullopt;
    uint32_t value = 0;
    for (char c : port) {
      if (!IsDigit(c)) return std::nullopt;
      value = value * 10 + static_cast<uint32_t>(c - '0');
    }
    if (value > 65535) return std::nullopt;
  }
  if (!ipv6) {
    if (!host.empty() && host.back() == '.') host.remove_suffix(1);
    if (host.empty() || host.size() > 253) return std::nullopt;
    size_t label = 0;
    for (size_t k = 0; k <= host.size(); ++k) {
      if (k == host.size() || host[k] == '.') {
        if (label == 0) return std::nullopt;  // "a..b", ".a"
        label = 0;
        continue;
      }
      const char c = host[k];
      if (!(IsAlpha(c) || IsDigit(c) || c == '-' || c == '_' || c == '~')) return std::nullopt;
      ++label;
    }
  }
  std::string out(host);
  for (char& c : out) c = LowerAscii(c);
  return out;
}

}  // namespace bastion
