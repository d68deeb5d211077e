#include "views/memory_speed_view.h"

#include <QGridLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QMouseEvent>
#include <QToolTip>
#include <QVBoxLayout>
#include <algorithm>
#include <cmath>
#include <limits>
#include <qcustomplot.h>

#include "views/model_card_view.h"  // formatCount
#include "views/plot_export.h"
#include "views/plot_style.h"

namespace moe::views {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kMiB = 1024.0 * 1024.0;
constexpr double kGiB = 1024.0 * kMiB;
// A device total more than this many times the largest plotted value would squash the plot to a
// sliver; it is named in a label instead of drawn.
constexpr double kDeviceLineReach = 3.0;

// Sizes in this view's labels: GiB with two decimals, smaller units with one (the memory plot's
// axis is in MiB or GiB, and its labels read at the same precision).
QString formatMemory(double bytes) {
  if (bytes >= kGiB) return QObject::tr("%1 GiB").arg(bytes / kGiB, 0, 'f', 2);
  if (bytes >= kMiB) return QObject::tr("%1 MiB").arg(bytes / kMiB, 0, 'f', 1);
  if (bytes >= 1024) return QObject::tr("%1 KiB").arg(bytes / 1024, 0, 'f', 1);
  return QObject::tr("%1 B").arg(qint64(bytes));
}

QString formatSeconds(double s) {
  if (!std::isfinite(s)) return QObject::tr("unknown");
  if (s < 0.1) return QObject::tr("%1 ms").arg(s * 1e3, 0, 'f', s < 0.01 ? 2 : 1);
  return QObject::tr("%1 s").arg(s, 0, 'f', 2);
}

QString formatRate(double r) { return r > 0 ? QObject::tr("%1 tokens/s").arg(QLocale().toString(r, 'f', r < 100 ? 1 : 0)) : QObject::tr("–"); }

const char* const kPartNames[] = {"embeddings", "attention weights", "routed experts", "shared experts",
                                  "other weights", "KV cache used", "activations", "workspace"};
// Colours chosen to read as families: weights in cool and neutral tones, the cache warm, the
// activations (what a step computes) green, scratch grey.
const QColor kPartColours[] = {QColor(0x7f, 0x8c, 0x8d), QColor(0x34, 0x98, 0xdb), QColor(0x8e, 0x44, 0xad),
                               QColor(0xb3, 0x7f, 0xd1), QColor(0x95, 0xa5, 0xa6), QColor(0xe6, 0x7e, 0x22),
                               QColor(0x27, 0xae, 0x60), QColor(0xbd, 0xc3, 0xc7)};
const QColor kDeviceColour(0xc0, 0x39, 0x2b);

}  // namespace

