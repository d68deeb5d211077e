#include "views/routing_map.h"

#include <QCheckBox>
#include <QComboBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QMouseEvent>
#include <QToolTip>
#include <QVBoxLayout>
#include <cmath>
#include <limits>
#include <qcustomplot.h>

#include "inspect/trace_measures.h"
#include "views/plot_export.h"
#include "views/plot_style.h"
#include "views/token_label.h"
#include "views/token_selection.h"

namespace moe::views {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr int kPhaseBandHeight = 12;

// One flat colour per category: value c (of 0 .. n-1, data range [-0.5, n-0.5]) falls in the middle of
// its own segment [c/n, (c+1)/n] whose two ends carry the same colour, so no level ever mixes two
// categories, whatever the gradient's rounding.
QCPColorGradient categoricalGradient(const QVector<QColor>& colors) {
  QCPColorGradient gradient;
  gradient.clearColorStops();
  const int n = int(colors.size());
  const double edge = 1e-6;
  for (int c = 0; c < n; ++c) {
    gradient.setColorStopAt(c == 0 ? 0.0 : double(c) / n + edge, colors[c]);
    gradient.setColorStopAt(c == n - 1 ? 1.0 : double(c + 1) / n - edge, colors[c]);
  }
  gradient.setLevelCount(std::max(2, std::min(16 * n, 16384)));
  gradient.setColorInterpolation(QCPColorGradient::ciRGB);
  gradient.setNanHandling(QCPColorGradient::nhTransparent);
  return gradient;
}

// Perceptually even, readable in grey and for the common colour-vision deficiencies (viridis stops).
QCPColorGradient entropyGradient() {
  return sequentialGradient({{0.00, QColor(0x44, 0x01, 0x54)},
                             {0.25, QColor(0x3b, 0x52, 0x8b)},
                             {0.50, QColor(0x21, 0x91, 0x8c)},
                             {0.75, QColor(0x5e, 0xc9, 0x62)},
                             {1.00, QColor(0xfd, 0xe7, 0x25)}});
}

// The data rows that carry MoE ordinal m. A map of one row would have zero height (QCustomPlot draws
// half a cell beyond the outer cell centres, and there are none), so a single layer is stored twice,
// at -0.25 and +0.25, which draws it from -0.5 to 0.5 like every other row.
int dataRows(int n_moe) { return std::max(2, n_moe); }
QCPRange dataValueRange(int n_moe) { return n_moe >= 2 ? QCPRange(0, n_moe - 1) : QCPRange(-0.25, 0.25); }

}  // namespace

