// Signing keys and signed checkpoints (bastion/evidence.h). Files, the
// Checkpoint value and the export live in python/bastion/evidence.py.
#include <openssl/crypto.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <string>

#include <fmt/format.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "evidence.h"

#include "errors.h"
#include "record_convert.h"

namespace py = pybind11;

namespace bastion::py_bindings {
namespace {

// A tree root: 32 bytes (bytes, bytearray, memoryview) or 64 hex digits.
Hash RootFromPython(py::handle root) {
  Hash h{};
  if (PyUnicode_Check(root.ptr())) {
    const std::string s = Utf8String(root, "root");
    if (s.size() != 64) ThrowInvalid(fmt::format("root is {} characters; a hex root is 64", s.size()));
    for (size_t i = 0; i < 32; ++i) {
      const auto nib = [&](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        ThrowInvalid(fmt::format("root holds '{}', not a hex digit", c));
      };
      h[i] = static_cast<uint8_t>(nib(s[2 * i]) << 4 | nib(s[2 * i + 1]));
    }
    return h;
  }
  if (!PyObject_CheckBuffer(root.ptr())) {
    throw py::type_error(fmt::format("root must be bytes (32) or a hex str, got {}",
                                     Py_TYPE(root.ptr())->tp_name));
  }
  // A contiguous view only: a strided one (memoryview[::-1]) is refused
  // rather than read past or around.
  Py_buffer view;
  if (PyObject_GetBuffer(root.ptr(), &view, PyBUF_SIMPLE) != 0) throw py::error_already_set();
  const size_t n = static_cast<size_t>(view.len);
  if (n == 32) std::memcpy(h.data(), view.buf, 32);
  PyBuffer_Release(&view);
  if (n != 32) ThrowInvalid(fmt::format("root is {} bytes; a SHA-256 root is 32", n));
  return h;
}

}  // namespace

class PySigningKey {
 public:
  explicit PySigningKey(SigningKey key)
      : key_(std::make_shared<const SigningKey>(std::move(key))) {}

  static PySigningKey Generate(py::handle name) {
    return PySigningKey(Unwrap(SigningKey::Generate(Utf8View(name, "key name"))));
  }
  static PySigningKey FromText(py::handle text) {
    return PySigningKey(Unwrap(SigningKey::FromText(Utf8View(text, "key text"))));
  }

  const std::string& name() const { return key_->name(); }
  uint32_t key_id() const { return key_->key_id(); }
  std::string verifier() const { return key_->VerifierText(); }
  const std::shared_ptr<const SigningKey>& shared() const { return key_; }

  std::string SignCheckpoint(uint64_t size, py::handle root) const {
    const Hash h = RootFromPython(root);
    Result<std::string> note = Status::Internal("unset");
    {
      py::gil_scoped_release release;
      note = bastion::SignCheckpoint(*key_, size, h);
    }
    return Unwrap(std::move(note));
  }

  py::str Pem() const {
    std::string pem = Unwrap(key_->ToPem());
    py::str out(pem);
    OPENSSL_cleanse(pem.data(), pem.size());
    return out;
  }

 private:
  std::shared_ptr<const SigningKey> key_;
};

namespace {

py::tuple OpenCheckpointTuple(py::handle note, py::handle verifier_text) {
  const std::string_view text = Utf8View(note, "note");
  Result<NoteVerifier> v = NoteVerifier::Parse(Utf8View(verifier_text, "verifier"));
  if (!v.ok()) ThrowStatus(v.status());
  Result<Checkpoint> cp = Status::Internal("unset");
  {
    py::gil_scoped_release release;
    cp = OpenCheckpoint(text, *v);
  }
  if (!cp.ok()) ThrowVerification(cp.status());
  py::list ext;
  for (const std::string& e : cp->extensions) ext.append(py::str(e));
  return py::make_tuple(cp->origin, cp->size,
                        py::bytes(reinterpret_cast<const char*>(cp->root.data()), cp->root.size()),
                        cp->key_id, py::tuple(ext));
}

bool Finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing() != 0;
#else
  return _Py_IsFinalizing() != 0;
#endif
}

thread_local bool in_checkpoint_sink = false;

// A Python callable kept by the core beyond any call: released with the GIL.
struct PyCallable {
  py::object fn;
  ~PyCallable() {
    if (Py_IsInitialized() == 0 || Finalizing()) {
      fn.release();  // the interpreter is gone: leak rather than touch it
      return;
    }
    py::gil_scoped_acquire acquire;
    fn = py::object();
  }
};

// Writes `note` to `path` whole or not at all: a temporary file beside it,
// fsynced, then renamed over it.
Status WriteNoteFile(const std::string& path, const std::string& note) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return Status::IOError(fmt::format("cannot write checkpoint file '{}': {}", tmp,
                                       std::strerror(errno)));
  }
  size_t done = 0;
  while (done < note.size()) {
    const ssize_t n = ::write(fd, note.data() + done, note.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      return Status::IOError(fmt::format("cannot write checkpoint file '{}': {}", tmp,
                                         std::strerror(err)));
    }
    done += static_cast<size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  if (!synced || std::rename(tmp.c_str(), path.c_str()) != 0) {
    return Status::IOError(fmt::format("cannot write checkpoint file '{}': {}", path,
                                       std::strerror(synced ? errno : err)));
  }
  return Status::OK();
}

bool IsPath(py::handle h) {
  return PyUnicode_Check(h.ptr()) || PyObject_HasAttrString(h.ptr(), "__fspath__");
}

