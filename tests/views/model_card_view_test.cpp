// The model card: what it prints for a filled ModelFacts (read back as plain text), whether the model
// fits, and the two number formats the other views share.
#include <QtTest>
#include <QLabel>
#include <QProgressBar>

#include "views/model_card_view.h"

using namespace moe;
using namespace moe::views;

namespace {

constexpr double kKiB = 1024.0;
constexpr double kMiB = 1024.0 * kKiB;
constexpr double kGiB = 1024.0 * kMiB;

ModelFacts filledModel() {
  ModelFacts m;
  m.name = "Qwen3-30B-A3B";
  m.path = "/models/Qwen3-30B-A3B";
  m.family = "Qwen3-MoE";
  m.model_type = "qwen3_moe";
  m.layers = 48;
  m.moe_layers = 48;
  m.moe_layer_indices.resize(48);
  for (int i = 0; i < 48; ++i) m.moe_layer_indices[size_t(i)] = i;
  m.experts = 16;
  m.top_k = 2;
  m.heads = 32;
  m.kv_heads = 4;
  m.head_dim = 128;
  m.hidden = 2048;
  m.vocab = 151936;
  m.total_params = 30'530'000'000;
  m.active_params = 3'350'000'000;
  m.attention_bytes = uint64_t(1.5 * kGiB);
  m.routed_expert_bytes = uint64_t(54 * kGiB);
  m.shared_expert_bytes = 0;
  m.embedding_bytes = uint64_t(600 * kMiB);
  m.other_bytes = uint64_t(12 * kMiB);
  m.kv_bytes_per_token = 96 * 1024;
  m.context = 4096;
  m.memory_needed_bytes = uint64_t(60 * kGiB);
  m.memory_available_bytes = uint64_t(80 * kGiB);
  m.backend = "CPU, 2 threads, avx2+fma+f16c";
  m.chat_format = "Qwen3 (thinking)";
  m.supports_thinking = true;
  return m;
}

WorkbenchData withModel(const ModelFacts& model) {
  WorkbenchData data = WorkbenchData::empty();
  data.model = std::make_shared<const ModelFacts>(model);
  return data;
}

// The card's plain text has each label on a line with its value on the next.
QString field(const QString& card, const QString& label) {
  const QStringList lines = card.split(QLatin1Char('\n'));
  for (qsizetype i = 0; i + 1 < lines.size(); ++i)
    if (lines[i].trimmed() == label) return lines[i + 1].trimmed();
  return QStringLiteral("<no field %1>").arg(label);
}

}  // namespace

class ModelCardViewTest : public QObject {
  Q_OBJECT
 private slots:
  void formatBytesValues();
  void formatCountValues();
  void cardShowsTheModel();
  void memoryFractionAndFit();
  void modelThatDoesNotFit();
  void partlyDenseAndDenseModels();
  void noModel();
  void newModelReplacesTheCard();
};

void ModelCardViewTest::formatBytesValues() {
  QCOMPARE(formatBytes(0), QStringLiteral("0 B"));
  QCOMPARE(formatBytes(1023), QStringLiteral("1023 B"));
  QCOMPARE(formatBytes(1024), QStringLiteral("1.00 KiB"));
  QCOMPARE(formatBytes(1536), QStringLiteral("1.50 KiB"));
  QCOMPARE(formatBytes(20 * kMiB), QStringLiteral("20.0 MiB"));
  QCOMPARE(formatBytes(1.23 * kGiB), QStringLiteral("1.23 GiB"));
  QCOMPARE(formatBytes(3 * 1024 * kGiB), QStringLiteral("3.00 TiB"));
  QCOMPARE(formatBytes(2048 * 1024 * kGiB), QStringLiteral("2048.0 TiB"));  // no unit past TiB
}

void ModelCardViewTest::formatCountValues() {
  QCOMPARE(formatCount(0), QStringLiteral("0"));
  QCOMPARE(formatCount(999), QStringLiteral("999"));
  QCOMPARE(formatCount(1500), QStringLiteral("1.5 K"));
  QCOMPARE(formatCount(3.35e6), QStringLiteral("3.35 M"));
  QCOMPARE(formatCount(3.35e9), QStringLiteral("3.35 B"));
  QCOMPARE(formatCount(30.53e9), QStringLiteral("30.53 B"));
}

