// TimeZone's default local-time search, fixed offsets, and loading zones by
// name (fixed offsets or TZif files from the zoneinfo directory).
#include "bastion/time_zone.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cassert>
#include <cstdint>
#include <string>

#include <fmt/format.h>

#include "budget/civil.h"
#include "budget/time_zone_internal.h"

namespace bastion {

namespace {

using tz_internal::SatAdd;
using tz_internal::SatMul;
using tz_internal::SatSub;

constexpr int64_t kMaxFixedOffsetSeconds = 18 * 3600;
// Wider than any offset a zone may have (TZif offsets are limited to 25 h),
// so no instant before local - kSearchMargin can read local time yet.
constexpr int64_t kSearchMarginNs = 26 * 3600 * kNanosPerSecond;
constexpr size_t kMaxNameBytes = 255;
// Real TZif files are a few kilobytes; this only bounds what a bad path costs.
constexpr int64_t kMaxTzifBytes = 1 << 20;
constexpr const char* kDefaultZoneinfoDir = "/usr/share/zoneinfo";

// The name as it may be quoted in a message: non-printable bytes escaped.
std::string Printable(std::string_view s) {
  std::string out;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7F) {
      out += c;
    } else {
      out += fmt::format("\\x{:02x}", u);
    }
  }
  return out;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

bool IsNameChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || IsDigit(c) || c == '/' ||
         c == '_' || c == '+' || c == '-';
}

Status BadName(std::string_view name, std::string_view why) {
  return Status::InvalidArgument(fmt::format("time zone '{}': {}", Printable(name), why));
}

// The rules for an IANA name, which becomes a path under the zoneinfo
// directory: it must not be able to leave that directory.
Status ValidateZoneName(std::string_view name) {
  if (name.empty()) return Status::InvalidArgument("time zone name is empty");
  if (name.size() > kMaxNameBytes) {
    return BadName(name.substr(0, 40),
                   fmt::format("name is longer than {} bytes", kMaxNameBytes));
  }
  if (name.front() == '/') return BadName(name, "name must not start with '/'");
  if (name.find("..") != std::string_view::npos) return BadName(name, "name must not contain '..'");
  for (char c : name) {
    if (!IsNameChar(c)) {
      return BadName(name, fmt::format("character '{}' is not allowed (only A-Z a-z 0-9 / _ + -)",
                                       Printable(std::string_view(&c, 1))));
    }
  }
  if (name.back() == '/' || name.find("//") != std::string_view::npos) {
    return BadName(name, "name has an empty component");
  }
  return Status::OK();
}

// "+09", "+09:00", "+0900" (and '-'); hours 0..18, minutes 0..59.
Result<std::shared_ptr<const TimeZone>> ParseFixedOffset(std::string_view name) {
  const std::string_view digits = name.substr(1);
  int hours = -1, minutes = 0;
  auto two = [](std::string_view s, size_t at) {
    return (s[at] - '0') * 10 + (s[at + 1] - '0');
  };
  auto all_digits = [](std::string_view s) {
    for (char c : s) {
      if (!IsDigit(c)) return false;
    }
    return true;
  };
  if (digits.size() == 2 && all_digits(digits)) {
    hours = two(digits, 0);
  } else if (digits.size() == 4 && all_digits(digits)) {
    hours = two(digits, 0);
    minutes = two(digits, 2);
  } else if (digits.size() == 5 && digits[2] == ':' && all_digits(digits.substr(0, 2)) &&
             all_digits(digits.substr(3))) {
    hours = two(digits, 0);
    minutes = two(digits, 3);
  }
  if (hours < 0) return BadName(name, "not a UTC offset (expected +HH, +HH:MM or +HHMM)");
  if (minutes > 59) return BadName(name, "minutes of a UTC offset must be 00..59");
  const int64_t seconds = (int64_t{hours} * 60 + minutes) * 60;
  auto zone = FixedOffset::Create(name.front() == '-' ? -seconds : seconds);
  if (!zone.ok()) return zone.status().WithContext(fmt::format("time zone '{}'", name));
  return zone;
}

