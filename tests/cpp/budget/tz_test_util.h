// Helpers shared by the time zone and DST window tests: civil-time instants,
// loading system zones, and a writer for synthetic TZif files.
#ifndef BASTION_TESTS_BUDGET_TZ_TEST_UTIL_H_
#define BASTION_TESTS_BUDGET_TZ_TEST_UTIL_H_

#include <cstdint>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "bastion/time_zone.h"
#include "budget/civil.h"

namespace bastion::tztest {

inline constexpr int64_t kSecond = kNanosPerSecond;
inline constexpr int64_t kMinute = 60 * kSecond;
inline constexpr int64_t kHour = 3600 * kSecond;
inline constexpr int64_t kDay = kNanosPerDay;

// UTC nanoseconds of a UTC civil time.
inline int64_t Utc(int64_t y, int m, int d, int hh = 0, int mm = 0, int ss = 0) {
  return DaysFromCivil(y, m, d) * kNanosPerDay + ((hh * 60 + mm) * 60 + ss) * kSecond;
}

// Nanoseconds on the zone's local clock at `utc_ns`.
inline int64_t LocalNs(const TimeZone& zone, int64_t utc_ns) {
  return utc_ns + zone.OffsetSecondsAt(utc_ns) * kSecond;
}

// A zone from the system zoneinfo directory; null (and a test failure) when
// it cannot be loaded.
inline std::shared_ptr<const TimeZone> Zone(const std::string& name) {
  auto z = TimeZone::LoadFromDirectory(name, "/usr/share/zoneinfo");
  if (!z.ok()) {
    ADD_FAILURE() << "cannot load " << name << ": " << z.status().ToString();
    return nullptr;
  }
  return *z;
}

inline std::string ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Writes TZif data: both data blocks (version 2+) or only the first
// (version 1), with the given transitions and types, and the footer.
struct TzifSpec {
  char version = '2';  // '\0', '2', '3', '4'
  std::vector<int64_t> transitions;
  std::vector<uint8_t> type_indices;
  struct Type {
    int32_t utoff;
    bool isdst;
  };
  std::vector<Type> types = {{0, false}};
  std::string footer;  // the TZ string, without its newlines
};

inline std::string WriteTzif(const TzifSpec& spec) {
  std::string out;
  auto put32 = [&](uint32_t v) {
    for (int i = 3; i >= 0; --i) out += static_cast<char>(v >> (8 * i));
  };
  auto put64 = [&](uint64_t v) {
    for (int i = 7; i >= 0; --i) out += static_cast<char>(v >> (8 * i));
  };
  auto block = [&](int time_size) {
    out += "TZif";
    out += spec.version;
    out.append(15, '\0');
    const auto n_types = static_cast<uint32_t>(spec.types.size());
    put32(n_types);  // isutcnt
    put32(n_types);  // isstdcnt
    put32(0);        // leapcnt
    put32(static_cast<uint32_t>(spec.transitions.size()));
    put32(n_types);
    put32(4);  // charcnt: "ABC\0", shared by every type
    for (int64_t t : spec.transitions) {
      if (time_size == 8) {
        put64(static_cast<uint64_t>(t));
      } else {
        put32(static_cast<uint32_t>(static_cast<int32_t>(t)));
      }
    }
    for (uint8_t i : spec.type_indices) out += static_cast<char>(i);
    for (const TzifSpec::Type& t : spec.types) {
      put32(static_cast<uint32_t>(t.utoff));
      out += static_cast<char>(t.isdst ? 1 : 0);
      out += '\0';
    }
    out.append("ABC", 4);
    out.append(spec.types.size(), '\0');  // isstd
    out.append(spec.types.size(), '\0');  // isut
  };
  block(4);
  if (spec.version != '\0') {
    block(8);
    out += '\n';
    out += spec.footer;
    out += '\n';
  }
  return out;
}

}  // namespace bastion::tztest

#endif  // BASTION_TESTS_BUDGET_TZ_TEST_UTIL_H_
