// bastion._core.PolicyEngine and Decision.
#include <memory>
#include <optional>

#include <fmt/format.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bastion/call.h"
#include "bastion/policy.h"
#include "bastion/policy_state.h"
#include "bastion/yaml.h"
#include "convert.h"
#include "cost.h"
#include "slo.h"
#include "errors.h"
#include "policy.h"
#include "record_convert.h"

namespace py = pybind11;
using namespace pybind11::literals;

namespace bastion::py_bindings {
namespace {

std::string Str(py::handle h, std::string_view field) {
  return Utf8String(h, "call field", field);
}

Value ToValue(py::handle h, const std::string& path, int depth) {
  if (depth > 64) ThrowInvalid(fmt::format("'{}' is nested more than 64 levels deep", path));
  if (std::optional<Value> scalar = ScalarFromPython(h, path, BigInt::kToDouble)) {
    return *std::move(scalar);
  }
  PyObject* o = h.ptr();
  if (PyDict_Check(o)) {
    Value::Object obj;
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(o, &pos, &k, &v)) {
      if (!PyUnicode_Check(k)) {
        throw py::type_error(fmt::format("keys of '{}' must be str, got {}", path,
                                         Py_TYPE(k)->tp_name));
      }
      std::string key = Str(k, path);
      obj.emplace_back(key, ToValue(v, path + "." + key, depth + 1));
    }
    return Value(std::move(obj));
  }
  if (PyList_Check(o) || PyTuple_Check(o)) {
    Value::Array arr;
    size_t i = 0;
    for (py::handle item : h) {
      arr.push_back(ToValue(item, fmt::format("{}[{}]", path, i++), depth + 1));
    }
    return Value(std::move(arr));
  }
  throw py::type_error(fmt::format("'{}' must be JSON-like (None, bool, int, float, str, list, "
                                   "dict), got {}",
                                   path, Py_TYPE(o)->tp_name));
}

// The names of kCallFields and kCallFieldAliases as interned str -> code (the
// field's index, plus kAliasCode for an alias): a dict's keys carry their
// hash, so finding a field is one probe. Built once, kept for the process.
constexpr long kAliasCode = 64;
static_assert(kCallFieldCount < kAliasCode, "field codes are bits of a uint64_t");

PyObject* CallFieldCodes() {
  static PyObject* codes = [] {
    PyObject* d = PyDict_New();
    auto add = [&](std::string_view name, long code) {
      PyObject* key = PyUnicode_InternFromString(std::string(name).c_str());
      PyObject* value = PyLong_FromLong(code);
      PyDict_SetItem(d, key, value);
      Py_DECREF(key);
      Py_DECREF(value);
    };
    for (int i = 0; i < kCallFieldCount; ++i) add(kCallFields[i].name, i);
    for (const CallFieldAlias& a : kCallFieldAliases) {
      add(a.alias, (FindCallField(a.name) - kCallFields) + kAliasCode);
    }
    return d;
  }();
  return codes;
}

void SetTokens(CallInfo& c, py::handle v) {
  if (!PyDict_Check(v.ptr())) throw py::type_error("call field 'tokens' must be a dict");
  PyObject *k, *count;
  Py_ssize_t pos = 0;
  while (PyDict_Next(v.ptr(), &pos, &k, &count)) {
    const std::string_view name = Utf8View(k, "tokens key");
    const TokenField* field = nullptr;
    for (const TokenField& t : kTokenFields) {
      if (t.name == name) field = &t;
    }
    if (field == nullptr) ThrowInvalid(fmt::format("unknown token count 'tokens.{}'", name));
    c.tokens.*field->member = static_cast<uint64_t>(CountFromPython(count, "token count", name));
  }
}

void SetField(CallInfo& c, const CallField& f, py::handle v) {
  switch (f.type) {
    case CallFieldType::kString:
      (c.*f.text).assign(Utf8View(v, "call field", f.name));
      return;
    case CallFieldType::kCount:
      c.*f.count = CountFromPython(v, "call field", f.name);
      return;
    case CallFieldType::kHook:
      // Parsed once, from evaluate's first argument or by begin_model /
      // begin_tool; a second spelling of it could only disagree.
      ThrowInvalid("'hook' is not a call field: it is evaluate()'s first argument "
                   "(begin_model and begin_tool set it)");
    case CallFieldType::kArgs:
      c.args = ToValue(v, "args", 0);
      return;
    case CallFieldType::kTokens:
      SetTokens(c, v);
      return;
    case CallFieldType::kAttributes:
      if (!PyDict_Check(v.ptr())) throw py::type_error("call field 'attributes' must be a dict");
      for (auto [ak, av] : py::reinterpret_borrow<py::dict>(v)) {
        c.attributes.emplace_back(Str(ak, "attributes key"), Str(av, "attributes value"));
      }
      return;
  }
}

// Reads a call's fields one (name, value) at a time: a name is a field of the
// table (or an alias of one), else `other`'s, else an error. None leaves a
// field unset.
class CallReader {
 public:
  CallReader(Hook hook, const OtherField& other) : other_(other) { c_.hook = hook; }

