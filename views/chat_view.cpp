#include "views/chat_view.h"

#include <QCheckBox>
#include <QEvent>
#include <QHBoxLayout>
#include <QLabel>
#include <QScrollArea>
#include <QScrollBar>
#include <QSpinBox>
#include <QTimer>
#include <QVBoxLayout>

#include "views/plot_style.h"

namespace moe::views {

namespace {

// Up to this many experts the header bar shows a colour key; beyond it the key would not fit.
constexpr int kLegendMaxExperts = 32;

QString expertsAndWeights(const inspect::Trace& trace, int64_t row, int moe_ordinal) {
  QStringList parts;
  const size_t at = (size_t(row) * size_t(trace.n_moe()) + size_t(moe_ordinal)) * size_t(trace.top_k);
  for (int k = 0; k < trace.top_k && at + size_t(k) < trace.expert_ids.size(); ++k) {
    const int expert = trace.expert_ids[at + size_t(k)];
    if (expert < 0) continue;
    parts << QStringLiteral("E%1 %2").arg(expert).arg(trace.expert_weights[at + size_t(k)], 0, 'f', 2);
  }
  return parts.join(QStringLiteral(", "));
}

}  // namespace

ChatView::ChatView(TokenSelection* selection, QWidget* parent) : QWidget(parent), selection_(selection) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  layout->setSpacing(0);

  auto* bar = new QWidget(this);
  auto* bar_rows = new QVBoxLayout(bar);
  bar_rows->setContentsMargins(0, 0, 0, 0);
  bar_rows->setSpacing(0);
  auto* bar_layout = new QHBoxLayout;
  bar_rows->addLayout(bar_layout);
  bar_layout->setContentsMargins(6, 4, 6, 4);
  colour_check_ = new QCheckBox(tr("Colour tokens by expert"), bar);
  colour_check_->setToolTip(
      tr("Paint each generated token with the colour of the expert the router chose first for it, at the MoE "
         "layer on the right (as in the Mixtral paper's figure). Tokens that were not routed stay plain."));
  layer_spin_ = new QSpinBox(bar);
  layer_spin_->setPrefix(tr("MoE layer "));
  layer_spin_->setRange(0, 0);
  legend_ = new QLabel(bar);
  legend_->setTextFormat(Qt::RichText);
  legend_->setWordWrap(true);  // the colour key must not make the chat wider than its dock
  legend_->setContentsMargins(6, 0, 6, 4);
  legend_->setVisible(false);
  bar_layout->addWidget(colour_check_);
  bar_layout->addWidget(layer_spin_);
  bar_layout->addStretch(1);
  bar_rows->addWidget(legend_);
  layout->addWidget(bar);

  scroll_ = new QScrollArea(this);
  scroll_->setWidgetResizable(true);
  scroll_->setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
  page_ = new QWidget(scroll_);
  page_->setBackgroundRole(QPalette::Base);
  page_->setAutoFillBackground(true);
  page_layout_ = new QVBoxLayout(page_);
  page_layout_->setContentsMargins(10, 6, 10, 6);
  empty_label_ = new QLabel(tr("The conversation appears here: send a message and the model's reply streams in "
                               "token by token. Click any token of a reply to inspect it."),
                            page_);
  empty_label_->setWordWrap(true);
  empty_label_->setForegroundRole(QPalette::PlaceholderText);
  page_layout_->addWidget(empty_label_);
  page_layout_->addStretch(1);
  scroll_->setWidget(page_);
  layout->addWidget(scroll_, 1);

  // Keep the newest text in view while it streams, unless the user scrolled away from the bottom.
  QScrollBar* bar_v = scroll_->verticalScrollBar();
  connect(bar_v, &QScrollBar::rangeChanged, this, [this, bar_v](int, int max) {
    if (follow_bottom_) bar_v->setValue(max);
  });
  connect(bar_v, &QScrollBar::valueChanged, this,
          [this, bar_v](int value) { follow_bottom_ = value >= bar_v->maximum() - 8; });

  connect(colour_check_, &QCheckBox::toggled, this, &ChatView::setColourByExpert);
  connect(layer_spin_, &QSpinBox::valueChanged, this, &ChatView::setColourLayer);
  if (selection_) connect(selection_, &TokenSelection::rowChanged, this, &ChatView::showSelection);
  updateColourControls();
}

void ChatView::setData(const WorkbenchData& data) {
  data_ = data;
  if (!isVisible()) {
    dirty_ = true;
    return;
  }
  sync();
}

void ChatView::showEvent(QShowEvent* event) {
  QWidget::showEvent(event);
  if (dirty_) sync();
}

