// Email and IPv6 addresses: each found by its own memchr-driven pass, on the
// one byte every match contains ('@', ':'). Rules in bastion/pii.h.
#include <cstring>

#include "pii/detectors.h"

namespace bastion::pii {
namespace {

constexpr size_t kMaxLocalPart = 64;
constexpr size_t kMaxDomain = 253;
constexpr size_t kMaxLabel = 63;

// Position of the next `c` in text[from, end), or npos.
size_t Next(std::string_view text, size_t from, char c) {
  if (from >= text.size()) return std::string_view::npos;
  const void* hit = std::memchr(text.data() + from, c, text.size() - from);
  return hit ? static_cast<const char*>(hit) - text.data() : std::string_view::npos;
}

bool IsTopLevelDomain(std::string_view label) {
  if (label.size() >= 4 && label.substr(0, 4) == "xn--") return label.size() >= 6;  // punycode
  if (label.size() < 2) return false;
  for (char c : label) {
    if (!Is(c, kAlpha)) return false;
  }
  return true;
}

// The start of the local part that ends at `at` (the '@'), not reaching below
// `floor`, or `at` if there is none.
size_t LocalPartStart(std::string_view text, size_t floor, size_t at) {
  size_t start = at;
  while (start > floor && Is(text[start - 1], kEmailLocal)) --start;
  // Text before a ".." is not part of the address; nor are leading dots.
  for (size_t i = at; i > start + 1; --i) {
    if (text[i - 1] == '.' && text[i - 2] == '.') {
      start = i;
      break;
    }
  }
  while (start < at && text[start] == '.') ++start;
  return start;
}

// The end of the domain that starts at `begin`, or kNoMatch. The domain ends
// after the last label that can end it (a TLD), so "a@b.com." stops at "com".
size_t DomainEnd(std::string_view text, size_t begin) {
  const size_t n = text.size();
  size_t end = kNoMatch;
  size_t label_begin = begin;
  int labels = 0;
  while (true) {
    size_t q = label_begin;
    while (q < n && Is(text[q], kDomainLabel) && q - begin <= kMaxDomain) ++q;
    size_t label_end = q;
    // A trailing '-' ends the address, it is not part of a label.
    while (label_end > label_begin && text[label_end - 1] == '-') --label_end;
    const std::string_view label = text.substr(label_begin, label_end - label_begin);
    if (label.empty() || label.size() > kMaxLabel || label.front() == '-' ||
        label_end - begin > kMaxDomain) {
      break;
    }
    if (labels == 0 && label.size() == 2 && label[0] >= '1' && label[0] <= '9' &&
        label[1] == 'x') {
      return kNoMatch;  // "icon@2x.png": an image asset, not an address
    }
    ++labels;
    if (labels >= 2 && IsTopLevelDomain(label)) end = label_end;
    if (label_end != q || !CharAt(text, q, '.') || !IsAt(text, q + 1, kAlnum)) break;
    label_begin = q + 1;
  }
  return end;
}

// Parses an IPv6 address at text[start, limit), where `limit` ends the run of
// hex digits, ':' and '.' that holds it. Returns its end or kNoMatch.
size_t ParseIpv6(std::string_view text, size_t start, size_t limit) {
  size_t q = start;
  int groups = 0;
  bool compressed = false;
  bool ipv4_tail = false;
  if (text[q] == ':') {
    if (!CharAt(text, q + 1, ':')) return kNoMatch;
    compressed = true;
    q += 2;
  }
  while (q < limit) {
    size_t h = q;
    while (h < limit && Is(text[h], kHex) && h - q <= 4) ++h;
    const size_t len = h - q;
    if (len == 0) break;
    if (len > 4) {
      // Possibly an IPv4 tail such as "192.168.1.1" is not hex-limited; only
      // a group followed by '.' can start one, and 4+ chars cannot.
      return kNoMatch;
    }
    if (h < limit && text[h] == '.') {
      // An embedded IPv4 address ends the address: d.d.d.d, octets 0-255.
      const size_t v4_end =
          Is(text[q], kDigit) ? MatchDottedQuad(ScanDigitGroups(text, q), text) : kNoMatch;
      if (v4_end != kNoMatch && v4_end <= limit) {
        ipv4_tail = true;
        q = v4_end;
      } else {
        ++groups;  // "fe80::1." : the '.' ends the sentence, not the address
        q = h;
      }
      break;
    }
    ++groups;
    q = h;
    if (q >= limit || text[q] != ':') break;
    if (CharAt(text, q + 1, ':')) {
      if (compressed) return kNoMatch;  // a second "::"
      compressed = true;
      q += 2;
      if (q >= limit || !Is(text[q], kHex)) break;  // ends with "::"
    } else if (q + 1 < limit && Is(text[q + 1], kHex)) {
      ++q;
    } else {
      break;  // a lone trailing ':' is punctuation
    }
  }
  const int units = groups + (ipv4_tail ? 2 : 0);
  if (compressed ? units > 7 : units != 8) return kNoMatch;
  if (units == 0) return kNoMatch;  // a bare "::" is punctuation or C++
  bool has_digit = false;
  for (size_t i = start; i < q && !has_digit; ++i) has_digit = IsDigit(text[i]);
  if (!has_digit) return kNoMatch;
  if (IsAt(text, q, kAlnum) || (CharAt(text, q, ':') && IsAt(text, q + 1, kHex)) ||
      (CharAt(text, q, '.') && IsAt(text, q + 1, kDigit))) {
    return kNoMatch;
  }
  return q;
}

}  // namespace

void FindEmails(std::string_view text, std::vector<PiiMatch>* out) {
  size_t floor = 0;  // the end of the last match: matches never overlap
  for (size_t at = Next(text, 0, '@'); at != std::string_view::npos;
       at = Next(text, at + 1, '@')) {
    if (at < floor) continue;
    const size_t start = LocalPartStart(text, floor, at);
    const size_t local = at - start;
    if (local == 0 || local > kMaxLocalPart || text[at - 1] == '.') continue;
    // A non-ASCII byte right before the local part makes it part of a
    // non-ASCII address ("émile@..."), which is out of scope: matching the
    // ASCII tail would claim a wrong address.
    if (start > 0 && static_cast<unsigned char>(text[start - 1]) >= 0x80) continue;
    const size_t end = DomainEnd(text, at + 1);
    if (end == kNoMatch) continue;
    out->push_back({PiiKind::kEmail, start, end});
    floor = end;
  }
}

void FindIpv6(std::string_view text, std::vector<PiiMatch>* out) {
  const size_t n = text.size();
  size_t pos = 0;  // everything before pos has been looked at
  for (size_t colon = Next(text, 0, ':'); colon != std::string_view::npos;
       colon = Next(text, pos, ':')) {
    // The run of hex digits, ':' and '.' around this colon. The walk left stops
    // at pos, which is past the previous run, so each byte is walked once.
    size_t start = colon;
    while (start > pos && Is(text[start - 1], kHex)) --start;
    size_t limit = colon;
    while (limit < n && (Is(text[limit], kHex) || text[limit] == ':' || text[limit] == '.')) {
      ++limit;
    }
    pos = limit;
    if (start > 0 && (IsAlnum(text[start - 1]) || text[start - 1] == '.' ||
                      text[start - 1] == ':')) {
      continue;  // glued: "std::map", "1.2.3.4:80", "x:fe80::1"
    }
    const size_t end = ParseIpv6(text, start, limit);
    if (end != kNoMatch) out->push_back({PiiKind::kIpv6, start, end});
  }
}

}  // namespace bastion::pii
