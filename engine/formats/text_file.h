#pragma once
// Reading a whole small file (JSON, a chat template, a tokenizer model, Python source) into memory.
#include <filesystem>
#include <string>

namespace moe {

// The file's bytes. EngineError(path, "", ...) when it is missing, a folder, unreadable or fails mid-read.
std::string read_whole_file(const std::filesystem::path& path);

}  // namespace moe