RoutingMap::RoutingMap(TokenSelection* selection, QWidget* parent)
    : QWidget(parent), selection_(selection), data_(WorkbenchData::empty()) {
  mode_box_ = new QComboBox(this);
  mode_box_->addItem(tr("First expert"), int(FirstExpert));
  mode_box_->addItem(tr("Router entropy"), int(RouterEntropy));
  mode_box_->setToolTip(tr("Colour each cell by the expert the router ranked first, or by how unsure the "
                           "router was (entropy of its distribution, 0 = certain, 1 = uniform)"));
  follow_box_ = new QCheckBox(tr("Follow"), this);
  follow_box_->setChecked(true);
  follow_box_->setToolTip(tr("Keep the latest %1 tokens in view as they arrive").arg(kFollowWindow));
  caption_ = new QLabel(this);
  caption_->setWordWrap(true);
  caption_->setTextFormat(Qt::RichText);

  auto* header = new QHBoxLayout;
  header->addWidget(new QLabel(tr("Colour by:"), this));
  header->addWidget(mode_box_);
  header->addWidget(follow_box_);
  header->addStretch(1);

  plot_ = new QCustomPlot(this);
  plot_->setObjectName(QStringLiteral("routing_map"));
  plot_->plotLayout()->clear();
  map_rect_ = new QCPAxisRect(plot_);
  phase_rect_ = new QCPAxisRect(plot_);
  scale_ = new QCPColorScale(plot_);
  plot_->plotLayout()->addElement(0, 0, map_rect_);
  plot_->plotLayout()->addElement(0, 1, scale_);
  plot_->plotLayout()->addElement(1, 0, phase_rect_);

  auto* columns = new QCPMarginGroup(plot_);
  map_rect_->setMarginGroup(QCP::msLeft | QCP::msRight, columns);
  phase_rect_->setMarginGroup(QCP::msLeft | QCP::msRight, columns);
  auto* rows = new QCPMarginGroup(plot_);
  map_rect_->setMarginGroup(QCP::msTop | QCP::msBottom, rows);
  scale_->setMarginGroup(QCP::msTop | QCP::msBottom, rows);

  // The band sits right under the map; the token axis labels go under the band.
  map_rect_->setAutoMargins(QCP::msLeft | QCP::msTop | QCP::msRight);
  map_rect_->setMargins(QMargins(0, 0, 0, 2));
  phase_rect_->setAutoMargins(QCP::msLeft | QCP::msRight | QCP::msBottom);
  phase_rect_->setMargins(QMargins(0, 2, 0, 0));
  phase_rect_->setMinimumSize(0, kPhaseBandHeight);
  phase_rect_->setMaximumSize(QWIDGETSIZE_MAX, kPhaseBandHeight);

  QCPAxis* map_x = map_rect_->axis(QCPAxis::atBottom);
  QCPAxis* map_y = map_rect_->axis(QCPAxis::atLeft);
  QCPAxis* band_x = phase_rect_->axis(QCPAxis::atBottom);
  QCPAxis* band_y = phase_rect_->axis(QCPAxis::atLeft);
  map_x->setTickLabels(false);
  map_x->grid()->setVisible(false);
  map_y->grid()->setVisible(false);
  map_y->setLabel(tr("MoE layer"));
  band_x->setLabel(tr("token (trace row)"));
  band_x->grid()->setVisible(false);
  band_y->grid()->setVisible(false);
  auto band_ticker = QSharedPointer<QCPAxisTickerText>::create();
  band_ticker->addTick(0, tr("phase"));
  band_y->setTicker(band_ticker);
  band_y->setRange(-0.5, 0.5);
  band_y->setTickLength(0, 0);

  map_ = new QCPColorMap(map_x, map_y);
  map_->setInterpolate(false);
  map_->setColorScale(scale_);
  phase_band_ = new QCPColorMap(band_x, band_y);
  phase_band_->setInterpolate(false);
  QVector<QColor> phase_colors;
  for (int p = 0; p < kPhaseCount; ++p) phase_colors.push_back(phaseColor(p));
  phase_band_->setGradient(categoricalGradient(phase_colors));
  phase_band_->setDataRange(QCPRange(-0.5, kPhaseCount - 0.5));
  scale_->setType(QCPAxis::atRight);
  scale_->setRangeDrag(false);
  scale_->setRangeZoom(false);
  scale_->setBarWidth(12);

  // Only the token axis moves: drag and wheel on either strip scroll/zoom the map's x axis, and the
  // band follows it.
  plot_->setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
  for (QCPAxisRect* rect : {map_rect_, phase_rect_}) {
    rect->setRangeDrag(Qt::Horizontal);
    rect->setRangeZoom(Qt::Horizontal);
    rect->setRangeDragAxes(map_x, nullptr);
    rect->setRangeZoomAxes(map_x, nullptr);
  }
  connect(map_x, qOverload<const QCPRange&>(&QCPAxis::rangeChanged), this, &RoutingMap::onRowRangeChanged);

  selection_marker_ = new QCPItemRect(plot_);
  selection_marker_->setClipAxisRect(map_rect_);
  selection_marker_->topLeft->setAxes(map_x, map_y);
  selection_marker_->bottomRight->setAxes(map_x, map_y);
  selection_marker_->setBrush(Qt::NoBrush);
  selection_marker_->setSelectable(false);
  selection_marker_->setVisible(false);

  connect(plot_, &QCustomPlot::mousePress, this, &RoutingMap::onMousePress);
  connect(plot_, &QCustomPlot::mouseRelease, this, &RoutingMap::onMouseRelease);
  connect(plot_, &QCustomPlot::mouseMove, this, &RoutingMap::onMouseMove);
  connect(mode_box_, qOverload<int>(&QComboBox::currentIndexChanged), this,
          [this](int index) { setMode(Mode(mode_box_->itemData(index).toInt())); });
  connect(follow_box_, &QCheckBox::toggled, this, &RoutingMap::setFollowing);
  if (selection_) {
    connect(selection_, &TokenSelection::rowChanged, this, [this](qint64 row) {
      if (dirty_ && isVisible()) bringUpToDate();
      updateSelectionMarker();
      const QCPRange shown = map_rect_->axis(QCPAxis::atBottom)->range();
      if (row >= 0 && row < columns_ && (row < shown.lower || row > shown.upper)) {
        // Looking at a token means staying there: following would scroll it away with the next tokens.
        setFollowing(false);
        setRowRange(row - shown.size() / 2, row + shown.size() / 2);
      }
      plot_->replot(QCustomPlot::rpQueuedReplot);
    });
  }

  enableExportMenu(plot_, QStringLiteral("routing_map"), [this] {
    bringUpToDate();
    inspect::Table table;
    table.title = "Routing map";
    table.columns = {"row", "token", "phase"};
    for (int layer : moe_layers_) {
      table.columns.push_back("L" + std::to_string(layer) + "_first_expert");
      table.columns.push_back("L" + std::to_string(layer) + "_router_entropy");
    }
    for (qint64 row = 0; row < columns_; ++row) {
      std::vector<inspect::Cell> cells = {int64_t(row), data_.text_of(row),
                                          std::string(phase_name(Phase(phase_of_row_[size_t(row)])))};
      for (int m = 0; m < n_moe_; ++m) {
        const size_t i = size_t(row) * size_t(n_moe_) + size_t(m);
        cells.push_back(std::isnan(first_expert_[i]) ? inspect::Cell() : inspect::Cell(int64_t(first_expert_[i])));
        cells.push_back(std::isnan(entropy_[i]) ? inspect::Cell() : inspect::Cell(double(entropy_[i])));
      }
      table.add_row(std::move(cells));
    }
    table.notes.push_back("first_expert: the expert the router ranked first; router_entropy: entropy of the router "
                          "distribution / ln(experts), 0 = certain, 1 = uniform; empty: no routing recorded");
    return table;
  });

  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(4, 4, 4, 4);
  layout->addLayout(header);
  layout->addWidget(caption_);
  layout->addWidget(plot_, 1);

  applyMode();
  setRowRange(-0.5, kFollowWindow - 0.5);
  applyTheme();
  updateCaption();
}

