// A deterministic mutation fuzzer for the tokenizers read from GGUF metadata (gguf_tokenizer.cpp). The GGUF container
// has its own (gguf_test.cpp, Gguf.MutantsOpenOrFailWithEngineError); this one bends the tokenizer keys of files that
// open fine: token strings replaced by other text or by broken UTF-8, token types and special-token ids set to any
// number, entries dropped or added, merges rewritten, keys of the wrong kind. Every mutant must either load and then
// encode and decode text, or throw an EngineError naming the file. Anything else (another exception, a crash, a
// sanitizer report) fails. Seeds: a byte-level BPE with DeepSeek-V2's rules, Kimi K2's tiktoken, and SentencePiece.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/common/error.h"
#include "engine/formats/gguf.h"
#include "engine/tokenizer/tokenizer.h"
#include "tests/support/gguf_builder.h"
#include "tests/support/test_support.h"

namespace moe {
namespace {

constexpr uint64_t kSeed = 0x746f6b67677566ull;
constexpr int kMutantsPerSeed = 400;

const char* const kKeys[] = {"tokenizer.ggml.tokens",       "tokenizer.ggml.token_type",   "tokenizer.ggml.merges",
                             "tokenizer.ggml.scores",       "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                             "tokenizer.ggml.pre",          "tokenizer.ggml.model",        "tokenizer.ggml.add_bos_token",
                             "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.eot_token_id"};

std::string random_text(std::mt19937_64& rng) {
  static const std::vector<std::string> pieces = {"a", "Ġ", "Ġthe", "<|im_end|>", "[BOS]", "▁", "<0x41>", "中",
                                                  "\xff", "\xc3", "\xe2\x82", "", " ", "\n", "ĊĊ", "[PAD9]"};
  std::string s;
  for (int n = int(rng() % 4); n >= 0; --n) s += pieces[rng() % pieces.size()];
  return s;
}

nlohmann::json random_value(std::mt19937_64& rng, size_t n_tokens) {
  switch (rng() % 6) {
    case 0: return int64_t(rng() % (n_tokens + 3)) - 1;  // an id near the vocabulary, -1 included
    case 1: return int64_t(rng() % 8);                     // a token type, valid or not
    case 2: return random_text(rng);
    case 3: return 0.5;
    case 4: return true;
    default: return nlohmann::json::array({1, 2});
  }
}

// One edit to one tokenizer key.
void mutate(nlohmann::json& meta, std::mt19937_64& rng) {
  const size_t n_tokens = meta.contains("tokenizer.ggml.tokens") ? meta["tokenizer.ggml.tokens"].size() : 0;
  const std::string key = kKeys[rng() % std::size(kKeys)];
  if (!meta.contains(key) || rng() % 8 == 0) {  // a key dropped, or added with any value
    if (meta.contains(key)) meta.erase(key);
    else meta[key] = random_value(rng, n_tokens);
    return;
  }
  nlohmann::json& v = meta[key];
  if (!v.is_array() || v.empty() || rng() % 10 == 0) {  // a scalar, or a whole array, replaced
    v = random_value(rng, n_tokens);
    return;
  }
  const size_t at = size_t(rng() % v.size());
  switch (rng() % 4) {
    case 0: v.erase(at); break;                                    // one entry fewer
    case 1: v.push_back(v[at]); break;                             // one more, a copy
    case 2: v[at] = v[at].is_string() ? nlohmann::json(random_text(rng)) : random_value(rng, n_tokens); break;
    default: v[at] = v[size_t(rng() % v.size())]; break;           // an entry repeated elsewhere
  }
}

TEST(GgufTokenizerFuzz, MutatedKeysLoadOrFailWithEngineError) {
  const std::string data = MOE_TEST_DATA_DIR;
  test::ScratchDir dir;
  std::mt19937_64 rng(kSeed);
  int loaded = 0, refused = 0;
  for (const char* seed : {"/tokenizers/deepseek_llm/tokenizer.gguf", "/tokenizers/kimi_k2/tokenizer.gguf",
                           "/tokenizers/spm/tokenizer.gguf"}) {
    SCOPED_TRACE(seed);
    const test::GgufBuilder original = test::GgufBuilder::from_file(*GgufFile::open(data + seed));
    for (int i = 0; i < kMutantsPerSeed; ++i) {
      test::GgufBuilder b = original;
      for (int edits = 1 + int(rng() % 3); edits > 0; --edits) mutate(b.metadata, rng);
      const auto path = dir.write("t.gguf", b.bytes());
      try {
        const auto tok = Tokenizer::load(path);
        const auto ids = tok->encode("Hello, world! 中文 123 <|im_end|>\n  x", true);
        for (const int32_t id : ids) ASSERT_TRUE(id >= 0 && id < tok->size()) << id;
        (void)tok->decode(ids);
        (void)tok->decode(ids, /*skip_special=*/true);
        for (int32_t id = 0; id < tok->size(); id += 37) (void)tok->id_to_token(id);
        ++loaded;
      } catch (const EngineError& e) {
        ASSERT_NE(std::string(e.what()).find("t.gguf"), std::string::npos) << e.what();
        ++refused;
      }
    }
  }
  EXPECT_GT(loaded, 0);
  EXPECT_GT(refused, 0);
}

}  // namespace
}  // namespace moe
