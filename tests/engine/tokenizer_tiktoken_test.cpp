// tiktoken BPE (Kimi K2's tokenizer) against the `tiktoken` library driven as Kimi's TikTokenTokenizer drives it,
// on tests/data/tiktoken/expected.json (made by tests/make_tiktoken.py); the split pattern's translation from
// Rust-regex syntax to PCRE2; broken files.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <random>
#include <string_view>

#include <nlohmann/json.hpp>

#include "engine/common/error.h"
#include "engine/tokenizer/split_regex.h"
#include "engine/tokenizer/tiktoken_pattern.h"
#include "engine/tokenizer/tiktoken_tokenizer.h"
#include "engine/tokenizer/tokenizer.h"
#include "tests/support/test_support.h"

namespace fs = std::filesystem;
using nlohmann::json;

using moe::test::ids_of;
using moe::test::read_file;
using moe::test::ScratchDir;

namespace {

const fs::path kData = fs::path(MOE_TEST_DATA_DIR) / "tiktoken";
const fs::path kModel = kData / "model";

const json& expected() {
  static const json j = moe::test::read_json(kData / "expected.json");
  return j;
}

TEST(TiktokenTokenizer, IdsAndDecodeMatchTiktoken) {
  const auto tok = moe::Tokenizer::load(kModel);
  ASSERT_EQ(tok->kind(), "tiktoken BPE");
  ASSERT_GE(expected()["cases"].size(), 50u);
  for (const auto& c : expected()["cases"]) {
    const std::string text = c["text"];
    SCOPED_TRACE("text: " + json(text.substr(0, 80)).dump());
    const auto want = ids_of(c["ids"]);
    EXPECT_EQ(tok->encode(text), want);
    EXPECT_EQ(tok->decode(want), c["decoded"].get<std::string>());
    EXPECT_EQ(tok->decode(want, /*skip_special=*/true), c["decoded_skip_special"].get<std::string>());
  }
}

TEST(TiktokenTokenizer, VocabularyAndSpecialTokens) {
  const auto tok = moe::Tokenizer::load(kModel);
  const auto* tt = dynamic_cast<const moe::TiktokenTokenizer*>(tok.get());
  ASSERT_NE(tt, nullptr);
  EXPECT_EQ(tt->base_tokens(), expected()["base_tokens"].get<int32_t>());
  EXPECT_EQ(tok->size(), expected()["size"].get<int32_t>());
  for (const auto& [name, id] : expected()["special_ids"].items()) {
    EXPECT_EQ(tok->token_to_id(name), id.get<int32_t>()) << name;
    EXPECT_EQ(tok->id_to_token(id.get<int32_t>()), name);
    EXPECT_TRUE(tok->is_special(id.get<int32_t>())) << name;
  }
  // Unnamed reserved ids are matched in text but are not flagged special (transformers does not skip them).
  const int32_t reserved = tt->base_tokens() + 5;
  EXPECT_EQ(tok->id_to_token(reserved), "<|reserved_token_" + std::to_string(reserved) + "|>");
  EXPECT_FALSE(tok->is_special(reserved));
  // Ordinary tokens are spelled through GPT-2's byte table, as transformers' convert_ids_to_tokens shows them.
  for (const auto& [id, spelling] : expected()["token_strings"].items()) {
    EXPECT_EQ(tok->id_to_token(std::stoi(id)), spelling.get<std::string>());
    EXPECT_EQ(tok->token_to_id(spelling.get<std::string>()), std::stoi(id));
  }
  EXPECT_EQ(tok->bos_id(), expected()["special_ids"]["[BOS]"].get<int32_t>());
  EXPECT_EQ(tok->eos_ids(), std::vector<int32_t>{expected()["special_ids"]["[EOS]"].get<int32_t>()});
  EXPECT_EQ(tok->encode("hi", true), tok->encode("hi", false)) << "Kimi's config asks for no BOS";
}

TEST(TiktokenTokenizer, BrokenUtf8IsReplacedNotFatal) {
  const auto tok = moe::Tokenizer::load(kModel);
  const auto ids = tok->encode(std::string("ok \xff\xfe end"));
  EXPECT_EQ(tok->decode(ids), "ok \xEF\xBF\xBD\xEF\xBF\xBD end");
}

TEST(TiktokenPattern, ReadsKimiStylePythonAssignments) {
  const fs::path py = kModel / "tokenization_workbench.py";
  const auto pattern = moe::detail::read_python_string(py, "pat_str");
  ASSERT_TRUE(pattern.has_value());
  EXPECT_EQ(pattern->rfind("[\\p{Han}]+|", 0), 0u) << *pattern;
  EXPECT_NE(pattern->find("&&[^\\p{Han}]]*[\\p{Ll}"), std::string::npos);
  EXPECT_EQ(moe::detail::read_python_int(py, "num_reserved_special_tokens"), 256);
  EXPECT_EQ(moe::detail::read_python_string(py, "no_such_name"), std::nullopt);

  ScratchDir dir;
  const auto file = dir.write("t.py",
                              "enc = Encoding(pat_str=self.pat_str, n=1)\n"
                              "x: str = 'a\\\\b' \"c\"  # comment\n"
                              "pat_strings = 1\n"
                              "y = ('one'\n     r'\\p{L}')\n"
                              "z = ''.join(('p', \"\"\"q\"\"\",))\n"
                              "n = 293 + 128\n"
                              "bad = compute()\n"
                              "badn = 2 * 3\n");
  EXPECT_EQ(moe::detail::read_python_string(file, "x"), "a\\bc");
  EXPECT_EQ(moe::detail::read_python_string(file, "y"), "one\\p{L}");
  EXPECT_EQ(moe::detail::read_python_string(file, "z"), "pq");
  EXPECT_EQ(moe::detail::read_python_int(file, "n"), 421);
  EXPECT_EQ(moe::detail::read_python_string(file, "pat_str"), std::nullopt)
      << "a keyword argument, an attribute and a longer name are not the assignment";
  EXPECT_THROW(moe::detail::read_python_string(file, "bad"), moe::EngineError);
  EXPECT_THROW(moe::detail::read_python_int(file, "badn"), moe::EngineError);
}

TEST(TiktokenPattern, IntersectionsAndScriptsTranslateToPcre2) {
  using moe::detail::rust_regex_to_pcre2;
  EXPECT_EQ(rust_regex_to_pcre2(R"([\p{Lu}\p{Lo}&&[^\p{Han}]]+)"), R"((?:(?=[^\p{sc:Han}])[\p{Lu}\p{Lo}])+)");
  EXPECT_EQ(rust_regex_to_pcre2(R"(\p{Han}\p{L}\P{Latin}[^\r\n\p{N}])"), R"(\p{sc:Han}\p{L}\P{sc:Latin}[^\r\n\p{N}])");
  EXPECT_EQ(rust_regex_to_pcre2(R"([a[bc]]|[]x]|\[)"), R"([abc]|[]x]|\[)");
  EXPECT_THROW(rust_regex_to_pcre2(R"([^a&&b])"), std::invalid_argument);
  EXPECT_THROW(rust_regex_to_pcre2(R"([a[^b]])"), std::invalid_argument);
  EXPECT_THROW(rust_regex_to_pcre2(R"([abc)"), std::invalid_argument);
  // What the translation means: a non-Han letter run stops at Han, and 、 (Script Common, Han only by its script
  // extensions) is not Han for the first alternative.
  const moe::detail::SplitRegex re(rust_regex_to_pcre2(R"([\p{Han}]+|[\p{L}&&[^\p{Han}]]+|[^\s\p{L}]+)"), false);
  const std::string text = "abc你好、世界";
  std::vector<std::string> pieces;
  for (const auto& [b, e] : re.find_all(text)) pieces.push_back(text.substr(b, e - b));
  EXPECT_EQ(pieces, (std::vector<std::string>{"abc", "你好", "、", "世界"}));
}

// A copy of the fixture folder to break things in.
struct FixtureCopy {
  ScratchDir dir;
  FixtureCopy() {
    for (const char* f : {"tiktoken.model", "tokenization_workbench.py", "tokenizer_config.json"})
      dir.write(f, read_file(kModel / f));
  }
  void expect_error(const std::string& file, const std::string& field, const std::string& part = "") const {
    try {
      moe::Tokenizer::load(dir.path);
      ADD_FAILURE() << "expected an EngineError for " << file << " / " << field;
    } catch (const moe::EngineError& e) {
      EXPECT_NE(e.file().find(file), std::string::npos) << e.what();
      EXPECT_EQ(e.field(), field) << e.what();
      if (!part.empty()) {
        EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
      }
    }
  }
};

TEST(TiktokenErrors, BrokenRanksFile) {
  FixtureCopy f;
  const std::string ranks = read_file(kModel / "tiktoken.model");
  const int32_t base = expected()["base_tokens"].get<int32_t>();
  const std::string next_line = "line " + std::to_string(base + 1);
  f.dir.write("tiktoken.model", "");
  f.expect_error("tiktoken.model", "", "no tokens");
  f.dir.write("tiktoken.model", ranks + "QUJD\n");
  f.expect_error("tiktoken.model", next_line, "<base64 bytes> <rank>");
  f.dir.write("tiktoken.model", ranks + "!!!! " + std::to_string(base) + "\n");
  f.expect_error("tiktoken.model", next_line, "base64");
  f.dir.write("tiktoken.model", ranks + "QUJD -4\n");
  f.expect_error("tiktoken.model", next_line, "rank");
  f.dir.write("tiktoken.model", ranks + "QUJDRA== 5\n");
  f.expect_error("tiktoken.model", "", "rank 5 given twice");
  const std::string first = ranks.substr(0, ranks.find(' '));  // rank 0's bytes, again as the last rank
  const size_t last = ranks.rfind('\n', ranks.size() - 2) + 1;
  f.dir.write("tiktoken.model", ranks.substr(0, last) + first + " " + std::to_string(base - 1) + "\n");
  f.expect_error("tiktoken.model", "rank " + std::to_string(base - 1), "the same bytes as rank 0");
  f.dir.write("tiktoken.model", "QUJDREVG 0" + ranks.substr(ranks.find('\n')));  // rank 0 was byte 0x21 '!'
  f.expect_error("tiktoken.model", "", "byte 33 has no rank");
  f.dir.write("tiktoken.model", ranks.substr(ranks.find('\n') + 1));  // rank 0 missing
  f.expect_error("tiktoken.model", "", "ranks are not 0..");
  f.dir.write("tiktoken.model", ranks + "QUJDRA== 5000\n");
  f.expect_error("tiktoken.model", "", "collide");
}

TEST(TiktokenErrors, MissingOrBrokenPatternSource) {
  FixtureCopy f;
  const std::string config = read_file(kModel / "tokenizer_config.json");
  json j = json::parse(config);
  j.erase("auto_map");
  f.dir.write("tokenizer_config.json", j.dump());
  f.expect_error("tokenizer_config.json", "auto_map.AutoTokenizer", "split pattern");
  j["auto_map"] = {{"AutoTokenizer", {nullptr, nullptr}}};
  f.dir.write("tokenizer_config.json", j.dump());
  f.expect_error("tokenizer_config.json", "auto_map.AutoTokenizer", "not a class name");
  j["auto_map"] = {{"AutoTokenizer", {"tokenization_missing.TikTokenTokenizer", nullptr}}};
  f.dir.write("tokenizer_config.json", j.dump());
  f.expect_error("tokenization_missing.py", "", "file not found");
  f.dir.write("tokenizer_config.json", config);
  f.dir.write("tokenization_workbench.py", "class T:\n    num_reserved_special_tokens = 256\n");
  f.expect_error("tokenization_workbench.py", "pat_str", "not found");
  f.dir.write("tokenization_workbench.py", "pat_str = r\"[^a&&b]\"\nnum_reserved_special_tokens = 256\n");
  f.expect_error("tokenization_workbench.py", "pat_str", "negated class intersection");
  f.dir.write("tokenization_workbench.py", "pat_str = r\"(unclosed\"\nnum_reserved_special_tokens = 256\n");
  f.expect_error("tokenization_workbench.py", "pat_str", "offset");
  f.dir.write("tokenization_workbench.py", "pat_str = r\"\\s+\"\nnum_reserved_special_tokens = 16\n");
  const int32_t unk = expected()["special_ids"]["[UNK]"].get<int32_t>();  // the first id past 16 reserved
  f.expect_error("tokenizer_config.json", "added_tokens_decoder." + std::to_string(unk), "outside the special tokens");
  fs::remove(f.dir / "tokenizer_config.json");
  f.expect_error("tokenizer_config.json", "", "file not found");
}

// Only a tiktoken folder reads auto_map: an odd one elsewhere changes nothing.
TEST(TiktokenErrors, AutoMapMattersOnlyToTiktoken) {
  ScratchDir dir;
  const fs::path bpe = moe::test::tokenizer_data() / "bpe";
  dir.write("tokenizer.json", read_file(bpe / "tokenizer.json"));
  json config = moe::test::read_json(bpe / "tokenizer_config.json");
  config["auto_map"] = {{"AutoTokenizer", {nullptr, 7}}};
  dir.write("tokenizer_config.json", config.dump());
  EXPECT_EQ(moe::Tokenizer::load(dir.path)->encode("Hello world"), moe::Tokenizer::load(bpe)->encode("Hello world"));
}

// Damages one file of the fixture `rounds` times (every third round a truncation, else three bytes replaced
// from `alphabet`) and loads the folder each time: a tokenizer that works, or an EngineError that `expected`
// accepts. Returns how many rounds gave an error.
int load_damaged(const std::string& name, unsigned seed, int rounds, std::string_view alphabet,
                 const std::function<bool(const moe::EngineError&)>& expected) {
  const std::string good = read_file(kModel / name);
  std::mt19937 rng(seed);
  FixtureCopy f;
  int errors = 0;
  for (int round = 0; round < rounds; ++round) {
    std::string text = good;
    if (round % 3 == 0) {
      text.resize(std::uniform_int_distribution<size_t>(0, text.size() - 1)(rng));
    } else {
      for (int k = 0; k < 3; ++k) {
        const size_t at = std::uniform_int_distribution<size_t>(0, text.size() - 1)(rng);
        text[at] = alphabet[std::uniform_int_distribution<size_t>(0, alphabet.size() - 1)(rng)];
      }
    }
    f.dir.write(name, text);
    try {
      const auto tok = moe::Tokenizer::load(f.dir.path);
      (void)tok->decode(tok->encode("Hello, wörld! 你好 123 <|im_end|>"));
    } catch (const moe::EngineError& e) {
      EXPECT_TRUE(expected(e)) << e.what();
      ++errors;
    }
  }
  return errors;
}

TEST(TiktokenErrors, DamagedRanksNeverCrash) {
  const int errors = load_damaged("tiktoken.model", 77, 60, "A/+= \n9-\xC4x", [](const moe::EngineError& e) {
    // A file that lost ranks moves the special tokens, which the config's ids then no longer fit.
    return e.file().find("tiktoken.model") != std::string::npos ||
           (e.file().find("tokenizer_config.json") != std::string::npos &&
            std::string(e.what()).find("ranks of") != std::string::npos);
  });
  EXPECT_GT(errors, 0);
}

TEST(TiktokenErrors, DamagedPatternSourceNeverCrashes) {
  const int errors = load_damaged("tokenization_workbench.py", 78, 80, "[]()&^\\\"'\n{}|,+",
                                  [](const moe::EngineError& e) {
                                    return e.file().find("tokenization_workbench.py") != std::string::npos;
                                  });
  EXPECT_GT(errors, 0);
}

}  // namespace
