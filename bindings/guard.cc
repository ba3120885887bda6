// bastion._core.Guard, GuardedCall and CallEnd.
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <thread>

#include <fmt/format.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bastion/guard.h"
#include "convert.h"
#include "cost.h"
#include "errors.h"
#include "evidence.h"
#include "policy.h"
#include "record_convert.h"
#include "slo.h"

namespace py = pybind11;
using namespace pybind11::literals;

namespace bastion::py_bindings {
namespace {

Durability DurabilityArg(const std::string& name, const char* what) {
  auto d = DurabilityFromName(name);
  if (!d) ThrowInvalid(fmt::format("{} must be sync, group or async, got '{}'", what, name));
  return *d;
}

// Binds `def` (a METH_FASTCALL | METH_KEYWORDS function) as a method of `cls`.
void AddFastMethod(py::handle cls, PyMethodDef* def) {
  PyObject* method = PyDescr_NewMethod(reinterpret_cast<PyTypeObject*>(cls.ptr()), def);
  if (method == nullptr) throw py::error_already_set();
  cls.attr(def->ml_name) = py::reinterpret_steal<py::object>(method);
}

struct PyCallEnd {
  EndResult end;
};

class PyGuardedCall {
 public:
  PyGuardedCall(std::shared_ptr<Guard> guard, BeginResult begun, bool model_call)
      : guard_(std::move(guard)), begun_(std::move(begun)), model_call_(model_call) {}

  py::object decision() const { return WrapDecision(begun_.decision); }
  std::string effect() const { return std::string(EffectName(begun_.decision.effect)); }
  bool allowed() const {
    return begun_.decision.effect == Effect::kAllow || begun_.decision.effect == Effect::kModify;
  }
  bool needs_approval() const { return begun_.decision.effect == Effect::kRequireApproval; }

  // chunk(text) -> (stop, released text), bound as a vectorcall method: it
  // runs once per streamed chunk. The text is read in place (no copy).
  static PyObject* ChunkCall(PyObject* self, PyObject* const* args, Py_ssize_t nargs,
                             PyObject* kwnames) {
    try {
      PyGuardedCall& call = py::handle(self).cast<PyGuardedCall&>();
      const Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
      if (nargs + nkw != 1 ||
          (nkw == 1 && Utf8View(PyTuple_GET_ITEM(kwnames, 0), "a keyword") != "text")) {
        throw py::type_error("chunk() takes exactly one argument: text");
      }
      const std::string_view text = Utf8View(args[0], "chunk text");
      Result<ChunkResult> r = [&] {
        py::gil_scoped_release release;
        return call.guard_->Chunk(call.begun_.call_id, text);
      }();
      return call.Released(Unwrap(std::move(r)));
    } catch (...) {
      py::detail::try_translate_exceptions();
      return nullptr;
    }
  }

  // finish_stream() -> (stop, released text): the stream ended normally.
  py::object FinishStream() {
    Result<ChunkResult> r = [&] {
      py::gil_scoped_release release;
      return guard_->FinishStream(begun_.call_id);
    }();
    return py::reinterpret_steal<py::object>(Released(Unwrap(std::move(r))));
  }
  size_t held_bytes() const { return held_bytes_; }
  // The decision that stopped the stream, or None while it goes on.
  py::object stream_stop() const {
    return stop_decision_ ? py::object(WrapDecision(*stop_decision_)) : py::none();
  }

  // end(output="", *, usage=None, usage_provider="auto", ok=True,
  // error_class="", latency=None), bound as a vectorcall method and parsed in
  // one pass over the keywords: the call sits on every guarded call's path.
  static PyObject* EndCall(PyObject* self, PyObject* const* args, Py_ssize_t nargs,
                           PyObject* kwnames) {
    try {
      PyGuardedCall& call = py::handle(self).cast<PyGuardedCall&>();
      return py::cast(call.End(args, nargs, kwnames), py::return_value_policy::move)
          .release()
          .ptr();
    } catch (...) {
      py::detail::try_translate_exceptions();
      return nullptr;
    }
  }

