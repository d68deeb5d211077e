#pragma once
// Accuracy on tasks with checkable answers (the demo model's held-out sets, or a user's JSONL of
// {"prompt", "answer"} records): each problem is asked in a fresh conversation under one setting
// (mode, thinking budget, sampling), the answer is extracted and compared exactly.
//
// Answer extraction (the demo corpus's convention, resources/demo/README.md): the text after </think>,
// then after the last "The answer is " when present, without surrounding whitespace and a final full
// stop. Comparison with the record's "answer" is exact.
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "engine/runtime/conversation.h"
#include "inspect/table.h"

namespace moe::inspect {

struct TaskRecord {
  std::string task;    // "add", "sort" ... (from the file's "task", else the file name)
  std::string prompt;  // the user message
  std::string answer;  // the exact expected answer
};

// Reads JSONL records with "prompt" and "answer" (strings; numbers accepted) and an optional "task".
// Throws EngineError naming the file, the line and the field.
std::vector<TaskRecord> load_task_file(const std::filesystem::path& path, int limit = 0);

std::string extract_answer(const std::string& answer_text);

struct EvalSetting {
  std::string label;  // e.g. "think", "no-think", "budget 16"
  TurnOptions turn;
};

struct TaskScore {
  std::string task;
  std::string setting;
  int problems = 0;
  int correct = 0;
  double thinking_tokens = 0;  // summed over problems
  double answer_tokens = 0;
  double seconds = 0;
  int forced_stops = 0;
  double accuracy() const { return problems ? double(correct) / problems : 0.0; }
};

// Runs every record under every setting. progress(done, total) is called after each problem;
// before_problem(setting, record) before each (e.g. to start a trace segment); the observer sees every
// forward step.
struct EvalHooks {
  std::function<void(int, int)> progress;
  std::function<void(const EvalSetting&, const TaskRecord&)> before_problem;
  std::function<void(const TurnResult&)> after_problem;
  StepObserver* observer = nullptr;
};
std::vector<TaskScore> evaluate_tasks(Conversation& conversation, const std::vector<TaskRecord>& records,
                                      const std::vector<EvalSetting>& settings, const EvalHooks& hooks = {});

// One row per (setting, task) plus an "all" row per setting: problems, correct, accuracy, mean thinking
// and answer tokens, mean seconds, forced stops.
Table task_score_table(const std::vector<TaskScore>& scores);

}  // namespace moe::inspect
