#pragma once
// What moe-inspect and moe-bench share: argument parsing, opening a model (folder or synthetic),
// number formatting, and the line that says which backend runs.
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <filesystem>

#include "engine/backend/backend.h"
#include "engine/hooks/interventions.h"
#include "engine/hooks/step_observer.h"
#include "engine/model/model.h"
#include "engine/runtime/sampler.h"

namespace moe::cli {

// --key value, --flag, and positional arguments. Flags are declared so that "--greedy x" is not read
// as a value.
class Args {
 public:
  Args(int argc, char** argv, int first, const std::vector<std::string>& flags);
  bool flag(const std::string& name) const;
  std::optional<std::string> get(const std::string& name) const;  // the last value given
  std::vector<std::string> all(const std::string& name) const;    // every value given, in order
  std::string get_or(const std::string& name, const std::string& fallback) const;
  double number_or(const std::string& name, double fallback) const;   // exits with a message when not a number
  long long integer_or(const std::string& name, long long fallback) const;
  const std::vector<std::string>& positional() const { return positional_; }
  // Names given that the command does not know (reported as errors).
  std::vector<std::string> unknown(const std::vector<std::string>& known) const;

 private:
  std::map<std::string, std::string> values_;
  std::vector<std::pair<std::string, std::string>> every_;
  std::vector<std::string> flags_given_;
  std::vector<std::string> positional_;
};

// The model a command works on: --synthetic CONFIG (with --dtype), else the first positional folder,
// else the bundled demo model (default_model_dir()).
// shape_only: synthetic models get no memory (for `info`). A synthetic model that will run on a GPU
// gets none either: the CUDA backend makes its random weights on the device.
std::unique_ptr<Model> open_model(const Args& args, bool shape_only = false);
// resources/ of the source tree (MOE_RESOURCES_DIR in the environment overrides it).
std::filesystem::path resources_dir();
std::filesystem::path default_model_dir();  // resources/demo/moe

// Sampling flags (--greedy, --temperature, --top-k, --top-p, --min-p, --repetition-penalty,
// --presence-penalty, --seed) applied over `base`.
SamplingParams sampling_from_args(const Args& args, SamplingParams base);
bool has_sampling_flags(const Args& args);
const std::vector<std::string>& sampling_option_names();
// Router interventions: --mask L:E,.. --force L:E,.. --router-top-k [L:]K|all --router-bias L:E=V (repeatable).
Interventions interventions_from_args(const Args& args, const ModelSpec& spec);
const std::vector<std::string>& intervention_option_names();
HookLevel hook_level_from_args(const Args& args, HookLevel fallback);

// A progress bar on stderr, redrawn in place ("[#####.....] 5/10 windows"); a newline when done.
void progress_bar(int done, int total, const char* unit = "");

// --device auto|cpu|cuda (default auto: the GPU when one works), --gpu N, --threads N and --context N
// (default `context`). Throws EngineError naming the flag on a bad value.
BackendOptions backend_options_from_args(const Args& args, int context);
// Whether a backend made with these options will run on a GPU (a CUDA build with a working device,
// and not --device cpu).
bool gpu_chosen(const BackendOptions& options);
// "device: ..." on stderr: which backend runs, and why when it is not the one asked for.
void report_device(const std::string& note);
// The command-line options backend_options_from_args reads.
const std::vector<std::string>& device_option_names();

// Human-readable sizes: "1.23 GiB", "12.3 M".
std::string bytes_str(double bytes);
std::string count_str(double n);
// What was found of CUDA: the GPUs, or why none can be used.
std::string gpu_status();

}  // namespace moe::cli
