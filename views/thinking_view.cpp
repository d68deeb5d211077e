#include "views/thinking_view.h"

#include <QComboBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QMouseEvent>
#include <QToolTip>
#include <QVBoxLayout>
#include <algorithm>
#include <cmath>
#include <limits>
#include <qcustomplot.h>

#include "views/plot_export.h"
#include "views/plot_style.h"
#include "views/token_label.h"
#include "views/token_selection.h"

namespace moe::views {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr int kThinking = int(Phase::Thinking);
constexpr int kAnswer = int(Phase::Answer);
// The phase strip is one unit tall on a hidden axis spanning this many units: the bottom tenth.
constexpr double kStripAxisSpan = 10.0;
// Room under the running count's zero for the strip, as a share of its axis.
constexpr double kStripRoom = 0.125;
constexpr int kUserTextInBox = 40;

// Counts never go below zero; the axis reaches below zero only to make room for the phase strip, so
// the ticks there are left out.
class CountTicker : public QCPAxisTicker {
 protected:
  QVector<double> createTickVector(double tick_step, const QCPRange& range) override {
    QVector<double> ticks = QCPAxisTicker::createTickVector(tick_step, range);
    ticks.erase(std::remove_if(ticks.begin(), ticks.end(), [](double t) { return t < -1e-9; }), ticks.end());
    return ticks;
  }
};

QString formatSeconds(double s) {
  if (!std::isfinite(s)) return QStringLiteral("?");
  if (s < 0.1) return QObject::tr("%1 ms").arg(s * 1e3, 0, 'f', s < 0.01 ? 2 : 1);
  return QObject::tr("%1 s").arg(s, 0, 'f', s < 10 ? 2 : 1);
}

// Start of the step that ran `row` (seconds since the trace began), NaN when the trace does not say.
double stepStart(const inspect::Trace& trace, int64_t row) {
  if (row < 0 || row >= int64_t(trace.step.size())) return kNaN;
  const int s = trace.step[size_t(row)];
  if (s < 0 || size_t(s) >= trace.step_end_s.size() || size_t(s) >= trace.step_time_s.size()) return kNaN;
  return trace.step_end_s[size_t(s)] - trace.step_time_s[size_t(s)];
}

double stepEnd(const inspect::Trace& trace, int64_t row) {
  if (row < 0 || row >= int64_t(trace.step.size())) return kNaN;
  const int s = trace.step[size_t(row)];
  if (s < 0 || size_t(s) >= trace.step_end_s.size()) return kNaN;
  return trace.step_end_s[size_t(s)];
}

void bindItem(QCPAbstractItem* item, QCPAxisRect* rect) {
  item->setClipAxisRect(rect);
  for (QCPItemPosition* p : item->positions()) {
    p->setAxisRect(rect);
    p->setAxes(rect->axis(QCPAxis::atBottom), rect->axis(QCPAxis::atLeft));
  }
}

QCPGraph* addGraph(QCustomPlot* plot, QCPAxisRect* rect, QCPAxis::AxisType value_axis = QCPAxis::atLeft) {
  return plot->addGraph(rect->axis(QCPAxis::atBottom), rect->axis(value_axis));
}

}  // namespace

