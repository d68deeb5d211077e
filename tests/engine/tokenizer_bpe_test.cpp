// Byte-level BPE (SPECS.md §9.1–9.3) against Hugging Face `tokenizers` on the fixed corpus in
// tests/data/tokenizers/expected.json (made by tests/make_tokenizers.py).
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include <nlohmann/json.hpp>

#include "engine/tokenizer/bpe_tokenizer.h"
#include "engine/tokenizer/tokenizer.h"
#include "tests/support/test_support.h"

namespace fs = std::filesystem;
using nlohmann::json;

using moe::test::ids_of;
using moe::test::read_json;
using moe::test::ScratchDir;

namespace {

const fs::path kData = moe::test::tokenizer_data();

const json& expected() { return moe::test::tokenizer_expected(); }

class BpeCorpus : public ::testing::TestWithParam<std::string> {};

TEST_P(BpeCorpus, IdsAndDecodeMatchHuggingFace) {
  const auto tok = moe::Tokenizer::load(kData / GetParam());
  ASSERT_EQ(tok->kind(), "byte-level BPE");
  ASSERT_GE(expected()["cases"].size(), 40u);
  for (const auto& c : expected()["cases"]) {
    const std::string text = c["text"];
    SCOPED_TRACE("text: " + json(text).dump());
    const auto want = ids_of(c["bpe"]["ids"]);
    EXPECT_EQ(tok->encode(text), want);
    EXPECT_EQ(tok->encode(text, /*add_special=*/false), want) << "Qwen-style BPE adds no BOS";
    EXPECT_EQ(tok->decode(want), c["bpe"]["decoded"].get<std::string>());
    EXPECT_EQ(tok->decode(want, /*skip_special=*/true), c["bpe"]["decoded_skip_special"].get<std::string>());
  }
}

INSTANTIATE_TEST_SUITE_P(BothMergeForms, BpeCorpus, ::testing::Values("bpe", "bpe_merges_strings"),
                         [](const auto& info) { return info.param; });

TEST(BpeTokenizer, BothMergeFormsReadTheSameRanks) {
  const auto arrays = moe::Tokenizer::load(kData / "bpe");
  const auto strings = moe::Tokenizer::load(kData / "bpe_merges_strings");
  const auto* a = dynamic_cast<const moe::BpeTokenizer*>(arrays.get());
  const auto* s = dynamic_cast<const moe::BpeTokenizer*>(strings.get());
  ASSERT_TRUE(a && s);
  EXPECT_GT(a->merge_count(), 100u);
  EXPECT_EQ(a->merge_count(), s->merge_count());
}

TEST(BpeTokenizer, VocabularyAndAddedTokens) {
  const auto tok = moe::Tokenizer::load(kData / "bpe");
  EXPECT_EQ(tok->size(), expected()["bpe_size"].get<int32_t>());
  for (const auto& [token, id] : expected()["bpe_special_ids"].items()) {
    EXPECT_EQ(tok->token_to_id(token), id.get<int32_t>()) << token;
    EXPECT_EQ(tok->id_to_token(id.get<int32_t>()), token);
    // <think> and </think> are added tokens but not special: they survive skip_special (SPECS.md §9.2).
    EXPECT_EQ(tok->is_special(id.get<int32_t>()), token.rfind("<|", 0) == 0) << token;
  }
  EXPECT_EQ(tok->bos_id(), std::nullopt);
  EXPECT_EQ(tok->eos_ids(), std::vector<int32_t>{*tok->token_to_id("<|im_end|>")});
  EXPECT_FALSE(tok->is_special(-1));
  EXPECT_FALSE(tok->is_special(tok->size()));
  EXPECT_EQ(tok->id_to_token(tok->size()), "");
  EXPECT_EQ(tok->token_to_id("no such token"), std::nullopt);
}

TEST(BpeTokenizer, Gpt2ByteMap) {
  const auto tok = moe::Tokenizer::load(kData / "bpe");
  // Every byte has a single-character symbol; printable bytes map to themselves, the rest to U+0100 onwards.
  struct Case {
    const char* symbol;
    std::string byte;
  };
  for (const Case& c : {Case{"\xC4\xA0", " "}, Case{"\xC4\x8A", "\n"}, Case{"\xC4\x80", std::string(1, '\0')},
                        Case{"\xC5\x83", "\xAD"}, Case{"!", "!"}, Case{"\xC3\xBF", "\xFF"},
                        Case{"\xC4\xA1", "\x7F"}, Case{"\xC2\xA1", "\xA1"}}) {
    const auto id = tok->token_to_id(c.symbol);
    ASSERT_TRUE(id.has_value()) << c.symbol;
    EXPECT_EQ(tok->token_bytes(*id, -1), c.byte) << c.symbol;
  }
  int byte_symbols = 0;
  for (int32_t id = 0; id < tok->size(); ++id) byte_symbols += tok->token_bytes(id, -1).size() == 1;
  EXPECT_EQ(byte_symbols, 256);
}

TEST(BpeTokenizer, TokenBytesCanBeIncompleteUtf8) {
  const auto tok = moe::Tokenizer::load(kData / "bpe");
  // "😀" is four bytes; this small vocabulary has no token for it, so it is spelled byte by byte.
  const auto ids = tok->encode("\xF0\x9F\x98\x80");
  ASSERT_GT(ids.size(), 1u);
  std::string joined;
  for (int32_t id : ids) joined += tok->token_bytes(id, -1);
  EXPECT_EQ(joined, "\xF0\x9F\x98\x80");
}

TEST(BpeTokenizer, InvalidUtf8InputIsReplacedNotFatal) {
  const auto tok = moe::Tokenizer::load(kData / "bpe");
  const auto ids = tok->encode("ok\xFF\xC3(end");
  EXPECT_EQ(tok->decode(ids), "ok\xEF\xBF\xBD\xEF\xBF\xBD(end");
}

TEST(BpeTokenizer, NulAndControlBytesRoundTrip) {
  const auto tok = moe::Tokenizer::load(kData / "bpe");
  const std::string text("a\0b\x01\x1f\x7f c\0", 9);
  EXPECT_EQ(tok->decode(tok->encode(text)), text);
}

TEST(BpeTokenizer, DecodeIgnoresIdsOutsideTheVocabulary) {
  const auto tok = moe::Tokenizer::load(kData / "bpe");
  std::vector<int32_t> ids = tok->encode("hi");
  ids.insert(ids.begin() + 1, {-5, tok->size(), 1 << 30});
  EXPECT_EQ(tok->decode(ids), "hi");
}

TEST(BpeTokenizer, LongRunsStayFastAndExact) {
  const auto tok = moe::Tokenizer::load(kData / "bpe");
  const std::string spaces(200000, ' ');
  const std::string text = "start" + spaces + "end " + std::string(50000, 'a') + " " + std::string(20000, '7');
  const auto ids = tok->encode(text);
  EXPECT_EQ(tok->decode(ids), text);
}

TEST(BpeTokenizer, ConcurrentEncodesAgree) {
  const auto tok = moe::Tokenizer::load(kData / "bpe");
  std::vector<std::string> texts;
  for (const auto& c : expected()["cases"]) texts.push_back(c["text"]);
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 20; ++round) {
        for (size_t i = 0; i < texts.size(); ++i) {
          const auto& c = expected()["cases"][(i + size_t(t)) % texts.size()];
          if (tok->encode(c["text"].get<std::string>()) != ids_of(c["bpe"]["ids"])) ++mismatches;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

// The split behaviours of tokenizer.json's Split pre-tokenizer, seen through merges that can only apply
// inside one piece: vocab a b - -- a- -b, merges "- -", "a -", "- b", text "a--b".
TEST(BpeTokenizer, SplitBehaviours) {
  const json vocab = {{"a", 0}, {"b", 1}, {"-", 2}, {"--", 3}, {"a-", 4}, {"-b", 5}};
  auto make = [&](const std::string& behavior) {
    json j = {{"version", "1.0"},
              {"added_tokens", json::array()},
              {"normalizer", nullptr},
              {"pre_tokenizer",
               {{"type", "Sequence"},
                {"pretokenizers",
                 {{{"type", "Split"}, {"pattern", {{"String", "-"}}}, {"behavior", behavior}, {"invert", false}},
                  {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}}}}}},
              {"decoder", {{"type", "ByteLevel"}}},
              {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"- -", "a -", "- b"}}}}};
    return moe::BpeTokenizer(j, "synthetic tokenizer.json");
  };
  using V = std::vector<int32_t>;
  EXPECT_EQ(make("Isolated").encode("a--b"), (V{0, 2, 2, 1}));
  EXPECT_EQ(make("Contiguous").encode("a--b"), (V{0, 3, 1}));
  EXPECT_EQ(make("MergedWithPrevious").encode("a--b"), (V{4, 2, 1}));
  EXPECT_EQ(make("MergedWithNext").encode("a--b"), (V{0, 2, 5}));
  EXPECT_EQ(make("Removed").encode("a--b"), (V{0, 1}));
}

