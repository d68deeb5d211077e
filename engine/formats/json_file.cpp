#include "engine/formats/json_file.h"

#include <cmath>
#include <limits>
#include <system_error>

#include "engine/common/error.h"
#include "engine/formats/text_file.h"

namespace moe {

namespace {

// Line and column (1-based) of a byte offset, for parse errors.
std::pair<size_t, size_t> line_column(const std::string& text, size_t byte) {
  size_t line = 1, column = 1;
  for (size_t i = 0; i < byte && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return {line, column};
}

// Integer value of v, accepting integral floats (2.0) that some tools write; nullopt otherwise.
std::optional<int64_t> as_int64(const nlohmann::json& v) {
  if (v.is_number_integer() && !v.is_number_unsigned()) return v.get<int64_t>();
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > uint64_t(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return int64_t(u);
  }
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && d >= -9.2e18 && d <= 9.2e18) return int64_t(d);
  }
  return std::nullopt;
}

}  // namespace

std::string quoted_json(const nlohmann::json& v) {
  std::string s = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (s.size() > 60) {
    size_t cut = 57;
    while (cut > 1 && (static_cast<unsigned char>(s[cut]) & 0xc0) == 0x80) --cut;  // whole UTF-8 characters
    s = s.substr(0, cut) + "...\"";
  }
  return s;
}

std::string describe_json(const nlohmann::json& v) {
  switch (v.type()) {
    case nlohmann::json::value_t::null: return "null";
    case nlohmann::json::value_t::boolean: return std::string("boolean ") + (v.get<bool>() ? "true" : "false");
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned: return "integer " + v.dump();
    case nlohmann::json::value_t::number_float: return "number " + v.dump();
    case nlohmann::json::value_t::string: return "string " + quoted_json(v);
    case nlohmann::json::value_t::array: return "an array";
    case nlohmann::json::value_t::object: return "an object";
    default: return "a value of an unexpected kind";
  }
}

nlohmann::json load_json_file(const std::filesystem::path& path) {
  const std::string file = path.string();
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) throw EngineError(file, "", "file not found");
  if (std::filesystem::is_directory(status)) throw EngineError(file, "", "is a folder, not a JSON file");

  const std::string text = read_whole_file(path);

  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line 1, column 5: ..."; keep the part
    // after the position, which says what the parser expected.
    std::string why = e.what();
    if (const size_t colon = why.find(": "); colon != std::string::npos) why = why.substr(colon + 2);
    const size_t byte = e.byte > 0 ? e.byte - 1 : 0;  // nlohmann counts from 1
    const auto [line, column] = line_column(text, byte);
    throw EngineError(file, "",
                      "not valid JSON at line " + std::to_string(line) + ", column " + std::to_string(column) +
                          " (byte " + std::to_string(byte) + "): " + why);
  } catch (const nlohmann::json::exception& e) {  // e.g. a number too large for a double
    std::string why = e.what();
    if (const size_t bracket = why.find("] "); bracket != std::string::npos) why = why.substr(bracket + 2);
    throw EngineError(file, "", "not valid JSON: " + why);
  }
}

JsonFields::JsonFields(nlohmann::json object, std::string file) : object_(std::move(object)), file_(std::move(file)) {
  if (!object_.is_object())
    throw EngineError(file_, "", "expected a JSON object at the top level, got " + describe_json(object_));
}

JsonFields JsonFields::load(const std::filesystem::path& path) {
  return JsonFields(load_json_file(path), path.string());
}

bool JsonFields::has(const std::string& key) const {
  const auto it = object_.find(key);
  return it != object_.end() && !it->is_null();
}

int64_t JsonFields::integer(const std::string& key) const {
  if (!has(key)) throw EngineError(file_, key, "missing");
  const nlohmann::json& v = object_.at(key);
  if (const auto i = as_int64(v)) return *i;
  if (v.is_number_unsigned() || (v.is_number_float() && std::isfinite(v.get<double>()) &&
                                  v.get<double>() == std::floor(v.get<double>())))
    throw EngineError(file_, key, "integer " + v.dump() + " is out of range");
  throw EngineError(file_, key, "expected an integer, got " + describe_json(v));
}

int64_t JsonFields::integer_or(const std::string& key, int64_t fallback) const {
  return has(key) ? integer(key) : fallback;
}

double JsonFields::number(const std::string& key) const {
  if (!has(key)) throw EngineError(file_, key, "missing");
  const nlohmann::json& v = object_.at(key);
  if (!v.is_number()) throw EngineError(file_, key, "expected a number, got " + describe_json(v));
  return v.get<double>();
}

double JsonFields::number_or(const std::string& key, double fallback) const {
  return has(key) ? number(key) : fallback;
}

bool JsonFields::boolean_or(const std::string& key, bool fallback) const {
  if (!has(key)) return fallback;
  const nlohmann::json& v = object_.at(key);
  if (!v.is_boolean()) throw EngineError(file_, key, "expected true or false, got " + describe_json(v));
  return v.get<bool>();
}

std::string JsonFields::string(const std::string& key) const {
  if (!has(key)) throw EngineError(file_, key, "missing");
  const nlohmann::json& v = object_.at(key);
  if (!v.is_string()) throw EngineError(file_, key, "expected a string, got " + describe_json(v));
  return v.get<std::string>();
}

std::string JsonFields::string_or(const std::string& key, const std::string& fallback) const {
  return has(key) ? string(key) : fallback;
}

std::vector<int64_t> JsonFields::integer_list_or_empty(const std::string& key) const {
  if (!has(key)) return {};
  const nlohmann::json& v = object_.at(key);
  if (const auto i = as_int64(v)) return {*i};
  if (!v.is_array()) throw EngineError(file_, key, "expected an integer or a list of integers, got " + describe_json(v));
  std::vector<int64_t> out;
  out.reserve(v.size());
  for (size_t k = 0; k < v.size(); ++k) {
    const auto i = as_int64(v[k]);
    if (!i) throw EngineError(file_, key + "[" + std::to_string(k) + "]", "expected an integer, got " + describe_json(v[k]));
    out.push_back(*i);
  }
  return out;
}

}  // namespace moe
