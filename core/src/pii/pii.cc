// FindPii drives the detectors of pii/detectors.h over the text, then resolves
// overlaps between their candidates; MaskPii rewrites the text.
#include "bastion/pii.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <map>

#include "pii/byte_blocks.h"
#include "pii/detectors.h"

namespace bastion {
namespace {

using pii::IsAt;
using pii::kNoMatch;

constexpr std::string_view kKindNames[kPiiKindCount] = {
    "email",  "phone", "credit_card", "iban",    "us_ssn",
    "kr_rrn", "ipv4",  "ipv6",        "api_key", "secret",
};
constexpr std::string_view kKindLabels[kPiiKindCount] = {
    "[EMAIL]", "[PHONE]", "[CREDIT_CARD]", "[IBAN]", "[US_SSN]",
    "[KR_RRN]", "[IPV4]", "[IPV6]", "[API_KEY]", "[SECRET]",
};
// Tie-break between overlapping candidates of equal length: lower wins.
// Checksummed and prefixed kinds are the least likely to be accidental.
constexpr int kSpecificity[kPiiKindCount] = {
    /*email=*/5, /*phone=*/8,  /*credit_card=*/1, /*iban=*/2,    /*us_ssn=*/4,
    /*kr_rrn=*/3, /*ipv4=*/7, /*ipv6=*/6,         /*api_key=*/0, /*secret=*/9,
};

size_t Index(PiiKind kind) { return static_cast<size_t>(kind); }

// Token runs shorter than this can hold neither an API key nor a JWT.
constexpr size_t kMinCredential = 15;
constexpr size_t kMinSecret = 20;

constexpr PiiKinds kNumberKinds =
    PiiKindBit(PiiKind::kPhone) | PiiKindBit(PiiKind::kCreditCard) |
    PiiKindBit(PiiKind::kUsSsn) | PiiKindBit(PiiKind::kKrRrn) | PiiKindBit(PiiKind::kIpv4);
constexpr PiiKinds kGroupedKinds = kNumberKinds & ~PiiKindBit(PiiKind::kPhone);
constexpr PiiKinds kTokenKinds = PiiKindBit(PiiKind::kApiKey) | PiiKindBit(PiiKind::kSecret);

// Collects the candidates of every requested detector. Candidates of one kind
// never overlap each other (each detector resumes after its last match, like a
// regex scan); candidates of different kinds may.
class CandidateScanner {
 public:
  CandidateScanner(std::string_view text, PiiKinds kinds)
      : text_(text), kinds_(kinds & kAllPii), cache_(text) {}

  std::vector<PiiMatch> Scan() && {
    if (Wants(PiiKind::kEmail)) pii::FindEmails(text_, &candidates_);
    if (Wants(PiiKind::kIpv6)) pii::FindIpv6(text_, &candidates_);
    if (Wants(PiiKind::kApiKey)) pii::FindPemPrivateKeys(text_, &candidates_);
    if (kinds_ & (kNumberKinds | kTokenKinds | PiiKindBit(PiiKind::kIban))) ClassifyBytes();
    return std::move(candidates_);
  }

 private:
  bool Wants(PiiKind kind) const { return HasPiiKind(kinds_, kind); }
  // Whether a match of `kind` may start at `pos`: wanted, and not inside the
  // previous match of that kind.
  bool Open(PiiKind kind, size_t pos) const {
    return Wants(kind) && pos >= last_end_[Index(kind)];
  }
  void Add(PiiKind kind, size_t start, size_t end) {
    if (end == kNoMatch || start < last_end_[Index(kind)]) return;
    candidates_.push_back({kind, start, end});
    last_end_[Index(kind)] = end;
  }

  // The one pass over every byte, a block of 64 at a time. It finds where
  // words (runs of ASCII letters and digits) start, and the runs of token
  // bytes [A-Za-z0-9+/_-]; numbers are tried at words that start with a digit,
  // IBANs at words that start with two capitals, keys and secrets on token
  // runs long enough to hold one.
  void ClassifyBytes() {
    const size_t n = text_.size();
    size_t base = 0;
    for (; base + pii::kBlockSize <= n; base += pii::kBlockSize) {
      ScanBlock(base, pii::ClassifyBlock(text_.data() + base));
    }
    // The tail, padded with spaces; a final block also ends a token run that
    // is still open at the end of the text.
    char tail[pii::kBlockSize];
    std::memset(tail, ' ', sizeof(tail));
    if (n > base) std::memcpy(tail, text_.data() + base, n - base);  // data() may be null
    ScanBlock(base, pii::ClassifyBlock(tail));
  }

