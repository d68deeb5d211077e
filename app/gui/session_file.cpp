#include "app/gui/session_file.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/common/error.h"
#include "engine/formats/atomic_file.h"
#include "inspect/trace_file.h"

namespace moe::app {

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kChatFile = "chat.json";
constexpr const char* kTraceFile = "trace.safetensors";
constexpr int kFormatVersion = 1;

json turn_json(const views::ChatTurn& t) {
  json tokens = json::array();
  for (const views::ChatToken& k : t.tokens)
    tokens.push_back({k.id, k.piece, int(k.phase), k.forced ? 1 : 0, k.row, k.position, k.elapsed_s});
  json stops = json::array();
  for (const auto& f : t.forced_stops) stops.push_back({f.position, f.thinking_tokens, f.budget});
  return {{"user", t.user_text}, {"mode", t.mode}, {"thinking", t.thinking}, {"segment", t.segment},
          {"first_row", t.first_row}, {"budget", t.thinking_budget}, {"thinking_tokens", t.thinking_tokens},
          {"thinking_s", t.thinking_s}, {"forced_stops", stops}, {"finished", t.finished},
          {"stop_reason", t.stop_reason}, {"ttft_s", t.time_to_first_token_s}, {"prefill_s", t.prefill_s},
          {"decode_s", t.decode_s}, {"prompt_tokens", t.prompt_tokens}, {"reused_tokens", t.reused_tokens},
          {"tokens", tokens}};
}

template <typename T>
T field(const json& j, const char* key, const std::string& file, const std::string& where) {
  const std::string name = where.empty() ? std::string(key) : where + "." + key;
  if (!j.contains(key)) throw EngineError(file, name, "missing");
  try {
    return j.at(key).get<T>();
  } catch (const json::exception& e) {
    throw EngineError(file, name, std::string("wrong type: ") + e.what());
  }
}

views::ChatTurn turn_from_json(const json& j, const std::string& file, const std::string& where) {
  if (!j.is_object()) throw EngineError(file, where, "expected an object");
  views::ChatTurn t;
  t.user_text = field<std::string>(j, "user", file, where);
  t.mode = field<std::string>(j, "mode", file, where);
  t.thinking = field<bool>(j, "thinking", file, where);
  t.segment = field<int>(j, "segment", file, where);
  t.first_row = field<int64_t>(j, "first_row", file, where);
  t.thinking_budget = field<int>(j, "budget", file, where);
  t.thinking_tokens = field<int>(j, "thinking_tokens", file, where);
  t.thinking_s = field<double>(j, "thinking_s", file, where);
  t.finished = field<bool>(j, "finished", file, where);
  t.stop_reason = field<std::string>(j, "stop_reason", file, where);
  t.time_to_first_token_s = field<double>(j, "ttft_s", file, where);
  t.prefill_s = field<double>(j, "prefill_s", file, where);
  t.decode_s = field<double>(j, "decode_s", file, where);
  t.prompt_tokens = field<int>(j, "prompt_tokens", file, where);
  t.reused_tokens = field<int>(j, "reused_tokens", file, where);
  const json stops = field<json>(j, "forced_stops", file, where);
  for (size_t i = 0; i < stops.size(); ++i) {
    const std::string w = where + ".forced_stops[" + std::to_string(i) + "]";
    if (!stops[i].is_array() || stops[i].size() != 3) throw EngineError(file, w, "expected [position, thinking_tokens, budget]");
    t.forced_stops.push_back({stops[i][0].get<int>(), stops[i][1].get<int>(), stops[i][2].get<int>()});
  }
  const json tokens = field<json>(j, "tokens", file, where);
  if (!tokens.is_array()) throw EngineError(file, where + ".tokens", "expected an array");
  for (size_t i = 0; i < tokens.size(); ++i) {
    const json& k = tokens[i];
    const std::string w = where + ".tokens[" + std::to_string(i) + "]";
    if (!k.is_array() || k.size() != 7) throw EngineError(file, w, "expected [id, piece, phase, forced, row, position, elapsed_s]");
    try {
      views::ChatToken c;
      c.id = k[0].get<int32_t>();
      c.piece = k[1].get<std::string>();
      const int phase = k[2].get<int>();
      if (phase < 0 || phase >= kPhaseCount) throw EngineError(file, w, "phase " + std::to_string(phase) + " is not a phase");
      c.phase = Phase(phase);
      c.forced = k[3].get<int>() != 0;
      c.row = k[4].get<int64_t>();
      c.position = k[5].get<int>();
      c.elapsed_s = k[6].get<double>();
      t.tokens.push_back(std::move(c));
    } catch (const json::exception& e) {
      throw EngineError(file, w, std::string("wrong type: ") + e.what());
    }
  }
  return t;
}

}  // namespace

std::string chat_to_json(const std::string& model_path, const std::vector<views::ChatTurn>& turns) {
  json j;
  j["format"] = "moe-workbench-chat";
  j["version"] = kFormatVersion;
  j["model"] = model_path;
  j["turns"] = json::array();
  for (const auto& t : turns) j["turns"].push_back(turn_json(t));
  return j.dump(1, ' ', false, json::error_handler_t::replace);
}

void chat_from_json(const std::string& text, const std::string& file, std::string& model_path,
                    std::vector<views::ChatTurn>& turns) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw EngineError(file, "", std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object() || j.value("format", "") != "moe-workbench-chat")
    throw EngineError(file, "format", "not a MoE Workbench chat (expected \"moe-workbench-chat\")");
  if (field<int>(j, "version", file, "") > kFormatVersion)
    throw EngineError(file, "version", "written by a newer MoE Workbench");
  model_path = field<std::string>(j, "model", file, "");
  const json list = field<json>(j, "turns", file, "");
  if (!list.is_array()) throw EngineError(file, "turns", "expected an array");
  turns.clear();
  for (size_t i = 0; i < list.size(); ++i) turns.push_back(turn_from_json(list[i], file, "turns[" + std::to_string(i) + "]"));
}

void save_session(const fs::path& dir, const SessionFile& session) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw EngineError(dir.string(), "", "cannot create the folder: " + ec.message());
  inspect::save_trace(session.trace, dir / kTraceFile);  // atomic (write_safetensors)
  write_file_atomically(dir / kChatFile, chat_to_json(session.model_path, session.turns));
}

bool has_session(const fs::path& dir) { return fs::exists(dir / kChatFile); }

SessionFile load_session(const fs::path& dir) {
  SessionFile s;
  const fs::path chat = dir / kChatFile;
  std::ifstream in(chat, std::ios::binary);
  if (!in) throw EngineError(chat.string(), "", "cannot open the file");
  std::stringstream text;
  text << in.rdbuf();
  chat_from_json(text.str(), chat.string(), s.model_path, s.turns);
  if (fs::exists(dir / kTraceFile)) s.trace = inspect::load_trace(dir / kTraceFile);
  for (size_t i = 0; i < s.turns.size(); ++i) {
    // A turn's rows must exist in the trace that came with it; a chat saved beside a shorter trace
    // (the trace file replaced by hand) keeps its text but loses the links.
    for (auto& k : s.turns[i].tokens)
      if (k.row >= s.trace.size()) k.row = -1;
  }
  return s;
}

}  // namespace moe::app
