// Broken tokenizer files give an EngineError naming the file and the field, never a crash.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include <nlohmann/json.hpp>

#include "engine/common/error.h"
#include "engine/tokenizer/tokenizer.h"
#include "tests/support/test_support.h"

namespace fs = std::filesystem;
using nlohmann::json;

using moe::test::read_file;
using moe::test::ScratchDir;

namespace {

const fs::path kData = moe::test::tokenizer_data();

json good_json() { return moe::test::read_json(kData / "bpe" / "tokenizer.json"); }

// Loads the folder, expecting an EngineError whose file ends with `file` and whose field is `field`.
void expect_error(const ScratchDir& dir, const std::string& file, const std::string& field,
                  const std::string& message_part = "") {
  try {
    moe::Tokenizer::load(dir.path);
    ADD_FAILURE() << "expected an EngineError for field '" << field << "'";
  } catch (const moe::EngineError& e) {
    EXPECT_TRUE(e.file().size() >= file.size() && e.file().compare(e.file().size() - file.size(), file.size(), file) == 0)
        << "file: " << e.file() << " — " << e.what();
    EXPECT_EQ(e.field(), field) << e.what();
    if (!message_part.empty()) {
      EXPECT_NE(std::string(e.what()).find(message_part), std::string::npos) << e.what();
    }
  }
}

void expect_json_error(const json& j, const std::string& field, const std::string& message_part = "") {
  ScratchDir dir;
  dir.write("tokenizer.json", j.dump());
  expect_error(dir, "tokenizer.json", field, message_part);
}

TEST(TokenizerErrors, MissingFolderOrFiles) {
  ScratchDir dir;
  expect_error(dir, "tokenizer.json", "", "tokenizer.model");
  try {
    moe::Tokenizer::load(dir.path / "does_not_exist");
    FAIL();
  } catch (const moe::EngineError& e) {
    EXPECT_NE(e.file().find("does_not_exist"), std::string::npos);
  }
}

TEST(TokenizerErrors, NotJson) {
  ScratchDir dir;
  dir.write("tokenizer.json", "{\"model\": {\"type\": \"BPE\", ");
  expect_error(dir, "tokenizer.json", "");
  dir.write("tokenizer.json", "\x89PNG not json at all");
  expect_error(dir, "tokenizer.json", "");
  dir.write("tokenizer.json", "[1, 2, 3]");
  expect_error(dir, "tokenizer.json", "");
}

TEST(TokenizerErrors, ModelMissingOrUnknown) {
  json j = good_json();
  j.erase("model");
  expect_json_error(j, "model", "missing");
  j = good_json();
  j["model"] = "BPE";
  expect_json_error(j, "model");
  j = good_json();
  j["model"]["type"] = "FancyNewModel";
  expect_json_error(j, "model.type", "unknown model type");
  j = good_json();
  j["model"]["type"] = "WordPiece";
  expect_json_error(j, "model.type", "not supported");
  j = good_json();
  j["model"]["type"] = 7;
  expect_json_error(j, "model.type");
  j = good_json();
  j["model"].erase("vocab");
  expect_json_error(j, "model.vocab");
}

TEST(TokenizerErrors, BadMerges) {
  json j = good_json();
  j["model"]["merges"][3] = {"Ġ", "no-such-symbol"};
  expect_json_error(j, "model.merges[3]", "no-such-symbol");
  j = good_json();
  j["model"]["merges"][0] = "nospace";
  expect_json_error(j, "model.merges[0]");
  j = good_json();
  j["model"]["merges"][1] = {"a", "b", "c"};
  expect_json_error(j, "model.merges[1]");
  j = good_json();
  j["model"]["merges"][2] = 42;
  expect_json_error(j, "model.merges[2]");
  j = good_json();
  j["model"]["merges"] = "a b";
  expect_json_error(j, "model.merges");
  // Both symbols exist but their concatenation does not.
  j = good_json();
  ASSERT_FALSE(j["model"]["vocab"].contains("qz"));
  j["model"]["merges"].push_back({"q", "z"});
  expect_json_error(j, "model.merges[" + std::to_string(j["model"]["merges"].size() - 1) + "]");
}

TEST(TokenizerErrors, VocabIdsOutOfRange) {
  json j = good_json();
  j["model"]["vocab"]["a"] = -1;
  expect_json_error(j, "model.vocab[\"a\"]", "out of range");
  j = good_json();
  j["model"]["vocab"]["a"] = 4000000000LL;
  expect_json_error(j, "model.vocab[\"a\"]", "out of range");
  j = good_json();
  j["model"]["vocab"]["a"] = "12";
  expect_json_error(j, "model.vocab[\"a\"]");
  j = good_json();
  j["model"]["vocab"]["a"] = j["model"]["vocab"]["b"];
  expect_json_error(j, "model.vocab", "given to both");
  j = good_json();
  j["added_tokens"][0]["id"] = -3;
  expect_json_error(j, "added_tokens[0].id", "out of range");
  j = good_json();
  j["added_tokens"][1]["id"] = 1LL << 40;
  expect_json_error(j, "added_tokens[1].id", "out of range");
  j = good_json();
  j["added_tokens"][2].erase("content");
  expect_json_error(j, "added_tokens[2].content");
}

TEST(TokenizerErrors, BadRegexAndPreTokenizers) {
  json j = good_json();
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(\\p{L}+";
  expect_json_error(j, "pre_tokenizer.pretokenizers[0].pattern.Regex", "bad regex");
  j = good_json();
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\p{NotAProperty}";
  expect_json_error(j, "pre_tokenizer.pretokenizers[0].pattern.Regex", "bad regex");
  j = good_json();
  j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Sideways";
  expect_json_error(j, "pre_tokenizer.pretokenizers[0].behavior");
  j = good_json();
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"Glob", "*"}};
  expect_json_error(j, "pre_tokenizer.pretokenizers[0].pattern");
  j = good_json();
  j["pre_tokenizer"]["pretokenizers"].insert(j["pre_tokenizer"]["pretokenizers"].begin(),
                                             json{{"type", "Whitespace"}});
  expect_json_error(j, "pre_tokenizer.pretokenizers[0].type", "Whitespace");
  j = good_json();
  j["normalizer"] = {{"type", "Lowercase"}};
  expect_json_error(j, "normalizer.type", "Lowercase");
}

