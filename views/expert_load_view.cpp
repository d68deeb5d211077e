#include "views/expert_load_view.h"

#include <QComboBox>
#include <QFileDialog>
#include <QHBoxLayout>
#include <QLabel>
#include <QMenu>
#include <QMessageBox>
#include <QMouseEvent>
#include <QSpinBox>
#include <QSplitter>
#include <QStackedWidget>
#include <QTimer>
#include <QToolTip>
#include <QVBoxLayout>
#include <algorithm>
#include <cmath>
#include <limits>
#include <qcustomplot.h>

#include "views/plot_export.h"
#include "views/plot_style.h"

namespace moe::views {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
// While tokens stream the measures are recomputed at most this often (each pass re-reads the window).
constexpr int kMinRefreshMs = 250;
const QColor kOverloadColor(0xd6, 0x27, 0x28);
const QColor kDeadColor(0xd6, 0x27, 0x28);
const QColor kBarColor(0x4a, 0x7f, 0xb5);

// A heatmap dimension of one cell would be drawn with zero size (QCustomPlot extends half a cell past
// the outer cell centres), so a single row or column is stored twice, at ±0.25, drawn from -0.5 to 0.5.
int cellsFor(int n) { return std::max(2, n); }
QCPRange rangeFor(int n) { return n >= 2 ? QCPRange(0, n - 1) : QCPRange(-0.25, 0.25); }

// ColorBrewer "Blues": an empty cell is near white, a busy one dark, and both the red marks on dead
// (white) cells and the orange rings on overloaded (dark) cells stand out.
QCPColorGradient shareGradient() {
  return sequentialGradient({{0.00, QColor(0xf7, 0xfb, 0xff)},
                             {0.35, QColor(0x6b, 0xae, 0xd6)},
                             {0.70, QColor(0x21, 0x71, 0xb5)},
                             {1.00, QColor(0x08, 0x30, 0x6b)}});
}

QSharedPointer<QCPAxisTickerText> expertTicker(int n_experts) {
  auto ticker = QSharedPointer<QCPAxisTickerText>::create();
  const int step = std::max(1, (n_experts + 15) / 16);  // at most ~16 labels
  for (int e = 0; e < n_experts; e += step) ticker->addTick(e, QStringLiteral("E%1").arg(e));
  return ticker;
}

int64_t selections(const inspect::LayerRoutingStats& s) {
  int64_t total = 0;
  for (int64_t c : s.counts) total += c;
  return total;
}

QString number(double v, int digits = 3) { return QString::number(v, 'f', digits); }

void themeAxis(QCPAxis* axis, const QColor& text) {
  axis->setBasePen(QPen(text));
  axis->setTickPen(QPen(text));
  axis->setSubTickPen(QPen(text));
  axis->setTickLabelColor(text);
  axis->setLabelColor(text);
}

}  // namespace

// What the worker hands back: the per-layer routing of the window, or why there is none.
struct ExpertLoadView::Computed {
  enum class Outcome { NoModel, Dense, NoTokens, NoRouting, EmptyWindow, Load } outcome = Outcome::NoModel;
  std::vector<int> moe_layers;
  int n_experts = 0;
  inspect::TokenFilter filter;
  std::vector<inspect::LayerRouting> layers;
};

