#pragma once
// The chat: each turn's message and the model's reply as it streams, the thinking block above the answer
// (collapsible, with the budget and whether it cut the thinking), injected tokens marked. Tokens can be
// coloured by the expert that the router chose first for them at one MoE layer (the Mixtral paper's
// figure), and clicking a token selects its trace row in every view.
//
// Streaming is append-only: every turn remembers how many tokens it shows and adds only the new ones;
// the view rebuilds a turn only when the chat no longer continues what is shown (a session loaded, the
// chat cleared). While streaming it keeps the newest text in view unless the user scrolled up.
#include <QWidget>
#include <vector>

#include "views/chat_turn_widget.h"
#include "views/token_selection.h"
#include "views/workbench_view.h"

class QCheckBox;
class QLabel;
class QScrollArea;
class QSpinBox;
class QVBoxLayout;

namespace moe::views {

class ChatView : public QWidget, public WorkbenchView {
  Q_OBJECT
 public:
  explicit ChatView(TokenSelection* selection, QWidget* parent = nullptr);

  void setData(const WorkbenchData& data) override;

  bool colourByExpert() const { return colouring_.by_expert; }
  int colourLayer() const { return colouring_.moe_ordinal; }

  // What the chat shows, for tests and the end-to-end check. They first bring a hidden view up to date
  // (a hidden view defers its work until it is shown). `turn` indexes data.chat; `token_index` indexes
  // the turn's ChatTurn::tokens.
  int turnCount() const;
  QString userText(int turn) const;
  QString thinkingText(int turn) const;
  QString answerText(int turn) const;
  QString thinkingHeader(int turn) const;  // "" when the turn has no thinking
  bool isThinkingCollapsed(int turn) const;
  void setThinkingCollapsed(int turn, bool collapsed);
  QColor tokenBackground(int turn, int token_index) const;  // invalid when the token is not coloured
  bool forcedStopShown(int turn) const;  // the header says the thinking was cut and injected tokens are marked
  // How many times a turn was thrown away and drawn again; streaming a growing turn never adds to it.
  int rebuildCount() const;

 public slots:
  void setColourByExpert(bool on);
  void setColourLayer(int moe_ordinal);
  // What clicking a token does: selects its trace row everywhere.
  void activateRow(qint64 row);

 signals:
  void tokenActivated(qint64 row);

 protected:
  void showEvent(QShowEvent* event) override;
  void changeEvent(QEvent* event) override;

 private:
  void bringUpToDate() const;
  void sync();
  void restyleAll();
  void showSelection(qint64 row);
  ChatTurnWidget* addTurnWidget(int index);
  void updateColourControls();
  QString tokenTooltip(qint64 row) const;
  const ChatTurnWidget* turnAt(int turn) const;

  TokenSelection* selection_;
  WorkbenchData data_ = WorkbenchData::empty();
  bool dirty_ = false;
  TokenColouring colouring_;
  std::vector<ChatTurnWidget*> turns_;
  int rebuilds_ = 0;
  bool follow_bottom_ = true;

  QCheckBox* colour_check_ = nullptr;
  QSpinBox* layer_spin_ = nullptr;
  QLabel* legend_ = nullptr;
  QScrollArea* scroll_ = nullptr;
  QWidget* page_ = nullptr;
  QVBoxLayout* page_layout_ = nullptr;
  QLabel* empty_label_ = nullptr;
};

}  // namespace moe::views
