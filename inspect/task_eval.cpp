#include "inspect/task_eval.h"

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "engine/common/error.h"

namespace moe::inspect {

std::vector<TaskRecord> load_task_file(const std::filesystem::path& path, int limit) {
  std::ifstream in(path);
  if (!in) throw EngineError(path, "", "cannot open the task file");
  std::vector<TaskRecord> out;
  std::string line;
  int line_no = 0;
  auto text_of = [&](const nlohmann::json& j, const char* key) -> std::string {
    if (!j.contains(key)) throw EngineError(path, std::string("line ") + std::to_string(line_no) + ": " + key, "missing");
    const auto& v = j.at(key);
    if (v.is_string()) return v.get<std::string>();
    if (v.is_number()) return v.dump();
    throw EngineError(path, std::string("line ") + std::to_string(line_no) + ": " + key, "expected a string or a number");
  };
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw EngineError(path, "line " + std::to_string(line_no), std::string("not JSON: ") + e.what());
    }
    TaskRecord r;
    r.prompt = text_of(j, "prompt");
    r.answer = text_of(j, "answer");
    r.task = j.contains("task") && j["task"].is_string() ? j["task"].get<std::string>() : path.stem().string();
    out.push_back(std::move(r));
    if (limit > 0 && int(out.size()) >= limit) break;
  }
  return out;
}

std::string extract_answer(const std::string& answer_text) {
  std::string s = answer_text;
  if (const size_t close = s.rfind("</think>"); close != std::string::npos) s = s.substr(close + 8);
  const std::string lead = "The answer is ";
  if (const size_t at = s.rfind(lead); at != std::string::npos) s = s.substr(at + lead.size());
  const size_t b = s.find_first_not_of(" \t\r\n");
  const size_t e = s.find_last_not_of(" \t\r\n");
  s = b == std::string::npos ? "" : s.substr(b, e - b + 1);
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

std::vector<TaskScore> evaluate_tasks(Conversation& conv, const std::vector<TaskRecord>& records,
                                      const std::vector<EvalSetting>& settings, const EvalHooks& hooks) {
  std::vector<TaskScore> scores;
  std::map<std::pair<std::string, std::string>, size_t> index;
  const int total = int(records.size() * settings.size());
  int done = 0;
  for (const EvalSetting& s : settings)
    for (const TaskRecord& rec : records) {
      conv.clear();
      if (hooks.before_problem) hooks.before_problem(s, rec);
      const TurnResult r = conv.send(rec.prompt, s.turn, {}, hooks.observer);
      if (hooks.after_problem) hooks.after_problem(r);
      auto [it, fresh] = index.try_emplace({s.label, rec.task}, scores.size());
      if (fresh) scores.push_back(TaskScore{rec.task, s.label});
      TaskScore& t = scores[it->second];
      t.problems += 1;
      t.correct += extract_answer(r.answer_text) == rec.answer ? 1 : 0;
      const auto& g = r.generation;
      t.thinking_tokens += g.thinking_tokens;
      t.answer_tokens += double(g.tokens.size()) - g.thinking_tokens;
      t.seconds += g.prefill_s + g.decode_s;
      t.forced_stops += int(g.forced_stops.size());
      if (hooks.progress) hooks.progress(++done, total);
    }
  return scores;
}

Table task_score_table(const std::vector<TaskScore>& scores) {
  Table t;
  t.title = "Accuracy by setting and task";
  t.columns = {"setting", "task", "problems", "correct", "accuracy", "thinking_tokens", "answer_tokens", "seconds", "forced_stops"};
  auto row = [&](const TaskScore& s) {
    const double n = std::max(1, s.problems);
    t.add_row({s.setting, s.task, s.problems, s.correct, Cell(s.accuracy(), 3), Cell(s.thinking_tokens / n, 1),
               Cell(s.answer_tokens / n, 1), Cell(s.seconds / n, 3), s.forced_stops});
  };
  std::vector<std::string> order;
  for (const TaskScore& s : scores)
    if (std::find(order.begin(), order.end(), s.setting) == order.end()) order.push_back(s.setting);
  for (const std::string& setting : order) {
    TaskScore all{"all", setting};
    for (const TaskScore& s : scores) {
      if (s.setting != setting) continue;
      row(s);
      all.problems += s.problems;
      all.correct += s.correct;
      all.thinking_tokens += s.thinking_tokens;
      all.answer_tokens += s.answer_tokens;
      all.seconds += s.seconds;
      all.forced_stops += s.forced_stops;
    }
    row(all);
  }
  t.notes.push_back("tokens and seconds are means per problem; thinking tokens include injected early-stop text");
  return t;
}

}  // namespace moe::inspect