ThinkingView::ThinkingView(TokenSelection* selection, QWidget* parent) : QWidget(parent), selection_(selection) {
  turn_box_ = new QComboBox(this);
  turn_box_->setToolTip(tr("Which turn of the chat to show; \"Latest turn\" follows the chat as it streams"));
  turn_box_->setSizeAdjustPolicy(QComboBox::AdjustToContents);
  caption_ = new QLabel(this);
  caption_->setWordWrap(true);
  caption_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  caption_->setToolTip(tr("Tokens generated inside <think>…</think> and after it; the thinking budget in "
                          "force and how often the thinking was cut"));

  auto* header = new QHBoxLayout;
  header->addWidget(new QLabel(tr("Turn:"), this));
  header->addWidget(turn_box_);
  header->addWidget(caption_, 1);

  plot_ = new QCustomPlot(this);
  plot_->setObjectName(QStringLiteral("thinking_timeline"));
  plot_->setMouseTracking(true);
  plot_->setToolTip(QString());
  timeline_rect_ = plot_->axisRect();
  rate_rect_ = new QCPAxisRect(plot_);
  for (QCPAxis::AxisType t : {QCPAxis::atTop, QCPAxis::atRight}) rate_rect_->axis(t)->setVisible(false);
  plot_->plotLayout()->addElement(1, 0, rate_rect_);
  // The legend gets a row of its own above the timeline so it never hides the curve or the markers.
  plot_->plotLayout()->insertRow(0);
  timeline_rect_->insetLayout()->take(plot_->legend);
  plot_->plotLayout()->addElement(0, 0, plot_->legend);
  plot_->legend->setFillOrder(QCPLayoutGrid::foColumnsFirst);
  plot_->legend->setWrap(3);
  plot_->legend->setVisible(true);
  plot_->legend->setMargins(QMargins(4, 2, 4, 2));
  plot_->plotLayout()->setRowStretchFactor(0, 0.001);
  plot_->plotLayout()->setRowStretchFactor(1, 3);
  plot_->plotLayout()->setRowStretchFactor(2, 2);
  auto* columns = new QCPMarginGroup(plot_);
  timeline_rect_->setMarginGroup(QCP::msLeft | QCP::msRight, columns);
  rate_rect_->setMarginGroup(QCP::msLeft | QCP::msRight, columns);

  QCPAxis* tx = timeline_rect_->axis(QCPAxis::atBottom);
  QCPAxis* ty = timeline_rect_->axis(QCPAxis::atLeft);
  QCPAxis* strip_axis = timeline_rect_->axis(QCPAxis::atRight);
  tx->setLabel(tr("generated token (index in the turn)"));
  tx->grid()->setZeroLinePen(Qt::NoPen);
  ty->setLabel(tr("thinking tokens so far"));
  ty->setTicker(QSharedPointer<QCPAxisTicker>(new CountTicker));
  strip_axis->setVisible(false);
  strip_axis->setRange(0, kStripAxisSpan);

  const QString strip_names[2][2] = {{tr("thinking token"), tr("thinking, injected by the budget")},
                                     {tr("answer token"), tr("answer, injected")}};
  for (int p = 0; p < 2; ++p)
    for (int f = 0; f < 2; ++f) {
      QCPGraph* g = addGraph(plot_, timeline_rect_, QCPAxis::atRight);
      g->setName(strip_names[p][f]);
      g->setLineStyle(QCPGraph::lsLine);
      strip_[p][f] = g;
    }
  thinking_curve_ = addGraph(plot_, timeline_rect_);
  thinking_curve_->setName(tr("thinking tokens so far"));
  thinking_curve_->setLineStyle(QCPGraph::lsStepLeft);

  QCPAxis* rx = rate_rect_->axis(QCPAxis::atBottom);
  QCPAxis* ry = rate_rect_->axis(QCPAxis::atLeft);
  rx->setLabel(tr("seconds since the turn started"));
  ry->setLabel(tr("tokens/s (last %1 tokens)").arg(kRateWindow));
  for (int p = 0; p < 2; ++p) {
    rate_graphs_[p] = addGraph(plot_, rate_rect_);
    rate_graphs_[p]->setName(p == 0 ? tr("speed while thinking") : tr("speed while answering"));
    rate_graphs_[p]->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDisc, 4));
    rate_graphs_[p]->removeFromLegend();
  }

  budget_line_ = new QCPItemStraightLine(plot_);
  bindItem(budget_line_, timeline_rect_);
  budget_label_ = new QCPItemText(plot_);
  bindItem(budget_label_, timeline_rect_);
  budget_label_->position->setTypeX(QCPItemPosition::ptAxisRectRatio);
  budget_label_->setPositionAlignment(Qt::AlignRight | Qt::AlignBottom);
  selection_line_ = new QCPItemStraightLine(plot_);
  bindItem(selection_line_, timeline_rect_);
  selection_line_->setVisible(false);
  thinking_end_line_ = new QCPItemStraightLine(plot_);
  bindItem(thinking_end_line_, rate_rect_);
  thinking_end_line_->setVisible(false);
  rate_note_ = new QCPItemText(plot_);
  bindItem(rate_note_, rate_rect_);
  rate_note_->position->setType(QCPItemPosition::ptAxisRectRatio);
  rate_note_->position->setCoords(0.5, 0.5);
  rate_note_->setText(tr("No timings for this turn yet"));
  rate_note_->setVisible(false);

  enableExportMenu(plot_, QStringLiteral("thinking_timeline"), [this] {
    inspect::Table table;
    table.title = "Thinking timeline";
    table.columns = {"index", "row", "phase", "forced", "elapsed_s", "thinking_tokens_so_far", "tokens_per_s"};
    for (size_t i = 0; i < tokens_.size(); ++i) {
      const TimelineToken& t = tokens_[i];
      table.add_row({int64_t(i), t.row >= 0 ? inspect::Cell(int64_t(t.row)) : inspect::Cell(),
                     phase_name(Phase(std::clamp(t.phase, 0, kPhaseCount - 1))), int(t.forced ? 1 : 0),
                     inspect::Cell::optional(std::isfinite(t.time_s) ? std::optional<double>(t.time_s) : std::nullopt, 6),
                     t.thinking_so_far,
                     inspect::Cell::optional(std::isfinite(t.rate) ? std::optional<double>(t.rate) : std::nullopt, 1)});
    }
    table.notes.push_back("elapsed_s: seconds since the turn started; tokens_per_s over the last " +
                          std::to_string(kRateWindow) + " tokens");
    return table;
  });

  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(4, 4, 4, 4);
  layout->addLayout(header);
  layout->addWidget(plot_, 1);

  connect(turn_box_, &QComboBox::activated, this, [this](int index) { setTurn(turn_box_->itemData(index).toInt()); });
  connect(plot_, &QCustomPlot::mousePress, this, &ThinkingView::onPlotClick);
  connect(plot_, &QCustomPlot::mouseMove, this, &ThinkingView::onPlotHover);
  if (selection_) connect(selection_, &TokenSelection::rowChanged, this, &ThinkingView::onSelectionChanged);

  applyPlotTheme(plot_, palette());
  styleItems();
  updateTurnBox();
  redraw();
}

