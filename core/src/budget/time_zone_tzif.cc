// IANA time zones from TZif data (RFC 8536): the parser, the POSIX TZ rule of
// the footer, and the zone itself.
//
// The zone keeps the transition table as two sorted arrays (instant, offset
// after it). Instants at or after the last transition follow the footer rule,
// whose transitions are computed for the few years around the instant asked
// about, on the stack: lookups are O(log transitions), never allocate, and
// the object never changes after construction.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "bastion/time_zone.h"
#include "budget/civil.h"
#include "budget/time_zone_internal.h"

namespace bastion {

namespace {

using tz_internal::kInt64Max;
using tz_internal::SatMul;
using tz_internal::SatSub;

constexpr int64_t kSecondsPerDay = 86'400;
// Offsets beyond this are not local time anywhere; rejecting them also keeps
// every local-time computation far from overflow.
constexpr int64_t kMaxZoneOffsetSeconds = 25 * 3600;
// See TimeZone::FirstInstantAtOrAfterLocal: wider than any accepted offset.
constexpr int64_t kSearchMarginNs = 26 * 3600 * kNanosPerSecond;
// RFC 8536 section 3.3.1: rule times may range over -167..167 hours.
constexpr int kMaxRuleHours = 167;
// POSIX offsets ("EST5") are hh[:mm[:ss]] with hh in 0..24.
constexpr int kMaxOffsetHours = 24;

// --- the POSIX TZ rule ---

// A day of the year in one of POSIX's three notations.
struct RuleDate {
  enum class Kind : unsigned char {
    kJulian,         // Jn: 1..365, February 29 is never counted
    kZeroBased,      // n: 0..365, February 29 is counted in leap years
    kMonthWeekDay,   // Mm.w.d: day d (0 = Sunday) of week w (5 = last) of month m
  };
  Kind kind = Kind::kMonthWeekDay;
  int day = 0;  // kJulian, kZeroBased
  int month = 0, week = 0, weekday = 0;  // kMonthWeekDay
};

// "std offset [dst [offset] [,start[/time],end[/time]]]", with offsets stored
// the usual way round (east positive), unlike the TZ string's west-positive.
struct PosixRule {
  int64_t std_offset = 0;
  bool has_dst = false;
  int64_t dst_offset = 0;
  RuleDate start, end;
  int64_t start_time = 2 * 3600;  // local standard time
  int64_t end_time = 2 * 3600;    // local daylight time
};

bool IsLeapYear(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int DaysInMonth(int64_t year, int month) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return month == 2 && IsLeapYear(year) ? 29 : kDays[month - 1];
}

// The day number (days since 1970-01-01) of `date` in `year`.
int64_t RuleDay(const RuleDate& date, int64_t year) {
  const int64_t jan1 = DaysFromCivil(year, 1, 1);
  switch (date.kind) {
    case RuleDate::Kind::kJulian:
      return jan1 + date.day - 1 + (IsLeapYear(year) && date.day >= 60 ? 1 : 0);
    case RuleDate::Kind::kZeroBased:
      return jan1 + date.day;
    case RuleDate::Kind::kMonthWeekDay:
      break;
  }
  const int64_t first = DaysFromCivil(year, date.month, 1);
  // 0 = Sunday; day 0 (1970-01-01) was a Thursday.
  const int first_weekday = static_cast<int>(first + 4 - FloorDiv(first + 4, 7) * 7);
  int64_t day = first + (date.weekday - first_weekday + 7) % 7 + int64_t{date.week - 1} * 7;
  if (day >= first + DaysInMonth(year, date.month)) day -= 7;  // week 5 = last
  return day;
}

struct RuleTransition {
  int64_t at;   // UTC seconds
  bool to_dst;  // daylight time starts here (else standard time does)
};

// The transitions of years [year - 2, year + 2] in time order. Rule times may
// push a year's transitions a week into its neighbours, so two years either
// side always bracket any instant of `year`. Equal instants keep year order:
// a rule whose end meets next year's start ("0/0,J365/25") stays in DST.
constexpr int kRuleYearsEachSide = 2;
constexpr int kRuleTransitions = 2 * (2 * kRuleYearsEachSide + 1);

void RuleTransitionsAround(const PosixRule& rule, int64_t year,
                           RuleTransition (&out)[kRuleTransitions]) {
  int n = 0;
  for (int64_t y = year - kRuleYearsEachSide; y <= year + kRuleYearsEachSide; ++y) {
    out[n++] = {RuleDay(rule.start, y) * kSecondsPerDay + rule.start_time - rule.std_offset,
                true};
    out[n++] = {RuleDay(rule.end, y) * kSecondsPerDay + rule.end_time - rule.dst_offset, false};
  }
  // Insertion sort: stable, tiny, allocation-free.
  for (int i = 1; i < n; ++i) {
    RuleTransition t = out[i];
    int j = i;
    for (; j > 0 && out[j - 1].at > t.at; --j) out[j] = out[j - 1];
    out[j] = t;
  }
}

// The offset the rule gives at `t` (UTC seconds) and the next instant after
// `t` at which it may change (kInt64Max: never).
struct Piece {
  int64_t offset;
  int64_t end;
};

Piece RulePieceAt(const PosixRule& rule, int64_t t) {
  if (!rule.has_dst) return {rule.std_offset, kInt64Max};
  RuleTransition tr[kRuleTransitions];
  RuleTransitionsAround(rule, CivilFromDays(FloorDiv(t, kSecondsPerDay)).year, tr);
  // tr[0] lies at least a year before `t`, so the loop always sets `dst`.
  bool dst = false;
  int64_t end = kInt64Max;
  for (const RuleTransition& x : tr) {
    if (x.at <= t) {
      dst = x.to_dst;
    } else {
      end = x.at;
      break;
    }
  }
  return {dst ? rule.dst_offset : rule.std_offset, end};
}

// --- the TZ string parser ---

class TzStringParser {
 public:
  explicit TzStringParser(std::string_view s) : s_(s) {}

