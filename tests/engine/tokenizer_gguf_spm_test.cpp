// SentencePiece from a GGUF file (tokenizer.ggml.model "llama": Llama 2, Mistral, Mixtral). The committed
// tests/data/tokenizers/spm/tokenizer.gguf holds spm/tokenizer.model converted the way llama.cpp's
// convert_hf_to_gguf.py converts it, plus added tokens 400 <|im_start|> and 401 <|im_end|> (control), 402 <think>
// and 403 </think> (user-defined) and the padding id 404; gguf_spm_expected.json holds the reference ids
// (tests/make_gguf_tokenizers.py says where they come from, and where transformers' own GGUF reader differs).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "engine/common/error.h"
#include "engine/formats/gguf.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/sentencepiece_model_proto.h"
#include "engine/tokenizer/tokenizer.h"
#include "tests/support/gguf_builder.h"
#include "tests/support/test_support.h"

namespace fs = std::filesystem;
using nlohmann::json;

using moe::test::GgufBuilder;
using moe::test::ids_of;
using moe::test::ScratchDir;
using moe::test::error_of;

namespace {

const fs::path kData = moe::test::tokenizer_data();
const fs::path kGguf = kData / "spm" / "tokenizer.gguf";

const json& expected() {
  static const json j = moe::test::read_json(kData / "gguf_spm_expected.json");
  return j;
}

// The added tokens of the GGUF file, and the tokenizer.model's special pieces.
const char* const kAddedTexts[] = {"<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"};

bool has_added_token(const std::string& text) {
  return std::any_of(std::begin(kAddedTexts), std::end(kAddedTexts),
                     [&](const char* t) { return text.find(t) != std::string::npos; });
}


// The committed file with one thing changed, written to a scratch folder and loaded.
class GgufVariant {
 public:
  GgufVariant() : builder(GgufBuilder::from_file(*moe::GgufFile::open(kGguf))) {}
  json& meta(const std::string& key) { return builder.metadata[key]; }
  fs::path write() { return dir.write("variant.gguf", builder.bytes()); }
  std::unique_ptr<moe::Tokenizer> load() { return moe::Tokenizer::load(write()); }
  std::string error() {
    const fs::path p = write();
    return error_of([&] { moe::Tokenizer::load(p); });
  }
  GgufBuilder builder;
  ScratchDir dir;
};

// The ModelProto writer against protobuf's own serializer: the hex is what Python's protobuf writes for the same
// message (sentencepiece_model_pb2.ModelProto with these fields set, SerializeToString), every field number,
// wire type, the float bytes and the ten-byte varint of -1 included.
TEST(GgufSentencePiece, ModelProtoBytesAreProtobufs) {
  using moe::SentencePieceType;
  moe::SentencePieceModelSpec spec;
  spec.pieces = {{"<unk>", 0.0f, SentencePieceType::Unknown},
                 {"<s>", 0.0f, SentencePieceType::Control},
                 {"\xE2\x96\x81" "a", -1.5f, SentencePieceType::Normal},
                 {"<0x41>", 0.0f, SentencePieceType::Byte}};
  spec.unk_id = 0;
  spec.bos_id = 1;
  spec.eos_id = -1;
  spec.pad_id = -1;
  spec.add_dummy_prefix = false;
  spec.remove_extra_whitespaces = true;
  const std::string protobuf_hex =
      "0a0e0a053c756e6b3e150000000018020a0c0a033c733e150000000018030a0d0a04e2968161150000c0bf18010a0f0a063c3078"
      "34313e15000000001806123918022004980201c00200c80201d002ffffffffffffffffff01d802ffffffffffffffffff01ea0205"
      "3c756e6b3ef202033c733efa02008203001a100a086964656e74697479180020012801";
  std::string hex;
  for (unsigned char c : moe::serialize_sentencepiece_model(spec)) {
    const char digits[] = "0123456789abcdef";
    hex += digits[c >> 4];
    hex += digits[c & 15];
  }
  EXPECT_EQ(hex, protobuf_hex);
}

TEST(GgufSentencePiece, IdsAndDecodeMatchReference) {
  const auto tok = moe::Tokenizer::load(kGguf);
  ASSERT_EQ(tok->kind(), "SentencePiece BPE");
  ASSERT_GE(expected()["cases"].size(), 45u);
  for (const auto& c : expected()["cases"]) {
    const std::string text = c["text"];
    SCOPED_TRACE("text: " + json(text).dump());
    const auto want = ids_of(c["ids"]);
    EXPECT_EQ(tok->encode(text), want);
    EXPECT_EQ(tok->encode(text, /*add_special=*/false), ids_of(c["ids_no_bos"]));
    EXPECT_EQ(tok->decode(want), c["decoded"].get<std::string>());
    EXPECT_EQ(tok->decode(want, /*skip_special=*/true), c["decoded_skip_special"].get<std::string>());
  }
}

TEST(GgufSentencePiece, TextWithoutAddedTokensRoundTrips) {
  const auto tok = moe::Tokenizer::load(kGguf);
  int checked = 0;
  for (const auto& c : expected()["cases"]) {
    const std::string text = c["text"];
    if (has_added_token(text)) continue;
    EXPECT_EQ(tok->decode(tok->encode(text), /*skip_special=*/true), text) << json(text).dump();
    ++checked;
  }
  EXPECT_GE(checked, 35);
}

TEST(GgufSentencePiece, SizeSpecialsAndStops) {
  const auto tok = moe::Tokenizer::load(kGguf);
  EXPECT_EQ(tok->size(), expected()["size"].get<int32_t>());
  EXPECT_EQ(tok->size(), 405);
  EXPECT_EQ(tok->bos_id(), 1);
  // </s> ends a turn, and so does <|im_end|>, a control token llama.cpp counts as end of generation.
  EXPECT_EQ(tok->eos_ids(), (std::vector<int32_t>{2, 401}));
  EXPECT_EQ(tok->encode(""), std::vector<int32_t>{1});
  EXPECT_TRUE(tok->encode("", false).empty());
  for (int32_t id : {0, 1, 2, 400, 401}) EXPECT_TRUE(tok->is_special(id)) << id;
  for (int32_t id : {3, 100, 259, 402, 403, 404}) EXPECT_FALSE(tok->is_special(id)) << id;
  EXPECT_EQ(tok->token_to_id("<|im_start|>"), 400);
  EXPECT_EQ(tok->token_to_id("</think>"), 403);
  EXPECT_EQ(tok->id_to_token(3), "<0x00>");
  EXPECT_EQ(tok->token_bytes(3 + 0x41, 1), "A");
  EXPECT_EQ(tok->id_to_token(404), "[PAD404]");
  // The padding id is never produced, not even from its own text.
  for (const auto& c : expected()["cases"])
    for (int32_t id : ids_of(c["ids"])) EXPECT_NE(id, 404) << c["text"];
  const auto ids = tok->encode("[PAD404]", false);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 404), 0);
}