  PyCallEnd End(PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    if (nargs > 1) {
      throw py::type_error(fmt::format("end() takes at most 1 positional argument ({} given)",
                                       nargs));
    }
    CallOutcome o;
    if (nargs == 1) o.output = Utf8String(args[0], "output");
    py::handle usage;
    std::string usage_provider = "auto";
    const Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < nkw; ++i) {
      const std::string_view key = Utf8View(PyTuple_GET_ITEM(kwnames, i), "a keyword");
      PyObject* v = args[nargs + i];
      if (key == "output") {
        if (nargs == 1) throw py::type_error("end() got multiple values for argument 'output'");
        o.output = Utf8String(v, "output");
      } else if (key == "usage") {
        usage = v;
      } else if (key == "usage_provider") {
        usage_provider = Utf8String(v, "usage_provider");
      } else if (key == "ok") {
        if (!PyBool_Check(v)) {
          throw py::type_error(fmt::format("ok must be bool, got {}", Py_TYPE(v)->tp_name));
        }
        o.ok = v == Py_True;
      } else if (key == "error_class") {
        o.error_class = Utf8String(v, "error_class");
      } else if (key == "memo") {
        if (v != Py_None) o.memo = Utf8String(v, "memo");
      } else if (key == "latency") {
        if (v == Py_None) continue;
        const double seconds = PyBool_Check(v) ? -1.0 : PyFloat_AsDouble(v);
        if (PyBool_Check(v) || (seconds == -1.0 && PyErr_Occurred())) {
          PyErr_Clear();
          throw py::type_error(fmt::format("latency must be a number of seconds, got {}",
                                           Py_TYPE(v)->tp_name));
        }
        if (!(seconds >= 0 && seconds < 9e9)) {
          ThrowInvalid(fmt::format("latency must be a non-negative number of seconds, got {}",
                                   seconds));
        }
        o.latency_ns = static_cast<int64_t>(seconds * 1e9);
      } else {
        throw py::type_error(fmt::format("end() got an unexpected keyword argument '{}'", key));
      }
    }
    if (usage && usage.ptr() != Py_None) o.usage = UsageFromPython(usage, usage_provider);
    Result<EndResult> r = [&] {
      py::gil_scoped_release release;
      return guard_->End(begun_.call_id, o);
    }();
    PyCallEnd out{Unwrap(std::move(r))};
    begun_.state = out.end.awaiting_approval ? CallPhase::kAwaitingReview : CallPhase::kEnded;
    return out;
  }
  void Resolve(bool approved, const std::string& by, const std::string& reason) {
    if (by.empty()) ThrowInvalid("an approval must name who decided (approved_by)");
    Result<BeginResult> r = [&] {
      py::gil_scoped_release release;
      return guard_->Approve(begun_.call_id, approved, by, reason);
    }();
    begun_ = Unwrap(std::move(r));
  }

  // The verdict on output an after_* policy held: the output to show.
  std::string ReviewOutput(bool approved, const std::string& by, const std::string& reason) {
    Result<std::string> r = [&] {
      py::gil_scoped_release release;
      return guard_->ReviewOutput(begun_.call_id, approved, by, reason);
    }();
    std::string shown = Unwrap(std::move(r));
    begun_.state = CallPhase::kEnded;
    return shown;
  }

  void Remember(std::string memo) {
    Status s;
    {
      py::gil_scoped_release release;
      s = guard_->Remember(begun_.call_id, memo);
    }
    ThrowIfError(s);
    begun_.memo = std::move(memo);
  }
  const BeginResult& begun() const { return begun_; }
  bool model_call() const { return model_call_; }

 private:
  // (stop, text) as a new reference.
  PyObject* Released(const ChunkResult& c) {
    held_bytes_ = c.held_bytes;
    if (c.stop && !stop_decision_) stop_decision_ = c.decision;
    PyObject* text = PyUnicode_DecodeUTF8(c.text.data(), static_cast<Py_ssize_t>(c.text.size()),
                                          "replace");
    if (text == nullptr) throw py::error_already_set();
    PyObject* out = PyTuple_New(2);
    if (out == nullptr) {
      Py_DECREF(text);
      throw py::error_already_set();
    }
    PyObject* stop = c.stop ? Py_True : Py_False;
    Py_INCREF(stop);
    PyTuple_SET_ITEM(out, 0, stop);
    PyTuple_SET_ITEM(out, 1, text);
    return out;
  }

