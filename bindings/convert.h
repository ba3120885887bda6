// Python values -> core values, for every binding file that takes them: one
// place for the checks and the error wording.
#ifndef BASTION_BINDINGS_CONVERT_H_
#define BASTION_BINDINGS_CONVERT_H_

#include <cstdint>
#include <optional>
#include <string_view>

#include <pybind11/pybind11.h>

#include "bastion/value.h"

namespace bastion::py_bindings {

// A non-negative int (bool is not one). TypeError "<what> must be int, got
// <type>"; InvalidArgumentError "<what> must be >= 0" or "<what> is out of
// range"; with `name`, <what> reads "<what> '<name>'" (as Utf8View's).
int64_t CountFromPython(pybind11::handle h, std::string_view what, std::string_view name = {});

// What an int beyond int64 becomes in a Value.
enum class BigInt : uint8_t {
  kToDouble,  // the nearest double
  kReject,    // InvalidArgumentError "<path> is out of range (<value>)"
};

// A JSON-like scalar (None, bool, int, float, str) as a Value; nullopt for
// any other type, which the caller converts or rejects. `path` names the
// value in errors (a str that is not valid UTF-8).
std::optional<Value> ScalarFromPython(pybind11::handle h, std::string_view path, BigInt big);

}  // namespace bastion::py_bindings

#endif  // BASTION_BINDINGS_CONVERT_H_