TEST(GgufSentencePiece, SameIdsAsTheTokenizerModelFolder) {
  // The checkpoint the GGUF file was converted from: tokenizer.model, and a tokenizer_config.json with the
  // same added tokens.
  ScratchDir dir;
  fs::copy_file(kData / "spm" / "tokenizer.model", dir / "tokenizer.model");
  json config = moe::test::read_json(kData / "spm" / "tokenizer_config.json");
  const json added = {{"400", "<|im_start|>", true}, {"401", "<|im_end|>", true}, {"402", "<think>", false},
                      {"403", "</think>", false}};
  for (const auto& t : added)
    config["added_tokens_decoder"][t[0].get<std::string>()] = {{"content", t[1]}, {"special", t[2]}};
  dir.write("tokenizer_config.json", config.dump());
  const auto folder = moe::Tokenizer::load(dir.path);
  const auto gguf = moe::Tokenizer::load(kGguf);
  EXPECT_EQ(gguf->kind(), folder->kind());
  EXPECT_EQ(gguf->size(), folder->size() + 1) << "the padding id past the folder's tokens";
  for (const auto& c : expected()["cases"]) {
    const std::string text = c["text"];
    const auto ids = folder->encode(text);
    EXPECT_EQ(gguf->encode(text), ids) << json(text).dump();
    EXPECT_EQ(gguf->encode(text, false), folder->encode(text, false)) << json(text).dump();
    EXPECT_EQ(gguf->decode(ids), folder->decode(ids)) << json(text).dump();
  }
  for (int32_t id = 0; id < folder->size(); ++id) {
    EXPECT_EQ(gguf->id_to_token(id), folder->id_to_token(id)) << id;
    EXPECT_EQ(gguf->is_special(id), folder->is_special(id)) << id;
    EXPECT_EQ(gguf->token_bytes(id, 1), folder->token_bytes(id, 1)) << id;
  }
  EXPECT_EQ(gguf->bos_id(), folder->bos_id());

  // And the chat template it carries renders the same prompt.
  const auto a = moe::ChatTemplate::from_model_dir(kData / "spm"), b = moe::ChatTemplate::from_model_dir(kGguf);
  EXPECT_EQ(b.format_name(), a.format_name());
  const std::vector<moe::ChatMessage> msgs = {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello."},
                                              {"user", "4821 + 739?"}};
  EXPECT_EQ(b.render(msgs, true), a.render(msgs, true));
}