void ModelCardViewTest::cardShowsTheModel() {
  ModelCardView view;
  const ModelFacts m = filledModel();
  view.setData(withModel(m));
  const QString text = view.cardText();
  QVERIFY(text.startsWith(QStringLiteral("Qwen3-30B-A3B\n")));  // the title is the model's name
  QCOMPARE(field(text, QStringLiteral("Family")), QStringLiteral("Qwen3-MoE (qwen3_moe)"));
  QCOMPARE(field(text, QStringLiteral("Folder")), QStringLiteral("/models/Qwen3-30B-A3B"));
  QCOMPARE(field(text, QStringLiteral("Layers")), QStringLiteral("48"));  // every layer is MoE
  const QString experts = field(text, QStringLiteral("Experts"));
  QVERIFY2(experts.contains(QStringLiteral("16 routed")) && experts.contains(QStringLiteral("top-2")), qPrintable(experts));
  QVERIFY2(!experts.contains(QStringLiteral("shared")), qPrintable(experts));
  QCOMPARE(field(text, QStringLiteral("Attention")), QStringLiteral("32 heads, 4 KV heads, head size 128"));
  QCOMPARE(field(text, QStringLiteral("Hidden size / vocabulary")), QStringLiteral("2048 / 151936"));
  // 3.35e9 / 30.53e9 = 10.97 %
  QCOMPARE(field(text, QStringLiteral("Parameters")), QStringLiteral("30.53 B total, 3.35 B active per token (11.0%)"));
  // 1.5 GiB + 54 GiB + 600 MiB + 12 MiB = 57444 MiB = 56.10 GiB
  QCOMPARE(double(m.weight_bytes()), 1.5 * kGiB + 54 * kGiB + 600 * kMiB + 12 * kMiB);
  QCOMPARE(field(text, QStringLiteral("Weights")),
           QStringLiteral("56.1 GiB: attention 1.50 GiB, routed experts 54.0 GiB, shared experts 0 B, "
                          "embeddings 600.0 MiB, other 12.0 MiB"));
  QCOMPARE(field(text, QStringLiteral("KV cache")), QStringLiteral("96.0 KiB per token, 4096 tokens"));
  QCOMPARE(field(text, QStringLiteral("Chat format")), QStringLiteral("Qwen3 (thinking) (thinking on/off)"));
  QCOMPARE(field(text, QStringLiteral("Backend")), QStringLiteral("CPU, 2 threads, avx2+fma+f16c"));
}

void ModelCardViewTest::memoryFractionAndFit() {
  ModelCardView view;
  const ModelFacts m = filledModel();
  view.setData(withModel(m));
  QCOMPARE(view.memoryFraction(), double(m.memory_needed_bytes) / double(m.memory_available_bytes));
  QCOMPARE(view.memoryFraction(), 0.75);
  const QString text = view.cardText();
  QVERIFY2(text.contains(QStringLiteral("60.0 GiB needed of 80.0 GiB (75.0%)")), qPrintable(text));
  QVERIFY(!text.contains(QStringLiteral("does not fit")));
  auto* bar = view.findChild<QProgressBar*>();
  QVERIFY(bar);
  QCOMPARE(bar->value(), 750);

  // Unknown device memory: no fraction, just what is needed.
  ModelFacts unknown = m;
  unknown.memory_available_bytes = 0;
  view.setData(withModel(unknown));
  QCOMPARE(view.memoryFraction(), 0.0);
  QVERIFY(view.cardText().endsWith(QStringLiteral("60.0 GiB needed")));
}

void ModelCardViewTest::modelThatDoesNotFit() {
  ModelCardView view;
  ModelFacts m = filledModel();
  m.memory_needed_bytes = uint64_t(96 * kGiB);
  m.memory_available_bytes = uint64_t(64 * kGiB);
  view.setData(withModel(m));
  QCOMPARE(view.memoryFraction(), 1.5);
  const QString text = view.cardText();
  QVERIFY2(text.contains(QStringLiteral("96.0 GiB needed of 64.0 GiB (150.0%)")), qPrintable(text));
  QVERIFY2(text.contains(QStringLiteral("does not fit")), qPrintable(text));
  QCOMPARE(view.findChild<QProgressBar*>()->value(), 1000);  // the bar is full, not past its end
}