double ThinkingView::budgetLine() const { return budget_ >= 0 ? double(budget_) : kNaN; }

QString ThinkingView::caption() const { return caption_->text(); }

void ThinkingView::setData(const WorkbenchData& data) {
  data_ = data;
  if (!data_.trace) data_.trace = WorkbenchData::empty().trace;
  if (!data_.chat) data_.chat = WorkbenchData::empty().chat;
  updateTurnBox();
  if (isVisible())
    redraw();
  else
    dirty_ = true;
}

void ThinkingView::setTurn(int turn) {
  requested_turn_ = turn < 0 ? -1 : turn;
  const int index = turn_box_->findData(requested_turn_);
  if (index >= 0) turn_box_->setCurrentIndex(index);
  if (isVisible())
    redraw();
  else
    dirty_ = true;
}

void ThinkingView::showEvent(QShowEvent* event) {
  QWidget::showEvent(event);
  if (dirty_) redraw();
}

void ThinkingView::changeEvent(QEvent* event) {
  QWidget::changeEvent(event);
  if (event->type() == QEvent::PaletteChange) {
    applyPlotTheme(plot_, palette());
    styleItems();
    plot_->replot(QCustomPlot::rpQueuedReplot);
  }
}

// The box lists the turns by their user text; it is rebuilt only when the number of turns changes,
// which is rare next to the ~30 snapshots a second that stream one turn's tokens.
void ThinkingView::updateTurnBox() {
  const int turns = int(data_.chat->size());
  if (turn_box_->count() == turns + 1) return;
  const QSignalBlocker block(turn_box_);
  turn_box_->clear();
  turn_box_->addItem(tr("Latest turn"), -1);
  for (int i = 0; i < turns; ++i) {
    const std::string& text = (*data_.chat)[size_t(i)].user_text;
    QString user = QString::fromUtf8(text.data(), qsizetype(text.size())).simplified();
    if (user.size() > kUserTextInBox) user = user.left(kUserTextInBox - 1) + QStringLiteral("…");
    turn_box_->addItem(tr("Turn %1: %2").arg(i + 1).arg(user), i);
  }
  const int index = turn_box_->findData(requested_turn_);
  turn_box_->setCurrentIndex(index >= 0 ? index : 0);
}