// Files made by llama.cpp's older convert.py keep <unk> UNKNOWN (type 2) instead of CONTROL.
TEST(GgufSentencePiece, UnknownTypedUnkReadsTheSame) {
  GgufVariant v;
  v.meta("tokenizer.ggml.token_type")[0] = 2;
  v.builder.metadata.erase("tokenizer.ggml.unknown_token_id");
  const auto tok = v.load();
  EXPECT_TRUE(tok->is_special(0));
  for (const auto& c : expected()["cases"]) EXPECT_EQ(tok->encode(c["text"].get<std::string>()), ids_of(c["ids"]));
}

TEST(GgufSentencePiece, BosEosAndPrefixFlags) {
  {
    GgufVariant v;
    v.meta("tokenizer.ggml.add_bos_token") = false;
    EXPECT_EQ(v.load()->encode("hi"), moe::Tokenizer::load(kGguf)->encode("hi", false));
  }
  {
    GgufVariant v;  // add_bos_token absent: llama.cpp and transformers add BOS to a SentencePiece vocabulary
    v.builder.metadata.erase("tokenizer.ggml.add_bos_token");
    EXPECT_EQ(v.load()->encode("hi").front(), 1);
  }
  {
    GgufVariant v;  // add_eos_token absent: no EOS
    v.builder.metadata.erase("tokenizer.ggml.add_eos_token");
    EXPECT_EQ(v.load()->encode("hi"), moe::Tokenizer::load(kGguf)->encode("hi"));
  }
  {
    GgufVariant v;
    v.meta("tokenizer.ggml.add_eos_token") = true;
    const auto tok = v.load();
    const auto ids = tok->encode("hi");
    EXPECT_EQ(ids.front(), 1);
    EXPECT_EQ(ids.back(), 2);
    EXPECT_EQ(tok->encode("hi", false), moe::Tokenizer::load(kGguf)->encode("hi", false)) << "no EOS without specials";
  }
  {
    GgufVariant v;
    v.meta("tokenizer.ggml.eot_token_id") = 400;
    v.meta("tokenizer.ggml.eom_token_id") = 403;
    EXPECT_EQ(v.load()->eos_ids(), (std::vector<int32_t>{2, 400, 401, 403}));
  }
  {
    GgufVariant v;  // add_space_prefix and remove_extra_whitespaces absent: llama.cpp's defaults, true and false
    v.builder.metadata.erase("tokenizer.ggml.add_space_prefix");
    v.builder.metadata.erase("tokenizer.ggml.remove_extra_whitespaces");
    const auto tok = v.load();
    for (const auto& c : expected()["cases"]) EXPECT_EQ(tok->encode(c["text"].get<std::string>()), ids_of(c["ids"]));
  }
  {
    GgufVariant v;  // no dummy prefix: a first word is spelled without "▁", and decoding keeps a leading space
    v.meta("tokenizer.ggml.add_space_prefix") = false;
    const auto tok = v.load();
    const auto ids = tok->encode("Hello world", false);
    ASSERT_FALSE(ids.empty());
    EXPECT_NE(tok->id_to_token(ids[0]).rfind("\xE2\x96\x81", 0), 0u) << tok->id_to_token(ids[0]);
    EXPECT_NE(ids, moe::Tokenizer::load(kGguf)->encode("Hello world", false));
    for (const char* text : {"Hello world", " Hello world", "a  b"})
      EXPECT_EQ(tok->decode(tok->encode(text), true), text);
  }
  {
    GgufVariant v;
    v.meta("tokenizer.ggml.remove_extra_whitespaces") = true;
    const auto tok = v.load();
    EXPECT_EQ(tok->encode("  multiple    spaces   here "), tok->encode("multiple spaces here"));
  }
}

