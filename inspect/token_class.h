#pragma once
// Coarse classes of token text, so that expert preference can be read as "expert 5 takes the digits".
// Plain code point ranges, no ICU: the classes are coarse on purpose and must not depend on the
// Unicode tables of whatever library happens to be installed.
#include <string_view>

namespace moe::inspect {

enum class TokenClass : int {
  Digits = 0,
  Punctuation,  // punctuation and symbols, emoji included
  Letters,      // letters of any script that is not CJK (combining marks count with them)
  Cjk,          // Han, Kana, Hangul, Bopomofo
  Whitespace,   // only whitespace, or empty
  Special,      // the tokenizer's special tokens (<|im_start|>, <think> …), whatever their text
  Other,        // a byte fragment of a character split across tokens, or a control character
};
inline constexpr int kTokenClassCount = 7;

// Which class a token falls in. utf8: the token's decoded text (bytes as they appear in the output,
// not the byte-level BPE vocabulary form with "Ġ" for a space). Whitespace is ignored when anything
// else is present (" the" is Letters). A token whose other characters span several classes takes
// the first of CJK, letters, digits, punctuation, other (so "a1" is Letters and "1." is Digits).
TokenClass classify_token(std::string_view utf8, bool is_special);

// A short lower-case name for tables and exports: "digits", "punctuation", "letters", "cjk",
// "whitespace", "special", "other".
std::string_view token_class_name(TokenClass token_class);

}  // namespace moe::inspect
