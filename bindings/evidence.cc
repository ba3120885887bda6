// Signing keys and signed checkpoints (bastion/evidence.h). Files, the
// Checkpoint value and the export live in python/bastion/evidence.py.
#include <openssl/crypto.h>

#include <cstring>
#include <memory>
#include <optional>
#include <string>

#include <fmt/format.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bastion/evidence.h"
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
  py::buffer_info info = py::reinterpret_borrow<py::buffer>(root).request();
  const size_t n = static_cast<size_t>(info.size * info.itemsize);
  if (n != 32) ThrowInvalid(fmt::format("root is {} bytes; a SHA-256 root is 32", n));
  std::memcpy(h.data(), info.ptr, 32);
  return h;
}

class PySigningKey {
 public:
  explicit PySigningKey(SigningKey key) : key_(std::move(key)) {}

  static PySigningKey Generate(py::handle name) {
    return PySigningKey(Unwrap(SigningKey::Generate(Utf8View(name, "key name"))));
  }
  static PySigningKey FromText(py::handle text) {
    return PySigningKey(Unwrap(SigningKey::FromText(Utf8View(text, "key text"))));
  }

  const std::string& name() const { return key_.name(); }
  uint32_t key_id() const { return key_.key_id(); }
  std::string verifier() const { return key_.VerifierText(); }

  std::string SignCheckpoint(uint64_t size, py::handle root) const {
    const Hash h = RootFromPython(root);
    Result<std::string> note = Status::Internal("unset");
    {
      py::gil_scoped_release release;
      note = bastion::SignCheckpoint(key_, size, h);
    }
    return Unwrap(std::move(note));
  }

  py::str Pem() const {
    std::string pem = Unwrap(key_.ToPem());
    py::str out(pem);
    OPENSSL_cleanse(pem.data(), pem.size());
    return out;
  }

 private:
  SigningKey key_;
};

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

}  // namespace

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