ExpertLoadView::ExpertLoadView(QWidget* parent) : QWidget(parent), data_(WorkbenchData::empty()) {
  window_box_ = new QComboBox(this);
  window_box_->addItem(tr("Whole session"), int(WholeSession));
  window_box_->addItem(tr("Last N tokens"), int(LastTokens));
  window_box_->addItem(tr("Thinking tokens"), int(Thinking));
  window_box_->addItem(tr("Answer tokens"), int(Answer));
  window_box_->setToolTip(tr("Which tokens to count"));
  last_n_box_ = new QSpinBox(this);
  last_n_box_->setRange(1, 100'000'000);
  last_n_box_->setValue(last_n_);
  last_n_box_->setSuffix(tr(" tokens"));
  last_n_box_->setEnabled(false);
  last_n_box_->setToolTip(tr("How many of the latest tokens to count (Last N tokens)"));
  layer_box_ = new QComboBox(this);
  layer_box_->setToolTip(tr("The layer whose load the bars show (or click a row of the heatmap)"));

  auto* header = new QHBoxLayout;
  header->addWidget(new QLabel(tr("Window:"), this));
  header->addWidget(window_box_);
  header->addWidget(last_n_box_);
  header->addSpacing(12);
  header->addWidget(new QLabel(tr("Layer:"), this));
  header->addWidget(layer_box_);
  header->addStretch(1);

  // Heatmap: layers × experts.
  heat_plot_ = new QCustomPlot(this);
  heat_plot_->setObjectName(QStringLiteral("expert_load_heatmap"));
  QCPAxis* heat_x = heat_plot_->xAxis;
  QCPAxis* heat_y = heat_plot_->yAxis;
  heat_x->setLabel(tr("expert"));
  heat_y->setLabel(tr("MoE layer"));
  heat_x->grid()->setVisible(false);
  heat_y->grid()->setVisible(false);
  heat_map_ = new QCPColorMap(heat_x, heat_y);
  heat_map_->setInterpolate(false);
  heat_scale_ = new QCPColorScale(heat_plot_);
  heat_scale_->setType(QCPAxis::atRight);
  heat_scale_->setRangeDrag(false);
  heat_scale_->setRangeZoom(false);
  heat_scale_->setBarWidth(12);
  heat_scale_->setLabel(tr("share of the layer's selections"));
  heat_plot_->plotLayout()->addElement(0, 1, heat_scale_);
  auto* heat_rows = new QCPMarginGroup(heat_plot_);
  heat_plot_->axisRect()->setMarginGroup(QCP::msTop | QCP::msBottom, heat_rows);
  heat_scale_->setMarginGroup(QCP::msTop | QCP::msBottom, heat_rows);
  heat_map_->setColorScale(heat_scale_);
  heat_scale_->setGradient(shareGradient());
  dead_cells_ = heat_plot_->addGraph(heat_x, heat_y);
  dead_cells_->setLineStyle(QCPGraph::lsNone);
  dead_cells_->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCross, QPen(kDeadColor, 2), Qt::NoBrush, 9));
  overloaded_cells_ = heat_plot_->addGraph(heat_x, heat_y);
  overloaded_cells_->setLineStyle(QCPGraph::lsNone);
  overloaded_cells_->setScatterStyle(
      QCPScatterStyle(QCPScatterStyle::ssCircle, QPen(QColor(0xfd, 0x8d, 0x3c), 2), Qt::NoBrush, 11));
  selected_row_ = new QCPItemRect(heat_plot_);
  selected_row_->setClipToAxisRect(false);
  selected_row_->setBrush(Qt::NoBrush);
  selected_row_->setSelectable(false);
  heat_caption_ = new QLabel(this);
  heat_caption_->setWordWrap(true);
  heat_caption_->setTextFormat(Qt::RichText);
  heat_caption_->setText(
      tr("Share of each layer's selections that went to each expert (uniform routing: 1/E everywhere). "
         "<span style=\"color:%1\">✕</span> dead: no token selected it. "
         "<span style=\"color:%2\">○</span> overloaded: more than %3× the layer's mean load (share > %3/E). "
         "Click a row to show that layer below.")
          .arg(kDeadColor.name(), QColor(0xfd, 0x8d, 0x3c).name())
          .arg(kOverloadFactor));

  // Bars: the selected layer's selections per expert.
  bar_plot_ = new QCustomPlot(this);
  bar_plot_->setObjectName(QStringLiteral("expert_load_bars"));
  bar_plot_->xAxis->setLabel(tr("expert"));
  bar_plot_->yAxis->setLabel(tr("selections"));
  bar_plot_->xAxis->grid()->setVisible(false);
  normal_bars_ = new QCPBars(bar_plot_->xAxis, bar_plot_->yAxis);
  normal_bars_->setWidth(0.8);
  normal_bars_->setName(tr("selections"));
  overloaded_bars_ = new QCPBars(bar_plot_->xAxis, bar_plot_->yAxis);
  overloaded_bars_->setWidth(0.8);
  overloaded_bars_->setName(tr("overloaded"));
  dead_bars_ = bar_plot_->addGraph();
  dead_bars_->setLineStyle(QCPGraph::lsNone);
  dead_bars_->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCross, QPen(kDeadColor, 2), Qt::NoBrush, 9));
  dead_bars_->setName(tr("dead"));
  uniform_item_ = new QCPItemStraightLine(bar_plot_);
  uniform_item_->setSelectable(false);
  uniform_label_ = new QCPItemText(bar_plot_);
  uniform_label_->setPositionAlignment(Qt::AlignRight | Qt::AlignBottom);
  uniform_label_->position->setTypeX(QCPItemPosition::ptAxisRectRatio);
  uniform_label_->position->setTypeY(QCPItemPosition::ptPlotCoords);
  uniform_label_->setSelectable(false);
  stats_label_ = new QLabel(this);
  stats_label_->setWordWrap(true);
  stats_label_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  stats_label_->setToolTip(
      tr("Load measures of the layer's selection counts, each followed by (perfect balance, random routing):\n"
         "CV: standard deviation / mean of the counts (0 = balanced)\n"
         "entropy: entropy of the shares / ln(E) (1 = balanced)\n"
         "MaxVio: busiest expert / mean - 1 (0 = balanced)\n"
         "Gini: inequality of the counts (0 = balanced, (E-1)/E = one expert takes all)\n"
         "dead: experts no token selected\n"
         "Random routing: every token picks k distinct experts uniformly at random (mean of simulated draws; "
         "dead is the exact expectation)."));
  bar_caption_ = new QLabel(this);
  bar_caption_->setWordWrap(true);
  bar_caption_->setTextFormat(Qt::RichText);
  bar_caption_->setText(tr("Bars: the layer's selections per expert. Dashed line: uniform load (tokens × k / E). "
                           "<span style=\"color:%1\">Red bars</span>: overloaded. "
                           "<span style=\"color:%2\">✕</span>: dead.")
                            .arg(kOverloadColor.name(), kDeadColor.name()));

  auto* heat_page = new QWidget(this);
  auto* heat_layout = new QVBoxLayout(heat_page);
  heat_layout->setContentsMargins(0, 0, 0, 0);
  heat_layout->addWidget(heat_caption_);
  heat_layout->addWidget(heat_plot_, 1);
  auto* bar_page = new QWidget(this);
  auto* bar_layout = new QVBoxLayout(bar_page);
  bar_layout->setContentsMargins(0, 0, 0, 0);
  bar_layout->addWidget(stats_label_);
  bar_layout->addWidget(bar_caption_);
  bar_layout->addWidget(bar_plot_, 1);
  auto* splitter = new QSplitter(Qt::Vertical, this);
  splitter->addWidget(heat_page);
  splitter->addWidget(bar_page);

  message_label_ = new QLabel(this);
  message_label_->setAlignment(Qt::AlignCenter);
  message_label_->setWordWrap(true);
  pages_ = new QStackedWidget(this);
  pages_->addWidget(message_label_);
  pages_->addWidget(splitter);

  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(4, 4, 4, 4);
  layout->addLayout(header);
  layout->addWidget(pages_, 1);

  refresh_timer_ = new QTimer(this);
  refresh_timer_->setSingleShot(true);
  connect(refresh_timer_, &QTimer::timeout, this, [this] {
    if (dirty_ && isVisible()) scheduleRefresh();
  });
  connect(window_box_, qOverload<int>(&QComboBox::currentIndexChanged), this,
          [this](int index) { setWindow(Window(window_box_->itemData(index).toInt()), last_n_box_->value()); });
  connect(last_n_box_, qOverload<int>(&QSpinBox::valueChanged), this, [this](int n) { setWindow(window_, n); });
  connect(layer_box_, qOverload<int>(&QComboBox::currentIndexChanged), this, [this](int index) {
    if (index >= 0) showLayer(index);
  });
  connect(heat_plot_, &QCustomPlot::mouseMove, this, &ExpertLoadView::onHeatMouseMove);
  connect(heat_plot_, &QCustomPlot::mouseRelease, this, &ExpertLoadView::onHeatMouseRelease);
  connect(bar_plot_, &QCustomPlot::mouseMove, this, &ExpertLoadView::onBarMouseMove);
  heat_plot_->setContextMenuPolicy(Qt::CustomContextMenu);
  connect(heat_plot_, &QWidget::customContextMenuRequested, this,
          [this](const QPoint& pos) { showExportMenu(heat_plot_, QStringLiteral("expert_load"), false, pos); });
  bar_plot_->setContextMenuPolicy(Qt::CustomContextMenu);
  connect(bar_plot_, &QWidget::customContextMenuRequested, this, [this](const QPoint& pos) {
    showExportMenu(bar_plot_, QStringLiteral("expert_load_layer"), true, pos);
  });

  applyTheme();
  showMessage(tr("No model loaded."));
}

