// Calendar windows and budget spec validation.
#include <cstdint>
#include <limits>
#include <string>

#include <fmt/format.h>

#include "bastion/budget.h"
#include "bastion/money.h"
#include "budget/civil.h"
#include "budget/time_zone_internal.h"

namespace bastion {

namespace {

using tz_internal::kInt64Max;
using tz_internal::SatAdd;
using tz_internal::SatMul;
using tz_internal::SatSub;

constexpr int64_t kMaxOffsetSeconds = 18 * 3600;
// Clocks turned back across midnight make an instant read an earlier local
// day than the window it is in. Offsets stay within 25 hours, so a jump back
// spans at most 50 hours: three daily windows, one weekly or monthly one.
constexpr int kMaxWindowSteps = 4;

int64_t OffsetNs(const TimeZone* zone, int64_t utc_ns) {
  return zone ? SatMul(zone->OffsetSecondsAt(utc_ns), kNanosPerSecond) : 0;
}

// The instant window-day `local_day` starts: its local midnight, or where the
// clock first passes it (see TimeZone::FirstInstantAtOrAfterLocal).
int64_t LocalDayStartUtc(const TimeZone* zone, int64_t local_day) {
  const int64_t local_ns = SatMul(local_day, kNanosPerDay);
  return zone ? zone->FirstInstantAtOrAfterLocal(local_ns) : local_ns;
}

// The first local day of the calendar period containing `day`, and of the
// periods after and before the one starting at `first`.
int64_t PeriodFirstDay(Window::Kind kind, int64_t day) {
  if (kind == Window::Kind::kWeekly) return day - IsoWeekdayFromMonday(day);
  if (kind == Window::Kind::kMonthly) {
    const CivilDate d = CivilFromDays(day);
    return DaysFromCivil(d.year, d.month, 1);
  }
  return day;
}

int64_t NextPeriodFirstDay(Window::Kind kind, int64_t first) {
  if (kind == Window::Kind::kWeekly) return first + 7;
  if (kind == Window::Kind::kMonthly) {
    const CivilDate d = CivilFromDays(first);
    return d.month == 12 ? DaysFromCivil(d.year + 1, 1, 1) : DaysFromCivil(d.year, d.month + 1, 1);
  }
  return first + 1;
}

int64_t PrevPeriodFirstDay(Window::Kind kind, int64_t first) {
  if (kind == Window::Kind::kWeekly) return first - 7;
  if (kind == Window::Kind::kMonthly) return PeriodFirstDay(kind, first - 1);
  return first - 1;
}
}  // namespace

WindowBounds Window::BoundsAt(int64_t now_ns) const {
  const TimeZone* z = zone.get();
  switch (kind) {
    case Kind::kPerRun:
      return {std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()};
    case Kind::kRolling:
      return {now_ns - duration_ns + 1, now_ns + 1};
    case Kind::kDaily:
    case Kind::kWeekly:
    case Kind::kMonthly:
      break;
  }
  // Window k is [start(k), start(k + 1)), start(k) the first instant of its
  // first local day. start() never decreases, so these windows tile time
  // (a skipped day's window is empty), and exactly one contains now.
  const int64_t off = OffsetNs(z, now_ns);
  const int64_t local_day = FloorDiv(SatAdd(now_ns, off), kNanosPerDay);
  int64_t first = PeriodFirstDay(kind, local_day);
  int64_t next = NextPeriodFirstDay(kind, first);
  int64_t start = LocalDayStartUtc(z, first);
  int64_t end = LocalDayStartUtc(z, next);
  // After clocks are turned back over midnight, now can read the old day's
  // local time although the next window (from the earlier midnight) has begun.
  for (int i = 0; i < kMaxWindowSteps && now_ns >= end && end != kInt64Max; ++i) {
    first = next;
    next = NextPeriodFirstDay(kind, first);
    start = end;
    end = LocalDayStartUtc(z, next);
  }
  // The zones in time_zone.h never need this; a custom zone might.
  for (int i = 0; i < kMaxWindowSteps && now_ns < start; ++i) {
    next = first;
    first = PrevPeriodFirstDay(kind, first);
    end = start;
    start = LocalDayStartUtc(z, first);
  }
  if (start <= now_ns && now_ns < end) return {start, end};
  // A zone whose local-time search contradicts its own offsets: fall back to
  // the period on the offset in force now, which always contains now.
  first = PeriodFirstDay(kind, local_day);
  return {SatSub(SatMul(first, kNanosPerDay), off),
          SatSub(SatMul(NextPeriodFirstDay(kind, first), kNanosPerDay), off)};
}

std::string Window::ToString() const {
  std::string zname = zone ? zone->Name() : "UTC";
  switch (kind) {
    case Kind::kPerRun:
      return "per-run";
    case Kind::kRolling:
      if (duration_ns % kNanosPerSecond == 0) {
        return fmt::format("rolling {}s", duration_ns / kNanosPerSecond);
      }
      return fmt::format("rolling {}ns", duration_ns);
    case Kind::kDaily:
      return "daily " + zname;
    case Kind::kWeekly:
      return "weekly " + zname;
    case Kind::kMonthly:
      return "monthly " + zname;
  }
  return "?";
}

const char* AlertLevelName(AlertLevel level) {
  switch (level) {
    case AlertLevel::kInfo: return "info";
    case AlertLevel::kWarning: return "warning";
    case AlertLevel::kCritical: return "critical";
  }
  return "?";
}

const char* AlertActionName(AlertAction action) {
  switch (action) {
    case AlertAction::kLog: return "log";
    case AlertAction::kNotify: return "notify";
    case AlertAction::kThrottle: return "throttle";
    case AlertAction::kDowngrade: return "downgrade";
    case AlertAction::kHalt: return "halt";
  }
  return "?";
}

int64_t BudgetSpec::AdmissibleNanousd() const {
  if (limit_nanousd <= 0 || reserve_percent < 0 || reserve_percent > 100) return 0;
  __int128 v = static_cast<__int128>(limit_nanousd) * (100 - reserve_percent) / 100;
  return static_cast<int64_t>(v);
}

Status ValidateBudgetSpec(const BudgetSpec& spec) {
  auto bad = [&](const std::string& what) {
    return Status::InvalidArgument(fmt::format("budget '{}': {}", spec.id, what));
  };
  if (spec.id.empty()) return bad("id must not be empty");
  if (spec.scope.kind < Scope::Kind::kRun || spec.scope.kind > Scope::Kind::kGlobal) {
    return bad("scope.kind is not a known scope");
  }
  if (spec.scope.kind == Scope::Kind::kGlobal && !spec.scope.key.empty()) {
    return bad(fmt::format("scope.key must be empty for a global scope (got '{}')",
                           spec.scope.key));
  }
  if (spec.limit_nanousd <= 0) {
    return bad(
        fmt::format("limit_nanousd must be above $0 (got {})", FormatUsd(spec.limit_nanousd)));
  }
  if (spec.reserve_percent < 0 || spec.reserve_percent > 100) {
    return bad(fmt::format("reserve_percent must be in 0..100 (got {})", spec.reserve_percent));
  }
  const bool rolling = spec.window.kind == Window::Kind::kRolling;
  if (spec.window.kind < Window::Kind::kPerRun || spec.window.kind > Window::Kind::kMonthly) {
    return bad("window.kind is not a known window");
  }
  if (rolling && spec.window.duration_ns <= 0) {
    return bad(fmt::format("window.duration_ns must be > 0 for a rolling window (got {})",
                           spec.window.duration_ns));
  }
  if (!rolling && spec.window.duration_ns != 0) {
    return bad(fmt::format("window.duration_ns is only for rolling windows (got {})",
                           spec.window.duration_ns));
  }
  if (spec.window.zone) {
    int64_t off = spec.window.zone->OffsetSecondsAt(0);
    if (off < -kMaxOffsetSeconds || off > kMaxOffsetSeconds) {
      return bad(fmt::format("window.zone offset must be within +-18:00 (got {} seconds)", off));
    }
  }
  for (size_t i = 0; i < spec.thresholds.size(); ++i) {
    const AlertThreshold& t = spec.thresholds[i];
    if (t.percent < 1 || t.percent > 1000) {
      return bad(fmt::format("thresholds[{}].percent must be in 1..1000 (got {})", i, t.percent));
    }
    if (t.cooldown_ns < 0) {
      return bad(fmt::format("thresholds[{}].cooldown_ns must be >= 0 (got {})", i,
                             t.cooldown_ns));
    }
    if (rolling && t.cooldown_ns == 0) {
      return bad(fmt::format("thresholds[{}].cooldown_ns must be > 0 for a rolling window", i));
    }
    if (t.level < AlertLevel::kInfo || t.level > AlertLevel::kCritical) {
      return bad(fmt::format("thresholds[{}].level is not a known level", i));
    }
    if (t.action < AlertAction::kLog || t.action > AlertAction::kHalt) {
      return bad(fmt::format("thresholds[{}].action is not a known action", i));
    }
  }
  return Status::OK();
}

}  // namespace bastion