  // The rule, or an error message (without the zone name).
  bool Parse(PosixRule* rule, std::string* error) {
    int64_t west = 0;
    if (!Name("standard time name") || !Hms(kMaxOffsetHours, &west, "standard time offset")) {
      *error = error_;
      return false;
    }
    rule->std_offset = -west;
    if (AtEnd()) return true;
    rule->has_dst = true;
    if (!Name("daylight time name")) {
      *error = error_;
      return false;
    }
    rule->dst_offset = rule->std_offset + 3600;
    if (!AtEnd() && Peek() != ',') {
      if (!Hms(kMaxOffsetHours, &west, "daylight time offset")) {
        *error = error_;
        return false;
      }
      rule->dst_offset = -west;
    }
    if (AtEnd()) {
      // No rule: the C libraries' default, the US rules since 2007.
      rule->start = {RuleDate::Kind::kMonthWeekDay, 0, 3, 2, 0};
      rule->end = {RuleDate::Kind::kMonthWeekDay, 0, 11, 1, 0};
      return CheckOffsets(rule, error);
    }
    if (!Expect(',') || !Date(&rule->start, "start date") ||
        !OptionalTime(&rule->start_time, "start time") || !Expect(',') ||
        !Date(&rule->end, "end date") || !OptionalTime(&rule->end_time, "end time")) {
      *error = error_;
      return false;
    }
    if (!AtEnd()) {
      *error = Fail("unexpected text after the end rule");
      return false;
    }
    return CheckOffsets(rule, error);
  }

