// Pieces of the signed-note format shared by keys and checkpoints: strict
// base64, key ids, and the rules for note text.
#ifndef BASTION_EVIDENCE_NOTE_TEXT_H_
#define BASTION_EVIDENCE_NOTE_TEXT_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace bastion::note {

// The signed-note algorithm byte of Ed25519.
inline constexpr uint8_t kEd25519 = 0x01;
// The signature line's prefix: U+2014 EM DASH and a space.
inline constexpr std::string_view kSigPrefix = "\xE2\x80\x94 ";

// RFC 4648 base64 with padding ("standard" alphabet).
std::string Base64Encode(std::string_view bytes);
// Strict: the length is a multiple of 4, padding only at the end, no
// whitespace, and unused bits of the last group are zero (one encoding per
// value). nullopt otherwise.
std::optional<std::string> Base64Decode(std::string_view text);

// First 4 bytes, big-endian, of SHA-256(name || "\n" || 0x01 || public key).
uint32_t KeyId(std::string_view name, const std::array<uint8_t, 32>& public_key);

std::string Hex8(uint32_t id);
// Exactly 8 hex digits (either case).
std::optional<uint32_t> ParseHex8(std::string_view s);

// Empty if `text` is valid note text (UTF-8, no control characters other
// than "\n"); otherwise what is wrong and at which byte offset.
std::string CheckNoteText(std::string_view text);

}  // namespace bastion::note

#endif  // BASTION_EVIDENCE_NOTE_TEXT_H_