  std::shared_ptr<Guard> guard_;
  BeginResult begun_;
  bool model_call_;
  size_t held_bytes_ = 0;  // after the last chunk or finish_stream
  std::optional<Decision> stop_decision_;  // once a chunk or finish_stream stopped
};

class PyGuard {
 public:
  static std::shared_ptr<PyGuard> Open(const std::string& policy_dir,
                                       std::vector<std::string> pricing_files,
                                       const std::string& budgets_file,
                                       const std::string& slos_file,
                                       const std::string& ledger_path,
                                       const std::string& state_path,
                                       double budget_flush_interval,
                                       const std::string& durability,
                                       const std::string& high_risk_durability,
                                       py::object clock, int64_t default_max_output_tokens,
                                       bool deny_unpriced_budgeted_calls,
                                       const std::string& calls_path,
                                       double idempotency_retention, py::object signing_key,
                                       uint64_t checkpoint_every, double checkpoint_interval,
                                       py::object checkpoint_sink, const std::string& store,
                                       double store_timeout, const std::string& worker,
                                       py::object store_degraded_cap,
                                       const std::string& store_file) {
    GuardOptions o;
    if (!store_file.empty()) {  // a guard directory's fleet.yaml
      o.store = Unwrap(LoadFleetYamlFile(store_file));
      o.store.worker = worker;
    } else {
      o.store = StoreArgs(store, store_timeout, worker, store_degraded_cap);
    }
    o.ledger.checkpoints =
        ScheduleArgs(signing_key, checkpoint_every, checkpoint_interval, checkpoint_sink);
    if (o.ledger.checkpoints.key && ledger_path.empty()) {
      ThrowInvalid("signing_key needs a ledger: give the guard a directory or a ledger path");
    }
    o.policy_dir = policy_dir;
    o.pricing_files = std::move(pricing_files);
    o.budgets_file = budgets_file;
    o.slos_file = slos_file;
    o.ledger_path = ledger_path;
    o.state_path = state_path;
    o.budget_flush_interval_ns = FlushIntervalNs(budget_flush_interval, "budget_flush_interval");
    o.durability = DurabilityArg(durability, "durability");
    o.high_risk_durability = DurabilityArg(high_risk_durability, "high_risk_durability");
    if (!clock.is_none()) o.clock = ClockOf(clock);
    if (default_max_output_tokens <= 0) ThrowInvalid("default_max_output_tokens must be > 0");
    o.default_max_output_tokens = default_max_output_tokens;
    o.deny_unpriced_budgeted_calls = deny_unpriced_budgeted_calls;
    o.calls_path = calls_path;
    if (!(idempotency_retention >= 0 && idempotency_retention < 9e9)) {
      ThrowInvalid(fmt::format(
          "idempotency_retention must be a non-negative number of seconds, got {}",
          idempotency_retention));
    }
    o.idempotency_retention_ns = static_cast<int64_t>(idempotency_retention * 1e9);
    Result<std::unique_ptr<Guard>> r = [&] {
      py::gil_scoped_release release;
      return Guard::Open(std::move(o));
    }();
    auto out = std::make_shared<PyGuard>();
    // Whoever drops the last reference (the _Guard, or a GuardedCall that
    // outlives it) may hold the GIL while the ledger's checkpoint thread
    // waits for it in a Python sink: the guard closes without the GIL, and
    // off that thread when dropped in the sink.
    out->guard_ = std::shared_ptr<Guard>(Unwrap(std::move(r)).release(), [](Guard* g) {
      if (InCheckpointSink()) {
        std::thread([g] { delete g; }).detach();
      } else if (Py_IsInitialized() && PyGILState_Check()) {
        py::gil_scoped_release release;
        delete g;
      } else {
        delete g;
      }
    });
    return out;
  }