 private:
  bool AtEnd() const { return i_ >= s_.size(); }
  char Peek() const { return AtEnd() ? '\0' : s_[i_]; }
  static bool IsAlpha(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
  static bool IsDigit(char c) { return c >= '0' && c <= '9'; }

  std::string Fail(std::string_view what) {
    error_ = fmt::format("footer TZ string '{}': {} at offset {}", Printable(), what, i_);
    return error_;
  }
  bool FailFalse(std::string_view what) {
    Fail(what);
    return false;
  }
  std::string Printable() const {
    std::string out;
    for (char c : s_) {
      const auto u = static_cast<unsigned char>(c);
      out += u >= 0x20 && u < 0x7F ? std::string(1, c) : fmt::format("\\x{:02x}", u);
    }
    return out;
  }

  bool Expect(char c) {
    if (Peek() != c) return FailFalse(fmt::format("expected '{}'", c));
    ++i_;
    return true;
  }

  // "EST" (3+ letters) or "<+0530>" (3+ of [A-Za-z0-9+-] in angle brackets).
  bool Name(std::string_view what) {
    size_t len = 0;
    if (Peek() == '<') {
      ++i_;
      while (!AtEnd() && (IsAlpha(Peek()) || IsDigit(Peek()) || Peek() == '+' || Peek() == '-')) {
        ++i_;
        ++len;
      }
      if (Peek() != '>') return FailFalse(fmt::format("unterminated or invalid quoted {}", what));
      ++i_;
    } else {
      while (!AtEnd() && IsAlpha(Peek())) {
        ++i_;
        ++len;
      }
    }
    if (len < 3) return FailFalse(fmt::format("{} must have at least 3 characters", what));
    return true;
  }

  // Up to `max_digits` digits as a number; false if there are none.
  bool Number(int max_digits, int* out) {
    int v = 0, n = 0;
    while (n < max_digits && IsDigit(Peek())) {
      v = v * 10 + (Peek() - '0');
      ++i_;
      ++n;
    }
    *out = v;
    return n > 0;
  }

  // [+-]h[h[h]][:mm[:ss]] with hours up to `max_hours`, as signed seconds.
  bool Hms(int max_hours, int64_t* out, std::string_view what) {
    int sign = 1;
    if (Peek() == '+' || Peek() == '-') {
      sign = Peek() == '-' ? -1 : 1;
      ++i_;
    }
    int h = 0, m = 0, s = 0;
    if (!Number(max_hours > 99 ? 3 : 2, &h)) return FailFalse(fmt::format("expected {}", what));
    if (h > max_hours) return FailFalse(fmt::format("hours of {} exceed {}", what, max_hours));
    if (Peek() == ':') {
      ++i_;
      if (!Number(2, &m) || m > 59) return FailFalse(fmt::format("bad minutes in {}", what));
      if (Peek() == ':') {
        ++i_;
        if (!Number(2, &s) || s > 59) return FailFalse(fmt::format("bad seconds in {}", what));
      }
    }
    *out = sign * ((int64_t{h} * 60 + m) * 60 + s);
    return true;
  }

  bool OptionalTime(int64_t* out, std::string_view what) {
    if (Peek() != '/') return true;  // keeps the 02:00 default
    ++i_;
    return Hms(kMaxRuleHours, out, what);
  }

  bool Date(RuleDate* d, std::string_view what) {
    int v = 0;
    if (Peek() == 'J') {
      ++i_;
      if (!Number(3, &v) || v < 1 || v > 365) {
        return FailFalse(fmt::format("{}: Jn needs n in 1..365", what));
      }
      *d = {RuleDate::Kind::kJulian, v, 0, 0, 0};
      return true;
    }
    if (Peek() == 'M') {
      ++i_;
      int m = 0, w = 0, wd = 0;
      if (!Number(2, &m) || m < 1 || m > 12) {
        return FailFalse(fmt::format("{}: Mm.w.d needs m in 1..12", what));
      }
      if (!Expect('.')) return false;
      if (!Number(1, &w) || w < 1 || w > 5) {
        return FailFalse(fmt::format("{}: Mm.w.d needs w in 1..5", what));
      }
      if (!Expect('.')) return false;
      if (!Number(1, &wd) || wd > 6) {
        return FailFalse(fmt::format("{}: Mm.w.d needs d in 0..6", what));
      }
      *d = {RuleDate::Kind::kMonthWeekDay, 0, m, w, wd};
      return true;
    }
    if (!Number(3, &v) || v > 365) {
      return FailFalse(fmt::format("{}: expected Jn, n (0..365) or Mm.w.d", what));
    }
    *d = {RuleDate::Kind::kZeroBased, v, 0, 0, 0};
    return true;
  }

  bool CheckOffsets(const PosixRule* rule, std::string* error) {
    if (rule->dst_offset < -kMaxZoneOffsetSeconds || rule->dst_offset > kMaxZoneOffsetSeconds) {
      *error = Fail("daylight time offset is beyond +-25 hours");
      return false;
    }
    return true;
  }

  std::string_view s_;
  size_t i_ = 0;
  std::string error_;
};

// --- the zone ---

class TzifZone final : public TimeZone {
 public:
  TzifZone(std::string name, std::vector<int64_t> transitions, std::vector<int32_t> offsets,
           int64_t initial_offset, std::optional<PosixRule> rule)
      : name_(std::move(name)),
        transitions_(std::move(transitions)),
        offsets_(std::move(offsets)),
        initial_offset_(initial_offset),
        rule_(rule) {}

