#pragma once
// UTF-8 helpers shared by the tokenizers and the stream decoder.
//
// Invalid input is replaced the way Python's bytes.decode("utf-8", errors="replace") and Rust's
// String::from_utf8_lossy do it (Unicode's "maximal subpart" practice): every maximal prefix of a
// well-formed sequence that cannot be completed becomes one U+FFFD, and every byte that cannot start a
// sequence becomes one U+FFFD. That rule only ever looks forward to the end of the current sequence, so
// replacing chunk by chunk gives the same text as replacing the whole string at once.
#include <cstddef>
#include <string>
#include <string_view>

namespace moe::utf8 {

inline constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Appends the valid text of `bytes` to `out`, invalid parts replaced by U+FFFD, and returns how many bytes
// were consumed. With at_end == false an incomplete sequence at the very end (bytes that could still become
// a character) is left unconsumed, for the caller to retry once more bytes have arrived; with at_end == true
// it is replaced by one U+FFFD and everything is consumed.
size_t sanitize(std::string_view bytes, bool at_end, std::string& out);

// The whole of `bytes` with invalid parts replaced by U+FFFD.
std::string lossy(std::string_view bytes);

// True when `bytes` is entirely well-formed UTF-8.
bool is_valid(std::string_view bytes);

// Appends the UTF-8 encoding of a code point (U+0000..U+10FFFF, not a surrogate).
void append(std::string& out, char32_t cp);

// Decodes the character starting at bytes[i] of a well-formed string and advances i past it.
char32_t next(std::string_view bytes, size_t& i);

// Python's str.isspace() for one code point (what str.strip() removes by default).
bool is_python_space(char32_t cp);

// Length in bytes of the run of Python whitespace (is_python_space) that ends at bytes[end], looking no
// further left than bytes[begin]: what str.rstrip() removes from bytes[begin, end).
size_t python_space_before(std::string_view bytes, size_t begin, size_t end);

// Length in bytes of the run of Python whitespace that starts at bytes[begin]: what str.lstrip() removes.
size_t python_space_after(std::string_view bytes, size_t begin);

}  // namespace moe::utf8
