#include "record_convert.h"

#include <Python.h>
#include <datetime.h>

#include <array>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <string_view>
#include <unordered_map>

#include <fmt/format.h>
#include <pybind11/numpy.h>

#include "bastion/cost.h"
#include "cost.h"
#include "errors.h"

namespace py = pybind11;

namespace bastion::py_bindings {
namespace {

// Where a field's value goes in a Record, resolved once per field.
struct Slot {
  Field field;
  FieldType type;
  std::string_view name;
  size_t offset;  // of the std::string, uint64_t or int64_t member
};

// Interned field-name strings, created once; lookups hash the key object.
struct Names {
  std::array<py::object, kFieldCount> field;
  std::array<Slot, kFieldCount> slot;
  py::dict by_name;  // str -> int(Field)
  py::object seq, hash, prev_hash, erased, shard, policy_id, message, nanosecond, utcoffset;
  Names() {
    Record probe;
    const auto offset_of = [&](const void* member) {
      return static_cast<size_t>(static_cast<const char*>(member) -
                                 reinterpret_cast<const char*>(&probe));
    };
    for (int i = 0; i < kFieldCount; ++i) {
      const Field f = static_cast<Field>(i);
      std::string_view n = FieldName(f);
      field[i] = py::reinterpret_steal<py::object>(
          PyUnicode_InternFromString(std::string(n).c_str()));
      by_name[field[i]] = py::int_(i);
      size_t offset = 0;
      switch (TypeOf(f)) {
        case FieldType::kString: offset = offset_of(StringField(probe, f)); break;
        case FieldType::kUint: offset = offset_of(UintField(probe, f)); break;
        case FieldType::kInt:
          if (IntField(probe, f) != nullptr) offset = offset_of(IntField(probe, f));
          break;
        default: break;
      }
      slot[i] = {f, TypeOf(f), n, offset};
    }
    auto intern = [](const char* s) {
      return py::reinterpret_steal<py::object>(PyUnicode_InternFromString(s));
    };
    seq = intern("seq");
    hash = intern("hash");
    prev_hash = intern("prev_hash");
    erased = intern("personal_data_erased");
    shard = intern("shard");
    policy_id = intern("policy_id");
    message = intern("message");
    nanosecond = intern("nanosecond");
    utcoffset = intern("utcoffset");
  }
};

Names& N() {
  static Names* names = new Names();  // leaked: lives as long as the interpreter
  return *names;
}

std::string TypeName(py::handle h) { return Py_TYPE(h.ptr())->tp_name; }

std::string_view Utf8(py::handle h, std::string_view field) {
  return Utf8View(h, "field", field);
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

template <typename T>
T& Member(Record& r, const Slot& s) {
  return *reinterpret_cast<T*>(reinterpret_cast<char*>(&r) + s.offset);
}

void SetField(Record& r, const Slot& slot, py::handle value) {
  const Field f = slot.field;
  const std::string_view name = slot.name;
  if (value.is_none()) {  // None means "not set", also over a value from the dict
    switch (slot.type) {
      case FieldType::kString: Member<std::string>(r, slot).clear(); return;
      case FieldType::kUint: Member<uint64_t>(r, slot) = 0; return;
      case FieldType::kInt:
        if (f == Field::kStepIndex) {
          r.step_index.reset();
        } else {
          Member<int64_t>(r, slot) = 0;
        }
        return;
      case FieldType::kReasons: r.reasons.clear(); return;
      case FieldType::kAttributes: r.attributes.clear(); return;
    }
    return;
  }
  switch (slot.type) {
    case FieldType::kString:
      Member<std::string>(r, slot).assign(Utf8(value, name));
      return;
    case FieldType::kUint:
      Member<uint64_t>(r, slot) = static_cast<uint64_t>(Int(value, name, 0));
      return;
    case FieldType::kInt:
      if (f == Field::kCostUsd) {
        r.cost_nanousd = CostToNanos(value);
      } else if (f == Field::kStepIndex) {
        r.step_index = Int(value, name, 0);
      } else if (f == Field::kTimestampNs) {
        r.timestamp_ns = TimeToNanos(value, "timestamp_ns");
      } else {
        Member<int64_t>(r, slot) = Int(value, name, 0);
      }
      return;
    case FieldType::kReasons: {
      if (!PyList_Check(value.ptr()) && !PyTuple_Check(value.ptr())) {
        throw py::type_error(fmt::format(
            "field 'reasons' must be a list of (policy_id, message) pairs or dicts, got {}",
            TypeName(value)));
      }
      r.reasons.clear();  // a keyword argument replaces the dict's reasons
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
      r.attributes.clear();  // a keyword argument replaces the dict's attributes
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
  const Names& names = N();
  PyObject* by_name = names.by_name.ptr();
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
    SetField(r, names.slot[PyLong_AsLong(index)], value);
  }
}

py::object Str(std::string_view s) {
  if (s.empty()) return py::none();
  PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace");
  if (o == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(o);
}

}  // namespace

std::string_view Utf8View(py::handle h, std::string_view what, std::string_view name) {
  auto described = [&] {
    return name.empty() ? std::string(what) : fmt::format("{} '{}'", what, name);
  };
  if (!PyUnicode_Check(h.ptr())) {
    throw py::type_error(
        fmt::format("{} must be str, got {}", described(), Py_TYPE(h.ptr())->tp_name));
  }
  Py_ssize_t size = 0;
  const char* data = PyUnicode_AsUTF8AndSize(h.ptr(), &size);
  if (data == nullptr) {
    PyErr_Clear();
    ThrowInvalid(
        fmt::format("{} is not valid UTF-8 (it contains a lone surrogate)", described()));
  }
  return {data, static_cast<size_t>(size)};
}

// The one conversion of a USD amount from Python (bindings/cost.h).
int64_t CostToNanos(py::handle value) { return UsdToNanos(value, "field 'cost_usd'"); }

namespace {

// Days from 1970-01-01 to the proleptic Gregorian date y-m-d.
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

__int128 TimedeltaNanos(PyObject* delta) {
  return (static_cast<__int128>(PyDateTime_DELTA_GET_DAYS(delta)) * 86400 +
          PyDateTime_DELTA_GET_SECONDS(delta)) *
             1'000'000'000 +
         static_cast<__int128>(PyDateTime_DELTA_GET_MICROSECONDS(delta)) * 1000;
}

}  // namespace

int64_t TimeToNanos(py::handle value, const char* what) {
  PyObject* v = value.ptr();
  if (PyLong_Check(v) && !PyBool_Check(v)) return Int(value, what, 0);
  if (PyDateTimeAPI == nullptr) {
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == nullptr) throw py::error_already_set();
  }
  __int128 ns = 0;
  if (PyDateTime_Check(v)) {
    // Naive means UTC; an aware datetime counts from its UTC offset.
    const int64_t days = DaysFromCivil(PyDateTime_GET_YEAR(v), PyDateTime_GET_MONTH(v),
                                       PyDateTime_GET_DAY(v));
    const int64_t secs = days * 86400 + PyDateTime_DATE_GET_HOUR(v) * 3600 +
                         PyDateTime_DATE_GET_MINUTE(v) * 60 + PyDateTime_DATE_GET_SECOND(v);
    ns = static_cast<__int128>(secs) * 1'000'000'000 +
         static_cast<__int128>(PyDateTime_DATE_GET_MICROSECOND(v)) * 1000;
    PyObject* tz = PyDateTime_DATE_GET_TZINFO(v);
    if (tz != Py_None) {
      py::object offset = value.attr(N().utcoffset)();
      if (!offset.is_none()) {
        if (!PyDelta_Check(offset.ptr())) {
          throw py::type_error(fmt::format("'{}': utcoffset() must return a timedelta, got {}",
                                           what, TypeName(offset)));
        }
        ns -= TimedeltaNanos(offset.ptr());
      }
    }
    if (Py_TYPE(v) != PyDateTimeAPI->DateTimeType) {  // pandas.Timestamp adds nanoseconds
      py::object extra = py::getattr(value, N().nanosecond, py::none());
      if (PyLong_Check(extra.ptr())) ns += PyLong_AsLongLong(extra.ptr());
    }
  } else if (std::string_view type = Py_TYPE(v)->tp_name;
             type.substr(type.rfind('.') + 1) == "datetime64") {  // numpy.datetime64
    py::object as_int = value.attr("astype")("datetime64[ns]").attr("astype")("int64");
    return Int(py::reinterpret_steal<py::object>(PyNumber_Long(as_int.ptr())), what, 0);
  } else {
    throw py::type_error(fmt::format(
        "'{}' must be int (ns since the epoch) or datetime, got {}", what, TypeName(value)));
  }
  if (ns < 0 || ns > INT64_MAX) {
    ThrowInvalid(fmt::format("field '{}' is out of range (0 .. 2**63-1)", what));
  }
  return static_cast<int64_t>(ns);
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

Record RecordFromCall(py::handle mapping, PyObject* const* values, PyObject* kwnames,
                      std::string_view reserved, py::handle* reserved_value) {
  Record r = RecordFromPython(mapping, py::handle());
  if (kwnames == nullptr) return r;
  const Names& names = N();
  PyObject* by_name = names.by_name.ptr();
  const Py_ssize_t n = PyTuple_GET_SIZE(kwnames);
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* key = PyTuple_GET_ITEM(kwnames, i);  // always a str
    PyObject* index = PyDict_GetItemWithError(by_name, key);
    if (index != nullptr) {
      SetField(r, names.slot[PyLong_AsLong(index)], values[i]);
      continue;
    }
    if (PyErr_Occurred()) throw py::error_already_set();
    const std::string_view name = Utf8(key, "field name");
    if (name == reserved) {
      *reserved_value = values[i];
      continue;
    }
    ThrowInvalid(fmt::format("unknown record field '{}'", name));
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
  d[n.shard] = py::str(s.shard);
  for (int i = 0; i < kFieldCount; ++i) {
    const Field f = static_cast<Field>(i);
    py::object v;
    switch (TypeOf(f)) {
      case FieldType::kString: v = Str(*StringField(r, f)); break;
      case FieldType::kUint: v = py::int_(*UintField(const_cast<Record&>(r), f)); break;
      case FieldType::kInt:
        if (f == Field::kCostUsd) {
          v = UsdDecimal(r.cost_nanousd);
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
        if (s.personal_data_erased) {  // unknown, like the other personal fields
          v = py::none();
          break;
        }
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

// Python str objects for repeated values: one object per distinct string
// (up to a bound), shared by every row that holds it. A column whose values
// are mostly distinct (span ids, summaries) stops looking them up.
class Interner {
 public:
  PyObject* Get(std::string_view s) {  // returns a new reference
    if (enabled_) {
      auto it = cache_.find(s);
      if (it != cache_.end()) {
        ++hits_;
        Py_INCREF(it->second.ptr());
        return it->second.ptr();
      }
      if (++misses_ == kProbe && hits_ < kProbe) {
        enabled_ = false;  // fewer than half the lookups hit: not worth it
        cache_.clear();
      }
    }
    PyObject* obj = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace");
    if (obj == nullptr) throw py::error_already_set();
    if (enabled_ && cache_.size() < kMaxEntries) {
      cache_.emplace(s, py::reinterpret_borrow<py::object>(obj));
    }
    return obj;
  }

 private:
  static constexpr size_t kMaxEntries = 1 << 16;
  static constexpr uint64_t kProbe = 4096;
  bool enabled_ = true;
  uint64_t hits_ = 0, misses_ = 0;
  std::unordered_map<std::string_view, py::object> cache_;
};

// One object column: a numpy object array (created full of None), filled
// slot by slot.
class ObjColumn {
 public:
  explicit ObjColumn(size_t n) : arr_(py::module_::import("numpy").attr("empty")(n, "object")) {
    data_ = static_cast<PyObject**>(py::array(arr_).mutable_data());
  }
  void Put(size_t i, PyObject* owned) {
    PyObject* old = data_[i];
    data_[i] = owned;
    Py_XDECREF(old);
  }
  void SetString(size_t i, std::string_view s) {
    if (!s.empty()) Put(i, interner_.Get(s));  // empty stays None
  }
  py::object array() const { return arr_; }

 private:
  py::object arr_;
  PyObject** data_;
  Interner interner_;
};

class ColumnVisitor final : public RecordFieldVisitor {
 public:
  explicit ColumnVisitor(size_t n) {
    for (int i = 0; i < kFieldCount; ++i) {
      const Field f = static_cast<Field>(i);
      switch (TypeOf(f)) {
        case FieldType::kString:
        case FieldType::kReasons:
        case FieldType::kAttributes:
          objs_[i] = std::make_unique<ObjColumn>(n);
          break;
        default:
          nums_[i] = py::array_t<int64_t>(n);
          std::memset(nums_[i].mutable_data(), 0, n * sizeof(int64_t));
          num_data_[i] = nums_[i].mutable_data();
      }
    }
    // step_index: -1 marks "not set" (a nullable column on the Python side).
    std::fill(num_data_[static_cast<int>(Field::kStepIndex)],
              num_data_[static_cast<int>(Field::kStepIndex)] + n, -1);
  }
  void Row(size_t row) {
    row_ = row;
    reasons_.clear();
    attributes_ = py::dict();
  }
  // Reasons become a tuple of dicts (the empty tuple is shared); attributes a
  // dict of str, or None once erased. Neither is tracked by the garbage
  // collector once built.
  void EndRow(bool erased) {
    py::tuple reasons(reasons_.size());
    for (size_t k = 0; k < reasons_.size(); ++k) reasons[k] = std::move(reasons_[k]);
    objs_[static_cast<int>(Field::kReasons)]->Put(row_, reasons.release().ptr());
    if (erased) return;  // attributes stay None
    objs_[static_cast<int>(Field::kAttributes)]->Put(row_, attributes_.release().ptr());
  }
  void OnString(Field f, std::string_view v) override {
    objs_[static_cast<int>(f)]->SetString(row_, v);
  }
  void OnUint(Field f, uint64_t v) override {
    num_data_[static_cast<int>(f)][row_] = static_cast<int64_t>(v);
  }
  void OnInt(Field f, int64_t v) override { num_data_[static_cast<int>(f)][row_] = v; }
  void OnReason(std::string_view p, std::string_view m) override {
    py::dict rd;
    rd[N().policy_id] = py::reinterpret_steal<py::object>(strings_.Get(p));
    rd[N().message] = py::reinterpret_steal<py::object>(strings_.Get(m));
    reasons_.push_back(std::move(rd));
  }
  void OnAttribute(std::string_view k, std::string_view v) override {
    py::object key = py::reinterpret_steal<py::object>(strings_.Get(k));
    py::object value = py::reinterpret_steal<py::object>(strings_.Get(v));
    if (PyDict_SetItem(attributes_.ptr(), key.ptr(), value.ptr()) != 0) {
      throw py::error_already_set();
    }
  }
  void Export(py::dict& out) {
    for (int i = 0; i < kFieldCount; ++i) {
      out[N().field[i]] = objs_[i] ? objs_[i]->array() : py::object(nums_[i]);
    }
  }

 private:
  size_t row_ = 0;
  std::vector<py::object> reasons_;
  py::dict attributes_;
  Interner strings_;  // reason and attribute texts
  std::array<std::unique_ptr<ObjColumn>, kFieldCount> objs_;
  std::array<py::array_t<int64_t>, kFieldCount> nums_;
  std::array<int64_t*, kFieldCount> num_data_{};
};

}  // namespace

// Keeps the cyclic garbage collector off while millions of containers are
// created: each of its passes would walk every object made so far.
class GcPause {
 public:
  GcPause() : was_enabled_(PyGC_Disable()) {}
  ~GcPause() {
    if (was_enabled_) PyGC_Enable();
  }

 private:
  int was_enabled_;
};

py::dict EncodedToColumns(const std::vector<std::string>& encoded) {
  GcPause gc_pause;
  const size_t n = encoded.size();
  py::array_t<uint64_t> seqs(n);
  uint64_t* seq_data = seqs.mutable_data();
  ObjColumn hashes(n);
  py::array_t<bool> erased(n);
  bool* erased_data = erased.mutable_data();
  ColumnVisitor cols(n);
  for (size_t i = 0; i < n; ++i) {
    StoredPlace place;
    cols.Row(i);
    Status s = VisitStoredRecord(encoded[i], &place, &cols);
    cols.EndRow(place.personal_data_erased);
    erased_data[i] = place.personal_data_erased;
    if (!s.ok()) ThrowStatus(s.WithContext(fmt::format("record {}", place.seq)));
    seq_data[i] = place.seq;
    const std::string hex = HashToHex(place.hash);
    hashes.Put(i, PyUnicode_FromStringAndSize(hex.data(), static_cast<Py_ssize_t>(hex.size())));
  }
  py::dict out;
  out[N().seq] = seqs;
  cols.Export(out);
  out[N().erased] = erased;
  out[N().hash] = hashes.array();
  return out;
}

}  // namespace bastion::py_bindings
