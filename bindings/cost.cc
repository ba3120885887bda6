// bastion._core: PricingTable, Usage, Cost, ManualClock, Budgets and Hold.
#include <memory>
#include <optional>

#include <fmt/format.h>
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bastion/budget_backend.h"
#include "bastion/budget_set.h"
#include "bastion/cost.h"
#include "bastion/fleet_budgets.h"
#include "bastion/slo.h"
#include "convert.h"
#include "cost.h"
#include "errors.h"
#include "record_convert.h"

namespace py = pybind11;
using namespace pybind11::literals;

namespace bastion::py_bindings {
namespace {

// --- usage dictionaries ---

// A usage report -> the core's JSON-like Value; the core recognises its
// shape. A provider SDK object (pydantic) becomes its dict; other mappings
// their dict. Integers beyond int64 are rejected here, naming the field.
Value UsageValue(py::handle h, const std::string& path, int depth) {
  if (depth > 8) ThrowInvalid(fmt::format("{} is nested too deeply for a usage report", path));
  if (std::optional<Value> scalar = ScalarFromPython(h, path, BigInt::kReject)) {
    return std::move(*scalar);
  }
  PyObject* o = h.ptr();
  if (PyList_Check(o) || PyTuple_Check(o)) {
    Value::Array arr;
    size_t i = 0;
    for (py::handle item : h) {
      arr.push_back(UsageValue(item, fmt::format("{}[{}]", path, i++), depth + 1));
    }
    return Value(std::move(arr));
  }
  py::object mapping;
  if (PyDict_Check(o)) {
    mapping = py::reinterpret_borrow<py::object>(h);
  } else if (py::hasattr(h, "model_dump")) {
    mapping = h.attr("model_dump")();
  } else if (py::isinstance(h, py::module_::import("collections.abc").attr("Mapping"))) {
    mapping = py::dict(py::reinterpret_borrow<py::object>(h));
  }
  if (!mapping || !PyDict_Check(mapping.ptr())) {
    ThrowInvalid(fmt::format("{} must be a dict of token counts (or an SDK usage object), got {}",
                             path, Py_TYPE(o)->tp_name));
  }
  Value::Object obj;
  PyObject *k, *v;
  Py_ssize_t pos = 0;
  while (PyDict_Next(mapping.ptr(), &pos, &k, &v)) {
    if (!PyUnicode_Check(k)) {
      ThrowInvalid(fmt::format("keys of {} must be str, got {}", path, Py_TYPE(k)->tp_name));
    }
    std::string key(Utf8View(k, "a key of", path));
    // A count (an int within int64) needs no path for its errors: built only
    // for other values.
    int overflow = 0;
    const long long count =
        PyLong_CheckExact(v) ? PyLong_AsLongLongAndOverflow(v, &overflow) : 0;
    Value value = PyLong_CheckExact(v) && !overflow
                      ? Value(static_cast<int64_t>(count))
                      : UsageValue(v, path + "." + key, depth + 1);
    obj.emplace_back(std::move(key), std::move(value));
  }
  return Value(std::move(obj));
}

Usage UsageFromProvider(py::handle raw, const std::string& provider) {
  // None is rejected by the core with the other non-maps ("got null").
  const Value report = UsageValue(raw, "usage", 0);
  return Unwrap(ParseUsageReport(report, provider)).usage;
}

py::dict UsageDict(const Usage& u) {
  return py::dict("input"_a = u.input, "cache_read"_a = u.cache_read,
                  "cache_write_5m"_a = u.cache_write_5m, "cache_write_1h"_a = u.cache_write_1h,
                  "output"_a = u.output, "reasoning"_a = u.reasoning);
}

// --- money ---

// value x 10^-digits as a Decimal in its plainest form: 0.55, 1, 0 (not
// 0.550000000 or 0E-9). Exact: the division is exact in Decimal's context.
py::object ScaledDecimal(int64_t value, int digits) {
  // Leaked on purpose: a static py::object would be released after the
  // interpreter has finalized.
  static py::object& decimal = *new py::object(py::module_::import("decimal").attr("Decimal"));
  if (value == 0) return decimal(0);
  py::object scale = py::int_(1);
  for (int i = 0; i < digits; ++i) scale = scale * py::int_(10);
  return decimal(value).attr("__truediv__")(scale);
}

py::object Decimal(int64_t nanousd) { return ScaledDecimal(nanousd, 9); }

}  // namespace

py::object UsdDecimal(int64_t nanousd) { return Decimal(nanousd); }

namespace {

// USD as a Decimal, int or str (exact: more than 9 decimal places is an
// error) or a float (rounded by the one rule, NanoUsdFromDouble) -> nano-USD.
int64_t UsdArg(py::handle v, std::string_view what) {
  const bool is_float = PyFloat_Check(v.ptr());
  if (PyBool_Check(v.ptr())) {
    throw py::type_error(fmt::format("{} must be a number of USD, got bool", what));
  }
  if (!is_float && !PyLong_Check(v.ptr()) && !PyUnicode_Check(v.ptr()) &&
      !py::isinstance(v, py::module_::import("decimal").attr("Decimal"))) {
    throw py::type_error(
        fmt::format("{} must be a number of USD (Decimal, int, float or str), got {}", what,
                    Py_TYPE(v.ptr())->tp_name));
  }
  const Result<bastion::NanoUsd> r = is_float ? NanoUsdFromDouble(PyFloat_AS_DOUBLE(v.ptr()))
                                              : ParseUsd(py::str(v).cast<std::string>());
  if (!r.ok()) ThrowInvalid(fmt::format("{}: {}", what, r.status().message()));
  if (*r < 0) {
    ThrowInvalid(fmt::format("{} must be a non-negative amount of USD, got {}", what,
                             py::repr(v).cast<std::string>()));
  }
  return *r;
}

// --- pricing ---

struct PyCost {
  Cost cost;
  std::string model;
};

class PyPricingTable {
 public:
  explicit PyPricingTable(PricingTable t) : table_(std::make_shared<PricingTable>(std::move(t))) {}
  explicit PyPricingTable(std::shared_ptr<PricingTable> t) : table_(std::move(t)) {}