RoutingMap::~RoutingMap() = default;

void RoutingMap::setData(const WorkbenchData& data) {
  data_ = data;
  dirty_ = true;
  if (isVisible()) bringUpToDate();
}

void RoutingMap::showEvent(QShowEvent* event) {
  QWidget::showEvent(event);
  bringUpToDate();
}

void RoutingMap::changeEvent(QEvent* event) {
  QWidget::changeEvent(event);
  if (event->type() == QEvent::PaletteChange) {
    applyTheme();
    plot_->replot(QCustomPlot::rpQueuedReplot);
  }
}

void RoutingMap::bringUpToDate() {
  if (!dirty_) return;
  dirty_ = false;
  const inspect::Trace& trace = *data_.trace;
  // Rows only ever get appended to a session's trace; a new shape, a shorter trace or a different token
  // where our last one was means a new session, which is built from scratch.
  const bool same_session = trace.n_moe() == n_moe_ && trace.n_experts == n_experts_ && trace.moe_layers == moe_layers_ &&
                            trace.size() >= columns_ && (trace.forced_stops.size() >= forced_stops_seen_) &&
                            (columns_ == 0 || (size_t(columns_) <= trace.tokens.size() &&
                                               trace.tokens[size_t(columns_ - 1)] == last_token_));
  if (!same_session) rebuildBuffers();
  appendRows(trace.size());
  updateForcedStops();
  if (following_) followLatest();
  syncDrawnWindow();
  updateSelectionMarker();
  updateCaption();
  plot_->replot(QCustomPlot::rpQueuedReplot);
}

