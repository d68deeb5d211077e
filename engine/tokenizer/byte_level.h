#pragma once
// GPT-2's byte ↔ unicode table (SPECS.md §9.1), the spelling of byte-level BPE vocabularies: printable
// Latin-1 bytes stand for themselves, the other 68 bytes for U+0100 onwards in increasing byte order.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace moe::detail {

struct ByteLevelTable {
  std::array<std::string, 256> mapped;      // byte → UTF-8 of its character
  std::array<int16_t, 0x144> byte_of_cp{};  // character (< U+0144) → byte, -1 when not in the table
  ByteLevelTable();
};

const ByteLevelTable& byte_level_table();

// Raw bytes → their byte-level spelling ("Ġhello" for " hello").
std::string byte_level_encode(std::string_view bytes);

// What the ByteLevel decoder makes of one token string: each character back to its byte; a token holding any
// character outside the table (an added token such as "<|im_start|>" is fine, "你好" is not) is kept as is.
std::string byte_level_decode(const std::string& token);

}  // namespace moe::detail
