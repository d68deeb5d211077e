// The memory & speed view on the recorded demo session. The fixture's model card has no sizes, so each
// test sets them; every expected value is computed here from the trace columns and those sizes. Memory
// samples come in two kinds: the CPU's (KV cache and workspace; the weights from the model card) and a
// GPU's (every part measured by the backend's allocator, and what other processes hold).
#include <QMouseEvent>
#include <QToolTip>
#include <QtTest>
#include <cmath>
#include <qcustomplot.h>

#include "tests/views/view_fixture.h"
#include "views/memory_speed_view.h"

using namespace moe;
using namespace moe::views;

namespace {

constexpr double kMiB = 1024.0 * 1024.0;
constexpr double kGiB = 1024.0 * kMiB;

ModelFacts sizedModel(const ModelFacts& base) {
  ModelFacts m = base;
  m.embedding_bytes = 1 * 1024 * 1024;
  m.attention_bytes = 768 * 1024;
  m.routed_expert_bytes = 3 * 1024 * 1024;
  m.shared_expert_bytes = 256 * 1024;
  m.other_bytes = 128 * 1024;
  m.total_params = 1'400'000;
  m.params_per_expert = 20'000;
  m.always_active_params = 210'000;
  m.active_params = m.always_active_params + int64_t(m.moe_layers) * m.top_k * m.params_per_expert;
  m.memory_available_bytes = 16 * 1024 * 1024;
  return m;
}

std::vector<MemorySample> samples() {
  std::vector<MemorySample> s(3);
  for (int i = 0; i < 3; ++i) {
    s[size_t(i)].t_s = 0.5 * i;
    s[size_t(i)].kv_used_bytes = uint64_t(100'000 * (i + 1));
    s[size_t(i)].kv_allocated_bytes = 2 * 1024 * 1024;
    s[size_t(i)].workspace_bytes = uint64_t(300'000 + 1000 * i);
  }
  return s;
}

// What a GPU backend reports: its weights by part, sized unlike sizedModel's so that weights taken
// from the model card would show; the activations apart from the workspace; other processes' memory
// growing from sample to sample; and the host's resident set, which is not GPU memory.
std::vector<MemorySample> gpuSamples() {
  std::vector<MemorySample> s(3);
  for (int i = 0; i < 3; ++i) {
    MemorySample& m = s[size_t(i)];
    m.t_s = 0.5 * i;
    m.gpu = true;
    m.device = "Test GPU";
    m.embedding_bytes = 2 * 1024 * 1024;
    m.attention_bytes = 1024 * 1024;
    m.routed_expert_bytes = 6 * 1024 * 1024;
    m.shared_expert_bytes = 512 * 1024;
    m.other_weight_bytes = 256 * 1024;
    m.kv_used_bytes = uint64_t(200'000 * (i + 1));
    m.kv_allocated_bytes = 4 * 1024 * 1024;
    m.activation_bytes = uint64_t(600'000 + 1000 * i);
    m.workspace_bytes = 900'000;
    m.device_total_bytes = 32 * 1024 * 1024;
    m.other_process_bytes = uint64_t((4 + i) * 1024 * 1024);
    m.device_free_bytes = m.device_total_bytes - m.other_process_bytes - m.weight_bytes() - m.kv_allocated_bytes -
                          m.activation_bytes - m.workspace_bytes;
    m.process_rss_bytes = 500 * 1024 * 1024;
  }
  return s;
}

// The tooltip the memory plot shows for the mouse at a sample's time, half-way up (inside the axis
// rect, so not at the last sample: the axis ends there).
QString memoryHoverText(MemorySpeedView& view, double t_s) {
  QCustomPlot* plot = view.memoryPlot();
  plot->replot();
  const QPointF at(plot->xAxis->coordToPixel(t_s), plot->axisRect()->center().y());
  QMouseEvent move(QEvent::MouseMove, at, plot->mapToGlobal(at), Qt::NoButton, Qt::NoButton, Qt::NoModifier);
  emit plot->mouseMove(&move);
  return QToolTip::text();
}

WorkbenchData session(const ModelFacts& model, std::vector<MemorySample> memory = samples()) {
  WorkbenchData data = fixture::demoSession();
  data.model = std::make_shared<ModelFacts>(model);
  data.memory = std::make_shared<std::vector<MemorySample>>(std::move(memory));
  return data;
}

WorkbenchData sizedSession() { return session(sizedModel(*fixture::demoSession().model)); }

QCPGraph* graphNamed(QCustomPlot* plot, const QString& prefix) {
  for (int i = 0; i < plot->graphCount(); ++i)
    if (plot->graph(i)->name().startsWith(prefix)) return plot->graph(i);
  return nullptr;
}

double valueAt(QCPGraph* graph, int index) { return (graph->data()->constBegin() + index)->value; }

// The first `steps` steps of a trace and the rows they ran: what the app hands over mid-stream.
inspect::Trace prefix(const inspect::Trace& full, size_t steps) {
  inspect::Trace t = full;
  const size_t rows = size_t(full.step_first_token[steps]);
  const size_t n = size_t(full.size());
  const auto cut = [&](auto& column) {
    if (!column.empty()) column.resize(column.size() / n * rows);
  };
  cut(t.tokens), cut(t.positions), cut(t.phases), cut(t.forced), cut(t.generated), cut(t.step), cut(t.segment);
  cut(t.has_routing), cut(t.expert_ids), cut(t.expert_weights), cut(t.router_entropy), cut(t.top1_margin);
  cut(t.has_router_probs), cut(t.router_probs), cut(t.has_attention), cut(t.attn_entropy), cut(t.attn_max);
  cut(t.attn_topk_mass), cut(t.attn_first_mass), cut(t.has_hidden_norm), cut(t.hidden_norm);
  const size_t layer_cols = full.layer_time_s.size() / full.step_end_s.size();
  t.step_first_token.resize(steps), t.step_tokens.resize(steps), t.step_time_s.resize(steps);
  t.step_end_s.resize(steps), t.has_layer_time.resize(steps), t.layer_time_s.resize(steps * layer_cols);
  t.forced_stops.clear();
  return t;
}

}  // namespace

class MemorySpeedViewTest : public QObject {
  Q_OBJECT

 private slots:
  void activeParametersOfTheLatestRoutedToken() {
    const WorkbenchData data = sizedSession();
    const inspect::Trace& t = *data.trace;
    const size_t per_row = size_t(t.n_moe() * t.top_k);
    int64_t last = -1;
    for (int64_t r = 0; r < t.size(); ++r)
      if (t.has_routing[size_t(r)]) last = r;
    QVERIFY(last >= 0);
    int64_t selected = 0;
    for (size_t i = 0; i < per_row; ++i) selected += t.expert_ids[size_t(last) * per_row + i] >= 0;

    MemorySpeedView view;
    view.show();
    view.setData(data);
    QCOMPARE(view.activeParamsNow(), qint64(data.model->always_active_params + selected * data.model->params_per_expert));
    const QString of_total = QStringLiteral("%1 of %2 total").arg(QLocale().toString(view.activeParamsNow()),
                                                                 QLocale().toString(qint64(data.model->total_params)));
    QVERIFY2(view.activeParamsText().contains(of_total), qPrintable(view.activeParamsText()));

    // A token whose router filled fewer slots (masked experts leave -1), followed by a row that ran
    // without routing: the count comes from the masked token.
    auto masked = std::make_shared<inspect::Trace>(t);
    masked->has_routing[size_t(last)] = 0;
    const int64_t previous = last - 1;
    masked->expert_ids[size_t(previous) * per_row] = -1;
    masked->expert_ids[size_t(previous) * per_row + 1] = -1;
    int64_t previous_selected = 0;
    for (size_t i = 0; i < per_row; ++i) previous_selected += masked->expert_ids[size_t(previous) * per_row + i] >= 0;
    WorkbenchData masked_data = data;
    masked_data.trace = masked;
    MemorySpeedView masked_view;
    masked_view.show();
    masked_view.setData(masked_data);
    QCOMPARE(masked_view.activeParamsNow(),
             qint64(data.model->always_active_params + previous_selected * data.model->params_per_expert));
    QVERIFY(masked_view.activeParamsNow() < view.activeParamsNow());
  }

  void activeParametersWithoutRouting() {
    ModelFacts model = sizedModel(*fixture::demoSession().model);
    WorkbenchData data = session(model);
    auto off = std::make_shared<inspect::Trace>(*data.trace);
    std::fill(off->has_routing.begin(), off->has_routing.end(), uint8_t(0));
    data.trace = off;
    MemorySpeedView view;
    view.show();
    view.setData(data);
    QCOMPARE(view.activeParamsNow(), qint64(model.active_params));

    model.experts = 0;  // dense: every parameter, every token
    MemorySpeedView dense;
    dense.show();
    dense.setData(session(model));
    QCOMPARE(dense.activeParamsNow(), qint64(model.total_params));

    WorkbenchData none = fixture::demoSession();
    none.model.reset();
    MemorySpeedView no_model;
    no_model.show();
    no_model.setData(none);
    QCOMPARE(no_model.activeParamsNow(), qint64(0));
    QVERIFY(std::isnan(no_model.deviceTotalLine()));
  }

  void layerTimesAreMeansOverRecordedSteps() {
    const WorkbenchData data = sizedSession();
    const inspect::Trace& t = *data.trace;
    const size_t layers = size_t(t.n_layers);
    std::vector<double> sum(layers, 0.0);
    int steps = 0;
    for (size_t s = 0; s < t.has_layer_time.size(); ++s) {
      if (!t.has_layer_time[s]) continue;
      ++steps;
      for (size_t l = 0; l < layers; ++l) sum[l] += t.layer_time_s[s * layers + l];
    }
    QVERIFY(steps > 0);

    MemorySpeedView view;
    view.show();
    view.setData(data);
    const QVector<double> ms = view.layerTimesMs();
    QCOMPARE(ms.size(), qsizetype(layers));
    for (size_t l = 0; l < layers; ++l) QCOMPARE(ms[qsizetype(l)], sum[l] / steps * 1e3);
    // Every layer of the demo model is an MoE layer: all bars are MoE bars, with the same values.
    auto* bars = qobject_cast<QCPBars*>(view.layerTimePlot()->plottable(0));
    QVERIFY(bars);
    QCOMPARE(bars->data()->size(), int(layers));
    QCOMPARE((bars->data()->constBegin() + 2)->value, sum[2] / steps * 1e3);

    auto untimed = std::make_shared<inspect::Trace>(t);
    std::fill(untimed->has_layer_time.begin(), untimed->has_layer_time.end(), uint8_t(0));
    WorkbenchData untimed_data = data;
    untimed_data.trace = untimed;
    MemorySpeedView untimed_view;
    untimed_view.show();
    untimed_view.setData(untimed_data);
    QVERIFY(untimed_view.layerTimesMs().isEmpty());
  }

  void memoryStacksThePartsAndDrawsTheDeviceTotal() {
    const WorkbenchData data = sizedSession();
    const ModelFacts& m = *data.model;
    const std::vector<MemorySample>& mem = *data.memory;
    MemorySpeedView view;
    view.show();
    view.setData(data);

    QCOMPARE(view.memoryUnitBytes(), kMiB);
    QCOMPARE(view.memorySeries(), 8);  // five weight parts, KV used, workspace, KV allocated
    QCOMPARE(view.deviceTotalLine(), double(m.memory_available_bytes));
    bool device_line = false;
    for (int i = 0; i < view.memoryPlot()->itemCount(); ++i)
      if (auto* line = qobject_cast<QCPItemStraightLine*>(view.memoryPlot()->item(i)))
        device_line |= line->visible() && line->point1->coords().y() == double(m.memory_available_bytes) / kMiB;
    QVERIFY(device_line);

    QCustomPlot* plot = view.memoryPlot();
    const double weights = double(m.embedding_bytes + m.attention_bytes + m.routed_expert_bytes +
                                  m.shared_expert_bytes + m.other_bytes);
    for (int i = 0; i < int(mem.size()); ++i) {
      QCOMPARE(valueAt(graphNamed(plot, "embeddings"), i), double(m.embedding_bytes) / kMiB);
      QCOMPARE(valueAt(graphNamed(plot, "attention weights"), i), double(m.embedding_bytes + m.attention_bytes) / kMiB);
      QCOMPARE(valueAt(graphNamed(plot, "other weights"), i), weights / kMiB);
      QCOMPARE(valueAt(graphNamed(plot, "KV cache used"), i), (weights + double(mem[size_t(i)].kv_used_bytes)) / kMiB);
      QCOMPARE(valueAt(graphNamed(plot, "workspace"), i),
               (weights + double(mem[size_t(i)].kv_used_bytes + mem[size_t(i)].workspace_bytes)) / kMiB);
      QCOMPARE(valueAt(graphNamed(plot, "KV cache allocated"), i), (weights + double(mem[size_t(i)].kv_allocated_bytes)) / kMiB);
      QCOMPARE((graphNamed(plot, "workspace")->data()->constBegin() + i)->key, mem[size_t(i)].t_s);
    }
    // Only a GPU backend tells activations apart and sees other processes.
    QVERIFY(graphNamed(plot, "activations")->data()->isEmpty());
    QVERIFY(graphNamed(plot, "used by other processes")->data()->isEmpty());
    QVERIFY(plot->yAxis->range().upper >= double(m.memory_available_bytes) / kMiB);
    // The numbers beside the plot: the weights' total and the cache of the latest sample.
    QStringList labels;
    for (QLabel* label : view.findChildren<QLabel*>()) labels << label->text();
    QVERIFY2(labels.contains(QStringLiteral("Weights: %1 MiB in total").arg(weights / kMiB, 0, 'f', 1)), qPrintable(labels.join('|')));
    const QString kv = QStringLiteral("KV cache: %1 KiB used of %2 MiB allocated")
                           .arg(double(mem.back().kv_used_bytes) / 1024, 0, 'f', 1)
                           .arg(double(mem.back().kv_allocated_bytes) / kMiB, 0, 'f', 1);
    QVERIFY2(std::any_of(labels.begin(), labels.end(), [&](const QString& l) { return l.startsWith(kv); }), qPrintable(labels.join('|')));
  }

  void missingPartsAreNotStacked() {
    ModelFacts model = sizedModel(*fixture::demoSession().model);
    model.shared_expert_bytes = 0;
    model.memory_available_bytes = uint64_t(64 * kGiB);  // far above: named, not drawn
    MemorySpeedView view;
    view.show();
    view.setData(session(model));
    QCOMPARE(view.memorySeries(), 7);
    QVERIFY(graphNamed(view.memoryPlot(), "shared experts")->data()->isEmpty());
    QCOMPARE(valueAt(graphNamed(view.memoryPlot(), "other weights"), 0),
             double(model.embedding_bytes + model.attention_bytes + model.routed_expert_bytes + model.other_bytes) / kMiB);
    QCOMPARE(view.deviceTotalLine(), 64 * kGiB);
    QCOMPARE(view.memoryUnitBytes(), kMiB);
    QVERIFY(view.memoryPlot()->yAxis->range().upper < 64 * kGiB / kMiB);

    model.routed_expert_bytes = uint64_t(12 * kGiB);  // a big model: the axis switches to GiB
    view.setData(session(model));
    QCOMPARE(view.memoryUnitBytes(), kGiB);

    view.setData(session(model, {}));
    QCOMPARE(view.memorySeries(), 0);
  }

  // On the CPU the process's resident set is a line beside the stack (both are host memory), and the
  // hover names the parts.
  void cpuDrawsTheResidentSet() {
    const ModelFacts model = sizedModel(*fixture::demoSession().model);
    std::vector<MemorySample> mem = samples();
    for (size_t i = 0; i < mem.size(); ++i) {
      mem[i].device = "cpu";
      mem[i].process_rss_bytes = uint64_t(9 + i) * 1024 * 1024;
    }
    MemorySpeedView view;
    view.resize(900, 700);
    view.show();
    view.setData(session(model, mem));
    QCOMPARE(view.memorySeries(), 9);  // the eight of memoryStacksThePartsAndDrawsTheDeviceTotal, and the resident set
    QCPGraph* rss = graphNamed(view.memoryPlot(), "process resident memory");
    for (int i = 0; i < 3; ++i) QCOMPARE(valueAt(rss, i), 9.0 + i);
    QCOMPARE(view.deviceTotalLine(), double(model.memory_available_bytes));

    const QString hover = memoryHoverText(view, mem[1].t_s);
    QVERIFY2(hover.contains(QStringLiteral("routed experts: 3.0 MiB (%1 bytes)").arg(model.routed_expert_bytes)), qPrintable(hover));
    QVERIFY2(hover.contains(QStringLiteral("workspace: 293.9 KiB (301000 bytes)")), qPrintable(hover));
    QVERIFY2(hover.contains(QStringLiteral("process resident (host memory): 10.0 MiB")), qPrintable(hover));
    QVERIFY2(!hover.contains(QStringLiteral("other processes")), qPrintable(hover));
  }

  // On a GPU the stack is what the backend allocated, part by part (not the model card's sizes), the
  // activations are a part of their own, and what other processes hold hangs from the device total.
  void gpuDrawsTheMeasuredAllocations() {
    const ModelFacts model = sizedModel(*fixture::demoSession().model);
    const std::vector<MemorySample> mem = gpuSamples();
    MemorySpeedView view;
    view.resize(900, 700);
    view.show();
    view.setData(session(model, mem));
    QCustomPlot* plot = view.memoryPlot();

    QCOMPARE(view.memoryUnitBytes(), kMiB);  // the 500 MiB resident set is not drawn, so it does not set the scale
    // Five weight parts, KV used, activations, workspace; KV allocated; other processes.
    QCOMPARE(view.memorySeries(), 10);
    QCOMPARE(view.deviceTotalLine(), 32 * kMiB);  // the GPU's, not the model card's 16 MiB
    QVERIFY(graphNamed(plot, "process resident memory")->data()->isEmpty());

    for (int i = 0; i < 3; ++i) {
      const MemorySample& s = mem[size_t(i)];
      double stack = double(s.embedding_bytes);
      QCOMPARE(valueAt(graphNamed(plot, "embeddings"), i), stack / kMiB);
      stack += double(s.attention_bytes);
      QCOMPARE(valueAt(graphNamed(plot, "attention weights"), i), stack / kMiB);
      stack += double(s.routed_expert_bytes);
      QCOMPARE(valueAt(graphNamed(plot, "routed experts"), i), stack / kMiB);
      stack += double(s.shared_expert_bytes);
      QCOMPARE(valueAt(graphNamed(plot, "shared experts"), i), stack / kMiB);
      stack += double(s.other_weight_bytes);
      QCOMPARE(valueAt(graphNamed(plot, "other weights"), i), stack / kMiB);
      QCOMPARE(stack, 9.75 * kMiB);
      QCOMPARE(valueAt(graphNamed(plot, "KV cache allocated"), i), (stack + double(s.kv_allocated_bytes)) / kMiB);
      stack += double(s.kv_used_bytes);
      QCOMPARE(valueAt(graphNamed(plot, "KV cache used"), i), stack / kMiB);
      stack += double(s.activation_bytes);
      QCOMPARE(valueAt(graphNamed(plot, "activations"), i), stack / kMiB);
      stack += double(s.workspace_bytes);
      QCOMPARE(valueAt(graphNamed(plot, "workspace"), i), stack / kMiB);
      // The band's lower edge: the device total less what the others hold (28, 27, 26 MiB).
      QCOMPARE(valueAt(graphNamed(plot, "used by other processes"), i), double(32 - 4 - i));
    }
    for (const char* name : {"activations", "used by other processes"})
      QVERIFY2(plot->legend->hasItemWithPlottable(graphNamed(plot, name)), name);
    QCOMPARE(graphNamed(plot, "used by other processes")->channelFillGraph(), graphNamed(plot, "device total"));
    QVERIFY(!plot->legend->hasItemWithPlottable(graphNamed(plot, "device total")));
    bool device_line = false, device_named = false;
    for (int i = 0; i < plot->itemCount(); ++i) {
      if (auto* line = qobject_cast<QCPItemStraightLine*>(plot->item(i))) device_line |= line->visible() && line->point1->coords().y() == 32.0;
      if (auto* text = qobject_cast<QCPItemText*>(plot->item(i))) device_named |= text->visible() && text->text() == QStringLiteral("Test GPU: 32.0 MiB total");
    }
    QVERIFY(device_line);
    QVERIFY(device_named);

    QStringList labels;
    for (QLabel* label : view.findChildren<QLabel*>()) labels << label->text();
    QVERIFY2(labels.contains(QStringLiteral("Weights: 9.8 MiB allocated on Test GPU")), qPrintable(labels.join('|')));

    const QString hover = memoryHoverText(view, mem[1].t_s);
    QVERIFY2(hover.contains(QStringLiteral("embeddings: 2.0 MiB (2097152 bytes)")), qPrintable(hover));
    QVERIFY2(hover.contains(QStringLiteral("activations: 586.9 KiB (601000 bytes)")), qPrintable(hover));
    QVERIFY2(hover.contains(QStringLiteral("used by other processes: 5.0 MiB (5242880 bytes)")), qPrintable(hover));
    QVERIFY2(hover.contains(QStringLiteral("free on the device: ")), qPrintable(hover));
    QVERIFY2(hover.contains(QStringLiteral("Test GPU total: 32.0 MiB")), qPrintable(hover));
  }

  // A device far above what this process holds: no band (it would squash the stack), the label says
  // what other processes hold instead.
  void gpuFarAboveNamesTheOthersInTheLabel() {
    std::vector<MemorySample> mem = gpuSamples();
    for (MemorySample& s : mem) s.device_total_bytes = uint64_t(80 * kGiB);
    MemorySpeedView view;
    view.show();
    view.setData(session(sizedModel(*fixture::demoSession().model), mem));
    QCOMPARE(view.memorySeries(), 9);
    QVERIFY(graphNamed(view.memoryPlot(), "used by other processes")->data()->isEmpty());
    QCOMPARE(view.deviceTotalLine(), 80 * kGiB);
    QStringList texts;
    for (int i = 0; i < view.memoryPlot()->itemCount(); ++i)
      if (auto* text = qobject_cast<QCPItemText*>(view.memoryPlot()->item(i)); text && text->visible()) texts << text->text();
    QVERIFY2(texts.contains(QStringLiteral("Test GPU: 80.00 GiB total, 6.0 MiB used by other processes (far above)")),
             qPrintable(texts.join('|')));
  }

  void timeToFirstToken() {
    WorkbenchData data = sizedSession();
    const inspect::Trace& t = *data.trace;
    double first_step = -1;
    for (size_t s = 0; s < t.step_first_token.size() && first_step < 0; ++s)
      if (t.segment[size_t(t.step_first_token[s])] == (*data.chat)[0].segment) first_step = t.step_time_s[s];
    MemorySpeedView view;
    view.show();
    view.setData(data);
    QCOMPARE(view.timeToFirstTokenS(), first_step);  // the chat left it unset: the turn's prompt step

    std::vector<ChatTurn> chat = *data.chat;
    chat[0].time_to_first_token_s = 0.25;
    chat[0].prefill_s = 0.2;
    data.chat = std::make_shared<std::vector<ChatTurn>>(chat);
    view.setData(data);
    QCOMPARE(view.timeToFirstTokenS(), 0.25);
  }

  void decodeSpeedFromOneTokenSteps() {
    const WorkbenchData data = sizedSession();
    const inspect::Trace& t = *data.trace;
    std::vector<size_t> decode;
    int multi = 0;
    int64_t turn_tokens = 0;
    double turn_s = 0;
    for (size_t s = 0; s < t.step_tokens.size(); ++s) {
      if (t.step_tokens[s] == 1) {
        decode.push_back(s);
        ++turn_tokens;
        turn_s += t.step_time_s[s];
      } else {
        ++multi;
      }
    }
    double last_window_s = 0;
    for (size_t k = decode.size() - MemorySpeedView::kDecodeWindow; k < decode.size(); ++k) last_window_s += t.step_time_s[decode[k]];

    MemorySpeedView view;
    view.show();
    view.setData(data);
    QCPGraph* decode_graph = graphNamed(view.speedPlot(), "decode");
    QCPGraph* multi_graph = graphNamed(view.speedPlot(), "prompt, injected text");
    QVERIFY(decode_graph && multi_graph);
    QCOMPARE(decode_graph->data()->size(), int(decode.size()));
    QCOMPARE(multi_graph->data()->size(), multi);
    QCOMPARE((decode_graph->data()->constEnd() - 1)->key, t.step_end_s[decode.back()]);
    QCOMPARE((decode_graph->data()->constEnd() - 1)->value, MemorySpeedView::kDecodeWindow / last_window_s);
    const QString mean = QLocale().toString(double(turn_tokens) / turn_s, 'f', 0);
    QVERIFY2(view.speedText().contains(mean + QStringLiteral(" tokens/s (turn mean)")), qPrintable(view.speedText()));
  }

  // Snapshots arrive mid-stream: folding the steps in two goes must give what one go gives.
  void streamingMatchesOneShot() {
    const WorkbenchData full = sizedSession();
    WorkbenchData half = full;
    half.trace = std::make_shared<inspect::Trace>(prefix(*full.trace, 11));

    MemorySpeedView streamed, whole;
    streamed.show();
    whole.show();
    streamed.setData(half);
    QVERIFY(!streamed.layerTimesMs().isEmpty());
    streamed.setData(full);
    whole.setData(full);
    QCOMPARE(streamed.layerTimesMs(), whole.layerTimesMs());
    QCOMPARE(streamed.activeParamsNow(), whole.activeParamsNow());
    QCOMPARE(graphNamed(streamed.speedPlot(), "decode")->data()->size(), graphNamed(whole.speedPlot(), "decode")->data()->size());
    QCOMPARE(streamed.speedText(), whole.speedText());

    // A different (shorter) trace replaces what was folded.
    streamed.setData(half);
    MemorySpeedView fresh;
    fresh.show();
    fresh.setData(half);
    QCOMPARE(streamed.layerTimesMs(), fresh.layerTimesMs());
    QCOMPARE(graphNamed(streamed.speedPlot(), "decode")->data()->size(), graphNamed(fresh.speedPlot(), "decode")->data()->size());
  }

  void hiddenViewRedrawsWhenShown() {
    MemorySpeedView view;
    view.setData(sizedSession());
    QCOMPARE(view.memorySeries(), 0);
    view.show();
    QCOMPARE(view.memorySeries(), 8);
  }

  void emptyData() {
    MemorySpeedView view;
    view.show();
    view.setData(WorkbenchData::empty());
    QCOMPARE(view.activeParamsNow(), qint64(0));
    QVERIFY(view.layerTimesMs().isEmpty());
    QCOMPARE(view.memorySeries(), 0);
    QVERIFY(std::isnan(view.timeToFirstTokenS()));
    QVERIFY(!view.speedText().isEmpty());
  }
};

QTEST_MAIN(MemorySpeedViewTest)
#include "memory_speed_view_test.moc"