MemorySpeedView::MemorySpeedView(QWidget* parent) : QWidget(parent) {
  active_label_ = new QLabel(this);
  QFont big = active_label_->font();
  big.setPointSizeF(big.pointSizeF() * 2.0);
  big.setBold(true);
  active_label_->setFont(big);
  active_label_->setToolTip(tr("Parameters the latest token ran through: the ones every token uses (attention, "
                               "embeddings, norms, shared experts, routers) plus one expert's weights for "
                               "each expert the router selected, summed over the MoE layers"));
  active_detail_ = new QLabel(this);
  active_detail_->setWordWrap(true);
  speed_label_ = new QLabel(this);
  speed_label_->setToolTip(tr("Decode speed: one-token steps only (the prompt and injected text run many tokens "
                              "per step and are left out)"));
  ttft_label_ = new QLabel(this);
  ttft_label_->setToolTip(tr("Time from sending the message to the first generated token of the latest turn"));
  kv_label_ = new QLabel(this);
  kv_label_->setToolTip(tr("Key/value cache: bytes holding tokens now, of the bytes reserved for the context"));
  weights_label_ = new QLabel(this);
  weights_label_->setToolTip(tr("The model's weights, all parts together: as stored on the CPU (read in place from "
                                    "the files), as allocated on a GPU"));
  for (QLabel* l : {active_detail_, speed_label_, ttft_label_, kv_label_, weights_label_})
    l->setTextInteractionFlags(Qt::TextSelectableByMouse);

  auto* numbers = new QGridLayout;
  numbers->addWidget(new QLabel(tr("Active parameters this token"), this), 0, 0);
  numbers->addWidget(active_label_, 1, 0);
  numbers->addWidget(active_detail_, 2, 0);
  numbers->addWidget(speed_label_, 0, 1);
  numbers->addWidget(ttft_label_, 1, 1);
  numbers->addWidget(kv_label_, 2, 1);
  numbers->addWidget(weights_label_, 3, 1);
  numbers->setColumnStretch(0, 1);
  numbers->setColumnStretch(1, 1);

  // Memory: stacked parts; graphs are made top of the stack first so the legend reads like the plot.
  memory_plot_ = new QCustomPlot(this);
  memory_plot_->setObjectName(QStringLiteral("memory_by_part"));
  memory_plot_->setMouseTracking(true);
  memory_plot_->xAxis->setLabel(tr("seconds since the session started"));
  // The other processes' band first, so the stack is drawn over it should the two ever meet.
  others_ceiling_graph_ = memory_plot_->addGraph();
  others_ceiling_graph_->setName(tr("device total"));
  others_ceiling_graph_->removeFromLegend();
  others_graph_ = memory_plot_->addGraph();
  others_graph_->setName(tr("used by other processes"));
  others_graph_->setChannelFillGraph(others_ceiling_graph_);
  kv_allocated_graph_ = memory_plot_->addGraph();
  kv_allocated_graph_->setName(tr("KV cache allocated"));
  rss_graph_ = memory_plot_->addGraph();
  rss_graph_->setName(tr("process resident memory"));
  for (int part = kMemoryParts - 1; part >= 0; --part) {
    memory_graphs_[part] = memory_plot_->addGraph();
    memory_graphs_[part]->setName(tr(kPartNames[part]));
  }
  device_line_ = new QCPItemStraightLine(memory_plot_);
  device_label_ = new QCPItemText(memory_plot_);
  device_label_->position->setTypeX(QCPItemPosition::ptAxisRectRatio);
  device_label_->setPositionAlignment(Qt::AlignRight | Qt::AlignBottom);
  memory_note_ = new QCPItemText(memory_plot_);
  memory_note_->position->setType(QCPItemPosition::ptAxisRectRatio);
  memory_note_->position->setCoords(0.5, 0.5);
  memory_note_->setText(tr("No memory samples yet: the app samples memory while the model generates"));
  // The legend beside the plot, at its top, so the growing stack never runs under it.
  memory_plot_->axisRect()->insetLayout()->take(memory_plot_->legend);
  auto* legend_column = new QCPLayoutGrid;
  memory_plot_->plotLayout()->addElement(0, 1, legend_column);
  memory_plot_->plotLayout()->setColumnStretchFactor(1, 0.001);
  legend_column->addElement(0, 0, memory_plot_->legend);
  legend_column->addElement(1, 0, new QCPLayoutElement(memory_plot_));
  legend_column->setRowStretchFactor(0, 0.001);
  legend_column->setMargins(QMargins(0, 10, 6, 0));
  memory_plot_->legend->setVisible(true);

  speed_plot_ = new QCustomPlot(this);
  speed_plot_->setObjectName(QStringLiteral("tokens_per_second"));
  speed_plot_->xAxis->setLabel(tr("seconds since the trace began"));
  speed_plot_->yAxis->setLabel(tr("decode tokens/s (last %1 steps)").arg(kDecodeWindow));
  speed_plot_->yAxis2->setVisible(true);
  speed_plot_->yAxis2->setLabel(tr("multi-token steps: tokens/s"));
  decode_graph_ = speed_plot_->addGraph();
  decode_graph_->setName(tr("decode (one token per step)"));
  multi_token_graph_ = speed_plot_->addGraph(speed_plot_->xAxis, speed_plot_->yAxis2);
  multi_token_graph_->setName(tr("prompt, injected text (many tokens per step; right axis)"));
  multi_token_graph_->setLineStyle(QCPGraph::lsNone);
  multi_token_graph_->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDiamond, 7));
  // The legend in a row of its own above the plot: the curve fills the whole axis rect.
  speed_plot_->axisRect()->insetLayout()->take(speed_plot_->legend);
  speed_plot_->plotLayout()->insertRow(0);
  speed_plot_->plotLayout()->addElement(0, 0, speed_plot_->legend);
  speed_plot_->plotLayout()->setRowStretchFactor(0, 0.001);
  speed_plot_->legend->setFillOrder(QCPLayoutGrid::foColumnsFirst);
  speed_plot_->legend->setVisible(true);
  speed_note_ = new QCPItemText(speed_plot_);
  speed_note_->position->setType(QCPItemPosition::ptAxisRectRatio);
  speed_note_->position->setCoords(0.5, 0.5);
  speed_note_->setText(tr("No steps yet"));

  layer_plot_ = new QCustomPlot(this);
  layer_plot_->setObjectName(QStringLiteral("time_per_layer"));
  layer_plot_->setMouseTracking(true);
  layer_plot_->xAxis->setLabel(tr("layer"));
  layer_plot_->yAxis->setLabel(tr("mean time per step (ms)"));
  moe_bars_ = new QCPBars(layer_plot_->xAxis, layer_plot_->yAxis);
  moe_bars_->setName(tr("MoE layer"));
  dense_bars_ = new QCPBars(layer_plot_->xAxis, layer_plot_->yAxis);
  dense_bars_->setName(tr("dense layer"));
  for (QCPBars* bars : {moe_bars_, dense_bars_}) bars->setWidth(0.7);
  layer_plot_->legend->setVisible(true);
  layer_plot_->xAxis->grid()->setZeroLinePen(Qt::NoPen);
  layer_note_ = new QCPItemText(layer_plot_);
  layer_note_->position->setType(QCPItemPosition::ptAxisRectRatio);
  layer_note_->position->setCoords(0.5, 0.5);
  layer_note_->setText(tr("Layer times were not recorded\n(they need the hook level \"full\")"));

  enableExportMenu(memory_plot_, QStringLiteral("memory_by_part"), [this] {
    inspect::Table table;
    table.title = "Memory by part";
    table.columns = {"t_s", "embedding_bytes", "attention_bytes", "routed_expert_bytes", "shared_expert_bytes",
                     "other_bytes", "kv_used_bytes", "activation_bytes", "workspace_bytes", "total_bytes",
                     "kv_allocated_bytes", "process_rss_bytes", "gpu", "device_total_bytes", "device_free_bytes",
                     "other_process_bytes"};
    for (size_t i = 0; i < data_.memory->size(); ++i) {
      const MemorySample& s = (*data_.memory)[i];
      std::vector<inspect::Cell> row{inspect::Cell(s.t_s, 3)};
      uint64_t total = 0;
      for (int part = 0; part < kMemoryParts; ++part) {
        row.emplace_back(int64_t(partBytes(part, i)));
        total += partBytes(part, i);
      }
      row.emplace_back(int64_t(total));
      for (uint64_t b : {s.kv_allocated_bytes, s.process_rss_bytes, uint64_t(s.gpu), s.device_total_bytes,
                         s.device_free_bytes, s.other_process_bytes})
        row.emplace_back(int64_t(b));
      table.add_row(std::move(row));
    }
    table.notes.push_back("gpu 1: every part is a device allocation the backend measured; gpu 0: the weights are "
                          "the model's as stored (read in place from the mapped files) and the activations are "
                          "part of the workspace");
    table.notes.push_back("process_rss_bytes (host memory), device_total_bytes, device_free_bytes: 0 = unknown");
    return table;
  });
  enableExportMenu(speed_plot_, QStringLiteral("tokens_per_second"), [this] {
    const inspect::Trace& t = *data_.trace;
    inspect::Table table;
    table.title = "Tokens per second by step";
    table.columns = {"step", "end_s", "tokens", "time_s", "tokens_per_s", "kind"};
    const size_t steps = std::min({t.step_end_s.size(), t.step_tokens.size(), t.step_time_s.size()});
    for (size_t s = 0; s < steps; ++s) {
      const double rate = t.step_time_s[s] > 0 ? t.step_tokens[s] / t.step_time_s[s] : kNaN;
      table.add_row({int64_t(s), inspect::Cell(t.step_end_s[s], 6), t.step_tokens[s], inspect::Cell(t.step_time_s[s], 6),
                     inspect::Cell::optional(std::isfinite(rate) ? std::optional<double>(rate) : std::nullopt, 1),
                     t.step_tokens[s] == 1 ? "decode" : "multi-token"});
    }
    return table;
  });
  enableExportMenu(layer_plot_, QStringLiteral("time_per_layer"), [this] {
    inspect::Table table;
    table.title = "Mean time per layer";
    table.columns = {"layer", "moe", "mean_ms", "steps"};
    const auto& moe_layers = data_.trace->moe_layers;
    for (int l = 0; l < int(layer_ms_.size()); ++l)
      table.add_row({l, int(std::find(moe_layers.begin(), moe_layers.end(), l) != moe_layers.end() ? 1 : 0),
                     inspect::Cell(layer_ms_[l], 4), layer_steps_});
    return table;
  });

  auto* plots = new QHBoxLayout;
  plots->addWidget(speed_plot_, 3);
  plots->addWidget(layer_plot_, 2);
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(4, 4, 4, 4);
  layout->addLayout(numbers);
  layout->addWidget(memory_plot_, 3);
  layout->addLayout(plots, 2);

  connect(memory_plot_, &QCustomPlot::mouseMove, this, &MemorySpeedView::onMemoryHover);
  connect(layer_plot_, &QCustomPlot::mouseMove, this, &MemorySpeedView::onLayerHover);

  for (QCustomPlot* plot : {memory_plot_, speed_plot_, layer_plot_}) applyPlotTheme(plot, palette());
  styleItems();
  redraw();
}

