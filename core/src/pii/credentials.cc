// Credentials: API keys with known prefixes, JWTs, PEM private keys, and the
// generic high-entropy "secret" rule. Rules in bastion/pii.h.
#include <algorithm>
#include <array>
#include <cmath>

#include "pii/detectors.h"

namespace bastion::pii {
namespace {

constexpr size_t kMinSecret = 20;
constexpr size_t kMaxSecret = 256;

// --- API keys ---

constexpr uint16_t kKeyBody = kAlnum | kUnderscore | kDash;  // also base64url
constexpr uint16_t kUpperDigit = kUpper | kDigit;

// RunCache slots, one per body alphabet with unbounded length.
enum Slot : int { kKeyBodySlot, kAlnumSlot, kPatSlot, kSlackSlot, kNoSlot = -1 };
static_assert(kSlackSlot < RunCache::kSlots);

struct KeyRule {
  std::string_view prefix;
  uint16_t body;       // the alphabet of what follows the prefix
  int slot;            // its RunCache slot; kNoSlot for fixed-length bodies
  uint16_t min_body;
  uint16_t max_body;
  // The body must contain a digit (Slack), or lower, upper and digit (the
  // bare OpenAI "sk-", which would otherwise match "sk-learn-..." phrases).
  enum Needs : uint8_t { kAny, kDigitInBody, kMixedCaseAndDigit } needs = kAny;
};

// The first rule whose prefix matches decides, so longer prefixes come first.
constexpr KeyRule kKeyRules[] = {
    {"sk-ant-", kKeyBody, kKeyBodySlot, 20, 300},
    {"sk-proj-", kKeyBody, kKeyBodySlot, 20, 300},
    {"sk-", kKeyBody, kKeyBodySlot, 20, 300, KeyRule::kMixedCaseAndDigit},
    {"sk_live_", kAlnum, kAlnumSlot, 16, 300},
    {"sk_test_", kAlnum, kAlnumSlot, 16, 300},
    {"rk_live_", kAlnum, kAlnumSlot, 16, 300},
    {"rk_test_", kAlnum, kAlnumSlot, 16, 300},
    {"pk_live_", kAlnum, kAlnumSlot, 16, 300},
    {"pk_test_", kAlnum, kAlnumSlot, 16, 300},
    {"github_pat_", kAlnum | kUnderscore, kPatSlot, 22, 300},
    {"ghp_", kAlnum, kAlnumSlot, 36, 251},
    {"gho_", kAlnum, kAlnumSlot, 36, 251},
    {"ghu_", kAlnum, kAlnumSlot, 36, 251},
    {"ghs_", kAlnum, kAlnumSlot, 36, 251},
    {"ghr_", kAlnum, kAlnumSlot, 36, 251},
    {"glpat-", kKeyBody, kKeyBodySlot, 20, 300},
    {"xoxb-", kAlnum | kDash, kSlackSlot, 10, 300, KeyRule::kDigitInBody},
    {"xoxp-", kAlnum | kDash, kSlackSlot, 10, 300, KeyRule::kDigitInBody},
    {"xoxa-", kAlnum | kDash, kSlackSlot, 10, 300, KeyRule::kDigitInBody},
    {"xoxr-", kAlnum | kDash, kSlackSlot, 10, 300, KeyRule::kDigitInBody},
    {"hf_", kAlnum, kAlnumSlot, 30, 300},
    {"AKIA", kUpperDigit, kNoSlot, 16, 16},
    {"ASIA", kUpperDigit, kNoSlot, 16, 16},
    {"AIza", kKeyBody, kNoSlot, 35, 35},
};

bool BodyHas(std::string_view body, KeyRule::Needs needs) {
  uint16_t seen = 0;
  for (char c : body) seen |= ByteClass(c);
  switch (needs) {
    case KeyRule::kAny:
      return true;
    case KeyRule::kDigitInBody:
      return (seen & kDigit) != 0;
    case KeyRule::kMixedCaseAndDigit:
      return (seen & kDigit) && (seen & kUpper) && (seen & kLower);
  }
  return false;
}

// eyJ<header>.eyJ<payload>.<signature>, base64url; returns the end or kNoMatch.
size_t MatchJwt(std::string_view text, size_t start, RunCache* cache) {
  constexpr size_t kMinSegment = 15;
  const size_t header_end = cache->RunEnd(kKeyBodySlot, kKeyBody, start);
  if (header_end - start < kMinSegment || !CharAt(text, header_end, '.')) return kNoMatch;
  const size_t payload = header_end + 1;
  if (text.substr(payload, 3) != "eyJ") return kNoMatch;
  const size_t payload_end = cache->RunEnd(kKeyBodySlot, kKeyBody, payload);
  if (payload_end - payload < kMinSegment || !CharAt(text, payload_end, '.')) return kNoMatch;
  return cache->RunEnd(kKeyBodySlot, kKeyBody, payload_end + 1);  // the signature may be empty
}

// --- PEM ---

bool IsLineBreakAt(std::string_view text, size_t pos, size_t* after) {
  // Real line breaks, and the "\n" escapes of a key pasted inside JSON.
  for (std::string_view br : {"\r\n", "\n", "\\r\\n", "\\n"}) {
    if (text.substr(pos, br.size()) == br) {
      *after = pos + br.size();
      return true;
    }
  }
  return false;
}

// The end of the base64 lines that start right after a BEGIN marker, for a
// block whose END marker is missing.
size_t Base64BodyEnd(std::string_view text, size_t body) {
  constexpr uint16_t kBase64 = kAlnum | kPlus | kSlash;
  size_t end = body;
  size_t pos = body;
  while (true) {
    size_t line = pos;
    if (!IsLineBreakAt(text, pos, &line) && pos != body) break;
    size_t q = line;
    while (q < text.size() && (Is(text[q], kBase64) || text[q] == '=')) ++q;
    size_t after;
    if (q == line || (q < text.size() && !IsLineBreakAt(text, q, &after))) break;
    end = q;
    pos = q;
  }
  return end;
}

// --- secrets ---

// The 300 most frequent letter pairs inside words of English prose and program
// identifiers (counted over Python's standard library and /usr/share/doc, case
// folded): bit b of row a is set if the pair (a, b) is common.
constexpr uint32_t kCommonBigrams[26] = {
    0x13ebd7e, 0x1164b1d, 0x11e5d9f, 0x016491b,  // a b c d
    0x1effb7f, 0x01e493d, 0x016f99d, 0x01a4111,  // e f g h
    0x2aefc7f, 0x0144011, 0x0044111, 0x11c4939,  // i j k l
    0x014d91b, 0x13cfd7d, 0x07efd6f, 0x11ee9d9,  // m n o p
    0x0100000, 0x13e7d7d, 0x11edd95, 0x11edbbd,  // q r s t
    0x00eb97f, 0x0004111, 0x0064191, 0x0088114,  // u v w x
    0x00c8000, 0x0000010,                        // y z
};

bool IsCommonBigram(char a, char b) {
  const int x = (a | 0x20) - 'a', y = (b | 0x20) - 'a';  // ASCII letters, folded
  return (kCommonBigrams[x] >> y) & 1;
}

// c * log2(c) for every count a token can hold.
const std::array<double, kMaxSecret + 1>& CountLog2Count() {
  static const auto table = [] {
    std::array<double, kMaxSecret + 1> t{};
    for (size_t c = 1; c <= kMaxSecret; ++c) t[c] = c * std::log2(static_cast<double>(c));
    return t;
  }();
  return table;
}

// The end of a secret candidate that ends the token run at `end`: up to two
// '=' of base64 padding, unless more token bytes follow ("name=value").
size_t ExtendBase64Padding(std::string_view text, size_t end) {
  size_t e = end;
  while (e - end < 2 && CharAt(text, e, '=')) ++e;
  if (e == end || IsAt(text, e, kToken) || CharAt(text, e, '=')) return end;
  return e;
}

// A path or URL tail ("com/npm/npm/commit/<sha>", "/usr/lib/x86_64..."),
// rather than base64: it has an empty '/'-separated segment or one made of 2+
// lower-case letters only.
bool LooksLikePath(std::string_view token) {
  if (token.find('/') == std::string_view::npos) return false;
  size_t begin = 0;
  while (true) {
    const size_t end = std::min(token.find('/', begin), token.size());
    const std::string_view segment = token.substr(begin, end - begin);
    if (segment.empty()) return true;
    if (segment.size() >= 2 &&
        std::all_of(segment.begin(), segment.end(), [](char c) { return Is(c, kLower); })) {
      return true;
    }
    if (end == token.size()) return false;
    begin = end + 1;
  }
}

// The "secret" rules of bastion/pii.h, applied to one whole token.
bool LooksLikeSecret(std::string_view token) {
  if (token.size() < kMinSecret || token.size() > kMaxSecret) return false;
  // Subresource-integrity digests ("sha384-<base64>") are public hashes.
  if (token.size() > 7 && token.substr(0, 3) == "sha" && IsDigit(token[3]) &&
      token.substr(4, 4).find('-') != std::string_view::npos) {
    return false;
  }
  std::string_view body = token;
  while (!body.empty() && body.back() == '=') body.remove_suffix(1);
  const size_t n = body.size();

  uint16_t seen = 0;
  size_t symbols = 0, pairs = 0, common_pairs = 0, steps = 0;
  uint16_t counts[128] = {};
  for (size_t i = 0; i < n; ++i) {
    const char c = body[i];
    const uint16_t cls = ByteClass(c);
    seen |= cls;
    if (!(cls & kAlnum)) ++symbols;
    ++counts[static_cast<unsigned char>(c) & 0x7f];
    // "abcdef", "0123456789": alphabets and keyboard runs are not random.
    if (i + 1 < n && (cls & kAlnum) && (body[i + 1] == c + 1 || body[i + 1] == c - 1)) ++steps;
    // Letter pairs inside a word: not across a lower-to-upper step ("keyId")
    // nor into the capital that starts a word after an acronym ("HTTPServer").
    if (i + 1 < n && (cls & kAlpha) && Is(body[i + 1], kAlpha)) {
      const uint16_t next = ByteClass(body[i + 1]);
      const bool camel_step = (cls & kLower) && (next & kUpper);
      const bool acronym_end = (cls & kUpper) && (next & kUpper) && i + 2 < n &&
                               Is(body[i + 2], kLower);
      if (!camel_step && !acronym_end) {
        ++pairs;
        common_pairs += IsCommonBigram(c, body[i + 1]);
      }
    }
  }
  // Both letter cases, and digits or symbols: one-case tokens are names
  // (snake_case, UPPER_SNAKE, kebab-case), and random text is mixed case.
  if (!(seen & kLower) || !(seen & kUpper)) return false;
  if (!(seen & kDigit) && symbols == 0 && body.size() == token.size()) return false;  // '=' pads
  // Hex (digests, commit ids, UUIDs): every letter is a-f.
  if (std::none_of(body.begin(), body.end(),
                   [](char c) { return Is(c, kAlpha) && !Is(c, kHexLetter); })) {
    return false;
  }
  // Words joined by symbols: paths, snake_case, kebab-case.
  if (symbols >= 3 && symbols * 8 > n) return false;
  if (steps * 4 >= n) return false;
  // Reads like English.
  if (pairs >= 4 && common_pairs * 4 >= pairs * 3) return false;
  // Shannon entropy in bits per character: log2(n) - sum(c * log2(c)) / n
  // over the count c of each distinct byte (each counted once, then cleared).
  double sum = 0;
  const auto& clog = CountLog2Count();
  for (char c : body) {
    uint16_t& count = counts[static_cast<unsigned char>(c) & 0x7f];
    sum += clog[count];
    count = 0;
  }
  const double log2n = std::log2(static_cast<double>(n));
  return log2n - sum / n >= std::min(4.0, log2n - 0.7);
}

}  // namespace

size_t RunCache::RunEnd(int slot, uint16_t mask, size_t pos) {
  if (from_[slot] <= pos && pos < end_[slot]) return end_[slot];
  size_t end = pos;
  while (end < text_.size() && Is(text_[end], mask)) ++end;
  from_[slot] = pos;
  end_[slot] = end;
  return end;
}

size_t MatchApiKey(std::string_view text, size_t start, RunCache* cache) {
  const std::string_view rest = text.substr(start);
  if (rest.substr(0, 3) == "eyJ") return MatchJwt(text, start, cache);
  for (const KeyRule& rule : kKeyRules) {
    if (rule.prefix[0] != rest[0] || rest.substr(0, rule.prefix.size()) != rule.prefix) continue;
    const size_t body = start + rule.prefix.size();
    size_t end = body;
    if (rule.slot == kNoSlot) {
      while (end < text.size() && end - body <= rule.max_body && Is(text[end], rule.body)) ++end;
    } else {
      end = cache->RunEnd(rule.slot, rule.body, body);
    }
    const size_t length = end - body;
    if (length < rule.min_body || length > rule.max_body || IsAt(text, end, kAlnum) ||
        !BodyHas(text.substr(body, length), rule.needs)) {
      return kNoMatch;
    }
    return end;
  }
  return kNoMatch;
}

void FindPemPrivateKeys(std::string_view text, std::vector<PiiMatch>* out) {
  constexpr std::string_view kBegin = "-----BEGIN ";
  constexpr std::string_view kEnd = "-----END ";
  constexpr std::string_view kDashes = "-----";
  constexpr size_t kMaxLabel = 64;
  constexpr uint16_t kLabelChar = kUpper | kDigit;
  const auto label_end = [&](size_t from) {
    size_t q = from;
    while (q < text.size() && q - from < kMaxLabel && (Is(text[q], kLabelChar) || text[q] == ' ')) {
      ++q;
    }
    return q;
  };
  // The next END marker at or after some offset, searched again only once the
  // scan passes it, so a text of many BEGINs and no END stays linear.
  size_t next_end = 0;
  bool next_end_known = false;
  size_t pos = 0;
  for (size_t begin = text.find(kBegin); begin != std::string_view::npos;
       begin = text.find(kBegin, pos)) {
    const size_t label = begin + kBegin.size();
    const size_t q = label_end(label);
    const std::string_view name = text.substr(label, q - label);
    if (text.substr(q, kDashes.size()) != kDashes ||
        !(name.ends_with("PRIVATE KEY") || name.ends_with("PRIVATE KEY BLOCK"))) {
      pos = label;
      continue;
    }
    const size_t body = q + kDashes.size();
    if (!next_end_known || next_end < body) {
      next_end = text.find(kEnd, body);
      next_end_known = true;
    }
    size_t end;
    if (next_end != std::string_view::npos) {
      end = label_end(next_end + kEnd.size());
      if (text.substr(end, kDashes.size()) == kDashes) end += kDashes.size();
    } else {
      end = Base64BodyEnd(text, body);  // truncated: no END marker
    }
    out->push_back({PiiKind::kApiKey, begin, end});
    pos = end;
  }
}

void FindSecretsInRun(std::string_view text, size_t begin, size_t end,
                      std::vector<PiiMatch>* out) {
  const size_t token_end = ExtendBase64Padding(text, end);
  const std::string_view token = text.substr(begin, token_end - begin);
  if (!LooksLikePath(token)) {
    if (LooksLikeSecret(token)) out->push_back({PiiKind::kSecret, begin, token_end});
    return;
  }
  // A path: each segment is judged on its own (a capability token in a URL).
  size_t s = 0;
  while (s < token.size()) {
    const size_t e = std::min(token.find('/', s), token.size());
    if (LooksLikeSecret(token.substr(s, e - s))) {
      out->push_back({PiiKind::kSecret, begin + s, begin + e});
    }
    s = e + 1;
  }
}

}  // namespace bastion::pii