  // begin_model(model, input="", **fields) / begin_tool(tool, operation="",
  // args=None, input="", **fields), bound as vectorcall methods: the
  // call's fields (as PolicyEngine.evaluate takes them) and input_tokens,
  // max_output_tokens, parent_span_id, request_id, idempotency_key, read in
  // one pass over the arguments, without a dict of them.
  template <Hook kHook>
  static PyObject* BeginCall(PyObject* self, PyObject* const* args, Py_ssize_t nargs,
                             PyObject* kwnames) {
    static constexpr std::string_view kModel[] = {"model", "input"};
    static constexpr std::string_view kTool[] = {"tool", "operation", "args", "input"};
    constexpr bool model = kHook == Hook::kBeforeModel;
    try {
      PyGuard& guard = py::handle(self).cast<PyGuard&>();
      CallRequest req;
      auto count = [](py::handle v, std::string_view what) -> std::optional<int64_t> {
        if (v.is_none()) return std::nullopt;
        return CountFromPython(v, what);
      };
      req.call = CallFromArgs(
          kHook, model ? "begin_model" : "begin_tool", args, nargs, kwnames,
          model ? std::span<const std::string_view>(kModel) : std::span<const std::string_view>(kTool),
          /*required=*/1, [&](std::string_view key, py::handle v) {
            if (key == "input_tokens") {
              req.input_tokens = count(v, key);
            } else if (key == "max_output_tokens") {
              req.max_output_tokens = count(v, key);
            } else if (key == "parent_span_id") {
              req.parent_span_id = Utf8String(v, key);
            } else if (key == "request_id") {
              req.request_id = Utf8String(v, key);
            } else if (key == "idempotency_key") {
              req.idempotency_key = Utf8String(v, key);
            } else {
              return false;
            }
            return true;
          });
      return py::cast(guard.Begin(std::move(req)), py::return_value_policy::move).release().ptr();
    } catch (...) {
      py::detail::try_translate_exceptions();
      return nullptr;
    }
  }

  PyGuardedCall Begin(CallRequest req) {
    const bool model_call = req.call.hook == Hook::kBeforeModel;
    const std::shared_ptr<Guard> g = Get();
    Result<BeginResult> r = [&] {
      py::gil_scoped_release release;
      return g->Begin(std::move(req));
    }();
    return PyGuardedCall(g, Unwrap(std::move(r)), model_call);
  }
  uint64_t AppendRecord(py::object record, py::kwargs fields) {
    Record r = RecordFromPython(record, fields);
    const std::shared_ptr<Guard> g = Get();
    Result<uint64_t> seq = [&] {
      py::gil_scoped_release release;
      return g->AppendRecord(std::move(r));
    }();
    return Unwrap(std::move(seq));
  }

  py::object budgets() {
    auto b = Get()->shared_budgets();
    return b ? WrapBudgets(std::move(b)) : py::object(py::none());
  }
  py::object slos() {
    auto s = Get()->shared_slos();
    return s ? WrapSlos(std::move(s)) : py::object(py::none());
  }
  py::object pricing() { return WrapPricing(Get()->shared_pricing()); }
  std::string policy_version() {
    PolicyEngine* e = Get()->policies();
    return e ? e->version() : std::string();
  }

  void Flush() {
    const std::shared_ptr<Guard> g = Get();
    if (g->ledger() == nullptr) return;
    Status s;
    {
      py::gil_scoped_release release;
      s = g->ledger()->Flush();
    }
    ThrowIfError(s);
  }

  void Close() {
    if (!guard_) return;
    if (InCheckpointSink()) {
      ThrowStatus(Status::FailedPrecondition(
          "a checkpoint sink cannot close the guard whose checkpoint it receives"));
    }
    Status s;
    {
      py::gil_scoped_release release;
      s = guard_->Close();
    }
    guard_.reset();
    ThrowIfError(s);
  }
  bool closed() const { return guard_ == nullptr; }

 private:
  const std::shared_ptr<Guard>& Get() const {
    if (!guard_) ThrowStatus(Status::FailedPrecondition("the Guard is closed"));
    return guard_;
  }
  std::shared_ptr<Guard> guard_;
};

}  // namespace