void RoutingMap::rebuildBuffers() {
  const inspect::Trace& trace = *data_.trace;
  n_moe_ = trace.n_moe();
  n_experts_ = trace.n_experts;
  moe_layers_ = trace.moe_layers;
  columns_ = 0;
  drawn_lo_ = drawn_hi_ = written_ = 0;
  routed_rows_ = 0;
  last_token_ = 0;
  first_expert_.clear();
  first_weight_.clear();
  entropy_.clear();
  phase_of_row_.clear();
  forced_stops_seen_ = 0;
  forced_scan_from_ = 0;
  for (QCPItemStraightLine* line : forced_stop_lines_) plot_->removeItem(line);
  forced_stop_lines_.clear();

  auto ticker = QSharedPointer<QCPAxisTickerText>::create();
  for (int m = 0; m < n_moe_; ++m) ticker->addTick(m, QStringLiteral("L%1").arg(moe_layers_[size_t(m)]));
  map_rect_->axis(QCPAxis::atLeft)->setTicker(ticker);
  map_rect_->axis(QCPAxis::atLeft)->setRange(-0.5, std::max(1, n_moe_) - 0.5);
  applyMode();
  map_->data()->clear();
  phase_band_->data()->clear();
}

void RoutingMap::appendRows(qint64 end) {
  if (end <= columns_) return;
  const inspect::Trace& trace = *data_.trace;
  const qint64 begin = columns_;
  const size_t M = size_t(n_moe_), K = size_t(std::max(0, trace.top_k));
  first_expert_.resize(size_t(end) * M, float(kNaN));
  first_weight_.resize(size_t(end) * M, float(kNaN));
  entropy_.resize(size_t(end) * M, float(kNaN));
  phase_of_row_.resize(size_t(end), int(Phase::Other));
  for (qint64 row = begin; row < end; ++row) {
    phase_of_row_[size_t(row)] = int(inspect::phase_of(trace, row));
    const bool routed = size_t(row) < trace.has_routing.size() && trace.has_routing[size_t(row)] && K > 0;
    if (!routed) continue;
    bool any = false;
    for (size_t m = 0; m < M; ++m) {
      const size_t cell = size_t(row) * M + m;
      const size_t slot = cell * K;
      if (slot >= trace.expert_ids.size()) continue;
      const int32_t expert = trace.expert_ids[slot];
      if (expert < 0 || expert >= n_experts_) continue;  // an empty slot: the layer did not route this token
      any = true;
      first_expert_[cell] = float(expert);
      if (slot < trace.expert_weights.size()) first_weight_[cell] = trace.expert_weights[slot];
      if (cell < trace.router_entropy.size()) entropy_[cell] = trace.router_entropy[cell];
    }
    routed_rows_ += any ? 1 : 0;
  }
  columns_ = end;
  last_token_ = trace.tokens[size_t(end - 1)];
}

void RoutingMap::syncDrawnWindow(bool rewrite) {
  if (n_moe_ == 0 || columns_ == 0) return;
  const QCPRange shown = map_rect_->axis(QCPAxis::atBottom)->range();
  const qint64 first = std::clamp<qint64>(qint64(std::floor(shown.lower)), 0, columns_ - 1);
  const qint64 last = std::clamp<qint64>(qint64(std::ceil(shown.upper)), 0, columns_ - 1);
  if (drawn_hi_ > drawn_lo_ && first >= drawn_lo_ && last < drawn_hi_) {
    if (rewrite) written_ = drawn_lo_;
    writeColumns(std::max(written_, drawn_lo_), std::min(columns_, drawn_hi_));
    written_ = columns_;
    return;
  }
  // A new window: the visible span again before it (scrolling back a little needs no new one) and room
  // for two follow windows of tokens after it (streaming fills that room before the next one). Both
  // are clamped to rows that exist or will soon, so zooming far out allocates no empty rows.
  const qint64 span = std::max<qint64>(kFollowWindow, last - first + 1);
  allocateDrawnWindow(std::max<qint64>(0, first - span), last + 1 + 2 * kFollowWindow);
}