void ThinkingView::redraw() {
  dirty_ = false;
  const int turns = int(data_.chat->size());
  shown_turn_ = turns == 0 ? -1 : (requested_turn_ >= 0 && requested_turn_ < turns ? requested_turn_ : turns - 1);
  rebuildTokens();
  drawTimeline();
  drawStops();
  drawRate();
  onSelectionChanged(selection_ ? selection_->row() : -1);
  updateCaption();
  plot_->replot(QCustomPlot::rpQueuedReplot);
}

void ThinkingView::rebuildTokens() {
  tokens_.clear();
  thinking_count_ = 0;
  budget_ = -1;
  if (shown_turn_ < 0) return;
  const ChatTurn& turn = (*data_.chat)[size_t(shown_turn_)];
  const inspect::Trace& trace = *data_.trace;
  budget_ = turn.thinking_budget;

  // The chat's clock is the one the user saw; a recorded trace has only its step clock.
  const bool chat_clock = std::any_of(turn.tokens.begin(), turn.tokens.end(), [](const ChatToken& t) { return t.elapsed_s > 0; });
  double start = kNaN;
  if (!chat_clock) {
    start = stepStart(trace, turn.first_row);
    for (size_t i = 0; i < turn.tokens.size() && !std::isfinite(start); ++i) start = stepStart(trace, turn.tokens[i].row);
  }

  tokens_.resize(turn.tokens.size());
  for (size_t i = 0; i < turn.tokens.size(); ++i) {
    const ChatToken& c = turn.tokens[i];
    TimelineToken& t = tokens_[i];
    t.row = c.row < trace.size() ? c.row : -1;
    t.position = c.position >= 0 ? c.position
                 : t.row >= 0 && t.row < int64_t(trace.positions.size()) ? trace.positions[size_t(t.row)]
                                                                          : -1;
    t.phase = int(c.phase);
    t.forced = c.forced;
    if (t.phase == kThinking) ++thinking_count_;
    t.thinking_so_far = thinking_count_;
    t.time_s = chat_clock ? c.elapsed_s : stepEnd(trace, t.row) - start;
  }

  // Rate over the last kRateWindow timed tokens. Tokens that ran in one step (the injected text, a
  // batch) share a time: they count as arriving together, so the window always starts at the end of
  // an earlier step, spans at least the whole latest step, and the curve has one point per step.
  // Injected tokens (the early-stop text) are left out: they arrive in one burst without a decode step
  // each, and counting them would show the model "decoding" at millions of tokens a second.
  std::vector<size_t> timed;
  timed.reserve(tokens_.size());
  for (size_t i = 0; i < tokens_.size(); ++i)
    if (std::isfinite(tokens_[i].time_s) && !tokens_[i].forced) timed.push_back(i);
  const auto time_of = [&](size_t k) { return tokens_[timed[k]].time_s; };
  std::vector<size_t> last_same(timed.size());  // in `timed`: the last token with the same time
  for (size_t k = timed.size(); k-- > 0;)
    last_same[k] = k + 1 < timed.size() && time_of(k + 1) == time_of(k) ? last_same[k + 1] : k;
  size_t group_first = 0;
  for (size_t k = 0; k < timed.size(); ++k) {
    if (k > 0 && time_of(k) != time_of(k - 1)) group_first = k;
    if (last_same[k] != k || group_first == 0) continue;
    const size_t window_start = std::min(k >= size_t(kRateWindow) ? k - kRateWindow : 0, group_first - 1);
    const size_t before = last_same[window_start];
    const double dt = time_of(k) - time_of(before);
    if (dt > 0) tokens_[timed[k]].rate = double(k - before) / dt;
  }
}

