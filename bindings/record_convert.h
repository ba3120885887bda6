// Conversions between Python values and core records, done once per call.
#ifndef BASTION_BINDINGS_RECORD_CONVERT_H_
#define BASTION_BINDINGS_RECORD_CONVERT_H_

#include <string>
#include <string_view>
#include <vector>

#include <pybind11/pybind11.h>

#include "bastion/ledger.h"

namespace bastion::py_bindings {

// The str `h` as UTF-8, a view valid while `h` lives. TypeError "<what> must be
// str, got <type>", or InvalidArgumentError "<what> is not valid UTF-8 (it
// contains a lone surrogate)"; with `name`, <what> reads "<what> '<name>'".
std::string_view Utf8View(pybind11::handle h, std::string_view what, std::string_view name = {});
inline std::string Utf8String(pybind11::handle h, std::string_view what,
                              std::string_view name = {}) {
  return std::string(Utf8View(h, what, name));
}

// Builds a Record from a mapping (or None) plus keyword fields. Unknown field
// names, wrong types and out-of-range numbers raise TypeError or
// InvalidArgumentError naming the field.
Record RecordFromPython(pybind11::handle mapping, pybind11::handle kwargs);

// As RecordFromPython, for a vectorcall: the keyword arguments are the names
// in `kwnames` (a tuple, or nullptr for none) with their values at `values`,
// converted in one pass without building a dict. The keyword named
// `reserved` (e.g. "durability") is not a field: its value goes to
// *reserved_value (left alone when absent).
Record RecordFromCall(pybind11::handle mapping, PyObject* const* values, PyObject* kwnames,
                      std::string_view reserved, pybind11::handle* reserved_value);

// A stored record as a plain dict: every field present (None when unset).
pybind11::dict StoredRecordToDict(const StoredRecord& r);

// Columns (name -> numpy array) for a DataFrame or Arrow table, built without
// intermediate dicts. Repeated strings share one Python object per column.
pybind11::dict EncodedToColumns(const std::vector<std::string>& encoded);

// USD amount (int, float, Decimal or numeric str) -> exact nano-USD.
int64_t CostToNanos(pybind11::handle value);

// int (ns since the epoch) or datetime (naive means UTC) -> ns.
int64_t TimeToNanos(pybind11::handle value, const char* what);

}  // namespace bastion::py_bindings

#endif  // BASTION_BINDINGS_RECORD_CONVERT_H_