void RegisterGuard(py::module_& m) {
  py::class_<PyCallEnd>(m, "CallEnd", "How a guarded call ended: its output as it may be shown.")
      .def_property_readonly("decision", [](const PyCallEnd& e) { return WrapDecision(e.end.decision); })
      .def_property_readonly("output", [](const PyCallEnd& e) { return e.end.output; })
      .def_property_readonly("withheld", [](const PyCallEnd& e) { return e.end.withheld; })
      .def_property_readonly("awaiting_approval",
                             [](const PyCallEnd& e) { return e.end.awaiting_approval; })
      .def_property_readonly("held_output", [](const PyCallEnd& e) { return e.end.held_output; })
      .def_property_readonly("cost_usd",
                             [](const PyCallEnd& e) -> py::object {
                               if (!e.end.cost_nanousd) return py::none();
                               return UsdDecimal(*e.end.cost_nanousd);
                             })
      .def_property_readonly("unpriced", [](const PyCallEnd& e) { return e.end.unpriced; })
      .def_property_readonly("overshoot_usd",
                             [](const PyCallEnd& e) { return UsdDecimal(e.end.overshoot_nanousd); })
      .def_property_readonly("budget_alerts",
                             [](const PyCallEnd& e) { return BudgetAlertList(e.end.budget_alerts); })
      .def_property_readonly("slo_events",
                             [](const PyCallEnd& e) { return SloEventList(e.end.slo_events); })
      .def_property_readonly("record_seq", [](const PyCallEnd& e) { return e.end.record_seq; })
      .def("__repr__", [](const PyCallEnd& e) {
        return fmt::format("<CallEnd {}{}{}>", EffectName(e.end.decision.effect),
                           e.end.cost_nanousd ? " cost " + FormatUsd(*e.end.cost_nanousd) : "",
                           e.end.withheld ? " withheld" : "");
      });

  py::class_<PyGuardedCall> guarded_call(m, "GuardedCall", "One begun model or tool call.");
  guarded_call
      .def_property_readonly("id", [](const PyGuardedCall& c) { return c.begun().call_id; })
      .def_property_readonly("decision", &PyGuardedCall::decision)
      .def_property_readonly("effect", &PyGuardedCall::effect)
      .def_property_readonly("allowed", &PyGuardedCall::allowed)
      .def_property_readonly("needs_approval", &PyGuardedCall::needs_approval)
      .def_property_readonly("resumed", [](const PyGuardedCall& c) { return c.begun().resumed; })
      .def_property_readonly("model", [](const PyGuardedCall& c) { return c.begun().model; })
      .def_property_readonly("input", [](const PyGuardedCall& c) { return c.begun().input; })
      .def_property_readonly("trace_id", [](const PyGuardedCall& c) { return c.begun().trace_id; })
      .def_property_readonly("span_id", [](const PyGuardedCall& c) { return c.begun().span_id; })
      .def_property_readonly("estimate_usd",
                             [](const PyGuardedCall& c) { return UsdDecimal(c.begun().estimate_nanousd); })
      .def_property_readonly("budget_alerts",
                             [](const PyGuardedCall& c) { return BudgetAlertList(c.begun().budget_alerts); })
      .def_property_readonly("record_seq", [](const PyGuardedCall& c) { return c.begun().record_seq; })
      .def_property_readonly(
          "state", [](const PyGuardedCall& c) { return std::string(CallPhaseName(c.begun().state)); })
      .def_property_readonly("memo", [](const PyGuardedCall& c) { return c.begun().memo; })
      .def_property_readonly("ended",
                             [](const PyGuardedCall& c) -> py::object {
                               if (!c.begun().ended) return py::none();
                               return py::cast(PyCallEnd{*c.begun().ended});
                             })
      .def("remember", &PyGuardedCall::Remember, py::arg("memo"),
           "Keeps `memo` with the call's idempotency key: a later begin with the key "
           "(after a restart too) returns it as `memo`.")
      .def("finish_stream", &PyGuardedCall::FinishStream,
           "The stream ended: the last check, then the held text. (stop, text to show).")
      .def_property_readonly("stream_stop", &PyGuardedCall::stream_stop,
                             "The decision that stopped the stream (its reasons), or None.")
      .def_property_readonly("held_bytes", &PyGuardedCall::held_bytes,
                             "Bytes of streamed output received and not released yet.")
      .def(
          "approve",
          [](PyGuardedCall& c, const std::string& by, const std::string& reason) {
            c.Resolve(true, by, reason);
          },
          py::arg("approved_by"), py::arg("reason") = "")
      .def(
          "reject",
          [](PyGuardedCall& c, const std::string& by, const std::string& reason) {
            c.Resolve(false, by, reason);
          },
          py::arg("rejected_by"), py::arg("reason") = "")
      .def(
          "approve_output",
          [](PyGuardedCall& c, const std::string& by, const std::string& reason) {
            return c.ReviewOutput(true, by, reason);
          },
          py::arg("approved_by"), py::arg("reason") = "",
          "Releases output an after_* policy held for review; returns it.")
      .def(
          "reject_output",
          [](PyGuardedCall& c, const std::string& by, const std::string& reason) {
            return c.ReviewOutput(false, by, reason);
          },
          py::arg("rejected_by"), py::arg("reason") = "",
          "Keeps back output an after_* policy held for review; returns the notice to show.")
      .def("__repr__", [](const PyGuardedCall& c) {
        return fmt::format("<GuardedCall {} {} {}>", c.begun().call_id,
                           c.model_call() ? "model " + c.begun().model : std::string("tool"),
                           EffectName(c.begun().decision.effect));
      });

  py::class_<PyGuard, std::shared_ptr<PyGuard>> guard(m, "_Guard");
  guard
      .def_static("_open", &PyGuard::Open, py::kw_only(), py::arg("policy_dir"),
                  py::arg("pricing_files"), py::arg("budgets_file"), py::arg("slos_file"),
                  py::arg("ledger_path"), py::arg("state_path"),
                  py::arg("budget_flush_interval"), py::arg("durability"),
                  py::arg("high_risk_durability"), py::arg("clock"),
                  py::arg("default_max_output_tokens"), py::arg("deny_unpriced_budgeted_calls"),
                  py::arg("calls_path") = "", py::arg("idempotency_retention") = 86400.0,
                  py::arg("signing_key") = py::none(), py::arg("checkpoint_every") = 0,
                  py::arg("checkpoint_interval") = 0.0, py::arg("checkpoint_sink") = py::none(),
                  py::arg("store") = "", py::arg("store_timeout") = 1.0, py::arg("worker") = "",
                  py::arg("store_degraded_cap") = py::none(), py::arg("store_file") = "")
      .def("record", &PyGuard::AppendRecord, py::arg("record") = py::none())
      .def_property_readonly("budgets", &PyGuard::budgets)
      .def_property_readonly("slos", &PyGuard::slos)
      .def_property_readonly("pricing", &PyGuard::pricing)
      .def_property_readonly("policy_version", &PyGuard::policy_version)
      .def_property_readonly("closed", &PyGuard::closed)
      .def("flush", &PyGuard::Flush)
      .def("close", &PyGuard::Close);

  static PyMethodDef end_def = {
      "end", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&PyGuardedCall::EndCall)),
      METH_FASTCALL | METH_KEYWORDS,
      "end(output='', *, usage=None, usage_provider='auto', ok=True, error_class='', "
      "latency=None, memo=None) -> CallEnd\n\n"
      "after_* policies, cost, SLO record and the outcome record."};
  static PyMethodDef begin_model_def = {
      "begin_model",
      reinterpret_cast<PyCFunction>(
          reinterpret_cast<void (*)()>(&PyGuard::BeginCall<Hook::kBeforeModel>)),
      METH_FASTCALL | METH_KEYWORDS,
      "begin_model(model, input='', **fields) -> GuardedCall"};
  static PyMethodDef begin_tool_def = {
      "begin_tool",
      reinterpret_cast<PyCFunction>(
          reinterpret_cast<void (*)()>(&PyGuard::BeginCall<Hook::kBeforeTool>)),
      METH_FASTCALL | METH_KEYWORDS,
      "begin_tool(tool, operation='', args=None, input='', **fields) -> GuardedCall"};
  static PyMethodDef chunk_def = {
      "chunk",
      reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&PyGuardedCall::ChunkCall)),
      METH_FASTCALL | METH_KEYWORDS,
      "chunk(text) -> tuple[bool, str]\n\n"
      "Checks a streamed piece of output: (stop, the text that may be shown now). Text that\n"
      "could still grow into a pattern is held back until it cannot (finish_stream releases\n"
      "the rest); stop=True: a policy denied, show nothing more."};
  AddFastMethod(guarded_call, &end_def);
  AddFastMethod(guarded_call, &chunk_def);
  AddFastMethod(guard, &begin_model_def);
  AddFastMethod(guard, &begin_tool_def);
}

}  // namespace bastion::py_bindings