QString MemorySpeedView::speedText() const { return speed_label_->text(); }

QString MemorySpeedView::activeParamsText() const { return active_label_->text() + QLatin1Char('\n') + active_detail_->text(); }

void MemorySpeedView::setData(const WorkbenchData& data) {
  data_ = data;
  if (!data_.trace) data_.trace = WorkbenchData::empty().trace;
  if (!data_.chat) data_.chat = WorkbenchData::empty().chat;
  if (!data_.memory) data_.memory = WorkbenchData::empty().memory;
  if (isVisible())
    redraw();
  else
    dirty_ = true;
}

void MemorySpeedView::showEvent(QShowEvent* event) {
  QWidget::showEvent(event);
  if (dirty_) redraw();
}

void MemorySpeedView::changeEvent(QEvent* event) {
  QWidget::changeEvent(event);
  if (event->type() == QEvent::PaletteChange) {
    for (QCustomPlot* plot : {memory_plot_, speed_plot_, layer_plot_}) {
      applyPlotTheme(plot, palette());
      plot->replot(QCustomPlot::rpQueuedReplot);
    }
    styleItems();
  }
}

void MemorySpeedView::redraw() {
  dirty_ = false;
  foldNewSteps();
  updateActiveParams();
  drawMemory();
  drawSpeed();
  drawLayerTimes();
  updateLabels();
  for (QCustomPlot* plot : {memory_plot_, speed_plot_, layer_plot_}) plot->replot(QCustomPlot::rpQueuedReplot);
}