  void ScanBlock(size_t base, const pii::BlockMasks& m) {
    const uint64_t prev_alnum = (m.alnum << 1) | carry_alnum_;  // bit j: byte j-1
    const uint64_t prev_token = (m.token << 1) | carry_token_;
    uint64_t starts = 0;
    if (kinds_ & kNumberKinds) starts |= m.digit & ~prev_alnum;
    if (Wants(PiiKind::kIban)) {
      const uint64_t next_upper = IsAt(text_, base + pii::kBlockSize, pii::kUpper);
      starts |= m.upper & ~prev_alnum & ((m.upper >> 1) | (next_upper << 63));
    }
    for (; starts != 0; starts &= starts - 1) {
      const size_t i = base + std::countr_zero(starts);
      if (pii::IsDigit(text_[i])) {
        OnNumberStart(i);
      } else if (Open(PiiKind::kIban, i)) {
        Add(PiiKind::kIban, i, pii::MatchIban(text_, i));
      }
    }
    if (kinds_ & kTokenKinds) ScanTokenRuns(base, m.token, prev_token);
    carry_alnum_ = m.alnum >> 63;
    carry_token_ = m.token >> 63;
  }

  // Calls OnTokenRun for every maximal token run of kMinCredential+ bytes that
  // ends in this block, and keeps track of the run open at its end.
  void ScanTokenRuns(size_t base, uint64_t token, uint64_t prev_token) {
    const uint64_t begins = token & ~prev_token;  // a run begins at bit j
    const uint64_t ends = ~token & prev_token;    // a run ended right before bit j
    uint64_t own = token;                         // bits of runs that begin here
    if (carry_token_) {
      if (ends == 0) return;  // the whole block continues the open run
      const int e = std::countr_zero(ends);
      if (base + e - run_begin_ >= kMinCredential) OnTokenRun(run_begin_, base + e);
      own &= ~uint64_t{0} << e;
    }
    // Bit j of `longs`: bits j..j+14 of `own` are all set.
    uint64_t longs = own & (own >> 1);
    longs &= longs >> 2;
    longs &= longs >> 4;
    longs &= longs >> 7;
    static_assert(kMinCredential == 15, "the shifts above find runs of 15");
    while (longs != 0) {
      const int j = std::countr_zero(longs);
      const uint64_t upto_j = (uint64_t{2} << j) - 1;  // bits 0..j
      const uint64_t later_ends = ends & ~upto_j;
      if (later_ends == 0) break;  // open at the block end: ends in a later block
      const int b = 63 - std::countl_zero(begins & upto_j);
      const int e = std::countr_zero(later_ends);
      OnTokenRun(base + b, base + e);
      longs &= ~uint64_t{0} << e;
    }
    if (token >> 63) {  // a run is open at the block end
      if (~token != 0) {
        run_begin_ = base + pii::kBlockSize - std::countl_zero(~token);
      } else if (!carry_token_) {
        run_begin_ = base;
      }
    }
  }

  // `i` is a digit that starts a word.
  void OnNumberStart(size_t i) {
    // Most numbers in text are short and alone ("12 items", "$49"); every
    // number kind needs 7+ digits in a row or a separator to go on with.
    size_t r = i;
    while (r < text_.size() && pii::IsDigit(text_[r]) && r - i < 7) ++r;
    if (r - i < 7 && !ContinuesNumber(r)) return;
    if (Open(PiiKind::kPhone, i)) {
      size_t start;
      const size_t end = pii::MatchPhone(text_, i, &start);
      Add(PiiKind::kPhone, start, end);
    }
    if (!(kinds_ & kGroupedKinds)) return;
    const pii::DigitGroups groups = pii::ScanDigitGroups(text_, i);
    if (Open(PiiKind::kIpv4, i)) Add(PiiKind::kIpv4, i, pii::MatchIpv4(text_, groups));
    if (pii::NumberGluedLeft(text_, i)) return;
    if (Open(PiiKind::kCreditCard, i)) {
      Add(PiiKind::kCreditCard, i, pii::MatchCreditCard(text_, groups));
    }
    if (Open(PiiKind::kUsSsn, i)) Add(PiiKind::kUsSsn, i, pii::MatchUsSsn(text_, groups));
    if (Open(PiiKind::kKrRrn, i)) Add(PiiKind::kKrRrn, i, pii::MatchKrRrn(text_, groups));
  }

  // Whether the digit run ending at `r` may go on as part of a longer number:
  // a separator then a digit, or a parenthesis ("(415) 555", "+44(0)20").
  bool ContinuesNumber(size_t r) const {
    if (r >= text_.size()) return false;
    const char c = text_[r];
    if (c == '(' || c == ')') return true;
    return (c == ' ' || c == '-' || c == '.') &&
           (IsAt(text_, r + 1, pii::kDigit) || pii::CharAt(text_, r + 1, '('));
  }

  // [begin, end) is a maximal run of token bytes, at least kMinCredential long.
  void OnTokenRun(size_t begin, size_t end) {
    if (Wants(PiiKind::kApiKey)) {
      // Keys start at a letter that starts a word inside the run
      // ("token/ghp_...", "x-sk-ant-...").
      for (size_t q = begin; q + kMinCredential <= end; ++q) {
        if (!pii::Is(text_[q], pii::kAlpha) || (q > 0 && pii::IsAlnum(text_[q - 1])) ||
            !Open(PiiKind::kApiKey, q)) {
          continue;
        }
        Add(PiiKind::kApiKey, q, pii::MatchApiKey(text_, q, &cache_));
      }
    }
    if (Wants(PiiKind::kSecret) && end - begin >= kMinSecret) {
      pii::FindSecretsInRun(text_, begin, end, &candidates_);
    }
  }

