// The sampler: greedy is argmax, padded ids are never drawn, seeds reproduce, the filters (top-k, top-p,
// min-p) keep exactly the tokens transformers keeps, and the penalties touch exactly the right logits.
// Also generation_config.json, read as transformers reads it.
#include "engine/runtime/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "engine/common/error.h"
#include "tests/support/test_support.h"

namespace moe {
namespace {

namespace fs = std::filesystem;

SamplingParams sampling(float temperature = 1.0f, uint64_t seed = 0) {
  SamplingParams p;
  p.greedy = false;
  p.temperature = temperature;
  p.seed = seed;
  return p;
}

// Logits whose softmax is exactly `probs` (up to rounding).
std::vector<float> logits_of(const std::vector<double>& probs) {
  std::vector<float> out;
  for (double p : probs) out.push_back(float(std::log(p)));
  return out;
}

// How often each id comes out over n draws, each from a fresh copy of `logits` and no context.
std::vector<double> frequencies(Sampler& s, const std::vector<float>& logits, int n) {
  std::vector<double> counts(logits.size(), 0.0);
  for (int i = 0; i < n; ++i) {
    std::vector<float> row = logits;
    const int32_t id = s.sample(row, {}, 0);
    counts.at(size_t(id)) += 1.0;
  }
  for (double& c : counts) c /= n;
  return counts;
}

// With 20000 draws the standard error of a frequency is under 0.0036; 0.015 is four of those.
constexpr int kDraws = 20000;
constexpr double kTolerance = 0.015;

void expect_distribution(const std::vector<double>& got, const std::vector<double>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    if (want[i] == 0.0) EXPECT_EQ(got[i], 0.0) << "id " << i << " must never be drawn";
    else EXPECT_NEAR(got[i], want[i], kTolerance) << "id " << i;
  }
}

// ---------------------------------------------------------------------------------------------------
// Greedy and the padded vocabulary

TEST(Sampler, GreedyIsArgmax) {
  Sampler s(SamplingParams{}, 5);
  std::vector<float> logits = {0.1f, 2.0f, -1.0f, 1.9f, 0.0f};
  EXPECT_EQ(s.sample(logits, {}, 0), 1);
  std::vector<float> tie = {0.5f, 3.0f, 3.0f, -1.0f, 0.0f};  // a tie goes to the lower id, as torch.argmax
  EXPECT_EQ(s.sample(tie, {}, 0), 1);
  std::vector<float> with_nan = {NAN, 0.0f, 1.0f, NAN, -1.0f};  // NaN never wins
  EXPECT_EQ(s.sample(with_nan, {}, 0), 2);
}

TEST(Sampler, PaddedIdsAreNeverChosen) {
  // The embedding has 8 rows but the tokenizer only 5 ids: rows 5..7 are padding, even at logit 100.
  std::vector<float> logits = {0.0f, 1.0f, 0.5f, -1.0f, 0.2f, 100.0f, 90.0f, 100.0f};
  Sampler greedy(SamplingParams{}, 5);
  std::vector<float> row = logits;
  EXPECT_EQ(greedy.sample(row, {}, 0), 1);

  Sampler sampled(sampling(2.0f, 7), 5);
  for (int i = 0; i < 2000; ++i) {
    row = logits;
    EXPECT_LT(sampled.sample(row, {}, 0), 5);
  }
}

TEST(Sampler, RowShorterThanTheVocabularyIsAnError) {
  Sampler s(SamplingParams{}, 10);
  std::vector<float> row(4, 0.0f);
  EXPECT_THROW(s.sample(row, {}, 0), EngineError);
}

TEST(Sampler, TopK1IsGreedy) {
  std::mt19937 gen(3);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (uint64_t seed = 0; seed < 50; ++seed) {
    std::vector<float> logits(100);
    for (float& x : logits) x = normal(gen);
    SamplingParams p = sampling(1.3f, seed);
    p.top_k = 1;
    Sampler top1(p, 100), greedy(SamplingParams{}, 100);
    std::vector<float> a = logits, b = logits;
    EXPECT_EQ(top1.sample(a, {}, 0), greedy.sample(b, {}, 0)) << "seed " << seed;
  }
}

TEST(Sampler, TemperatureZeroIsGreedy) {
  Sampler s(sampling(0.0f, 1), 4);
  for (int i = 0; i < 100; ++i) {
    std::vector<float> row = {0.0f, 0.1f, 0.3f, 0.2f};
    EXPECT_EQ(s.sample(row, {}, 0), 2);
  }
}

// ---------------------------------------------------------------------------------------------------
// Seeds

std::vector<int32_t> draw_sequence(uint64_t seed, int n) {
  Sampler s(sampling(1.0f, seed), 6);
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    std::vector<float> row = {0.0f, 0.2f, 0.4f, 0.1f, -0.3f, 0.3f};
    out.push_back(s.sample(row, out, 0));
  }
  return out;
}