void RoutingMap::allocateDrawnWindow(qint64 lo, qint64 hi) {
  drawn_lo_ = lo;
  drawn_hi_ = std::max(hi, lo + 2);
  const int size = int(drawn_hi_ - drawn_lo_);
  const QCPRange keys(double(drawn_lo_), double(drawn_hi_ - 1));
  auto* map_data = new QCPColorMapData(size, dataRows(n_moe_), keys, dataValueRange(n_moe_));
  map_data->fill(kNaN);  // rows not run yet stay transparent
  map_->setData(map_data);
  auto* band_data = new QCPColorMapData(size, 2, keys, QCPRange(-0.25, 0.25));
  band_data->fill(kNaN);
  phase_band_->setData(band_data);
  writeColumns(drawn_lo_, std::min(columns_, drawn_hi_));
  written_ = columns_;
}

double RoutingMap::storedValue(qint64 row, int m) const {
  const size_t i = size_t(row) * size_t(n_moe_) + size_t(m);
  if (std::isnan(first_expert_[i])) return kNaN;  // a row without routing is empty in both modes
  return mode_ == FirstExpert ? double(first_expert_[i]) : double(entropy_[i]);
}

void RoutingMap::writeColumns(qint64 begin, qint64 end) {
  QCPColorMapData* map_data = map_->data();
  QCPColorMapData* band_data = phase_band_->data();
  for (qint64 row = begin; row < end; ++row) {
    const int cell = int(row - drawn_lo_);
    for (int m = 0; m < n_moe_; ++m) {
      const double value = storedValue(row, m);
      map_data->setCell(cell, m, value);
      if (n_moe_ == 1) map_data->setCell(cell, 1, value);
    }
    band_data->setCell(cell, 0, phase_of_row_[size_t(row)]);
    band_data->setCell(cell, 1, phase_of_row_[size_t(row)]);
  }
}

void RoutingMap::setMode(Mode mode) {
  if (mode_box_->currentIndex() != mode_box_->findData(int(mode))) {
    QSignalBlocker block(mode_box_);
    mode_box_->setCurrentIndex(mode_box_->findData(int(mode)));
  }
  if (mode == mode_) return;
  mode_ = mode;
  applyMode();
  syncDrawnWindow(true);
  updateCaption();
  plot_->replot(QCustomPlot::rpQueuedReplot);
}

void RoutingMap::applyMode() {
  if (mode_ == FirstExpert) {
    QVector<QColor> colors;
    for (int e = 0; e < std::max(1, n_experts_); ++e) colors.push_back(expertColor(e));
    scale_->setGradient(categoricalGradient(colors));
    scale_->setDataRange(QCPRange(-0.5, std::max(1, n_experts_) - 0.5));
    auto ticker = QSharedPointer<QCPAxisTickerText>::create();
    const int step = std::max(1, (n_experts_ + 15) / 16);  // at most ~16 labels
    for (int e = 0; e < n_experts_; e += step) ticker->addTick(e, QStringLiteral("E%1").arg(e));
    scale_->axis()->setTicker(ticker);
    scale_->setLabel(tr("first expert"));
  } else {
    scale_->setGradient(entropyGradient());
    scale_->setDataRange(QCPRange(0, 1));
    scale_->axis()->setTicker(QSharedPointer<QCPAxisTicker>::create());
    scale_->setLabel(tr("router entropy (0 certain, 1 uniform)"));
  }
}

void RoutingMap::updateForcedStops() {
  const inspect::Trace& trace = *data_.trace;
  const qint64 n = std::min<qint64>(columns_, qint64(trace.positions.size()));
  const bool has_forced_column = qint64(trace.forced.size()) >= n;
  while (forced_stops_seen_ < trace.forced_stops.size()) {
    const int position = trace.forced_stops[forced_stops_seen_].position;
    // The stop's first injected token (or, in a trace without the forced column, the first token at its
    // position), searched after the previous stop: stops come in order, and positions repeat when a
    // conversation starts over. Rows already searched are not searched again.
    auto is_stop = [&](qint64 row) {
      return trace.positions[size_t(row)] == position && (!has_forced_column || trace.forced[size_t(row)]);
    };
    while (forced_scan_from_ < n && !is_stop(forced_scan_from_)) ++forced_scan_from_;
    if (forced_scan_from_ >= n) break;  // its token has not run yet: go on with the next snapshot
    const qint64 found = forced_scan_from_++;
    auto* line = new QCPItemStraightLine(plot_);
    line->setClipAxisRect(map_rect_);
    line->point1->setAxes(map_rect_->axis(QCPAxis::atBottom), map_rect_->axis(QCPAxis::atLeft));
    line->point2->setAxes(map_rect_->axis(QCPAxis::atBottom), map_rect_->axis(QCPAxis::atLeft));
    line->point1->setCoords(found - 0.5, 0);
    line->point2->setCoords(found - 0.5, 1);
    line->setSelectable(false);
    line->setPen(QPen(palette().color(QPalette::WindowText), 1.5, Qt::DashLine));
    forced_stop_lines_.push_back(line);
    ++forced_stops_seen_;
  }
}

