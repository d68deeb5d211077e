// JSON configuration files: typed reads, and errors that name the file, the key and what was found.
#include "engine/formats/json_file.h"

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>

#include "engine/common/error.h"
#include "tests/support/test_support.h"

namespace moe {
namespace {

namespace fs = std::filesystem;

class JsonFileTest : public ::testing::Test {
 protected:
  fs::path put(const std::string& text, const std::string& name = "config.json") { return dir_.write(name, text); }
  test::ScratchDir dir_;
};

// `f` must throw EngineError with this file and field, and a message holding every fragment.
template <typename F>
void expect_error(F&& f, const std::string& file, const std::string& field, std::initializer_list<std::string> fragments) {
  try {
    f();
    ADD_FAILURE() << "no error";
  } catch (const EngineError& e) {
    const std::string what = e.what();
    EXPECT_EQ(e.file(), file) << what;
    EXPECT_EQ(e.field(), field) << what;
    EXPECT_NE(what.find(file), std::string::npos) << what;
    for (const std::string& s : fragments) EXPECT_NE(what.find(s), std::string::npos) << "'" << s << "' not in: " << what;
  }
}

constexpr const char* kConfig = R"({
  "hidden_size": 2048,
  "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0,
  "tie_word_embeddings": false,
  "model_type": "qwen3_moe",
  "eos_token_id": 151645,
  "eos_list": [151645, 151643],
  "whole_float": 8.0,
  "rope_scaling": null,
  "name": "abc"
})";

TEST_F(JsonFileTest, TypedGetters) {
  const JsonFields f = JsonFields::load(put(kConfig));
  EXPECT_EQ(f.integer("hidden_size"), 2048);
  EXPECT_EQ(f.integer_or("absent", 7), 7);
  EXPECT_EQ(f.integer("whole_float"), 8);  // some tools write 8.0 for an integer
  EXPECT_DOUBLE_EQ(f.number("rms_norm_eps"), 1e-6);
  EXPECT_DOUBLE_EQ(f.number("hidden_size"), 2048.0);  // an integer is a number
  EXPECT_DOUBLE_EQ(f.number_or("absent", 0.5), 0.5);
  EXPECT_FALSE(f.boolean_or("tie_word_embeddings", true));
  EXPECT_TRUE(f.boolean_or("absent", true));
  EXPECT_EQ(f.string("model_type"), "qwen3_moe");
  EXPECT_EQ(f.string_or("absent", "x"), "x");
  EXPECT_EQ(f.integer_list_or_empty("eos_token_id"), (std::vector<int64_t>{151645}));
  EXPECT_EQ(f.integer_list_or_empty("eos_list"), (std::vector<int64_t>{151645, 151643}));
  EXPECT_TRUE(f.integer_list_or_empty("absent").empty());
  // null counts as absent: configs write "rope_scaling": null for "none".
  EXPECT_TRUE(f.has("model_type"));
  EXPECT_FALSE(f.has("rope_scaling"));
  EXPECT_FALSE(f.has("absent"));
  EXPECT_EQ(f.integer_or("rope_scaling", 3), 3);
  EXPECT_EQ(f.raw()["hidden_size"], 2048);
}

TEST_F(JsonFileTest, WrongTypesNameTheKeyAndWhatWasThere) {
  const fs::path p = put(kConfig);
  const JsonFields f = JsonFields::load(p);
  const std::string file = p.string();
  expect_error([&] { f.integer("name"); }, file, "name", {"expected an integer, got string \"abc\""});
  expect_error([&] { f.integer("rms_norm_eps"); }, file, "rms_norm_eps", {"expected an integer", "number 1e-06"});
  expect_error([&] { f.integer_or("tie_word_embeddings", 1); }, file, "tie_word_embeddings",
               {"expected an integer, got boolean false"});
  expect_error([&] { f.number("model_type"); }, file, "model_type", {"expected a number, got string \"qwen3_moe\""});
  expect_error([&] { f.boolean_or("hidden_size", false); }, file, "hidden_size", {"expected true or false, got integer 2048"});
  expect_error([&] { f.string("hidden_size"); }, file, "hidden_size", {"expected a string, got integer 2048"});
  expect_error([&] { f.string_or("eos_list", ""); }, file, "eos_list", {"expected a string, got an array"});
  expect_error([&] { f.integer_list_or_empty("name"); }, file, "name", {"an integer or a list of integers"});
}

TEST_F(JsonFileTest, MissingRequiredKeys) {
  const fs::path p = put(kConfig);
  const JsonFields f = JsonFields::load(p);
  expect_error([&] { f.integer("num_experts"); }, p.string(), "num_experts", {"missing"});
  expect_error([&] { f.number("rope_scaling"); }, p.string(), "rope_scaling", {"missing"});
  expect_error([&] { f.string("tokenizer_class"); }, p.string(), "tokenizer_class", {"missing"});
}

TEST_F(JsonFileTest, BadListEntryNamesItsIndex) {
  const fs::path p = put(R"({"eos_token_id": [1, "two", 3]})");
  const JsonFields f = JsonFields::load(p);
  expect_error([&] { f.integer_list_or_empty("eos_token_id"); }, p.string(), "eos_token_id[1]",
               {"expected an integer, got string \"two\""});
}

TEST_F(JsonFileTest, IntegersOutOfRange) {
  const fs::path p = put(R"({"big": 18446744073709551615, "frac": 2.5, "huge": 1e300})");
  const JsonFields f = JsonFields::load(p);
  expect_error([&] { f.integer("big"); }, p.string(), "big", {"integer 18446744073709551615 is out of range"});
  expect_error([&] { f.integer("frac"); }, p.string(), "frac", {"expected an integer, got number 2.5"});
  expect_error([&] { f.integer("huge"); }, p.string(), "huge", {"is out of range"});
}

TEST_F(JsonFileTest, MissingFile) {
  const fs::path p = dir_ / "nope.json";
  expect_error([&] { load_json_file(p); }, p.string(), "", {"file not found"});
  expect_error([&] { JsonFields::load(p); }, p.string(), "", {"file not found"});
  expect_error([&] { load_json_file(dir_.path); }, dir_.path.string(), "", {"folder"});
}

TEST_F(JsonFileTest, ParseErrorsGivePositions) {
  const fs::path p = put("{\n  \"a\": 1,\n  \"b\": ,\n}");
  expect_error([&] { load_json_file(p); }, p.string(), "", {"not valid JSON", "line 3, column 8", "byte 19"});
  const fs::path empty = put("", "empty.json");
  expect_error([&] { load_json_file(empty); }, empty.string(), "", {"not valid JSON", "byte 0"});
  const fs::path bad_utf8 = put("{\"a\": \"\xff\"}", "utf8.json");
  expect_error([&] { load_json_file(bad_utf8); }, bad_utf8.string(), "", {"not valid JSON", "byte"});
  const fs::path overflow = put("{\"a\": 1e999}", "overflow.json");
  expect_error([&] { load_json_file(overflow); }, overflow.string(), "", {"not valid JSON"});
}

TEST_F(JsonFileTest, TopLevelMustBeAnObject) {
  const fs::path p = put("[1, 2]");
  EXPECT_NO_THROW(load_json_file(p));
  expect_error([&] { JsonFields::load(p); }, p.string(), "", {"expected a JSON object", "an array"});
}

}  // namespace
}  // namespace moe
