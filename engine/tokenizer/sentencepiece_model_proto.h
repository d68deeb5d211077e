#pragma once
// A SentencePiece ModelProto (sentencepiece_model.proto) written by hand, for vocabularies that come without a
// tokenizer.model, such as a GGUF file's tokenizer.ggml.* keys: libsentencepiece reads the bytes with
// LoadFromSerializedProto. Only what encoding reads is written: the pieces; a BPE trainer_spec with byte fallback
// and the special ids; a normalizer_spec with no character map ("identity"), so the text is only escaped ("▁" for
// spaces), optionally given a dummy "▁" prefix and stripped of extra whitespace.
//
// No protobuf library: the wire format is small. Each field is a key varint (field number << 3 | wire type)
// then its value: a varint (0), 4 little-endian bytes (5: float), or a length varint and the bytes (2: strings
// and nested messages).
#include <cstdint>
#include <string>
#include <vector>

namespace moe {

// ModelProto.SentencePiece.Type (llama.cpp's token_type uses the same numbers).
enum class SentencePieceType : int32_t {
  Normal = 1,
  Unknown = 2,      // exactly one: what text the model cannot spell becomes, when byte fallback cannot
  Control = 3,      // <s>, </s>: never produced from text by SentencePiece itself
  UserDefined = 4,  // always one piece where it occurs
  Unused = 5,       // in the vocabulary, never produced (a merge that would form it is undone)
  Byte = 6,         // <0x00> … <0xFF>, all 256 or none
};

struct SentencePieceModelSpec {
  struct Piece {
    std::string text;  // non-empty, unique among Normal/UserDefined/Unused, and among Unknown/Control/Byte
    float score = 0;   // BPE merges the adjacent pair whose joined piece has the highest score first
    SentencePieceType type = SentencePieceType::Normal;
  };
  std::vector<Piece> pieces;  // id → piece
  // trainer_spec's special ids (-1: none); SentencePiece finds BOS/EOS/PAD by the piece text at them.
  int32_t unk_id = 0, bos_id = -1, eos_id = -1, pad_id = -1;
  bool add_dummy_prefix = true;           // "▁" before the text, so a first word is spelled like a later one
  bool remove_extra_whitespaces = false;  // strip leading/trailing spaces, collapse runs of them
};

// The serialized ModelProto: a BPE model, byte_fallback set when there are Byte pieces.
std::string serialize_sentencepiece_model(const SentencePieceModelSpec& spec);

}  // namespace moe