ExpertLoadView::~ExpertLoadView() {
  // The worker posts its result to this object: let it finish before the object goes (the posted
  // result is then dropped with it).
  if (job_.valid()) job_.wait();
}

void ExpertLoadView::setData(const WorkbenchData& data) {
  data_ = data;
  dirty_ = true;
  if (isVisible()) scheduleRefresh();
}

void ExpertLoadView::setWindow(Window window, int last_n) {
  last_n = std::max(1, last_n);
  {
    QSignalBlocker block_window(window_box_), block_n(last_n_box_);
    window_box_->setCurrentIndex(window_box_->findData(int(window)));
    last_n_box_->setValue(last_n);
    last_n_box_->setEnabled(window == LastTokens);
  }
  if (window == window_ && last_n == last_n_) return;
  const bool counted_rows_change = window != window_ || window == LastTokens;
  window_ = window;
  last_n_ = last_n;
  if (!counted_rows_change) return;
  dirty_ = true;
  // The user asked: answer now rather than at the next tick (a running computation looks again when done).
  if (isVisible() && !computing_) startComputation();
}

void ExpertLoadView::selectLayer(int moe_ordinal) {
  ensureFresh();
  showLayer(moe_ordinal);
}

void ExpertLoadView::showLayer(int moe_ordinal) {
  if (moe_ordinal < 0 || moe_ordinal >= int(layers_.size())) return;
  if (layer_box_->currentIndex() != moe_ordinal) {
    QSignalBlocker block(layer_box_);
    layer_box_->setCurrentIndex(moe_ordinal);
  }
  if (moe_ordinal == selected_) return;
  selected_ = moe_ordinal;
  if (!message_.isEmpty()) return;
  updateBars();
  updateStats();
  selected_row_->topLeft->setCoords(-0.5, selected_ + 0.5);
  selected_row_->bottomRight->setCoords(n_experts_ - 0.5, selected_ - 0.5);
  heat_plot_->replot(QCustomPlot::rpQueuedReplot);
  bar_plot_->replot(QCustomPlot::rpQueuedReplot);
}