  std::string_view text_;
  PiiKinds kinds_;
  pii::RunCache cache_;
  std::vector<PiiMatch> candidates_;
  size_t last_end_[kPiiKindCount] = {};
  // Whether the byte before the current block is alnum / a token byte, and
  // where the token run open at the end of the last block began.
  uint64_t carry_alnum_ = 0;
  uint64_t carry_token_ = 0;
  size_t run_begin_ = 0;
};

// Whether `a` should be kept over an overlapping `b` (see bastion/pii.h): a
// secret only where nothing else matched, then the longer, then the more
// specific kind, then the earlier.
bool Preferred(const PiiMatch& a, const PiiMatch& b) {
  const bool a_secret = a.kind == PiiKind::kSecret, b_secret = b.kind == PiiKind::kSecret;
  if (a_secret != b_secret) return b_secret;
  const size_t la = a.end - a.start, lb = b.end - b.start;
  if (la != lb) return la > lb;
  if (a.kind != b.kind) return kSpecificity[Index(a.kind)] < kSpecificity[Index(b.kind)];
  return a.start < b.start;
}

// Keeps, greedily in order of preference, every candidate of an overlapping
// cluster that overlaps nothing kept so far; appends them sorted by start.
void ResolveCluster(std::vector<PiiMatch> cluster, std::vector<PiiMatch>* out) {
  std::sort(cluster.begin(), cluster.end(), Preferred);
  std::map<size_t, PiiMatch> kept;  // by start
  for (const PiiMatch& m : cluster) {
    auto next = kept.lower_bound(m.start);
    if (next != kept.end() && next->second.start < m.end) continue;
    if (next != kept.begin() && std::prev(next)->second.end > m.start) continue;
    kept.emplace(m.start, m);
  }
  for (const auto& [start, m] : kept) out->push_back(m);
}

std::vector<PiiMatch> ResolveOverlaps(std::vector<PiiMatch> candidates) {
  std::sort(candidates.begin(), candidates.end(), [](const PiiMatch& a, const PiiMatch& b) {
    return a.start != b.start ? a.start < b.start : a.end > b.end;
  });
  std::vector<PiiMatch> out;
  out.reserve(candidates.size());
  for (size_t i = 0; i < candidates.size();) {
    size_t j = i + 1;
    size_t cluster_end = candidates[i].end;
    while (j < candidates.size() && candidates[j].start < cluster_end) {
      cluster_end = std::max(cluster_end, candidates[j].end);
      ++j;
    }
    if (j == i + 1) {
      out.push_back(candidates[i]);  // the common case: no overlap at all
    } else {
      ResolveCluster({candidates.begin() + i, candidates.begin() + j}, &out);
    }
    i = j;
  }
  return out;
}

bool KeepsLastFour(PiiKind kind) {
  switch (kind) {
    case PiiKind::kPhone:
    case PiiKind::kCreditCard:
    case PiiKind::kIban:
    case PiiKind::kUsSsn:
    case PiiKind::kKrRrn:
      return true;
    default:
      return false;
  }
}

void AppendPartial(std::string_view value, std::string* out) {
  size_t alnum = 0;
  for (char c : value) alnum += pii::IsAlnum(c);
  size_t seen = 0;
  for (char c : value) {
    if (pii::IsAlnum(c)) {
      ++seen;
      out->push_back(seen + 4 > alnum ? c : '*');
    } else {
      out->push_back(c);
    }
  }
}

}  // namespace

std::string_view PiiKindName(PiiKind kind) {
  return Index(kind) < kPiiKindCount ? kKindNames[Index(kind)] : "unknown";
}

std::optional<PiiKind> PiiKindFromName(std::string_view name) {
  for (int k = 0; k < kPiiKindCount; ++k) {
    if (kKindNames[k] == name) return static_cast<PiiKind>(k);
  }
  return std::nullopt;
}

std::vector<PiiMatch> FindPii(std::string_view text, PiiKinds kinds) {
  return ResolveOverlaps(CandidateScanner(text, kinds).Scan());
}

std::string MaskPii(std::string_view text, const std::vector<PiiMatch>& matches,
                    MaskStyle style) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  for (const PiiMatch& m : matches) {
    if (m.start < pos || m.start >= m.end || m.end > text.size()) continue;
    out.append(text.substr(pos, m.start - pos));
    if (style == MaskStyle::kPartial && KeepsLastFour(m.kind)) {
      AppendPartial(text.substr(m.start, m.end - m.start), &out);
    } else {
      out.append(Index(m.kind) < kPiiKindCount ? kKindLabels[Index(m.kind)] : "[PII]");
    }
    pos = m.end;
  }
  out.append(text.substr(pos));
  return out;
}

}  // namespace bastion