void ThinkingView::drawTimeline() {
  // The strip: one filled run per stretch of tokens of the same phase and origin, with a gap (NaN)
  // between runs, so a turn of thousands of tokens is a handful of polygons.
  QVector<QCPGraphData> strips[2][2];
  QVector<QCPGraphData> curve;
  curve.reserve(qsizetype(tokens_.size()));
  size_t run_start = 0;
  for (size_t i = 0; i <= tokens_.size(); ++i) {
    const bool boundary = i == tokens_.size() || (i > run_start && (tokens_[i].phase == kThinking) != (tokens_[run_start].phase == kThinking)) ||
                          (i > run_start && tokens_[i].forced != tokens_[run_start].forced);
    if (boundary && i > run_start) {
      const TimelineToken& first = tokens_[run_start];
      auto& strip = strips[first.phase == kThinking ? 0 : 1][first.forced ? 1 : 0];
      strip.append(QCPGraphData(double(run_start) - 0.5, 1.0));
      strip.append(QCPGraphData(double(i) - 0.5, 1.0));
      strip.append(QCPGraphData(double(i) - 0.5, kNaN));
      run_start = i;
    }
    if (i < tokens_.size()) curve.append(QCPGraphData(double(i), tokens_[i].thinking_so_far));
  }
  for (int p = 0; p < 2; ++p)
    for (int f = 0; f < 2; ++f) {
      QCPGraph* g = strip_[p][f];
      g->data()->set(strips[p][f], true);
      if (strips[p][f].isEmpty())
        g->removeFromLegend();
      else
        g->addToLegend();
    }
  thinking_curve_->data()->set(curve, true);

  const int n = int(tokens_.size());
  timeline_rect_->axis(QCPAxis::atBottom)->setRange(-0.5, std::max(n, 1) - 0.5);
  const double top = std::max({double(thinking_count_), double(budget_), 1.0}) * 1.12;
  timeline_rect_->axis(QCPAxis::atLeft)->setRange(-top * kStripRoom, top);

  budget_line_->setVisible(budget_ >= 0);
  budget_label_->setVisible(budget_ >= 0);
  if (budget_ >= 0) {
    budget_line_->point1->setCoords(0, budget_);
    budget_line_->point2->setCoords(1, budget_);
    budget_label_->position->setCoords(0.99, budget_);
    budget_label_->setText(tr("thinking budget %1").arg(budget_));
  }
}

void ThinkingView::drawStops() {
  for (QCPAbstractItem* item : stop_items_) plot_->removeItem(item);
  stop_items_.clear();
  stop_indices_.clear();
  if (shown_turn_ < 0) return;
  const ChatTurn& turn = (*data_.chat)[size_t(shown_turn_)];

  // Starts of the runs of injected tokens: where a stop goes when no token of the turn has its position.
  std::vector<int> forced_runs;
  for (size_t i = 0; i < tokens_.size(); ++i)
    if (tokens_[i].forced && (i == 0 || !tokens_[i - 1].forced)) forced_runs.push_back(int(i));

  for (size_t k = 0; k < turn.forced_stops.size(); ++k) {
    const inspect::ForcedStopRecord& stop = turn.forced_stops[k];
    int index = -1;
    for (size_t i = 0; i < tokens_.size() && index < 0; ++i)
      if (tokens_[i].position == stop.position) index = int(i);
    if (index < 0 && !forced_runs.empty()) index = forced_runs[std::min(k, forced_runs.size() - 1)];
    if (index < 0) continue;
    stop_indices_.append(index);

    // The marker sits on the left edge of the first injected token: the cut happens before it.
    auto* line = new QCPItemStraightLine(plot_);
    bindItem(line, timeline_rect_);
    line->point1->setCoords(index - 0.5, 0);
    line->point2->setCoords(index - 0.5, 1);
    auto* label = new QCPItemText(plot_);
    bindItem(label, timeline_rect_);
    label->position->setTypeY(QCPItemPosition::ptAxisRectRatio);
    label->position->setCoords(index - 0.5, 0.03 + 0.08 * double(k % 4));
    label->setPositionAlignment(Qt::AlignLeft | Qt::AlignTop);
    label->setPadding(QMargins(4, 0, 0, 0));
    label->setText(stop.budget >= 0 ? tr("cut by budget %1").arg(stop.budget) : tr("stopped by user"));
    stop_items_.push_back(line);
    stop_items_.push_back(label);
  }
  styleItems();
}