// Steps and rows only grow while a session records; a trace that shrank or whose last folded step
// changed is another trace (cleared, or a new model), and everything is folded again from its start.
void MemorySpeedView::foldNewSteps() {
  const inspect::Trace& t = *data_.trace;
  const size_t steps = std::min({t.step_end_s.size(), t.step_tokens.size(), t.step_time_s.size(), t.step_first_token.size()});
  const size_t layers = size_t(std::max(t.n_layers, 0));
  const bool other_trace = steps < folded_steps_ || t.size() < scanned_rows_ || layer_sum_s_.size() != layers ||
                           (folded_steps_ > 0 && t.step_end_s[folded_steps_ - 1] != folded_last_end_s_);
  if (other_trace) {
    folded_steps_ = 0;
    scanned_rows_ = 0;
    last_routed_row_ = -1;
    decode_steps_.clear();
    segments_.clear();
    layer_sum_s_.assign(layers, 0.0);
    layer_steps_ = 0;
    decode_graph_->data()->clear();
    multi_token_graph_->data()->clear();
  }

  QVector<double> decode_x, decode_y, multi_x, multi_y;
  for (size_t s = folded_steps_; s < steps; ++s) {
    const int tokens = t.step_tokens[s];
    const double time = t.step_time_s[s], end = t.step_end_s[s];
    const int64_t first = t.step_first_token[s];
    const int segment = first >= 0 && first < int64_t(t.segment.size()) ? t.segment[size_t(first)] : -1;
    if (segment >= 0) {
      if (size_t(segment) >= segments_.size()) segments_.resize(size_t(segment) + 1);
      SegmentSpeed& seg = segments_[size_t(segment)];
      if (seg.first_step_s < 0) seg.first_step_s = time, seg.first_step_tokens = tokens;
      if (tokens == 1) seg.decode_tokens += 1, seg.decode_s += time;
    }
    if (tokens == 1) {
      decode_steps_.push_back(s);
      double window_s = 0;
      const size_t from = decode_steps_.size() > size_t(kDecodeWindow) ? decode_steps_.size() - kDecodeWindow : 0;
      for (size_t k = from; k < decode_steps_.size(); ++k) window_s += t.step_time_s[decode_steps_[k]];
      if (window_s > 0) decode_x.append(end), decode_y.append(double(decode_steps_.size() - from) / window_s);
    } else if (tokens > 1 && time > 0) {
      multi_x.append(end);
      multi_y.append(tokens / time);
    }
    if (s < t.has_layer_time.size() && t.has_layer_time[s] && t.layer_time_s.size() >= (s + 1) * layers) {
      for (size_t l = 0; l < layers; ++l) layer_sum_s_[l] += t.layer_time_s[s * layers + l];
      ++layer_steps_;
    }
  }
  decode_graph_->addData(decode_x, decode_y, true);
  multi_token_graph_->addData(multi_x, multi_y, true);
  folded_steps_ = steps;
  folded_last_end_s_ = steps > 0 ? t.step_end_s[steps - 1] : 0;

  // The latest row with routing, looking only at the rows added since the last snapshot.
  for (int64_t r = t.size(); r-- > scanned_rows_;)
    if (r < int64_t(t.has_routing.size()) && t.has_routing[size_t(r)]) {
      last_routed_row_ = r;
      break;
    }
  scanned_rows_ = t.size();
}

void MemorySpeedView::updateActiveParams() {
  active_params_ = 0;
  active_experts_ = -1;
  const ModelFacts* model = data_.model.get();
  if (!model) return;
  const inspect::Trace& t = *data_.trace;
  if (model->experts == 0) {
    active_params_ = model->total_params;
    return;
  }
  const size_t per_row = size_t(t.n_moe()) * size_t(std::max(t.top_k, 0));
  if (last_routed_row_ >= 0 && per_row > 0 && t.expert_ids.size() >= size_t(last_routed_row_ + 1) * per_row) {
    const auto begin = t.expert_ids.begin() + std::ptrdiff_t(size_t(last_routed_row_) * per_row);
    active_experts_ = std::count_if(begin, begin + std::ptrdiff_t(per_row), [](int32_t e) { return e >= 0; });
    active_params_ = model->always_active_params + active_experts_ * model->params_per_expert;
  } else {
    active_params_ = model->active_params;
  }
}