  static PyPricingTable Load(const std::string& path) {
    return PyPricingTable(Unwrap(PricingTable::FromYamlFile(path)));
  }
  static PyPricingTable FromYaml(const std::string& text, const std::string& source) {
    return PyPricingTable(Unwrap(PricingTable::FromYaml(text, source)));
  }
  static PyPricingTable FromLiteLlm(const std::string& text, const std::string& source) {
    return PyPricingTable(Unwrap(PricingTable::FromLiteLlmJson(text, source)));
  }

  void Merge(const PyPricingTable& other) {
    auto copy = std::make_shared<PricingTable>(*table_);
    copy->MergeFrom(*other.table_);
    table_ = std::move(copy);
  }
  std::string Find(const std::string& model) const { return Unwrap(table_->Find(model)).model; }
  bool Contains(const std::string& model) const { return table_->Find(model).ok(); }
  size_t Size() const { return table_->size(); }

  PyCost Price(const std::string& model, py::handle usage, const std::string& provider) const {
    return {Unwrap(PriceCall(*table_, model, UsageFromPython(usage, provider))), model};
  }

  std::shared_ptr<const PricingTable> table() const { return table_; }

 private:
  std::shared_ptr<PricingTable> table_;  // replaced, never mutated, once shared
};

// --- clock ---

struct PyClock {
  std::shared_ptr<ManualClock> clock;
};

// --- budgets ---

py::dict AlertDict(const AlertEvent& a) {
  return py::dict("budget"_a = a.budget_id, "key"_a = a.key, "percent"_a = a.percent,
                  "level"_a = AlertLevelName(a.level), "action"_a = AlertActionName(a.action),
                  "committed_usd"_a = Decimal(a.committed_nanousd),
                  "limit_usd"_a = Decimal(a.limit_nanousd), "window_start_ns"_a = a.window.start_ns,
                  "window_end_ns"_a = a.window.end_ns, "at_ns"_a = a.at_ns);
}

py::list AlertList(const std::vector<AlertEvent>& alerts) {
  py::list out;
  for (const AlertEvent& a : alerts) out.append(AlertDict(a));
  return out;
}

py::dict UsageRow(const BudgetUsage& u) {
  return py::dict("budget"_a = u.budget_id, "key"_a = u.key, "window"_a = u.window,
                  "window_start_ns"_a = u.window_start_ns, "window_end_ns"_a = u.window_end_ns,
                  "limit_usd"_a = Decimal(u.limit_nanousd),
                  "admissible_usd"_a = Decimal(u.admissible_nanousd),
                  "spent_usd"_a = Decimal(u.spent_nanousd),
                  "reserved_usd"_a = Decimal(u.reserved_nanousd),
                  "remaining_usd"_a = Decimal(u.remaining_nanousd), "used"_a = u.Used(),
                  "enforcement"_a = u.hard ? "hard" : "soft");
}

struct PyHold {
  BudgetHold hold;
};

}  // namespace

StoreOptions StoreArgs(const std::string& url, double timeout_seconds, const std::string& worker,
                       py::handle degraded_cap) {
  if (!(timeout_seconds > 0 && timeout_seconds <= 3600)) {
    ThrowInvalid(fmt::format("store_timeout must be between 0 (exclusive) and 3600 seconds, got {}",
                             timeout_seconds));
  }
  StoreOptions o;
  o.url = url;
  o.timeout_ns = static_cast<int64_t>(timeout_seconds * 1e9);
  o.worker = worker;
  if (!degraded_cap.is_none()) {
    o.degrade_to_local = true;
    o.degraded_cap_nanousd = UsdToNanos(degraded_cap, "degraded_cap");
    if (o.degraded_cap_nanousd <= 0) ThrowInvalid("degraded_cap must be more than $0");
  }
  return o;
}

int64_t FlushIntervalNs(double seconds, const char* name) {
  if (!(seconds >= 0 && seconds <= 86400)) {
    ThrowInvalid(fmt::format("{} must be between 0 and 86400 seconds, got {}", name, seconds));
  }
  return static_cast<int64_t>(seconds * 1e9);
}

namespace {

// Budgets kept in-process (a BudgetSet) or on the fleet's Redis
// (RedisBudgets, with store=): the same methods either way.
class PyBudgets {
 public:
  static std::shared_ptr<PyBudgets> Open(py::object config, py::object yaml, py::object state_path,
                                         double flush_interval, py::object clock,
                                         const std::string& store, double store_timeout,
                                         const std::string& worker, bool leases,
                                         double worker_ttl, py::object degraded_cap) {
    BudgetConfig parsed;
    if (!yaml.is_none()) {
      parsed = Unwrap(ParseBudgetYaml(yaml.cast<std::string>(), "<budgets>"));
    } else if (!config.is_none()) {
      parsed = Unwrap(LoadBudgetYamlFile(py::str(config)));
    } else {
      ThrowInvalid("Budgets.open needs a config file path or yaml= text");
    }
    auto out = std::make_shared<PyBudgets>();
    if (!store.empty()) {
      if (!state_path.is_none()) {
        ThrowInvalid("Budgets.open: give state_path or store, not both (the store keeps the state)");
      }
      RedisBudgets::Options ro;
      ro.leases = leases;
      if (!(worker_ttl >= 0.3 && worker_ttl <= 86400)) {
        ThrowInvalid(fmt::format("worker_ttl must be between 0.3 and 86400 seconds, got {}",
                                 worker_ttl));
      }
      ro.worker_ttl_ns = static_cast<int64_t>(worker_ttl * 1e9);
      if (!clock.is_none()) {
        out->clock_ = clock.cast<PyClock&>().clock;
        ro.clock = [c = out->clock_] { return c->NowNs(); };
      }
      StoreOptions so = StoreArgs(store, store_timeout, worker, degraded_cap);
      Result<std::shared_ptr<RedisBudgets>> opened = [&] {
        py::gil_scoped_release release;
        return RedisBudgets::Open(std::move(parsed), std::move(so), std::move(ro));
      }();
      out->shared_ = Unwrap(std::move(opened));
      out->backend_ = out->shared_;
      return out;
    }
    BudgetSet::Options o;
    if (!state_path.is_none()) o.state_path = py::str(state_path);
    o.flush_interval_ns = FlushIntervalNs(flush_interval, "flush_interval");
    if (!clock.is_none()) {
      out->clock_ = clock.cast<PyClock&>().clock;
      o.clock = [c = out->clock_] { return c->NowNs(); };
    }
    Result<std::unique_ptr<BudgetSet>> opened = [&] {
      py::gil_scoped_release release;
      return BudgetSet::Open(std::move(parsed), o);
    }();
    out->set_ = std::shared_ptr<BudgetSet>(Unwrap(std::move(opened)));
    out->backend_ = BudgetSetBackend(out->set_);
    return out;
  }

