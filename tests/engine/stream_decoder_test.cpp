// Streaming detokenization (SPECS.md §9.1 "Decode", §12.12): text comes out as soon as it is whole, the bytes
// of a character cut between tokens are held back, and the pieces add up to exactly the full decode.
#include <gtest/gtest.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"
#include "tests/support/test_support.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const fs::path kData = moe::test::tokenizer_data();

const json& expected() { return moe::test::tokenizer_expected(); }

const moe::Tokenizer& tokenizer(const std::string& name) {
  static const auto bpe = moe::Tokenizer::load(kData / "bpe");
  static const auto spm = moe::Tokenizer::load(kData / "spm");
  return name == "bpe" ? *bpe : *spm;
}

// The encoding's UTF-8 character starts: every chunk the stream gives out must end on one of them.
bool is_whole_utf8(const std::string& s) { return moe::utf8::is_valid(s); }

class StreamCorpus : public ::testing::TestWithParam<std::string> {};

TEST_P(StreamCorpus, OneIdAtATimeGivesTheFullDecode) {
  const moe::Tokenizer& tok = tokenizer(GetParam());
  for (const auto& c : expected()["cases"]) {
    const std::string text = c["text"];
    SCOPED_TRACE("text: " + json(text).dump());
    const auto ids = c[GetParam()]["ids"].get<std::vector<int32_t>>();
    for (bool skip : {false, true}) {
      moe::StreamDecoder stream(tok, skip);
      std::string joined;
      for (int32_t id : ids) {
        const std::string chunk = stream.push(id);
        EXPECT_TRUE(is_whole_utf8(chunk)) << "chunk " << json(chunk).dump() << " is not whole UTF-8";
        joined += chunk;
      }
      joined += stream.flush();
      EXPECT_EQ(joined, tok.decode(ids, skip)) << "skip_special=" << skip;
      EXPECT_EQ(joined, c[GetParam()][skip ? "decoded_skip_special" : "decoded"].get<std::string>());
    }
  }
}

INSTANTIATE_TEST_SUITE_P(BothTokenizers, StreamCorpus, ::testing::Values("bpe", "spm"),
                         [](const auto& info) { return info.param; });

// Ids that spell `bytes` one byte per token (byte-level symbols for BPE, <0xXX> pieces for SentencePiece).
std::vector<int32_t> byte_ids(const moe::Tokenizer& tok, const std::string& bytes) {
  std::vector<int32_t> ids;
  for (unsigned char b : bytes) {
    std::optional<int32_t> id;
    if (tok.kind() == "SentencePiece BPE") {
      id = tok.token_to_id(moe::test::byte_piece_name(b));
    } else {
      for (int32_t i = 0; i < tok.size() && !id; ++i)
        if (tok.token_bytes(i, -1) == std::string(1, char(b))) id = i;
    }
    EXPECT_TRUE(id.has_value()) << int(b);
    ids.push_back(id.value_or(0));
  }
  return ids;
}

class StreamBytes : public ::testing::TestWithParam<std::string> {};

TEST_P(StreamBytes, CharacterCutBetweenTokensIsHeldBack) {
  const moe::Tokenizer& tok = tokenizer(GetParam());
  // "a😀b": the emoji's four bytes arrive in four tokens.
  const auto ids = byte_ids(tok, "a\xF0\x9F\x98\x80" "b");
  moe::StreamDecoder stream(tok);
  EXPECT_EQ(stream.push(ids[0]), "a");
  EXPECT_EQ(stream.push(ids[1]), "");
  EXPECT_EQ(stream.push(ids[2]), "");
  EXPECT_EQ(stream.push(ids[3]), "");
  EXPECT_EQ(stream.push(ids[4]), "\xF0\x9F\x98\x80");
  EXPECT_EQ(stream.push(ids[5]), "b");
  EXPECT_EQ(stream.flush(), "");
}

TEST_P(StreamBytes, EveryCutOfAMultiByteTextEmitsOnlyWholeCharacters) {
  const moe::Tokenizer& tok = tokenizer(GetParam());
  const std::string text = "\xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9 \xC3\xA9";  // 你好 👨‍👩 é
  const auto ids = byte_ids(tok, text);
  moe::StreamDecoder stream(tok);
  std::string joined;
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string chunk = stream.push(ids[i]);
    EXPECT_TRUE(is_whole_utf8(chunk)) << i;
    joined += chunk;
    EXPECT_EQ(joined, text.substr(0, joined.size())) << "only a prefix of the text, never a partial char";
  }
  EXPECT_EQ(joined + stream.flush(), text);
}

TEST_P(StreamBytes, IncompleteTailBecomesReplacementAtFlush) {
  const moe::Tokenizer& tok = tokenizer(GetParam());
  const auto ids = byte_ids(tok, "x\xE4\xBD");  // 你 without its last byte
  moe::StreamDecoder stream(tok);
  std::string out;
  for (int32_t id : ids) out += stream.push(id);
  EXPECT_EQ(out, "x");
  EXPECT_EQ(stream.flush(), "\xEF\xBF\xBD");
  EXPECT_EQ(tok.decode(ids), "x\xEF\xBF\xBD");
}

TEST_P(StreamBytes, InvalidBytesAreReplacedAsSoonAsTheyCannotComplete) {
  const moe::Tokenizer& tok = tokenizer(GetParam());
  // 0xFF can never start a character; E4 followed by 'a' is a broken sequence.
  const auto ids = byte_ids(tok, "\xFF" "\xE4" "a");
  moe::StreamDecoder stream(tok);
  EXPECT_EQ(stream.push(ids[0]), "\xEF\xBF\xBD");
  EXPECT_EQ(stream.push(ids[1]), "");
  EXPECT_EQ(stream.push(ids[2]), "\xEF\xBF\xBD" "a");
  EXPECT_EQ(stream.flush(), "");
  EXPECT_EQ(tok.decode(ids), "\xEF\xBF\xBD\xEF\xBF\xBD" "a");
}

INSTANTIATE_TEST_SUITE_P(BothTokenizers, StreamBytes, ::testing::Values("bpe", "spm"),
                         [](const auto& info) { return info.param; });

TEST(StreamDecoder, SkipSpecialDropsSpecialsButKeepsThink) {
  const moe::Tokenizer& tok = tokenizer("bpe");
  const auto ids = tok.encode("<|im_start|>assistant\n<think>\nhm\n</think>\n\nok<|im_end|>");
  moe::StreamDecoder stream(tok, /*skip_special=*/true);
  std::string out;
  for (int32_t id : ids) out += stream.push(id);
  out += stream.flush();
  EXPECT_EQ(out, "assistant\n<think>\nhm\n</think>\n\nok");
}

TEST(StreamDecoder, SentencePieceLeadingSpaceFollowsTheFullDecode) {
  const moe::Tokenizer& tok = tokenizer("spm");
  const auto ids = tok.encode("Hello world");  // BOS + pieces, the first one starting with "▁"
  ASSERT_EQ(ids.front(), 1);
  for (bool skip : {false, true}) {
    moe::StreamDecoder stream(tok, skip);
    std::string out;
    for (int32_t id : ids) out += stream.push(id);
    out += stream.flush();
    EXPECT_EQ(out, skip ? "Hello world" : "<s> Hello world");
  }
}

TEST(StreamDecoder, UnknownIdsProduceNothing) {
  const moe::Tokenizer& tok = tokenizer("bpe");
  moe::StreamDecoder stream(tok);
  EXPECT_EQ(stream.push(-1), "");
  EXPECT_EQ(stream.push(tok.size() + 100), "");
  EXPECT_EQ(stream.flush(), "");
}

}  // namespace