uint64_t MemorySpeedView::partBytes(int part, size_t sample) const {
  const ModelFacts* m = data_.model.get();
  const MemorySample& s = (*data_.memory)[sample];
  // A GPU backend's weights are its own allocations, measured; the CPU's are the mapped files, which
  // only the model description sizes.
  switch (part) {
    case Embeddings: return s.gpu ? s.embedding_bytes : m ? m->embedding_bytes : 0;
    case Attention: return s.gpu ? s.attention_bytes : m ? m->attention_bytes : 0;
    case RoutedExperts: return s.gpu ? s.routed_expert_bytes : m ? m->routed_expert_bytes : 0;
    case SharedExperts: return s.gpu ? s.shared_expert_bytes : m ? m->shared_expert_bytes : 0;
    case OtherWeights: return s.gpu ? s.other_weight_bytes : m ? m->other_bytes : 0;
    case KvUsed: return s.kv_used_bytes;
    case Activations: return s.activation_bytes;
    case Workspace: return s.workspace_bytes;
    default: return 0;
  }
}

uint64_t MemorySpeedView::weightBytes(size_t sample) const {
  uint64_t n = 0;
  for (int part = Embeddings; part <= OtherWeights; ++part) n += partBytes(part, sample);
  return n;
}

void MemorySpeedView::drawMemory() {
  const std::vector<MemorySample>& samples = *data_.memory;
  const ModelFacts* model = data_.model.get();
  const size_t n = samples.size();
  // The latest sample says where the memory lives (a reload starts the samples afresh).
  const MemorySample* latest = n > 0 ? &samples.back() : nullptr;
  const bool gpu = latest && latest->gpu;

  // A part is drawn when it is ever non-zero; each drawn part stacks on the one drawn below it.
  bool present[kMemoryParts] = {};
  for (int part = 0; part < kMemoryParts; ++part)
    for (size_t i = 0; i < n && !present[part]; ++i) present[part] = partBytes(part, i) > 0;
  // The resident set is host memory: beside a GPU's allocations it would compare unlike things.
  const bool any_rss = !gpu && std::any_of(samples.begin(), samples.end(), [](const MemorySample& s) { return s.process_rss_bytes > 0; });
  const bool any_others = gpu && std::any_of(samples.begin(), samples.end(), [](const MemorySample& s) { return s.other_process_bytes > 0; });

  double top = 0;
  for (size_t i = 0; i < n; ++i) {
    double stack = 0;
    for (int part = 0; part < kMemoryParts; ++part) stack += double(partBytes(part, i));
    top = std::max({top, stack, double(weightBytes(i) + samples[i].kv_allocated_bytes),
                    any_rss ? double(samples[i].process_rss_bytes) : 0.0});
  }
  if (gpu && latest->device_total_bytes > 0)
    device_total_ = double(latest->device_total_bytes);
  else
    device_total_ = model && model->memory_available_bytes > 0 ? double(model->memory_available_bytes) : kNaN;
  const bool device_in_reach = std::isfinite(device_total_) && (top == 0 || device_total_ <= top * kDeviceLineReach);
  const double scale_max = std::max(top, device_in_reach ? device_total_ : 0.0);
  unit_bytes_ = scale_max >= kGiB ? kGiB : kMiB;
  memory_plot_->yAxis->setLabel(unit_bytes_ == kGiB ? tr("memory (GiB)") : tr("memory (MiB)"));

  const QCPScatterStyle points = n == 1 ? QCPScatterStyle(QCPScatterStyle::ssDisc, 5) : QCPScatterStyle();
  std::vector<double> keys(n), below(n, 0.0);
  for (size_t i = 0; i < n; ++i) keys[i] = samples[i].t_s;
  QCPGraph* lower = nullptr;
  memory_series_ = 0;
  QVector<QCPGraph*> shown;
  for (int part = 0; part < kMemoryParts; ++part) {
    QCPGraph* g = memory_graphs_[part];
    QVector<QCPGraphData> values;
    if (present[part] && n > 0) {
      values.reserve(qsizetype(n));
      for (size_t i = 0; i < n; ++i) {
        below[i] += double(partBytes(part, i));
        values.append(QCPGraphData(keys[i], below[i] / unit_bytes_));
      }
    }
    g->data()->set(values, false);
    g->setScatterStyle(points);
    if (values.isEmpty()) continue;
    g->setChannelFillGraph(lower);
    lower = g;
    shown.prepend(g);
  }
  const auto line = [&](QCPGraph* g, bool show, auto value) {
    QVector<QCPGraphData> values;
    if (show)
      for (size_t i = 0; i < n; ++i) values.append(QCPGraphData(keys[i], value(i) / unit_bytes_));
    g->data()->set(values, false);
    g->setScatterStyle(points);
    if (!values.isEmpty()) shown.prepend(g);
  };
  const bool any_allocated = std::any_of(samples.begin(), samples.end(), [](const MemorySample& s) { return s.kv_allocated_bytes > 0; });
  line(kv_allocated_graph_, any_allocated, [&](size_t i) { return double(weightBytes(i) + samples[i].kv_allocated_bytes); });
  line(rss_graph_, any_rss, [&](size_t i) { return double(samples[i].process_rss_bytes); });
  // What other processes hold hangs from the device total, so the stack grows towards it and the
  // engineer sees how close the two are. Drawn only where the device line is.
  const bool band = any_others && device_in_reach;
  line(others_graph_, band, [&](size_t i) { return device_total_ - double(std::min<uint64_t>(samples[i].other_process_bytes, uint64_t(device_total_))); });
  QVector<QCPGraphData> ceiling;
  if (band)
    for (size_t i = 0; i < n; ++i) ceiling.append(QCPGraphData(keys[i], device_total_ / unit_bytes_));
  others_ceiling_graph_->data()->set(ceiling, false);
  memory_series_ = int(shown.size());
  // The legend lists the drawn series top of the stack first, as the eye meets them; it is rebuilt
  // only when the set changes.
  if (shown != memory_legend_) {
    memory_plot_->legend->clearItems();
    for (QCPGraph* g : shown) g->addToLegend();
    memory_legend_ = shown;
  }

  device_line_->setVisible(device_in_reach);
  device_label_->setVisible(std::isfinite(device_total_));
  if (std::isfinite(device_total_)) {
    const double y = device_total_ / unit_bytes_;
    device_line_->point1->setCoords(0, y);
    device_line_->point2->setCoords(1, y);
    QString text = gpu && !latest->device.empty() ? tr("%1: %2 total").arg(QString::fromStdString(latest->device), formatMemory(device_total_))
                                                  : tr("device total %1").arg(formatMemory(device_total_));
    // Out of reach the band is not drawn: the label says what it would have shown.
    if (gpu && !device_in_reach && latest->other_process_bytes > 0)
      text += tr(", %1 used by other processes").arg(formatMemory(double(latest->other_process_bytes)));
    if (!device_in_reach) text += tr(" (far above)");
    device_label_->setText(text);
    device_label_->position->setTypeY(device_in_reach ? QCPItemPosition::ptPlotCoords : QCPItemPosition::ptAxisRectRatio);
    device_label_->position->setCoords(0.99, device_in_reach ? y : 0.08);
  }
  memory_note_->setVisible(n == 0);
  if (n > 0) {
    const double span = keys.back() - keys.front();
    memory_plot_->xAxis->setRange(keys.front(), span > 0 ? keys.back() : keys.front() + 1);
  } else {
    memory_plot_->xAxis->setRange(0, 1);
  }
  memory_plot_->yAxis->setRange(0, scale_max > 0 ? scale_max / unit_bytes_ * 1.1 : 1.0);
}

