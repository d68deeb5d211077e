#include "engine/tokenizer/utf8.h"

#include <cstdint>

namespace moe::utf8 {

namespace {

// For a lead byte: how many continuation bytes follow, and the allowed range of the first one (the later
// ones are always 0x80..0xBF). need < 0 marks a byte that cannot start a sequence. The narrowed first ranges
// exclude overlong forms (E0, F0), surrogates (ED) and code points past U+10FFFF (F4).
struct Lead {
  int need;
  uint8_t lo, hi;
};

Lead lead_of(uint8_t b) {
  if (b < 0x80) return {0, 0, 0};
  if (b >= 0xC2 && b <= 0xDF) return {1, 0x80, 0xBF};
  if (b == 0xE0) return {2, 0xA0, 0xBF};
  if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) return {2, 0x80, 0xBF};
  if (b == 0xED) return {2, 0x80, 0x9F};
  if (b == 0xF0) return {3, 0x90, 0xBF};
  if (b >= 0xF1 && b <= 0xF3) return {3, 0x80, 0xBF};
  if (b == 0xF4) return {3, 0x80, 0x8F};
  return {-1, 0, 0};
}

}  // namespace

size_t sanitize(std::string_view bytes, bool at_end, std::string& out) {
  const size_t n = bytes.size();
  size_t i = 0;
  while (i < n) {
    const auto b = static_cast<uint8_t>(bytes[i]);
    const Lead lead = lead_of(b);
    if (lead.need == 0) {
      out.push_back(char(b));
      ++i;
      continue;
    }
    if (lead.need < 0) {
      out += kReplacement;
      ++i;
      continue;
    }
    size_t j = i + 1;
    bool broken = false;
    for (int k = 0; k < lead.need; ++k, ++j) {
      if (j >= n) {
        if (!at_end) return i;  // could still complete: hold it back
        out += kReplacement;
        return n;
      }
      const auto c = static_cast<uint8_t>(bytes[j]);
      const uint8_t lo = k == 0 ? lead.lo : 0x80, hi = k == 0 ? lead.hi : 0xBF;
      if (c < lo || c > hi) {
        broken = true;
        break;
      }
    }
    if (broken) {
      out += kReplacement;  // the maximal subpart bytes[i, j); bytes[j] starts afresh
      i = j;
      continue;
    }
    out.append(bytes.data() + i, j - i);
    i = j;
  }
  return n;
}

std::string lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  sanitize(bytes, true, out);
  return out;
}

bool is_valid(std::string_view bytes) {
  size_t i = 0;
  const size_t n = bytes.size();
  while (i < n) {
    const auto b = static_cast<uint8_t>(bytes[i]);
    const Lead lead = lead_of(b);
    if (lead.need < 0) return false;
    if (i + size_t(lead.need) >= n) return false;  // truncated at the end
    for (int k = 0; k < lead.need; ++k) {
      const auto c = static_cast<uint8_t>(bytes[i + 1 + k]);
      const uint8_t lo = k == 0 ? lead.lo : 0x80, hi = k == 0 ? lead.hi : 0xBF;
      if (c < lo || c > hi) return false;
    }
    i += 1 + lead.need;
  }
  return true;
}

void append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(char(cp));
  } else if (cp < 0x800) {
    out.push_back(char(0xC0 | (cp >> 6)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(char(0xE0 | (cp >> 12)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(char(0xF0 | (cp >> 18)));
    out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  }
}

char32_t next(std::string_view bytes, size_t& i) {
  const auto b = static_cast<uint8_t>(bytes[i]);
  int need = b < 0x80 ? 0 : b < 0xE0 ? 1 : b < 0xF0 ? 2 : 3;
  char32_t cp = need == 0 ? b : need == 1 ? (b & 0x1F) : need == 2 ? (b & 0x0F) : (b & 0x07);
  ++i;
  for (int k = 0; k < need && i < bytes.size(); ++k, ++i) cp = (cp << 6) | (static_cast<uint8_t>(bytes[i]) & 0x3F);
  return cp;
}

bool is_python_space(char32_t cp) {
  switch (cp) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x1C: case 0x1D: case 0x1E: case 0x1F:
    case 0x20: case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F:
    case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

size_t python_space_before(std::string_view bytes, size_t begin, size_t end) {
  size_t i = end;
  while (i > begin) {
    size_t start = i - 1;
    while (start > begin && (static_cast<unsigned char>(bytes[start]) & 0xC0) == 0x80) --start;
    size_t k = start;
    if (!is_python_space(next(bytes, k))) break;
    i = start;
  }
  return end - i;
}

size_t python_space_after(std::string_view bytes, size_t begin) {
  size_t i = begin;
  while (i < bytes.size()) {
    size_t k = i;
    if (!is_python_space(next(bytes, k))) break;
    i = k;
  }
  return i - begin;
}

}  // namespace moe::utf8
