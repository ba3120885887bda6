// Status and Result<T>: how every fallible core function reports failure.
//
//   bastion::Status s = ledger->Close();
//   if (!s.ok()) std::cerr << s.ToString() << "\n";
//
//   bastion::Result<uint64_t> seq = ledger->Append(record);
//   if (!seq.ok()) return seq.status();
//   use(*seq);
//
// An OK status costs one null pointer. Errors carry a code and a message that
// names what failed and where (path, field, record sequence). The core never
// throws; exceptions exist only at the Python boundary.
#ifndef BASTION_STATUS_H_
#define BASTION_STATUS_H_

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace bastion {

class Status {
 public:
  enum class Code : unsigned char {
    kOk = 0,
    kInvalidArgument,     // the caller's input is wrong (type, size, encoding)
    kNotFound,            // the thing asked for does not exist
    kCorruption,          // stored data is damaged or was tampered with
    kIOError,             // the file system or store failed
    kBusy,                // held by someone else (e.g. a second writer)
    kFailedPrecondition,  // the object is in the wrong state (closed, read-only)
    kInternal,            // a bug: an invariant did not hold
    kUnavailable,         // a shared store (Redis) cannot be reached in time
  };

  Status() noexcept = default;  // OK
  Status(const Status& other);
  Status& operator=(const Status& other);
  Status(Status&&) noexcept = default;
  Status& operator=(Status&&) noexcept = default;

  static Status OK() { return Status(); }
  static Status InvalidArgument(std::string_view msg) { return Status(Code::kInvalidArgument, msg); }
  static Status NotFound(std::string_view msg) { return Status(Code::kNotFound, msg); }
  static Status Corruption(std::string_view msg) { return Status(Code::kCorruption, msg); }
  static Status IOError(std::string_view msg) { return Status(Code::kIOError, msg); }
  static Status Busy(std::string_view msg) { return Status(Code::kBusy, msg); }
  static Status FailedPrecondition(std::string_view msg) {
    return Status(Code::kFailedPrecondition, msg);
  }
  static Status Internal(std::string_view msg) { return Status(Code::kInternal, msg); }
  static Status Unavailable(std::string_view msg) { return Status(Code::kUnavailable, msg); }

  bool ok() const { return state_ == nullptr; }
  Code code() const { return state_ ? state_->code : Code::kOk; }
  bool IsInvalidArgument() const { return code() == Code::kInvalidArgument; }
  bool IsNotFound() const { return code() == Code::kNotFound; }
  bool IsCorruption() const { return code() == Code::kCorruption; }
  bool IsIOError() const { return code() == Code::kIOError; }
  bool IsBusy() const { return code() == Code::kBusy; }
  bool IsFailedPrecondition() const { return code() == Code::kFailedPrecondition; }
  bool IsUnavailable() const { return code() == Code::kUnavailable; }

  // The message alone ("" when OK).
  const std::string& message() const;
  // "Corruption: record 17: chain hash mismatch", or "OK".
  std::string ToString() const;
  // A copy whose message is prefixed with `context` + ": ".
  Status WithContext(std::string_view context) const;

  static const char* CodeName(Code code);

 private:
  struct State {
    Code code;
    std::string message;
  };
  Status(Code code, std::string_view msg);
  std::unique_ptr<State> state_;
};

// Either a value or a non-OK Status. Accessing the value of an error Result is
// a programming error (checked by assert in debug builds).
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit on purpose
  Result(Status status) : v_(std::move(status)) {}  // NOLINT: must not be OK

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace bastion

#define BASTION_RETURN_IF_ERROR(expr)          \
  do {                                         \
    ::bastion::Status _bastion_s = (expr);     \
    if (!_bastion_s.ok()) return _bastion_s;   \
  } while (0)

#endif  // BASTION_STATUS_H_
