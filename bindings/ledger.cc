// bastion._core.Ledger, QueryResult and VerifyReport.
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <optional>
#include <thread>

#include <fmt/format.h>
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bastion/ledger.h"
#include "bastion/merkle.h"
#include "errors.h"
#include "evidence.h"
#include "record_convert.h"

namespace py = pybind11;

namespace bastion::py_bindings {
namespace {

Durability ParseDurability(py::handle value, Durability fallback) {
  if (value.is_none()) return fallback;
  if (!PyUnicode_Check(value.ptr())) {
    throw py::type_error(fmt::format("durability must be 'sync', 'group' or 'async', got {}",
                                     Py_TYPE(value.ptr())->tp_name));
  }
  const std::string name = value.cast<std::string>();
  auto d = DurabilityFromName(name);
  if (!d) ThrowInvalid(fmt::format("durability '{}' is not one of 'sync', 'group', 'async'", name));
  return *d;
}

// A 32-byte hash given as bytes: TypeError for another type, ValueError
// (InvalidArgumentError) for another length; `what` names the argument.
Hash HashArg(py::handle value, const std::string& what) {
  if (!PyBytes_Check(value.ptr())) {
    throw py::type_error(fmt::format("{} must be bytes (a 32-byte SHA-256 hash), got {}", what,
                                     Py_TYPE(value.ptr())->tp_name));
  }
  const Py_ssize_t n = PyBytes_GET_SIZE(value.ptr());
  if (n != 32) ThrowInvalid(fmt::format("{} must be 32 bytes, got {}", what, n));
  Hash h;
  std::memcpy(h.data(), PyBytes_AS_STRING(value.ptr()), 32);
  return h;
}

py::bytes HashBytes(const Hash& h) {
  return py::bytes(reinterpret_cast<const char*>(h.data()), h.size());
}

py::list HashList(const std::vector<Hash>& hashes) {
  py::list out;
  for (const Hash& h : hashes) out.append(HashBytes(h));
  return out;
}

// A proof: a list (or other sequence, not bytes) of 32-byte hashes.
std::vector<Hash> ProofArg(py::handle value) {
  if (PyBytes_Check(value.ptr()) || PyUnicode_Check(value.ptr()) ||
      !PySequence_Check(value.ptr())) {
    throw py::type_error(fmt::format("proof must be a list of 32-byte hashes (bytes), got {}",
                                     Py_TYPE(value.ptr())->tp_name));
  }
  std::vector<Hash> out;
  const py::sequence seq = py::reinterpret_borrow<py::sequence>(value);
  for (size_t i = 0; i < seq.size(); ++i) out.push_back(HashArg(seq[i], fmt::format("proof[{}]", i)));
  return out;
}

// A size or sequence number: a non-negative int (not bool).
uint64_t SizeArg(py::handle value, const char* what) {
  if (!PyLong_Check(value.ptr()) || PyBool_Check(value.ptr())) {
    throw py::type_error(
        fmt::format("{} must be int, got {}", what, Py_TYPE(value.ptr())->tp_name));
  }
  const unsigned long long v = PyLong_AsUnsignedLongLong(value.ptr());
  if (v == static_cast<unsigned long long>(-1) && PyErr_Occurred()) {
    PyErr_Clear();
    ThrowInvalid(fmt::format("{} must be between 0 and 2**64 - 1", what));
  }
  return v;
}

std::optional<uint64_t> OptionalSizeArg(py::handle value, const char* what) {
  if (value.is_none()) return std::nullopt;
  return SizeArg(value, what);
}

class PyQueryResult {
 public:
  explicit PyQueryResult(QueryResult r) : r_(std::move(r)) {}
  size_t size() const { return r_.encoded.size(); }
  py::dict At(py::ssize_t i) const {
    const auto n = static_cast<py::ssize_t>(size());
    if (i < 0) i += n;
    if (i < 0 || i >= n) throw py::index_error("query result index out of range");
    auto rec = DecodeStoredRecord(r_.encoded[static_cast<size_t>(i)]);
    StoredRecord stored = Unwrap(std::move(rec));
    if (!r_.shards.empty()) stored.shard = r_.shards[static_cast<size_t>(i)];
    return StoredRecordToDict(stored);
  }
  py::list Slice(const py::slice& s) const {
    size_t start, stop, step, len;
    if (!s.compute(size(), &start, &stop, &step, &len)) throw py::error_already_set();
    py::list out;
    for (size_t k = 0; k < len; ++k) out.append(At(static_cast<py::ssize_t>(start + k * step)));
    return out;
  }
  py::object NextCursor() const {
    return r_.next_cursor.empty() ? py::none() : py::object(py::str(r_.next_cursor));
  }
  // The columns of EncodedToColumns, and "shard": one str per record ("" for
  // the main shard and for a ledger without shards).
  py::dict Columns() const {
    py::dict cols = EncodedToColumns(r_.encoded);
    py::list shards(size());
    std::map<std::string_view, py::str> names;  // one object per shard name
    const py::str main_shard("");
    for (size_t i = 0; i < size(); ++i) {
      if (r_.shards.empty() || r_.shards[i].empty()) {
        shards[i] = main_shard;
        continue;
      }
      auto [it, fresh] = names.try_emplace(r_.shards[i]);
      if (fresh) it->second = py::str(r_.shards[i]);
      shards[i] = it->second;
    }
    cols["shard"] = shards;
    return cols;
  }

