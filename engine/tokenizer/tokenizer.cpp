#include "engine/tokenizer/tokenizer.h"

#include "engine/common/error.h"
#include "engine/formats/json_file.h"
#include "engine/tokenizer/bpe_tokenizer.h"
#include "engine/tokenizer/sentencepiece_tokenizer.h"
#include "engine/tokenizer/special_tokens.h"
#include "engine/tokenizer/utf8.h"

namespace moe {

std::unique_ptr<Tokenizer> Tokenizer::load(const std::filesystem::path& model_dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(model_dir, ec))
    throw EngineError(model_dir.string(), "", "not a folder (expected a model folder with tokenizer files)");
  const auto json_path = model_dir / "tokenizer.json";
  const auto spm_path = model_dir / "tokenizer.model";
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
  if (has_spm) {
    auto tok = std::make_unique<SentencePieceTokenizer>(spm_path);
    tok->apply_config(config);
    return tok;
  }
  throw EngineError(json_path.string(), "", "file not found (neither tokenizer.json nor tokenizer.model is in the folder)");
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