// A ModelProto cannot hold an empty piece or one text twice; such GGUF tokens keep their id and text.
TEST(GgufSentencePiece, RepeatedAndEmptyTokensKeepTheirIds) {
  const auto reference = moe::Tokenizer::load(kGguf);
  const std::string repeated = reference->id_to_token(300);
  GgufVariant v;
  v.meta("tokenizer.ggml.tokens")[404] = repeated;
  v.meta("tokenizer.ggml.token_type")[404] = 1;
  v.meta("tokenizer.ggml.tokens")[403] = "</s>";  // a control token's text again, as a control token
  v.meta("tokenizer.ggml.token_type")[403] = 3;
  v.meta("tokenizer.ggml.tokens")[402] = "";
  const auto tok = v.load();
  EXPECT_EQ(tok->size(), 405);
  EXPECT_EQ(tok->id_to_token(404), repeated);
  EXPECT_EQ(tok->token_to_id(repeated), 300) << "the first id keeps the text";
  EXPECT_EQ(tok->id_to_token(403), "</s>");
  EXPECT_EQ(tok->token_to_id("</s>"), 2);
  EXPECT_TRUE(tok->is_special(403));
  EXPECT_EQ(tok->id_to_token(402), "");
  EXPECT_EQ(tok->token_to_id("<gguf token 404>"), std::nullopt) << "the stand-in piece is not a token";
  EXPECT_EQ(tok->decode(std::vector<int32_t>{1, 404}, true), reference->decode(std::vector<int32_t>{1, 300}, true));
  for (const auto& c : expected()["cases"]) {
    const std::string text = c["text"];
    if (text.find("think>") != std::string::npos) continue;  // 402 and 403 are no longer <think> and </think>
    EXPECT_EQ(tok->encode(text), ids_of(c["ids"])) << json(text).dump();
  }
}

// An unused token is never produced, even where BPE's merges would form it: SentencePiece splits it back.
TEST(GgufSentencePiece, UnusedTokensAreNeverProduced) {
  const auto reference = moe::Tokenizer::load(kGguf);
  const std::string text = "The quick brown fox jumps over the lazy dog.";
  // The normal pieces (past <unk> <s> </s> and the 256 byte pieces) of more than one character the text is spelled
  // with: a single character has nothing to split into.
  const auto characters = [](const std::string& s) {
    return std::count_if(s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; });
  };
  std::vector<int32_t> formed;
  for (int32_t id : reference->encode(text, false))
    if (id >= 3 + 256 && characters(reference->id_to_token(id)) > 1 && !std::count(formed.begin(), formed.end(), id))
      formed.push_back(id);
  ASSERT_GE(formed.size(), 3u);
  GgufVariant v;
  for (int32_t id : formed) v.meta("tokenizer.ggml.token_type")[size_t(id)] = 5;
  const auto tok = v.load();
  const auto ids = tok->encode(text, false);
  for (int32_t id : formed) EXPECT_EQ(std::count(ids.begin(), ids.end(), id), 0) << reference->id_to_token(id);
  EXPECT_GT(ids.size(), reference->encode(text, false).size());
  EXPECT_EQ(tok->decode(ids), text);
}

