#include "engine/tokenizer/sentencepiece_model_proto.h"

#include <cstring>
#include <string_view>

namespace moe {

namespace {

// Field numbers, from sentencepiece_model.proto (google/sentencepiece, src/).
namespace model_proto {
constexpr uint32_t kPieces = 1;          // repeated SentencePiece
constexpr uint32_t kTrainerSpec = 2;     // TrainerSpec
constexpr uint32_t kNormalizerSpec = 3;  // NormalizerSpec
}  // namespace model_proto
namespace piece {
constexpr uint32_t kPiece = 1;  // string
constexpr uint32_t kScore = 2;  // float
constexpr uint32_t kType = 3;   // Type enum, default NORMAL
}  // namespace piece
namespace trainer_spec {
constexpr uint32_t kModelType = 3;      // ModelType enum, default UNIGRAM (1); BPE is 2
constexpr uint32_t kVocabSize = 4;      // int32
constexpr uint32_t kByteFallback = 35;  // bool, default false
constexpr uint32_t kUnkId = 40;         // int32, default 0
constexpr uint32_t kBosId = 41;         // int32, default 1
constexpr uint32_t kEosId = 42;         // int32, default 2
constexpr uint32_t kPadId = 43;         // int32, default -1
constexpr uint32_t kUnkPiece = 45;      // string, default "<unk>"
constexpr uint32_t kBosPiece = 46;      // string, default "<s>": SentencePieceProcessor::bos_id() looks it up
constexpr uint32_t kEosPiece = 47;      // string, default "</s>"
constexpr uint32_t kPadPiece = 48;      // string, default "<pad>"
constexpr int32_t kBpe = 2;
}  // namespace trainer_spec
namespace normalizer_spec {
constexpr uint32_t kName = 1;                    // string
constexpr uint32_t kAddDummyPrefix = 3;          // bool, default true
constexpr uint32_t kRemoveExtraWhitespaces = 4;  // bool, default true
constexpr uint32_t kEscapeWhitespaces = 5;       // bool, default true
}  // namespace normalizer_spec

// Wire types.
constexpr uint32_t kVarint = 0, kLengthDelimited = 2, kFixed32 = 5;

void put_varint(std::string& out, uint64_t v) {
  for (; v >= 0x80; v >>= 7) out.push_back(char(uint8_t(v) | 0x80));
  out.push_back(char(v));
}

void put_key(std::string& out, uint32_t field, uint32_t wire_type) {
  put_varint(out, uint64_t(field) << 3 | wire_type);
}

// int32, enum and bool fields. A negative int32 is sign-extended to 64 bits (ten bytes), as protobuf writes it.
void put_int(std::string& out, uint32_t field, int64_t v) {
  put_key(out, field, kVarint);
  put_varint(out, uint64_t(v));
}

void put_float(std::string& out, uint32_t field, float v) {
  put_key(out, field, kFixed32);
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  for (int i = 0; i < 4; ++i) out.push_back(char(uint8_t(bits >> (8 * i))));
}

// Strings, bytes and nested messages.
void put_bytes(std::string& out, uint32_t field, std::string_view bytes) {
  put_key(out, field, kLengthDelimited);
  put_varint(out, bytes.size());
  out.append(bytes);
}

std::string piece_text_at(const SentencePieceModelSpec& spec, int32_t id) {
  return id >= 0 && size_t(id) < spec.pieces.size() ? spec.pieces[size_t(id)].text : std::string();
}

}  // namespace

std::string serialize_sentencepiece_model(const SentencePieceModelSpec& spec) {
  std::string out, message;
  bool byte_pieces = false;
  for (const auto& p : spec.pieces) {
    message.clear();
    put_bytes(message, piece::kPiece, p.text);
    put_float(message, piece::kScore, p.score);
    put_int(message, piece::kType, int32_t(p.type));
    put_bytes(out, model_proto::kPieces, message);
    byte_pieces |= p.type == SentencePieceType::Byte;
  }

  message.clear();
  put_int(message, trainer_spec::kModelType, trainer_spec::kBpe);
  put_int(message, trainer_spec::kVocabSize, int64_t(spec.pieces.size()));
  put_int(message, trainer_spec::kByteFallback, byte_pieces);
  put_int(message, trainer_spec::kUnkId, spec.unk_id);
  put_int(message, trainer_spec::kBosId, spec.bos_id);
  put_int(message, trainer_spec::kEosId, spec.eos_id);
  put_int(message, trainer_spec::kPadId, spec.pad_id);
  // An absent id gets an empty piece text, which no piece has, so the processor reports none.
  put_bytes(message, trainer_spec::kUnkPiece, piece_text_at(spec, spec.unk_id));
  put_bytes(message, trainer_spec::kBosPiece, piece_text_at(spec, spec.bos_id));
  put_bytes(message, trainer_spec::kEosPiece, piece_text_at(spec, spec.eos_id));
  put_bytes(message, trainer_spec::kPadPiece, piece_text_at(spec, spec.pad_id));
  put_bytes(out, model_proto::kTrainerSpec, message);

  message.clear();
  put_bytes(message, normalizer_spec::kName, "identity");
  put_int(message, normalizer_spec::kAddDummyPrefix, spec.add_dummy_prefix);
  put_int(message, normalizer_spec::kRemoveExtraWhitespaces, spec.remove_extra_whitespaces);
  put_int(message, normalizer_spec::kEscapeWhitespaces, true);
  put_bytes(out, model_proto::kNormalizerSpec, message);
  return out;
}

}  // namespace moe
