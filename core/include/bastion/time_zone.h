// Time zones: the local offset in force at a UTC instant, for calendar budget
// windows (daily, weekly, monthly start at local midnight).
//
//   auto ny = bastion::TimeZone::Load("America/New_York");   // IANA, with DST
//   if (!ny.ok()) return ny.status();       // NotFound / InvalidArgument
//   spec.window = bastion::Window::Daily(*ny);
//
//   bastion::TimeZone::Load("+09:00");      // a fixed offset, no file needed
//   bastion::FixedOffset::Hours(9);         // the same, for trusted constants
//
// Instants are int64 nanoseconds since the Unix epoch, UTC (POSIX time: no
// leap seconds). Offsets are whole seconds, east of Greenwich positive.
//
// Thread safety: every TimeZone here is immutable after construction; all
// const methods may be called from any number of threads at once. Loading
// reads the file system and allocates; OffsetSecondsAt and
// FirstInstantAtOrAfterLocal never allocate.
#ifndef BASTION_TIME_ZONE_H_
#define BASTION_TIME_ZONE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "bastion/status.h"

namespace bastion {

// Maps a UTC instant to the local offset in force at it.
class TimeZone {
 public:
  virtual ~TimeZone() = default;

  // Seconds to add to UTC to get local time at `utc_ns` (+09:00 -> 32400).
  virtual int64_t OffsetSecondsAt(int64_t utc_ns) const = 0;

  // "UTC", "+09:00", "-05:30", or the IANA name ("America/New_York").
  virtual std::string Name() const = 0;

  // The first UTC instant at which the local clock reads `local_ns` or later
  // (`local_ns`: nanoseconds since 1970-01-01T00:00 on the local clock):
  //   - a local time that occurs once: that instant;
  //   - one that occurs twice (clocks turned back): the earlier instant;
  //   - one that never occurs (clocks jumped over it): the transition instant
  //     that ends the gap, i.e. the first instant that exists after it.
  // This is what calendar windows use to place local midnight. The result is
  // non-decreasing in `local_ns`; it saturates at the int64 range.
  //
  // The default implementation only probes OffsetSecondsAt; it is exact when
  // the offset changes at most once within 26 hours of the answer. The zones
  // in this header override it with exact answers from their own data.
  virtual int64_t FirstInstantAtOrAfterLocal(int64_t local_ns) const;

  // Loads a zone by name:
  //   "UTC", "Etc/UTC", "Z"        UTC (no file needed);
  //   "+09:00", "-05:30", "+0530", "+09"
  //                                a fixed offset within +-18:00;
  //   an IANA name ("America/New_York")
  //                                the TZif file of that name under the
  //                                zoneinfo directory: $TZDIR if set and
  //                                non-empty, else /usr/share/zoneinfo.
  // Errors:
  //   InvalidArgument  a malformed name: empty, longer than 255 bytes, a
  //                    leading '/', an empty component, "..", or a character
  //                    outside [A-Za-z0-9/_+-]; a fixed offset out of range;
  //                    a file that is not valid TZif (see TimeZoneFromTzif);
  //   NotFound         "time zone 'X' not found in /usr/share/zoneinfo" (no
  //                    such file, or it is not a regular file);
  //   IOError          the file exists but cannot be read.
  // The file is read on every call; load once and share the pointer. Reads
  // $TZDIR with getenv, so do not call it while another thread sets the
  // environment.
  static Result<std::shared_ptr<const TimeZone>> Load(std::string_view name);

  // Load, reading IANA names from `zoneinfo_dir` instead of $TZDIR or the
  // system directory. The name rules and errors are the same.
  static Result<std::shared_ptr<const TimeZone>> LoadFromDirectory(
      std::string_view name, std::string_view zoneinfo_dir);
};

// A constant offset from UTC.
class FixedOffset final : public TimeZone {
 public:
  // InvalidArgument unless |offset_seconds| <= 18 hours.
  static Result<std::shared_ptr<const TimeZone>> Create(int64_t offset_seconds);
  // Shorthand for whole-hour offsets in [-18, 18]; out of range is a programming
  // error (asserted), use Create for untrusted input.
  static std::shared_ptr<const TimeZone> Hours(int hours);
  static std::shared_ptr<const TimeZone> Utc();

  explicit FixedOffset(int64_t offset_seconds) : offset_seconds_(offset_seconds) {}
  int64_t OffsetSecondsAt(int64_t) const override { return offset_seconds_; }
  std::string Name() const override;
  int64_t FirstInstantAtOrAfterLocal(int64_t local_ns) const override;

 private:
  int64_t offset_seconds_;
};

// Parses a TZif file (RFC 8536, versions 1 to 4) held in memory; `name` is
// what the zone's Name() returns and what error messages cite.
//
// Version 2+ files are read from their 64-bit data block, and the POSIX TZ
// string in their footer governs instants at and after the last transition
// (all instants if there are none). The footer grammar is POSIX
// "std offset [dst [offset] [,start[/time],end[/time]]]" with <...> quoted
// names, Jn / n / Mm.w.d dates and rule times of -167..167 hours (the RFC 8536
// version 3 extension, accepted in every version). A DST name without a rule
// uses ",M3.2.0,M11.1.0", as the C libraries do. Before the first transition
// the zone is at local time type 0. Leap-second records are validated and
// then ignored: instants here are POSIX time.
//
// Errors: InvalidArgument "time zone 'NAME': <what is wrong>" for every
// defect: bad magic or version, data truncated anywhere, counts that overrun
// the data or contradict each other, transitions out of order, a type index
// or designation index out of range, an offset beyond +-25 hours, a missing,
// unterminated or unparsable footer. Never reads outside `bytes`.
Result<std::shared_ptr<const TimeZone>> TimeZoneFromTzif(std::string_view bytes,
                                                         std::string name);

}  // namespace bastion

#endif  // BASTION_TIME_ZONE_H_