  int64_t OffsetSecondsAt(int64_t utc_ns) const override {
    return PieceAt(FloorDiv(utc_ns, kNanosPerSecond)).offset;
  }

  std::string Name() const override { return name_; }

  int64_t FirstInstantAtOrAfterLocal(int64_t local_ns) const override {
    // Walk the pieces of constant offset from a point no instant before which
    // can read local_ns yet; the first piece that reaches local_ns holds the
    // answer: local_ns itself on that piece's offset, or the piece's start if
    // its clock already reads later (a gap).
    int64_t u = SatSub(local_ns, kSearchMarginNs);
    // A 52-hour span holds a handful of transitions in real data; the bound
    // only guards against pathological files.
    for (int i = 0; i < 256; ++i) {
      const Piece p = PieceAt(FloorDiv(u, kNanosPerSecond));
      const int64_t candidate = std::max(u, SatSub(local_ns, p.offset * kNanosPerSecond));
      const int64_t end = SatMul(p.end, kNanosPerSecond);
      if (candidate < end || end == kInt64Max) return candidate;
      u = end;
    }
    return TimeZone::FirstInstantAtOrAfterLocal(local_ns);
  }

 private:
  // The offset at UTC second `t` and the next second at which it may change.
  Piece PieceAt(int64_t t) const {
    const size_t n = transitions_.size();
    if (rule_ && (n == 0 || t >= transitions_.back())) return RulePieceAt(*rule_, t);
    const size_t i =
        std::upper_bound(transitions_.begin(), transitions_.end(), t) - transitions_.begin();
    const int64_t offset = i == 0 ? initial_offset_ : offsets_[i - 1];
    return {offset, i < n ? transitions_[i] : kInt64Max};
  }

  std::string name_;
  std::vector<int64_t> transitions_;  // UTC seconds, strictly ascending
  std::vector<int32_t> offsets_;      // offsets_[i]: in force from transitions_[i]
  int64_t initial_offset_;            // before transitions_[0]: time type 0
  std::optional<PosixRule> rule_;     // from transitions_.back() on (or always)
};

// --- the TZif parser ---

// Reads big-endian fields from `bytes`; callers check Has() first, so no read
// ever goes past the end.
class ByteReader {
 public:
  explicit ByteReader(std::string_view bytes) : bytes_(bytes) {}
  size_t pos() const { return pos_; }
  size_t remaining() const { return bytes_.size() - pos_; }
  bool Has(uint64_t n) const { return n <= remaining(); }
  uint8_t U8() { return static_cast<uint8_t>(bytes_[pos_++]); }
  uint32_t U32() {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v = (v << 8) | U8();
    return v;
  }
  uint64_t U64() {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | U8();
    return v;
  }
  int32_t I32() { return static_cast<int32_t>(U32()); }
  int64_t I64() { return static_cast<int64_t>(U64()); }
  void Skip(size_t n) { pos_ += n; }
  std::string_view Rest() const { return bytes_.substr(pos_); }

 private:
  std::string_view bytes_;
  size_t pos_ = 0;
};

struct TzifHeader {
  char version = 0;  // '\0' (version 1), '2', '3', '4'
  uint32_t isutcnt = 0, isstdcnt = 0, leapcnt = 0, timecnt = 0, typecnt = 0, charcnt = 0;