std::string PathString(py::handle h, const char* what) {
  py::object p = py::module_::import("os").attr("fspath")(h);
  if (!PyUnicode_Check(p.ptr())) {
    throw py::type_error(fmt::format("{} must be a str path, got bytes", what));
  }
  std::string out = p.cast<std::string>();
  if (out.empty() || out.find('\0') != std::string::npos) {
    ThrowInvalid(fmt::format("{} must be a non-empty path without NUL bytes", what));
  }
  return out;
}

}  // namespace

bool InCheckpointSink() { return in_checkpoint_sink; }

std::shared_ptr<const SigningKey> SigningKeyArg(py::handle key, const char* what) {
  if (py::isinstance<PySigningKey>(key)) return key.cast<const PySigningKey&>().shared();
  if (!IsPath(key)) {
    throw py::type_error(fmt::format("{} must be a bastion.SigningKey or a key file path, got {}",
                                     what, Py_TYPE(key.ptr())->tp_name));
  }
  const std::string path = PathString(key, what);
  // One buffer, sized once and wiped: no stream buffers keep the key.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || ::fstat(fd, &st) != 0) {
    const int err = errno;
    if (fd >= 0) ::close(fd);
    ThrowStatus(Status::NotFound(fmt::format("{}: cannot read key file '{}': {}", what, path,
                                             std::strerror(err))));
  }
  if (st.st_size > (1 << 20)) {
    ::close(fd);
    ThrowInvalid(fmt::format("{}: key file '{}' is {} bytes; a key file is a few hundred", what,
                             path, static_cast<int64_t>(st.st_size)));
  }
  std::string s(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < s.size()) {
    const ssize_t n = ::read(fd, s.data() + got, s.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  s.resize(got);
  Result<SigningKey> k = SigningKey::FromText(s);
  OPENSSL_cleanse(s.data(), s.size());
  if (!k.ok()) ThrowStatus(k.status().WithContext(fmt::format("{}: key file '{}'", what, path)));
  return std::make_shared<const SigningKey>(std::move(k).value());
}

CheckpointSchedule ScheduleArgs(py::handle signing_key, uint64_t every, double interval_seconds,
                                py::handle sink) {
  CheckpointSchedule s;
  if (!(interval_seconds >= 0 && interval_seconds <= 366.0 * 86400)) {
    ThrowInvalid("checkpoint_interval must be seconds in [0, 1 year]");
  }
  if (signing_key.is_none()) {
    if (every != 0 || interval_seconds != 0 || !sink.is_none()) {
      ThrowInvalid("checkpoint_every, checkpoint_interval and checkpoint_sink need a signing_key");
    }
    return s;
  }
  s.key = SigningKeyArg(signing_key, "signing_key");
  s.every_records = every;
  s.interval = std::chrono::milliseconds(static_cast<int64_t>(interval_seconds * 1000));
  if (interval_seconds > 0 && s.interval.count() == 0) s.interval = std::chrono::milliseconds(1);
  if (sink.is_none()) return s;
  if (IsPath(sink)) {
    std::string path = PathString(sink, "checkpoint_sink");
    s.sink = [path](const std::string& note) { return WriteNoteFile(path, note); };
  } else if (PyCallable_Check(sink.ptr())) {
    auto holder = std::make_shared<PyCallable>();
    holder->fn = py::reinterpret_borrow<py::object>(sink);
    s.sink = [holder](const std::string& note) -> Status {
      if (Finalizing()) return Status::FailedPrecondition("the Python interpreter is exiting");
      py::gil_scoped_acquire acquire;
      in_checkpoint_sink = true;
      Status out;
      try {
        holder->fn(py::str(note));
      } catch (py::error_already_set& e) {
        out = Status::Internal(fmt::format("checkpoint_sink raised {}", e.what()));
      }
      in_checkpoint_sink = false;
      return out;
    };
  } else {
    throw py::type_error(fmt::format("checkpoint_sink must be a path or a callable, got {}",
                                     Py_TYPE(sink.ptr())->tp_name));
  }
  return s;
}

void RegisterEvidence(py::module_& m) {
  py::class_<PySigningKey>(m, "SigningKey",
                           "An Ed25519 key that signs checkpoints (C2SP signed-note). Its text "
                           "form and files hold the private key; repr() never shows it.")
      .def_static("generate", &PySigningKey::Generate, py::arg("name"),
                  "A new key named `name` (non-empty, no whitespace, no '+').")
      .def_static("from_text", &PySigningKey::FromText, py::arg("text"),
                  "Reads Bastion's PEM form (SigningKey.save) or a Go signer key "
                  "'PRIVATE+KEY+<name>+<id>+<key>'.")
      .def_property_readonly("name", &PySigningKey::name)
      .def_property_readonly("key_id", &PySigningKey::key_id)
      .def_property_readonly("verifier", &PySigningKey::verifier,
                             "The public verifier key text '<name>+<id>+<key>' for auditors.")
      .def("sign_checkpoint", &PySigningKey::SignCheckpoint, py::arg("size"), py::arg("root"),
           "The signed checkpoint (C2SP tlog-checkpoint) of a tree of `size` records with "
           "root `root` (32 bytes or 64 hex digits), as note text.")
      .def("_pem", &PySigningKey::Pem)
      .def("__repr__", [](const PySigningKey& k) {
        return fmt::format("<bastion.SigningKey '{}' key_id={:08x}>", k.name(), k.key_id());
      });
  m.def("_open_checkpoint", &OpenCheckpointTuple, py::arg("note"), py::arg("verifier"));
}

}  // namespace bastion::py_bindings