 private:
  QueryResult r_;
};

// iter(QueryResult): its records as dicts, in order, decoded one at a time.
class PyQueryResultIterator {
 public:
  explicit PyQueryResultIterator(py::object result)
      : owner_(std::move(result)), result_(owner_.cast<const PyQueryResult*>()) {}
  py::dict Next() {
    if (next_ >= result_->size()) throw py::stop_iteration();
    return result_->At(static_cast<py::ssize_t>(next_++));
  }

 private:
  py::object owner_;  // keeps the result alive
  const PyQueryResult* result_;
  size_t next_ = 0;
};

// range(first, first + n): the sequence numbers of an append_many.
py::object SeqRange(uint64_t first, size_t n) {
  PyObject* r = PyObject_CallFunction(reinterpret_cast<PyObject*>(&PyRange_Type), "KK",
                                      static_cast<unsigned long long>(first),
                                      static_cast<unsigned long long>(first + n));
  if (r == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(r);
}

class PyLedger {
 public:
  static RepairReport Repair(const std::string& path, bool accept_loss, py::object by,
                             py::object reason) {
    RepairOptions o;
    o.accept_loss = accept_loss;
    const std::pair<const char*, std::pair<py::object*, std::string*>> texts[] = {
        {"by", {&by, &o.by}}, {"reason", {&reason, &o.reason}}};
    for (const auto& [name, slot] : texts) {
      if (slot.first->is_none()) continue;
      if (!PyUnicode_Check(slot.first->ptr())) {
        throw py::type_error(fmt::format("{} must be str or None, got {}", name,
                                         Py_TYPE(slot.first->ptr())->tp_name));
      }
      *slot.second = slot.first->cast<std::string>();
    }
    Result<RepairReport> r = Status::Internal("unset");
    {
      py::gil_scoped_release release;
      r = Ledger::Repair(path, o);
    }
    return Unwrap(std::move(r));
  }

  static std::unique_ptr<PyLedger> Open(const std::string& path, bool create, py::object durability,
                                        double group_sync_interval_ms, size_t queue_capacity,
                                        bool reader, py::object signing_key,
                                        uint64_t checkpoint_every, double checkpoint_interval,
                                        py::object checkpoint_sink) {
    std::unique_ptr<Ledger> ledger;
    CheckpointSchedule schedule =
        ScheduleArgs(signing_key, checkpoint_every, checkpoint_interval, checkpoint_sink);
    if (reader && schedule.key) ThrowInvalid("a reader takes no checkpoints: drop signing_key");
    if (reader) {
      Result<std::unique_ptr<Ledger>> r = Status::Internal("unset");
      {
        py::gil_scoped_release release;
        r = Ledger::OpenReader(path);
      }
      ledger = Unwrap(std::move(r));
    } else {
      LedgerOptions o;
      o.create_if_missing = create;
      o.default_durability = ParseDurability(durability, Durability::kGroup);
      if (!(group_sync_interval_ms > 0 && group_sync_interval_ms <= 60'000)) {
        ThrowInvalid("group_sync_interval_ms must be in (0, 60000]");
      }
      o.group_sync_interval = std::chrono::milliseconds(
          std::max<int64_t>(1, static_cast<int64_t>(group_sync_interval_ms)));
      if (queue_capacity == 0) ThrowInvalid("queue_capacity must be positive");
      o.queue_capacity = queue_capacity;
      o.checkpoints = std::move(schedule);
      Result<std::unique_ptr<Ledger>> r = Status::Internal("unset");
      {
        py::gil_scoped_release release;
        r = Ledger::Open(path, o);
      }
      ledger = Unwrap(std::move(r));
    }
    auto out = std::unique_ptr<PyLedger>(new PyLedger(std::move(ledger)));
    if (!reader) out->default_durability_ = ParseDurability(durability, Durability::kGroup);
    return out;
  }

  // Ledger.append(record=None, /, *, durability=None, **fields), bound as a
  // vectorcall method: the fields arrive as names and values, converted in
  // one pass, without pybind11 matching two dozen keywords against its
  // argument list or building a dict of them.
  static PyObject* AppendCall(PyObject* self, PyObject* const* args, Py_ssize_t nargs,
                              PyObject* kwnames) {
    try {
      PyLedger& ledger = py::handle(self).cast<PyLedger&>();
      if (nargs > 1) {
        throw py::type_error(fmt::format(
            "append() takes at most 1 positional argument (a record dict), {} given", nargs));
      }
      py::handle durability = Py_None;
      Record r = RecordFromCall(nargs == 1 ? args[0] : Py_None, args + nargs, kwnames,
                                "durability", &durability);
      return py::int_(ledger.AppendRecord(std::move(r), durability)).release().ptr();
    } catch (...) {
      py::detail::try_translate_exceptions();
      return nullptr;
    }
  }

  uint64_t AppendRecord(Record r, py::handle durability) {
    const Durability d = ParseDurability(durability, default_durability());
    Result<uint64_t> seq = Status::Internal("unset");
    {
      py::gil_scoped_release release;
      seq = ledger()->Append(std::move(r), d);
    }
    return Unwrap(std::move(seq));
  }

  py::object AppendMany(py::iterable records, py::object durability) {
    std::vector<Record> batch;
    size_t i = 0;
    for (py::handle item : records) {
      try {
        batch.push_back(RecordFromPython(item, py::handle()));
      } catch (py::error_already_set& e) {
        // Same exception type as append() raises, its message prefixed with
        // the record's index (e.what() would add the type name and a traceback).
        if (e.matches(PyExc_UnicodeError)) throw;  // its constructor takes no message
        const std::string message = py::str(e.value()).cast<std::string>();
        PyErr_SetObject(e.type().ptr(),
                        py::str(fmt::format("record {} of the batch: {}", i, message)).ptr());
        throw py::error_already_set();
      } catch (py::type_error& e) {
        throw py::type_error(fmt::format("record {} of the batch: {}", i, e.what()));
      }
      ++i;
    }
    const size_t n = batch.size();
    if (n == 0) return SeqRange(0, 0);
    const Durability d = ParseDurability(durability, default_durability());
    Result<uint64_t> first = Status::Internal("unset");
    {
      py::gil_scoped_release release;
      first = ledger()->AppendBatch(std::move(batch), d);
    }
    const uint64_t f = Unwrap(std::move(first));
    return SeqRange(f, n);
  }

  // Ledger.erase / erase_report: the request from keyword arguments, each
  // type checked here and each value by the core.
  EraseReport Erase(py::object user_id, py::object seqs, py::object reason, py::object by) {
    EraseRequest request;
    if (!user_id.is_none()) {
      if (!PyUnicode_Check(user_id.ptr())) {
        throw py::type_error(fmt::format("erase: user_id must be str or None, got {}",
                                         Py_TYPE(user_id.ptr())->tp_name));
      }
      request.user_id = user_id.cast<std::string>();
    }
    if (!seqs.is_none()) {
      if (PyUnicode_Check(seqs.ptr()) || PyBytes_Check(seqs.ptr()) ||
          !py::isinstance<py::iterable>(seqs)) {
        throw py::type_error(fmt::format(
            "erase: seqs must be an iterable of int (sequence numbers), got {}",
            Py_TYPE(seqs.ptr())->tp_name));
      }
      for (py::handle item : py::iter(seqs)) {
        if (!PyLong_Check(item.ptr()) || PyBool_Check(item.ptr())) {
          throw py::type_error(fmt::format("erase: seqs must hold int, got {}",
                                           Py_TYPE(item.ptr())->tp_name));
        }
        const unsigned long long v = PyLong_AsUnsignedLongLong(item.ptr());
        if (PyErr_Occurred()) {
          PyErr_Clear();
          ThrowInvalid(fmt::format("erase: seq {} is not a sequence number (1 or more)",
                                   py::repr(item).cast<std::string>()));
        }
        request.seqs.push_back(v);
      }
    }
    const std::pair<const char*, std::pair<py::object*, std::string*>> texts[] = {
        {"reason", {&reason, &request.reason}}, {"by", {&by, &request.by}}};
    for (const auto& [name, slot] : texts) {
      if (slot.first->is_none()) {
        ThrowInvalid(fmt::format("erase: '{}' is required ({})", name,
                                 std::string_view(name) == "by" ? "who erases"
                                                                : "why the data is erased"));
      }
      if (!PyUnicode_Check(slot.first->ptr())) {
        throw py::type_error(fmt::format("erase: {} must be str, got {}", name,
                                         Py_TYPE(slot.first->ptr())->tp_name));
      }
      *slot.second = slot.first->cast<std::string>();
    }
    Result<EraseReport> r = Status::Internal("unset");
    {
      py::gil_scoped_release release;
      r = ledger()->Erase(request);
    }
    return Unwrap(std::move(r));
  }

  py::dict Get(uint64_t seq) {
    Result<StoredRecord> r = Status::Internal("unset");
    {
      py::gil_scoped_release release;
      r = ledger()->Get(seq);
    }
    return StoredRecordToDict(Unwrap(std::move(r)));
  }

  PyQueryResult Query(py::object user_id, py::object agent_id, py::object tenant_id,
                      py::object action, py::object tool, py::object effect,
                      py::object risk_level, py::object run_id, py::object trace_id,
                      py::object since, py::object until, bool newest_first,
                      std::optional<size_t> limit, py::object cursor) {
    bastion::Query q;
    const std::pair<const char*, std::pair<py::object*, std::optional<std::string>*>> eq[] = {
        {"user_id", {&user_id, &q.user_id}},   {"agent_id", {&agent_id, &q.agent_id}},
        {"tenant_id", {&tenant_id, &q.tenant_id}}, {"action", {&action, &q.action}},
        {"tool", {&tool, &q.tool}},            {"effect", {&effect, &q.effect}},
        {"risk_level", {&risk_level, &q.risk_level}}, {"run_id", {&run_id, &q.run_id}},
        {"trace_id", {&trace_id, &q.trace_id}},
    };
    for (const auto& [name, slot] : eq) {
      if (slot.first->is_none()) continue;
      if (!PyUnicode_Check(slot.first->ptr())) {
        throw py::type_error(fmt::format("query filter '{}' must be str, got {}", name,
                                         Py_TYPE(slot.first->ptr())->tp_name));
      }
      *slot.second = slot.first->cast<std::string>();
    }
    if (!since.is_none()) q.since_ns = TimeToNanos(since, "since");
    if (!until.is_none()) q.until_ns = TimeToNanos(until, "until");
    q.newest_first = newest_first;
    q.limit = limit.value_or(0);
    if (!cursor.is_none()) {
      if (!PyUnicode_Check(cursor.ptr())) throw py::type_error("cursor must be str or None");
      q.cursor = cursor.cast<std::string>();
    }
    Result<QueryResult> r = Status::Internal("unset");
    {
      py::gil_scoped_release release;
      r = ledger()->Find(q);
    }
    return PyQueryResult(Unwrap(std::move(r)));
  }

  VerifyReport Verify(std::optional<uint64_t> from_seq, std::optional<uint64_t> to_seq,
                      bool check_indexes, py::object progress, unsigned threads,
                      py::object trusted, py::object checkpoint, py::object verifier) {
    if (checkpoint.is_none() != verifier.is_none()) {
      ThrowInvalid("verify: checkpoint and verifier go together (the signed note and the "
                   "verifier key text of the key that signed it)");
    }
    std::optional<NoteVerifier> note_verifier;
    std::optional<bastion::Checkpoint> trusted_checkpoint;
    if (!checkpoint.is_none()) {
      note_verifier.emplace(Unwrap(NoteVerifier::Parse(Utf8View(verifier, "verifier"))));
      // Bad evidence is the caller's (VerificationError); what fails after
      // this is the ledger's.
      auto opened = OpenCheckpoint(Utf8View(checkpoint, "checkpoint"), *note_verifier);
      if (!opened.ok()) ThrowVerification(opened.status().WithContext("verify: the checkpoint"));
      trusted_checkpoint.emplace(std::move(opened).value());
    }
    VerifyOptions o;
    o.from_seq = from_seq;
    o.to_seq = to_seq;
    o.check_indexes = check_indexes;
    o.threads = threads;
    if (!trusted.is_none()) {
      if (!PySequence_Check(trusted.ptr()) || PyBytes_Check(trusted.ptr()) ||
          PyUnicode_Check(trusted.ptr())) {
        throw py::type_error(fmt::format(
            "trusted must be a list of (size, root) tuples, got {}",
            Py_TYPE(trusted.ptr())->tp_name));
      }
      const py::sequence heads = py::reinterpret_borrow<py::sequence>(trusted);
      for (size_t i = 0; i < heads.size(); ++i) {
        py::object item = heads[i];
        if (!PyTuple_Check(item.ptr()) || PyTuple_GET_SIZE(item.ptr()) != 2) {
          throw py::type_error(fmt::format(
              "trusted[{}] must be a (size, root) tuple, got {}", i, Py_TYPE(item.ptr())->tp_name));
        }
        const py::tuple t = py::reinterpret_borrow<py::tuple>(item);
        const std::string what = fmt::format("trusted[{}]", i);
        o.trusted.push_back(
            {SizeArg(t[0], (what + " size").c_str()), HashArg(t[1], what + " root")});
      }
    }
    // The core never throws and does not expect its callback to: any exception
    // is kept here, stops the verification, and is re-raised afterwards.
    std::exception_ptr callback_error;
    if (!progress.is_none()) {
      if (!PyCallable_Check(progress.ptr())) throw py::type_error("progress must be callable");
      o.progress = [&](uint64_t done, uint64_t total) -> bool {
        if (callback_error) return false;  // never call back after an error
        py::gil_scoped_acquire acquire;
        try {
          py::object r = progress(done, total);
          if (r.is_none()) return true;
          const int truth = PyObject_IsTrue(r.ptr());
          if (truth < 0) throw py::error_already_set();
          return truth == 1;
        } catch (...) {
          callback_error = std::current_exception();
          return false;
        }
      };
    }
    VerifyReport report;
    Status ledger_error;
    {
      py::gil_scoped_release release;
      if (trusted_checkpoint) {
        auto r = VerifyAgainstCheckpoint(*ledger(), *trusted_checkpoint, *note_verifier, o);
        if (r.ok()) report = std::move(*r); else ledger_error = r.status();
      } else {
        report = ledger()->Verify(o);
      }
    }
    if (callback_error) std::rethrow_exception(callback_error);
    if (!ledger_error.ok()) ThrowStatus(ledger_error);
    if (!report.error.ok()) ThrowStatus(report.error);
    return report;
  }

  py::dict Head() {
    Result<bastion::Head> h = Status::Internal("unset");
    {
      py::gil_scoped_release release;
      h = ledger()->GetHead();
    }
    const bastion::Head head = Unwrap(std::move(h));
    py::dict d;
    d["seq"] = head.seq;
    d["hash"] = HashToHex(head.hash);
    return d;
  }

  py::tuple TreeHead(py::object size) {
    const std::optional<uint64_t> n = OptionalSizeArg(size, "size");
    Result<bastion::TreeHead> r = Status::Internal("unset");
    {
      py::gil_scoped_release release;
      r = ledger()->TreeHeadAt(n);
    }
    const bastion::TreeHead head = Unwrap(std::move(r));
    return py::make_tuple(head.size, HashBytes(head.root));
  }

  py::list InclusionProof(py::object seq, py::object tree_size) {
    const uint64_t s = SizeArg(seq, "seq");
    const std::optional<uint64_t> n = OptionalSizeArg(tree_size, "tree_size");
    Result<std::vector<Hash>> r = Status::Internal("unset");
    {
      py::gil_scoped_release release;
      r = ledger()->InclusionProof(s, n);
    }
    return HashList(Unwrap(std::move(r)));
  }

  py::list ConsistencyProof(py::object old_size, py::object new_size) {
    const uint64_t m = SizeArg(old_size, "old_size"), n = SizeArg(new_size, "new_size");
    Result<std::vector<Hash>> r = Status::Internal("unset");
    {
      py::gil_scoped_release release;
      r = ledger()->ConsistencyProof(m, n);
    }
    return HashList(Unwrap(std::move(r)));
  }

  void PutCheckpoint(py::object size, py::object key_id, py::object note) {
    StoredCheckpoint cp;
    cp.size = SizeArg(size, "size");
    const uint64_t id = SizeArg(key_id, "key_id");
    if (id > 0xFFFFFFFFu) ThrowInvalid("key_id must fit in 32 bits");
    cp.key_id = static_cast<uint32_t>(id);
    if (!PyUnicode_Check(note.ptr())) {
      throw py::type_error(
          fmt::format("note must be str, got {}", Py_TYPE(note.ptr())->tp_name));
    }
    cp.note = note.cast<std::string>();
    Status s;
    {
      py::gil_scoped_release release;
      s = ledger()->PutCheckpoint(cp);
    }
    ThrowIfError(s);
  }

  py::list Checkpoints() {
    Result<std::vector<StoredCheckpoint>> r = Status::Internal("unset");
    {
      py::gil_scoped_release release;
      r = ledger()->Checkpoints();
    }
    py::list out;
    for (const StoredCheckpoint& cp : Unwrap(std::move(r))) {
      out.append(py::make_tuple(cp.size, cp.key_id, py::str(cp.note)));
    }
    return out;
  }

  py::dict Stats() {
    Result<LedgerStats> r = Status::Internal("unset");
    {
      py::gil_scoped_release release;
      r = ledger()->Stats();
    }
    LedgerStats s = Unwrap(std::move(r));
    py::dict d;
    d["records"] = s.records;
    d["head_seq"] = s.head.seq;
    d["head_hash"] = HashToHex(s.head.hash);
    d["first_timestamp_ns"] = s.first_timestamp_ns;
    d["last_timestamp_ns"] = s.last_timestamp_ns;
    d["disk_bytes"] = s.disk_bytes;
    d["format"] = s.format;
    d["by_action"] = s.by_action;
    d["by_effect"] = s.by_effect;
    d["by_agent"] = s.by_agent;
    d["by_shard"] = s.by_shard;
    return d;
  }

  void Refresh() {
    Status s;
    {
      py::gil_scoped_release release;
      s = ledger()->Refresh();
    }
    ThrowIfError(s);
  }

  void Flush() {
    Status s;
    {
      py::gil_scoped_release release;
      s = ledger()->Flush();
    }
    ThrowIfError(s);
  }

  void Close() {
    if (!ledger_) return;
    if (InCheckpointSink()) {
      ThrowStatus(Status::FailedPrecondition(
          "a checkpoint sink cannot close the ledger whose checkpoint it receives"));
    }
    Status s;
    {
      py::gil_scoped_release release;
      s = ledger_->Close();
    }
    closed_ = true;
    ThrowIfError(s);
  }

  // The stored values of records from_seq..to_seq, for exports that keep
  // the exact bytes; the caller pages through long ranges.
  py::list Stored(uint64_t from_seq, uint64_t to_seq) {
    std::vector<std::string> values;
    Status s;
    {
      py::gil_scoped_release release;
      s = ledger()->ScanStored(from_seq, to_seq, [&](uint64_t, std::string_view v) {
        values.emplace_back(v);
        return true;
      });
    }
    ThrowIfError(s);
    py::list out;
    for (const std::string& v : values) out.append(py::bytes(v));
    return out;
  }

  std::string Checkpoint(py::handle key) {
    std::shared_ptr<const SigningKey> k = SigningKeyArg(key, "key");
    Result<std::string> note = Status::Internal("unset");
    {
      py::gil_scoped_release release;
      note = ledger()->Checkpoint(*k);
    }
    return Unwrap(std::move(note));
  }

  // A scheduled checkpoint's sink may be Python code, run on the ledger's
  // checkpoint thread: closing (which joins that thread) must not hold the GIL.
  ~PyLedger() {
    if (!ledger_ || !Py_IsInitialized()) return;
    if (InCheckpointSink()) {
      std::thread([l = std::move(ledger_)]() mutable { l.reset(); }).detach();
      return;
    }
    if (PyGILState_Check() == 0) return;  // unique_ptr closes it without the GIL
    py::gil_scoped_release release;
    ledger_.reset();
  }

  bool closed() const { return closed_; }
  bool read_only() const { return read_only_; }
  const std::string& path() const { return path_; }
  Durability default_durability() const { return default_durability_; }

 private:
  explicit PyLedger(std::unique_ptr<Ledger> l)
      : ledger_(std::move(l)), path_(ledger_->path()), read_only_(ledger_->read_only()) {}
  Ledger* ledger() {
    // The core reports use after close; this keeps the message uniform.
    return ledger_.get();
  }

  std::unique_ptr<Ledger> ledger_;
  std::string path_;
  bool read_only_;
  bool closed_ = false;
  Durability default_durability_ = Durability::kGroup;
  friend void RegisterLedger(py::module_&);
};

}  // namespace

void RegisterLedger(py::module_& m) {
  py::class_<VerifyReport>(m, "VerifyReport",
                           "The outcome of Ledger.verify(); true when the chain is intact.")
      .def_readonly("ok", &VerifyReport::ok)
      .def_readonly("records_checked", &VerifyReport::records_checked)
      .def_readonly("bytes_checked", &VerifyReport::bytes_checked)
      .def_readonly("from_seq", &VerifyReport::from_seq)
      .def_readonly("to_seq", &VerifyReport::to_seq)
      .def_property_readonly("bad_seq",
                             [](const VerifyReport& r) -> py::object {
                               if (r.problem == VerifyProblem::kNone) return py::none();
                               return py::int_(r.bad_seq);
                             })
      .def_property_readonly("problem",
                             [](const VerifyReport& r) -> py::object {
                               if (r.problem == VerifyProblem::kNone) return py::none();
                               return py::str(std::string(VerifyProblemName(r.problem)));
                             })
      .def_readonly("message", &VerifyReport::message)
      .def_readonly("cancelled", &VerifyReport::cancelled)
      .def_readonly("shard", &VerifyReport::shard)
      .def_readonly("shards", &VerifyReport::shards)
      .def("__bool__", [](const VerifyReport& r) { return r.ok; })
      .def("__repr__", [](const VerifyReport& r) {
        if (r.ok && !r.shards.empty()) {
          return fmt::format("<VerifyReport ok: {} records in {} shards>", r.records_checked,
                             r.shards.size());
        }
        if (r.ok) return fmt::format("<VerifyReport ok: {} records ({}..{})>", r.records_checked,
                                     r.from_seq, r.to_seq);
        if (r.problem == VerifyProblem::kNone) {  // cancelled: no record is known to be bad
          return fmt::format("<VerifyReport not ok: {} ({} records checked)>", r.message,
                             r.records_checked);
        }
        return fmt::format("<VerifyReport FAILED at record {}: {}: {}>", r.bad_seq,
                           VerifyProblemName(r.problem), r.message);
      });

  py::class_<RepairReport>(m, "RepairReport",
                           "The outcome of Ledger.repair(); true when something was repaired.")
      .def_readonly("repaired", &RepairReport::repaired)
      .def_readonly("last_intact_seq", &RepairReport::last_intact_seq)
      .def_property_readonly("lost_through_seq",
                             [](const RepairReport& r) -> py::object {
                               if (r.lost_through_seq == 0) return py::none();
                               return py::int_(r.lost_through_seq);
                             })
      .def_property_readonly("repair_seq",
                             [](const RepairReport& r) -> py::object {
                               if (!r.repaired) return py::none();
                               return py::int_(r.repair_seq);
                             })
      .def_readonly("damaged_files", &RepairReport::damaged_files)
      .def_property_readonly("quarantine_path",
                             [](const RepairReport& r) -> py::object {
                               if (r.quarantine_path.empty()) return py::none();
                               return py::str(r.quarantine_path);
                             })
      .def_readonly("message", &RepairReport::message)
      .def("__bool__", [](const RepairReport& r) { return r.repaired; })
      .def("__repr__", [](const RepairReport& r) {
        if (!r.repaired) return fmt::format("<RepairReport nothing repaired: {}>", r.message);
        return fmt::format("<RepairReport repaired: kept 1..{}, repair record {}>",
                           r.last_intact_seq, r.repair_seq);
      });

  py::class_<EraseReport>(m, "EraseReport",
                          "The outcome of Ledger.erase_report(); int() is the records erased.")
      .def_readonly("erased", &EraseReport::erased)
      .def_readonly("already_erased", &EraseReport::already_erased)
      .def_readonly("erasure_seq", &EraseReport::erasure_seq)
      .def_readonly("seqs", &EraseReport::seqs)
      .def_readonly("quarantine_folders", &EraseReport::quarantine_folders)
      .def("__int__", [](const EraseReport& r) { return r.erased; })
      .def("__repr__", [](const EraseReport& r) {
        return fmt::format("<EraseReport erased {} records ({} already erased), erasure record {}>",
                           r.erased, r.already_erased, r.erasure_seq);
      });

  py::class_<PyQueryResultIterator>(m, "_QueryResultIterator")
      .def("__iter__", [](py::object self) { return self; })
      .def("__next__", &PyQueryResultIterator::Next);

  py::class_<PyQueryResult>(m, "QueryResult",
                            "Records matching a query, as dicts; see to_pandas() and to_arrow().")
      .def("__len__", &PyQueryResult::size)
      .def("__getitem__", &PyQueryResult::At, py::arg("index"))
      .def("__getitem__", &PyQueryResult::Slice, py::arg("slice"))
      .def("__iter__", [](py::object self) { return PyQueryResultIterator(std::move(self)); })
      .def_property_readonly("next_cursor", &PyQueryResult::NextCursor)
      .def("_columns", &PyQueryResult::Columns)
      .def("__repr__", [](const PyQueryResult& self) {
        return fmt::format("<QueryResult {} records{}>", self.size(),
                           self.NextCursor().is_none() ? "" : ", more available");
      });

  py::class_<PyLedger> ledger(m, "Ledger", "An append-only, hash-chained audit ledger on RocksDB.");
  ledger
      .def_static("open", &PyLedger::Open, py::arg("path"), py::kw_only(),
                  py::arg("create") = true, py::arg("durability") = py::none(),
                  py::arg("group_sync_interval_ms") = 10.0,
                  py::arg("queue_capacity") = 65536, py::arg("reader") = false,
                  py::arg("signing_key") = py::none(), py::arg("checkpoint_every") = 0,
                  py::arg("checkpoint_interval") = 0.0, py::arg("checkpoint_sink") = py::none(),
                  "Opens (creates) the ledger at `path`, or a reader following it (of every "
                  "shard at once when `path` has a shards/ folder: see docs/ledger.md, "
                  "'Sharded ledgers'). With "
                  "`signing_key` (a SigningKey or its file), the writer signs checkpoints of its "
                  "Merkle tree on close, every `checkpoint_every` records and every "
                  "`checkpoint_interval` seconds, stores them and hands each to "
                  "`checkpoint_sink` (a file path it is written to, or a callable taking the "
                  "note). See docs/evidence.md.")
      .def_static("repair", &PyLedger::Repair, py::arg("path"), py::kw_only(),
                  py::arg("accept_loss") = false, py::arg("by") = py::none(),
                  py::arg("reason") = py::none())
      .def("append_many", &PyLedger::AppendMany, py::arg("records"), py::kw_only(),
           py::arg("durability") = py::none())
      .def("get", &PyLedger::Get, py::arg("seq"))
      .def(
          "erase",
          [](PyLedger& self, py::object user_id, py::object seqs, py::object reason,
             py::object by) { return self.Erase(user_id, seqs, reason, by).erased; },
          py::kw_only(), py::arg("user_id") = py::none(), py::arg("seqs") = py::none(),
          py::arg("reason") = py::none(), py::arg("by") = py::none(),
          "Erases the personal data of the user's records and/or the listed records; returns "
          "how many were erased. See docs/ledger.md, 'Erasing personal data'.")
      .def("erase_report", &PyLedger::Erase, py::kw_only(), py::arg("user_id") = py::none(),
           py::arg("seqs") = py::none(), py::arg("reason") = py::none(),
           py::arg("by") = py::none(),
           "The same erasure as erase(), returning its EraseReport (erased, already_erased, "
           "erasure_seq, seqs, quarantine_folders).")
      .def("query", &PyLedger::Query, py::kw_only(), py::arg("user_id") = py::none(),
           py::arg("agent_id") = py::none(), py::arg("tenant_id") = py::none(),
           py::arg("action") = py::none(), py::arg("tool") = py::none(),
           py::arg("effect") = py::none(), py::arg("risk_level") = py::none(),
           py::arg("run_id") = py::none(), py::arg("trace_id") = py::none(),
           py::arg("since") = py::none(), py::arg("until") = py::none(),
           py::arg("newest_first") = true, py::arg("limit") = 100,
           py::arg("cursor") = py::none())
      .def("verify", &PyLedger::Verify, py::kw_only(), py::arg("from_seq") = py::none(),
           py::arg("to_seq") = py::none(), py::arg("check_indexes") = true,
           py::arg("progress") = py::none(), py::arg("threads") = 0,
           py::arg("trusted") = py::none(), py::arg("checkpoint") = py::none(),
           py::arg("verifier") = py::none())
      .def("checkpoint", &PyLedger::Checkpoint, py::arg("key"),
           "Signs the current Merkle tree head with `key` (a SigningKey or its file), stores "
           "the checkpoint in the ledger and returns the signed note text.")
      .def("head", &PyLedger::Head)
      .def("tree_head", &PyLedger::TreeHead, py::arg("size") = py::none())
      .def("inclusion_proof", &PyLedger::InclusionProof, py::arg("seq"),
           py::arg("tree_size") = py::none())
      .def("consistency_proof", &PyLedger::ConsistencyProof, py::arg("old_size"),
           py::arg("new_size"))
      .def("_put_checkpoint", &PyLedger::PutCheckpoint, py::arg("size"), py::arg("key_id"),
           py::arg("note"))
      .def("checkpoints", &PyLedger::Checkpoints)
      .def("stats", &PyLedger::Stats)
      .def("refresh", &PyLedger::Refresh)
      .def("flush", &PyLedger::Flush)
      .def("close", &PyLedger::Close)
      .def_property_readonly("closed", &PyLedger::closed)
      .def_property_readonly("read_only", &PyLedger::read_only)
      .def_property_readonly("path", &PyLedger::path)
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__",
           [](PyLedger& self, py::handle, py::handle, py::handle) {
             self.Close();
             return false;
           })
      .def("__repr__", [](const PyLedger& self) {
        return fmt::format("<bastion.Ledger '{}'{}{}>", self.path(),
                           self.read_only() ? " reader" : "", self.closed() ? " closed" : "");
      });
  m.def(
      "shard_path",
      [](const std::string& ledger_path, const std::string& name) {
        return Unwrap(ShardPath(ledger_path, name));
      },
      py::arg("ledger_path"), py::arg("name"),
      "The directory of shard `name` of the ledger at `ledger_path` (<ledger_path>/shards/"
      "<name>); InvalidArgumentError for a name that is not 1 to 64 bytes of [A-Za-z0-9._-] "
      "not starting with '.'.");
  m.def(
      "merkle_leaf_hash",
      [](py::handle chain_hash) { return HashBytes(MerkleLeafHash(HashArg(chain_hash, "chain_hash"))); },
      py::arg("chain_hash"),
      "SHA-256(0x00 || chain_hash): a record's leaf hash in the ledger's Merkle tree.");
  m.def(
      "verify_inclusion",
      [](py::handle seq, py::handle tree_size, py::handle leaf_hash, py::handle proof,
         py::handle root) {
        const uint64_t s = SizeArg(seq, "seq"), n = SizeArg(tree_size, "tree_size");
        const Hash leaf = HashArg(leaf_hash, "leaf_hash");
        const std::vector<Hash> p = ProofArg(proof);
        const Hash r = HashArg(root, "root");
        return s >= 1 && VerifyInclusion(s - 1, n, leaf, p, r);
      },
      py::arg("seq"), py::arg("tree_size"), py::arg("leaf_hash"), py::arg("proof"),
      py::arg("root"),
      "RFC 9162 inclusion proof check of record `seq` (1-based) in the tree of `tree_size`.");
  m.def(
      "verify_consistency",
      [](py::handle old_size, py::handle new_size, py::handle old_root, py::handle new_root,
         py::handle proof) {
        const uint64_t m = SizeArg(old_size, "old_size"), n = SizeArg(new_size, "new_size");
        const Hash a = HashArg(old_root, "old_root"), b = HashArg(new_root, "new_root");
        return VerifyConsistency(m, n, a, b, ProofArg(proof));
      },
      py::arg("old_size"), py::arg("new_size"), py::arg("old_root"), py::arg("new_root"),
      py::arg("proof"),
      "RFC 9162 consistency proof check between tree sizes old_size <= new_size.");

  static PyMethodDef append_def = {
      "append", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&PyLedger::AppendCall)),
      METH_FASTCALL | METH_KEYWORDS,
      "append(record=None, /, *, durability=None, **fields) -> int\n\n"
      "Appends one record (a dict and/or keyword fields; keywords win) and returns its\n"
      "sequence number. durability: 'sync', 'group' or 'async' (default: the ledger's)."};
  PyObject* append = PyDescr_NewMethod(reinterpret_cast<PyTypeObject*>(ledger.ptr()), &append_def);
  if (append == nullptr) throw py::error_already_set();
  ledger.attr("append") = py::reinterpret_steal<py::object>(append);
  ledger.def("_stored", &PyLedger::Stored, py::arg("from_seq"), py::arg("to_seq"),
             "The stored bytes of records from_seq..to_seq (inclusive), oldest first.");
}

}  // namespace bastion::py_bindings
