#include "engine/tokenizer/sentencepiece_tokenizer.h"

#include <sentencepiece_processor.h>

#include <algorithm>

#include "engine/common/error.h"
#include "engine/formats/text_file.h"
#include "engine/tokenizer/utf8.h"

namespace moe {

namespace {

constexpr std::string_view kMetaSpace = "\xE2\x96\x81";  // U+2581 "▁", SentencePiece's escaped space
constexpr int64_t kMaxTokenId = 1 << 24;

std::string replace_meta_space(const std::string& piece) {
  std::string out;
  out.reserve(piece.size());
  for (size_t i = 0; i < piece.size();) {
    if (piece.compare(i, kMetaSpace.size(), kMetaSpace) == 0) {
      out.push_back(' ');
      i += kMetaSpace.size();
    } else {
      out.push_back(piece[i++]);
    }
  }
  return out;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

std::string read_model_file(const std::filesystem::path& model_file) {
  std::string blob = read_whole_file(model_file);
  if (blob.empty()) throw EngineError(model_file.string(), "", "empty file, not a SentencePiece model");
  return blob;
}

}  // namespace

SentencePieceTokenizer::SentencePieceTokenizer(const std::filesystem::path& model_file)
    : SentencePieceTokenizer(read_model_file(model_file), model_file.string()) {}

SentencePieceTokenizer::SentencePieceTokenizer(const std::string& model_proto, const std::string& name)
    : file_(name), sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {
  const auto status = sp_->LoadFromSerializedProto(model_proto);
  if (!status.ok()) throw EngineError(file_, "ModelProto", "not a SentencePiece model: " + status.ToString());
  model_size_ = sp_->GetPieceSize();
  if (model_size_ <= 0) throw EngineError(file_, "pieces", "the model has no pieces");

  pieces_.resize(size_t(model_size_));
  bytes_.resize(size_t(model_size_));
  special_.assign(size_t(model_size_), 0);
  byte_piece_.assign(size_t(model_size_), 0);
  for (int32_t id = 0; id < model_size_; ++id) {
    const std::string& piece = sp_->IdToPiece(id);
    pieces_[size_t(id)] = piece;
    piece_to_id_.emplace(piece, id);
    if (sp_->IsControl(id) || sp_->IsUnknown(id)) {
      special_[size_t(id)] = 1;
      bytes_[size_t(id)] = piece;
      if (!piece.empty()) matched_.push_back({id, piece, true, false, false, false, false});
    } else if (sp_->IsByte(id)) {
      // "<0xAB>"
      const int hi = piece.size() == 6 ? hex_digit(piece[3]) : -1, lo = piece.size() == 6 ? hex_digit(piece[4]) : -1;
      if (hi < 0 || lo < 0) throw EngineError(file_, "pieces[" + std::to_string(id) + "]", "bad byte piece '" + piece + "'");
      byte_piece_[size_t(id)] = 1;
      bytes_[size_t(id)] = std::string(1, char(hi * 16 + lo));
    } else {
      bytes_[size_t(id)] = replace_meta_space(piece);
    }
  }
  // Whether the normalizer adds the dummy "▁" prefix: look at how a lone letter comes out.
  std::vector<std::string> probe;
  if (sp_->Encode("a", &probe).ok() && !probe.empty())
    dummy_prefix_ = probe[0].compare(0, kMetaSpace.size(), kMetaSpace) == 0 || probe[0] == "<0xE2>";
  if (sp_->bos_id() >= 0 && sp_->bos_id() < model_size_) bos_id_ = sp_->bos_id();
  if (sp_->eos_id() >= 0 && sp_->eos_id() < model_size_) eos_ids_ = {sp_->eos_id()};
  rebuild_matcher();
}

SentencePieceTokenizer::~SentencePieceTokenizer() = default;

void SentencePieceTokenizer::rebuild_matcher() { matcher_ = detail::AddedTokenMatcher(matched_); }

void SentencePieceTokenizer::set_eos_ids(std::vector<int32_t> ids) {
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  eos_ids_ = std::move(ids);
}

void SentencePieceTokenizer::set_stand_in_text(int32_t id, const std::string& text, bool special) {
  if (id < 0 || id >= model_size_) return;
  const auto it = piece_to_id_.find(pieces_[size_t(id)]);
  if (it != piece_to_id_.end() && it->second == id) piece_to_id_.erase(it);
  pieces_[size_t(id)] = text;
  bytes_[size_t(id)] = special ? text : replace_meta_space(text);
  special_[size_t(id)] = special ? 1 : 0;
}

void SentencePieceTokenizer::apply_config(const detail::TokenizerConfig& cfg) {
  if (!cfg.present) return;
  for (const auto& t : cfg.added_tokens) {
    if (t.id >= kMaxTokenId) throw EngineError(cfg.file, "added_tokens_decoder", "id out of range");
    if (t.id < model_size_ && pieces_[size_t(t.id)] == t.content) {
      // A model piece: the config may flag it special. Control pieces stay special whatever it says.
      if (t.special) special_[size_t(t.id)] = 1;
      bool listed = false;
      for (const auto& m : matched_) listed |= m.content == t.content;
      if (!listed) matched_.push_back(t);
      continue;
    }
    if (t.id >= int32_t(pieces_.size())) {
      pieces_.resize(size_t(t.id) + 1);
      bytes_.resize(size_t(t.id) + 1);
      special_.resize(size_t(t.id) + 1, 0);
      byte_piece_.resize(size_t(t.id) + 1, 0);
    }
    pieces_[size_t(t.id)] = t.content;
    bytes_[size_t(t.id)] = t.content;
    special_[size_t(t.id)] = t.special ? 1 : 0;
    piece_to_id_[t.content] = t.id;
    matched_.push_back(t);
  }
  rebuild_matcher();
  auto lookup = [&](const std::string& token, const char* field) -> int32_t {
    const auto id = token_to_id(token);
    if (!id) throw EngineError(cfg.file, field, "'" + token + "' is not a piece of " + file_);
    return *id;
  };
  if (cfg.has_bos_token) bos_id_ = cfg.bos_token ? std::optional<int32_t>(lookup(*cfg.bos_token, "bos_token")) : std::nullopt;
  if (cfg.add_bos_token) add_bos_ = *cfg.add_bos_token;
  if (cfg.has_eos_token) {
    eos_ids_.clear();
    if (cfg.eos_token) eos_ids_.push_back(lookup(*cfg.eos_token, "eos_token"));
  }
}

std::vector<int32_t> SentencePieceTokenizer::encode(std::string_view text, bool add_special) const {
  std::vector<int32_t> ids;
  if (add_special && add_bos_ && bos_id_) ids.push_back(*bos_id_);
  std::string repaired;
  if (!utf8::is_valid(text)) {
    repaired = utf8::lossy(text);
    text = repaired;
  }
  std::vector<int> segment_ids;
  for (const detail::TextPiece& piece : matcher_.split(text)) {
    if (piece.id >= 0) {
      ids.push_back(piece.id);
      continue;
    }
    segment_ids.clear();
    if (!sp_->Encode(piece.text, &segment_ids).ok()) continue;
    ids.insert(ids.end(), segment_ids.begin(), segment_ids.end());
  }
  if (add_special && appended_eos_) ids.push_back(*appended_eos_);
  return ids;
}

std::string SentencePieceTokenizer::token_bytes(int32_t id, int32_t previous) const {
  if (id < 0 || id >= size()) return {};
  const std::string& bytes = bytes_[size_t(id)];
  if (previous < 0 && dummy_prefix_ && !bytes.empty() && bytes[0] == ' ') return bytes.substr(1);
  return bytes;
}

std::string SentencePieceTokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  return detail::decode_token_bytes(*this, ids, skip_special);
}

std::optional<int32_t> SentencePieceTokenizer::token_to_id(std::string_view token) const {
  const auto it = piece_to_id_.find(std::string(token));
  if (it == piece_to_id_.end()) return std::nullopt;
  return it->second;
}

std::string SentencePieceTokenizer::id_to_token(int32_t id) const {
  if (id < 0 || id >= size()) return {};
  return pieces_[size_t(id)];
}

bool SentencePieceTokenizer::is_special(int32_t id) const {
  return id >= 0 && id < size() && special_[size_t(id)];
}

}  // namespace moe
