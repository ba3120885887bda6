// Time zones, calendar windows and budget spec validation.
#include <cassert>
#include <cstdint>
#include <limits>
#include <string>

#include <fmt/format.h>

#include "bastion/budget.h"
#include "budget/civil.h"

namespace bastion {

namespace {
constexpr int64_t kMaxOffsetSeconds = 18 * 3600;

int64_t OffsetNs(const TimeZone* zone, int64_t utc_ns) {
  return zone ? zone->OffsetSecondsAt(utc_ns) * kNanosPerSecond : 0;
}

// The UTC instant of local midnight starting local day `local_day`, asking the
// zone for the offset in force at that instant (one refinement step: enough
// for fixed offsets; a DST zone will need its own transition handling).
int64_t LocalDayStartUtc(const TimeZone* zone, int64_t local_day, int64_t offset_hint_ns) {
  const int64_t local_ns = local_day * kNanosPerDay;
  int64_t utc = local_ns - offset_hint_ns;
  return local_ns - OffsetNs(zone, utc);
}
}  // namespace

Result<std::shared_ptr<const TimeZone>> FixedOffset::Create(int64_t offset_seconds) {
  if (offset_seconds < -kMaxOffsetSeconds || offset_seconds > kMaxOffsetSeconds) {
    return Status::InvalidArgument(
        fmt::format("UTC offset must be within +-18:00 (got {} seconds)", offset_seconds));
  }
  return std::shared_ptr<const TimeZone>(std::make_shared<FixedOffset>(offset_seconds));
}

std::shared_ptr<const TimeZone> FixedOffset::Hours(int hours) {
  assert(hours >= -18 && hours <= 18);
  return std::make_shared<FixedOffset>(int64_t{hours} * 3600);
}

std::shared_ptr<const TimeZone> FixedOffset::Utc() { return std::make_shared<FixedOffset>(0); }

std::string FixedOffset::Name() const {
  if (offset_seconds_ == 0) return "UTC";
  int64_t a = offset_seconds_ < 0 ? -offset_seconds_ : offset_seconds_;
  std::string s = fmt::format("{}{:02}:{:02}", offset_seconds_ < 0 ? '-' : '+', a / 3600,
                              (a % 3600) / 60);
  if (a % 60 != 0) s += fmt::format(":{:02}", a % 60);
  return s;
}

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
  const int64_t off = OffsetNs(z, now_ns);
  const int64_t local_day = FloorDiv(now_ns + off, kNanosPerDay);
  int64_t first_day = local_day, next_day = local_day + 1;
  if (kind == Kind::kWeekly) {
    first_day = local_day - IsoWeekdayFromMonday(local_day);
    next_day = first_day + 7;
  } else if (kind == Kind::kMonthly) {
    CivilDate d = CivilFromDays(local_day);
    first_day = DaysFromCivil(d.year, d.month, 1);
    next_day = d.month == 12 ? DaysFromCivil(d.year + 1, 1, 1)
                             : DaysFromCivil(d.year, d.month + 1, 1);
  }
  return {LocalDayStartUtc(z, first_day, off), LocalDayStartUtc(z, next_day, off)};
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
    return bad(fmt::format("limit_nanousd must be > 0 (got {})", spec.limit_nanousd));
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