void ExpertLoadView::showEvent(QShowEvent* event) {
  QWidget::showEvent(event);
  if (dirty_ && !computing_) startComputation();
}

void ExpertLoadView::changeEvent(QEvent* event) {
  QWidget::changeEvent(event);
  if (event->type() == QEvent::PaletteChange) {
    applyTheme();
    heat_plot_->replot(QCustomPlot::rpQueuedReplot);
    bar_plot_->replot(QCustomPlot::rpQueuedReplot);
  }
}

void ExpertLoadView::scheduleRefresh() {
  if (computing_) return;  // the running computation looks at dirty_ when it is done
  if (since_refresh_.isValid() && since_refresh_.elapsed() < kMinRefreshMs) {
    if (!refresh_timer_->isActive()) refresh_timer_->start(int(kMinRefreshMs - since_refresh_.elapsed()));
    return;
  }
  startComputation();
}

void ExpertLoadView::startComputation() {
  dirty_ = false;
  computing_ = true;
  since_refresh_.restart();
  refresh_timer_->stop();
  const quint64 generation = ++generation_;
  if (job_.valid()) job_.wait();  // the previous job has posted its result already; its thread is ending
  job_ = std::async(std::launch::async, [this, generation, model = data_.model, trace = data_.trace, f = filter()] {
    Computed computed = compute(model.get(), *trace, f);
    QMetaObject::invokeMethod(
        this,
        [this, generation, computed = std::move(computed)]() mutable {
          computing_ = false;
          if (generation == generation_) apply(std::move(computed));
          if (dirty_ && isVisible()) scheduleRefresh();
        },
        Qt::QueuedConnection);
  });
}