void ChatView::changeEvent(QEvent* event) {
  QWidget::changeEvent(event);
  if (event->type() == QEvent::PaletteChange) restyleAll();  // forced tokens are dimmed from the palette's text colour
}

void ChatView::bringUpToDate() const {
  // The accessors report what the user would see once the view is shown.
  if (dirty_) const_cast<ChatView*>(this)->sync();
}

ChatTurnWidget* ChatView::addTurnWidget(int index) {
  auto* turn = new ChatTurnWidget(page_);
  connect(turn, &ChatTurnWidget::rowClicked, this, &ChatView::activateRow);
  turn->setRowTooltip([this](qint64 row) { return tokenTooltip(row); });
  page_layout_->insertWidget(1 + index, turn);  // after the empty-chat label, before the stretch
  turn->show();  // now, not on the layout's queued show: its size is needed to scroll to it at once
  if (selection_ && selection_->row() >= 0) turn->setSelectedRow(selection_->row());
  return turn;
}

void ChatView::sync() {
  dirty_ = false;
  updateColourControls();
  const std::vector<ChatTurn>& chat = *data_.chat;
  if (chat.size() < turns_.size()) {
    for (ChatTurnWidget* turn : turns_) delete turn;
    turns_.clear();
    ++rebuilds_;
  }
  for (size_t i = 0; i < chat.size(); ++i) {
    if (i == turns_.size()) turns_.push_back(addTurnWidget(int(i)));
    if (!turns_[i]->showTurn(chat[i], data_, colouring_)) {
      delete turns_[i];
      turns_[i] = addTurnWidget(int(i));
      turns_[i]->showTurn(chat[i], data_, colouring_);
      ++rebuilds_;
    }
  }
  empty_label_->setVisible(chat.empty());
}

void ChatView::updateColourControls() {
  const inspect::Trace& trace = *data_.trace;
  const int moe = trace.n_moe();
  const bool routed = moe > 0 && trace.top_k > 0;
  colour_check_->setEnabled(routed);
  layer_spin_->setEnabled(routed);
  if (layer_spin_->maximum() != std::max(0, moe - 1)) {
    const QSignalBlocker block(layer_spin_);
    layer_spin_->setRange(0, std::max(0, moe - 1));
    layer_spin_->setValue(std::clamp(colouring_.moe_ordinal, 0, std::max(0, moe - 1)));
    colouring_.moe_ordinal = layer_spin_->value();  // another model may have fewer MoE layers
  }
  const int ordinal = layer_spin_->value();
  const int layer = ordinal < moe ? trace.moe_layers[size_t(ordinal)] : ordinal;
  layer_spin_->setToolTip(routed ? tr("Which MoE layer's routing colours the tokens: MoE layer %1 is layer %2 of the model.")
                                       .arg(ordinal)
                                       .arg(layer)
                                 : tr("This trace has no routing (a dense model, or the hook level was off)."));

  QString legend;
  if (colouring_.by_expert && routed) {
    legend = tr("background = first-choice expert at layer %1").arg(layer);
    if (trace.n_experts <= kLegendMaxExperts) {
      legend += QStringLiteral(": ");
      for (int e = 0; e < trace.n_experts; ++e) {
        const QColor colour = expertColor(e);
        const double luma = 0.299 * colour.redF() + 0.587 * colour.greenF() + 0.114 * colour.blueF();
        legend += QStringLiteral("<span style=\"background:%1; color:%2\">&nbsp;%3&nbsp;</span> ")
                      .arg(colour.name(), luma > 0.6 ? QStringLiteral("black") : QStringLiteral("white"))
                      .arg(e);
      }
    }
  }
  if (legend != legend_->text()) legend_->setText(legend);
  legend_->setVisible(!legend.isEmpty());
}

void ChatView::setColourByExpert(bool on) {
  if (colour_check_->isChecked() != on) {
    const QSignalBlocker block(colour_check_);
    colour_check_->setChecked(on);
  }
  if (colouring_.by_expert == on) return;
  colouring_.by_expert = on;
  updateColourControls();
  restyleAll();
}

void ChatView::setColourLayer(int moe_ordinal) {
  const int moe = data_.trace->n_moe();
  if (moe > 0) moe_ordinal = std::clamp(moe_ordinal, 0, moe - 1);
  if (layer_spin_->value() != moe_ordinal) {
    const QSignalBlocker block(layer_spin_);
    layer_spin_->setValue(moe_ordinal);
  }
  if (colouring_.moe_ordinal == moe_ordinal) return;
  colouring_.moe_ordinal = moe_ordinal;
  updateColourControls();
  if (colouring_.by_expert) restyleAll();
}

