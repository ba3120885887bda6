// Decisions and call descriptions, for binding files that produce or take them.
#ifndef BASTION_BINDINGS_POLICY_H_
#define BASTION_BINDINGS_POLICY_H_

#include <pybind11/pybind11.h>

#include "bastion/policy.h"

namespace bastion::py_bindings {

// A bastion.Decision owning `d`.
pybind11::object WrapDecision(Decision d);

// A CallInfo from a hook name, an optional dict and keyword arguments, with
// the same field names, checks and errors as PolicyEngine.evaluate.
CallInfo CallFromFields(pybind11::handle hook, pybind11::handle mapping, pybind11::handle kwargs);

}  // namespace bastion::py_bindings

#endif  // BASTION_BINDINGS_POLICY_H_