  PyHold Reserve(py::object estimate_usd, const std::string& user, const std::string& agent,
                 const std::string& tenant, const std::string& run, const std::string& model,
                 const std::string& tool, std::vector<std::string> tags) {
    const int64_t estimate = UsdArg(estimate_usd, "estimate_usd");
    BudgetSubject s;
    s.user = user;
    s.agent = agent;
    s.tenant = tenant;
    s.run = run;
    s.model = model;
    s.tool = tool;
    for (const std::string& t : tags) s.tags.push_back(t);
    const std::shared_ptr<BudgetBackend> backend = Backend();
    std::string refused_by;
    Result<BudgetHold> r = [&] {
      py::gil_scoped_release release;
      return backend->Reserve(s, estimate, &refused_by);
    }();
    if (!r.ok()) ThrowBudgetStatus(r.status(), refused_by);
    return {std::move(*r)};
  }

  py::dict Settle(const PyHold& hold, py::object actual_usd) {
    const int64_t actual = UsdArg(actual_usd, "actual_usd");
    const std::shared_ptr<BudgetBackend> backend = Backend();
    Result<HoldSettlement> r = [&] {
      py::gil_scoped_release release;
      return backend->Settle(hold.hold, actual);
    }();
    HoldSettlement s = Unwrap(std::move(r));
    return py::dict("actual_usd"_a = Decimal(s.actual_nanousd),
                    "overshoot_usd"_a = Decimal(s.overshoot_nanousd),
                    "alerts"_a = AlertList(s.alerts));
  }