TEST(Sampler, SameSeedSameSequence) {
  EXPECT_EQ(draw_sequence(42, 300), draw_sequence(42, 300));
  EXPECT_EQ(draw_sequence(0, 300), draw_sequence(0, 300));
}

TEST(Sampler, DifferentSeedsDiffer) {
  const auto a = draw_sequence(1, 300), b = draw_sequence(2, 300);
  int same = 0;
  for (size_t i = 0; i < a.size(); ++i) same += a[i] == b[i];
  // Two independent draws from six similar weights agree about 1 time in 6.
  EXPECT_LT(same, 120);
}

TEST(Sampler, NewSeedRestartsTheSequence) {
  Sampler s(sampling(1.0f, 5), 6);
  std::vector<float> row = {0.0f, 0.2f, 0.4f, 0.1f, -0.3f, 0.3f};
  for (int i = 0; i < 10; ++i) {
    std::vector<float> r = row;
    s.sample(r, {}, 0);
  }
  s.set_params(sampling(1.0f, 42));
  std::vector<int32_t> got;
  for (int i = 0; i < 50; ++i) {
    std::vector<float> r = row;
    got.push_back(s.sample(r, got, 0));
  }
  EXPECT_EQ(got, draw_sequence(42, 50));
}

// ---------------------------------------------------------------------------------------------------
// The distribution and its filters, on probabilities 0.5, 0.25, 0.15, 0.1

const std::vector<double> kProbs = {0.5, 0.25, 0.15, 0.1};

TEST(Sampler, PlainSamplingFollowsTheSoftmax) {
  Sampler s(sampling(1.0f, 11), 4);
  expect_distribution(frequencies(s, logits_of(kProbs), kDraws), kProbs);
}

TEST(Sampler, TemperatureSharpens) {
  // p ∝ exp(logit / T): logits 0 and ln 2 at T = 0.5 give weights 1 and 4.
  Sampler s(sampling(0.5f, 12), 2);
  const std::vector<float> logits = {0.0f, float(std::log(2.0))};
  expect_distribution(frequencies(s, logits, kDraws), {0.2, 0.8});
  std::vector<float> row = logits;
  s.sample(row, {}, 0);
  EXPECT_FLOAT_EQ(row[1], float(std::log(2.0)) / 0.5f);  // the row is left divided by T
}

TEST(Sampler, TopKKeepsTheKMostLikely) {
  SamplingParams p = sampling(1.0f, 13);
  p.top_k = 2;
  Sampler s(p, 4);
  expect_distribution(frequencies(s, logits_of(kProbs), kDraws), {2.0 / 3, 1.0 / 3, 0, 0});
}

TEST(Sampler, TopKKeepsTiesWithTheKth) {
  // As transformers: everything ≥ the k-th largest logit survives.
  SamplingParams p = sampling(1.0f, 14);
  p.top_k = 2;
  Sampler s(p, 4);
  expect_distribution(frequencies(s, {1.0f, 1.0f, 1.0f, 0.0f}, kDraws), {1.0 / 3, 1.0 / 3, 1.0 / 3, 0});
}

TEST(Sampler, TopPKeepsTheSmallestSetReachingP) {
  SamplingParams p = sampling(1.0f, 15);
  p.top_p = 0.7f;  // 0.5 < 0.7 ≤ 0.75: the first two
  Sampler s(p, 4);
  expect_distribution(frequencies(s, logits_of(kProbs), kDraws), {2.0 / 3, 1.0 / 3, 0, 0});

  p.top_p = 0.85f;  // 0.75 < 0.85 ≤ 0.9: the first three
  s.set_params(p);
  expect_distribution(frequencies(s, logits_of(kProbs), kDraws), {0.5 / 0.9, 0.25 / 0.9, 0.15 / 0.9, 0});

  p.top_p = 0.3f;  // the most likely alone already reaches it
  s.set_params(p);
  expect_distribution(frequencies(s, logits_of(kProbs), 2000), {1, 0, 0, 0});

  p.top_p = 0.0f;  // never less than one token
  s.set_params(p);
  expect_distribution(frequencies(s, logits_of(kProbs), 2000), {1, 0, 0, 0});
}

