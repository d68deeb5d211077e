#pragma once
// The thinking view: what one turn of the chat spent on thinking and on the answer. The upper plot is
// a timeline of the turn's generated tokens (x = index in the turn): a strip along the bottom coloured
// by phase (hatched where the thinking budget injected the text), the running count of thinking
// tokens, the thinking budget as a horizontal line (it follows live changes), and a vertical marker
// where the budget or the user cut the thinking. The lower plot is the generation speed over the
// turn's time. Clicking a token selects its trace row in every view.
//
// Token times come from the chat (ChatToken::elapsed_s) when the app filled them, otherwise from the
// trace's step timings (the end of the step each token ran in), so a recorded trace shows its speed
// too.
#include <QVector>
#include <QWidget>
#include <limits>
#include <vector>

#include "views/workbench_view.h"

class QComboBox;
class QLabel;
class QCustomPlot;
class QCPAxisRect;
class QCPGraph;
class QCPItemStraightLine;
class QCPItemText;
class QCPAbstractItem;
class QMouseEvent;

namespace moe::views {

class TokenSelection;

class ThinkingView : public QWidget, public WorkbenchView {
  Q_OBJECT
 public:
  // Tokens in the sliding window of the speed curve.
  static constexpr int kRateWindow = 16;

  explicit ThinkingView(TokenSelection* selection, QWidget* parent = nullptr);

  // Keeps the snapshot; redraws now when visible, otherwise when next shown.
  void setData(const WorkbenchData& data) override;

  // Which turn to show: an index into the chat, or -1 to follow the latest turn as it streams.
  void setTurn(int turn);

  // Accessors (for tests and the end-to-end check); they describe the last redraw.
  // The turn shown (-1: the chat has no turn).
  int turn() const { return shown_turn_; }
  // Generated tokens on the timeline.
  int timelineTokens() const { return int(tokens_.size()); }
  // Thinking-phase tokens on the timeline (the last value of the running count).
  int thinkingTokensPlotted() const { return thinking_count_; }
  // The thinking budget line (NaN when the turn has no budget).
  double budgetLine() const;
  // Forced-stop markers drawn, and their x (token index in the turn).
  int forcedStopMarkers() const { return int(stop_indices_.size()); }
  QVector<double> forcedStopIndices() const { return stop_indices_; }
  // Points on the speed curve (both phases).
  int rateSamples() const { return rate_samples_; }
  // The one-line summary above the plots.
  QString caption() const;
  // Index in the turn of the token marked as selected (-1: the selection is not in this turn).
  int selectedIndex() const { return selected_index_; }
  QCustomPlot* plot() const { return plot_; }

 protected:
  void showEvent(QShowEvent* event) override;
  void changeEvent(QEvent* event) override;

 private:
  // One generated token as the timeline draws it.
  struct TimelineToken {
    qint64 row = -1;
    int position = -1;  // sequence position (-1: unknown)
    int phase = 0;
    bool forced = false;
    double time_s = 0;  // since the turn started; NaN when unknown
    double rate = std::numeric_limits<double>::quiet_NaN();  // tokens/s over the window ending here
    int thinking_so_far = 0;
  };

  void redraw();
  void updateTurnBox();
  void rebuildTokens();
  void drawTimeline();
  void drawRate();
  void drawStops();
  void drawSelection();
  void updateCaption();
  void styleItems();
  void onPlotClick(QMouseEvent* event);
  void onPlotHover(QMouseEvent* event);
  int tokenAt(const QPoint& pos) const;
  void onSelectionChanged(qint64 row);

  TokenSelection* selection_;
  QComboBox* turn_box_;
  QLabel* caption_;
  QCustomPlot* plot_;
  QCPAxisRect* timeline_rect_;
  QCPAxisRect* rate_rect_;
  // Timeline strip: [phase thinking/answer][sampled/forced].
  QCPGraph* strip_[2][2];
  QCPGraph* thinking_curve_;
  QCPGraph* rate_graphs_[2];  // thinking, answer
  QCPItemStraightLine* budget_line_;
  QCPItemText* budget_label_;
  QCPItemStraightLine* selection_line_;
  QCPItemStraightLine* thinking_end_line_;  // in the speed plot: where the answer began
  QCPItemText* rate_note_;
  std::vector<QCPAbstractItem*> stop_items_;

  WorkbenchData data_ = WorkbenchData::empty();
  bool dirty_ = false;
  int requested_turn_ = -1;
  int shown_turn_ = -1;
  std::vector<TimelineToken> tokens_;
  int thinking_count_ = 0;
  int budget_ = -1;
  QVector<double> stop_indices_;
  int rate_samples_ = 0;
  int selected_index_ = -1;
};

}  // namespace moe::views
