#include "app/cli/cli_common.h"

#include <cstdlib>
#include <filesystem>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "engine/common/error.h"
#ifdef MOE_HAVE_CUDA
#include "engine/backend/cuda/device_probe.h"
#endif

namespace moe::cli {

Args::Args(int argc, char** argv, int first, const std::vector<std::string>& flags) {
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) == 0 && a.size() > 2) {
      std::string name = a.substr(2);
      if (auto eq = name.find('='); eq != std::string::npos) {
        values_[name.substr(0, eq)] = name.substr(eq + 1);
        every_.emplace_back(name.substr(0, eq), name.substr(eq + 1));
      } else if (std::find(flags.begin(), flags.end(), name) != flags.end()) {
        flags_given_.push_back(name);
      } else if (i + 1 < argc) {
        values_[name] = argv[++i];
        every_.emplace_back(name, argv[i]);
      } else {
        std::cerr << "error: option --" << name << " needs a value\n";
        std::exit(2);
      }
    } else {
      positional_.push_back(a);
    }
  }
}

std::vector<std::string> Args::all(const std::string& name) const {
  std::vector<std::string> out;
  for (const auto& [k, v] : every_)
    if (k == name) out.push_back(v);
  return out;
}

bool Args::flag(const std::string& name) const {
  return std::find(flags_given_.begin(), flags_given_.end(), name) != flags_given_.end();
}
std::optional<std::string> Args::get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}
std::string Args::get_or(const std::string& name, const std::string& fallback) const { return get(name).value_or(fallback); }
double Args::number_or(const std::string& name, double fallback) const {
  auto v = get(name);
  if (!v) return fallback;
  char* end = nullptr;
  double d = std::strtod(v->c_str(), &end);
  if (end == v->c_str() || *end) {
    std::cerr << "error: --" << name << " expects a number, got '" << *v << "'\n";
    std::exit(2);
  }
  return d;
}
long long Args::integer_or(const std::string& name, long long fallback) const {
  auto v = get(name);
  if (!v) return fallback;
  char* end = nullptr;
  long long d = std::strtoll(v->c_str(), &end, 10);
  if (end == v->c_str() || *end) {
    std::cerr << "error: --" << name << " expects an integer, got '" << *v << "'\n";
    std::exit(2);
  }
  return d;
}
std::vector<std::string> Args::unknown(const std::vector<std::string>& known) const {
  std::vector<std::string> out;
  for (const auto& [k, v] : values_)
    if (std::find(known.begin(), known.end(), k) == known.end()) out.push_back(k);
  for (const auto& k : flags_given_)
    if (std::find(known.begin(), known.end(), k) == known.end()) out.push_back(k);
  return out;
}

const std::vector<std::string>& device_option_names() {
  static const std::vector<std::string> names = {"device", "gpu", "kv-dtype", "threads", "context"};
  return names;
}

BackendOptions backend_options_from_args(const Args& args, int context) {
  BackendOptions bo;
  bo.threads = int(args.integer_or("threads", 0));
  bo.max_context = int(args.integer_or("context", context));
  bo.cuda_device = int(args.integer_or("gpu", 0));
  const std::string device = args.get_or("device", "auto");
  if (!parse_device(device, bo.device)) throw EngineError("", "--device", "expected auto, cpu or cuda, got '" + device + "'");
  const std::string kv = args.get_or("kv-dtype", "f32");
  if (!parse_kv_dtype(kv, bo.kv_dtype)) throw EngineError("", "--kv-dtype", "expected f32 or bf16, got '" + kv + "'");
  return bo;
}

bool gpu_chosen(const BackendOptions& bo) {
#ifdef MOE_HAVE_CUDA
  if (bo.device == Device::Cpu) return false;
  const auto p = cuda::probe_devices();
  return bo.cuda_device >= 0 && size_t(bo.cuda_device) < p.devices.size();
#else
  (void)bo;
  return false;
#endif
}

void report_device(const std::string& note) { std::fprintf(stderr, "device: %s\n", note.c_str()); }

std::unique_ptr<Model> open_model(const Args& args, bool shape_only) {
  if (auto cfg = args.get("synthetic")) {
    shape_only = shape_only || gpu_chosen(backend_options_from_args(args, 0));
    SyntheticOptions o;
    const std::string dt = args.get_or("dtype", "bf16");
    if (dt == "bf16") o.dtype = DType::BF16;
    else if (dt == "f16") o.dtype = DType::F16;
    else if (dt == "f32") o.dtype = DType::F32;
    else throw EngineError("", "--dtype", "expected bf16, f16 or f32, got '" + dt + "'");
    o.seed = uint64_t(args.integer_or("seed", 1));
    o.max_distinct_bytes = size_t(args.number_or("synthetic-max-gib", 8.0) * double(size_t(1) << 30));
    o.shape_only = shape_only;
    return Model::synthetic(*cfg, o);
  }
  if (args.positional().empty()) {
    const std::filesystem::path demo = default_model_dir();
    if (!std::filesystem::exists(demo / "config.json"))
      throw EngineError(demo, "MODEL", "no model given and the bundled demo model is missing: pass a checkpoint folder, or --synthetic CONFIG.json");
    return Model::load(demo);
  }
  return Model::load(args.positional()[0]);
}

