// Tests for time_zone.h: loading zones by name, offsets of real IANA zones
// (checked against glibc), the POSIX TZ footer, and malformed TZif data.
#include "bastion/time_zone.h"

#include <stdlib.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "budget/civil.h"
#include "budget/tz_test_util.h"
#include "test_util.h"

namespace bastion {
namespace {

using tztest::kDay;
using tztest::kHour;
using tztest::kMinute;
using tztest::kSecond;
using tztest::LocalNs;
using tztest::ReadFileBytes;
using tztest::Utc;
using tztest::WriteTzif;
using tztest::Zone;
using tztest::TzifSpec;

constexpr const char* kZoneinfo = "/usr/share/zoneinfo";

// Sets an environment variable for one scope and restores it afterwards.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = getenv(name)) old_ = std::string(old);
    setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

std::shared_ptr<const TimeZone> FromTzif(const TzifSpec& spec, const std::string& name = "test") {
  auto z = TimeZoneFromTzif(WriteTzif(spec), name);
  if (!z.ok()) {
    ADD_FAILURE() << z.status().ToString();
    return nullptr;
  }
  return *z;
}

// A zone that is only its footer rule: no transitions at all.
std::shared_ptr<const TimeZone> RuleZone(const std::string& tz, char version = '3') {
  TzifSpec spec;
  spec.version = version;
  spec.footer = tz;
  return FromTzif(spec, tz);
}

// --- loading by name ---

TEST(TimeZoneLoad, UtcAndFixedOffsets) {
  for (const char* name : {"UTC", "Etc/UTC", "Z"}) {
    auto z = TimeZone::Load(name);
    ASSERT_TRUE(z.ok()) << name << ": " << z.status().ToString();
    EXPECT_EQ((*z)->OffsetSecondsAt(Utc(2026, 7, 1)), 0) << name;
    EXPECT_EQ((*z)->Name(), "UTC") << name;
  }
  struct Case {
    const char* name;
    int64_t offset;
    const char* canonical;
  } cases[] = {
      {"+09:00", 9 * 3600, "+09:00"},   {"-05:30", -(5 * 3600 + 1800), "-05:30"},
      {"+0530", 5 * 3600 + 1800, "+05:30"}, {"+09", 9 * 3600, "+09:00"},
      {"-00:00", 0, "UTC"},             {"+18:00", 18 * 3600, "+18:00"},
  };
  for (const Case& c : cases) {
    auto z = TimeZone::Load(c.name);
    ASSERT_TRUE(z.ok()) << c.name << ": " << z.status().ToString();
    EXPECT_EQ((*z)->OffsetSecondsAt(Utc(2026, 1, 1)), c.offset) << c.name;
    EXPECT_EQ((*z)->Name(), c.canonical) << c.name;
  }
  for (const char* bad : {"+19:00", "+9:00", "+09:60", "+09:0", "+", "-", "+09:00:00", "+0x00",
                          "+123"}) {
    auto z = TimeZone::Load(bad);
    EXPECT_TRUE(z.status().IsInvalidArgument()) << bad << ": " << z.status().ToString();
    EXPECT_NE(z.status().message().find(bad), std::string::npos) << z.status().ToString();
  }
}

TEST(TimeZoneLoad, IanaZoneKeepsItsName) {
  auto z = TimeZone::Load("America/New_York");
  ASSERT_TRUE(z.ok()) << z.status().ToString();
  EXPECT_EQ((*z)->Name(), "America/New_York");
  // A link name stays the name it was loaded by.
  auto link = TimeZone::LoadFromDirectory("US/Eastern", kZoneinfo);
  ASSERT_TRUE(link.ok()) << link.status().ToString();
  EXPECT_EQ((*link)->Name(), "US/Eastern");
  EXPECT_EQ((*link)->OffsetSecondsAt(Utc(2026, 7, 1)), -4 * 3600);
}

TEST(TimeZoneLoad, RejectsNamesThatCouldLeaveTheDirectory) {
  const std::string too_long(300, 'a');
  for (std::string bad : {std::string(""), std::string("../etc/passwd"), std::string("/etc/passwd"),
                          std::string("America/../../etc/passwd"), std::string("America//New_York"),
                          std::string("America/"), std::string("America/New York"),
                          std::string("America/New_York\n"), std::string("a\0b", 3),
                          std::string("."), std::string("Europe/.."), std::string("zone.tab"),
                          std::string("America\\New_York"), std::string("Amérique"), too_long}) {
    auto z = TimeZone::Load(bad);
    EXPECT_TRUE(z.status().IsInvalidArgument()) << "'" << bad << "': " << z.status().ToString();
  }
}

TEST(TimeZoneLoad, MissingZoneIsNotFoundAndNamesTheDirectory) {
  auto z = TimeZone::LoadFromDirectory("Mars/Olympus_Mons", kZoneinfo);
  ASSERT_TRUE(z.status().IsNotFound()) << z.status().ToString();
  EXPECT_EQ(z.status().message(),
            "time zone 'Mars/Olympus_Mons' not found in /usr/share/zoneinfo");
  // A directory is not a zone.
  auto dir = TimeZone::LoadFromDirectory("America", kZoneinfo);
  EXPECT_TRUE(dir.status().IsNotFound()) << dir.status().ToString();
  // A path through a regular file.
  auto through = TimeZone::LoadFromDirectory("UTC/Extra", kZoneinfo);
  EXPECT_TRUE(through.status().IsNotFound()) << through.status().ToString();
}

TEST(TimeZoneLoad, ReadsTzdirAndRejectsFilesThatAreNotTzif) {
  testing::TempDir dir;
  std::filesystem::create_directories(dir.Sub("Test"));
  std::filesystem::copy_file(std::string(kZoneinfo) + "/America/New_York", dir.Sub("Test/Zone"));
  std::ofstream(dir.Sub("Test/Garbage")) << "this is not a TZif file\n";
  {
    ScopedEnv env("TZDIR", dir.path());
    auto z = TimeZone::Load("Test/Zone");
    ASSERT_TRUE(z.ok()) << z.status().ToString();
    EXPECT_EQ((*z)->Name(), "Test/Zone");
    EXPECT_EQ((*z)->OffsetSecondsAt(Utc(2026, 1, 15)), -5 * 3600);
    auto garbage = TimeZone::Load("Test/Garbage");
    EXPECT_TRUE(garbage.status().IsInvalidArgument()) << garbage.status().ToString();
    EXPECT_NE(garbage.status().message().find("Test/Garbage"), std::string::npos);
    auto missing = TimeZone::Load("America/New_York");
    EXPECT_TRUE(missing.status().IsNotFound()) << missing.status().ToString();
    EXPECT_NE(missing.status().message().find(dir.path()), std::string::npos)
        << missing.status().ToString();
  }
  {
    ScopedEnv env("TZDIR", "");  // empty: the system directory
    EXPECT_TRUE(TimeZone::Load("America/New_York").ok());
  }
}

// --- offsets of real zones ---

struct OffsetCase {
  const char* zone;
  int64_t utc_ns;
  int64_t offset_seconds;
};

void ExpectOffsets(const std::vector<OffsetCase>& cases) {
  for (const OffsetCase& c : cases) {
    auto z = Zone(c.zone);
    ASSERT_NE(z, nullptr);
    EXPECT_EQ(z->OffsetSecondsAt(c.utc_ns), c.offset_seconds)
        << c.zone << " at " << c.utc_ns / kSecond;
  }
}

TEST(TimeZoneOffsets, NewYork2026Transitions) {
  const int64_t spring = Utc(2026, 3, 8, 7);  // 02:00 EST -> 03:00 EDT
  const int64_t fall = Utc(2026, 11, 1, 6);   // 02:00 EDT -> 01:00 EST
  ExpectOffsets({
      {"America/New_York", spring - 1, -5 * 3600},
      {"America/New_York", spring, -4 * 3600},
      {"America/New_York", spring + kHour, -4 * 3600},
      {"America/New_York", fall - 1, -4 * 3600},
      {"America/New_York", fall, -5 * 3600},
      {"America/New_York", Utc(2026, 1, 1), -5 * 3600},
      {"America/New_York", Utc(2026, 7, 4, 12), -4 * 3600},
  });
}

TEST(TimeZoneOffsets, ZonesAroundTheWorld) {
  ExpectOffsets({
      // London: GMT/BST, switching at 01:00 UTC.
      {"Europe/London", Utc(2026, 3, 29, 1) - 1, 0},
      {"Europe/London", Utc(2026, 3, 29, 1), 3600},
      {"Europe/London", Utc(2026, 10, 25, 1) - 1, 3600},
      {"Europe/London", Utc(2026, 10, 25, 1), 0},
      // Lord Howe: a 30-minute DST, +10:30 / +11.
      {"Australia/Lord_Howe", Utc(2026, 4, 4, 15) - 1, 11 * 3600},
      {"Australia/Lord_Howe", Utc(2026, 4, 4, 15), 10 * 3600 + 1800},
      {"Australia/Lord_Howe", Utc(2026, 10, 3, 15, 30) - 1, 10 * 3600 + 1800},
      {"Australia/Lord_Howe", Utc(2026, 10, 3, 15, 30), 11 * 3600},
      // Seoul: +09 now, but +10 in the 1988 summer.
      {"Asia/Seoul", Utc(2026, 7, 1), 9 * 3600},
      {"Asia/Seoul", Utc(1988, 7, 1), 10 * 3600},
      {"Asia/Kolkata", Utc(2026, 7, 1), 5 * 3600 + 1800},
      {"Asia/Kolkata", Utc(1960, 1, 1), 5 * 3600 + 1800},
      // Sao Paulo: DST started at local midnight on 2018-11-04.
      {"America/Sao_Paulo", Utc(2018, 11, 4, 3) - 1, -3 * 3600},
      {"America/Sao_Paulo", Utc(2018, 11, 4, 3), -2 * 3600},
      {"America/Sao_Paulo", Utc(2026, 1, 1), -3 * 3600},
      // Apia skipped 2011-12-30: -10 straight to +14.
      {"Pacific/Apia", Utc(2011, 12, 30, 10) - 1, -10 * 3600},
      {"Pacific/Apia", Utc(2011, 12, 30, 10), 14 * 3600},
      {"Pacific/Apia", Utc(2026, 7, 1), 13 * 3600},
  });
}

TEST(TimeZoneOffsets, FarFutureFollowsTheFooterRule) {
  // TZif files list transitions up to 2037 at most; 2200 needs the rule.
  ExpectOffsets({
      {"America/New_York", Utc(2200, 3, 9, 7) - 1, -5 * 3600},
      {"America/New_York", Utc(2200, 3, 9, 7), -4 * 3600},
      {"America/New_York", Utc(2200, 11, 2, 6) - 1, -4 * 3600},
      {"America/New_York", Utc(2200, 11, 2, 6), -5 * 3600},
      {"Australia/Sydney", Utc(2200, 4, 5, 16) - 1, 11 * 3600},
      {"Australia/Sydney", Utc(2200, 4, 5, 16), 10 * 3600},
      {"Australia/Sydney", Utc(2200, 10, 4, 16) - 1, 10 * 3600},
      {"Australia/Sydney", Utc(2200, 10, 4, 16), 11 * 3600},
      {"Australia/Sydney", Utc(2200, 1, 1), 11 * 3600},
      {"Asia/Kolkata", Utc(2200, 1, 1), 5 * 3600 + 1800},
      // The int64 nanosecond range ends in 2262.
      {"America/New_York", INT64_MAX, -4 * 3600},
      {"America/New_York", INT64_MIN, -(4 * 3600 + 56 * 60 + 2)},  // LMT
  });
}

TEST(TimeZoneLocal, FirstInstantAtOrAfterLocalHandlesGapsAndOverlaps) {
  auto ny = Zone("America/New_York");
  ASSERT_NE(ny, nullptr);
  auto local = [](int m, int d, int hh, int mm) { return Utc(2026, m, d, hh, mm); };
  // Ordinary: local minus the offset.
  EXPECT_EQ(ny->FirstInstantAtOrAfterLocal(local(6, 1, 0, 0)), Utc(2026, 6, 1, 4));
  // 02:30 on Mar 8 never happens: the gap ends at 03:00 EDT = 07:00Z.
  EXPECT_EQ(ny->FirstInstantAtOrAfterLocal(local(3, 8, 2, 30)), Utc(2026, 3, 8, 7));
  EXPECT_EQ(ny->FirstInstantAtOrAfterLocal(local(3, 8, 2, 0)), Utc(2026, 3, 8, 7));
  EXPECT_EQ(ny->FirstInstantAtOrAfterLocal(local(3, 8, 3, 0)), Utc(2026, 3, 8, 7));
  EXPECT_EQ(ny->FirstInstantAtOrAfterLocal(local(3, 8, 1, 59)), Utc(2026, 3, 8, 6, 59));
  // 01:30 on Nov 1 happens twice (05:30Z EDT, 06:30Z EST): the earlier.
  EXPECT_EQ(ny->FirstInstantAtOrAfterLocal(local(11, 1, 1, 30)), Utc(2026, 11, 1, 5, 30));
  EXPECT_EQ(ny->FirstInstantAtOrAfterLocal(local(11, 1, 2, 0)), Utc(2026, 11, 1, 7));
  // Sub-second local times inside a gap still land on the transition.
  EXPECT_EQ(ny->FirstInstantAtOrAfterLocal(local(3, 8, 2, 0) + 1), Utc(2026, 3, 8, 7));
  // Saturates instead of overflowing.
  EXPECT_EQ(ny->FirstInstantAtOrAfterLocal(INT64_MAX), INT64_MAX);
  EXPECT_LE(ny->FirstInstantAtOrAfterLocal(INT64_MIN), INT64_MIN + 5 * kHour);
}

// glibc's localtime_r reads the same TZif files with independent code, so it
// serves as an oracle. TZ is process-global: this test stays on one thread.
class GlibcZone {
 public:
  explicit GlibcZone(const std::string& name) {
    env_.emplace("TZ", name);
    tzset();
  }
  ~GlibcZone() {
    env_.reset();
    tzset();
  }
  int64_t Offset(int64_t utc_seconds) const {
    time_t t = static_cast<time_t>(utc_seconds);
    struct tm tm;
    if (localtime_r(&t, &tm) == nullptr) return INT64_MIN;
    return tm.tm_gmtoff;
  }

