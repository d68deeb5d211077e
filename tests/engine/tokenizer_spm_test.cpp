// SentencePiece BPE with byte fallback (SPECS.md §9.4) against the `sentencepiece` Python library on the fixed
// corpus in tests/data/tokenizers/expected.json (see tests/make_tokenizers.py for how the references are made).
#include <gtest/gtest.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "engine/common/error.h"
#include "engine/tokenizer/sentencepiece_tokenizer.h"
#include "engine/tokenizer/tokenizer.h"
#include "tests/support/test_support.h"

namespace fs = std::filesystem;
using nlohmann::json;

using moe::test::ids_of;
using moe::test::ScratchDir;

namespace {

const fs::path kData = moe::test::tokenizer_data();

const json& expected() { return moe::test::tokenizer_expected(); }

TEST(SentencePieceTokenizer, IdsAndDecodeMatchReference) {
  const auto tok = moe::Tokenizer::load(kData / "spm");
  ASSERT_EQ(tok->kind(), "SentencePiece BPE");
  ASSERT_GE(expected()["cases"].size(), 40u);
  for (const auto& c : expected()["cases"]) {
    const std::string text = c["text"];
    SCOPED_TRACE("text: " + json(text).dump());
    const auto want = ids_of(c["spm"]["ids"]);
    EXPECT_EQ(tok->encode(text), want);
    EXPECT_EQ(tok->encode(text, /*add_special=*/false), ids_of(c["spm"]["ids_no_bos"]));
    EXPECT_EQ(tok->decode(want), c["spm"]["decoded"].get<std::string>());
    EXPECT_EQ(tok->decode(want, /*skip_special=*/true), c["spm"]["decoded_skip_special"].get<std::string>());
  }
}

TEST(SentencePieceTokenizer, LlamaIdsAndSpecials) {
  const auto tok = moe::Tokenizer::load(kData / "spm");
  EXPECT_EQ(tok->size(), expected()["spm_size"].get<int32_t>());
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_ids(), std::vector<int32_t>{2});
  EXPECT_EQ(tok->token_to_id("<unk>"), 0);
  EXPECT_EQ(tok->token_to_id("<s>"), 1);
  EXPECT_EQ(tok->token_to_id("</s>"), 2);
  for (int32_t id : {0, 1, 2}) EXPECT_TRUE(tok->is_special(id)) << id;
  EXPECT_FALSE(tok->is_special(3));
  EXPECT_EQ(tok->token_to_id("not a piece at all"), std::nullopt);
  EXPECT_EQ(tok->encode(""), std::vector<int32_t>{1});
  EXPECT_TRUE(tok->encode("", false).empty());
}

TEST(SentencePieceTokenizer, BytePiecesAreIdThreePlusByte) {
  const auto tok = moe::Tokenizer::load(kData / "spm");
  for (int b = 0; b < 256; ++b) {
    const int32_t id = 3 + b;
    const std::string name = moe::test::byte_piece_name(static_cast<unsigned char>(b));
    EXPECT_EQ(tok->id_to_token(id), name);
    EXPECT_EQ(tok->token_bytes(id, 1), std::string(1, char(b))) << name;
  }
}

TEST(SentencePieceTokenizer, LeadingSpaceOfTheFirstPieceIsDropped) {
  const auto tok = moe::Tokenizer::load(kData / "spm");
  // Find a normal piece that starts with "▁" and is more than that.
  std::optional<int32_t> word;
  for (int32_t id = 259; id < tok->size() && !word; ++id) {
    const std::string p = tok->id_to_token(id);
    if (p.size() > 3 && p.compare(0, 3, "\xE2\x96\x81") == 0) word = id;
  }
  ASSERT_TRUE(word.has_value());
  const std::string piece = tok->id_to_token(*word);
  const std::string spaced = " " + piece.substr(3);
  EXPECT_EQ(tok->token_bytes(*word, -1), piece.substr(3)) << "first piece of the output";
  EXPECT_EQ(tok->token_bytes(*word, *word), spaced) << "later pieces keep their space";
  EXPECT_EQ(tok->token_bytes(*word, 1), spaced) << "after a BOS that is shown, the space stays (HF Strip)";
  const std::vector<int32_t> ids = {1, *word, *word};
  EXPECT_EQ(tok->decode(ids, /*skip_special=*/true), piece.substr(3) + spaced);
  EXPECT_EQ(tok->decode(ids, /*skip_special=*/false), "<s>" + spaced + spaced);
}

TEST(SentencePieceTokenizer, SpecialTokensInTextBecomeTheirIds) {
  const auto tok = moe::Tokenizer::load(kData / "spm");
  const auto ids = tok->encode("<s>[INST] hi [/INST]</s>", false);
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(ids.back(), 2);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 1), 1);
}

TEST(SentencePieceTokenizer, ConfigCanTurnBosOffAndAddTokens) {
  ScratchDir dir;
  fs::copy_file(kData / "spm" / "tokenizer.model", dir.path / "tokenizer.model");
  dir.write("tokenizer_config.json", R"({
    "add_bos_token": false, "bos_token": "<s>", "eos_token": "<|im_end|>",
    "added_tokens_decoder": {
      "400": {"content": "<|im_start|>", "special": true},
      "401": {"content": "<|im_end|>", "special": true},
      "402": {"content": "<tool>", "special": false}}})");
  const auto tok = moe::Tokenizer::load(dir.path);
  EXPECT_EQ(tok->size(), 403);
  EXPECT_EQ(tok->eos_ids(), std::vector<int32_t>{401});
  const auto ids = tok->encode("<|im_start|>user<tool><|im_end|>");
  ASSERT_GE(ids.size(), 4u);
  EXPECT_EQ(ids.front(), 400) << "no BOS with add_bos_token false";
  EXPECT_EQ(ids[ids.size() - 2], 402);
  EXPECT_EQ(ids.back(), 401);
  EXPECT_EQ(tok->decode(ids, true), "user<tool>");
  EXPECT_TRUE(tok->is_special(400));
  EXPECT_FALSE(tok->is_special(402));
}

TEST(SentencePieceTokenizer, NoConfigMeansLlamaDefaults) {
  ScratchDir dir;
  fs::copy_file(kData / "spm" / "tokenizer.model", dir.path / "tokenizer.model");
  const auto tok = moe::Tokenizer::load(dir.path);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_ids(), std::vector<int32_t>{2});
  EXPECT_EQ(tok->encode("hi").front(), 1);
}

TEST(SentencePieceTokenizer, ControlBytesRoundTrip) {
  const auto tok = moe::Tokenizer::load(kData / "spm");
  const std::string text = "a\x01b\x1f\x7f c\tx";
  EXPECT_EQ(tok->decode(tok->encode(text), true), text);
}

TEST(SentencePieceTokenizer, InvalidUtf8InputIsReplacedNotFatal) {
  const auto tok = moe::Tokenizer::load(kData / "spm");
  const auto ids = tok->encode("ok\xFF(end");
  EXPECT_EQ(tok->decode(ids, /*skip_special=*/true), "ok\xEF\xBF\xBD(end");
}

}  // namespace