  // Bytes of the data block that follows, with `time_size`-byte times.
  uint64_t DataSize(int time_size) const {
    return uint64_t{timecnt} * time_size + timecnt + uint64_t{typecnt} * 6 + charcnt +
           uint64_t{leapcnt} * (time_size + 4) + isstdcnt + isutcnt;
  }
};

constexpr size_t kHeaderSize = 44;

class TzifParser {
 public:
  TzifParser(std::string_view bytes, std::string name) : r_(bytes), name_(std::move(name)) {}

  Result<std::shared_ptr<const TimeZone>> Parse() {
    TzifHeader h1;
    BASTION_RETURN_IF_ERROR(ReadHeader("header", &h1));
    if (h1.version == '\0') {
      BASTION_RETURN_IF_ERROR(ReadData(h1, 4, "data block"));
      return Build(std::nullopt);
    }
    const uint64_t v1_size = h1.DataSize(4);
    if (!r_.Has(v1_size)) return Truncated("version 1 data block", v1_size);
    r_.Skip(v1_size);
    TzifHeader h2;
    BASTION_RETURN_IF_ERROR(ReadHeader("second header", &h2));
    if (h2.version != h1.version) {
      return Bad(fmt::format("second header has version {} but the first has {}",
                             VersionName(h2.version), VersionName(h1.version)));
    }
    BASTION_RETURN_IF_ERROR(ReadData(h2, 8, "64-bit data block"));
    // Footer: "\n" TZ-string "\n". Anything after it is ignored.
    if (!r_.Has(1)) return Bad(fmt::format("truncated: footer missing at offset {}", r_.pos()));
    if (r_.U8() != '\n') {
      return Bad(fmt::format("footer at offset {} does not start with a newline", r_.pos() - 1));
    }
    const std::string_view rest = r_.Rest();
    const size_t nl = rest.find('\n');
    if (nl == std::string_view::npos) {
      return Bad(fmt::format("truncated: footer at offset {} has no closing newline", r_.pos()));
    }
    const std::string_view tz = rest.substr(0, nl);
    if (tz.empty()) return Build(std::nullopt);
    PosixRule rule;
    std::string error;
    if (!TzStringParser(tz).Parse(&rule, &error)) return Bad(error);
    return Build(rule);
  }

 private:
  Status Bad(std::string_view what) const {
    return Status::InvalidArgument(fmt::format("time zone '{}': {}", name_, what));
  }
  Status Truncated(std::string_view what, uint64_t need) const {
    return Bad(fmt::format("truncated: {} needs {} bytes at offset {}, only {} left", what, need,
                           r_.pos(), r_.remaining()));
  }
  static std::string VersionName(char v) {
    if (v == '\0') return "1";
    const auto u = static_cast<unsigned char>(v);
    return u >= 0x20 && u < 0x7F ? std::string(1, v) : fmt::format("\\x{:02x}", u);
  }

  Status ReadHeader(std::string_view what, TzifHeader* h) {
    if (!r_.Has(kHeaderSize)) return Truncated(what, kHeaderSize);
    const size_t at = r_.pos();
    char magic[4];
    for (char& c : magic) c = static_cast<char>(r_.U8());
    if (std::memcmp(magic, "TZif", 4) != 0) {
      return Bad(fmt::format("{} at offset {} lacks the TZif magic", what, at));
    }
    h->version = static_cast<char>(r_.U8());
    if (h->version != '\0' && h->version != '2' && h->version != '3' && h->version != '4') {
      return Bad(fmt::format("unsupported TZif version '{}' in {}", VersionName(h->version), what));
    }
    r_.Skip(15);
    h->isutcnt = r_.U32();
    h->isstdcnt = r_.U32();
    h->leapcnt = r_.U32();
    h->timecnt = r_.U32();
    h->typecnt = r_.U32();
    h->charcnt = r_.U32();
    if (h->typecnt == 0) return Bad(fmt::format("{}: typecnt is 0", what));
    if (h->charcnt == 0) return Bad(fmt::format("{}: charcnt is 0", what));
    if (h->isutcnt != 0 && h->isutcnt != h->typecnt) {
      return Bad(fmt::format("{}: isutcnt {} is neither 0 nor typecnt {}", what, h->isutcnt,
                             h->typecnt));
    }
    if (h->isstdcnt != 0 && h->isstdcnt != h->typecnt) {
      return Bad(fmt::format("{}: isstdcnt {} is neither 0 nor typecnt {}", what, h->isstdcnt,
                             h->typecnt));
    }
    return Status::OK();
  }

