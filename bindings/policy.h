// Decisions and call descriptions, for binding files that produce or take them.
#ifndef BASTION_BINDINGS_POLICY_H_
#define BASTION_BINDINGS_POLICY_H_

#include <functional>
#include <string>
#include <string_view>

#include <pybind11/pybind11.h>

#include "bastion/policy.h"

namespace bastion::py_bindings {

// A bastion.Decision owning `d`.
pybind11::object WrapDecision(Decision d);

// A CallInfo from a hook name, an optional dict and keyword arguments, with
// the same field names, checks and errors as PolicyEngine.evaluate. `other`,
// when given, sees each key first and takes it by returning true (for
// arguments that sit beside the call's fields).
using OtherField = std::function<bool(std::string_view key, pybind11::handle value)>;
CallInfo CallFromFields(pybind11::handle hook, pybind11::handle mapping, pybind11::handle kwargs,
                        const OtherField& other = nullptr);

}  // namespace bastion::py_bindings

#endif  // BASTION_BINDINGS_POLICY_H_
