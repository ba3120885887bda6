// The Python exception hierarchy and the one place a Status becomes one.
#ifndef BASTION_BINDINGS_ERRORS_H_
#define BASTION_BINDINGS_ERRORS_H_

#include <string>

#include <pybind11/pybind11.h>

#include "bastion/status.h"

namespace bastion::py_bindings {

void RegisterErrors(pybind11::module_& m);

// Raises the bastion exception matching `s` (which must not be OK).
[[noreturn]] void ThrowStatus(const Status& s);

// As ThrowStatus, but a refusal (FailedPrecondition) is a
// bastion.BudgetExceededError whose `budget` is `budget_id`.
[[noreturn]] void ThrowBudgetStatus(const Status& s, const std::string& budget_id);

inline void ThrowIfError(const Status& s) {
  if (!s.ok()) ThrowStatus(s);
}

template <typename T>
T Unwrap(Result<T>&& r) {
  if (!r.ok()) ThrowStatus(r.status());
  return std::move(r).value();
}

// Raises bastion.VerificationError with the message of `s` (not OK), whatever
// its code: evidence that fails to verify.
[[noreturn]] void ThrowVerification(const Status& s);

// Raises bastion.InvalidArgumentError (also a ValueError) with `message`.
[[noreturn]] void ThrowInvalid(const std::string& message);

}  // namespace bastion::py_bindings

#endif  // BASTION_BINDINGS_ERRORS_H_