  void Put(PyObject* k, PyObject* v) {
    PyObject* code = PyUnicode_Check(k) ? PyDict_GetItemWithError(CallFieldCodes(), k) : nullptr;
    if (code == nullptr) {
      if (PyErr_Occurred()) throw py::error_already_set();
      const std::string_view key = Utf8View(k, "a call field name");
      if (other_ && other_(key, v)) return;
      ThrowInvalid(fmt::format("unknown call field '{}'", key));
    }
    const long n = PyLong_AS_LONG(code);
    const CallField& f = kCallFields[n % kAliasCode];
    const uint64_t bit = uint64_t{1} << (n % kAliasCode);
    if (positional_ & bit) {
      throw py::type_error(fmt::format("{}() got multiple values for argument '{}'", function_,
                                       f.name));
    }
    if (n >= kAliasCode) by_alias_ |= bit; else by_name_ |= bit;
    if (by_alias_ & by_name_ & bit) {
      std::string_view alias = Utf8View(k, "a call field name");
      for (const CallFieldAlias& a : kCallFieldAliases) {
        if (n < kAliasCode && a.name == f.name) alias = a.alias;
      }
      ThrowInvalid(fmt::format("call field '{}' is given twice (also as '{}')", f.name, alias));
    }
    if (v != Py_None) SetField(c_, f, v);
  }

  // Every item of the dict `source` (None: nothing).
  void PutDict(py::handle source) {
    if (!source || source.is_none()) return;
    if (!PyDict_Check(source.ptr())) {
      throw py::type_error(fmt::format("a call must be a dict (or keyword arguments), got {}",
                                       Py_TYPE(source.ptr())->tp_name));
    }
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(source.ptr(), &pos, &k, &v)) Put(k, v);
  }

  // Positional argument `i` of `function`, the field `f`.
  void PutPositional(const char* function, const CallField& f, PyObject* v) {
    function_ = function;
    positional_ |= uint64_t{1} << (&f - kCallFields);
    if (v != Py_None) SetField(c_, f, v);
  }

  // Whether the field `f` was given (by name, alias or position).
  bool Given(const CallField& f) const {
    return ((by_name_ | by_alias_ | positional_) >> (&f - kCallFields)) & 1;
  }

  CallInfo Take() { return std::move(c_); }

 private:
  CallInfo c_;
  const OtherField& other_;
  const char* function_ = "";
  uint64_t by_name_ = 0, by_alias_ = 0;  // bits of the fields given, by how they were named
  uint64_t positional_ = 0;
};

// One pass over each dict.
CallInfo CallFromPython(Hook hook, py::handle mapping, py::handle kwargs,
                        const OtherField& other = nullptr) {
  CallReader reader(hook, other);
  reader.PutDict(mapping);
  reader.PutDict(kwargs);
  return reader.Take();
}

py::list ReasonsList(const std::vector<Reason>& reasons) {
  py::list out;
  for (const auto& r : reasons) out.append(py::dict("policy_id"_a = r.policy_id, "message"_a = r.message));
  return out;
}

class PyDecision {
 public:
  explicit PyDecision(Decision d) : d_(std::move(d)) {}
  std::string effect() const { return std::string(EffectName(d_.effect)); }
  bool allowed() const { return d_.effect == Effect::kAllow || d_.effect == Effect::kModify; }
  py::list reasons() const { return ReasonsList(d_.reasons); }
  py::list redactions() const {
    py::list out;
    for (const auto& r : d_.redactions) {
      out.append(py::dict("target"_a = r.target, "start"_a = r.start, "end"_a = r.end,
                          "label"_a = r.label, "policy_id"_a = r.policy_id));
    }
    return out;
  }
  py::object model_downgrade() const {
    return d_.model_downgrade ? py::object(py::str(*d_.model_downgrade)) : py::none();
  }
  py::dict annotations() const {
    py::dict out;
    for (const auto& [k, v] : d_.annotations) out[py::str(k)] = py::str(v);
    return out;
  }
  py::object risk_level() const {
    return d_.risk_level.empty() ? py::none() : py::object(py::str(d_.risk_level));
  }
  py::list errors() const {
    py::list out;
    for (const auto& e : d_.errors) {
      out.append(py::dict("policy_id"_a = e.policy_id, "kind"_a = e.kind, "message"_a = e.message));
    }
    return out;
  }
  py::list explain() const {
    py::list out;
    for (const auto& o : d_.explain) {
      out.append(py::dict("policy_id"_a = o.policy_id,
                          "effect"_a = o.effect ? py::object(py::str(std::string(EffectName(*o.effect))))
                                                : py::none(),
                          "message"_a = o.message, "applied"_a = o.applied, "failed"_a = o.failed));
    }
    return out;
  }
  std::string Apply(const std::string& text, const std::string& target) const {
    return ApplyRedactions(text, d_.redactions, target);
  }
  const Decision& decision() const { return d_; }