  void Release(const PyHold& hold) {
    const std::shared_ptr<BudgetBackend> backend = Backend();
    Status s;
    {
      py::gil_scoped_release release;
      s = backend->Release(hold.hold);
    }
    ThrowIfError(s);
  }

  py::list Usage() {
    std::vector<BudgetUsage> rows;
    if (shared_) {
      const std::shared_ptr<RedisBudgets> shared = shared_;
      Result<std::vector<BudgetUsage>> r = [&] {
        py::gil_scoped_release release;
        return shared->Usage();
      }();
      rows = Unwrap(std::move(r));
    } else {
      const std::shared_ptr<BudgetSet> set = Set();
      py::gil_scoped_release release;
      rows = set->Usage();
    }
    py::list out;
    for (const BudgetUsage& u : rows) out.append(UsageRow(u));
    return out;
  }

  py::dict UsageOf(const std::string& budget, const std::string& key) {
    if (shared_) {
      const std::shared_ptr<RedisBudgets> shared = shared_;
      Result<BudgetUsage> r = [&] {
        py::gil_scoped_release release;
        return shared->UsageOf(budget, key);
      }();
      return UsageRow(Unwrap(std::move(r)));
    }
    return UsageRow(Unwrap(Set()->UsageOf(budget, key)));
  }

  py::dict Stats(const std::string& budget) {
    if (shared_) {
      ThrowStatus(Status::FailedPrecondition(
          "Budgets.stats: lifetime statistics are kept per process, and these budgets are "
          "shared on a store; use usage() or usage_of()"));
    }
    BudgetStats s = Unwrap(Set()->ledger().Stats(budget));
    return py::dict("admitted"_a = s.admitted, "refused"_a = s.refused, "settled"_a = s.settled,
                    "released"_a = s.released, "outstanding"_a = s.outstanding,
                    "reserved_usd"_a = Decimal(s.reserved_nanousd),
                    "spent_usd"_a = Decimal(s.spent_nanousd),
                    "overshoot_count"_a = s.overshoot_count,
                    "overshoot_usd"_a = Decimal(s.overshoot_nanousd),
                    "max_overshoot_usd"_a = Decimal(s.max_overshoot_nanousd),
                    "alerts_fired"_a = s.alerts_fired);
  }