 private:
  std::optional<ScopedEnv> env_;
};

const std::vector<std::string>& OracleZones() {
  static const std::vector<std::string> zones = {
      "America/New_York",  "America/Los_Angeles", "America/Sao_Paulo", "America/Havana",
      "America/Santiago",  "America/St_Johns",    "America/Nuuk",      "America/Asuncion",
      "Europe/London",     "Europe/Dublin",       "Europe/Berlin",     "Africa/Casablanca",
      "Asia/Jerusalem",    "Asia/Gaza",           "Asia/Tehran",       "Asia/Kolkata",
      "Asia/Kathmandu",    "Asia/Seoul",          "Australia/Lord_Howe", "Australia/Sydney",
      "Pacific/Chatham",   "Pacific/Apia",        "Pacific/Auckland",  "Antarctica/Troll",
  };
  return zones;
}

TEST(TimeZoneOffsets, MatchGlibcForRandomInstantsAndEveryTransition) {
  std::mt19937_64 rng(20260308);
  const int64_t lo = Utc(1970, 1, 1) / kSecond, hi = Utc(2100, 1, 1) / kSecond;
  std::uniform_int_distribution<int64_t> instant(lo, hi);
  int transitions_checked = 0;
  for (const std::string& name : OracleZones()) {
    auto zone = Zone(name);
    ASSERT_NE(zone, nullptr);
    auto ours = [&](int64_t s) { return zone->OffsetSecondsAt(s * kSecond); };
    GlibcZone glibc(name);
    int failures = 0;
    auto check = [&](int64_t s) {
      if (failures > 5) return;
      const int64_t want = glibc.Offset(s);
      if (ours(s) != want) {
        ++failures;
        ADD_FAILURE() << name << " at " << s << ": ours " << ours(s) << ", glibc " << want;
      }
    };
    for (int i = 0; i < 2000; ++i) check(instant(rng));
    // Every offset change between 1970 and 2100 (found daily, then bisected
    // to the second): glibc must agree on both sides of it.
    for (int64_t s = lo; s + 86400 <= hi; s += 86400) {
      if (ours(s) == ours(s + 86400)) continue;
      int64_t a = s, b = s + 86400;
      while (b - a > 1) {
        const int64_t mid = a + (b - a) / 2;
        (ours(mid) == ours(a) ? a : b) = mid;
      }
      check(a);
      check(b);
      ++transitions_checked;
    }
  }
  // 24 zones over 130 years: thousands of transitions, most from the rules.
  EXPECT_GT(transitions_checked, 2000);
}

TEST(TimeZoneOffsets, ConcurrentReadersAgree) {
  auto zone = Zone("Europe/London");
  ASSERT_NE(zone, nullptr);
  std::vector<int64_t> instants, expected;
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int64_t> instant(Utc(1900, 1, 1), Utc(2200, 1, 1));
  for (int i = 0; i < 2000; ++i) {
    instants.push_back(instant(rng));
    expected.push_back(zone->OffsetSecondsAt(instants.back()));
  }
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int round = 0; round < 5; ++round) {
        for (size_t i = 0; i < instants.size(); ++i) {
          if (zone->OffsetSecondsAt(instants[i]) != expected[i]) mismatches++;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(mismatches.load(), 0);
}

// --- the POSIX TZ footer ---

TEST(TzifFooter, QuotedNamesAndFixedRules) {
  auto z = RuleZone("<+0930>-9:30", '2');
  ASSERT_NE(z, nullptr);
  EXPECT_EQ(z->OffsetSecondsAt(Utc(1900, 1, 1)), 9 * 3600 + 1800);
  EXPECT_EQ(z->OffsetSecondsAt(Utc(2100, 6, 1)), 9 * 3600 + 1800);
  auto seconds = RuleZone("<-0012>0:12:34");
  ASSERT_NE(seconds, nullptr);
  EXPECT_EQ(seconds->OffsetSecondsAt(0), -(12 * 60 + 34));
  auto plus = RuleZone("ABC+3");
  ASSERT_NE(plus, nullptr);
  EXPECT_EQ(plus->OffsetSecondsAt(0), -3 * 3600);
}

TEST(TzifFooter, MonthWeekDayRulesAndDefaults) {
  // No rule after the DST name: the US rule (2nd Sunday of March, 1st of
  // November, 02:00), and DST one hour ahead.
  auto z = RuleZone("EST5EDT");
  ASSERT_NE(z, nullptr);
  EXPECT_EQ(z->OffsetSecondsAt(Utc(2030, 3, 10, 7) - 1), -5 * 3600);
  EXPECT_EQ(z->OffsetSecondsAt(Utc(2030, 3, 10, 7)), -4 * 3600);
  EXPECT_EQ(z->OffsetSecondsAt(Utc(2030, 11, 3, 6) - 1), -4 * 3600);
  EXPECT_EQ(z->OffsetSecondsAt(Utc(2030, 11, 3, 6)), -5 * 3600);
  // Week 5 means the last such weekday: 2030-03-31 and 2030-10-27 are the
  // last Sundays; an explicit DST offset and times.
  auto eu = RuleZone("CET-1CEST-2:00,M3.5.0/2,M10.5.0/3");
  ASSERT_NE(eu, nullptr);
  EXPECT_EQ(eu->OffsetSecondsAt(Utc(2030, 3, 31, 1) - 1), 3600);
  EXPECT_EQ(eu->OffsetSecondsAt(Utc(2030, 3, 31, 1)), 7200);
  EXPECT_EQ(eu->OffsetSecondsAt(Utc(2030, 10, 27, 1) - 1), 7200);
  EXPECT_EQ(eu->OffsetSecondsAt(Utc(2030, 10, 27, 1)), 3600);
  // February's last Sunday in a leap year whose Feb 29 is a Sunday (2032).
  auto feb = RuleZone("AAA0BBB,M2.5.0/0,M11.1.0/0");
  ASSERT_NE(feb, nullptr);
  EXPECT_EQ(feb->OffsetSecondsAt(Utc(2032, 2, 29) - 1), 0);
  EXPECT_EQ(feb->OffsetSecondsAt(Utc(2032, 2, 29)), 3600);
}

TEST(TzifFooter, JulianAndZeroBasedDays) {
  // Jn never counts February 29: J60 is March 1 in every year.
  auto j = RuleZone("AAA0BBB,J60/0,J300/0");
  ASSERT_NE(j, nullptr);
  EXPECT_EQ(j->OffsetSecondsAt(Utc(2028, 3, 1) - 1), 0);
  EXPECT_EQ(j->OffsetSecondsAt(Utc(2028, 3, 1)), 3600);
  EXPECT_EQ(j->OffsetSecondsAt(Utc(2027, 3, 1) - 1), 0);
  EXPECT_EQ(j->OffsetSecondsAt(Utc(2027, 3, 1)), 3600);
  // n counts from 0 and does count February 29: 59 is Feb 29 in 2028.
  auto n = RuleZone("AAA0BBB,59/0,300/0");
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->OffsetSecondsAt(Utc(2028, 2, 29) - 1), 0);
  EXPECT_EQ(n->OffsetSecondsAt(Utc(2028, 2, 29)), 3600);
  EXPECT_EQ(n->OffsetSecondsAt(Utc(2027, 3, 1) - 1), 0);
  EXPECT_EQ(n->OffsetSecondsAt(Utc(2027, 3, 1)), 3600);
  // Day 300 (0-based) of 2027 is October 28; the end time 0 is DST time.
  EXPECT_EQ(n->OffsetSecondsAt(Utc(2027, 10, 27, 23) - 1), 3600);
  EXPECT_EQ(n->OffsetSecondsAt(Utc(2027, 10, 27, 23)), 0);
}

TEST(TzifFooter, Version3RuleTimesBeyondOneDay) {
  // Nuuk: -1:00 on the last Sunday of March, i.e. Saturday 23:00 local.
  auto nuuk = RuleZone("<-02>2<-01>,M3.5.0/-1,M10.5.0/0");
  ASSERT_NE(nuuk, nullptr);
  EXPECT_EQ(nuuk->OffsetSecondsAt(Utc(2030, 3, 31, 1) - 1), -2 * 3600);
  EXPECT_EQ(nuuk->OffsetSecondsAt(Utc(2030, 3, 31, 1)), -1 * 3600);
  // Jerusalem: 26:00 on the 4th Thursday of March is Friday 02:00.
  auto jerusalem = RuleZone("IST-2IDT,M3.4.4/26,M10.5.0");
  ASSERT_NE(jerusalem, nullptr);
  EXPECT_EQ(jerusalem->OffsetSecondsAt(Utc(2030, 3, 29, 0) - 1), 2 * 3600);
  EXPECT_EQ(jerusalem->OffsetSecondsAt(Utc(2030, 3, 29, 0)), 3 * 3600);
  // 167 hours is the limit.
  auto week = RuleZone("AAA0BBB,M3.1.0/167,M10.1.0/-167");
  ASSERT_NE(week, nullptr);
  // First Sunday of March 2030 is Mar 3; +167 h is Mar 9 23:00.
  EXPECT_EQ(week->OffsetSecondsAt(Utc(2030, 3, 9, 23) - 1), 0);
  EXPECT_EQ(week->OffsetSecondsAt(Utc(2030, 3, 9, 23)), 3600);
  // All-year DST: the end meets next year's start, so DST never ends.
  auto always = RuleZone("EST5EDT,0/0,J365/25");
  ASSERT_NE(always, nullptr);
  for (int64_t t : {Utc(2030, 1, 1), Utc(2030, 1, 1, 5), Utc(2030, 1, 1, 5) - 1, Utc(2030, 7, 1),
                    Utc(2030, 12, 31, 23, 59)}) {
    EXPECT_EQ(always->OffsetSecondsAt(t), -4 * 3600) << t;
  }
  // Negative DST (Dublin): "winter time" is the DST of the rule.
  auto dublin = RuleZone("IST-1GMT0,M10.5.0,M3.5.0/1", '2');
  ASSERT_NE(dublin, nullptr);
  EXPECT_EQ(dublin->OffsetSecondsAt(Utc(2030, 1, 15)), 0);
  EXPECT_EQ(dublin->OffsetSecondsAt(Utc(2030, 7, 15)), 3600);
}

TEST(TzifFooter, RejectsMalformedTzStrings) {
  for (const char* bad :
       {"EST", "ES5", "EST5EDT,M3.2.0", "EST5EDT,M3.2.0,M11.1.0/168", "EST25", "<AB>5",
        "EST5EDT,J0,J365", "EST5EDT,366,1", "EST5EDT,M3.6.0,M11.1.0", "EST5EDT,M3.2.7,M11.1.0",
        "EST5EDT,M13.2.0,M11.1.0", "EST5EDT,M3.2.0,M11.1.0 ", "<EST5", "5EST", "EST5:60",
        "EST5EDT,M3.2.0/2:99,M11.1.0", "EST5EDT,,M11.1.0", "EST5EDT,M3.2.0,M11.1.0,",
        "<+1>-1", "EST+", "EST5EDT25", "AAA-24:59:59BBB"}) {
    TzifSpec spec;
    spec.footer = bad;
    auto z = TimeZoneFromTzif(WriteTzif(spec), "Test/Bad");
    ASSERT_FALSE(z.ok()) << "'" << bad << "' parsed";
    EXPECT_TRUE(z.status().IsInvalidArgument()) << z.status().ToString();
    EXPECT_NE(z.status().message().find("Test/Bad"), std::string::npos) << z.status().ToString();
    EXPECT_NE(z.status().message().find("footer"), std::string::npos) << z.status().ToString();
  }
}

// --- TZif structure ---

TEST(TzifParse, Version1FileUsesItsOnlyBlock) {
  TzifSpec spec;
  spec.version = '\0';
  spec.transitions = {0, 1'000'000'000, 1'500'000'000};
  spec.type_indices = {1, 2, 1};
  spec.types = {{-3600, false}, {3600, false}, {7200, true}};
  auto z = FromTzif(spec);
  ASSERT_NE(z, nullptr);
  EXPECT_EQ(z->OffsetSecondsAt(-1), -3600);  // type 0 before the first transition
  EXPECT_EQ(z->OffsetSecondsAt(0), 3600);
  EXPECT_EQ(z->OffsetSecondsAt(1'000'000'000 * kSecond - 1), 3600);
  EXPECT_EQ(z->OffsetSecondsAt(1'000'000'000 * kSecond), 7200);
  // No footer: the last transition's type lasts forever.
  EXPECT_EQ(z->OffsetSecondsAt(Utc(2200, 1, 1)), 3600);
}

TEST(TzifParse, FooterTakesOverAfterTheLastTransition) {
  TzifSpec spec;
  spec.version = '2';
  spec.transitions = {Utc(2000, 1, 1) / kSecond};
  spec.type_indices = {1};
  spec.types = {{3600, false}, {7200, false}};
  spec.footer = "<+03>-3";  // disagrees with the table on purpose
  auto z = FromTzif(spec);
  ASSERT_NE(z, nullptr);
  EXPECT_EQ(z->OffsetSecondsAt(Utc(2000, 1, 1) - 1), 3600);
  EXPECT_EQ(z->OffsetSecondsAt(Utc(2000, 1, 1)), 3 * 3600);
  // An empty footer: the last type stays.
  spec.footer = "";
  auto bare = FromTzif(spec);
  ASSERT_NE(bare, nullptr);
  EXPECT_EQ(bare->OffsetSecondsAt(Utc(2100, 1, 1)), 7200);
}

// Offsets of the fields in a TZif header.
constexpr size_t kTimecntAt = 32, kTypecntAt = 36, kCharcntAt = 40, kHeaderSize = 44;

uint32_t Be32(const std::string& b, size_t at) {
  uint32_t v = 0;
  for (size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(b[at + i]);
  return v;
}

void PutBe32(std::string* b, size_t at, uint32_t v) {
  for (size_t i = 0; i < 4; ++i) (*b)[at + i] = static_cast<char>(v >> (24 - 8 * i));
}

// Where the parts of a version 2+ file start.
struct Layout {
  size_t second_header, transitions, indices, types, footer;
};

Layout LayoutOf(const std::string& b) {
  auto data_size = [&](size_t h, size_t time_size) {
    const uint64_t isut = Be32(b, h + 20), isstd = Be32(b, h + 24), leap = Be32(b, h + 28),
                   timecnt = Be32(b, h + kTimecntAt), typecnt = Be32(b, h + kTypecntAt),
                   charcnt = Be32(b, h + kCharcntAt);
    return timecnt * time_size + timecnt + typecnt * 6 + charcnt + leap * (time_size + 4) +
           isstd + isut;
  };
  Layout l;
  l.second_header = kHeaderSize + data_size(0, 4);
  l.transitions = l.second_header + kHeaderSize;
  const size_t timecnt = Be32(b, l.second_header + kTimecntAt);
  l.indices = l.transitions + 8 * timecnt;
  l.types = l.indices + timecnt;
  l.footer = l.second_header + kHeaderSize + data_size(l.second_header, 8);
  return l;
}

TEST(TzifParse, EveryTruncationOfARealFileFails) {
  for (const char* name : {"America/New_York", "Pacific/Apia", "Asia/Kolkata"}) {
    const std::string bytes = ReadFileBytes(std::string(kZoneinfo) + "/" + name);
    ASSERT_GT(bytes.size(), kHeaderSize) << name;
    ASSERT_TRUE(TimeZoneFromTzif(bytes, name).ok()) << name;
    for (size_t len = 0; len < bytes.size(); ++len) {
      auto z = TimeZoneFromTzif(std::string_view(bytes).substr(0, len), name);
      ASSERT_FALSE(z.ok()) << name << " truncated to " << len << " bytes parsed";
      ASSERT_TRUE(z.status().IsInvalidArgument()) << z.status().ToString();
      ASSERT_NE(z.status().message().find(name), std::string::npos) << z.status().ToString();
    }
  }
  // A version 1 file too.
  TzifSpec spec;
  spec.version = '\0';
  spec.transitions = {0, 100};
  spec.type_indices = {1, 0};
  spec.types = {{0, false}, {3600, true}};
  const std::string v1 = WriteTzif(spec);
  ASSERT_TRUE(TimeZoneFromTzif(v1, "v1").ok());
  for (size_t len = 0; len < v1.size(); ++len) {
    EXPECT_FALSE(TimeZoneFromTzif(std::string_view(v1).substr(0, len), "v1").ok()) << len;
  }
}

TEST(TzifParse, CorruptionsNameTheProblem) {
  const std::string good = ReadFileBytes(std::string(kZoneinfo) + "/America/New_York");
  const Layout l = LayoutOf(good);
  ASSERT_EQ(good[l.footer], '\n');
  const uint32_t timecnt = Be32(good, l.second_header + kTimecntAt);
  ASSERT_GT(timecnt, 10u);
  struct Case {
    const char* what;     // a phrase the message must contain
    void (*mutate)(std::string*, const Layout&);
  } cases[] = {
      {"magic", [](std::string* b, const Layout&) { (*b)[0] = 'X'; }},
      {"magic", [](std::string* b, const Layout& l) { (*b)[l.second_header + 3] = 'g'; }},
      {"version", [](std::string* b, const Layout&) { (*b)[4] = '9'; }},
      {"version", [](std::string* b, const Layout& l) { (*b)[l.second_header + 4] = '3'; }},
      {"typecnt is 0", [](std::string* b, const Layout& l) {
         PutBe32(b, l.second_header + kTypecntAt, 0);
       }},
      {"charcnt is 0", [](std::string* b, const Layout&) { PutBe32(b, kCharcntAt, 0); }},
      {"truncated", [](std::string* b, const Layout& l) {
         PutBe32(b, l.second_header + kTimecntAt, 0xFFFFFFFF);
       }},
      {"truncated", [](std::string* b, const Layout&) { PutBe32(b, kTimecntAt, 0x7FFFFFFF); }},
      {"isutcnt", [](std::string* b, const Layout& l) { PutBe32(b, l.second_header + 20, 1); }},
      {"type index", [](std::string* b, const Layout& l) { (*b)[l.indices + 3] = char(200); }},
      {"beyond +-25 hours", [](std::string* b, const Layout& l) {
         PutBe32(b, l.types, 26 * 3600);
       }},
      {"beyond +-25 hours", [](std::string* b, const Layout& l) {
         PutBe32(b, l.types + 6, static_cast<uint32_t>(-26 * 3600));
       }},
      {"isdst", [](std::string* b, const Layout& l) { (*b)[l.types + 4] = 2; }},
      {"designation index", [](std::string* b, const Layout& l) { (*b)[l.types + 5] = char(250); }},
      {"not after transition", [](std::string* b, const Layout& l) {
         // Transition 5 := transition 4.
         std::copy_n(b->begin() + l.transitions + 4 * 8, 8, b->begin() + l.transitions + 5 * 8);
       }},
      {"newline", [](std::string* b, const Layout& l) { (*b)[l.footer] = 'X'; }},
      {"no closing newline", [](std::string* b, const Layout&) { b->pop_back(); }},
      {"footer", [](std::string* b, const Layout& l) { (*b)[l.footer + 4] = '!'; }},
      {"footer", [](std::string* b, const Layout& l) {
         b->resize(l.footer);
         *b += "\nEST5EDT,M3.2.0,M99.1.0\n";
       }},
  };
  for (const Case& c : cases) {
    std::string bytes = good;
    c.mutate(&bytes, l);
    auto z = TimeZoneFromTzif(bytes, "America/New_York");
    ASSERT_FALSE(z.ok()) << c.what;
    EXPECT_TRUE(z.status().IsInvalidArgument()) << c.what << ": " << z.status().ToString();
    EXPECT_NE(z.status().message().find(c.what), std::string::npos)
        << c.what << ": " << z.status().ToString();
    EXPECT_NE(z.status().message().find("America/New_York"), std::string::npos)
        << z.status().ToString();
  }
}

TEST(TzifParse, RandomCorruptionNeverCrashesAndKeepsInvariants) {
  const std::string good = ReadFileBytes(std::string(kZoneinfo) + "/Europe/London");
  ASSERT_FALSE(good.empty());
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<size_t> pos(0, good.size() - 1);
  std::uniform_int_distribution<int> byte(0, 255), flips(1, 4);
  std::uniform_int_distribution<int64_t> instant(Utc(1800, 1, 1), Utc(2250, 1, 1));
  int parsed = 0;
  for (int round = 0; round < 3000; ++round) {
    std::string bytes = good;
    for (int i = flips(rng); i > 0; --i) bytes[pos(rng)] = static_cast<char>(byte(rng));
    auto z = TimeZoneFromTzif(bytes, "fuzz");
    if (!z.ok()) {
      ASSERT_TRUE(z.status().IsInvalidArgument()) << z.status().ToString();
      continue;
    }
    ++parsed;
    for (int i = 0; i < 10; ++i) {
      const int64_t t = instant(rng);
      const int64_t off = (*z)->OffsetSecondsAt(t);
      ASSERT_LE(off, 25 * 3600);
      ASSERT_GE(off, -25 * 3600);
      // The local-time search agrees with the offsets it is built on.
      const int64_t first = (*z)->FirstInstantAtOrAfterLocal(LocalNs(**z, t));
      ASSERT_LE(first, t);
      ASSERT_GE(LocalNs(**z, first), LocalNs(**z, t));
    }
  }
  // Most single-byte changes hit transition times or names and still parse.
  EXPECT_GT(parsed, 100);
}

}  // namespace
}  // namespace bastion
