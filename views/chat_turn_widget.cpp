#include "views/chat_turn_widget.h"

#include <QAbstractTextDocumentLayout>
#include <QHelpEvent>
#include <QLabel>
#include <QToolButton>
#include <QToolTip>
#include <QVBoxLayout>
#include <cmath>

#include "views/plot_style.h"

namespace moe::views {

namespace {

// Black or white, whichever reads better on `background` (expert colours range from yellow to blue).
QColor readableOn(const QColor& background) {
  const double luma = 0.299 * background.redF() + 0.587 * background.greenF() + 0.114 * background.blueF();
  return luma > 0.6 ? QColor(Qt::black) : QColor(Qt::white);
}

QString stopReasonText(const std::string& reason) {
  if (reason == "eos") return ChatTurnWidget::tr("finished");
  if (reason == "max_tokens") return ChatTurnWidget::tr("stopped at the token limit");
  if (reason == "stopped") return ChatTurnWidget::tr("stopped by you");
  if (reason == "context_full") return ChatTurnWidget::tr("stopped: the context is full");
  if (reason.empty()) return ChatTurnWidget::tr("finished");
  return ChatTurnWidget::tr("failed: %1").arg(QString::fromStdString(reason));
}

QString tokensText(qsizetype n) {
  return n == 1 ? ChatTurnWidget::tr("1 token") : ChatTurnWidget::tr("%1 tokens").arg(n);
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// StreamedTokenText

StreamedTokenText::StreamedTokenText(QWidget* parent)
    : QTextBrowser(parent), decoder_(QStringDecoder::Utf8, QStringConverter::Flag::ConvertInitialBom) {
  setOpenLinks(false);
  setOpenExternalLinks(false);
  setFrameShape(QFrame::NoFrame);
  setVerticalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
  setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
  setSizePolicy(QSizePolicy::Expanding, QSizePolicy::Fixed);
  document()->setUndoRedoEnabled(false);  // an undo record per token would only cost memory
  end_ = QTextCursor(document());
  connect(document()->documentLayout(), &QAbstractTextDocumentLayout::documentSizeChanged, this,
          &StreamedTokenText::fitHeightToDocument);
  connect(this, &QTextBrowser::anchorClicked, this, [this](const QUrl& url) {
    if (url.scheme() == QLatin1String("row")) emit rowClicked(url.path().toLongLong());
  });
  fitHeightToDocument();
}

void StreamedTokenText::beginAppend() { end_.beginEditBlock(); }
void StreamedTokenText::endAppend() { end_.endEditBlock(); }

StreamedTokenText::Range StreamedTokenText::append(const std::string& piece, const QTextCharFormat& format) {
  const QString text = decoder_.decode(QByteArrayView(piece.data(), qsizetype(piece.size())));
  Range range;
  range.start = end_.position();
  if (!text.isEmpty()) end_.insertText(text, format);
  range.end = end_.position();
  return range;
}

void StreamedTokenText::setFormat(Range range, const QTextCharFormat& format) {
  if (range.end <= range.start) return;
  QTextCursor cursor(document());
  cursor.setPosition(range.start);
  cursor.setPosition(range.end, QTextCursor::KeepAnchor);
  cursor.setCharFormat(format);
}

std::optional<QTextCharFormat> StreamedTokenText::formatAt(Range range) const {
  for (int position = range.start; position < range.end; ++position) {
    if (document()->characterAt(position) == QChar::ParagraphSeparator) continue;
    QTextCursor cursor(document());
    cursor.setPosition(position);
    cursor.setPosition(position + 1, QTextCursor::KeepAnchor);
    return cursor.charFormat();
  }
  return std::nullopt;
}

void StreamedTokenText::setHighlight(std::optional<Range> range) {
  QList<QTextEdit::ExtraSelection> selections;
  if (range && range->end > range->start) {
    // The selection colour covers an expert colour too: which token is selected matters more here, and
    // its experts are in the tooltip and the token inspector.
    QTextEdit::ExtraSelection selection;
    selection.cursor = QTextCursor(document());
    selection.cursor.setPosition(range->start);
    selection.cursor.setPosition(range->end, QTextCursor::KeepAnchor);
    selection.format.setBackground(palette().color(QPalette::Highlight));
    selection.format.setForeground(palette().color(QPalette::HighlightedText));
    selections.push_back(selection);
  }
  setExtraSelections(selections);
}

QRect StreamedTokenText::rectOf(Range range) const {
  QTextCursor cursor(document());
  cursor.setPosition(range.start);
  QRect rect = cursorRect(cursor);
  cursor.setPosition(range.end);
  rect = rect.united(cursorRect(cursor));
  return rect.translated(viewport()->mapTo(this, QPoint(0, 0)));
}

bool StreamedTokenText::viewportEvent(QEvent* event) {
  if (event->type() == QEvent::ToolTip && row_tooltip_) {
    auto* help = static_cast<QHelpEvent*>(event);
    const QString href = anchorAt(help->pos());
    if (href.startsWith(QLatin1String("row:"))) {
      const QString tip = row_tooltip_(href.mid(4).toLongLong());
      if (!tip.isEmpty()) {
        QToolTip::showText(help->globalPos(), tip, viewport());
        return true;
      }
    }
    QToolTip::hideText();
    return true;
  }
  return QTextBrowser::viewportEvent(event);
}

void StreamedTokenText::fitHeightToDocument() {
  const QMargins margins = contentsMargins();
  const int height = int(std::ceil(document()->size().height())) + 2 * frameWidth() + margins.top() + margins.bottom();
  if (height != this->height()) setFixedHeight(height);
}

// ---------------------------------------------------------------------------------------------------
// ChatTurnWidget

ChatTurnWidget::ChatTurnWidget(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 6, 0, 10);
  layout->setSpacing(3);

  user_label_ = new QLabel(tr("You"), this);
  user_label_->setStyleSheet(QStringLiteral("font-weight: bold; color: %1;").arg(phaseColor(int(Phase::User)).name()));
  user_message_ = new QLabel(this);
  user_message_->setTextFormat(Qt::PlainText);
  user_message_->setWordWrap(true);
  user_message_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  user_message_->setBackgroundRole(QPalette::AlternateBase);
  user_message_->setAutoFillBackground(true);
  user_message_->setMargin(6);

  reply_label_ = new QLabel(tr("Model"), this);
  reply_label_->setStyleSheet(
      QStringLiteral("font-weight: bold; color: %1;").arg(phaseColor(int(Phase::Answer)).name()));

  thinking_header_ = new QToolButton(this);
  thinking_header_->setAutoRaise(true);
  thinking_header_->setToolButtonStyle(Qt::ToolButtonTextBesideIcon);
  thinking_header_->setStyleSheet(QStringLiteral("color: %1;").arg(phaseColor(int(Phase::Thinking)).name()));
  thinking_header_->setVisible(false);
  connect(thinking_header_, &QToolButton::clicked, this, [this] { setThinkingCollapsed(!thinking_collapsed_); });

  thinking_ = new StreamedTokenText(this);
  thinking_->setContentsMargins(18, 0, 0, 0);  // indented under its header, apart from the answer
  thinking_->setVisible(false);
  answer_ = new StreamedTokenText(this);

  footer_ = new QLabel(this);
  footer_->setForegroundRole(QPalette::PlaceholderText);
  QFont small = footer_->font();
  small.setPointSizeF(small.pointSizeF() * 0.85);
  footer_->setFont(small);

  layout->addWidget(user_label_);
  layout->addWidget(user_message_);
  layout->addWidget(reply_label_);
  layout->addWidget(thinking_header_, 0, Qt::AlignLeft);
  layout->addWidget(thinking_);
  layout->addWidget(answer_);
  layout->addWidget(footer_);

  for (StreamedTokenText* text : {thinking_, answer_})
    connect(text, &StreamedTokenText::rowClicked, this, &ChatTurnWidget::rowClicked);
  applyCollapsed();
}

void ChatTurnWidget::setRowTooltip(std::function<QString(qint64)> tooltip) {
  thinking_->setRowTooltip(tooltip);
  answer_->setRowTooltip(std::move(tooltip));
}

QTextCharFormat ChatTurnWidget::formatOf(const ShownToken& token, const WorkbenchData& data,
                                         const TokenColouring& colouring) const {
  QTextCharFormat format;
  if (token.row >= 0) {
    format.setAnchor(true);
    format.setAnchorHref(QStringLiteral("row:%1").arg(token.row));
  }
  const inspect::Trace& trace = *data.trace;
  QColor foreground = palette().color(QPalette::Text);
  bool set_foreground = false;
  const int moe = trace.n_moe(), k = trace.top_k;
  if (colouring.by_expert && token.row >= 0 && token.row < trace.size() && colouring.moe_ordinal >= 0 &&
      colouring.moe_ordinal < moe && k > 0 && size_t(token.row) < trace.has_routing.size() &&
      trace.has_routing[size_t(token.row)]) {
    const size_t at = (size_t(token.row) * size_t(moe) + size_t(colouring.moe_ordinal)) * size_t(k);
    const int expert = at < trace.expert_ids.size() ? trace.expert_ids[at] : -1;
    if (expert >= 0) {
      const QColor background = expertColor(expert);
      format.setBackground(background);
      foreground = readableOn(background);
      set_foreground = true;
    }
  }
  if (token.forced) {
    // Injected text (the budget's early-stop words) must not read as the model's own: italic, and dimmed
    // or, on an expert colour where dimmed text would not read, underlined with dots.
    format.setFontItalic(true);
    if (set_foreground) {
      format.setUnderlineStyle(QTextCharFormat::DotLine);
      format.setUnderlineColor(foreground);
    } else {
      foreground.setAlphaF(0.55f);
      set_foreground = true;
    }
  }
  if (set_foreground) format.setForeground(foreground);
  return format;
}

bool ChatTurnWidget::showTurn(const ChatTurn& turn, const WorkbenchData& data, const TokenColouring& colouring) {
  if (started_) {
    if (turn.user_text != user_text_ || turn.tokens.size() < tokens_.size()) return false;
    if (!tokens_.empty() && turn.tokens[tokens_.size() - 1].id != tokens_.back().id) return false;
  } else {
    started_ = true;
    user_text_ = turn.user_text;
    user_message_->setText(QString::fromStdString(turn.user_text));
    reply_label_->setText(turn.mode.empty() ? tr("Model")
                                            : tr("Model · %1 mode").arg(QString::fromStdString(turn.mode)));
  }

  const int64_t trace_rows = data.trace->size();
  auto noteThinkingRow = [this](qint64 row) {
    if (row < 0) return;
    if (first_thinking_row_ < 0 || row < first_thinking_row_) first_thinking_row_ = row;
    last_thinking_row_ = std::max(last_thinking_row_, row);
  };

  // Tokens that had no trace row yet (or whose row was not in the trace) get their link and colour now.
  for (size_t k = 0; k < unsettled_.size();) {
    const int index = unsettled_[k];
    ShownToken& token = tokens_[size_t(index)];
    const ChatToken& source = turn.tokens[size_t(index)];
    const bool row_changed = source.row != token.row;
    token.row = source.row;
    token.settled = token.row >= 0 && token.row < trace_rows;
    if (row_changed || token.settled) {
      token.text->setFormat(token.range, formatOf(token, data, colouring));
      if (source.phase == Phase::Thinking) noteThinkingRow(token.row);
      if (selected_row_ >= 0 && token.row == selected_row_) setSelectedRow(selected_row_);
    }
    if (token.settled) {
      unsettled_[k] = unsettled_.back();
      unsettled_.pop_back();
    } else {
      ++k;
    }
  }

  if (turn.tokens.size() > tokens_.size()) {
    bool selected_arrived = false;
    thinking_->beginAppend();
    answer_->beginAppend();
    for (size_t i = tokens_.size(); i < turn.tokens.size(); ++i) {
      const ChatToken& source = turn.tokens[i];
      ShownToken token;
      token.id = source.id;
      token.row = source.row;
      token.forced = source.forced;
      token.settled = source.row >= 0 && source.row < trace_rows;
      const bool thinking = source.phase == Phase::Thinking;
      token.text = thinking ? thinking_ : answer_;
      token.range = token.text->append(source.piece, formatOf(token, data, colouring));
      if (thinking) {
        ++thinking_count_;
        last_thinking_elapsed_s_ = source.elapsed_s;
        noteThinkingRow(source.row);
      } else {
        has_answer_ = true;
      }
      if (!token.settled) unsettled_.push_back(int(i));
      if (selected_row_ >= 0 && source.row == selected_row_) selected_arrived = true;
      tokens_.push_back(token);
    }
    thinking_->endAppend();
    answer_->endAppend();
    if (selected_arrived) setSelectedRow(selected_row_);
  }

  refreshHeaders(turn, data);
  return true;
}

void ChatTurnWidget::refreshHeaders(const ChatTurn& turn, const WorkbenchData& data) {
  if (thinking_count_ > 0) {
    const bool still_thinking = !turn.finished && !has_answer_;
    QString header = still_thinking ? tr("Thinking…") : tr("Thinking");
    header += QStringLiteral(" · ") + tokensText(thinking_count_);
    if (turn.thinking_budget >= 0) header += tr(" / budget %1").arg(turn.thinking_budget);

    // How long it thought: the turn's own clock when the app has it, else the trace's step times.
    double seconds = turn.thinking_s;
    const inspect::Trace& trace = *data.trace;
    if (seconds <= 0 && first_thinking_row_ >= 0 && last_thinking_row_ < trace.size() &&
        size_t(last_thinking_row_) < trace.step.size()) {
      const int first_step = trace.step[size_t(first_thinking_row_)];
      const int last_step = trace.step[size_t(last_thinking_row_)];
      if (last_step >= 0 && size_t(last_step) < trace.step_end_s.size() && first_step >= 0) {
        const double begin = first_step > 0 ? trace.step_end_s[size_t(first_step - 1)] : 0.0;
        seconds = trace.step_end_s[size_t(last_step)] - begin;
      }
    }
    if (seconds <= 0) seconds = last_thinking_elapsed_s_;
    if (seconds >= 1)
      header += tr(" · %1 s").arg(seconds, 0, 'f', 1);
    else if (seconds > 0)
      header += tr(" · %1 ms").arg(seconds * 1000, 0, 'f', 0);  // the demo model thinks in milliseconds

    QString tooltip = tr("What the model wrote inside <think>…</think> before answering. Click to show or hide it.");
    forced_stop_in_header_ = !turn.forced_stops.empty();
    if (forced_stop_in_header_) {
      const inspect::ForcedStopRecord& stop = turn.forced_stops.back();
      header += stop.budget < 0 ? tr(" · stopped by you") : tr(" · cut by the budget");
      tooltip += QStringLiteral("\n\n");
      tooltip += stop.budget < 0
                     ? tr("You stopped the thinking after %1 tokens (at position %2).").arg(stop.thinking_tokens).arg(stop.position)
                     : tr("The budget of %1 tokens cut the thinking after %2 tokens (at position %3).")
                           .arg(stop.budget)
                           .arg(stop.thinking_tokens)
                           .arg(stop.position);
      tooltip += QLatin1Char(' ') +
                 tr("The italic, dimmed text from there on was injected by the runtime to close the thinking; "
                    "the model did not write it.");
    }
    if (header != thinking_header_->text()) thinking_header_->setText(header);
    if (tooltip != thinking_header_->toolTip()) thinking_header_->setToolTip(tooltip);
  }
  if (!user_toggled_) thinking_collapsed_ = has_answer_ || turn.finished;
  applyCollapsed();

  QString footer;
  QString footer_tip;
  if (turn.finished) {
    footer = stopReasonText(turn.stop_reason) + QStringLiteral(" · ") + tokensText(qsizetype(turn.tokens.size()));
    if (turn.time_to_first_token_s > 0) footer += tr(" · first token after %1 s").arg(turn.time_to_first_token_s, 0, 'f', 2);
    if (turn.decode_s > 0) footer += tr(" · %1 tokens/s").arg(double(turn.tokens.size()) / turn.decode_s, 0, 'f', 1);
    footer_tip = tr("Prompt: %1 tokens, %2 of them reused from the cache; prefill %3 s, generation %4 s.")
                     .arg(turn.prompt_tokens)
                     .arg(turn.reused_tokens)
                     .arg(turn.prefill_s, 0, 'f', 3)
                     .arg(turn.decode_s, 0, 'f', 3);
  } else {
    footer = tr("writing… · ") + tokensText(qsizetype(turn.tokens.size()));
  }
  if (footer != footer_->text()) footer_->setText(footer);
  if (footer_tip != footer_->toolTip()) footer_->setToolTip(footer_tip);
}

void ChatTurnWidget::restyle(const WorkbenchData& data, const TokenColouring& colouring) {
  thinking_->beginAppend();
  answer_->beginAppend();
  for (const ShownToken& token : tokens_) token.text->setFormat(token.range, formatOf(token, data, colouring));
  thinking_->endAppend();
  answer_->endAppend();
  if (selected_index_ >= 0) setSelectedRow(selected_row_);
}

bool ChatTurnWidget::setSelectedRow(qint64 row) {
  selected_row_ = row;
  int found = -1;
  if (row >= 0)
    for (int i = 0; i < int(tokens_.size()); ++i)
      if (tokens_[size_t(i)].row == row) {
        found = i;
        break;
      }
  selected_index_ = found;
  for (StreamedTokenText* text : {thinking_, answer_}) {
    if (found >= 0 && tokens_[size_t(found)].text == text)
      text->setHighlight(tokens_[size_t(found)].range);
    else
      text->setHighlight(std::nullopt);
  }
  return found >= 0;
}

QRect ChatTurnWidget::revealRow(qint64 row) {
  for (const ShownToken& token : tokens_) {
    if (token.row != row) continue;
    if (token.text == thinking_ && thinking_collapsed_) setThinkingCollapsed(false);
    layout()->activate();  // the block just opened must have its size before we ask where the token is
    const QRect rect = token.text->rectOf(token.range);
    return rect.translated(token.text->mapTo(this, QPoint(0, 0)));
  }
  return {};
}

void ChatTurnWidget::setThinkingCollapsed(bool collapsed) {
  user_toggled_ = true;
  thinking_collapsed_ = collapsed;
  applyCollapsed();
}

void ChatTurnWidget::applyCollapsed() {
  const bool has_thinking = thinking_count_ > 0;
  thinking_header_->setVisible(has_thinking);
  thinking_header_->setArrowType(thinking_collapsed_ ? Qt::RightArrow : Qt::DownArrow);
  thinking_->setVisible(has_thinking && !thinking_collapsed_);
  answer_->setVisible(has_answer_ || !has_thinking);
}

QString ChatTurnWidget::userText() const { return user_message_->text(); }
QString ChatTurnWidget::thinkingText() const { return thinking_->toPlainText(); }
QString ChatTurnWidget::answerText() const { return answer_->toPlainText(); }
QString ChatTurnWidget::thinkingHeader() const { return thinking_count_ > 0 ? thinking_header_->text() : QString(); }

QColor ChatTurnWidget::tokenBackground(int token_index) const {
  if (token_index < 0 || token_index >= int(tokens_.size())) return {};
  const ShownToken& token = tokens_[size_t(token_index)];
  const auto format = token.text->formatAt(token.range);
  if (!format || format->background().style() == Qt::NoBrush) return {};
  return format->background().color();
}

bool ChatTurnWidget::forcedStopShown() const {
  if (!forced_stop_in_header_) return false;
  for (const ShownToken& token : tokens_) {
    if (!token.forced) continue;
    if (const auto format = token.text->formatAt(token.range)) return format->fontItalic();
  }
  return false;
}

}  // namespace moe::views