void ModelCardViewTest::partlyDenseAndDenseModels() {
  ModelCardView view;
  ModelFacts partly = filledModel();
  partly.layers = 6;
  partly.moe_layers = 4;
  partly.shared_experts_ffn = 512;
  partly.supports_thinking = false;
  partly.chat_format = "ChatML";
  view.setData(withModel(partly));
  QString text = view.cardText();
  QCOMPARE(field(text, QStringLiteral("Layers")), QStringLiteral("6 (4 MoE, 2 dense)"));
  QVERIFY2(field(text, QStringLiteral("Experts")).endsWith(QStringLiteral(", plus a shared expert")), qPrintable(text));
  QCOMPARE(field(text, QStringLiteral("Chat format")), QStringLiteral("ChatML (no thinking)"));
  ModelFacts kimi = filledModel();
  kimi.chat_format = "Kimi-K2-Thinking";
  kimi.always_thinks = true;
  view.setData(withModel(kimi));
  QCOMPARE(field(view.cardText(), QStringLiteral("Chat format")),
           QStringLiteral("Kimi-K2-Thinking (always thinks; no-think cuts it at once)"));
  QCOMPARE(field(view.cardText(), QStringLiteral("Attention")), QStringLiteral("32 heads, 4 KV heads, head size 128"));
  ModelFacts oss = filledModel();  // GPT-OSS-20B's attention
  oss.layers = oss.moe_layers = 24;
  oss.heads = 64;
  oss.kv_heads = 8;
  oss.head_dim = 64;
  oss.sliding_window = 128;
  oss.windowed_layers = 12;
  oss.attention_sinks = true;
  view.setData(withModel(oss));
  QCOMPARE(field(view.cardText(), QStringLiteral("Attention")),
           QStringLiteral("64 heads, 8 KV heads, head size 64; 12 of 24 layers see only the last 128 tokens; a sink per "
                          "head takes part of every softmax"));

  ModelFacts dense = filledModel();
  dense.name.clear();  // the title falls back to the family
  dense.family = "Qwen3";
  dense.moe_layers = 0;
  dense.moe_layer_indices.clear();
  dense.experts = 0;
  dense.top_k = 0;
  view.setData(withModel(dense));
  text = view.cardText();
  QVERIFY2(text.startsWith(QStringLiteral("Qwen3\n")), qPrintable(text));
  QCOMPARE(field(text, QStringLiteral("Experts")), QStringLiteral("none (dense model)"));
  QCOMPARE(field(text, QStringLiteral("Layers")), QStringLiteral("48"));
}

void ModelCardViewTest::noModel() {
  ModelCardView view;
  QVERIFY(view.cardText().startsWith(QStringLiteral("No model loaded")));
  QCOMPARE(view.memoryFraction(), 0.0);

  view.setData(withModel(filledModel()));
  QVERIFY(!view.cardText().contains(QStringLiteral("No model loaded")));
  view.setData(WorkbenchData::empty());
  QVERIFY(view.cardText().startsWith(QStringLiteral("No model loaded")));
  QVERIFY(!view.cardText().contains(QStringLiteral("Qwen3-MoE")));
  QCOMPARE(view.memoryFraction(), 0.0);
  QCOMPARE(view.findChild<QProgressBar*>()->value(), 0);
}

void ModelCardViewTest::newModelReplacesTheCard() {
  ModelCardView view;
  WorkbenchData first = withModel(filledModel());
  view.setData(first);
  ModelFacts other = filledModel();
  other.name = "tiny";
  other.experts = 8;
  other.memory_needed_bytes = uint64_t(10 * kGiB);
  view.setData(withModel(other));
  QVERIFY(view.cardText().startsWith(QStringLiteral("tiny\n")));
  QVERIFY(view.cardText().contains(QStringLiteral("8 routed")));
  QCOMPARE(view.memoryFraction(), 0.125);
  // The same model again (a later snapshot of the same session) keeps the card.
  WorkbenchData later = withModel(other);
  later.model = first.model;
  later.version = 7;
  view.setData(later);
  QVERIFY(view.cardText().startsWith(QStringLiteral("Qwen3-30B-A3B\n")));
  view.setData(later);
  QCOMPARE(view.memoryFraction(), 0.75);
}

QTEST_MAIN(ModelCardViewTest)
#include "model_card_view_test.moc"
