// Checkpoints (C2SP tlog-checkpoint) inside signed notes (C2SP signed-note).
#include <algorithm>

#include <fmt/format.h>

#include "bastion/evidence.h"
#include "evidence/note_text.h"

namespace bastion {
namespace {

// Quotes a piece of a note in an error message, cut short if long.
std::string Quote(std::string_view s) {
  constexpr size_t kMax = 40;
  if (s.size() <= kMax) return fmt::format("'{}'", s);
  size_t cut = kMax;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return fmt::format("'{}...'", s.substr(0, cut));
}

Status ParseSize(std::string_view text, uint64_t* size) {
  if (text.empty()) return Status::InvalidArgument("line 2: tree size is empty");
  for (char c : text) {
    if (c < '0' || c > '9') {
      return Status::InvalidArgument(
          fmt::format("line 2: tree size {} is not a decimal number", Quote(text)));
    }
  }
  if (text.size() > 1 && text[0] == '0') {
    return Status::InvalidArgument(
        fmt::format("line 2: tree size {} has a leading zero", Quote(text)));
  }
  uint64_t v = 0;
  for (char c : text) {
    const uint64_t d = uint64_t(c - '0');
    if (v > (UINT64_MAX - d) / 10) {
      return Status::InvalidArgument(
          fmt::format("line 2: tree size {} is larger than 2^64-1", Quote(text)));
    }
    v = v * 10 + d;
  }
  *size = v;
  return Status::OK();
}

// Splits the body into lines; the body ends in "\n" (checked by the caller).
std::vector<std::string_view> Lines(std::string_view body) {
  std::vector<std::string_view> lines;
  while (!body.empty()) {
    const size_t nl = body.find('\n');
    lines.push_back(body.substr(0, nl));
    body.remove_prefix(nl + 1);
  }
  return lines;
}

}  // namespace

std::string CheckpointBody(std::string_view origin, uint64_t size, const Hash& root) {
  return fmt::format(
      "{}\n{}\n{}\n", origin, size,
      note::Base64Encode({reinterpret_cast<const char*>(root.data()), root.size()}));
}

Result<std::string> SignCheckpoint(const SigningKey& key, uint64_t size, const Hash& root) {
  return key.Sign(CheckpointBody(key.name(), size, root));
}

Result<Checkpoint> OpenCheckpoint(std::string_view note_text, const NoteVerifier& verifier) {
  // --- the signed note ---
  if (note_text.size() > kMaxSignedNoteBytes) {
    return Status::InvalidArgument(fmt::format("signed note is {} bytes, more than {}",
                                               note_text.size(), kMaxSignedNoteBytes));
  }
  if (note_text.empty()) return Status::InvalidArgument("signed note is empty");
  const std::string bad = note::CheckNoteText(note_text);
  if (!bad.empty()) return Status::InvalidArgument("signed note: " + bad);
  // The body ends at the last blank line; signature lines follow it.
  const size_t split = note_text.rfind("\n\n");
  if (split == std::string_view::npos) {
    return Status::InvalidArgument(
        "signed note has no blank line before its signatures (it is not signed)");
  }
  const std::string_view body = note_text.substr(0, split + 1);
  std::string_view sigs = note_text.substr(split + 2);
  if (sigs.empty() || sigs.back() != '\n') {
    return Status::InvalidArgument("signed note: the signature block does not end in \"\\n\"");
  }
  const size_t body_lines = static_cast<size_t>(std::count(body.begin(), body.end(), '\n'));
  size_t line_no = body_lines + 1;  // the blank line
  size_t count = 0;
  bool signed_by_verifier = false;
  std::string other_ids;  // signatures by the verifier's name under another key id
  while (!sigs.empty()) {
    ++line_no;
    const size_t nl = sigs.find('\n');
    std::string_view line = sigs.substr(0, nl);
    sigs.remove_prefix(nl + 1);
    if (++count > kMaxNoteSignatures) {
      return Status::InvalidArgument(
          fmt::format("signed note has more than {} signatures", kMaxNoteSignatures));
    }
    if (line.substr(0, note::kSigPrefix.size()) != note::kSigPrefix) {
      return Status::InvalidArgument(fmt::format(
          "signed note line {}: a signature line starts with \"\xE2\x80\x94 \" (em dash, space)",
          line_no));
    }
    line.remove_prefix(note::kSigPrefix.size());
    const size_t sp = line.find(' ');
    if (sp == std::string_view::npos) {
      return Status::InvalidArgument(fmt::format(
          "signed note line {}: expected '<key name> <signature>' after the dash", line_no));
    }
    const std::string_view name = line.substr(0, sp);
    const std::string_view sig_text = line.substr(sp + 1);
    Status name_ok = CheckKeyName(name);
    if (!name_ok.ok()) {
      return name_ok.WithContext(fmt::format("signed note line {}", line_no));
    }
    const std::optional<std::string> sig = note::Base64Decode(sig_text);
    if (!sig || sig->size() < 5) {
      return Status::InvalidArgument(fmt::format(
          "signed note line {}: the signature by {} is not base64 of a key id and a signature",
          line_no, name));
    }
    if (name != verifier.name()) continue;  // another key's signature
    const uint32_t id = (uint32_t(uint8_t((*sig)[0])) << 24) |
                        (uint32_t(uint8_t((*sig)[1])) << 16) |
                        (uint32_t(uint8_t((*sig)[2])) << 8) | uint8_t((*sig)[3]);
    if (id != verifier.key_id()) {
      if (!other_ids.empty()) other_ids += ", ";
      other_ids += note::Hex8(id);
      continue;
    }
    if (!verifier.Verify(body, std::string_view(*sig).substr(4))) {
      return Status::Corruption(fmt::format(
          "signature by {} does not verify (altered body or wrong key)", verifier.Label()));
    }
    signed_by_verifier = true;
  }
  if (!signed_by_verifier) {
    std::string msg = fmt::format("checkpoint is not signed by {}", verifier.Label());
    if (!other_ids.empty()) {
      msg += fmt::format(" (it is signed by another key of the same name, key id {})", other_ids);
    }
    return Status::Corruption(msg);
  }

  // --- the checkpoint body ---
  const std::vector<std::string_view> lines = Lines(body);
  if (lines.size() < 3) {
    return Status::InvalidArgument(fmt::format(
        "checkpoint has {} lines; it needs an origin, a tree size and a root hash",
        lines.size()));
  }
  Checkpoint cp;
  if (lines[0].empty()) return Status::InvalidArgument("line 1: origin is empty");
  if (lines[0] != verifier.name()) {
    return Status::InvalidArgument(fmt::format(
        "line 1: origin {} is not the verifier key's name '{}' (a checkpoint of another log)",
        Quote(lines[0]), verifier.name()));
  }
  cp.origin = std::string(lines[0]);
  BASTION_RETURN_IF_ERROR(ParseSize(lines[1], &cp.size));
  const std::optional<std::string> root = note::Base64Decode(lines[2]);
  if (!root) {
    return Status::InvalidArgument(
        fmt::format("line 3: root hash {} is not valid base64", Quote(lines[2])));
  }
  if (root->size() != cp.root.size()) {
    return Status::InvalidArgument(fmt::format(
        "line 3: root hash is {} bytes, a SHA-256 hash is 32", root->size()));
  }
  std::copy(root->begin(), root->end(), cp.root.begin());
  for (size_t i = 3; i < lines.size(); ++i) {
    if (lines[i].empty()) {
      return Status::InvalidArgument(fmt::format("line {}: extension line is empty", i + 1));
    }
    cp.extensions.emplace_back(lines[i]);
  }
  cp.key_id = verifier.key_id();
  return cp;
}

}  // namespace bastion