// ByteLevel with use_regex = true (GPT-2 / OLMoE style, no Split): the GPT-2 regex does the splitting.
TEST(BpeTokenizer, ByteLevelRegexRoundTrips) {
  json j = read_json(kData / "bpe" / "tokenizer.json");
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  ScratchDir dir;
  dir.write("tokenizer.json", j.dump());
  const auto tok = moe::Tokenizer::load(dir.path);
  for (const auto& c : expected()["cases"]) {
    const std::string text = c["text"];
    // Round trip through the NFC form (HF's decode of the corpus ids is that form).
    EXPECT_EQ(tok->decode(tok->encode(text)), c["bpe"]["decoded"].get<std::string>()) << json(text).dump();
  }
  // Words keep their leading space under the GPT-2 regex: " Hello" is one piece.
  EXPECT_EQ(tok->encode(" Hello"), moe::Tokenizer::load(kData / "bpe")->encode(" Hello"));
  EXPECT_EQ(tok->bos_id(), std::nullopt);  // no tokenizer_config.json: nothing to add
}

TEST(BpeTokenizer, ConfigBosAndTemplateBos) {
  json j = read_json(kData / "bpe" / "tokenizer.json");
  // A DeepSeek-style post-processor that puts <|endoftext|> first.
  j["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single", {{{"SpecialToken", {{"id", "<|endoftext|>"}, {"type_id", 0}}}},
                  {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
      {"pair", json::array()},
      {"special_tokens",
       {{"<|endoftext|>", {{"id", "<|endoftext|>"}, {"ids", {400}}, {"tokens", {"<|endoftext|>"}}}}}}};
  ScratchDir dir;
  dir.write("tokenizer.json", j.dump());
  {
    const auto tok = moe::Tokenizer::load(dir.path);
    EXPECT_EQ(tok->bos_id(), 400);
    EXPECT_EQ(tok->encode("hi").front(), 400);
    EXPECT_NE(tok->encode("hi", false).front(), 400);
  }
  dir.write("tokenizer_config.json", R"({"add_bos_token": false, "bos_token": "<|im_start|>", "eos_token": {"content": "<|endoftext|>"}})");
  {
    const auto tok = moe::Tokenizer::load(dir.path);
    EXPECT_EQ(tok->bos_id(), 401);
    EXPECT_NE(tok->encode("hi").front(), 400);
    EXPECT_EQ(tok->eos_ids(), std::vector<int32_t>{400});
  }
}

TEST(BpeTokenizer, AddedTokenOptions) {
  json j = read_json(kData / "bpe" / "tokenizer.json");
  j["added_tokens"].push_back({{"id", 405}, {"content", "<pad>"}, {"single_word", false}, {"lstrip", true},
                               {"rstrip", true}, {"normalized", false}, {"special", true}});
  j["added_tokens"].push_back({{"id", 406}, {"content", "<|im_start|>x"}, {"single_word", false}, {"lstrip", false},
                               {"rstrip", false}, {"normalized", false}, {"special", false}});
  ScratchDir dir;
  dir.write("tokenizer.json", j.dump());
  const auto tok = moe::Tokenizer::load(dir.path);
  const auto base = moe::Tokenizer::load(kData / "bpe");
  // lstrip/rstrip: the spaces around <pad> are swallowed.
  std::vector<int32_t> want = base->encode("a");
  want.push_back(405);
  for (int32_t id : base->encode("b")) want.push_back(id);
  EXPECT_EQ(tok->encode("a  <pad>\n b"), want);
  // Longest match wins at the same position.
  EXPECT_EQ(tok->encode("<|im_start|>x").size(), 1u);
  EXPECT_EQ(tok->encode("<|im_start|>y").front(), 401);
}

}  // namespace
