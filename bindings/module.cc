// bastion._core: the compiled half of the bastion package. Every class here
// wraps a core type; the Python package re-exports them (python/bastion).
#include <pybind11/pybind11.h>

#include "errors.h"

namespace bastion::py_bindings {
void RegisterLedger(pybind11::module_& m);
void RegisterPolicy(pybind11::module_& m);
void RegisterCost(pybind11::module_& m);
void RegisterSlo(pybind11::module_& m);
void RegisterGuard(pybind11::module_& m);
void RegisterEvidence(pybind11::module_& m);
}

PYBIND11_MODULE(_core, m) {
  m.doc() = "Bastion's C++ core";
  bastion::py_bindings::RegisterErrors(m);
  bastion::py_bindings::RegisterLedger(m);
  bastion::py_bindings::RegisterPolicy(m);
  bastion::py_bindings::RegisterCost(m);
  bastion::py_bindings::RegisterSlo(m);
  bastion::py_bindings::RegisterGuard(m);
  bastion::py_bindings::RegisterEvidence(m);
}
