#pragma once
// A saved session: the chat as it was shown (chat.json) and the trace it ran (trace.safetensors, the
// same file moe-inspect writes, so Python and the CLI read it too), in one folder. Saving is atomic:
// each file is written under a temporary name and renamed into place, the trace first and chat.json
// last, so a crash at any moment leaves the previous complete session or the new one, never a mix
// that loads half.
#include <filesystem>
#include <string>
#include <vector>

#include "inspect/trace.h"
#include "views/workbench_data.h"

namespace moe::app {

struct SessionFile {
  std::string model_path;
  std::vector<views::ChatTurn> turns;
  inspect::Trace trace;
};

// Throws EngineError naming the file and field on anything unreadable.
void save_session(const std::filesystem::path& dir, const SessionFile& session);
SessionFile load_session(const std::filesystem::path& dir);
bool has_session(const std::filesystem::path& dir);

// The chat alone, as JSON text (for tests and for the chat.json file).
std::string chat_to_json(const std::string& model_path, const std::vector<views::ChatTurn>& turns);
// Parses chat.json text; `file` names it in errors.
void chat_from_json(const std::string& text, const std::string& file, std::string& model_path,
                    std::vector<views::ChatTurn>& turns);

}  // namespace moe::app
