// bastion._core.SloMonitor.
#include <memory>

#include <fmt/format.h>
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bastion/slo_monitor.h"
#include "cost.h"
#include "errors.h"
#include "slo.h"

namespace py = pybind11;
using namespace pybind11::literals;

namespace bastion::py_bindings {
namespace {

py::object Decimal(int64_t nanousd) { return UsdDecimal(nanousd); }

py::object OptNs(const std::optional<int64_t>& v) {
  return v ? py::object(py::int_(*v)) : py::object(py::none());
}

py::dict EventDict(const SloEvent& e) {
  return py::dict("slo"_a = e.slo_id, "subject"_a = e.subject, "signal"_a = e.signal,
                  "firing"_a = e.firing, "severity"_a = e.severity, "action"_a = e.action,
                  "detail"_a = e.detail, "at_ns"_a = e.at_ns);
}

py::list EventList(const std::vector<SloEvent>& events) {
  py::list out;
  for (const SloEvent& e : events) out.append(EventDict(e));
  return out;
}

py::dict StatusDict(const SeriesStatus& s) {
  py::list burn;
  for (const BurnRateStatus& b : s.burn_rates) {
    burn.append(py::dict("rule"_a = b.rule, "severity"_a = b.severity,
                         "threshold"_a = b.threshold, "long_window_ns"_a = b.long_window_ns,
                         "short_window_ns"_a = b.short_window_ns,
                         "long_burn_rate"_a = b.long_burn_rate,
                         "short_burn_rate"_a = b.short_burn_rate, "firing"_a = b.firing));
  }
  py::list actions;
  for (const BreachAction& a : s.active_actions) actions.append(BreachActionText(a));
  py::dict d;
  d["slo"] = s.slo_id;
  d["subject"] = s.subject;
  d["at_ns"] = s.at_ns;
  d["calls"] = s.calls;
  d["latency_calls"] = s.latency_calls;
  d["p50_ns"] = s.latency_p50_ns;
  d["p95_ns"] = s.latency_p95_ns;
  d["p99_ns"] = s.latency_p99_ns;
  d["p50_target_ns"] = OptNs(s.latency_p50_target_ns);
  d["p95_target_ns"] = OptNs(s.latency_p95_target_ns);
  d["p99_target_ns"] = OptNs(s.latency_p99_target_ns);
  d["has_success"] = s.has_success;
  d["target"] = s.target;
  d["events"] = s.events;
  d["errors"] = s.errors;
  d["success_rate"] = s.success_rate;
  d["error_budget_remaining"] = s.error_budget_remaining;
  d["burn_rates"] = burn;
  d["firing"] = s.firing;
  d["breaker"] = s.breaker_state;
  d["cost_today_usd"] = Decimal(s.cost_today_nanousd);
  d["cost_p95_per_request_usd"] = Decimal(s.cost_p95_per_request_nanousd);
  d["cost_max_per_request_usd"] = Decimal(s.cost_max_per_request_nanousd);
  d["priced_calls"] = s.priced_calls;
  d["active_actions"] = actions;
  return d;
}

std::string CheckKind(const std::string& kind) {
  if (kind != "model" && kind != "tool") {
    ThrowInvalid(fmt::format("kind must be 'model' or 'tool', got '{}'", kind));
  }
  return kind;
}

class PySloMonitor {
 public:
  static std::shared_ptr<PySloMonitor> Open(py::object config, py::object yaml, py::object clock,
                                            double evaluate_every, py::object on_escalate,
                                            py::object time_zone) {
    std::vector<SloSpec> specs;
    if (!yaml.is_none()) {
      specs = Unwrap(ParseSloYaml(yaml.cast<std::string>(), "<slos>"));
    } else if (!config.is_none()) {
      specs = Unwrap(LoadSloYamlFile(py::str(config)));
    } else {
      ThrowInvalid("SloMonitor.open needs a config file path or yaml= text");
    }
    if (!(evaluate_every >= 0 && evaluate_every <= 86400)) {
      ThrowInvalid(fmt::format("evaluate_every must be between 0 and 86400 seconds, got {}",
                               evaluate_every));
    }
    SloMonitor::Options o;
    o.evaluate_every_ns = static_cast<int64_t>(evaluate_every * 1e9);
    if (!clock.is_none()) o.clock = ClockOf(clock);
    if (!time_zone.is_none()) o.zone = Unwrap(TimeZone::Load(time_zone.cast<std::string>()));
    if (!on_escalate.is_none()) {
      if (!PyCallable_Check(on_escalate.ptr())) {
        throw py::type_error("on_escalate must be callable");
      }
      // Called on whichever thread evaluates, with or without the GIL; a
      // raising callback is reported as unraisable, never into the monitor.
      // The last owner may be any thread (a policy helper evaluating without
      // the GIL), so the Python object is released with the GIL taken.
      std::shared_ptr<py::object> fn(new py::object(on_escalate), [](py::object* p) {
        py::gil_scoped_acquire gil;
        delete p;
      });
      o.on_escalate = [fn](const SloEvent& e) {
        py::gil_scoped_acquire gil;
        try {
          (*fn)(EventDict(e));
        } catch (py::error_already_set& err) {
          err.discard_as_unraisable("bastion SloMonitor on_escalate");
        }
      };
    }
    auto out = std::make_shared<PySloMonitor>();
    Result<std::unique_ptr<SloMonitor>> created = [&] {
      py::gil_scoped_release release;
      return SloMonitor::Create(std::move(specs), std::move(o));
    }();
    out->monitor_ = std::shared_ptr<SloMonitor>(Unwrap(std::move(created)));
    return out;
  }