void MemorySpeedView::drawSpeed() {
  const bool any = !decode_graph_->data()->isEmpty() || !multi_token_graph_->data()->isEmpty();
  speed_note_->setVisible(!any);
  if (!any) {
    speed_plot_->xAxis->setRange(0, 1);
    return;
  }
  double hi = 0;
  for (QCPGraph* g : {decode_graph_, multi_token_graph_}) {
    bool ok = false;
    const QCPRange keys = g->data()->keyRange(ok);
    if (ok) hi = std::max(hi, keys.upper);
  }
  speed_plot_->xAxis->setRange(0, hi > 0 ? hi * 1.02 : 1.0);
  const auto top = [&](QCPGraph* g) {
    bool ok = false;
    const QCPRange r = g->data()->valueRange(ok);
    return ok && r.upper > 0 ? r.upper * 1.1 : 1.0;
  };
  speed_plot_->yAxis->setRange(0, top(decode_graph_));
  speed_plot_->yAxis2->setRange(0, top(multi_token_graph_));
  multi_token_graph_->setVisible(!multi_token_graph_->data()->isEmpty());
  speed_plot_->yAxis2->setVisible(!multi_token_graph_->data()->isEmpty());
}

void MemorySpeedView::drawLayerTimes() {
  const inspect::Trace& t = *data_.trace;
  layer_ms_.clear();
  if (layer_steps_ > 0)
    for (double sum : layer_sum_s_) layer_ms_.append(sum / layer_steps_ * 1e3);
  QVector<double> moe_keys, moe_values, dense_keys, dense_values;
  QSharedPointer<QCPAxisTickerText> ticker(new QCPAxisTickerText);
  for (int l = 0; l < int(layer_ms_.size()); ++l) {
    const bool moe = std::find(t.moe_layers.begin(), t.moe_layers.end(), l) != t.moe_layers.end();
    (moe ? moe_keys : dense_keys).append(l);
    (moe ? moe_values : dense_values).append(layer_ms_[l]);
    ticker->addTick(l, QString::number(l));
  }
  moe_bars_->setData(moe_keys, moe_values, true);
  dense_bars_->setData(dense_keys, dense_values, true);
  moe_bars_->setVisible(!moe_keys.isEmpty());
  dense_bars_->setVisible(!dense_keys.isEmpty());
  if (moe_keys.isEmpty()) moe_bars_->removeFromLegend(); else moe_bars_->addToLegend();
  if (dense_keys.isEmpty()) dense_bars_->removeFromLegend(); else dense_bars_->addToLegend();
  layer_plot_->xAxis->setTicker(ticker);
  layer_plot_->xAxis->setRange(-0.6, std::max<double>(layer_ms_.size(), 1) - 0.4);
  const double top = layer_ms_.isEmpty() ? 0 : *std::max_element(layer_ms_.begin(), layer_ms_.end());
  layer_plot_->yAxis->setRange(0, top > 0 ? top * 1.15 : 1.0);
  layer_note_->setVisible(layer_ms_.isEmpty());
  layer_plot_->xAxis->setLabel(layer_steps_ > 0 ? tr("layer (mean over %1 steps, prompt and decode)").arg(layer_steps_) : tr("layer"));
}