void ThinkingView::drawRate() {
  QVector<QCPGraphData> points[2];
  double first_answer_s = kNaN, last_s = 0, top = 0;
  bool any_thinking = false;
  for (const TimelineToken& t : tokens_) {
    if (!std::isfinite(t.time_s)) continue;
    last_s = std::max(last_s, t.time_s);
    if (t.phase == kThinking) any_thinking = true;
    if (t.phase != kThinking && !std::isfinite(first_answer_s)) first_answer_s = t.time_s;
    if (!std::isfinite(t.rate)) continue;
    points[t.phase == kThinking ? 0 : 1].append(QCPGraphData(t.time_s, t.rate));
    top = std::max(top, t.rate);
  }
  rate_samples_ = int(points[0].size() + points[1].size());
  for (int p = 0; p < 2; ++p) rate_graphs_[p]->data()->set(points[p], true);
  rate_rect_->axis(QCPAxis::atBottom)->setRange(0, last_s > 0 ? last_s * 1.02 : 1.0);
  rate_rect_->axis(QCPAxis::atLeft)->setRange(0, top > 0 ? top * 1.1 : 1.0);
  rate_note_->setVisible(rate_samples_ == 0);
  const bool mark_answer = any_thinking && std::isfinite(first_answer_s);
  thinking_end_line_->setVisible(mark_answer);
  if (mark_answer) {
    thinking_end_line_->point1->setCoords(first_answer_s, 0);
    thinking_end_line_->point2->setCoords(first_answer_s, 1);
  }
}

void ThinkingView::onSelectionChanged(qint64 row) {
  selected_index_ = -1;
  if (row >= 0)
    for (size_t i = 0; i < tokens_.size(); ++i)
      if (tokens_[i].row == row) {
        selected_index_ = int(i);
        break;
      }
  selection_line_->setVisible(selected_index_ >= 0);
  if (selected_index_ >= 0) {
    selection_line_->point1->setCoords(selected_index_, 0);
    selection_line_->point2->setCoords(selected_index_, 1);
  }
  plot_->replot(QCustomPlot::rpQueuedReplot);
}

void ThinkingView::updateCaption() {
  if (shown_turn_ < 0) {
    caption_->setText(tr("No turn yet: send a message in the chat to see its thinking here."));
    return;
  }
  const ChatTurn& turn = (*data_.chat)[size_t(shown_turn_)];
  QStringList parts;
  const int answer = int(tokens_.size()) - thinking_count_;
  if (thinking_count_ == 0 && !turn.thinking) {
    parts << tr("No thinking");
  } else {
    double thinking_s = turn.thinking_s;
    if (!(thinking_s > 0))
      for (const TimelineToken& t : tokens_)
        if (t.phase == kThinking && std::isfinite(t.time_s)) thinking_s = t.time_s;
    parts << (thinking_s > 0 ? tr("Thinking %1 tokens in %2").arg(thinking_count_).arg(formatSeconds(thinking_s))
                             : tr("Thinking %1 tokens").arg(thinking_count_));
  }
  parts << tr("answer %1 tokens").arg(answer);
  if (turn.thinking || thinking_count_ > 0) parts << (budget_ >= 0 ? tr("budget %1").arg(budget_) : tr("no budget"));
  int cuts = 0, user_stops = 0;
  for (const inspect::ForcedStopRecord& stop : turn.forced_stops) (stop.budget >= 0 ? cuts : user_stops) += 1;
  if (cuts == 1)
    parts << tr("cut once");
  else if (cuts == 2)
    parts << tr("cut twice");
  else if (cuts > 2)
    parts << tr("cut %1 times").arg(cuts);
  else if (budget_ >= 0 && user_stops == 0)
    parts << tr("not cut");
  if (user_stops > 0) parts << tr("stopped by user");
  if (!turn.finished) parts << tr("generating…");
  caption_->setText(parts.join(QStringLiteral(" · ")));
}