TEST(TokenizerErrors, NotByteLevelWithoutTokenizerModel) {
  json j = good_json();
  j["pre_tokenizer"] = nullptr;
  j["decoder"] = {{"type", "ByteFallback"}};
  expect_json_error(j, "pre_tokenizer", "tokenizer.model");
}

TEST(TokenizerErrors, BrokenTokenizerConfig) {
  ScratchDir dir;
  fs::copy_file(kData / "bpe" / "tokenizer.json", dir.path / "tokenizer.json");
  dir.write("tokenizer_config.json", "{\"eos_token\": ");
  expect_error(dir, "tokenizer_config.json", "");
  dir.write("tokenizer_config.json", R"({"eos_token": "<|no_such|>"})");
  expect_error(dir, "tokenizer_config.json", "eos_token", "<|no_such|>");
  dir.write("tokenizer_config.json", R"({"bos_token": 17})");
  expect_error(dir, "tokenizer_config.json", "bos_token");
  dir.write("tokenizer_config.json", R"({"add_bos_token": "yes"})");
  expect_error(dir, "tokenizer_config.json", "add_bos_token");
  dir.write("tokenizer_config.json", R"({"added_tokens_decoder": {"abc": {"content": "x"}}})");
  expect_error(dir, "tokenizer_config.json", "added_tokens_decoder.abc");
}

TEST(TokenizerErrors, BrokenSentencePieceModel) {
  ScratchDir dir;
  dir.write("tokenizer.model", "");
  expect_error(dir, "tokenizer.model", "", "empty");
  dir.write("tokenizer.model", "this is not a protobuf \x01\x02\x03\xff\xff\xff");
  expect_error(dir, "tokenizer.model", "ModelProto");
  // Truncations of a real model: each either loads or is reported, never crashes.
  const std::string model = read_file(kData / "spm" / "tokenizer.model");
  for (size_t cut = 1; cut < model.size(); cut += model.size() / 37 + 1) {
    dir.write("tokenizer.model", model.substr(0, cut));
    try {
      const auto tok = moe::Tokenizer::load(dir.path);
      (void)tok->encode("hello wörld");
    } catch (const moe::EngineError& e) {
      EXPECT_NE(e.file().find("tokenizer.model"), std::string::npos) << e.what();
    }
  }
}

// Random damage to a good tokenizer.json: every outcome is a tokenizer that works or an EngineError.
TEST(TokenizerErrors, DamagedJsonNeverCrashes) {
  const std::string good = read_file(kData / "bpe" / "tokenizer.json");
  std::mt19937 rng(1234);
  ScratchDir dir;
  int errors = 0, loaded = 0;
  for (int round = 0; round < 60; ++round) {
    std::string text = good;
    if (round % 3 == 0) {
      text.resize(std::uniform_int_distribution<size_t>(0, text.size() - 1)(rng));
    } else {
      for (int k = 0; k < 3; ++k) {
        const size_t at = std::uniform_int_distribution<size_t>(0, text.size() - 1)(rng);
        text[at] = "{}[]\",:0-9aZ\\ \xC4"[std::uniform_int_distribution<int>(0, 15)(rng)];
      }
    }
    dir.write("tokenizer.json", text);
    try {
      const auto tok = moe::Tokenizer::load(dir.path);
      const auto ids = tok->encode("Hello, wörld! 123 <|im_end|>");
      (void)tok->decode(ids);
      ++loaded;
    } catch (const moe::EngineError& e) {
      EXPECT_NE(e.file().find("tokenizer.json"), std::string::npos) << e.what();
      ++errors;
    }
  }
  EXPECT_GT(errors, 0);
}

}  // namespace
