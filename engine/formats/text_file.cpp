#include "engine/formats/text_file.h"

#include <fstream>
#include <sstream>

#include "engine/common/error.h"

namespace moe {

std::string read_whole_file(const std::filesystem::path& path) {
  const std::string file = path.string();
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) throw EngineError(file, "", "file not found");
  if (std::filesystem::is_directory(status)) throw EngineError(file, "", "is a folder, not a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw EngineError(file, "", "cannot open for reading");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) throw EngineError(file, "", "read error");
  return buffer.str();
}

}  // namespace moe
