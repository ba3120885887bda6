// Decisions and call descriptions, for binding files that produce or take them.
#ifndef BASTION_BINDINGS_POLICY_H_
#define BASTION_BINDINGS_POLICY_H_

#include <functional>
#include <span>
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

// As CallFromFields, for a vectorcall `function(*args, **kwargs)`: the
// positional arguments are the fields named by `positional`, in order, the
// first `required` of which must be given (by position or keyword); the
// keyword arguments are the names in `kwnames` (a tuple, or nullptr for none)
// with their values after the positional ones. TypeError names `function` for
// too many positional arguments, a field given twice or a required one missing.
CallInfo CallFromArgs(Hook hook, const char* function, PyObject* const* args, Py_ssize_t nargs,
                      PyObject* kwnames, std::span<const std::string_view> positional,
                      size_t required, const OtherField& other = nullptr);

// The hook named by the str `h`; InvalidArgumentError for an unknown name.
Hook HookFromPython(pybind11::handle h);

}  // namespace bastion::py_bindings

#endif  // BASTION_BINDINGS_POLICY_H_
