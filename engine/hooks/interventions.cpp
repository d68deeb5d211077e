#include "engine/hooks/interventions.h"

#include <algorithm>
#include <charconv>
#include <nlohmann/json.hpp>

#include "engine/common/error.h"
#include "engine/model/model_spec.h"

namespace moe {

bool Interventions::empty() const {
  return std::all_of(layers.begin(), layers.end(), [](const LayerIntervention& l) { return l.empty(); });
}

const LayerIntervention* Interventions::at(int layer) const {
  if (layer < 0 || size_t(layer) >= layers.size() || layers[size_t(layer)].empty()) return nullptr;
  return &layers[size_t(layer)];
}

LayerIntervention& Interventions::layer(int index, int n_layers) {
  if (layers.size() < size_t(n_layers)) layers.resize(size_t(n_layers));
  return layers.at(size_t(index));
}

int Interventions::max_top_k(const ModelSpec& spec) const {
  int k = spec.moe.top_k;
  for (size_t l = 0; l < layers.size(); ++l)
    if (l < spec.layer_is_moe.size() && spec.layer_is_moe[l] && layers[l].top_k > 0) k = std::max(k, layers[l].top_k);
  return k;
}

void Interventions::validate(const ModelSpec& spec) const {
  const int E = spec.moe.n_experts;
  for (size_t l = 0; l < layers.size(); ++l) {
    const LayerIntervention& v = layers[l];
    if (v.empty()) continue;
    const std::string where = "layer " + std::to_string(l);
    if (l >= size_t(spec.n_layers)) throw EngineError("", "interventions", where + " does not exist (the model has " + std::to_string(spec.n_layers) + " layers)");
    if (!spec.layer_is_moe[l]) throw EngineError("", "interventions", where + " is not an MoE layer (it has a dense MLP)");
    auto check_ids = [&](const std::vector<int32_t>& ids, const char* what) {
      for (int32_t e : ids)
        if (e < 0 || e >= E)
          throw EngineError("", std::string("interventions.") + what, where + ": expert " + std::to_string(e) + " is outside [0, " + std::to_string(E) + ")");
    };
    check_ids(v.masked, "mask");
    check_ids(v.forced, "force");
    for (int32_t e : v.forced)
      if (std::find(v.masked.begin(), v.masked.end(), e) != v.masked.end())
        throw EngineError("", "interventions.force", where + ": expert " + std::to_string(e) + " is both masked and forced");
    const int k = v.top_k > 0 ? v.top_k : spec.moe.top_k;
    if (v.top_k < 0 || k > E)
      throw EngineError("", "interventions.top_k", where + ": top-k " + std::to_string(v.top_k) + " is outside [1, " + std::to_string(E) + "]");
    std::vector<int32_t> forced = v.forced, masked = v.masked;
    std::sort(forced.begin(), forced.end());
    forced.erase(std::unique(forced.begin(), forced.end()), forced.end());
    std::sort(masked.begin(), masked.end());
    masked.erase(std::unique(masked.begin(), masked.end()), masked.end());
    if (int(forced.size()) > k)
      throw EngineError("", "interventions.force", where + ": " + std::to_string(forced.size()) + " forced experts do not fit top-k " + std::to_string(k));
    if (E - int(masked.size()) < k)
      throw EngineError("", "interventions.mask", where + ": masking " + std::to_string(masked.size()) + " of " + std::to_string(E) +
                                                       " experts leaves fewer than top-k " + std::to_string(k));
    if (!v.router_bias.empty() && int(v.router_bias.size()) != E)
      throw EngineError("", "interventions.bias", where + ": " + std::to_string(v.router_bias.size()) + " bias values for " + std::to_string(E) + " experts");
  }
}

std::string Interventions::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  for (size_t l = 0; l < layers.size(); ++l) {
    const LayerIntervention& v = layers[l];
    if (v.empty()) continue;
    nlohmann::json o = nlohmann::json::object();
    if (!v.masked.empty()) o["masked"] = v.masked;
    if (!v.forced.empty()) o["forced"] = v.forced;
    if (v.top_k > 0) o["top_k"] = v.top_k;
    if (!v.router_bias.empty()) o["router_bias"] = v.router_bias;
    j[std::to_string(l)] = o;
  }
  return j.dump();
}

