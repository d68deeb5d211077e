#include "engine/tokenizer/tokenizer.h"

#include "engine/common/error.h"
#include "engine/formats/json_file.h"
#include "engine/tokenizer/bpe_tokenizer.h"
#include "engine/tokenizer/gguf_tokenizer.h"
#include "engine/tokenizer/sentencepiece_tokenizer.h"
#include "engine/tokenizer/special_tokens.h"
#include "engine/tokenizer/tiktoken_tokenizer.h"
#include "engine/tokenizer/utf8.h"

namespace moe {

namespace {

// The Python file that defines a tiktoken tokenizer's split pattern: the module auto_map.AutoTokenizer names
// ("tokenization_kimi.TikTokenTokenizer" → tokenization_kimi.py; "owner/repo--module.Class" → module.py).
std::filesystem::path tiktoken_python_file(const std::filesystem::path& dir, const detail::TokenizerConfig& config) {
  if (!config.present)
    throw EngineError((dir / "tokenizer_config.json").string(), "",
                      "file not found; tiktoken.model needs it to name the Python file with its split pattern");
  if (!config.auto_tokenizer)
    throw EngineError(config.file, "auto_map.AutoTokenizer",
                      "missing (or not a class name); tiktoken.model needs it to name the Python file with "
                      "its split pattern");
  std::string name = *config.auto_tokenizer;
  if (const size_t repo = name.rfind("--"); repo != std::string::npos) name.erase(0, repo + 2);
  const size_t dot = name.rfind('.');
  if (dot == std::string::npos || dot == 0 || name.find('/') != std::string::npos)
    throw EngineError(config.file, "auto_map.AutoTokenizer", "expected module.Class, got '" + *config.auto_tokenizer + "'");
  const auto file = dir / (name.substr(0, dot) + ".py");
  std::error_code ec;
  if (!std::filesystem::exists(file, ec))
    throw EngineError(file.string(), "", "file not found (auto_map.AutoTokenizer in " + config.file + " names it)");
  return file;
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::load(const std::filesystem::path& model_dir) {
  if (is_gguf_file(model_dir)) return load_gguf_tokenizer(*GgufFile::open(model_dir));
  std::error_code ec;
  if (!std::filesystem::is_directory(model_dir, ec))
    throw EngineError(model_dir.string(), "", "not a folder (expected a model folder with tokenizer files)");
  const auto json_path = model_dir / "tokenizer.json";
  const auto spm_path = model_dir / "tokenizer.model";
  const auto tiktoken_path = model_dir / "tiktoken.model";
  const bool has_json = std::filesystem::exists(json_path, ec);
  const bool has_spm = std::filesystem::exists(spm_path, ec);
  const detail::TokenizerConfig config = detail::read_tokenizer_config(model_dir);

  if (has_json) {
    const std::string file = json_path.string();
    const nlohmann::json j = load_json_file(json_path);  // broken JSON is an error even if tokenizer.model exists
    if (!j.is_object()) throw EngineError(file, "", "expected a JSON object");
    if (!j.contains("model") || j["model"].is_null()) throw EngineError(file, "model", "missing");
    if (!j["model"].is_object()) throw EngineError(file, "model", "expected an object");
    if (BpeTokenizer::is_byte_level(j)) {
      auto tok = std::make_unique<BpeTokenizer>(j, file);
      tok->apply_config(config);
      return tok;
    }
    if (!has_spm) {
      // Either a model type we do not know (reported as such by the BPE reader) or a SentencePiece-style
      // tokenizer.json (BPE with byte fallback, Metaspace) that we read from tokenizer.model only.
      const auto& model = j["model"];
      const bool bpe = model.contains("type") && model["type"].is_string() && model["type"].get<std::string>() == "BPE";
      if (!bpe) (void)BpeTokenizer(j, file);  // throws the precise error (model.type, model.vocab …)
      throw EngineError(file, "pre_tokenizer",
                        "a BPE tokenizer.json that is not byte-level (SentencePiece style) needs tokenizer.model "
                        "next to it");
    }
  }
  if (std::filesystem::exists(tiktoken_path, ec))
    return std::make_unique<TiktokenTokenizer>(tiktoken_path, tiktoken_python_file(model_dir, config), config);
  if (has_spm) {
    auto tok = std::make_unique<SentencePieceTokenizer>(spm_path);
    tok->apply_config(config);
    return tok;
  }
  throw EngineError(json_path.string(), "", "file not found (none of tokenizer.json, tiktoken.model and tokenizer.model is in the folder)");
}

StreamDecoder::StreamDecoder(const Tokenizer& tok, bool skip_special) : tok_(tok), skip_special_(skip_special) {}

std::string StreamDecoder::push(int32_t id) {
  if (skip_special_ && tok_.is_special(id)) return {};
  pending_ += tok_.token_bytes(id, previous_);
  previous_ = id;
  std::string out;
  const size_t used = utf8::sanitize(pending_, /*at_end=*/false, out);
  pending_.erase(0, used);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  utf8::sanitize(pending_, /*at_end=*/true, out);
  pending_.clear();
  return out;
}

}  // namespace moe