void MemorySpeedView::updateLabels() {
  const ModelFacts* model = data_.model.get();
  const inspect::Trace& t = *data_.trace;

  // Active parameters.
  if (!model) {
    active_label_->setText(tr("–"));
    active_detail_->setText(tr("No model loaded"));
  } else {
    const QLocale locale;
    active_label_->setText(formatCount(double(active_params_)));
    QString detail = model->total_params > 0
                         ? tr("%1 of %2 total (%3%)").arg(locale.toString(active_params_), locale.toString(qint64(model->total_params)))
                               .arg(100.0 * double(active_params_) / double(model->total_params), 0, 'f', 1)
                         : tr("%1; total parameters unknown").arg(locale.toString(active_params_));
    if (model->experts == 0)
      detail += tr(" · dense model: every token uses every parameter");
    else if (active_experts_ >= 0)
      detail += tr(" · %1 experts selected over %2 MoE layers (row %3)").arg(active_experts_).arg(t.n_moe()).arg(last_routed_row_);
    else
      detail += tr(" · routing not recorded: at the checkpoint's top-%1").arg(model->top_k);
    active_detail_->setText(detail);
  }

  // Speed: recent decode steps, and the latest turn's mean.
  recent_rate_ = 0;
  turn_rate_ = 0;
  if (!decode_steps_.empty()) {
    const double last_end = t.step_end_s[decode_steps_.back()];
    int64_t tokens = 0;
    double time = 0;
    for (size_t k = decode_steps_.size(); k-- > 0;) {
      const size_t s = decode_steps_[k];
      if (t.step_end_s[s] < last_end - kRecentSeconds) break;
      tokens += 1;
      time += t.step_time_s[s];
    }
    recent_rate_ = time > 0 ? double(tokens) / time : 0;
  }
  const ChatTurn* turn = data_.chat->empty() ? nullptr : &data_.chat->back();
  const SegmentSpeed* seg = turn && turn->segment >= 0 && size_t(turn->segment) < segments_.size() ? &segments_[size_t(turn->segment)] : nullptr;
  if (seg && seg->decode_s > 0)
    turn_rate_ = double(seg->decode_tokens) / seg->decode_s;
  else if (turn && turn->decode_s > 0 && turn->tokens.size() > 1)
    turn_rate_ = double(turn->tokens.size() - 1) / turn->decode_s;
  speed_label_->setText(tr("Decode: %1 (last %2 s) · %3 (turn mean)")
                            .arg(formatRate(recent_rate_))
                            .arg(kRecentSeconds, 0, 'g', 2)
                            .arg(formatRate(turn_rate_)));

  // Time to first token.
  ttft_s_ = kNaN;
  QString ttft_how;
  if (turn && turn->time_to_first_token_s > 0) {
    ttft_s_ = turn->time_to_first_token_s;
    if (turn->prefill_s > 0) ttft_how = tr(" (prompt %1)").arg(formatSeconds(turn->prefill_s));
  } else if (seg && seg->first_step_s >= 0) {
    ttft_s_ = seg->first_step_s;
    ttft_how = tr(" (the turn's first step, %1 tokens, in the trace)").arg(seg->first_step_tokens);
  }
  ttft_label_->setText(turn ? tr("Time to first token: %1%2").arg(formatSeconds(ttft_s_), ttft_how)
                            : tr("Time to first token: no turn yet"));

  // KV cache and weights.
  if (!data_.memory->empty()) {
    const MemorySample& s = data_.memory->back();
    const double share = s.kv_allocated_bytes > 0 ? 100.0 * double(s.kv_used_bytes) / double(s.kv_allocated_bytes) : 0;
    kv_label_->setText(tr("KV cache: %1 used of %2 allocated (%3%)")
                           .arg(formatMemory(double(s.kv_used_bytes)), formatMemory(double(s.kv_allocated_bytes)))
                           .arg(share, 0, 'f', 1));
  } else {
    kv_label_->setText(tr("KV cache: no sample yet"));
  }
  const MemorySample* latest = data_.memory->empty() ? nullptr : &data_.memory->back();
  if (latest && latest->gpu)
    weights_label_->setText(tr("Weights: %1 allocated on %2")
                                .arg(formatMemory(double(latest->weight_bytes())),
                                     latest->device.empty() ? tr("the GPU") : QString::fromStdString(latest->device)));
  else
    weights_label_->setText(model ? tr("Weights: %1 in total").arg(formatMemory(double(model->weight_bytes())))
                                  : tr("Weights: no model loaded"));
}