  py::dict Restored() {
    static const RestoreReport kNothing;
    if (shared_) Backend();  // StateError once closed
    const RestoreReport& r = shared_ ? kNothing : Set()->restored();
    return py::dict("budgets_restored"_a = r.budgets_restored,
                    "abandoned_reservations"_a = r.abandoned_reservations,
                    "abandoned_usd"_a = Decimal(r.abandoned_nanousd), "dropped"_a = r.dropped);
  }

  std::vector<std::string> Ids() {
    std::vector<std::string> ids;
    const BudgetConfig& config = shared_ ? shared_->config() : Set()->config();
    for (const BudgetRule& r : config.budgets) ids.push_back(r.spec.id);
    return ids;
  }

  void Flush() {
    Status s;
    if (shared_) {
      const std::shared_ptr<RedisBudgets> shared = shared_;
      py::gil_scoped_release release;
      s = shared->Flush();
    } else {
      const std::shared_ptr<BudgetSet> set = Set();
      py::gil_scoped_release release;
      s = set->Flush();
    }
    ThrowIfError(s);
  }

  void Close() {
    Status s;
    // Local copies: another thread's close() may reset the members while
    // this one runs without the GIL.
    if (auto shared = shared_) {
      py::gil_scoped_release release;
      s = shared->Close();
    } else if (auto set = set_) {
      py::gil_scoped_release release;
      s = set->Close();
    }
    set_.reset();
    shared_.reset();
    backend_.reset();
    ThrowIfError(s);
  }

  bool closed() const { return backend_ == nullptr; }

  // Wraps a set another object owns too (a Guard's); closing it here closes it
  // for both.
  void Adopt(std::shared_ptr<BudgetSet> set) {
    set_ = std::move(set);
    backend_ = BudgetSetBackend(set_);
  }

  // Where holds go, or StateError once closed.
  const std::shared_ptr<BudgetBackend>& Backend() const {
    if (!backend_) ThrowStatus(Status::FailedPrecondition("the Budgets object is closed"));
    return backend_;
  }

  // The set, or StateError once closed (TypeError for shared budgets, which
  // have none).
  const std::shared_ptr<BudgetSet>& Set() const {
    Backend();
    if (!set_) {
      throw py::type_error("these Budgets are shared on a store (Budgets.open(store=...)); "
                           "only in-process Budgets can be attached here");
    }
    return set_;
  }