void ThinkingView::styleItems() {
  const QColor text = palette().color(QPalette::WindowText);
  const QColor thinking = phaseColor(kThinking), answer = phaseColor(kAnswer);
  const QColor colours[2] = {thinking, answer};
  for (int p = 0; p < 2; ++p) {
    strip_[p][0]->setPen(QPen(colours[p]));
    strip_[p][0]->setBrush(colours[p]);
    strip_[p][1]->setPen(QPen(colours[p]));
    strip_[p][1]->setBrush(QBrush(colours[p], Qt::BDiagPattern));
    QPen rate_pen(colours[p], 1.5);
    rate_graphs_[p]->setPen(rate_pen);
  }
  thinking_curve_->setPen(QPen(isDark(palette()) ? thinking.lighter(130) : thinking.darker(130), 2));
  const QColor budget_colour(0xc0, 0x39, 0x2b);
  budget_line_->setPen(QPen(budget_colour, 1.5, Qt::DashLine));
  budget_label_->setColor(budget_colour);
  QColor muted = text;
  muted.setAlphaF(0.6f);
  thinking_end_line_->setPen(QPen(muted, 1, Qt::DotLine));
  rate_note_->setColor(muted);
  selection_line_->setPen(QPen(palette().color(QPalette::Highlight), 2));
  for (QCPAbstractItem* item : stop_items_) {
    if (auto* line = qobject_cast<QCPItemStraightLine*>(item)) line->setPen(QPen(text, 1.5));
    if (auto* label = qobject_cast<QCPItemText*>(item)) label->setColor(text);
  }
}

// The token under the mouse: on the timeline by index, on the speed plot the first token at or after
// the time under the mouse.
int ThinkingView::tokenAt(const QPoint& pos) const {
  if (tokens_.empty()) return -1;
  if (timeline_rect_->rect().contains(pos)) {
    const int i = int(std::lround(timeline_rect_->axis(QCPAxis::atBottom)->pixelToCoord(pos.x())));
    return i >= 0 && i < int(tokens_.size()) ? i : -1;
  }
  if (rate_rect_->rect().contains(pos) && rate_samples_ > 0) {
    const double t = rate_rect_->axis(QCPAxis::atBottom)->pixelToCoord(pos.x());
    int best = -1;
    double best_d = std::numeric_limits<double>::infinity();
    for (size_t i = 0; i < tokens_.size(); ++i) {
      const double d = std::abs(tokens_[i].time_s - t);
      if (std::isfinite(tokens_[i].time_s) && d < best_d) best = int(i), best_d = d;
    }
    return best;
  }
  return -1;
}

void ThinkingView::onPlotClick(QMouseEvent* event) {
  if (event->button() != Qt::LeftButton || !selection_) return;
  const int i = tokenAt(event->pos());
  if (i >= 0 && tokens_[size_t(i)].row >= 0) selection_->setRow(tokens_[size_t(i)].row);
}

void ThinkingView::onPlotHover(QMouseEvent* event) {
  const int i = tokenAt(event->pos());
  if (i < 0) {
    QToolTip::hideText();
    return;
  }
  const TimelineToken& t = tokens_[size_t(i)];
  QString tip = tr("Token %1 · %2%3").arg(i).arg(phaseLabel(t.phase), t.forced ? tr(" · injected") : QString());
  if (t.row >= 0) tip += tr(" · row %1 · “%2”").arg(t.row).arg(visibleToken(data_.text_of(t.row)));
  tip += tr("\n%1 thinking tokens so far").arg(t.thinking_so_far);
  if (std::isfinite(t.time_s)) tip += tr(" · at %1").arg(formatSeconds(t.time_s));
  if (std::isfinite(t.rate)) tip += tr(" · %1 tokens/s").arg(t.rate, 0, 'f', 1);
  QToolTip::showText(event->globalPosition().toPoint(), tip, plot_);
}

}  // namespace moe::views
