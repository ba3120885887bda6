// Tests for calendar windows in zones with daylight-saving time: days of 23
// and 25 hours, midnights that are skipped or happen twice, skipped days,
// and the window invariants for random instants in every zone.
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <new>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "bastion/budget.h"
#include "budget/civil.h"
#include "budget/tz_test_util.h"

// Counts this thread's heap allocations, to show that offset lookups and
// window bounds never allocate. Replacing the global operator new affects the
// whole test binary, but it only counts and forwards to malloc.
namespace {
thread_local int64_t g_allocations = 0;
}  // namespace

void* operator new(std::size_t n) {
  ++g_allocations;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  ++g_allocations;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace bastion {
namespace {

using tztest::kDay;
using tztest::kHour;
using tztest::kMinute;
using tztest::LocalNs;
using tztest::Utc;
using tztest::WriteTzif;
using tztest::Zone;
using tztest::TzifSpec;

struct BoundsCase {
  const char* name;
  Window window;
  int64_t now;
  int64_t start;
  int64_t end;
};

void ExpectBounds(const std::vector<BoundsCase>& cases) {
  for (const BoundsCase& c : cases) {
    ASSERT_NE(c.window.zone, nullptr) << c.name;
    const WindowBounds b = c.window.BoundsAt(c.now);
    EXPECT_EQ(b.start_ns, c.start) << c.name << ": start off by " << (b.start_ns - c.start) / kMinute
                                   << " min";
    EXPECT_EQ(b.end_ns, c.end) << c.name << ": end off by " << (b.end_ns - c.end) / kMinute
                               << " min";
  }
}

int64_t PeriodFirstDay(Window::Kind kind, int64_t day) {
  if (kind == Window::Kind::kWeekly) return day - IsoWeekdayFromMonday(day);
  if (kind == Window::Kind::kMonthly) {
    const CivilDate d = CivilFromDays(day);
    return DaysFromCivil(d.year, d.month, 1);
  }
  return day;
}

// Empty when the window at `now` has every promised property.
std::string WindowProblem(const Window& w, int64_t now) {
  const WindowBounds b = w.BoundsAt(now);
  std::ostringstream err;
  if (!(b.start_ns <= now && now < b.end_ns)) {
    err << "does not contain now: [" << b.start_ns << ", " << b.end_ns << ")";
    return err.str();
  }
  if (!(w.BoundsAt(b.start_ns) == b)) err << "BoundsAt(start) differs; ";
  if (!(w.BoundsAt(b.end_ns - 1) == b)) err << "BoundsAt(end - 1) differs; ";
  if (w.BoundsAt(b.end_ns).start_ns != b.end_ns) err << "next window does not start at end; ";
  // start is the first instant at which the clock reaches the period's first
  // midnight: exactly on it, or past it at a transition that skipped it.
  const TimeZone& z = *w.zone;
  const int64_t at_start = LocalNs(z, b.start_ns), before = LocalNs(z, b.start_ns - 1);
  const int64_t midnight = PeriodFirstDay(w.kind, FloorDiv(at_start, kDay)) * kDay;
  if (!(before < midnight && midnight <= at_start)) {
    err << "start " << b.start_ns << " is not where the clock first reaches local midnight; ";
  }
  if (at_start != midnight && z.OffsetSecondsAt(b.start_ns - 1) == z.OffsetSecondsAt(b.start_ns)) {
    err << "start is past midnight but not at a transition; ";
  }
  return err.str();
}

TEST(DstWindow, NewYorkDaily2026) {
  auto ny = Zone("America/New_York");
  const Window daily = Window::Daily(ny);
  ExpectBounds({
      // Mar 8: midnight EST (05:00Z) to midnight EDT (04:00Z): 23 hours.
      {"spring day", daily, Utc(2026, 3, 8, 12), Utc(2026, 3, 8, 5), Utc(2026, 3, 9, 4)},
      {"spring day first ns", daily, Utc(2026, 3, 8, 5), Utc(2026, 3, 8, 5), Utc(2026, 3, 9, 4)},
      {"spring day last ns", daily, Utc(2026, 3, 9, 4) - 1, Utc(2026, 3, 8, 5),
       Utc(2026, 3, 9, 4)},
      {"day before spring", daily, Utc(2026, 3, 8, 5) - 1, Utc(2026, 3, 7, 5),
       Utc(2026, 3, 8, 5)},
      {"day after spring", daily, Utc(2026, 3, 9, 4), Utc(2026, 3, 9, 4), Utc(2026, 3, 10, 4)},
      // Nov 1: midnight EDT (04:00Z) to midnight EST (05:00Z): 25 hours; both
      // 01:30s (05:30Z EDT and 06:30Z EST) are in it.
      {"fall day", daily, Utc(2026, 11, 1, 12), Utc(2026, 11, 1, 4), Utc(2026, 11, 2, 5)},
      {"fall first 01:30", daily, Utc(2026, 11, 1, 5, 30), Utc(2026, 11, 1, 4),
       Utc(2026, 11, 2, 5)},
      {"fall second 01:30", daily, Utc(2026, 11, 1, 6, 30), Utc(2026, 11, 1, 4),
       Utc(2026, 11, 2, 5)},
      {"day after fall", daily, Utc(2026, 11, 2, 5), Utc(2026, 11, 2, 5), Utc(2026, 11, 3, 5)},
  });
  EXPECT_EQ(daily.BoundsAt(Utc(2026, 3, 8, 12)).end_ns - daily.BoundsAt(Utc(2026, 3, 8, 12)).start_ns,
            23 * kHour);
  EXPECT_EQ(daily.BoundsAt(Utc(2026, 11, 1, 12)).end_ns -
                daily.BoundsAt(Utc(2026, 11, 1, 12)).start_ns,
            25 * kHour);
  EXPECT_EQ(daily.ToString(), "daily America/New_York");
}

TEST(DstWindow, NewYorkWeeklyAndMonthly) {
  auto ny = Zone("America/New_York");
  ExpectBounds({
      // ISO week Mon Mar 2 .. Mon Mar 9 holds the spring-forward.
      {"weekly spring", Window::Weekly(ny), Utc(2026, 3, 8, 12), Utc(2026, 3, 2, 5),
       Utc(2026, 3, 9, 4)},
      {"weekly after spring", Window::Weekly(ny), Utc(2026, 3, 9, 4), Utc(2026, 3, 9, 4),
       Utc(2026, 3, 16, 4)},
      // Week Mon Oct 26 .. Mon Nov 2 holds the fall-back.
      {"weekly fall", Window::Weekly(ny), Utc(2026, 11, 1, 6, 30), Utc(2026, 10, 26, 4),
       Utc(2026, 11, 2, 5)},
      // March: 31 days minus an hour; November starts on the fall-back day.
      {"monthly March", Window::Monthly(ny), Utc(2026, 3, 15), Utc(2026, 3, 1, 5),
       Utc(2026, 4, 1, 4)},
      {"monthly November", Window::Monthly(ny), Utc(2026, 11, 1, 6, 30), Utc(2026, 11, 1, 4),
       Utc(2026, 12, 1, 5)},
      {"monthly October last ns", Window::Monthly(ny), Utc(2026, 11, 1, 4) - 1,
       Utc(2026, 10, 1, 4), Utc(2026, 11, 1, 4)},
  });
}

TEST(DstWindow, LondonLordHoweSeoulKolkata) {
  auto london = Zone("Europe/London");
  auto lord_howe = Zone("Australia/Lord_Howe");
  auto seoul = Zone("Asia/Seoul");
  auto kolkata = Zone("Asia/Kolkata");
  ExpectBounds({
      {"London spring 23h", Window::Daily(london), Utc(2026, 3, 29, 12), Utc(2026, 3, 29),
       Utc(2026, 3, 29, 23)},
      {"London fall 25h", Window::Daily(london), Utc(2026, 10, 25, 12), Utc(2026, 10, 24, 23),
       Utc(2026, 10, 26)},
      // Lord Howe moves by 30 minutes: days of 24.5 and 23.5 hours.
      {"Lord Howe April 24.5h", Window::Daily(lord_howe), Utc(2026, 4, 5), Utc(2026, 4, 4, 13),
       Utc(2026, 4, 5, 13, 30)},
      {"Lord Howe October 23.5h", Window::Daily(lord_howe), Utc(2026, 10, 4), Utc(2026, 10, 3, 13, 30),
       Utc(2026, 10, 4, 13)},
      {"Seoul", Window::Daily(seoul), Utc(2026, 7, 1, 12), Utc(2026, 6, 30, 15),
       Utc(2026, 7, 1, 15)},
      {"Seoul monthly", Window::Monthly(seoul), Utc(2026, 7, 1, 12), Utc(2026, 6, 30, 15),
       Utc(2026, 7, 31, 15)},
      {"Kolkata +05:30", Window::Daily(kolkata), Utc(2026, 7, 1, 18, 29), Utc(2026, 6, 30, 18, 30),
       Utc(2026, 7, 1, 18, 30)},
      {"Kolkata next day", Window::Daily(kolkata), Utc(2026, 7, 1, 18, 30), Utc(2026, 7, 1, 18, 30),
       Utc(2026, 7, 2, 18, 30)},
  });
}

TEST(DstWindow, SaoPauloMidnightGapAndOverlap) {
  auto sp = Zone("America/Sao_Paulo");
  const Window daily = Window::Daily(sp);
  ExpectBounds({
      // 2018-11-04 00:00 -03 never happened: clocks went to 01:00 -02 at
      // 03:00Z, which is where the day starts. 23 hours.
      {"gap day", daily, Utc(2018, 11, 4, 12), Utc(2018, 11, 4, 3), Utc(2018, 11, 5, 2)},
      {"gap day first ns", daily, Utc(2018, 11, 4, 3), Utc(2018, 11, 4, 3), Utc(2018, 11, 5, 2)},
      {"day before gap", daily, Utc(2018, 11, 4, 3) - 1, Utc(2018, 11, 3, 3), Utc(2018, 11, 4, 3)},
      // At 2019-02-17 00:00 -02 (02:00Z) clocks went back to Feb 16 23:00 -03:
      // that midnight never showed, Feb 16 read 23:xx twice and lasted 25
      // hours, and Feb 17 began at 00:00 -03 (03:00Z).
      {"long day", daily, Utc(2019, 2, 16, 12), Utc(2019, 2, 16, 2), Utc(2019, 2, 17, 3)},
      {"repeated hour", daily, Utc(2019, 2, 17, 2, 30), Utc(2019, 2, 16, 2), Utc(2019, 2, 17, 3)},
      {"next midnight", daily, Utc(2019, 2, 17, 3), Utc(2019, 2, 17, 3), Utc(2019, 2, 18, 3)},
  });
}

TEST(DstWindow, ApiaSkippedDay) {
  auto apia = Zone("Pacific/Apia");
  ExpectBounds({
      // Thursday Dec 29 (-10) ended at 10:00Z and Saturday Dec 31 (+14)
      // began: Friday Dec 30 has no window at all.
      {"Dec 29", Window::Daily(apia), Utc(2011, 12, 30, 9, 59), Utc(2011, 12, 29, 10),
       Utc(2011, 12, 30, 10)},
      {"Dec 31", Window::Daily(apia), Utc(2011, 12, 30, 10), Utc(2011, 12, 30, 10),
       Utc(2011, 12, 31, 10)},
      // That ISO week (Mon Dec 26 .. Sun Jan 1) had six days; December 30.
      {"short week", Window::Weekly(apia), Utc(2011, 12, 30, 10), Utc(2011, 12, 26, 10),
       Utc(2012, 1, 1, 10)},
      {"short month", Window::Monthly(apia), Utc(2011, 12, 15), Utc(2011, 12, 1, 10),
       Utc(2011, 12, 31, 10)},
  });
}

TEST(DstWindow, HavanaMidnightTransitions) {
  auto havana = Zone("America/Havana");
  ExpectBounds({
      // Mar 8 2026: 00:00 CST jumps to 01:00 CDT at 05:00Z.
      {"gap at midnight", Window::Daily(havana), Utc(2026, 3, 8, 12), Utc(2026, 3, 8, 5),
       Utc(2026, 3, 9, 4)},
      // Nov 1 2026: 01:00 CDT goes back to 00:00 CST, so midnight is at 04:00Z
      // and again at 05:00Z; the day and the month start at the first.
      {"double midnight", Window::Daily(havana), Utc(2026, 11, 1, 5, 30), Utc(2026, 11, 1, 4),
       Utc(2026, 11, 2, 5)},
      {"month from first midnight", Window::Monthly(havana), Utc(2026, 11, 1, 4),
       Utc(2026, 11, 1, 4), Utc(2026, 12, 1, 5)},
      {"October", Window::Monthly(havana), Utc(2026, 11, 1, 4) - 1, Utc(2026, 10, 1, 4),
       Utc(2026, 11, 1, 4)},
  });
}

std::shared_ptr<const TimeZone> RuleZone(const std::string& tz) {
  TzifSpec spec;
  spec.version = '3';
  spec.footer = tz;
  auto z = TimeZoneFromTzif(WriteTzif(spec), tz);
  if (!z.ok()) {
    ADD_FAILURE() << z.status().ToString();
    return nullptr;
  }
  return *z;
}

TEST(DstWindow, TransitionsAtTheStartOfAWeekOrMonth) {
  // -03 / -02 with DST from the first Monday of March 00:00 (a gap over
  // Monday midnight) to the first Monday of October 00:30, which turns the
  // clock back to Sunday 23:30: Monday midnight happens twice, and the
  // half hour between the transition and the second midnight reads Sunday
  // but lies after the first. In 2030 those Mondays are Mar 4 and Oct 7.
  auto weekly_zone = RuleZone("<-03>3<-02>,M3.1.1/0,M10.1.1/0:30");
  // The same on the 1st: J60 is March 1, J305 November 1.
  auto monthly_zone = RuleZone("<-03>3<-02>,J60/0,J305/0:30");
  const Window weekly = Window::Weekly(weekly_zone), monthly = Window::Monthly(monthly_zone);
  const Window daily = Window::Daily(weekly_zone);
  ExpectBounds({
      {"week after a Monday gap", weekly, Utc(2030, 3, 6), Utc(2030, 3, 4, 3), Utc(2030, 3, 11, 2)},
      {"week before the gap", weekly, Utc(2030, 3, 4, 3) - 1, Utc(2030, 2, 25, 3),
       Utc(2030, 3, 4, 3)},
      // 02:45Z on Oct 7 reads Sunday 23:45 -03, after Monday's first midnight.
      {"first Monday half hour", weekly, Utc(2030, 10, 7, 2, 15), Utc(2030, 10, 7, 2),
       Utc(2030, 10, 14, 3)},
      {"repeated Sunday half hour", weekly, Utc(2030, 10, 7, 2, 45), Utc(2030, 10, 7, 2),
       Utc(2030, 10, 14, 3)},
      {"week before the overlap", weekly, Utc(2030, 10, 7, 2) - 1, Utc(2030, 9, 30, 2),
       Utc(2030, 10, 7, 2)},
      {"day of the overlap", daily, Utc(2030, 10, 7, 2, 45), Utc(2030, 10, 7, 2),
       Utc(2030, 10, 8, 3)},
      {"Sunday before it", daily, Utc(2030, 10, 7, 2) - 1, Utc(2030, 10, 6, 2), Utc(2030, 10, 7, 2)},
      {"March after a gap on the 1st", monthly, Utc(2030, 3, 10), Utc(2030, 3, 1, 3),
       Utc(2030, 4, 1, 2)},
      {"February", monthly, Utc(2030, 3, 1, 3) - 1, Utc(2030, 2, 1, 3), Utc(2030, 3, 1, 3)},
      {"repeated Oct 31 half hour", monthly, Utc(2030, 11, 1, 2, 45), Utc(2030, 11, 1, 2),
       Utc(2030, 12, 1, 3)},
      {"October", monthly, Utc(2030, 11, 1, 2) - 1, Utc(2030, 10, 1, 2), Utc(2030, 11, 1, 2)},
  });
  for (int64_t t = Utc(2030, 10, 6); t < Utc(2030, 10, 8); t += kMinute) {
    ASSERT_EQ(WindowProblem(weekly, t), "") << t;
    ASSERT_EQ(WindowProblem(daily, t), "") << t;
  }
}

TEST(DstWindow, FarFutureDaysFollowTheFooterRule) {
  auto ny = Zone("America/New_York");
  ExpectBounds({
      {"2200 spring", Window::Daily(ny), Utc(2200, 3, 9, 12), Utc(2200, 3, 9, 5),
       Utc(2200, 3, 10, 4)},
      {"2200 fall", Window::Daily(ny), Utc(2200, 11, 2, 12), Utc(2200, 11, 2, 4),
       Utc(2200, 11, 3, 5)},
  });
}

// --- properties over many zones and instants ---

// The zone's offsets only, so windows go through TimeZone's default
// (bisecting) local-time search: an independent check of the exact one.
class ProbeOnly final : public TimeZone {
 public:
  explicit ProbeOnly(std::shared_ptr<const TimeZone> z) : z_(std::move(z)) {}
  int64_t OffsetSecondsAt(int64_t utc_ns) const override { return z_->OffsetSecondsAt(utc_ns); }
  std::string Name() const override { return z_->Name(); }

 private:
  std::shared_ptr<const TimeZone> z_;
};

std::vector<std::string> AllZoneNames() {
  std::vector<std::string> names;
  std::ifstream tab("/usr/share/zoneinfo/zone1970.tab");
  std::string line;
  while (std::getline(tab, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string codes, coords, name;
    if (fields >> codes >> coords >> name) names.push_back(name);
  }
  for (const char* extra : {"Pacific/Apia", "America/Havana", "Australia/Lord_Howe",
                            "Pacific/Chatham", "Antarctica/Troll", "Europe/Dublin"}) {
    names.push_back(extra);
  }
  return names;
}

TEST(DstWindow, PropertiesHoldForRandomInstantsInEveryZone) {
  const std::vector<std::string> names = AllZoneNames();
  ASSERT_GT(names.size(), 100u);
  std::mt19937_64 rng(1103);
  std::uniform_int_distribution<int64_t> instant(Utc(1900, 1, 1), Utc(2250, 1, 1));
  std::uniform_int_distribution<int64_t> modern(Utc(1970, 1, 1), Utc(2100, 1, 1));
  int failures = 0;
  for (const std::string& name : names) {
    auto zone = Zone(name);
    ASSERT_NE(zone, nullptr);
    auto probe = std::make_shared<ProbeOnly>(zone);
    for (int i = 0; i < 30 && failures < 10; ++i) {
      const int64_t now = i % 2 == 0 ? instant(rng) : modern(rng);
      for (Window w : {Window::Daily(zone), Window::Weekly(zone), Window::Monthly(zone)}) {
        const std::string problem = WindowProblem(w, now);
        if (!problem.empty()) {
          ++failures;
          ADD_FAILURE() << w.ToString() << " at " << now << ": " << problem;
        }
        // Since 1970 no zone changes its offset twice within a day of a
        // midnight, where the bisecting search is exact too.
        if (now >= Utc(1970, 1, 1)) {
          Window p = w;
          p.zone = probe;
          if (!(p.BoundsAt(now) == w.BoundsAt(now))) {
            ++failures;
            ADD_FAILURE() << w.ToString() << " at " << now << ": exact ["
                          << w.BoundsAt(now).start_ns << ", " << w.BoundsAt(now).end_ns
                          << ") vs bisected [" << p.BoundsAt(now).start_ns << ", "
                          << p.BoundsAt(now).end_ns << ")";
          }
        }
      }
    }
  }
}

TEST(DstWindow, ConsecutiveDaysTileTime) {
  // Walk day by day through 2000..2040: each window starts where the last
  // ended. New York has exactly one 23-hour and one 25-hour day a year.
  for (const char* name : {"America/New_York", "America/Sao_Paulo", "Pacific/Apia",
                           "Australia/Lord_Howe", "America/Havana", "Asia/Gaza",
                           "Africa/Casablanca", "America/Santiago"}) {
    auto zone = Zone(name);
    ASSERT_NE(zone, nullptr);
    const Window daily = Window::Daily(zone);
    WindowBounds b = daily.BoundsAt(Utc(2000, 1, 1));
    std::map<int64_t, std::pair<int, int>> short_long;  // year -> (23h, 25h) days
    while (b.start_ns < Utc(2040, 1, 1)) {
      const WindowBounds next = daily.BoundsAt(b.end_ns);
      ASSERT_EQ(next.start_ns, b.end_ns) << name;
      ASSERT_GT(next.end_ns, next.start_ns) << name;
      ASSERT_TRUE(WindowProblem(daily, next.start_ns).empty())
          << name << ": " << WindowProblem(daily, next.start_ns);
      const int64_t len = next.end_ns - next.start_ns;
      const int64_t year = CivilFromDays(FloorDiv(next.start_ns, kDay)).year;
      if (len == 23 * kHour) short_long[year].first++;
      if (len == 25 * kHour) short_long[year].second++;
      b = next;
    }
    if (std::string(name) == "America/New_York") {
      for (int64_t y = 2007; y < 2040; ++y) {
        EXPECT_EQ(short_long[y], std::make_pair(1, 1)) << "New York " << y;
      }
    }
  }
}

TEST(DstWindow, LedgerChargesTheDstDay) {
  auto ny = Zone("America/New_York");
  int64_t now = Utc(2026, 3, 8, 4, 30);  // Mar 7, 23:30 EST
  BudgetLedger ledger([&now] { return now; });
  BudgetSpec spec;
  spec.id = "ny-daily";
  spec.scope = {Scope::Kind::kUser, ""};
  spec.limit_nanousd = 100;
  spec.window = Window::Daily(ny);
  ASSERT_TRUE(ledger.AddBudget(spec).ok());
  auto r1 = ledger.Reserve("ny-daily", "u", 100);
  ASSERT_TRUE(r1.ok()) << r1.status().ToString();
  EXPECT_EQ(r1->window.start_ns, Utc(2026, 3, 7, 5));
  EXPECT_FALSE(ledger.Reserve("ny-daily", "u", 1).ok());
  // 30 minutes later it is Mar 8 in New York: a fresh, 23-hour window.
  now = Utc(2026, 3, 8, 5);
  auto r2 = ledger.Reserve("ny-daily", "u", 100);
  ASSERT_TRUE(r2.ok()) << r2.status().ToString();
  EXPECT_EQ(r2->window, (WindowBounds{Utc(2026, 3, 8, 5), Utc(2026, 3, 9, 4)}));
  // 23 hours later (04:00Z, midnight EDT) the next day has begun.
  now = Utc(2026, 3, 9, 4);
  EXPECT_TRUE(ledger.Reserve("ny-daily", "u", 100).ok());
}

TEST(DstWindow, LookupsDoNotAllocate) {
  auto ny = Zone("America/New_York");
  auto apia = Zone("Pacific/Apia");
  ASSERT_NE(ny, nullptr);
  ASSERT_NE(apia, nullptr);
  const Window windows[] = {Window::Daily(ny), Window::Weekly(ny), Window::Monthly(apia),
                            Window::Daily(FixedOffset::Hours(9)), Window::Daily()};
  const int64_t instants[] = {Utc(2026, 3, 8, 7), Utc(2026, 11, 1, 5, 30), Utc(2200, 3, 9, 7),
                              Utc(2011, 12, 30, 10), Utc(1900, 1, 1)};
  uint64_t sink = 0;  // keeps the calls from being optimized away
  const int64_t before = g_allocations;
  for (const Window& w : windows) {
    for (int64_t t : instants) {
      const WindowBounds b = w.BoundsAt(t);
      sink += static_cast<uint64_t>(b.start_ns ^ b.end_ns);
      sink += static_cast<uint64_t>(ny->OffsetSecondsAt(t)) +
              static_cast<uint64_t>(apia->FirstInstantAtOrAfterLocal(t));
    }
  }
  EXPECT_EQ(g_allocations - before, 0);
  EXPECT_NE(sink, 0u);
}

}  // namespace
}  // namespace bastion
