// GGUF models split into parts (llama.cpp's gguf-split; gguf-py's writer with split_max_tensors): the
// committed qwen3_moe/split/ parts (tests/make_gguf_goldens.py) read as the whole file they came from,
// from any part's path, and parts that are missing or disagree give errors naming the part and the key.
// The split model's logits are GoldenModel's "qwen3_moe.split" case.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "engine/common/error.h"
#include "engine/formats/gguf.h"
#include "engine/model/model.h"
#include "engine/runtime/session.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/tokenizer.h"
#include "tests/support/gguf_builder.h"
#include "tests/support/test_support.h"

namespace moe {
namespace {

const std::string kModels = std::string(MOE_TEST_DATA_DIR) + "/models/";
const std::string kSplit = kModels + "qwen3_moe/split/";
using test::GgufBuilder;
using test::ScratchDir;
using test::error_of;


std::string part_name(int index, int count) {
  char s[64];
  std::snprintf(s, sizeof s, "model-%05d-of-%05d.gguf", index + 1, count);
  return s;
}

TEST(GgufSplit, AnyPartOpensTheWholeModel) {
  const auto whole = GgufFile::open(kModels + "qwen3_moe/model.gguf");
  for (int given = 0; given < 3; ++given) {
    SCOPED_TRACE(part_name(given, 3));
    const auto g = GgufFile::open(kSplit + part_name(given, 3));
    // The first part's path names the model, and the parts are listed in order.
    EXPECT_EQ(g->path(), kSplit + part_name(0, 3));
    const std::vector<std::string> want = {kSplit + part_name(0, 3), kSplit + part_name(1, 3), kSplit + part_name(2, 3)};
    EXPECT_EQ(g->part_paths(), want);
    // The whole file's metadata, plus the split keys.
    nlohmann::json meta = g->metadata();
    EXPECT_EQ(meta["split.count"], 3);
    EXPECT_EQ(meta["split.no"], 0);
    EXPECT_EQ(meta["split.tensors.count"], whole->tensors().size());
    for (const char* k : {"split.count", "split.no", "split.tensors.count"}) meta.erase(k);
    EXPECT_EQ(meta, whole->metadata());
    // Every tensor, each from the part that holds it, with the same bytes.
    ASSERT_EQ(g->tensors().size(), whole->tensors().size());
    std::vector<int> per_part(3, 0);
    for (const auto& [name, w] : whole->tensors()) {
      const GgufTensor* t = g->find(name);
      ASSERT_NE(t, nullptr) << name;
      ASSERT_GE(t->part, 0);
      ASSERT_LT(t->part, 3);
      ++per_part[size_t(t->part)];
      EXPECT_EQ(t->view.file, want[size_t(t->part)]) << name;
      EXPECT_EQ(t->view.shape, w.view.shape) << name;
      ASSERT_EQ(t->view.nbytes, w.view.nbytes) << name;
      EXPECT_EQ(std::memcmp(t->view.data, w.view.data, w.view.nbytes), 0) << name;
    }
    for (int p = 0; p < 3; ++p) EXPECT_GT(per_part[size_t(p)], 0) << "part " << p + 1 << " holds no tensor";
  }
}

// The tokenizer and chat template live in the first part's metadata; the model, tokenizer and template
// load from a later part's path as from the whole file.
TEST(GgufSplit, ModelTokenizerAndTemplateFromALaterPart) {
  const std::string last = kSplit + part_name(2, 3), whole = kModels + "qwen3_moe/model.gguf";
  auto m = Model::load(last);
  auto w = Model::load(whole);
  EXPECT_TRUE(m->is_gguf());
  EXPECT_EQ(m->weight_files().size(), 3u);
  EXPECT_EQ(w->weight_files().size(), 1u);
  EXPECT_EQ(m->weight_bytes(), w->weight_bytes());
  EXPECT_TRUE(m->unused_tensors().empty());

  auto a = Tokenizer::load(last), b = Tokenizer::load(whole);
  for (const char* text : {"Hello world, it's 2026!", "<|im_start|>user\nWhat is 4821 + 739?<|im_end|>\n"})
    EXPECT_EQ(a->encode(text), b->encode(text)) << text;
  const std::vector<ChatMessage> msgs = {{"system", "Be brief."}, {"user", "Hi"}};
  EXPECT_EQ(ChatTemplate::from_model_dir(last).render(msgs, true), ChatTemplate::from_model_dir(whole).render(msgs, true));

  BackendOptions opt;
  opt.threads = 2;
  Session sm(*m, opt), sw(*w, opt);
  const std::vector<int32_t> prompt = a->encode("The experts of a split model");
  EXPECT_EQ(sm.score(prompt, nullptr), sw.score(prompt, nullptr));  // the same bytes, the same arithmetic
}

// Parts written by our builder from the committed parts, so one thing at a time can be wrong.
struct SplitParts {
  std::vector<GgufBuilder> parts;
  SplitParts() {
    for (int i = 0; i < 3; ++i) {
      auto g = GgufFile::open(kSplit + part_name(i, 3));
      // GgufFile::open joins the parts; take part i's own tensors and, for part 1, the metadata.
      GgufBuilder b = GgufBuilder::from_file(*g);
      std::erase_if(b.tensors, [&](const test::GgufTensorBytes& t) { return g->find(t.name)->part != i; });
      if (i > 0) b.metadata = {{"split.no", i}, {"split.count", 3}, {"split.tensors.count", g->tensors().size()}};
      parts.push_back(std::move(b));
    }
  }
  // Writes the parts into `dir` as model-0000i-of-00003.gguf, skipping part `skip`.
  void write(const ScratchDir& dir, int skip = -1) const {
    for (int i = 0; i < 3; ++i)
      if (i != skip) dir.write(part_name(i, 3), parts[size_t(i)].bytes());
  }
};

TEST(GgufSplit, PartsThatDisagreeAreNamed) {
  ScratchDir dir;
  auto open_error = [&](const std::string& part) { return error_of([&] { GgufFile::open(dir / part); }); };
  const std::string p1 = part_name(0, 3), p2 = part_name(1, 3), p3 = part_name(2, 3);
  {
    SplitParts s;
    s.write(dir);
    EXPECT_EQ(open_error(p2), "");  // rewritten as they were, they open
    EXPECT_EQ(GgufFile::open(dir / p2)->tensors().size(), GgufFile::open(kSplit + p1)->tensors().size());
  }
  {
    ScratchDir d2;
    SplitParts s;
    s.write(d2, 1);
    const std::string e = error_of([&] { GgufFile::open(d2 / p1); });
    EXPECT_NE(e.find(p2 + ": missing: part 2 of the 3 files of the model split as"), std::string::npos) << e;
  }
  {
    SplitParts s;
    s.parts[2].metadata["split.count"] = 4;
    s.write(dir);
    const std::string e = open_error(p1);
    EXPECT_NE(e.find(p3 + ": 'split.count': this part says 4"), std::string::npos) << e;
  }
  {
    SplitParts s;
    s.parts[1].metadata["split.no"] = 2;
    s.write(dir);
    const std::string e = open_error(p1);
    EXPECT_NE(e.find(p2 + ": 'split.no': 2, but the file's name makes it 1"), std::string::npos) << e;
  }
  {
    SplitParts s;
    s.parts[2].tensors.push_back(s.parts[1].tensors.front());
    s.write(dir);
    const std::string e = open_error(p1);
    EXPECT_NE(e.find(p3 + ": '" + s.parts[1].tensors.front().name + "': the tensor is also in"), std::string::npos) << e;
  }
  {
    SplitParts s;
    s.parts[0].metadata["split.tensors.count"] = 5;
    s.write(dir);
    const std::string e = open_error(p3);
    EXPECT_NE(e.find(p1 + ": 'split.tensors.count': 5 tensors, but the 3 parts hold"), std::string::npos) << e;
  }
  {
    SplitParts s;
    s.parts[1].metadata.erase("split.no");
    s.write(dir);
    const std::string e = open_error(p1);
    EXPECT_NE(e.find(p2 + ": 'split.no': missing from the metadata"), std::string::npos) << e;
  }
  {
    // A part renamed: its siblings cannot be found from its name.
    SplitParts s;
    const auto renamed = dir.write("qwen3.gguf", s.parts[0].bytes());
    const std::string e = error_of([&] { GgufFile::open(renamed); });
    EXPECT_NE(e.find("qwen3.gguf: 'split.no': part 1 of 3 of a split model, but its name does not end in '-00001-of-00003.gguf'"),
              std::string::npos)
        << e;
  }
  {
    SplitParts s;
    s.parts[0].metadata["split.no"] = 3;
    const auto p = dir.write(p1, s.parts[0].bytes());
    const std::string e = error_of([&] { GgufFile::open(p); });
    EXPECT_NE(e.find(p1 + ": 'split.no': 3 is not below split.count 3"), std::string::npos) << e;
  }
}

// A tensor of a split model that the engine cannot use is named with the part that holds it: a layer's
// weight (read by the weight binder) and the embedding (read with the metadata).
TEST(GgufSplit, TensorErrorsNameTheirPart) {
  for (const bool embedding : {false, true}) {
    ScratchDir dir;
    SplitParts s;
    auto& tensors = s.parts[2].tensors;
    const auto it = std::find_if(tensors.begin(), tensors.end(), [&](const test::GgufTensorBytes& t) {
      return embedding ? t.name == "token_embd.weight" : t.name.starts_with("blk.") && t.ne.size() >= 2;
    });
    ASSERT_NE(it, tensors.end());
    it->ne.push_back(1);  // one dim more than the engine reads it with
    s.write(dir);
    const std::string e = error_of([&] { Model::load(dir / part_name(0, 3)); });
    EXPECT_NE(e.find(part_name(2, 3) + ": '" + it->name + "': "), std::string::npos) << e;
  }
}

}  // namespace
}  // namespace moe
