#pragma once
// Every error the engine reports about a user's files names the file and the field (DEVELOPERS.md:
// "Bad input gets a clear error naming the file and the field"). Code that reads a file throws
// EngineError; front ends print what() and go on.
#include <stdexcept>
#include <string>

namespace moe {

class EngineError : public std::runtime_error {
 public:
  // file: the path the problem is in (may be empty for errors not tied to a file).
  // field: the key, tensor name or byte range that is wrong (may be empty).
  EngineError(std::string file, std::string field, const std::string& message)
      : std::runtime_error(compose(file, field, message)), file_(std::move(file)), field_(std::move(field)) {}

  const std::string& file() const { return file_; }
  const std::string& field() const { return field_; }

 private:
  static std::string compose(const std::string& file, const std::string& field, const std::string& message) {
    std::string s;
    if (!file.empty()) s += file + ": ";
    if (!field.empty()) s += "'" + field + "': ";
    return s + message;
  }
  std::string file_;
  std::string field_;
};

}  // namespace moe
