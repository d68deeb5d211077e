#include "inspect/token_class.h"

#include <cstdint>
#include <optional>

namespace moe::inspect {
namespace {

enum class CharKind { Space, Cjk, Letter, Digit, Punct, Other };

// Decodes one code point at text[pos] and advances pos; nullopt for bytes that are not a complete,
// well-formed UTF-8 sequence (byte-level BPE splits multi-byte characters across tokens, so a token
// often holds half a CJK character or an emoji: those bytes say nothing about the class).
std::optional<char32_t> next_code_point(std::string_view text, size_t& pos) {
  const auto byte = [&](size_t i) { return uint8_t(text[i]); };
  const uint8_t lead = byte(pos);
  if (lead < 0x80) {
    ++pos;
    return char32_t(lead);
  }
  int length = 0;
  char32_t cp = 0;
  char32_t min_value = 0;
  if ((lead & 0xE0) == 0xC0) {
    length = 2, cp = lead & 0x1F, min_value = 0x80;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3, cp = lead & 0x0F, min_value = 0x800;
  } else if ((lead & 0xF8) == 0xF0) {
    length = 4, cp = lead & 0x07, min_value = 0x10000;
  } else {
    ++pos;  // a stray continuation byte or an invalid lead byte
    return std::nullopt;
  }
  if (pos + size_t(length) > text.size()) {
    ++pos;
    return std::nullopt;
  }
  for (int i = 1; i < length; ++i) {
    const uint8_t next = byte(pos + size_t(i));
    if ((next & 0xC0) != 0x80) {
      ++pos;
      return std::nullopt;
    }
    cp = (cp << 6) | (next & 0x3F);
  }
  // Overlong forms, UTF-16 surrogates and values past U+10FFFF are not characters either.
  if (cp < min_value || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
    ++pos;
    return std::nullopt;
  }
  pos += size_t(length);
  return cp;
}

CharKind ascii_kind(char32_t c) {
  if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') return CharKind::Space;
  if (c >= '0' && c <= '9') return CharKind::Digit;
  if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')) return CharKind::Letter;
  if (c >= 0x21 && c <= 0x7E) return CharKind::Punct;
  return CharKind::Other;  // C0 controls and DEL
}

bool in(char32_t c, char32_t first, char32_t last) { return c >= first && c <= last; }

// Block-level ranges: enough to tell scripts, digits and symbols apart; anything unlisted above
// Latin-1 is a letter of some script, which is what most assigned code points are.
CharKind kind_of(char32_t c) {
  if (c < 0x80) return ascii_kind(c);
  if (c < 0xA0) return CharKind::Other;  // C1 controls
  if (c == 0xA0 || c == 0x1680 || in(c, 0x2000, 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
      c == 0x205F || c == 0x3000)
    return CharKind::Space;
  if (c <= 0xBF) {
    if (c == 0xAA || c == 0xB5 || c == 0xBA) return CharKind::Letter;  // ª µ º
    if (c == 0xB2 || c == 0xB3 || c == 0xB9) return CharKind::Digit;   // ² ³ ¹
    return CharKind::Punct;                                            // ¡ ¢ £ § « ° ± ¿ …
  }
  if (c == 0xD7 || c == 0xF7) return CharKind::Punct;  // × ÷
  if (in(c, 0x660, 0x669) || in(c, 0x6F0, 0x6F9) || in(c, 0x966, 0x96F) || in(c, 0x9E6, 0x9EF))
    return CharKind::Digit;  // Arabic-Indic, Devanagari and Bengali digits
  if (in(c, 0x1100, 0x11FF)) return CharKind::Cjk;  // Hangul Jamo
  if (in(c, 0x200B, 0x200F) || in(c, 0x2060, 0x2064) || c == 0xFEFF) return CharKind::Other;  // invisible format
  if (in(c, 0x2010, 0x205E)) return CharKind::Punct;                                            // general punctuation
  if (c == 0x2070 || in(c, 0x2074, 0x2079) || in(c, 0x2080, 0x2089)) return CharKind::Digit;   // super/subscripts
  if (in(c, 0x20A0, 0x214F)) return CharKind::Punct;  // currency, symbol marks, letterlike symbols (™ ℃)
  if (in(c, 0x2150, 0x218F)) return CharKind::Digit;  // number forms (⅓ Ⅻ)
  if (in(c, 0x2190, 0x2BFF) || in(c, 0x2E00, 0x2E7F)) return CharKind::Punct;  // arrows, maths, shapes, dingbats
  if (in(c, 0x2E80, 0x2FFF)) return CharKind::Cjk;                            // radicals, description chars
  if (in(c, 0x3001, 0x303F)) return (c >= 0x3005 && c <= 0x3007) ? CharKind::Cjk : CharKind::Punct;  // 、。「」 vs 々〇
  if (in(c, 0x3040, 0x4DBF)) return CharKind::Cjk;  // kana, bopomofo, compat jamo, enclosed CJK, extension A
  if (in(c, 0x4DC0, 0x4DFF)) return CharKind::Punct;  // Yijing hexagrams
  if (in(c, 0x4E00, 0x9FFF) || in(c, 0xA960, 0xA97F) || in(c, 0xAC00, 0xD7FF) || in(c, 0xF900, 0xFAFF))
    return CharKind::Cjk;  // unified ideographs, Hangul syllables and jamo, compatibility ideographs
  if (in(c, 0xE000, 0xF8FF)) return CharKind::Other;  // private use
  if (in(c, 0xFE00, 0xFE6F)) return CharKind::Punct;  // variation selectors, vertical and small forms
  if (in(c, 0xFF01, 0xFF5E)) return ascii_kind(c - 0xFEE0);  // fullwidth ASCII: ０ is a digit, ， punctuation
  if (in(c, 0xFF5F, 0xFF65) || in(c, 0xFFE0, 0xFFEE)) return CharKind::Punct;
  if (in(c, 0xFF66, 0xFFDC)) return CharKind::Cjk;    // halfwidth katakana and hangul
  if (in(c, 0xFFF0, 0xFFFF)) return CharKind::Other;  // specials, U+FFFD included
  if (in(c, 0x1F000, 0x1FAFF) || in(c, 0xE0000, 0xE007F)) return CharKind::Punct;  // emoji, tag characters
  if (in(c, 0x20000, 0x3FFFF)) return CharKind::Cjk;                                 // ideograph extensions B+
  if (in(c, 0xF0000, 0x10FFFF)) return CharKind::Other;                              // private use planes
  return CharKind::Letter;
}

}  // namespace

TokenClass classify_token(std::string_view utf8, bool is_special) {
  if (is_special) return TokenClass::Special;
  bool cjk = false, letter = false, digit = false, punct = false, other = false;
  size_t pos = 0;
  while (pos < utf8.size()) {
    const std::optional<char32_t> cp = next_code_point(utf8, pos);
    switch (cp ? kind_of(*cp) : CharKind::Other) {
      case CharKind::Space: break;
      case CharKind::Cjk: cjk = true; break;
      case CharKind::Letter: letter = true; break;
      case CharKind::Digit: digit = true; break;
      case CharKind::Punct: punct = true; break;
      case CharKind::Other: other = true; break;
    }
  }
  if (cjk) return TokenClass::Cjk;
  if (letter) return TokenClass::Letters;
  if (digit) return TokenClass::Digits;
  if (punct) return TokenClass::Punctuation;
  if (other) return TokenClass::Other;
  return TokenClass::Whitespace;
}

std::string_view token_class_name(TokenClass token_class) {
  switch (token_class) {
    case TokenClass::Digits: return "digits";
    case TokenClass::Punctuation: return "punctuation";
    case TokenClass::Letters: return "letters";
    case TokenClass::Cjk: return "cjk";
    case TokenClass::Whitespace: return "whitespace";
    case TokenClass::Special: return "special";
    case TokenClass::Other: return "other";
  }
  return "other";
}

}  // namespace moe::inspect
