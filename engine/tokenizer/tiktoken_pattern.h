#pragma once
// The split pattern of a tiktoken tokenizer. Checkpoints that ship tiktoken.model (Kimi K2) define it in the
// Python file that tokenizer_config.json's auto_map names (`pat_str = "|".join([r"""…""", …])`), written for
// the Rust regex engine tiktoken runs it with. Two things in that dialect differ from PCRE2's:
//   - class intersection, `[\p{Lu}\p{Lo}&&[^\p{Han}]]`, which PCRE2 lacks: it becomes a lookahead in front
//     of the class, `(?:(?![\p{sc:Han}])[\p{Lu}\p{Lo}])`;
//   - a bare script name, `\p{Han}`, which Rust reads as the Script property and PCRE2 (10.40 on) as
//     Script_Extensions, where "、" and "ー" count as Han: it becomes `\p{sc:Han}`.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace moe::detail {

// The value of `name = <string expression>` in a Python source file: one string literal, adjacent literals,
// or "|".join([...]) over a list of them. nullopt when the file has no such assignment; throws EngineError
// naming the file and the name when the expression is something else.
std::optional<std::string> read_python_string(const std::filesystem::path& file, const std::string& name);

// The value of `name = <integer>` (sums of integers allowed: `293 + 128`), nullopt when absent.
std::optional<int64_t> read_python_int(const std::filesystem::path& file, const std::string& name);

// A Rust-regex pattern rewritten for PCRE2 as described above. Throws std::invalid_argument for class
// syntax it does not translate (a negated class holding an intersection, nested classes not in one).
std::string rust_regex_to_pcre2(const std::string& pattern);

}  // namespace moe::detail