void RoutingMap::updateSelectionMarker() {
  const qint64 row = selection_ ? selection_->row() : -1;
  const bool shown = row >= 0 && row < columns_ && n_moe_ > 0;
  selection_marker_->setVisible(shown);
  if (!shown) return;
  selection_marker_->topLeft->setCoords(row - 0.5, n_moe_ - 0.5);
  selection_marker_->bottomRight->setCoords(row + 0.5, -0.5);
}

void RoutingMap::updateCaption() {
  QString phases;
  for (int p = 0; p < kPhaseCount; ++p)
    phases += QStringLiteral("<span style=\"color:%1\">■</span> %2 ").arg(phaseColor(p).name(), phaseLabel(p));
  QString text;
  if (data_.trace->size() == 0) {
    text = tr("No tokens yet: the map fills as the model runs.");
  } else if (n_moe_ == 0 || n_experts_ == 0) {
    text = tr("This model is dense: it has no router, so there is no routing to map.");
  } else if (routed_rows_ == 0) {
    text = tr("No routing was recorded for these tokens (hook level off). Set the hook level to "
              "“routing” or higher to see which experts each token uses.");
  } else {
    text = mode_ == FirstExpert ? tr("Each column is a token, each row a MoE layer; the colour is the expert the "
                                     "router ranked first (the same colour as in the chat).")
                                : tr("Each column is a token, each row a MoE layer; the colour is the router's "
                                     "entropy: dark = sure of one expert, bright = spread over many.");
    text += QLatin1Char(' ') + tr("Band below: phase %1. Dashed line: the thinking budget cut the thinking. "
                                  "Empty cells: no routing. Click a cell to select its token.")
                                   .arg(phases);
  }
  caption_->setText(text);
}

void RoutingMap::followLatest() {
  const double upper = double(std::max<qint64>(columns_, kFollowWindow)) - 0.5;
  setRowRange(upper - kFollowWindow, upper);
}

void RoutingMap::setFollowing(bool follow) {
  if (follow_box_->isChecked() != follow) {
    QSignalBlocker block(follow_box_);
    follow_box_->setChecked(follow);
  }
  if (follow == following_) return;
  following_ = follow;
  if (following_) {
    followLatest();
    plot_->replot(QCustomPlot::rpQueuedReplot);
  }
}

void RoutingMap::setRowRange(double lower, double upper) {
  setting_range_ = true;
  map_rect_->axis(QCPAxis::atBottom)->setRange(lower, upper);
  phase_rect_->axis(QCPAxis::atBottom)->setRange(lower, upper);
  setting_range_ = false;
  syncDrawnWindow();
}

void RoutingMap::onRowRangeChanged(const QCPRange& range) {
  phase_rect_->axis(QCPAxis::atBottom)->setRange(range);
  if (setting_range_) return;
  if (following_) setFollowing(false);  // the user scrolled or zoomed
  syncDrawnWindow();
}

qint64 RoutingMap::rowAt(double pixel_x) const {
  const double x = map_rect_->axis(QCPAxis::atBottom)->pixelToCoord(pixel_x);
  const qint64 row = qint64(std::floor(x + 0.5));
  return row >= 0 && row < columns_ ? row : -1;
}

int RoutingMap::moeOrdinalAt(double pixel_y) const {
  const double y = map_rect_->axis(QCPAxis::atLeft)->pixelToCoord(pixel_y);
  const int m = int(std::floor(y + 0.5));
  return m >= 0 && m < n_moe_ ? m : -1;
}