  // Reads and checks a data block, keeping its transitions and offsets.
  Status ReadData(const TzifHeader& h, int time_size, std::string_view what) {
    const uint64_t size = h.DataSize(time_size);
    // One check up front: every read below then stays inside the block, and
    // nothing is allocated for counts the data cannot back.
    if (!r_.Has(size)) return Truncated(what, size);
    auto read_time = [&] { return time_size == 8 ? r_.I64() : int64_t{r_.I32()}; };

    transitions_.resize(h.timecnt);
    for (uint32_t i = 0; i < h.timecnt; ++i) {
      transitions_[i] = read_time();
      if (i > 0 && transitions_[i] <= transitions_[i - 1]) {
        return Bad(fmt::format("{}: transition {} ({}) is not after transition {} ({})", what, i,
                               transitions_[i], i - 1, transitions_[i - 1]));
      }
    }
    std::vector<uint8_t> type_of(h.timecnt);
    for (uint32_t i = 0; i < h.timecnt; ++i) {
      type_of[i] = r_.U8();
      if (type_of[i] >= h.typecnt) {
        return Bad(fmt::format("{}: transition {} has type index {}, but there are only {} types",
                               what, i, type_of[i], h.typecnt));
      }
    }
    std::vector<int32_t> type_offset(h.typecnt);
    for (uint32_t i = 0; i < h.typecnt; ++i) {
      const int32_t utoff = r_.I32();
      const uint8_t isdst = r_.U8();
      const uint8_t desigidx = r_.U8();
      if (int64_t{utoff} < -kMaxZoneOffsetSeconds || int64_t{utoff} > kMaxZoneOffsetSeconds) {
        return Bad(fmt::format("{}: type {} has offset {} seconds, beyond +-25 hours", what, i,
                               utoff));
      }
      if (isdst > 1) return Bad(fmt::format("{}: type {} has isdst {}", what, i, isdst));
      if (desigidx >= h.charcnt) {
        return Bad(fmt::format("{}: type {} has designation index {} past charcnt {}", what, i,
                               desigidx, h.charcnt));
      }
      type_offset[i] = utoff;
    }
    r_.Skip(h.charcnt);
    int64_t last_leap = 0;
    for (uint32_t i = 0; i < h.leapcnt; ++i) {
      const int64_t at = read_time();
      r_.Skip(4);  // the correction: unused, see TimeZoneFromTzif
      if (i > 0 && at <= last_leap) {
        return Bad(fmt::format("{}: leap second record {} is not after the previous one", what, i));
      }
      last_leap = at;
    }
    for (uint32_t i = 0; i < h.isstdcnt + h.isutcnt; ++i) {
      const uint8_t v = r_.U8();
      if (v > 1) {
        return Bad(fmt::format("{}: standard/UT indicator {} is {}, not 0 or 1", what, i, v));
      }
    }
    offsets_.resize(h.timecnt);
    for (uint32_t i = 0; i < h.timecnt; ++i) offsets_[i] = type_offset[type_of[i]];
    initial_offset_ = type_offset[0];
    return Status::OK();
  }

  Result<std::shared_ptr<const TimeZone>> Build(std::optional<PosixRule> rule) {
    return std::shared_ptr<const TimeZone>(std::make_shared<TzifZone>(
        std::move(name_), std::move(transitions_), std::move(offsets_), initial_offset_, rule));
  }

  ByteReader r_;
  std::string name_;
  std::vector<int64_t> transitions_;
  std::vector<int32_t> offsets_;
  int64_t initial_offset_ = 0;
};

}  // namespace

Result<std::shared_ptr<const TimeZone>> TimeZoneFromTzif(std::string_view bytes,
                                                         std::string name) {
  return TzifParser(bytes, std::move(name)).Parse();
}

}  // namespace bastion