void ExpertLoadView::ensureFresh() const {
  if (!dirty_ && !computing_) return;
  // Asked for numbers now: compute them here; a result still on its way is older and will be dropped.
  auto* self = const_cast<ExpertLoadView*>(this);
  self->dirty_ = false;
  ++self->generation_;
  self->apply(compute(data_.model.get(), *data_.trace, filter()));
}

inspect::TokenFilter ExpertLoadView::filter() const {
  inspect::TokenFilter f;
  switch (window_) {
    case WholeSession: break;
    case LastTokens: f.last = last_n_; break;
    case Thinking: f.phase = Phase::Thinking; break;
    case Answer: f.phase = Phase::Answer; break;
  }
  return f;
}

ExpertLoadView::Computed ExpertLoadView::compute(const ModelFacts* model, const inspect::Trace& trace,
                                                 const inspect::TokenFilter& filter) {
  using Outcome = Computed::Outcome;
  Computed c;
  c.moe_layers = trace.moe_layers;
  c.n_experts = trace.n_experts;
  c.filter = filter;
  if (!model && trace.size() == 0) {
    c.outcome = Outcome::NoModel;
  } else if (trace.size() == 0 && model && model->experts > 0) {
    c.outcome = Outcome::NoTokens;  // an empty trace knows no MoE layers yet: the model says it has experts
  } else if (trace.n_moe() == 0 || trace.n_experts <= 0 || (model && model->experts == 0)) {
    c.outcome = Outcome::Dense;
  } else if (trace.size() == 0) {
    c.outcome = Outcome::NoTokens;
  } else {
    inspect::RandomBaselineOptions random;  // few draws: the baseline is a reference line, not a result
    random.draws = 8;
    random.min_draws = 2;
    random.max_selections = int64_t(1) << 20;
    c.layers = inspect::routing_by_layer(trace, filter, random);
    int64_t routed = 0;
    for (const inspect::LayerRouting& lr : c.layers) routed += lr.stats.tokens;
    if (routed > 0) {
      c.outcome = Outcome::Load;
    } else {
      const bool any = std::any_of(trace.has_routing.begin(), trace.has_routing.end(), [](uint8_t h) { return h != 0; });
      c.outcome = any ? Outcome::EmptyWindow : Outcome::NoRouting;
      c.layers.clear();
    }
  }
  return c;
}

void ExpertLoadView::apply(Computed&& computed) {
  using Outcome = Computed::Outcome;
  n_experts_ = computed.n_experts;
  layers_ = std::move(computed.layers);
  shown_filter_ = computed.filter;
  QString message;
  switch (computed.outcome) {
    case Outcome::NoModel: message = tr("No model loaded."); break;
    case Outcome::Dense:
      message = tr("This model is dense: every token runs the whole MLP, so there is no expert load to show.");
      break;
    case Outcome::NoTokens: message = tr("No tokens yet: the load fills in as the model runs."); break;
    case Outcome::NoRouting:
      message = tr("No routing was recorded (hook level off). Set the hook level to “routing” or higher to see "
                   "the expert load.");
      break;
    case Outcome::EmptyWindow:
      message = tr("No routed tokens in this window (%1).").arg(QString::fromStdString(inspect::describe(computed.filter)));
      break;
    case Outcome::Load: break;
  }

  // The layer list only changes with the model.
  const int n_moe = int(computed.moe_layers.size());
  QStringList names;
  for (int m = 0; m < n_moe; ++m)
    names << tr("layer %1 (MoE %2 of %3)").arg(computed.moe_layers[size_t(m)]).arg(m + 1).arg(n_moe);
  QStringList current;
  for (int i = 0; i < layer_box_->count(); ++i) current << layer_box_->itemText(i);
  QSignalBlocker block(layer_box_);
  if (names != current) {
    layer_box_->clear();
    layer_box_->addItems(names);
  }
  selected_ = std::clamp(selected_, 0, std::max(0, n_moe - 1));
  layer_box_->setCurrentIndex(names.isEmpty() ? -1 : selected_);

  message_ = message;
  if (!message.isEmpty()) {
    dead_.clear();
    overloaded_.clear();
    uniform_ = 0;
    heat_map_->data()->clear();
    dead_cells_->data()->clear();
    overloaded_cells_->data()->clear();
    normal_bars_->data()->clear();
    overloaded_bars_->data()->clear();
    dead_bars_->data()->clear();
    stats_label_->clear();
    showMessage(message);
    return;
  }
  pages_->setCurrentIndex(1);
  updateHeatmap();
  updateBars();
  updateStats();
  heat_plot_->replot(QCustomPlot::rpQueuedReplot);
  bar_plot_->replot(QCustomPlot::rpQueuedReplot);
}

