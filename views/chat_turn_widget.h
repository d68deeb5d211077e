#pragma once
// One exchange of the chat as the user sees it: their message, then the model's reply streamed token by
// token — the thinking block (collapsible, with its budget and whether the budget cut it) above the
// answer. Tokens are appended as they arrive and never re-laid out from scratch, so a reply of a few
// thousand tokens streams at the engine's pace; each token is a link to its trace row.
#include <QStringDecoder>
#include <QTextBrowser>
#include <QWidget>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "views/workbench_data.h"

class QLabel;
class QToolButton;

namespace moe::views {

// How generated tokens are painted (the chat's "colour tokens by expert" bar).
struct TokenColouring {
  bool by_expert = false;
  int moe_ordinal = 0;  // which MoE layer's first-choice expert gives the colour
};

// A run of streamed tokens (the thinking or the answer of one turn) in a text browser that grows to fit
// its text, so the chat scrolls as one page. Pieces are raw bytes that may split a UTF-8 character; a
// stateful decoder joins them, and the character lands in the token whose piece completes it.
class StreamedTokenText : public QTextBrowser {
  Q_OBJECT
 public:
  // Characters [start, end) of the document that show one token (empty while a character is incomplete).
  struct Range {
    int start = 0, end = 0;
  };

  explicit StreamedTokenText(QWidget* parent = nullptr);

  // Appends tokens; bracket a batch with begin/end so the document is laid out once per batch.
  void beginAppend();
  Range append(const std::string& piece, const QTextCharFormat& format);
  void endAppend();

  void setFormat(Range range, const QTextCharFormat& format);
  // The format the token's first visible character is drawn with (none when the token shows no
  // character, or only line breaks, which carry no background).
  std::optional<QTextCharFormat> formatAt(Range range) const;
  void setHighlight(std::optional<Range> range);
  // Where a token is drawn, in this widget's coordinates.
  QRect rectOf(Range range) const;
  // Tooltip text for a token's trace row (set by the turn; empty text: no tooltip).
  void setRowTooltip(std::function<QString(qint64)> tooltip) { row_tooltip_ = std::move(tooltip); }

 signals:
  void rowClicked(qint64 row);

 protected:
  bool viewportEvent(QEvent* event) override;

 private:
  void fitHeightToDocument();

  QStringDecoder decoder_;
  QTextCursor end_;
  std::function<QString(qint64)> row_tooltip_;
};

class ChatTurnWidget : public QWidget {
  Q_OBJECT
 public:
  explicit ChatTurnWidget(QWidget* parent = nullptr);

  // Shows `turn`: appends the tokens not shown yet, refreshes the tokens whose trace row has become
  // known and the headers. Returns false, changing nothing, when what is shown is no longer the start of
  // `turn` (another session was loaded): the caller replaces this widget.
  bool showTurn(const ChatTurn& turn, const WorkbenchData& data, const TokenColouring& colouring);
  // Paints every token again (colouring or palette changed).
  void restyle(const WorkbenchData& data, const TokenColouring& colouring);
  // Highlights the token of `row` if it is in this turn (and clears any other highlight); returns
  // whether it is.
  bool setSelectedRow(qint64 row);
  // Where the token of `row` is drawn, in this widget's coordinates (null when not in this turn). Opens
  // a collapsed thinking block to show it.
  QRect revealRow(qint64 row);
  void setRowTooltip(std::function<QString(qint64)> tooltip);

  int shownTokens() const { return int(tokens_.size()); }
  QString userText() const;
  QString thinkingText() const;
  QString answerText() const;
  QString thinkingHeader() const;
  bool isThinkingCollapsed() const { return thinking_collapsed_; }
  void setThinkingCollapsed(bool collapsed);
  QColor tokenBackground(int token_index) const;
  bool forcedStopShown() const;

 signals:
  void rowClicked(qint64 row);

 private:
  struct ShownToken {
    StreamedTokenText* text = nullptr;
    StreamedTokenText::Range range;
    int32_t id = 0;
    qint64 row = -1;
    bool forced = false;
    bool settled = false;  // its row is known and in the trace: its look is final until the colouring changes
  };

  QTextCharFormat formatOf(const ShownToken& token, const WorkbenchData& data, const TokenColouring& colouring) const;
  void refreshHeaders(const ChatTurn& turn, const WorkbenchData& data);
  void applyCollapsed();

  QLabel* user_label_ = nullptr;
  QLabel* user_message_ = nullptr;
  QLabel* reply_label_ = nullptr;
  QToolButton* thinking_header_ = nullptr;
  StreamedTokenText* thinking_ = nullptr;
  StreamedTokenText* answer_ = nullptr;
  QLabel* footer_ = nullptr;

  bool started_ = false;
  std::string user_text_;
  std::vector<ShownToken> tokens_;
  std::vector<int> unsettled_;  // indices into tokens_ whose look may still change
  int thinking_count_ = 0;
  qint64 first_thinking_row_ = -1, last_thinking_row_ = -1;
  double last_thinking_elapsed_s_ = 0;
  bool has_answer_ = false;
  bool thinking_collapsed_ = false;
  bool user_toggled_ = false;  // the user chose; the block no longer opens and closes by itself
  bool forced_stop_in_header_ = false;
  qint64 selected_row_ = -1;
  int selected_index_ = -1;
};

}  // namespace moe::views
