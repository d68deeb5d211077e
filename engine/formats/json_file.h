#pragma once
// Reading JSON configuration files (config.json, generation_config.json, tokenizer_config.json)
// with errors that name the file and the key.
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace moe {

// What a JSON value is, short enough for an error message: "string \"abc\"" (cut at 60 bytes, bytes that are not
// UTF-8 replaced), "integer 5", "number 2.5", "boolean false", "null", "an array", "an object".
std::string describe_json(const nlohmann::json& v);
// Any JSON value as written (a string quoted), cut short and made UTF-8 the same way.
std::string quoted_json(const nlohmann::json& v);

// Parses a JSON file; EngineError(path, "", "...") when missing or malformed (with line/byte position).
nlohmann::json load_json_file(const std::filesystem::path& path);

// Typed access to one JSON object, every error naming the file and the key.
class JsonFields {
 public:
  JsonFields(nlohmann::json object, std::string file);
  static JsonFields load(const std::filesystem::path& path);

  bool has(const std::string& key) const;  // present and not null
  int64_t integer(const std::string& key) const;           // required
  int64_t integer_or(const std::string& key, int64_t fallback) const;
  double number(const std::string& key) const;
  double number_or(const std::string& key, double fallback) const;
  bool boolean_or(const std::string& key, bool fallback) const;
  std::string string(const std::string& key) const;
  std::string string_or(const std::string& key, const std::string& fallback) const;
  // An integer or a list of integers (eos_token_id is either); empty when absent.
  std::vector<int64_t> integer_list_or_empty(const std::string& key) const;
  const nlohmann::json& raw() const { return object_; }
  const std::string& file() const { return file_; }

 private:
  nlohmann::json object_;
  std::string file_;
};

}  // namespace moe
