#include "evidence/note_text.h"

#include <fmt/format.h>

#include "util/sha256.h"
#include "util/utf8.h"

namespace bastion::note {
namespace {

constexpr char kAlphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int Sextet(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

}  // namespace

std::string Base64Encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8) |
                       uint8_t(bytes[i + 2]);
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  const size_t rest = bytes.size() - i;
  if (rest == 1) {
    const uint32_t v = uint8_t(bytes[i]) << 16;
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (rest == 2) {
    const uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8);
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

std::optional<std::string> Base64Decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    int pad = 0;
    if (last && text[i + 3] == '=') pad = text[i + 2] == '=' ? 2 : 1;
    int s[4];
    for (int k = 0; k < 4 - pad; ++k) {
      s[k] = Sextet(text[i + k]);
      if (s[k] < 0) return std::nullopt;
    }
    if (pad == 2) {
      if ((s[1] & 0x0F) != 0) return std::nullopt;
      out += char((s[0] << 2) | (s[1] >> 4));
    } else if (pad == 1) {
      if ((s[2] & 0x03) != 0) return std::nullopt;
      out += char((s[0] << 2) | (s[1] >> 4));
      out += char(((s[1] & 0x0F) << 4) | (s[2] >> 2));
    } else {
      out += char((s[0] << 2) | (s[1] >> 4));
      out += char(((s[1] & 0x0F) << 4) | (s[2] >> 2));
      out += char(((s[2] & 0x03) << 6) | s[3]);
    }
  }
  return out;
}

uint32_t KeyId(std::string_view name, const std::array<uint8_t, 32>& public_key) {
  Sha256 sha;
  sha.Update(name);
  const uint8_t sep[2] = {'\n', kEd25519};
  sha.Update(sep, 2);
  sha.Update(public_key.data(), public_key.size());
  const Hash h = sha.Final();
  return (uint32_t(h[0]) << 24) | (uint32_t(h[1]) << 16) | (uint32_t(h[2]) << 8) | h[3];
}

std::string Hex8(uint32_t id) { return fmt::format("{:08x}", id); }

std::optional<uint32_t> ParseHex8(std::string_view s) {
  if (s.size() != 8) return std::nullopt;
  uint32_t v = 0;
  for (char c : s) {
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else return std::nullopt;
    v = (v << 4) | uint32_t(d);
  }
  return v;
}

std::string CheckNoteText(std::string_view text) {
  const size_t bad = FindInvalidUtf8(text);
  if (bad != std::string_view::npos) return fmt::format("byte {}: not valid UTF-8", bad);
  for (size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '\r') return fmt::format("byte {}: carriage return (lines end in \"\\n\" only)", i);
    if ((c < 0x20 && c != '\n') || c == 0x7F) {
      return fmt::format("byte {}: control character 0x{:02x}", i, c);
    }
  }
  return {};
}

}  // namespace bastion::note