// The whole file at `path`; NotFound when there is no regular file there.
Result<std::string> ReadZoneFile(const std::string& path, std::string_view name,
                                 std::string_view dir) {
  auto not_found = [&] {
    return Status::NotFound(fmt::format("time zone '{}' not found in {}", name, dir));
  };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT || err == ENOTDIR) return not_found();
    return Status::IOError(fmt::format("time zone '{}': cannot open {}: {}", name, path,
                                       strerror(err)));
  }
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    return Status::IOError(fmt::format("time zone '{}': cannot stat {}: {}", name, path,
                                       strerror(errno)));
  }
  if (!S_ISREG(st.st_mode)) return not_found();
  if (st.st_size > kMaxTzifBytes) {
    return Status::InvalidArgument(fmt::format(
        "time zone '{}': {} is {} bytes, too large for a TZif file", name, path, st.st_size));
  }
  std::string data;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::IOError(fmt::format("time zone '{}': cannot read {}: {}", name, path,
                                         strerror(errno)));
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
    if (static_cast<int64_t>(data.size()) > kMaxTzifBytes) {
      return Status::InvalidArgument(
          fmt::format("time zone '{}': {} is too large for a TZif file", name, path));
    }
  }
  return data;
}

}  // namespace

int64_t TimeZone::FirstInstantAtOrAfterLocal(int64_t local_ns) const {
  auto offset_ns = [this](int64_t utc_ns) {
    return SatMul(OffsetSecondsAt(utc_ns), kNanosPerSecond);
  };
  const int64_t lo = SatSub(local_ns, kSearchMarginNs);
  const int64_t hi = SatAdd(local_ns, kSearchMarginNs);
  const int64_t off_lo = offset_ns(lo);
  if (offset_ns(hi) == off_lo) return SatSub(local_ns, off_lo);
  // Bisect for the change: offset_ns(a) == off_lo != offset_ns(b).
  int64_t a = lo, b = hi;
  while (b - a > 1) {
    const int64_t mid = a + (b - a) / 2;
    if (offset_ns(mid) == off_lo) {
      a = mid;
    } else {
      b = mid;
    }
  }
  const int64_t before = SatSub(local_ns, off_lo);
  if (before < b) return before;  // reached on the old offset, before the change
  const int64_t after = SatSub(local_ns, offset_ns(b));
  return after >= b ? after : b;  // else the change jumped over local_ns
}

Result<std::shared_ptr<const TimeZone>> FixedOffset::Create(int64_t offset_seconds) {
  if (offset_seconds < -kMaxFixedOffsetSeconds || offset_seconds > kMaxFixedOffsetSeconds) {
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

int64_t FixedOffset::FirstInstantAtOrAfterLocal(int64_t local_ns) const {
  return SatSub(local_ns, SatMul(offset_seconds_, kNanosPerSecond));
}

Result<std::shared_ptr<const TimeZone>> TimeZone::Load(std::string_view name) {
  const char* env = getenv("TZDIR");
  return LoadFromDirectory(name, env != nullptr && env[0] != '\0' ? env : kDefaultZoneinfoDir);
}

Result<std::shared_ptr<const TimeZone>> TimeZone::LoadFromDirectory(
    std::string_view name, std::string_view zoneinfo_dir) {
  if (name == "UTC" || name == "Etc/UTC" || name == "Z") return FixedOffset::Utc();
  if (!name.empty() && (name.front() == '+' || name.front() == '-')) {
    return ParseFixedOffset(name);
  }
  BASTION_RETURN_IF_ERROR(ValidateZoneName(name));
  std::string path(zoneinfo_dir);
  if (path.empty() || path.back() != '/') path += '/';
  path.append(name);
  auto bytes = ReadZoneFile(path, name, zoneinfo_dir);
  if (!bytes.ok()) return bytes.status();
  return TimeZoneFromTzif(*bytes, std::string(name));
}

}  // namespace bastion