std::filesystem::path resources_dir() {
  if (const char* env = std::getenv("MOE_RESOURCES_DIR"); env && *env) return env;
  return MOE_RESOURCES_DIR;
}

std::filesystem::path default_model_dir() { return resources_dir() / "demo" / "moe"; }

SamplingParams sampling_from_args(const Args& args, SamplingParams p) {
  if (args.flag("greedy")) p.greedy = true;
  if (args.get("temperature")) {
    p.temperature = float(args.number_or("temperature", 1.0));
    p.greedy = p.temperature <= 0;
  }
  p.top_k = int(args.integer_or("top-k", p.top_k));
  p.top_p = float(args.number_or("top-p", p.top_p));
  p.min_p = float(args.number_or("min-p", p.min_p));
  p.repetition_penalty = float(args.number_or("repetition-penalty", p.repetition_penalty));
  p.presence_penalty = float(args.number_or("presence-penalty", p.presence_penalty));
  p.seed = uint64_t(args.integer_or("seed", int64_t(p.seed)));
  return p;
}

bool has_sampling_flags(const Args& args) {
  for (const char* k : {"temperature", "top-k", "top-p", "min-p", "repetition-penalty", "presence-penalty", "seed"})
    if (args.get(k)) return true;
  return args.flag("greedy");
}

Interventions interventions_from_args(const Args& args, const ModelSpec& spec) {
  Interventions iv;
  for (const char* flag : {"mask", "force", "router-top-k", "router-bias"})
    for (const std::string& v : args.all(flag)) parse_intervention(std::string("--") + flag, v, spec, iv);
  iv.validate(spec);
  return iv;
}

HookLevel hook_level_from_args(const Args& args, HookLevel fallback) {
  const auto name = args.get("hook-level");
  if (!name) return fallback;
  const auto level = parse_hook_level(*name);
  if (!level) throw EngineError("", "--hook-level", "expected off, routing, full or attention-maps, got '" + *name + "'");
  return *level;
}

const std::vector<std::string>& sampling_option_names() {
  static const std::vector<std::string> names = {"greedy", "temperature", "top-k", "top-p", "min-p", "repetition-penalty",
                                                 "presence-penalty", "seed"};
  return names;
}

const std::vector<std::string>& intervention_option_names() {
  static const std::vector<std::string> names = {"mask", "force", "router-top-k", "router-bias"};
  return names;
}

void progress_bar(int done, int total, const char* unit) {
  if (total <= 0) return;
  const int width = 30, filled = std::clamp(done * width / total, 0, width);
  std::fprintf(stderr, "\r[%s%s] %d/%d %s", std::string(size_t(filled), '#').c_str(), std::string(size_t(width - filled), '.').c_str(),
               done, total, unit);
  if (done == total) std::fputc('\n', stderr);
}

std::string bytes_str(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, u ? "%.2f %s" : "%.0f %s", b, units[u]);
  return buf;
}

std::string count_str(double n) {
  char buf[64];
  if (n >= 1e9) std::snprintf(buf, sizeof buf, "%.2f B", n / 1e9);
  else if (n >= 1e6) std::snprintf(buf, sizeof buf, "%.2f M", n / 1e6);
  else if (n >= 1e3) std::snprintf(buf, sizeof buf, "%.1f K", n / 1e3);
  else std::snprintf(buf, sizeof buf, "%.0f", n);
  return buf;
}

std::string gpu_status() {
#ifdef MOE_HAVE_CUDA
  const auto p = cuda::probe_devices();
  if (p.devices.empty()) return p.problem;
  std::string s;
  for (const auto& d : p.devices)
    s += (s.empty() ? "" : "; ") + std::string("GPU ") + std::to_string(d.index) + ": " + d.name + " (sm_" +
         std::to_string(d.sm_major) + std::to_string(d.sm_minor) + ", " + bytes_str(double(d.total_bytes)) + ", " +
         bytes_str(double(d.free_bytes)) + " free)";
  return s;
#else
  return "built without CUDA";
#endif
}

}  // namespace moe::cli