void RoutingMap::onMousePress(QMouseEvent* event) {
  press_pos_ = event->pos();
  press_on_map_ = map_rect_->rect().contains(event->pos()) || phase_rect_->rect().contains(event->pos());
}

void RoutingMap::onMouseRelease(QMouseEvent* event) {
  // A release near the press is a click; anything further was a drag of the token axis.
  if (!press_on_map_ || (event->pos() - press_pos_).manhattanLength() > 4) return;
  press_on_map_ = false;
  const qint64 row = rowAt(event->position().x());
  if (row >= 0 && selection_) selection_->setRow(row);
}

void RoutingMap::onMouseMove(QMouseEvent* event) {
  if (event->buttons() != Qt::NoButton) return;
  const QPoint pos = event->pos();
  const bool on_map = map_rect_->rect().contains(pos), on_band = phase_rect_->rect().contains(pos);
  const qint64 row = on_map || on_band ? rowAt(pos.x()) : -1;
  if (row < 0) {
    QToolTip::hideText();
    return;
  }
  QString text = tr("row %1 · “%2” · %3")
                     .arg(row)
                     .arg(visibleToken(data_.text_of(row)), phaseLabel(phase_of_row_[size_t(row)]));
  const int m = on_map ? moeOrdinalAt(pos.y()) : -1;
  if (m >= 0) {
    const size_t i = size_t(row) * size_t(n_moe_) + size_t(m);
    text += QLatin1Char('\n') + tr("layer %1 (MoE layer %2 of %3)").arg(moe_layers_[size_t(m)]).arg(m + 1).arg(n_moe_);
    if (std::isnan(first_expert_[i])) {
      text += QLatin1Char('\n') + tr("no routing recorded");
    } else {
      text += QLatin1Char('\n') + tr("first expert E%1, gate weight %2")
                                      .arg(int(first_expert_[i]))
                                      .arg(double(first_weight_[i]), 0, 'f', 3);
      text += QLatin1Char('\n') + (std::isnan(entropy_[i]) ? tr("router entropy not recorded")
                                                           : tr("router entropy %1").arg(double(entropy_[i]), 0, 'f', 3));
    }
  }
  QToolTip::showText(event->globalPosition().toPoint(), text, plot_);
}

void RoutingMap::applyTheme() {
  applyPlotTheme(plot_, palette());
  const QColor text = palette().color(QPalette::WindowText);
  QCPAxis* scale_axis = scale_->axis();
  scale_axis->setBasePen(QPen(text));
  scale_axis->setTickPen(QPen(text));
  scale_axis->setSubTickPen(QPen(text));
  scale_axis->setTickLabelColor(text);
  scale_axis->setLabelColor(text);
  selection_marker_->setPen(QPen(palette().color(QPalette::Highlight).lighter(isDark(palette()) ? 140 : 100), 2));
  for (QCPItemStraightLine* line : forced_stop_lines_) line->setPen(QPen(text, 1.5, Qt::DashLine));
}

double RoutingMap::cellValue(qint64 row, int moe_ordinal) const {
  const_cast<RoutingMap*>(this)->bringUpToDate();
  if (row < 0 || row >= columns_ || moe_ordinal < 0 || moe_ordinal >= n_moe_) return kNaN;
  if (row >= drawn_lo_ && row < std::min(written_, drawn_hi_)) return map_->data()->cell(int(row - drawn_lo_), moe_ordinal);
  return storedValue(row, moe_ordinal);
}

qint64 RoutingMap::columns() const {
  const_cast<RoutingMap*>(this)->bringUpToDate();
  return columns_;
}

QCPRange RoutingMap::visibleRows() const {
  const_cast<RoutingMap*>(this)->bringUpToDate();
  return map_rect_->axis(QCPAxis::atBottom)->range();
}

int RoutingMap::forcedStopMarkers() const {
  const_cast<RoutingMap*>(this)->bringUpToDate();
  return int(forced_stop_lines_.size());
}

qint64 RoutingMap::markedRow() const {
  const_cast<RoutingMap*>(this)->bringUpToDate();
  if (!selection_marker_->visible()) return -1;
  return qint64(std::llround(selection_marker_->topLeft->coords().x() + 0.5));
}

}  // namespace moe::views