void ChatView::restyleAll() {
  bringUpToDate();
  for (ChatTurnWidget* turn : turns_) turn->restyle(data_, colouring_);
}

void ChatView::activateRow(qint64 row) {
  if (row < 0) return;
  if (selection_) selection_->setRow(row);
  emit tokenActivated(row);
}

void ChatView::showSelection(qint64 row) {
  for (ChatTurnWidget* turn : turns_) {
    if (!turn->setSelectedRow(row)) continue;
    const QRect rect = turn->revealRow(row);
    if (rect.isNull()) continue;
    // The thinking block may just have opened: let the page take its new height before scrolling.
    page_layout_->activate();
    const QPoint centre = rect.translated(turn->mapTo(page_, QPoint(0, 0))).center();
    scroll_->ensureVisible(centre.x(), centre.y(), 20, 40);
    QTimer::singleShot(0, this, [this, turn, row] {
      if (std::find(turns_.begin(), turns_.end(), turn) == turns_.end()) return;
      const QRect later = turn->revealRow(row);
      if (later.isNull()) return;
      const QPoint at = later.translated(turn->mapTo(page_, QPoint(0, 0))).center();
      scroll_->ensureVisible(at.x(), at.y(), 20, 40);
    });
  }
}

QString ChatView::tokenTooltip(qint64 row) const {
  const inspect::Trace& trace = *data_.trace;
  if (row < 0 || row >= trace.size()) return {};
  const size_t r = size_t(row);
  const Phase phase = Phase(trace.phases[r]);
  QString tip = tr("Row %1 · position %2 · token id %3 · %4")
                    .arg(row)
                    .arg(trace.positions[r])
                    .arg(trace.tokens[r])
                    .arg(QString::fromLatin1(phase_name(phase)));
  if (trace.forced[r]) tip += QLatin1Char('\n') + tr("Injected by the runtime (the thinking budget), not written by the model.");
  const int moe = trace.n_moe();
  if (moe > 0 && trace.top_k > 0 && r < trace.has_routing.size() && trace.has_routing[r]) {
    // All layers while they fit in a tooltip; the token inspector lists every layer of a big model.
    const bool all = moe <= 8;
    for (int m = 0; m < moe; ++m) {
      if (!all && m != colouring_.moe_ordinal) continue;
      tip += QLatin1Char('\n') +
             tr("Layer %1: %2 · router entropy %3")
                 .arg(trace.moe_layers[size_t(m)])
                 .arg(expertsAndWeights(trace, row, m))
                 .arg(trace.router_entropy[r * size_t(moe) + size_t(m)], 0, 'f', 2);
    }
  } else {
    tip += QLatin1Char('\n') + tr("No routing recorded for this token (hook level off).");
  }
  tip += QLatin1Char('\n') + tr("Click to inspect this token in every view.");
  return tip;
}

const ChatTurnWidget* ChatView::turnAt(int turn) const {
  bringUpToDate();
  return turn >= 0 && turn < int(turns_.size()) ? turns_[size_t(turn)] : nullptr;
}

int ChatView::turnCount() const {
  bringUpToDate();
  return int(turns_.size());
}

QString ChatView::userText(int turn) const {
  const ChatTurnWidget* t = turnAt(turn);
  return t ? t->userText() : QString();
}

QString ChatView::thinkingText(int turn) const {
  const ChatTurnWidget* t = turnAt(turn);
  return t ? t->thinkingText() : QString();
}

QString ChatView::answerText(int turn) const {
  const ChatTurnWidget* t = turnAt(turn);
  return t ? t->answerText() : QString();
}

QString ChatView::thinkingHeader(int turn) const {
  const ChatTurnWidget* t = turnAt(turn);
  return t ? t->thinkingHeader() : QString();
}

bool ChatView::isThinkingCollapsed(int turn) const {
  const ChatTurnWidget* t = turnAt(turn);
  return t && t->isThinkingCollapsed();
}

void ChatView::setThinkingCollapsed(int turn, bool collapsed) {
  bringUpToDate();
  if (turn >= 0 && turn < int(turns_.size())) turns_[size_t(turn)]->setThinkingCollapsed(collapsed);
}

QColor ChatView::tokenBackground(int turn, int token_index) const {
  const ChatTurnWidget* t = turnAt(turn);
  return t ? t->tokenBackground(token_index) : QColor();
}

bool ChatView::forcedStopShown(int turn) const {
  const ChatTurnWidget* t = turnAt(turn);
  return t && t->forcedStopShown();
}

int ChatView::rebuildCount() const {
  bringUpToDate();
  return rebuilds_;
}

}  // namespace moe::views