void ExpertLoadView::showMessage(const QString& text) {
  message_label_->setText(text);
  pages_->setCurrentIndex(0);
}

void ExpertLoadView::updateHeatmap() {
  const int M = int(layers_.size()), E = n_experts_;
  auto* grid = new QCPColorMapData(cellsFor(E), cellsFor(M), rangeFor(E), rangeFor(M));
  QVector<double> dead_x, dead_y, over_x, over_y;
  double max_share = 0;
  for (int m = 0; m < M; ++m) {
    const inspect::LayerRoutingStats& s = layers_[size_t(m)].stats;
    const int64_t total = selections(s);
    const double mean = double(total) / E;
    for (int e = 0; e < E; ++e) {
      const int64_t count = size_t(e) < s.counts.size() ? s.counts[size_t(e)] : 0;
      const double share = total > 0 ? double(count) / double(total) : kNaN;
      for (int ei = e; ei < (E == 1 ? 2 : e + 1); ++ei)
        for (int mi = m; mi < (M == 1 ? 2 : m + 1); ++mi) grid->setCell(ei, mi, share);
      if (total == 0) continue;
      max_share = std::max(max_share, share);
      if (count == 0) {
        dead_x << e;
        dead_y << m;
      } else if (double(count) > kOverloadFactor * mean) {
        over_x << e;
        over_y << m;
      }
    }
  }
  heat_map_->setData(grid);
  heat_scale_->setDataRange(QCPRange(0, std::max(max_share, 1.0 / E)));
  dead_cells_->setData(dead_x, dead_y, true);
  overloaded_cells_->setData(over_x, over_y, true);

  auto layer_ticker = QSharedPointer<QCPAxisTickerText>::create();
  for (int m = 0; m < M; ++m) layer_ticker->addTick(m, QStringLiteral("L%1").arg(layers_[size_t(m)].layer));
  heat_plot_->yAxis->setTicker(layer_ticker);
  heat_plot_->xAxis->setTicker(expertTicker(E));
  heat_plot_->xAxis->setRange(-0.5, E - 0.5);
  heat_plot_->yAxis->setRange(-0.5, M - 0.5);
  selected_row_->topLeft->setCoords(-0.5, selected_ + 0.5);
  selected_row_->bottomRight->setCoords(E - 0.5, selected_ - 0.5);
}

void ExpertLoadView::updateBars() {
  dead_.clear();
  overloaded_.clear();
  const int E = n_experts_;
  const inspect::LayerRoutingStats& s = layers_[size_t(selected_)].stats;
  const int64_t total = selections(s);
  uniform_ = double(total) / E;
  QVector<double> keys, counts, over_keys, over_counts, dead_keys;
  double highest = uniform_;
  for (int e = 0; e < E; ++e) {
    const double count = size_t(e) < s.counts.size() ? double(s.counts[size_t(e)]) : 0.0;
    highest = std::max(highest, count);
    if (total > 0 && count == 0) {
      dead_.push_back(e);
      dead_keys << e;
    } else if (total > 0 && count > kOverloadFactor * uniform_) {
      overloaded_.push_back(e);
      over_keys << e;
      over_counts << count;
      continue;
    }
    keys << e;
    counts << count;
  }
  normal_bars_->setData(keys, counts, true);
  overloaded_bars_->setData(over_keys, over_counts, true);
  dead_bars_->setData(dead_keys, QVector<double>(dead_keys.size(), 0.0), true);
  uniform_item_->point1->setCoords(-0.5, uniform_);
  uniform_item_->point2->setCoords(E - 0.5, uniform_);
  uniform_label_->position->setCoords(0.995, uniform_);
  uniform_label_->setText(tr("uniform %1").arg(number(uniform_, 1)));
  bar_plot_->xAxis->setTicker(expertTicker(E));
  bar_plot_->xAxis->setRange(-0.7, E - 0.3);
  bar_plot_->yAxis->setRange(0, std::max(1.0, highest * 1.15));
}

