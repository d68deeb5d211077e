#include "engine/tokenizer/byte_level.h"

#include "engine/tokenizer/utf8.h"

namespace moe::detail {

ByteLevelTable::ByteLevelTable() {
  byte_of_cp.fill(-1);
  char32_t next_extra = 0x100;
  for (int b = 0; b < 256; ++b) {
    const bool kept = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    const char32_t cp = kept ? char32_t(b) : next_extra++;
    utf8::append(mapped[b], cp);
    byte_of_cp[cp] = int16_t(b);
  }
}

const ByteLevelTable& byte_level_table() {
  static const ByteLevelTable table;
  return table;
}

std::string byte_level_encode(std::string_view bytes) {
  const auto& table = byte_level_table();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += table.mapped[static_cast<unsigned char>(c)];
  return out;
}

std::string byte_level_decode(const std::string& token) {
  const auto& table = byte_level_table();
  std::string out;
  out.reserve(token.size());
  size_t i = 0;
  while (i < token.size()) {
    const char32_t cp = utf8::next(token, i);
    if (cp >= table.byte_of_cp.size() || table.byte_of_cp[cp] < 0) return token;
    out.push_back(char(table.byte_of_cp[cp]));
  }
  return out;
}

}  // namespace moe::detail