  py::dict Admit(const std::string& kind, const std::string& agent, const std::string& model,
                 const std::string& tool) {
    CheckKind(kind);
    const Admission a = monitor_->Admit(SloCall{kind, agent, model, tool});
    return py::dict("allowed"_a = a.allowed, "slo"_a = a.slo_id, "subject"_a = a.subject,
                    "reason"_a = a.reason,
                    "downgrade_model"_a = a.downgrade_model ? py::object(py::str(*a.downgrade_model))
                                                            : py::object(py::none()));
  }

  py::list Record(const std::string& kind, const std::string& agent, const std::string& model,
                  const std::string& tool, bool success, const std::string& error_class,
                  double latency, py::object latency_ns, py::object cost_usd) {
    CheckKind(kind);
    SloOutcome o;
    o.success = success;
    o.error_class = error_class;
    if (!latency_ns.is_none()) {
      o.latency_ns = latency_ns.cast<int64_t>();
    } else {
      if (!(latency >= 0 && latency < 9e9)) {
        ThrowInvalid(fmt::format("latency must be a non-negative number of seconds, got {}",
                                 latency));
      }
      o.latency_ns = static_cast<int64_t>(latency * 1e9);
    }
    if (o.latency_ns < 0) ThrowInvalid("latency_ns must be >= 0");
    if (!cost_usd.is_none()) o.cost_nanousd = UsdToNanos(cost_usd, "cost_usd");
    std::vector<SloEvent> events;
    {
      py::gil_scoped_release release;
      events = monitor_->Record(SloCall{kind, agent, model, tool}, o);
    }
    return EventList(events);
  }

  py::list Evaluate() {
    std::vector<SloEvent> events;
    {
      py::gil_scoped_release release;
      events = monitor_->Evaluate();
    }
    return EventList(events);
  }

  py::list Status() {
    std::vector<SeriesStatus> all;
    {
      py::gil_scoped_release release;
      all = monitor_->Status();
    }
    py::list out;
    for (const SeriesStatus& s : all) out.append(StatusDict(s));
    return out;
  }

  py::dict Get(const std::string& slo, const std::string& subject) {
    return StatusDict(Unwrap(monitor_->Get(slo, subject)));
  }

  double BurnRate(const std::string& slo, double window, const std::string& subject) {
    if (!(window >= 1 && window <= 400 * 86400.0)) {
      ThrowInvalid("window must be between 1 second and 400 days");
    }
    return Unwrap(monitor_->BurnRate(slo, subject, static_cast<int64_t>(window * 1e9)));
  }

  std::vector<std::string> Ids() const {
    std::vector<std::string> ids;
    for (const SloSpec& s : monitor_->specs()) ids.push_back(s.id);
    return ids;
  }

  const std::shared_ptr<SloMonitor>& monitor() const { return monitor_; }
  void Adopt(std::shared_ptr<SloMonitor> monitor) { monitor_ = std::move(monitor); }

 private:
  std::shared_ptr<SloMonitor> monitor_;
};

}  // namespace

std::shared_ptr<SloMonitor> SlosOf(py::handle h) { return h.cast<const PySloMonitor&>().monitor(); }

py::object WrapSlos(std::shared_ptr<SloMonitor> monitor) {
  auto m = std::make_shared<PySloMonitor>();
  m->Adopt(std::move(monitor));
  return py::cast(m);
}

py::list SloEventList(const std::vector<SloEvent>& events) { return EventList(events); }

void RegisterSlo(py::module_& m) {
  py::class_<PySloMonitor, std::shared_ptr<PySloMonitor>>(
      m, "SloMonitor", "Service-level objectives: latency, success, cost, breakers, responses.")
      .def_static("open", &PySloMonitor::Open, py::arg("config") = py::none(), py::kw_only(),
                  py::arg("yaml") = py::none(), py::arg("clock") = py::none(),
                  py::arg("evaluate_every") = 1.0, py::arg("on_escalate") = py::none(),
                  py::arg("time_zone") = py::none())
      .def("admit", &PySloMonitor::Admit, py::kw_only(), py::arg("kind") = "model",
           py::arg("agent") = "", py::arg("model") = "", py::arg("tool") = "")
      .def("record", &PySloMonitor::Record, py::kw_only(), py::arg("kind") = "model",
           py::arg("agent") = "", py::arg("model") = "", py::arg("tool") = "",
           py::arg("success") = true, py::arg("error_class") = "", py::arg("latency") = 0.0,
           py::arg("latency_ns") = py::none(), py::arg("cost_usd") = py::none())
      .def("evaluate", &PySloMonitor::Evaluate)
      .def("status", &PySloMonitor::Status)
      .def("get", &PySloMonitor::Get, py::arg("slo"), py::arg("subject") = "")
      .def("burn_rate", &PySloMonitor::BurnRate, py::arg("slo"), py::arg("window"),
           py::arg("subject") = "")
      .def_property_readonly("ids", &PySloMonitor::Ids);
}

}  // namespace bastion::py_bindings