void ExpertLoadView::updateStats() {
  const inspect::LayerRouting& lr = layers_[size_t(selected_)];
  const inspect::LayerRoutingStats& s = lr.stats;
  const inspect::LoadMeasures &c = s.count_load, &u = s.uniform, &r = s.random;
  auto measure = [](const QString& name, double value, double uniform, double random) {
    return tr("%1 %2 (uniform %3, random %4)").arg(name, number(value), number(uniform), number(random));
  };
  QStringList parts;
  parts << measure(tr("CV"), c.cv, u.cv, r.cv) << measure(tr("entropy"), c.normalized_entropy, u.normalized_entropy, r.normalized_entropy)
        << measure(tr("MaxVio"), c.max_vio, u.max_vio, r.max_vio) << measure(tr("Gini"), c.gini, u.gini, r.gini)
        << tr("dead %1 (uniform %2, random %3)")
               .arg(qint64(std::llround(c.dead_experts)))
               .arg(qint64(std::llround(u.dead_experts)))
               .arg(number(r.dead_experts, 2));
  const QString head = tr("Layer %1, %2 tokens (%3), k = %4:")
                           .arg(lr.layer)
                           .arg(s.tokens)
                           .arg(QString::fromStdString(inspect::describe(shown_filter_)))
                           .arg(s.top_k);
  stats_label_->setText(head + QLatin1Char(' ') + parts.join(QStringLiteral(" · ")));
}

QString ExpertLoadView::cellToolTip(int m, int e) const {
  const inspect::LayerRouting& lr = layers_[size_t(m)];
  const inspect::LayerRoutingStats& s = lr.stats;
  const int64_t total = selections(s);
  double total_weight = 0;
  for (double w : s.gate_weights) total_weight += w;
  const int64_t count = s.counts[size_t(e)];
  const double weight = s.gate_weights[size_t(e)];
  QString text = tr("layer %1, expert E%2\n%3 of %4 selections (share %5, uniform %6)\ngate weight %7 (share %8)")
                     .arg(lr.layer)
                     .arg(e)
                     .arg(count)
                     .arg(total)
                     .arg(total > 0 ? number(double(count) / double(total)) : QStringLiteral("–"))
                     .arg(number(1.0 / n_experts_))
                     .arg(number(weight))
                     .arg(total_weight > 0 ? number(weight / total_weight) : QStringLiteral("–"));
  if (total > 0 && count == 0) text += QLatin1Char('\n') + tr("dead: no token selected it");
  if (total > 0 && double(count) > kOverloadFactor * double(total) / n_experts_)
    text += QLatin1Char('\n') + tr("overloaded: more than %1× the mean load").arg(kOverloadFactor);
  return text;
}

void ExpertLoadView::onHeatMouseMove(QMouseEvent* event) {
  if (!message_.isEmpty() || layers_.empty() || !heat_plot_->axisRect()->rect().contains(event->pos())) {
    QToolTip::hideText();
    return;
  }
  const int e = int(std::floor(heat_plot_->xAxis->pixelToCoord(event->position().x()) + 0.5));
  const int m = int(std::floor(heat_plot_->yAxis->pixelToCoord(event->position().y()) + 0.5));
  if (e < 0 || e >= n_experts_ || m < 0 || m >= int(layers_.size())) {
    QToolTip::hideText();
    return;
  }
  QToolTip::showText(event->globalPosition().toPoint(), cellToolTip(m, e), heat_plot_);
}

void ExpertLoadView::onHeatMouseRelease(QMouseEvent* event) {
  if (event->button() != Qt::LeftButton || !heat_plot_->axisRect()->rect().contains(event->pos())) return;
  const int m = int(std::floor(heat_plot_->yAxis->pixelToCoord(event->position().y()) + 0.5));
  showLayer(m);
}

