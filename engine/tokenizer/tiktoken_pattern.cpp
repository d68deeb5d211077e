#include "engine/tokenizer/tiktoken_pattern.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cctype>
#include <map>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "engine/common/error.h"
#include "engine/formats/text_file.h"
#include "engine/tokenizer/utf8.h"

namespace moe::detail {

namespace {

// Reads Python source text: skips blanks, line continuations and comments; reads string literals.
class PythonReader {
  static bool is_prefix(char c) { return c == 'r' || c == 'R' || c == 'u' || c == 'U'; }  // string prefixes

 public:
  PythonReader(const std::string& src, size_t at) : s_(src), i_(at) {}

  void skip_space() {
    while (i_ < s_.size()) {
      const char c = s_[i_];
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\\') ++i_;
      else if (c == '#') while (i_ < s_.size() && s_[i_] != '\n') ++i_;
      else break;
    }
  }
  bool eat(std::string_view token) {
    skip_space();
    if (s_.compare(i_, token.size(), token) != 0) return false;
    i_ += token.size();
    return true;
  }
  bool at_string() {
    skip_space();
    size_t j = i_;
    while (j < s_.size() && is_prefix(s_[j]) && j - i_ < 2) ++j;
    return j < s_.size() && (s_[j] == '"' || s_[j] == '\'');
  }
  // One or more adjacent literals, concatenated. Returns nullopt on anything that is not one.
  std::optional<std::string> strings() {
    if (!at_string()) return std::nullopt;
    std::string out;
    while (at_string()) {
      auto one = literal();
      if (!one) return std::nullopt;
      out += *one;
    }
    return out;
  }

