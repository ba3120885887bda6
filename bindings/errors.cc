#include "errors.h"

#include <Python.h>

namespace py = pybind11;

namespace bastion::py_bindings {
namespace {

// Owned for the life of the interpreter (module state would be nicer, but the
// extension is never unloaded).
PyObject* g_error = nullptr;
PyObject* g_unavailable = nullptr;
PyObject* g_invalid = nullptr;
PyObject* g_not_found = nullptr;
PyObject* g_corruption = nullptr;
PyObject* g_busy = nullptr;
PyObject* g_state = nullptr;
PyObject* g_budget = nullptr;
PyObject* g_storage = nullptr;
PyObject* g_internal = nullptr;
PyObject* g_verification = nullptr;

PyObject* NewError(py::module_& m, const char* name, std::initializer_list<PyObject*> bases,
                   const char* doc) {
  py::tuple base_tuple(bases.size());
  size_t i = 0;
  for (PyObject* b : bases) base_tuple[i++] = py::reinterpret_borrow<py::object>(b);
  const std::string qualified = std::string("bastion.") + name;
  PyObject* type = PyErr_NewExceptionWithDoc(qualified.c_str(), doc, base_tuple.ptr(), nullptr);
  if (type == nullptr) throw py::error_already_set();
  m.add_object(name, py::reinterpret_borrow<py::object>(type));
  return type;
}

}  // namespace

void RegisterErrors(py::module_& m) {
  g_error = NewError(m, "Error", {PyExc_Exception}, "Base class of every error Bastion raises.");
  g_invalid = NewError(m, "InvalidArgumentError", {g_error, PyExc_ValueError},
                       "An argument has the right type but a wrong value (encoding, size, "
                       "range, unknown name).");
  g_not_found = NewError(m, "NotFoundError", {g_error, PyExc_LookupError},
                         "What was asked for does not exist (a ledger path, a record).");
  g_corruption = NewError(m, "CorruptionError", {g_error},
                          "Stored data is damaged or was tampered with.");
  g_busy = NewError(m, "BusyError", {g_error},
                    "The resource is held by someone else, e.g. a second writer on a ledger.");
  g_state = NewError(m, "StateError", {g_error},
                     "The object cannot do this in its current state (closed, read-only).");
  g_budget = NewError(m, "BudgetExceededError", {g_state},
                      "A budget refused a reservation: over its limit, halted or throttled.");
  g_storage = NewError(m, "StorageError", {g_error, PyExc_OSError},
                       "The file system or the store failed.");
  g_internal = NewError(m, "InternalError", {g_error}, "An internal invariant did not hold.");
  g_unavailable = NewError(m, "UnavailableError", {g_error, PyExc_ConnectionError},
                           "A shared store (Redis) could not be reached within its timeout; "
                           "the call was refused (fail closed).");
  g_verification = NewError(m, "VerificationError", {g_error},
                            "Evidence does not verify: a signature is missing, forged or does "
                            "not match, or a signed note or checkpoint is malformed.");
}

namespace {
[[noreturn]] void Raise(PyObject* type, const Status& s) {
  // Messages may quote stored bytes; never let a decoding error mask the real one.
  PyObject* msg = PyUnicode_DecodeUTF8(s.message().data(), s.message().size(), "replace");
  PyErr_SetObject(type, msg);
  Py_XDECREF(msg);
  throw py::error_already_set();
}
}  // namespace

void ThrowBudgetStatus(const Status& s, const std::string& budget_id) {
  if (!s.IsFailedPrecondition()) ThrowStatus(s);
  PyObject* msg = PyUnicode_DecodeUTF8(s.message().data(), s.message().size(), "replace");
  PyObject* exc = msg ? PyObject_CallOneArg(g_budget, msg) : nullptr;
  Py_XDECREF(msg);
  if (exc == nullptr) throw py::error_already_set();
  PyObject* id = PyUnicode_DecodeUTF8(budget_id.data(), budget_id.size(), "replace");
  if (id == nullptr || PyObject_SetAttrString(exc, "budget", id) != 0) {
    Py_XDECREF(id);
    Py_DECREF(exc);
    throw py::error_already_set();
  }
  Py_DECREF(id);
  PyErr_SetObject(g_budget, exc);
  Py_DECREF(exc);
  throw py::error_already_set();
}

void ThrowStatus(const Status& s) {
  PyObject* type = g_internal;
  switch (s.code()) {
    case Status::Code::kInvalidArgument: type = g_invalid; break;
    case Status::Code::kNotFound: type = g_not_found; break;
    case Status::Code::kCorruption: type = g_corruption; break;
    case Status::Code::kBusy: type = g_busy; break;
    case Status::Code::kFailedPrecondition: type = g_state; break;
    case Status::Code::kIOError: type = g_storage; break;
    case Status::Code::kUnavailable: type = g_unavailable; break;
    case Status::Code::kOk:
    case Status::Code::kInternal: type = g_internal; break;
  }
  Raise(type, s);
}

void ThrowVerification(const Status& s) { Raise(g_verification, s); }

void ThrowInvalid(const std::string& message) {
  ThrowStatus(Status::InvalidArgument(message));
}

}  // namespace bastion::py_bindings