void ExpertLoadView::onBarMouseMove(QMouseEvent* event) {
  if (!message_.isEmpty() || layers_.empty() || !bar_plot_->axisRect()->rect().contains(event->pos())) {
    QToolTip::hideText();
    return;
  }
  const int e = int(std::floor(bar_plot_->xAxis->pixelToCoord(event->position().x()) + 0.5));
  if (e < 0 || e >= n_experts_) {
    QToolTip::hideText();
    return;
  }
  QToolTip::showText(event->globalPosition().toPoint(), cellToolTip(selected_, e), bar_plot_);
}

void ExpertLoadView::showExportMenu(QCustomPlot* plot, const QString& base_name, bool selected_layer_only,
                                    const QPoint& pos) {
  ensureFresh();
  auto note = [this](inspect::Table table) {
    table.notes.push_back("tokens: " + inspect::describe(shown_filter_));
    return table;
  };
  QMenu menu(plot);
  const QString name = selected_layer_only && !layers_.empty()
                           ? base_name + QStringLiteral("_%1").arg(layers_[size_t(selected_)].layer)
                           : base_name;
  addExportActions(&menu, this, plot, name, [this, selected_layer_only, note] {
    ensureFresh();
    if (selected_layer_only && !layers_.empty())
      return note(inspect::expert_load_table(std::span(layers_).subspan(size_t(selected_), 1)));
    return note(inspect::expert_load_table(layers_));
  });
  connect(menu.addAction(tr("Export routing summary as CSV…")), &QAction::triggered, this, [this, note] {
    const QString path = QFileDialog::getSaveFileName(this, tr("Export routing summary"), QStringLiteral("routing_summary.csv"),
                                                      tr("CSV table (*.csv)"));
    if (path.isEmpty()) return;
    ensureFresh();
    QString error;
    if (!saveTableCsv(note(inspect::routing_summary_table(layers_)), path, &error))
      QMessageBox::warning(this, tr("Export routing summary"), error);
  });
  menu.exec(plot->mapToGlobal(pos));
}

void ExpertLoadView::applyTheme() {
  const QPalette& p = palette();
  applyPlotTheme(heat_plot_, p);
  applyPlotTheme(bar_plot_, p);
  const QColor text = p.color(QPalette::WindowText);
  themeAxis(heat_scale_->axis(), text);
  selected_row_->setPen(QPen(text, 2));
  normal_bars_->setPen(QPen(kBarColor.darker(120)));
  normal_bars_->setBrush(kBarColor);
  overloaded_bars_->setPen(QPen(kOverloadColor.darker(120)));
  overloaded_bars_->setBrush(kOverloadColor);
  uniform_item_->setPen(QPen(text, 1.5, Qt::DashLine));
  uniform_label_->setColor(text);
}

// ---- Accessors ----------------------------------------------------------------------------------------

double ExpertLoadView::heatValue(int moe_ordinal, int expert) const {
  ensureFresh();
  if (!message_.isEmpty() || moe_ordinal < 0 || moe_ordinal >= int(layers_.size()) || expert < 0 || expert >= n_experts_)
    return kNaN;
  return heat_map_->data()->cell(expert, moe_ordinal);
}

QVector<double> ExpertLoadView::barValues() const {
  ensureFresh();
  if (!message_.isEmpty()) return {};
  QVector<double> values(n_experts_, 0.0);
  for (QCPBars* bars : {normal_bars_, overloaded_bars_})
    for (auto it = bars->data()->constBegin(); it != bars->data()->constEnd(); ++it) {
      const int e = int(std::lround(it->key));
      if (e >= 0 && e < n_experts_) values[e] = it->value;
    }
  return values;
}

int ExpertLoadView::selectedLayer() const {
  ensureFresh();
  return layers_.empty() ? -1 : selected_;
}

QString ExpertLoadView::statsText() const {
  ensureFresh();
  return stats_label_->text();
}

QVector<int> ExpertLoadView::deadExperts() const {
  ensureFresh();
  return dead_;
}

QVector<int> ExpertLoadView::overloadedExperts() const {
  ensureFresh();
  return overloaded_;
}

double ExpertLoadView::uniformLine() const {
  ensureFresh();
  return message_.isEmpty() ? uniform_item_->point1->coords().y() : 0.0;
}

QString ExpertLoadView::message() const {
  ensureFresh();
  return message_;
}

}  // namespace moe::views