namespace {

[[noreturn]] void bad(const std::string& flag, const std::string& value, const std::string& why) {
  throw EngineError("", flag, "cannot read '" + value + "': " + why);
}

int to_int(const std::string& flag, const std::string& value, std::string_view s) {
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) bad(flag, value, "'" + std::string(s) + "' is not an integer");
  return v;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t b = 0;
  while (true) {
    const size_t e = s.find(sep, b);
    out.push_back(s.substr(b, e == std::string_view::npos ? std::string_view::npos : e - b));
    if (e == std::string_view::npos) break;
    b = e + 1;
  }
  return out;
}

// "all", "3", "0-2", "0,2,5" (ranges and lists can mix) → MoE layer indices. Naming a dense layer
// explicitly is an error later (validate); "all" means every MoE layer.
std::vector<int> parse_layers(const std::string& flag, const std::string& value, std::string_view s, const ModelSpec& spec) {
  std::vector<int> out;
  if (s == "all") {
    for (int l = 0; l < spec.n_layers; ++l)
      if (spec.layer_is_moe[size_t(l)]) out.push_back(l);
    return out;
  }
  for (std::string_view part : split(s, ',')) {
    const size_t dash = part.find('-');
    const int a = to_int(flag, value, part.substr(0, dash));
    const int b = dash == std::string_view::npos ? a : to_int(flag, value, part.substr(dash + 1));
    if (a < 0 || b < a || b >= spec.n_layers)
      bad(flag, value, "layers " + std::string(part) + " are outside [0, " + std::to_string(spec.n_layers) + ")");
    for (int l = a; l <= b; ++l) out.push_back(l);
  }
  return out;
}

}  // namespace

void parse_intervention(const std::string& flag, const std::string& value, const ModelSpec& spec, Interventions& into) {
  const size_t colon = value.find(':');
  std::string_view layers_part = colon == std::string::npos ? std::string_view("all") : std::string_view(value).substr(0, colon);
  std::string_view rest = colon == std::string::npos ? std::string_view(value) : std::string_view(value).substr(colon + 1);
  if (colon == std::string::npos && flag != "--router-top-k") bad(flag, value, "expected LAYERS:VALUES, e.g. all:1,2 or 0-3:5");
  const std::vector<int> layers = parse_layers(flag, value, layers_part, spec);
  for (int l : layers) {
    LayerIntervention& v = into.layer(l, spec.n_layers);
    if (flag == "--router-top-k") {
      v.top_k = rest == "all" || rest == "dense" ? spec.moe.n_experts : to_int(flag, value, rest);
      if (v.top_k < 1) bad(flag, value, "top-k must be at least 1");
    } else if (flag == "--mask" || flag == "--force") {
      auto& ids = flag == "--mask" ? v.masked : v.forced;
      for (std::string_view e : split(rest, ',')) ids.push_back(to_int(flag, value, e));
    } else if (flag == "--router-bias") {
      if (v.router_bias.empty()) v.router_bias.assign(size_t(spec.moe.n_experts), 0.0f);
      for (std::string_view pair : split(rest, ',')) {
        const size_t eq = pair.find('=');
        if (eq == std::string_view::npos) bad(flag, value, "expected EXPERT=VALUE");
        const int e = to_int(flag, value, pair.substr(0, eq));
        if (e < 0 || e >= spec.moe.n_experts) bad(flag, value, "expert " + std::to_string(e) + " is outside the model's experts");
        try {
          v.router_bias[size_t(e)] += std::stof(std::string(pair.substr(eq + 1)));
        } catch (const std::exception&) {
          bad(flag, value, "'" + std::string(pair.substr(eq + 1)) + "' is not a number");
        }
      }
    } else {
      bad(flag, value, "unknown intervention");
    }
  }
}

}  // namespace moe