 private:
  std::optional<std::string> literal() {
    bool raw = false;
    while (is_prefix(s_[i_])) raw |= (s_[i_++] | 0x20) == 'r';
    const char q = s_[i_];
    const bool triple = s_.compare(i_, 3, std::string(3, q)) == 0;
    const std::string close = triple ? std::string(3, q) : std::string(1, q);
    i_ += close.size();
    std::string out;
    while (i_ < s_.size()) {
      if (s_.compare(i_, close.size(), close) == 0) {
        i_ += close.size();
        return out;
      }
      const char c = s_[i_];
      if (c == '\n' && !triple) return std::nullopt;
      if (c != '\\' || i_ + 1 >= s_.size()) {
        out.push_back(c);
        ++i_;
        continue;
      }
      const char e = s_[i_ + 1];
      if (raw) {  // a raw string keeps the backslash; it only stops the quote after it from closing
        out.append(s_, i_, 2);
        i_ += 2;
        continue;
      }
      i_ += 2;
      switch (e) {
        case '\\': out.push_back('\\'); break;
        case '\'': out.push_back('\''); break;
        case '"': out.push_back('"'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case '\n': break;  // line continuation inside the literal
        case 'x':
        case 'u':
        case 'U': {
          const size_t digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          if (i_ + digits > s_.size()) return std::nullopt;
          const std::string hex = s_.substr(i_, digits);
          for (char h : hex)
            if (!std::isxdigit(static_cast<unsigned char>(h))) return std::nullopt;
          const unsigned long cp = std::stoul(hex, nullptr, 16);
          if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return std::nullopt;
          utf8::append(out, char32_t(cp));
          i_ += digits;
          break;
        }
        default:  // Python keeps an unknown escape as it is: "\p" is backslash, p
          out.push_back('\\');
          out.push_back(e);
      }
    }
    return std::nullopt;
  }

  const std::string& s_;
  size_t i_;
};

// Where the statement `name = ` assigns: the name first on its line (so not `f(name=x)` or `self.name`), not a
// longer identifier, not `==`. npos when there is none.
size_t find_assignment(const std::string& src, const std::string& name) {
  auto ident = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  for (size_t at = src.find(name); at != std::string::npos; at = src.find(name, at + 1)) {
    size_t line = at;
    while (line > 0 && (src[line - 1] == ' ' || src[line - 1] == '\t')) --line;
    if (line > 0 && src[line - 1] != '\n') continue;
    size_t j = at + name.size();
    if (j < src.size() && ident(src[j])) continue;
    while (j < src.size() && (src[j] == ' ' || src[j] == '\t')) ++j;
    if (j < src.size() && src[j] == ':') {  // an annotation: `name: str = ...`
      while (j < src.size() && src[j] != '=' && src[j] != '\n') ++j;
    }
    if (j + 1 < src.size() && src[j] == '=' && src[j + 1] != '=') return j + 1;
  }
  return std::string::npos;
}

// Whether PCRE2 knows `name` as a script (so that \p{sc:name} compiles). Cached: patterns repeat names.
bool is_script_name(const std::string& name) {
  static std::mutex mutex;
  static std::map<std::string, bool> known;
  std::lock_guard<std::mutex> lock(mutex);
  if (const auto it = known.find(name); it != known.end()) return it->second;
  const std::string probe = "\\p{sc:" + name + "}";
  int error = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(probe.data()), probe.size(), PCRE2_UTF | PCRE2_UCP,
                                   &error, &offset, nullptr);
  pcre2_code_free(code);
  return known[name] = code != nullptr;
}

// General categories keep their meaning in both engines; every other name PCRE2 knows as a script is
// made to mean the script alone, as Rust's \p{Name} does.
bool is_general_category(const std::string& name) {
  static const char* const kCategories[] = {
      "L", "LC", "L&", "Lu", "Ll", "Lt", "Lm", "Lo", "M", "Mn", "Mc", "Me", "N", "Nd", "Nl", "No",
      "P", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "S", "Sm", "Sc", "Sk", "So",
      "Z", "Zs", "Zl", "Zp", "C", "Cc", "Cf", "Cs", "Co", "Cn"};
  for (const char* c : kCategories)
    if (name == c) return true;
  return false;
}

// Copies the escape at p[i] (a backslash) to `out`, rewriting \p{Script}; returns the index after it.
size_t copy_escape(const std::string& p, size_t i, std::string& out) {
  if (i + 1 >= p.size()) throw std::invalid_argument("the pattern ends with a backslash");
  const char e = p[i + 1];
  if ((e == 'p' || e == 'P') && i + 2 < p.size() && p[i + 2] == '{') {
    const size_t close = p.find('}', i + 3);
    if (close == std::string::npos) throw std::invalid_argument("unterminated \\p{ at offset " + std::to_string(i));
    const std::string name = p.substr(i + 3, close - i - 3);
    const bool plain = name.find(':') == std::string::npos && name.find('=') == std::string::npos;
    out += '\\';
    out += e;
    out += '{';
    out += plain && !is_general_category(name) && is_script_name(name) ? "sc:" + name : name;
    out += '}';
    return close + 1;
  }
  out.append(p, i, 2);
  return i + 2;
}

// A bracket class starting at p[i] == '['. `text` is its PCRE2 form; `end` the index after its ']'.
struct Class {
  std::string text;
  size_t end = 0;
  bool negated = false;
  std::string body;  // the members, without brackets and without '^'
};

Class parse_class(const std::string& p, size_t i) {
  Class c;
  size_t j = i + 1;
  if (j < p.size() && p[j] == '^') {
    c.negated = true;
    ++j;
  }
  // Operands of '&&', each a list of members (nested non-negated classes are flattened into it).
  std::vector<std::string> operands(1);
  std::vector<std::vector<Class>> nested(1);
  bool first = true;
  while (true) {
    if (j >= p.size()) throw std::invalid_argument("unterminated class at offset " + std::to_string(i));
    const char ch = p[j];
    if (ch == ']' && !first) {
      ++j;
      break;
    }
    first = false;
    if (ch == '\\') {
      j = copy_escape(p, j, operands.back());
    } else if (ch == '&' && j + 1 < p.size() && p[j + 1] == '&') {
      operands.emplace_back();
      nested.emplace_back();
      j += 2;
    } else if (ch == '[' && j + 1 < p.size() && p[j + 1] == ':') {  // POSIX class [:alpha:]
      const size_t close = p.find(":]", j + 2);
      if (close == std::string::npos) throw std::invalid_argument("unterminated [: at offset " + std::to_string(j));
      operands.back().append(p, j, close + 2 - j);
      j = close + 2;
    } else if (ch == '[') {
      Class inner = parse_class(p, j);
      j = inner.end;
      nested.back().push_back(inner);
    } else {
      operands.back().push_back(ch);
      ++j;
    }
  }
  c.end = j;
  // One operand as a PCRE2 class: its own members plus those of nested classes (a union), unless it is
  // exactly one nested class, which may be negated.
  auto operand_class = [&](size_t k) -> std::string {
    if (operands[k].empty() && nested[k].size() == 1) return nested[k][0].text;
    std::string members = operands[k];
    for (const Class& n : nested[k]) {
      if (n.negated || n.text[0] != '[')
        throw std::invalid_argument("a negated or intersected class inside a union, at offset " + std::to_string(i));
      members += n.body;
    }
    return "[" + members + "]";
  };
  if (operands.size() == 1) {
    const std::string cls = operand_class(0);
    if (!c.negated) {
      c.text = cls;
      c.body = cls[0] == '[' && cls[1] != '^' ? cls.substr(1, cls.size() - 2) : std::string();
      return c;
    }
    if (cls[1] == '^') throw std::invalid_argument("a negated class nested in a negated class, at offset " + std::to_string(i));
    c.body = cls.substr(1, cls.size() - 2);
    c.text = "[^" + c.body + "]";
    return c;
  }
  if (c.negated) throw std::invalid_argument("a negated class intersection, at offset " + std::to_string(i));
  // A && B && C: one character of A that B and C accept too.
  c.text = "(?:";
  for (size_t k = 1; k < operands.size(); ++k) c.text += "(?=" + operand_class(k) + ")";
  c.text += operand_class(0) + ")";
  return c;
}

}  // namespace

std::optional<std::string> read_python_string(const std::filesystem::path& file, const std::string& name) {
  const std::string src = read_whole_file(file);
  const size_t at = find_assignment(src, name);
  if (at == std::string::npos) return std::nullopt;
  PythonReader r(src, at);
  auto fail = [&]() -> EngineError {
    return EngineError(file.string(), name, "expected a string, adjacent strings or \"|\".join([...]) of strings");
  };
  if (r.eat("(")) {  // ( "a" "b" )
    auto s = r.strings();
    if (!s || !r.eat(")")) throw fail();
    return s;
  }
  const auto separator = r.strings();
  if (!separator) throw fail();
  if (!r.eat(".join")) return separator;  // plain literals
  if (!r.eat("(")) throw fail();
  const char* close = r.eat("[") ? "]" : r.eat("(") ? ")" : nullptr;
  if (!close) throw fail();
  std::string joined;
  bool any = false;
  while (!r.eat(close)) {
    auto item = r.strings();
    if (!item) throw fail();
    if (any) joined += *separator;
    joined += *item;
    any = true;
    if (!r.eat(",")) {
      if (!r.eat(close)) throw fail();
      break;
    }
  }
  if (!r.eat(")")) throw fail();
  return joined;
}

std::optional<int64_t> read_python_int(const std::filesystem::path& file, const std::string& name) {
  const std::string src = read_whole_file(file);
  const size_t at = find_assignment(src, name);
  if (at == std::string::npos) return std::nullopt;
  int64_t sum = 0;
  size_t j = at;
  bool expect_number = true;
  while (j < src.size() && src[j] != '\n' && src[j] != '#') {
    const char c = src[j];
    if (c == ' ' || c == '\t' || c == '\r') {
      ++j;
    } else if (expect_number && std::isdigit(static_cast<unsigned char>(c))) {
      int64_t v = 0;
      while (j < src.size() && (std::isdigit(static_cast<unsigned char>(src[j])) || src[j] == '_')) {
        if (src[j] != '_') v = v * 10 + (src[j] - '0');
        if (v > (int64_t(1) << 40)) throw EngineError(file.string(), name, "number out of range");
        ++j;
      }
      sum += v;
      expect_number = false;
    } else if (!expect_number && c == '+') {
      expect_number = true;
      ++j;
    } else {
      throw EngineError(file.string(), name, "expected an integer (or a sum of integers)");
    }
  }
  if (expect_number) throw EngineError(file.string(), name, "expected an integer (or a sum of integers)");
  return sum;
}

std::string rust_regex_to_pcre2(const std::string& p) {
  std::string out;
  out.reserve(p.size() + 64);
  size_t i = 0;
  while (i < p.size()) {
    if (p[i] == '\\') {
      i = copy_escape(p, i, out);
    } else if (p[i] == '[') {
      const Class c = parse_class(p, i);
      out += c.text;
      i = c.end;
    } else {
      out.push_back(p[i++]);
    }
  }
  return out;
}

}  // namespace moe::detail
