#pragma once
// What moe-inspect and moe-bench share: argument parsing, opening a model (folder or synthetic),
// number formatting, and the line that says which backend runs.
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/model/model.h"

namespace moe::cli {

// --key value, --flag, and positional arguments. Flags are declared so that "--greedy x" is not read
// as a value.
class Args {
 public:
  Args(int argc, char** argv, int first, const std::vector<std::string>& flags);
  bool flag(const std::string& name) const;
  std::optional<std::string> get(const std::string& name) const;
  std::string get_or(const std::string& name, const std::string& fallback) const;
  double number_or(const std::string& name, double fallback) const;   // exits with a message when not a number
  long long integer_or(const std::string& name, long long fallback) const;
  const std::vector<std::string>& positional() const { return positional_; }
  // Names given that the command does not know (reported as errors).
  std::vector<std::string> unknown(const std::vector<std::string>& known) const;

 private:
  std::map<std::string, std::string> values_;
  std::vector<std::string> flags_given_;
  std::vector<std::string> positional_;
};

// The model a command works on: --synthetic CONFIG (with --dtype), else the first positional folder.
// shape_only: synthetic models get no memory (for `info`).
std::unique_ptr<Model> open_model(const Args& args, bool shape_only = false);
// Human-readable sizes: "1.23 GiB", "12.3 M".
std::string bytes_str(double bytes);
std::string count_str(double n);
// "CPU, 2 threads, avx2+fma+f16c" plus what was found of CUDA.
std::string gpu_status();

}  // namespace moe::cli
