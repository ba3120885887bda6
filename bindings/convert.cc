#include "convert.h"

#include <fmt/format.h>

#include "errors.h"
#include "record_convert.h"

namespace py = pybind11;

namespace bastion::py_bindings {

int64_t CountFromPython(py::handle h, std::string_view what, std::string_view name) {
  auto described = [&] {
    return name.empty() ? std::string(what) : fmt::format("{} '{}'", what, name);
  };
  if (!PyLong_Check(h.ptr()) || PyBool_Check(h.ptr())) {
    throw py::type_error(
        fmt::format("{} must be int, got {}", described(), Py_TYPE(h.ptr())->tp_name));
  }
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(h.ptr(), &overflow);
  if (overflow > 0) ThrowInvalid(fmt::format("{} is out of range", described()));
  if (overflow < 0 || v < 0) ThrowInvalid(fmt::format("{} must be >= 0", described()));
  return v;
}

std::optional<Value> ScalarFromPython(py::handle h, std::string_view path, BigInt big) {
  PyObject* o = h.ptr();
  if (o == Py_None) return Value();
  if (PyBool_Check(o)) return Value(o == Py_True);
  if (PyLong_Check(o)) {
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (!overflow) return Value(static_cast<int64_t>(v));
    if (big == BigInt::kToDouble) return Value(PyLong_AsDouble(o));
    ThrowInvalid(fmt::format("{} is out of range ({})", path, py::str(h).cast<std::string>()));
  }
  if (PyFloat_Check(o)) return Value(PyFloat_AS_DOUBLE(o));
  if (PyUnicode_Check(o)) return Value(std::string(Utf8View(h, path)));
  return std::nullopt;
}

}  // namespace bastion::py_bindings
