// Decisions and call descriptions, for binding files that produce or take them.
#ifndef BASTION_BINDINGS_POLICY_H_
#define BASTION_BINDINGS_POLICY_H_

#include <functional>
#include <string>
#include <string_view>

#include <pybind11/pybind11.h>

#include "bastion/call.h"
#include "bastion/policy.h"

namespace bastion::py_bindings {

// A bastion.Decision owning `d`.
pybind11::object WrapDecision(Decision d);

// A CallInfo for `hook` from an optional dict and keyword arguments: the
// fields of kCallFields by name or alias (bastion/call.h), with the same
// checks and errors as PolicyEngine.evaluate. A key that is no call field goes
// to `other`, when given, which takes it by returning true (for arguments
// that sit beside the call's fields); any other key is an error.
using OtherField = std::function<bool(std::string_view key, pybind11::handle value)>;
CallInfo CallFromFields(Hook hook, pybind11::handle mapping, pybind11::handle kwargs,
                        const OtherField& other = nullptr);

// The hook named by the str `h`; InvalidArgumentError for an unknown name.
Hook HookFromPython(pybind11::handle h);

}  // namespace bastion::py_bindings

#endif  // BASTION_BINDINGS_POLICY_H_