TEST(Sampler, MinPDropsTokensFarBelowTheBest) {
  SamplingParams p = sampling(1.0f, 16);
  p.min_p = 0.35f;  // threshold 0.175: 0.15 and 0.1 go
  Sampler s(p, 4);
  expect_distribution(frequencies(s, logits_of(kProbs), kDraws), {2.0 / 3, 1.0 / 3, 0, 0});

  p.min_p = 0.25f;  // threshold 0.125: only 0.1 goes
  s.set_params(p);
  expect_distribution(frequencies(s, logits_of(kProbs), kDraws), {0.5 / 0.9, 0.25 / 0.9, 0.15 / 0.9, 0});

  p.min_p = 1.0f;  // only the best survives
  s.set_params(p);
  expect_distribution(frequencies(s, logits_of(kProbs), 2000), {1, 0, 0, 0});
}

TEST(Sampler, FiltersCompose) {
  // top-k 3 leaves 0.5, 0.25, 0.15 (renormalised 0.556, 0.278, 0.167); top-p 0.8 then keeps the first two.
  SamplingParams p = sampling(1.0f, 17);
  p.top_k = 3;
  p.top_p = 0.8f;
  Sampler s(p, 4);
  expect_distribution(frequencies(s, logits_of(kProbs), kDraws), {2.0 / 3, 1.0 / 3, 0, 0});
}

// ---------------------------------------------------------------------------------------------------
// Penalties

TEST(Sampler, RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogitsOnce) {
  SamplingParams p;  // greedy: the penalties still apply
  p.repetition_penalty = 2.0f;
  Sampler s(p, 6);
  std::vector<float> row = {2.0f, -2.0f, 1.0f, 0.5f, 3.0f, 0.0f};
  // id 1 appears three times, in the prompt and the output: penalised once. Ids 2 and 4 never appear.
  const std::vector<int32_t> context = {0, 1, 1, 3, 5, 1};
  EXPECT_EQ(s.sample(row, context, 3), 4);
  EXPECT_EQ(row, (std::vector<float>{1.0f, -4.0f, 1.0f, 0.25f, 3.0f, 0.0f}));
}

TEST(Sampler, RepetitionPenaltyCanChangeTheChoice) {
  SamplingParams p;
  p.repetition_penalty = 1.5f;
  Sampler s(p, 3);
  std::vector<float> row = {3.0f, 2.5f, 0.0f};
  EXPECT_EQ(s.sample(row, std::vector<int32_t>{0}, 1), 1);  // 3 / 1.5 = 2 < 2.5
}

TEST(Sampler, PresencePenaltySubtractsOncePerGeneratedId) {
  SamplingParams p;
  p.presence_penalty = 1.5f;
  Sampler s(p, 5);
  std::vector<float> row = {4.0f, 1.0f, 2.0f, 3.0f, 0.0f};
  // Prompt {0, 2}, generated {2, 3, 3}: ids 2 and 3 lose 1.5 once each; id 0 (prompt only) keeps its logit.
  const std::vector<int32_t> context = {0, 2, 2, 3, 3};
  EXPECT_EQ(s.sample(row, context, 2), 0);
  EXPECT_EQ(row, (std::vector<float>{4.0f, 1.0f, 0.5f, 1.5f, 0.0f}));
}

TEST(Sampler, RepetitionThenPresence) {
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  p.presence_penalty = 1.0f;
  Sampler s(p, 3);
  std::vector<float> row = {2.0f, -1.0f, 0.5f};
  s.sample(row, std::vector<int32_t>{0, 1, 0}, 1);  // prompt {0}, generated {1, 0}
  EXPECT_EQ(row, (std::vector<float>{0.0f, -3.0f, 0.5f}));  // 2/2−1, −1·2−1
}

TEST(Sampler, ContextIdsOutsideTheRowAreIgnored) {
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  p.presence_penalty = 1.0f;
  Sampler s(p, 3);
  std::vector<float> row = {1.0f, 2.0f, 3.0f};
  s.sample(row, std::vector<int32_t>{-1, 7, 1 << 30}, 0);
  EXPECT_EQ(row, (std::vector<float>{1.0f, 2.0f, 3.0f}));
  s.sample(row, std::vector<int32_t>{2}, 5);  // generated_from past the end: prompt only
  EXPECT_EQ(row, (std::vector<float>{1.0f, 2.0f, 1.5f}));
}

TEST(Sampler, NonsenseParametersAreRefusedByName) {
  const auto field_of = [](SamplingParams p) {
    try {
      Sampler s(p, 4);
    } catch (const EngineError& e) {
      return e.field();
    }
    return std::string("(no error)");
  };
  SamplingParams p;
  p.top_p = 1.5f;
  EXPECT_EQ(field_of(p), "top_p");
  p = {};
  p.min_p = -0.1f;
  EXPECT_EQ(field_of(p), "min_p");
  p = {};
  p.temperature = -1.0f;
  EXPECT_EQ(field_of(p), "temperature");
  p = {};
  p.top_k = -3;
  EXPECT_EQ(field_of(p), "top_k");
  p = {};
  p.repetition_penalty = 0.0f;
  EXPECT_EQ(field_of(p), "repetition_penalty");
  EXPECT_THROW(Sampler(SamplingParams{}, 0), EngineError);
}

