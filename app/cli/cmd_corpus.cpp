// moe-inspect corpus: a teacher-forced pass over a text or JSONL file. Reports perplexity and saves the
// routing of every token as a trace, so `stats` gives every routing measure of the corpus. Long runs
// are resumable: windows are processed in order and saved in parts (OUT.parts/); an interrupted run
// started again with the same arguments skips the parts already written.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "app/cli/commands.h"
#include "app/cli/table_output.h"
#include "engine/formats/atomic_file.h"
#include "engine/common/error.h"
#include "engine/runtime/session.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/tokenizer.h"
#include "inspect/trace_concat.h"
#include "inspect/trace_file.h"
#include "inspect/trace_recorder.h"

namespace moe::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The documents of the input: a .jsonl file gives one per line ("text", or "prompt" and "answer"
// rendered as a chat exchange through the model's template when it has one); any other file is one
// document.
std::vector<std::string> read_documents(const fs::path& path, const fs::path& model_dir, int limit) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw EngineError(path, "--input", "cannot open the file");
  std::vector<std::string> docs;
  if (path.extension() != ".jsonl") {
    docs.emplace_back(std::string(std::istreambuf_iterator<char>(in), {}));
    return docs;
  }
  std::optional<ChatTemplate> chat;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) throw EngineError(path, "line " + std::to_string(n), "not a JSON object");
    if (j.contains("text") && j["text"].is_string()) {
      docs.push_back(j["text"].get<std::string>());
    } else if (j.contains("prompt") && j.contains("answer")) {
      if (!chat) chat = ChatTemplate::from_model_dir(model_dir);
      const std::string answer = j["answer"].is_string() ? j["answer"].get<std::string>() : j["answer"].dump();
      docs.push_back(chat->render({{"user", j["prompt"].get<std::string>()}, {"assistant", answer}}, false));
    } else {
      throw EngineError(path, "line " + std::to_string(n), "needs \"text\", or \"prompt\" and \"answer\"");
    }
    if (limit > 0 && int(docs.size()) >= limit) break;
  }
  return docs;
}

}  // namespace

int run_corpus(const Args& args) {
  auto model = open_model(args);
  const auto input = args.get("input");
  const auto out = args.get("out");
  if (!input) throw EngineError("", "--input", "corpus needs --input FILE");
  if (!out) throw EngineError("", "--out", "corpus needs --out TRACE.safetensors");
  const int window = std::max(2, int(args.integer_or("window", 256)));
  auto tok = Tokenizer::load(model->dir());

  // Windows: each document tokenized and cut into pieces of at most `window` tokens.
  std::vector<std::vector<int32_t>> windows;
  for (const std::string& doc : read_documents(*input, model->dir(), int(args.integer_or("limit", 0)))) {
    const auto ids = tok->encode(doc, true);
    for (size_t b = 0; b < ids.size(); b += size_t(window))
      windows.emplace_back(ids.begin() + long(b), ids.begin() + long(std::min(ids.size(), b + size_t(window))));
  }
  if (windows.empty()) throw EngineError(*input, "--input", "no text to run");

  BackendOptions bo = backend_options_from_args(args, window);
  bo.max_context = window;
  Session session(*model, bo);
  report_device(session.device_note());
  session.set_interventions(interventions_from_args(args, model->spec()));
  const HookLevel level = hook_level_from_args(args, HookLevel::Routing);

  // Progress: OUT.parts/progress.json lists the windows done with their summed negative log-likelihood.
  // A part holds the trace of `per_part` windows; a part is written (atomically) before progress says so.
  const fs::path parts_dir = fs::path(*out).string() + ".parts";
  fs::create_directories(parts_dir);
  const fs::path progress_path = parts_dir / "progress.json";
  const std::string run_key = fs::absolute(*input).string() + "|" + model->dir().string() + "|" + std::to_string(window) + "|" +
                              std::to_string(windows.size());
  json progress = {{"run", run_key}, {"parts", json::array()}};
  if (fs::exists(progress_path)) {
    std::ifstream pin(progress_path);
    json old = json::parse(pin, nullptr, false);
    if (old.is_object() && old.value("run", "") == run_key) progress = old;
    else std::fprintf(stderr, "note: %s belongs to another run; starting over\n", progress_path.c_str());
  }
  const int per_part = 16;
  const int n_parts = int((windows.size() + per_part - 1) / per_part);
  const int V = model->spec().vocab_size;
  for (int part = int(progress["parts"].size()); part < n_parts; ++part) {
    inspect::TraceStore store;
    inspect::TraceRecorder recorder(store, level);
    double nll = 0;
    int64_t predicted = 0;
    for (int w = part * per_part; w < std::min(int(windows.size()), (part + 1) * per_part); ++w) {
      const auto& ids = windows[size_t(w)];
      store.begin_segment(json{{"window", w}}.dump());
      const auto logits = session.score(ids, &recorder);
      for (size_t t = 0; t + 1 < ids.size(); ++t) {
        const float* row = &logits[t * size_t(V)];
        float mx = row[0];
        for (int v = 1; v < V; ++v) mx = std::max(mx, row[v]);
        double sum = 0;
        for (int v = 0; v < V; ++v) sum += std::exp(double(row[v] - mx));
        nll += -(double(row[ids[t + 1]] - mx) - std::log(sum));
        ++predicted;
      }
      if (!args.flag("json")) progress_bar(w + 1, int(windows.size()), "windows");
    }
    const fs::path part_path = parts_dir / ("part_" + std::to_string(part) + ".safetensors");
    store.set_metadata_json(json{{"model", model->dir().string()}, {"input", *input}, {"part", part}}.dump());
    inspect::save_trace(store.snapshot(), part_path);
    progress["parts"].push_back({{"file", part_path.filename().string()}, {"nll", nll}, {"predicted", predicted}});
    write_file_atomically(progress_path, progress.dump(1));
  }

  // Join the parts into one trace.
  std::vector<inspect::Trace> parts;
  double nll = 0;
  int64_t predicted = 0;
  for (const auto& p : progress["parts"]) {
    parts.push_back(inspect::load_trace(parts_dir / p["file"].get<std::string>()));
    nll += p["nll"].get<double>();
    predicted += p["predicted"].get<int64_t>();
  }
  inspect::Trace all = inspect::concat_traces(parts);
  all.metadata_json = json{{"model", model->dir().string()}, {"family", model->spec().family}, {"input", *input},
                           {"window", window}, {"windows", windows.size()}, {"hook_level", hook_level_name(level)},
                           {"engine_version", MOE_VERSION}}.dump();
  inspect::save_trace(all, *out);
  fs::remove_all(parts_dir);

  inspect::Table t;
  t.title = "Corpus";
  t.columns = {"tokens", "predicted", "windows", "nll_per_token", "perplexity"};
  const double mean = predicted ? nll / double(predicted) : 0.0;
  t.add_row({all.size(), predicted, int64_t(windows.size()), inspect::Cell(mean, 4), inspect::Cell(std::exp(mean), 3)});
  t.notes.push_back("trace: " + *out + " (moe-inspect stats " + *out + " for the routing measures)");
  print_tables(args, {{"corpus", t}});
  return 0;
}

}  // namespace moe::cli