 private:
  Decision d_;
};

class PyPolicyEngine {
 public:
  static std::unique_ptr<PyPolicyEngine> Load(const std::string& path) {
    Result<std::unique_ptr<PolicyEngine>> r = Status::Internal("unset");
    {
      py::gil_scoped_release release;
      r = PolicyEngine::Load(path);
    }
    return std::make_unique<PyPolicyEngine>(Unwrap(std::move(r)));
  }
  static std::unique_ptr<PyPolicyEngine> FromSources(
      std::vector<std::pair<std::string, std::string>> files, const std::string& bundle_yaml,
      const std::string& permissions_yaml) {
    Result<std::unique_ptr<PolicyEngine>> r = Status::Internal("unset");
    {
      py::gil_scoped_release release;
      r = PolicyEngine::FromSources(std::move(files), bundle_yaml, permissions_yaml);
    }
    return std::make_unique<PyPolicyEngine>(Unwrap(std::move(r)));
  }
  explicit PyPolicyEngine(std::unique_ptr<PolicyEngine> e) : e_(std::move(e)) {}

  void Reload(const std::string& path) {
    Status s;
    {
      py::gil_scoped_release release;
      s = e_->Reload(path);
    }
    ThrowIfError(s);
  }

  // What the budget, slo and cost helpers read; None detaches that part.
  void Attach(py::object budgets, py::object slos, py::object pricing) {
    if (budgets.is_none() && slos.is_none() && pricing.is_none()) {
      e_->SetState(nullptr);
      return;
    }
    e_->SetState(std::make_shared<LivePolicyState>(
        pricing.is_none() ? nullptr : PricingOf(pricing),
        budgets.is_none() ? nullptr : BudgetsOf(budgets),
        slos.is_none() ? nullptr : SlosOf(slos)));
  }

  PyDecision Evaluate(py::handle hook, py::handle call, py::kwargs fields) {
    CallInfo c = CallFromPython(HookFromPython(hook), call, fields);
    Decision d;
    {
      py::gil_scoped_release release;
      d = e_->Evaluate(c);
    }
    return PyDecision(std::move(d));
  }

  std::string version() const { return e_->version(); }
  std::vector<std::string> policy_ids() const { return e_->policy_ids(); }

 private:
  std::unique_ptr<PolicyEngine> e_;
};

py::object FromValue(const Value& v) {
  switch (v.type()) {
    case Value::Type::kNull: return py::none();
    case Value::Type::kBool: return py::bool_(v.as_bool());
    case Value::Type::kInt: return py::int_(v.as_int());
    case Value::Type::kDouble: return py::float_(v.as_double());
    case Value::Type::kString: return py::str(v.as_string());
    case Value::Type::kArray: {
      py::list out;
      for (const Value& item : v.as_array()) out.append(FromValue(item));
      return out;
    }
    case Value::Type::kObject: {
      py::dict out;
      for (const auto& [k, item] : v.as_object()) out[py::str(k)] = FromValue(item);
      return out;
    }
  }
  return py::none();
}

}  // namespace

Hook HookFromPython(py::handle h) {
  const std::string_view name = Utf8View(h, "hook");
  std::optional<Hook> hook = HookFromName(name);
  if (!hook) {
    ThrowInvalid(fmt::format("unknown hook '{}' (expected before_model, after_model, "
                             "before_tool, after_tool, on_chunk, on_run_start, on_run_end)",
                             name));
  }
  return *hook;
}

py::object WrapDecision(Decision d) { return py::cast(PyDecision(std::move(d))); }

CallInfo CallFromFields(Hook hook, py::handle mapping, py::handle kwargs,
                        const OtherField& other) {
  return CallFromPython(hook, mapping, kwargs, other);
}