// ---------------------------------------------------------------------------------------------------
// generation_config.json

class GenerationConfigTest : public ::testing::Test {
 protected:
  void put(const std::string& text) { dir_.write("generation_config.json", text); }
  std::string file() const { return (dir_ / "generation_config.json").string(); }
  test::ScratchDir dir_;
};

TEST_F(GenerationConfigTest, Qwen3ThinkingDefaultsWithAnEosList) {
  put(R"({"bos_token_id": 151643, "do_sample": true, "eos_token_id": [151645, 151643], "pad_token_id": 151643,
          "temperature": 0.6, "top_k": 20, "top_p": 0.95, "transformers_version": "4.51.0"})");
  const GenerationConfig g = load_generation_config(dir_.path);
  EXPECT_FALSE(g.sampling.greedy);
  EXPECT_FLOAT_EQ(g.sampling.temperature, 0.6f);
  EXPECT_EQ(g.sampling.top_k, 20);
  EXPECT_FLOAT_EQ(g.sampling.top_p, 0.95f);
  EXPECT_EQ(g.sampling.min_p, 0.0f);
  EXPECT_EQ(g.sampling.repetition_penalty, 1.0f);
  EXPECT_EQ(g.eos_ids, (std::vector<int32_t>{151645, 151643}));
  EXPECT_EQ(g.bos_id, 151643);
  EXPECT_EQ(g.pad_id, 151643);
  EXPECT_EQ(g.max_new_tokens, 0);
}

TEST_F(GenerationConfigTest, EosAsAnIntegerAndNoDoSampleMeansGreedy) {
  put(R"({"bos_token_id": 1, "eos_token_id": 2, "max_new_tokens": 256, "repetition_penalty": 1.1,
          "presence_penalty": 1.5, "min_p": null})");
  const GenerationConfig g = load_generation_config(dir_.path);
  EXPECT_TRUE(g.sampling.greedy);
  EXPECT_EQ(g.eos_ids, (std::vector<int32_t>{2}));
  EXPECT_EQ(g.bos_id, 1);
  EXPECT_FALSE(g.pad_id.has_value());
  EXPECT_EQ(g.max_new_tokens, 256);
  EXPECT_FLOAT_EQ(g.sampling.repetition_penalty, 1.1f);
  EXPECT_FLOAT_EQ(g.sampling.presence_penalty, 1.5f);
  EXPECT_EQ(g.sampling.min_p, 0.0f);
  EXPECT_EQ(g.sampling.top_k, 50);  // transformers' default when the file does not say
}

TEST_F(GenerationConfigTest, TemperatureZeroMeansGreedy) {
  put(R"({"do_sample": true, "temperature": 0})");
  EXPECT_TRUE(load_generation_config(dir_.path).sampling.greedy);
}

TEST_F(GenerationConfigTest, AbsentFileGivesTheDefaults) {
  const GenerationConfig g = load_generation_config(dir_.path);
  EXPECT_TRUE(g.sampling.greedy);
  EXPECT_TRUE(g.eos_ids.empty());
  EXPECT_FALSE(g.bos_id.has_value());
  EXPECT_EQ(g.max_new_tokens, 0);
}

TEST_F(GenerationConfigTest, ErrorsNameTheFileAndTheField) {
  const std::map<std::string, std::string> cases = {
      {R"({"temperature": "hot"})", "temperature"},
      {R"({"do_sample": "yes"})", "do_sample"},
      {R"({"top_p": 1.5})", "top_p"},
      {R"({"top_k": -1})", "top_k"},
      {R"({"top_k": 2.5})", "top_k"},
      {R"({"repetition_penalty": 0})", "repetition_penalty"},
      {R"({"eos_token_id": [1, -2]})", "eos_token_id"},
      {R"({"eos_token_id": "</s>"})", "eos_token_id"},
      {R"({"max_new_tokens": -5})", "max_new_tokens"},
  };
  for (const auto& [text, field] : cases) {
    SCOPED_TRACE(text);
    put(text);
    try {
      load_generation_config(dir_.path);
      ADD_FAILURE() << "no error";
    } catch (const EngineError& e) {
      EXPECT_EQ(e.file(), file());
      EXPECT_EQ(e.field(), field) << e.what();
      EXPECT_NE(std::string(e.what()).find("generation_config.json"), std::string::npos);
    }
  }
  put("{\"temperature\": 0.6,,}");
  EXPECT_THROW(load_generation_config(dir_.path), EngineError);
}

}  // namespace
}  // namespace moe
