#pragma once
// The routing map: one column per token the model ran (trace row), one row per MoE layer, coloured by
// the expert the router ranked first (the same colour the chat gives that expert) or by how unsure the
// router was (normalised router entropy). A thin band under the map shows the phase of each token
// (prompt, thinking, answer) and a vertical line marks where the thinking budget cut the thinking.
//
// Live: each snapshot only adds the new columns; while "Follow" is on, the view shows the latest
// tokens; dragging or zooming the token axis turns following off. Clicking a cell selects that token in
// every view (TokenSelection); a selection made elsewhere is marked here and scrolled into view.
#include <QWidget>
#include <vector>

#include "views/workbench_view.h"

class QCheckBox;
class QComboBox;
class QCPAxisRect;
class QCPColorMap;
class QCPColorScale;
class QCPItemRect;
class QCPItemStraightLine;
class QCPRange;
class QCustomPlot;
class QLabel;
class QMouseEvent;

namespace moe::views {

class TokenSelection;

class RoutingMap : public QWidget, public WorkbenchView {
  Q_OBJECT
 public:
  enum Mode { FirstExpert, RouterEntropy };

  explicit RoutingMap(TokenSelection* selection, QWidget* parent = nullptr);
  ~RoutingMap() override;

  void setData(const WorkbenchData& data) override;
  void setMode(Mode mode);
  // Follow the latest tokens (a window of kFollowWindow rows that scrolls as tokens arrive).
  void setFollowing(bool follow);

  // For tests and the end-to-end check. They bring the map up to date with the last snapshot first,
  // so they also answer for a hidden view.
  Mode mode() const { return mode_; }
  // What the map holds for a cell: the first expert's id (FirstExpert) or the normalised router
  // entropy (RouterEntropy); NaN when the token has no routing in that layer or is not on the map.
  // Read from the plotted data where the row is in the drawn window around the visible range, else
  // from the buffer that window is filled from.
  double cellValue(qint64 row, int moe_ordinal) const;
  qint64 columns() const;           // tokens on the map (trace rows)
  QCPRange visibleRows() const;     // the token axis range shown
  bool following() const { return following_; }
  int forcedStopMarkers() const;    // vertical lines at the thinking budget's forced stops
  qint64 markedRow() const;         // row the selection marker stands on (-1: none shown)
  QCustomPlot* plot() const { return plot_; }

  static constexpr int kFollowWindow = 128;

 protected:
  void showEvent(QShowEvent* event) override;
  void changeEvent(QEvent* event) override;

 private:
  void bringUpToDate();
  void rebuildBuffers();
  void appendRows(qint64 end);
  void syncDrawnWindow(bool rewrite = false);
  void allocateDrawnWindow(qint64 lo, qint64 hi);
  void writeColumns(qint64 begin, qint64 end);
  void applyMode();
  void updateForcedStops();
  void updateSelectionMarker();
  void updateCaption();
  void followLatest();
  void setRowRange(double lower, double upper);
  void onRowRangeChanged(const QCPRange& range);
  void onMousePress(QMouseEvent* event);
  void onMouseRelease(QMouseEvent* event);
  void onMouseMove(QMouseEvent* event);
  qint64 rowAt(double pixel_x) const;
  int moeOrdinalAt(double pixel_y) const;
  void applyTheme();
  double storedValue(qint64 row, int m) const;

  TokenSelection* selection_;
  WorkbenchData data_;
  bool dirty_ = true;
  Mode mode_ = FirstExpert;
  bool following_ = true;
  bool setting_range_ = false;  // our own range changes must not turn following off

  // Shape of the trace the buffers were built from.
  int n_moe_ = 0;
  int n_experts_ = 0;
  std::vector<int> moe_layers_;
  qint64 columns_ = 0;                  // rows copied into the buffers
  // The plotted data covers only the rows around the visible range, [drawn_lo_, drawn_hi_): QCustomPlot
  // recolours the whole map image whenever a cell changes, so its cost must follow what is on screen,
  // not the length of the session. Columns below written_ inside it are filled.
  qint64 drawn_lo_ = 0, drawn_hi_ = 0;
  qint64 written_ = 0;
  qint64 routed_rows_ = 0;              // rows with routing in at least one layer
  int32_t last_token_ = 0;              // token id of the last row copied (tells a new session apart)
  std::vector<float> first_expert_;     // [columns][n_moe] first expert id, NaN: no routing
  std::vector<float> first_weight_;     // [columns][n_moe] its gate weight
  std::vector<float> entropy_;          // [columns][n_moe] normalised router entropy, NaN: no routing
  std::vector<int> phase_of_row_;       // [columns]
  size_t forced_stops_seen_ = 0;
  qint64 forced_scan_from_ = 0;         // next row to search for the next forced stop's token

  QComboBox* mode_box_;
  QCheckBox* follow_box_;
  QLabel* caption_;
  QCustomPlot* plot_;
  QCPAxisRect* map_rect_;
  QCPAxisRect* phase_rect_;
  QCPColorMap* map_;
  QCPColorMap* phase_band_;
  QCPColorScale* scale_;
  QCPItemRect* selection_marker_;
  std::vector<QCPItemStraightLine*> forced_stop_lines_;
  QPoint press_pos_;
  bool press_on_map_ = false;
};

}  // namespace moe::views
