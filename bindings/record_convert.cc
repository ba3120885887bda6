#include "record_convert.h"

#include <Python.h>

#include <array>
#include <cmath>
#include <cstring>
#include <string_view>
#include <unordered_map>

#include <fmt/format.h>
#include <pybind11/numpy.h>

#include "errors.h"
#include "ledger/record_codec.h"

namespace py = pybind11;

namespace bastion::py_bindings {
namespace {

// Interned field-name strings, created once; lookups hash the key object.
struct Names {
  std::array<py::object, kFieldCount> field;
  py::dict by_name;  // str -> int(Field)
  py::object seq, hash, prev_hash, erased, policy_id, message;
  Names() {
    for (int i = 0; i < kFieldCount; ++i) {
      std::string_view n = FieldName(static_cast<Field>(i));
      field[i] = py::reinterpret_steal<py::object>(
          PyUnicode_InternFromString(std::string(n).c_str()));
      by_name[field[i]] = py::int_(i);
    }
    auto intern = [](const char* s) {
      return py::reinterpret_steal<py::object>(PyUnicode_InternFromString(s));
    };
    seq = intern("seq");
    hash = intern("hash");
    prev_hash = intern("prev_hash");
    erased = intern("personal_data_erased");
    policy_id = intern("policy_id");
    message = intern("message");
  }
};

Names& N() {
  static Names* names = new Names();  // leaked: lives as long as the interpreter
  return *names;
}

std::string TypeName(py::handle h) { return Py_TYPE(h.ptr())->tp_name; }

std::string_view Utf8(py::handle h, std::string_view field) {
  if (!PyUnicode_Check(h.ptr())) {
    throw py::type_error(fmt::format("field '{}' must be str, got {}", field, TypeName(h)));
  }
  Py_ssize_t size = 0;
  const char* data = PyUnicode_AsUTF8AndSize(h.ptr(), &size);
  if (data == nullptr) {
    PyErr_Clear();
    ThrowInvalid(fmt::format("field '{}' is not valid UTF-8 (it contains a lone surrogate)",
                             field));
  }
  return {data, static_cast<size_t>(size)};
}

int64_t Int(py::handle h, std::string_view field, int64_t lo) {
  if (!PyLong_Check(h.ptr()) || PyBool_Check(h.ptr())) {
    throw py::type_error(fmt::format("field '{}' must be int, got {}", field, TypeName(h)));
  }
  int overflow = 0;
  long long v = PyLong_AsLongLongAndOverflow(h.ptr(), &overflow);
  if (overflow != 0 || v < lo) {
    ThrowInvalid(fmt::format("field '{}' is out of range ({} .. 2**63-1)", field, lo));
  }
  return v;
}

void SetField(Record& r, Field f, py::handle value) {
  const std::string_view name = FieldName(f);
  if (value.is_none()) return;  // None means "not set"
  switch (TypeOf(f)) {
    case FieldType::kString:
      StringField(r, f)->assign(Utf8(value, name));
      return;
    case FieldType::kUint:
      *UintField(r, f) = static_cast<uint64_t>(Int(value, name, 0));
      return;
    case FieldType::kInt:
      if (f == Field::kCostUsd) {
        r.cost_nanousd = CostToNanos(value);
      } else if (f == Field::kStepIndex) {
        r.step_index = Int(value, name, 0);
      } else if (f == Field::kTimestampNs) {
        r.timestamp_ns = TimeToNanos(value, "timestamp_ns");
      } else {
        *IntField(r, f) = Int(value, name, 0);
      }
      return;
    case FieldType::kReasons: {
      if (!PyList_Check(value.ptr()) && !PyTuple_Check(value.ptr())) {
        throw py::type_error(fmt::format(
            "field 'reasons' must be a list of (policy_id, message) pairs or dicts, got {}",
            TypeName(value)));
      }
      size_t i = 0;
      for (py::handle item : value) {
        Reason reason;
        const std::string where = fmt::format("reasons[{}]", i++);
        if (PyDict_Check(item.ptr())) {
          py::dict d = py::reinterpret_borrow<py::dict>(item);
          for (auto [k, v] : d) {
            std::string_view key = Utf8(k, where);
            if (key == "policy_id") {
              reason.policy_id = Utf8(v, where + ".policy_id");
            } else if (key == "message") {
              reason.message = Utf8(v, where + ".message");
            } else {
              ThrowInvalid(fmt::format("{} has unknown key '{}' (expected policy_id, message)",
                                       where, key));
            }
          }
        } else if (PyTuple_Check(item.ptr()) && PyTuple_GET_SIZE(item.ptr()) == 2) {
          reason.policy_id = Utf8(PyTuple_GET_ITEM(item.ptr(), 0), where + ".policy_id");
          reason.message = Utf8(PyTuple_GET_ITEM(item.ptr(), 1), where + ".message");
        } else {
          throw py::type_error(fmt::format(
              "{} must be a dict or a (policy_id, message) tuple, got {}", where, TypeName(item)));
        }
        r.reasons.push_back(std::move(reason));
      }
      return;
    }
    case FieldType::kAttributes: {
      if (!PyDict_Check(value.ptr())) {
        throw py::type_error(
            fmt::format("field 'attributes' must be a dict of str to str, got {}", TypeName(value)));
      }
      for (auto [k, v] : py::reinterpret_borrow<py::dict>(value)) {
        if (!PyUnicode_Check(k.ptr())) {
          throw py::type_error(
              fmt::format("attributes keys must be str, got {}", TypeName(k)));
        }
        std::string key(Utf8(k, "attributes key"));
        if (!PyUnicode_Check(v.ptr())) {
          throw py::type_error(fmt::format("attributes['{}'] must be str, got {}", key,
                                           TypeName(v)));
        }
        std::string val(Utf8(v, fmt::format("attributes['{}']", key)));
        r.attributes.emplace_back(std::move(key), std::move(val));
      }
      return;
    }
  }
}

void ApplyMapping(Record& r, py::handle mapping, const char* what) {
  PyObject* key;
  PyObject* value;
  Py_ssize_t pos = 0;
  PyObject* by_name = N().by_name.ptr();
  while (PyDict_Next(mapping.ptr(), &pos, &key, &value)) {
    PyObject* index = PyDict_GetItemWithError(by_name, key);
    if (index == nullptr) {
      if (PyErr_Occurred()) throw py::error_already_set();
      if (!PyUnicode_Check(key)) {
        throw py::type_error(fmt::format("record keys must be str, got {}", Py_TYPE(key)->tp_name));
      }
      ThrowInvalid(fmt::format("unknown record field '{}'{}",
                               Utf8(key, "field name"), what));
    }
    SetField(r, static_cast<Field>(PyLong_AsLong(index)), value);
  }
}

py::object Str(std::string_view s) {
  if (s.empty()) return py::none();
  PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace");
  if (o == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(o);
}

}  // namespace

int64_t CostToNanos(py::handle value) {
  if (PyBool_Check(value.ptr())) throw py::type_error("field 'cost_usd' must be a number, got bool");
  if (PyLong_Check(value.ptr())) {
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(value.ptr(), &overflow);
    if (overflow || v < 0 || v > INT64_MAX / 1'000'000'000) {
      ThrowInvalid("field 'cost_usd' is out of range");
    }
    return v * 1'000'000'000;
  }
  if (PyFloat_Check(value.ptr())) {
    const double d = PyFloat_AS_DOUBLE(value.ptr());
    if (!std::isfinite(d) || d < 0 || d > 9.2e9) {
      ThrowInvalid(fmt::format("field 'cost_usd' is {}, not a finite non-negative amount", d));
    }
    return static_cast<int64_t>(std::llround(d * 1e9));
  }
  // Decimal, or a numeric string: parsed exactly, at most 9 decimal places.
  std::string text;
  if (PyUnicode_Check(value.ptr())) {
    text = std::string(Utf8(value, "cost_usd"));
  } else if (py::hasattr(value, "as_tuple")) {
    text = py::str(value).cast<std::string>();
  } else {
    throw py::type_error(fmt::format(
        "field 'cost_usd' must be int, float, Decimal or str, got {}", TypeName(value)));
  }
  int64_t whole = 0, frac = 0;
  int frac_digits = 0;
  bool dot = false, digits = false;
  for (char c : text) {
    if (c == '.' && !dot) {
      dot = true;
    } else if (c >= '0' && c <= '9') {
      digits = true;
      if (!dot) {
        if (whole > (INT64_MAX / 1'000'000'000 - 9) / 10) ThrowInvalid("field 'cost_usd' is out of range");
        whole = whole * 10 + (c - '0');
      } else if (frac_digits < 9) {
        frac = frac * 10 + (c - '0');
        ++frac_digits;
      } else if (c != '0') {
        ThrowInvalid(fmt::format("field 'cost_usd' '{}' is more precise than 1e-9 USD", text));
      }
    } else {
      ThrowInvalid(fmt::format("field 'cost_usd' '{}' is not a non-negative decimal amount", text));
    }
  }
  if (!digits) ThrowInvalid(fmt::format("field 'cost_usd' '{}' is not a decimal amount", text));
  for (int i = frac_digits; i < 9; ++i) frac *= 10;
  return whole * 1'000'000'000 + frac;
}

int64_t TimeToNanos(py::handle value, const char* what) {
  if (PyLong_Check(value.ptr()) && !PyBool_Check(value.ptr())) return Int(value, what, 0);
  static py::object to_ns = py::module_::import("bastion._convert").attr("datetime_to_ns");
  py::object ns = to_ns(value, what);
  return Int(ns, what, 0);
}

Record RecordFromPython(py::handle mapping, py::handle kwargs) {
  Record r;
  if (!mapping.is_none()) {
    if (!PyDict_Check(mapping.ptr())) {
      throw py::type_error(
          fmt::format("a record must be a dict (or keyword arguments), got {}", TypeName(mapping)));
    }
    ApplyMapping(r, mapping, "");
  }
  if (kwargs && PyDict_Check(kwargs.ptr()) && PyDict_GET_SIZE(kwargs.ptr()) > 0) {
    ApplyMapping(r, kwargs, "");
  }
  return r;
}

py::dict StoredRecordToDict(const StoredRecord& s) {
  const Names& n = N();
  const Record& r = s.record;
  py::dict d;
  d[n.seq] = py::int_(s.seq);
  d[n.hash] = py::str(HashToHex(s.hash));
  d[n.prev_hash] = py::str(HashToHex(s.prev_hash));
  d[n.erased] = py::bool_(s.personal_data_erased);
  for (int i = 0; i < kFieldCount; ++i) {
    const Field f = static_cast<Field>(i);
    py::object v;
    switch (TypeOf(f)) {
      case FieldType::kString: v = Str(*StringField(r, f)); break;
      case FieldType::kUint: v = py::int_(*UintField(const_cast<Record&>(r), f)); break;
      case FieldType::kInt:
        if (f == Field::kCostUsd) {
          v = py::float_(static_cast<double>(r.cost_nanousd) / 1e9);
        } else if (f == Field::kStepIndex) {
          v = r.step_index ? py::object(py::int_(*r.step_index)) : py::none();
        } else {
          v = py::int_(*IntField(const_cast<Record&>(r), f));
        }
        break;
      case FieldType::kReasons: {
        py::list l;
        for (const Reason& reason : r.reasons) {
          py::dict rd;
          rd[n.policy_id] = Str(reason.policy_id);
          rd[n.message] = Str(reason.message);
          l.append(rd);
        }
        v = l;
        break;
      }
      case FieldType::kAttributes: {
        py::dict a;
        for (const auto& [k, val] : r.attributes) a[Str(k)] = py::str(val);
        v = a;
        break;
      }
    }
    d[n.field[i]] = v;
  }
  return d;
}

namespace {

// One object column: a numpy object array, filled slot by slot, with repeated
// strings sharing one object.
class StrColumn {
 public:
  explicit StrColumn(size_t n) : arr_(py::module_::import("numpy").attr("empty")(n, "object")) {
    data_ = static_cast<PyObject**>(py::array(arr_).mutable_data());
  }
  void Set(size_t i, std::string_view s) {
    if (s.empty()) return;  // stays None
    PyObject* obj;
    auto it = cache_.find(s);
    if (it != cache_.end()) {
      obj = it->second.ptr();
      Py_INCREF(obj);
    } else {
      obj = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace");
      if (obj == nullptr) throw py::error_already_set();
      if (cache_.size() < kMaxCache) {
        cache_.emplace(s, py::reinterpret_borrow<py::object>(obj));
      }
    }
    Put(i, obj);
  }
  void Put(size_t i, PyObject* owned) {
    PyObject* old = data_[i];
    data_[i] = owned;
    Py_XDECREF(old);
  }
  py::object array() const { return arr_; }

 private:
  static constexpr size_t kMaxCache = 1 << 16;
  py::object arr_;
  PyObject** data_;
  std::unordered_map<std::string_view, py::object> cache_;
};

class ColumnVisitor final : public codec::FieldVisitor {
 public:
  ColumnVisitor(size_t n) {
    for (int i = 0; i < kFieldCount; ++i) {
      const Field f = static_cast<Field>(i);
      switch (TypeOf(f)) {
        case FieldType::kString:
        case FieldType::kReasons:
        case FieldType::kAttributes:
          strs_[i] = std::make_unique<StrColumn>(n);
          break;
        default:
          nums_[i] = py::array_t<int64_t>(n);
          std::memset(nums_[i].mutable_data(), 0, n * sizeof(int64_t));
          num_data_[i] = nums_[i].mutable_data();
      }
    }
    // step_index: -1 marks "not set" (converted to a nullable column in Python).
    std::fill(num_data_[static_cast<int>(Field::kStepIndex)],
              num_data_[static_cast<int>(Field::kStepIndex)] + n, -1);
  }
  void Row(size_t row) {
    row_ = row;
    reasons_ = py::list();
    attributes_ = py::dict();
  }
  void EndRow() {
    strs_[static_cast<int>(Field::kReasons)]->Put(row_, reasons_.release().ptr());
    strs_[static_cast<int>(Field::kAttributes)]->Put(row_, attributes_.release().ptr());
  }
  void OnString(Field f, std::string_view v) override { strs_[static_cast<int>(f)]->Set(row_, v); }
  void OnUint(Field f, uint64_t v) override {
    num_data_[static_cast<int>(f)][row_] = static_cast<int64_t>(v);
  }
  void OnInt(Field f, int64_t v) override { num_data_[static_cast<int>(f)][row_] = v; }
  void OnReason(std::string_view p, std::string_view m) override {
    py::dict rd;
    rd[N().policy_id] = Str(p);
    rd[N().message] = Str(m);
    reasons_.append(rd);
  }
  void OnAttribute(std::string_view k, std::string_view v) override {
    attributes_[Str(k)] = py::str(v.data(), v.size());
  }
  void Export(py::dict& out) {
    for (int i = 0; i < kFieldCount; ++i) {
      py::object name = N().field[i];
      out[name] = strs_[i] ? strs_[i]->array() : py::object(nums_[i]);
    }
  }

 private:
  size_t row_ = 0;
  py::list reasons_;
  py::dict attributes_;
  std::array<std::unique_ptr<StrColumn>, kFieldCount> strs_;
  std::array<py::array_t<int64_t>, kFieldCount> nums_;
  std::array<int64_t*, kFieldCount> num_data_{};
};

}  // namespace

py::dict EncodedToColumns(const std::vector<std::string>& encoded) {
  const size_t n = encoded.size();
  py::array_t<uint64_t> seqs(n);
  uint64_t* seq_data = seqs.mutable_data();
  StrColumn hashes(n);
  ColumnVisitor cols(n);
  for (size_t i = 0; i < n; ++i) {
    codec::ValueView view;
    Status s = codec::ParseValue(encoded[i], &view);
    cols.Row(i);
    if (s.ok()) s = codec::DecodeSection(view.body, false, &cols);
    if (s.ok() && !view.erased()) {
      s = codec::DecodeSection(view.personal.substr(codec::kSaltBytes), true, &cols);
    }
    cols.EndRow();
    if (!s.ok()) ThrowStatus(s.WithContext(fmt::format("record {}", view.seq)));
    seq_data[i] = view.seq;
    Hash h;
    std::memcpy(h.data(), view.hash.data(), 32);
    const std::string hex = HashToHex(h);
    hashes.Put(i, PyUnicode_FromStringAndSize(hex.data(), static_cast<Py_ssize_t>(hex.size())));
  }
  py::dict out;
  out[N().seq] = seqs;
  cols.Export(out);
  out[N().hash] = hashes.array();
  return out;
}

}  // namespace bastion::py_bindings