TEST(GgufSentencePiece, ErrorsNameTheFileAndTheKey) {
  const auto check = [](GgufVariant& v, const std::string& key, const std::string& message) {
    const std::string error = v.error();
    EXPECT_NE(error.find((v.dir / "variant.gguf").string()), std::string::npos) << error;
    EXPECT_NE(error.find("'" + key + "': " + message), std::string::npos) << error;
  };
  {
    GgufVariant v;
    v.builder.metadata.erase("tokenizer.ggml.scores");
    check(v, "tokenizer.ggml.scores", "missing");
  }
  {
    GgufVariant v;
    v.builder.metadata.erase("tokenizer.ggml.token_type");
    check(v, "tokenizer.ggml.token_type", "missing");
  }
  {
    GgufVariant v;
    v.meta("tokenizer.ggml.scores").erase(404);
    check(v, "tokenizer.ggml.scores", "has 404 entries for 405 tokens");
  }
  {
    GgufVariant v;
    v.meta("tokenizer.ggml.token_type").push_back(1);
    check(v, "tokenizer.ggml.token_type", "has 406 entries for 405 tokens");
  }
  {
    GgufVariant v;
    v.meta("tokenizer.ggml.scores") = json::array();
    for (int i = 0; i < 405; ++i) v.meta("tokenizer.ggml.scores").push_back("0.5");
    check(v, "tokenizer.ggml.scores[0]", "expected scores");
  }
  {
    GgufVariant v;
    v.meta("tokenizer.ggml.tokens") = json::array();
    for (int i = 0; i < 405; ++i) v.meta("tokenizer.ggml.tokens").push_back(i);
    check(v, "tokenizer.ggml.tokens[0]", "expected token strings");
  }
  {
    GgufVariant v;
    v.meta("tokenizer.ggml.token_type") = json::array();
    for (int i = 0; i < 405; ++i) v.meta("tokenizer.ggml.token_type").push_back(1.5);
    check(v, "tokenizer.ggml.token_type[0]", "expected token types");
  }
  for (int bad : {0, 7, -1}) {
    GgufVariant v;
    v.meta("tokenizer.ggml.token_type")[300] = bad;
    check(v, "tokenizer.ggml.token_type[300]", "token type " + std::to_string(bad) + " is not one of");
  }
  for (const char* key : {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                          "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id",
                          "tokenizer.ggml.eot_token_id"}) {
    GgufVariant v;
    v.meta(key) = 405;
    check(v, key, "token id 405 is past the 405 tokens");
  }
  {
    GgufVariant v;  // <unk> is CONTROL in this file: without unknown_token_id nothing says which token it is
    v.builder.metadata.erase("tokenizer.ggml.unknown_token_id");
    check(v, "tokenizer.ggml.unknown_token_id", "missing, and no token has type 2 (unknown)");
  }
  {
    GgufVariant v;
    v.meta("tokenizer.ggml.token_type")[0] = 2;
    v.meta("tokenizer.ggml.token_type")[300] = 2;
    check(v, "tokenizer.ggml.token_type", "2 tokens have type 2 (unknown)");
  }
  {
    GgufVariant v;
    v.meta("tokenizer.ggml.tokens")[3 + 0x41] = "<0x4g>";
    check(v, "tokenizer.ggml.tokens[68]", "byte token '<0x4g>' is not spelled <0xXX>");
  }
  {
    GgufVariant v;
    v.meta("tokenizer.ggml.token_type")[3 + 0x41] = 1;
    check(v, "tokenizer.ggml.token_type", "byte tokens (type 6) cover 255 of the 256 bytes");
  }
}

}  // namespace
