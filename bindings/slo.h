// The SLO monitor wrapper, for binding files that take it as an argument.
#ifndef BASTION_BINDINGS_SLO_H_
#define BASTION_BINDINGS_SLO_H_

#include <memory>

#include <pybind11/pybind11.h>

#include "bastion/slo_monitor.h"

namespace bastion::py_bindings {

void RegisterSlo(pybind11::module_& m);

// The monitor behind a bastion.SloMonitor (TypeError for anything else).
std::shared_ptr<SloMonitor> SlosOf(pybind11::handle h);
// A bastion.SloMonitor sharing `monitor` (a Guard's).
pybind11::object WrapSlos(std::shared_ptr<SloMonitor> monitor);
// SloEvents as the dicts SloMonitor.record returns.
pybind11::list SloEventList(const std::vector<SloEvent>& events);

}  // namespace bastion::py_bindings

#endif  // BASTION_BINDINGS_SLO_H_
