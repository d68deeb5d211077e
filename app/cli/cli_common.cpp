#include "app/cli/cli_common.h"

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
      } else if (std::find(flags.begin(), flags.end(), name) != flags.end()) {
        flags_given_.push_back(name);
      } else if (i + 1 < argc) {
        values_[name] = argv[++i];
      } else {
        std::cerr << "error: option --" << name << " needs a value\n";
        std::exit(2);
      }
    } else {
      positional_.push_back(a);
    }
  }
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

std::unique_ptr<Model> open_model(const Args& args, bool shape_only) {
  if (auto cfg = args.get("synthetic")) {
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
  if (args.positional().empty())
    throw EngineError("", "MODEL", "no model given: pass a checkpoint folder, or --synthetic CONFIG.json");
  return Model::load(args.positional()[0]);
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
  if (p.devices.empty()) return p.problem + "; running on the CPU";
  std::string s;
  for (const auto& d : p.devices)
    s += (s.empty() ? "" : "; ") + d.name + " (sm_" + std::to_string(d.sm_major) + std::to_string(d.sm_minor) + ", " +
         bytes_str(double(d.total_bytes)) + ")";
  return s + " found; the CUDA forward pass is not built yet, running on the CPU";
#else
  return "built without CUDA; running on the CPU";
#endif
}

}  // namespace moe::cli