void MemorySpeedView::styleItems() {
  const QColor text = palette().color(QPalette::WindowText);
  QColor muted = text;
  muted.setAlphaF(0.6f);
  for (int part = 0; part < kMemoryParts; ++part) {
    QColor fill = kPartColours[part];
    fill.setAlphaF(0.75f);
    memory_graphs_[part]->setPen(QPen(kPartColours[part].darker(115)));
    memory_graphs_[part]->setBrush(fill);
  }
  kv_allocated_graph_->setPen(QPen(kPartColours[KvUsed].darker(130), 1.5, Qt::DashLine));
  rss_graph_->setPen(QPen(text, 1.2, Qt::DotLine));
  device_line_->setPen(QPen(kDeviceColour, 1.5, Qt::DashDotLine));
  device_label_->setColor(kDeviceColour);
  // Hatched in the device line's colour: memory this process cannot have, not a part of its own.
  others_graph_->setPen(QPen(kDeviceColour, 1.0, Qt::DotLine));
  others_graph_->setBrush(QBrush(kDeviceColour, Qt::BDiagPattern));
  others_ceiling_graph_->setPen(Qt::NoPen);
  for (QCPItemText* note : {memory_note_, speed_note_, layer_note_}) note->setColor(muted);
  decode_graph_->setPen(QPen(phaseColor(int(Phase::Answer)), 1.8));
  const QColor multi = phaseColor(int(Phase::User));
  multi_token_graph_->setPen(QPen(multi));
  multi_token_graph_->setBrush(Qt::NoBrush);
  speed_plot_->yAxis2->setLabelColor(multi);
  moe_bars_->setPen(Qt::NoPen);
  moe_bars_->setBrush(kPartColours[RoutedExperts]);
  dense_bars_->setPen(Qt::NoPen);
  dense_bars_->setBrush(kPartColours[Attention]);
}

void MemorySpeedView::onMemoryHover(QMouseEvent* event) {
  const std::vector<MemorySample>& samples = *data_.memory;
  if (samples.empty() || !memory_plot_->axisRect()->rect().contains(event->pos())) {
    QToolTip::hideText();
    return;
  }
  const double x = memory_plot_->xAxis->pixelToCoord(event->pos().x());
  const auto after = std::lower_bound(samples.begin(), samples.end(), x, [](const MemorySample& s, double v) { return s.t_s < v; });
  size_t i = size_t(std::min(after - samples.begin(), std::ptrdiff_t(samples.size() - 1)));
  if (i > 0 && std::abs(samples[i - 1].t_s - x) < std::abs(samples[i].t_s - x)) --i;
  QStringList lines{tr("At %1 s").arg(samples[i].t_s, 0, 'f', 2)};
  uint64_t total = 0;
  for (int part = kMemoryParts - 1; part >= 0; --part) {
    const uint64_t b = partBytes(part, i);
    total += b;
    if (b > 0) lines << tr("%1: %2 (%3 bytes)").arg(tr(kPartNames[part]), formatMemory(double(b))).arg(b);
  }
  const MemorySample& s = samples[i];
  lines << tr("stacked total: %1").arg(formatMemory(double(total)));
  if (s.kv_allocated_bytes > 0) lines << tr("KV cache allocated: %1").arg(formatMemory(double(s.kv_allocated_bytes)));
  if (s.gpu) {
    lines << tr("weights measured on the GPU (its allocations)");
    if (s.other_process_bytes > 0)
      lines << tr("used by other processes: %1 (%2 bytes)").arg(formatMemory(double(s.other_process_bytes))).arg(s.other_process_bytes);
    if (s.device_free_bytes > 0) lines << tr("free on the device: %1").arg(formatMemory(double(s.device_free_bytes)));
  } else if (data_.model) {
    lines << tr("weights as stored (read in place from the mapped files)");
  }
  if (s.process_rss_bytes > 0) lines << tr("process resident (host memory): %1").arg(formatMemory(double(s.process_rss_bytes)));
  if (std::isfinite(device_total_))
    lines << (s.gpu && !s.device.empty() ? tr("%1 total: %2").arg(QString::fromStdString(s.device), formatMemory(device_total_))
                                         : tr("device total: %1").arg(formatMemory(device_total_)));
  QToolTip::showText(event->globalPosition().toPoint(), lines.join(QLatin1Char('\n')), memory_plot_);
}

void MemorySpeedView::onLayerHover(QMouseEvent* event) {
  const int l = int(std::lround(layer_plot_->xAxis->pixelToCoord(event->pos().x())));
  if (l < 0 || l >= int(layer_ms_.size()) || !layer_plot_->axisRect()->rect().contains(event->pos())) {
    QToolTip::hideText();
    return;
  }
  const auto& moe_layers = data_.trace->moe_layers;
  const bool moe = std::find(moe_layers.begin(), moe_layers.end(), l) != moe_layers.end();
  QToolTip::showText(event->globalPosition().toPoint(),
                     tr("Layer %1 (%2): %3 ms mean over %4 steps").arg(l).arg(moe ? tr("MoE") : tr("dense"))
                         .arg(layer_ms_[l], 0, 'f', 4).arg(layer_steps_),
                     layer_plot_);
}

}  // namespace moe::views