CallInfo CallFromArgs(Hook hook, const char* function, PyObject* const* args, Py_ssize_t nargs,
                      PyObject* kwnames, std::span<const std::string_view> positional,
                      size_t required, const OtherField& other) {
  if (nargs > static_cast<Py_ssize_t>(positional.size())) {
    throw py::type_error(fmt::format("{}() takes at most {} positional arguments ({} given)",
                                     function, positional.size(), nargs));
  }
  CallReader reader(hook, other);
  for (Py_ssize_t i = 0; i < nargs; ++i) {
    reader.PutPositional(function, *FindCallField(positional[i]), args[i]);
  }
  const Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
  for (Py_ssize_t i = 0; i < nkw; ++i) reader.Put(PyTuple_GET_ITEM(kwnames, i), args[nargs + i]);
  for (size_t i = 0; i < required; ++i) {
    if (!reader.Given(*FindCallField(positional[i]))) {
      throw py::type_error(
          fmt::format("{}() missing required argument: '{}'", function, positional[i]));
    }
  }
  return reader.Take();
}

void RegisterPolicy(py::module_& m) {
  // The call schema (bastion/call.h), for the Python layers built on it.
  py::list fields, tokens, aliases;
  for (const CallField& f : kCallFields) {
    fields.append(py::make_tuple(
        f.name, f.record ? py::object(py::str(std::string(FieldName(*f.record)))) : py::none(),
        f.personal));
  }
  for (const TokenField& t : kTokenFields) {
    tokens.append(py::make_tuple(t.name, std::string(FieldName(t.record))));
  }
  for (const CallFieldAlias& a : kCallFieldAliases) aliases.append(py::make_tuple(a.alias, a.name));
  m.attr("CALL_FIELDS") = py::tuple(fields);
  m.attr("TOKEN_FIELDS") = py::tuple(tokens);
  m.attr("CALL_FIELD_ALIASES") = py::tuple(aliases);
  m.def(
      "parse_yaml",
      [](const std::string& text, const std::string& source_name) {
        return FromValue(Unwrap(ParseYamlValue(text, source_name)));
      },
      py::arg("text"), py::arg("source_name") = "<yaml>",
      "Parses YAML into plain Python values (errors name source:line:column).");
  py::class_<PyDecision>(m, "Decision", "What the policies decided about one call.")
      .def_property_readonly("effect", &PyDecision::effect)
      .def_property_readonly("allowed", &PyDecision::allowed)
      .def_property_readonly("reasons", &PyDecision::reasons)
      .def_property_readonly("redactions", &PyDecision::redactions)
      .def_property_readonly("model_downgrade", &PyDecision::model_downgrade)
      .def_property_readonly("annotations", &PyDecision::annotations)
      .def_property_readonly("risk_level", &PyDecision::risk_level)
      .def_property_readonly("errors", &PyDecision::errors)
      .def_property_readonly("explain", &PyDecision::explain)
      .def_property_readonly("policy_version",
                             [](const PyDecision& d) { return d.decision().policy_version; })
      .def("apply", &PyDecision::Apply, py::arg("text"), py::arg("target") = "output",
           "The text with this decision's redactions for `target` applied.")
      .def("__repr__", [](const PyDecision& d) {
        std::string who;
        for (const auto& r : d.decision().reasons) {
          who += (who.empty() ? "" : ", ") + r.policy_id;
        }
        return fmt::format("<Decision {}{}{}>", d.effect(), who.empty() ? "" : " by ", who);
      });

  py::class_<PyPolicyEngine>(m, "PolicyEngine", "Lua policies evaluated at every call's hooks.")
      .def_static("load", &PyPolicyEngine::Load, py::arg("path"))
      .def_static("from_sources", &PyPolicyEngine::FromSources, py::arg("files"),
                  py::kw_only(), py::arg("bundle_yaml") = "", py::arg("permissions_yaml") = "")
      .def("reload", &PyPolicyEngine::Reload, py::arg("path"))
      .def("attach", &PyPolicyEngine::Attach, py::kw_only(), py::arg("budgets") = py::none(),
           py::arg("slos") = py::none(), py::arg("pricing") = py::none(),
           "Lets policies read these budgets, SLOs and prices (budget.*, slo.*, cost.*).")
      .def("evaluate", &PyPolicyEngine::Evaluate, py::arg("hook"), py::arg("call") = py::none(),
           py::pos_only())
      .def_property_readonly("version", &PyPolicyEngine::version)
      .def_property_readonly("policy_ids", &PyPolicyEngine::policy_ids);
}

}  // namespace bastion::py_bindings