 private:
  std::shared_ptr<BudgetSet> set_;
  std::shared_ptr<RedisBudgets> shared_;
  std::shared_ptr<BudgetBackend> backend_;
  std::shared_ptr<ManualClock> clock_;
};

}  // namespace

py::list BudgetAlertList(const std::vector<AlertEvent>& alerts) { return AlertList(alerts); }

int64_t UsdToNanos(py::handle value, std::string_view what) { return UsdArg(value, what); }

Usage UsageFromPython(py::handle usage, const std::string& provider) {
  if (py::isinstance<Usage>(usage)) return usage.cast<Usage>();
  return UsageFromProvider(usage, provider);
}

py::object WrapPricing(std::shared_ptr<const PricingTable> table) {
  return py::cast(PyPricingTable(std::make_shared<PricingTable>(*table)));
}

py::object WrapBudgets(std::shared_ptr<BudgetSet> set) {
  auto b = std::make_shared<PyBudgets>();
  b->Adopt(std::move(set));
  return py::cast(b);
}

std::shared_ptr<const PricingTable> PricingOf(py::handle h) {
  return h.cast<const PyPricingTable&>().table();
}
std::shared_ptr<BudgetSet> BudgetsOf(py::handle h) { return h.cast<const PyBudgets&>().Set(); }
std::shared_ptr<ManualClock> ClockOf(py::handle h) { return h.cast<const PyClock&>().clock; }

void RegisterCost(py::module_& m) {
  py::class_<PyClock>(m, "ManualClock",
                      "A clock that moves only when told to, for tests and simulations. Times "
                      "are nanoseconds since the Unix epoch (UTC).")
      .def(py::init([](int64_t start_ns) { return PyClock{std::make_shared<ManualClock>(start_ns)}; }),
           py::arg("start_ns") = 0)
      .def_property_readonly("now_ns", [](const PyClock& c) { return c.clock->NowNs(); })
      .def(
          "advance",
          [](PyClock& c, double seconds, int64_t ns) {
            if (!(seconds >= 0) || ns < 0) ThrowInvalid("a clock only moves forward");
            c.clock->Advance(static_cast<int64_t>(seconds * 1e9) + ns);
          },
          py::arg("seconds") = 0.0, py::kw_only(), py::arg("ns") = 0)
      .def("set", [](PyClock& c, int64_t ns) { c.clock->Set(ns); }, py::arg("now_ns"));

  py::class_<Usage>(m, "Usage",
                    "Token usage of one call, normalized: six disjoint counts, each billed once.")
      .def(py::init([](int64_t input, std::optional<int64_t> cache_read, int64_t cache_write_5m,
                       int64_t cache_write_1h, int64_t output, int64_t reasoning,
                       std::optional<int64_t> cached_input) {
             // cached_input: the former name of cache_read.
             if (cache_read && cached_input) {
               ThrowInvalid("Usage: give cache_read or its former name cached_input, not both");
             }
             Usage u{input, cache_read.value_or(cached_input.value_or(0)), cache_write_5m,
                     cache_write_1h, output, reasoning};
             ThrowIfError(ValidateUsage(u));
             return u;
           }),
           py::kw_only(), py::arg("input") = 0, py::arg("cache_read") = py::none(),
           py::arg("cache_write_5m") = 0, py::arg("cache_write_1h") = 0, py::arg("output") = 0,
           py::arg("reasoning") = 0, py::arg("cached_input") = py::none())
      .def_static("parse", &UsageFromProvider, py::arg("usage"), py::arg("provider") = "auto",
                  "Normalizes a provider's usage report. provider: auto (recognise the shape), "
                  "openai, anthropic, gemini or langchain. InvalidArgumentError for a report "
                  "that fits no shape, naming its keys; never a silent zero.")
      .def_readonly("input", &Usage::input)
      .def_readonly("cache_read", &Usage::cache_read)
      .def_readonly("cached_input", &Usage::cache_read, "The former name of cache_read.")
      .def_readonly("cache_write_5m", &Usage::cache_write_5m)
      .def_readonly("cache_write_1h", &Usage::cache_write_1h)
      .def_readonly("output", &Usage::output)
      .def_readonly("reasoning", &Usage::reasoning)
      .def_property_readonly("prompt_tokens", &Usage::PromptTokens)
      .def("to_dict", &UsageDict)
      .def("__eq__", [](const Usage& a, const Usage& b) { return a == b; })
      .def("__repr__", [](const Usage& u) {
        return fmt::format(
            "Usage(input={}, cache_read={}, cache_write_5m={}, cache_write_1h={}, output={}, "
            "reasoning={})",
            u.input, u.cache_read, u.cache_write_5m, u.cache_write_1h, u.output, u.reasoning);
      });

  py::class_<PyCost>(m, "Cost", "The exact cost of one call.")
      .def_property_readonly("usd", [](const PyCost& c) { return Decimal(c.cost.total_nanousd); })
      .def_property_readonly("nanousd", [](const PyCost& c) { return c.cost.total_nanousd; })
      .def_property_readonly("model", [](const PyCost& c) { return c.cost.resolved_model; })
      .def_property_readonly("long_context_tier",
                             [](const PyCost& c) { return c.cost.long_context_tier; })
      .def_property_readonly(
          "components",
          [](const PyCost& c) {
            // Exact, in USD (fUSD scaled by 1e-15).
            auto d = [](int64_t fusd) { return ScaledDecimal(fusd, 15); };
            return py::dict("input"_a = d(c.cost.input_fusd),
                            "cache_read"_a = d(c.cost.cache_read_fusd),
                            "cache_write_5m"_a = d(c.cost.cache_write_5m_fusd),
                            "cache_write_1h"_a = d(c.cost.cache_write_1h_fusd),
                            "output"_a = d(c.cost.output_fusd),
                            "reasoning"_a = d(c.cost.reasoning_fusd));
          })
      .def("__repr__", [](const PyCost& c) {
        return fmt::format("Cost(usd={}, model='{}'{})",
                           py::str(Decimal(c.cost.total_nanousd)).cast<std::string>(),
                           c.cost.resolved_model, c.cost.long_context_tier ? ", long_context" : "");
      });

  py::class_<PyPricingTable>(m, "PricingTable", "Model prices: exact, with aliases and tiers.")
      .def_static("load", &PyPricingTable::Load, py::arg("path"),
                  "Reads a pricing table in Bastion's YAML format.")
      .def_static("from_yaml", &PyPricingTable::FromYaml, py::arg("text"),
                  py::arg("source") = "<yaml>")
      .def_static("from_litellm_json", &PyPricingTable::FromLiteLlm, py::arg("text"),
                  py::arg("source") = "<litellm>",
                  "Parses LiteLLM's model_prices_and_context_window.json text.")
      .def("merge", &PyPricingTable::Merge, py::arg("other"),
           "Adds every model of `other`, which wins on conflicts.")
      .def("resolve", &PyPricingTable::Find, py::arg("model"),
           "The table's name for `model`; NotFoundError when it has no price.")
      .def("price", &PyPricingTable::Price, py::arg("model"), py::arg("usage"),
           py::arg("provider") = "auto",
           "The cost of one call: `usage` is a Usage or a provider's usage dict (see "
           "Usage.parse).")
      .def("__contains__", &PyPricingTable::Contains)
      .def("__len__", &PyPricingTable::Size);

  py::class_<PyHold>(m, "Hold", "Money held for one call on every budget that covers it.")
      .def_property_readonly("estimate_usd",
                             [](const PyHold& h) { return Decimal(h.hold.estimate_nanousd); })
      .def_property_readonly("budgets",
                             [](const PyHold& h) {
                               py::list out;
                               for (const Reservation& r : h.hold.reservations) {
                                 out.append(py::make_tuple(r.budget_id, r.key));
                               }
                               return out;
                             })
      .def_property_readonly("downgrade_model",
                             [](const PyHold& h) -> py::object {
                               if (!h.hold.downgrade_model) return py::none();
                               return py::str(*h.hold.downgrade_model);
                             })
      .def_property_readonly("alerts", [](const PyHold& h) { return AlertList(h.hold.alerts); })
      .def("__repr__", [](const PyHold& h) {
        return fmt::format("Hold(estimate_usd={}, budgets={})",
                           py::str(Decimal(h.hold.estimate_nanousd)).cast<std::string>(),
                           h.hold.reservations.size());
      });

  py::class_<PyBudgets, std::shared_ptr<PyBudgets>>(
      m, "Budgets", "Configured budgets: reserve before a call, settle after it.")
      .def_static("open", &PyBudgets::Open, py::arg("config") = py::none(), py::kw_only(),
                  py::arg("yaml") = py::none(), py::arg("state_path") = py::none(),
                  py::arg("flush_interval") = 1.0, py::arg("clock") = py::none(),
                  py::arg("store") = "", py::arg("store_timeout") = 1.0, py::arg("worker") = "",
                  py::arg("leases") = true, py::arg("worker_ttl") = 10.0,
                  py::arg("degraded_cap") = py::none())
      .def("reserve", &PyBudgets::Reserve, py::arg("estimate_usd"), py::kw_only(),
           py::arg("user") = "", py::arg("agent") = "", py::arg("tenant") = "",
           py::arg("run") = "", py::arg("model") = "", py::arg("tool") = "",
           py::arg("tags") = std::vector<std::string>{})
      .def("settle", &PyBudgets::Settle, py::arg("hold"), py::arg("actual_usd"))
      .def("release", &PyBudgets::Release, py::arg("hold"))
      .def("usage", &PyBudgets::Usage)
      .def("usage_of", &PyBudgets::UsageOf, py::arg("budget"), py::arg("key") = "")
      .def("stats", &PyBudgets::Stats, py::arg("budget"))
      .def_property_readonly("restored", &PyBudgets::Restored)
      .def_property_readonly("ids", &PyBudgets::Ids)
      .def_property_readonly("closed", &PyBudgets::closed)
      .def("flush", &PyBudgets::Flush)
      .def("close", &PyBudgets::Close)
      .def("__enter__", [](std::shared_ptr<PyBudgets> self) { return self; })
      .def("__exit__", [](PyBudgets& self, py::args) { self.Close(); });
}

}  // namespace bastion::py_bindings
