#pragma once
// Expert load: how the tokens of a window (the whole session, the last N tokens, the thinking or the
// answer tokens) spread over the experts of each MoE layer.
//   top:    MoE layers × experts, coloured by the share of the layer's selections each expert got;
//           dead experts (no selection) and overloaded ones (more than twice the layer's mean load,
//           i.e. share > 2/E) are marked on their cells;
//   bottom: the selected layer's selections per expert as bars, beside the uniform load (tokens × k / E),
//           and a line of load measures (CV, normalised entropy, MaxVio, Gini, dead experts), each beside
//           what perfectly balanced routing and routing at random would give.
// The measures come from inspect::routing_by_layer, which reads every token of the window (tens of
// milliseconds for tens of thousands of tokens): they are recomputed on a worker thread from the
// immutable snapshot, only when the data or the window changed and the view is visible, at most a few
// times a second while tokens stream; the GUI thread only draws the result.
#include <QElapsedTimer>
#include <QVector>
#include <QWidget>
#include <future>
#include <vector>

#include "inspect/trace_measures.h"
#include "views/workbench_view.h"

class QComboBox;
class QCPBars;
class QCPColorMap;
class QCPColorScale;
class QCPGraph;
class QCPItemRect;
class QCPItemStraightLine;
class QCPItemText;
class QCustomPlot;
class QLabel;
class QMouseEvent;
class QSpinBox;
class QStackedWidget;
class QTimer;

namespace moe::views {

class ExpertLoadView : public QWidget, public WorkbenchView {
  Q_OBJECT
 public:
  enum Window { WholeSession, LastTokens, Thinking, Answer };

  explicit ExpertLoadView(QWidget* parent = nullptr);
  ~ExpertLoadView() override;

  void setData(const WorkbenchData& data) override;
  // Which tokens to count; last_n is used by LastTokens (and kept for when it is chosen later).
  void setWindow(Window window, int last_n = 256);
  void selectLayer(int moe_ordinal);

  // An expert is overloaded when it got more than this many times the layer's mean selections.
  static constexpr double kOverloadFactor = 2.0;

  // For tests and the end-to-end check. They bring the view up to date with the last snapshot and
  // window first, so they also answer for a hidden view.
  Window window() const { return window_; }
  int lastTokens() const { return last_n_; }
  // The heatmap cell: share of MoE ordinal m's selections that went to the expert (NaN: no such cell).
  double heatValue(int moe_ordinal, int expert) const;
  QVector<double> barValues() const;       // selections per expert of the selected layer, as drawn
  int selectedLayer() const;               // MoE ordinal (-1: no MoE layer)
  QString statsText() const;               // the measures line under the bars (numbers with 3 decimals)
  QVector<int> deadExperts() const;        // of the selected layer: no selection (while it has tokens)
  QVector<int> overloadedExperts() const;  // of the selected layer: selections > kOverloadFactor × mean
  double uniformLine() const;              // height of the uniform-load line (the layer's mean selections)
  QString message() const;                 // why nothing is plotted ("" when the plots are shown)
  QCustomPlot* heatPlot() const { return heat_plot_; }
  QCustomPlot* barPlot() const { return bar_plot_; }

 protected:
  void showEvent(QShowEvent* event) override;
  void changeEvent(QEvent* event) override;

 private:
  struct Computed;
  void scheduleRefresh();
  void startComputation();
  void apply(Computed&& computed);
  static Computed compute(const ModelFacts* model, const inspect::Trace& trace, const inspect::TokenFilter& filter);
  void ensureFresh() const;
  inspect::TokenFilter filter() const;
  void showLayer(int moe_ordinal);
  void updateHeatmap();
  void updateBars();
  void updateStats();
  void showMessage(const QString& text);
  void onHeatMouseMove(QMouseEvent* event);
  void onHeatMouseRelease(QMouseEvent* event);
  void onBarMouseMove(QMouseEvent* event);
  QString cellToolTip(int moe_ordinal, int expert) const;
  void showExportMenu(QCustomPlot* plot, const QString& base_name, bool selected_layer_only, const QPoint& pos);
  void applyTheme();

  WorkbenchData data_;
  bool dirty_ = true;          // data_ or the window changed since the last computation started
  bool computing_ = false;     // a computation runs on the worker
  quint64 generation_ = 0;     // of the latest computation; older results are dropped
  std::future<void> job_;
  QElapsedTimer since_refresh_;
  QTimer* refresh_timer_;
  Window window_ = WholeSession;
  int last_n_ = 256;
  int selected_ = 0;
  std::vector<inspect::LayerRouting> layers_;
  inspect::TokenFilter shown_filter_;  // the tokens layers_ counts
  int n_experts_ = 0;
  QString message_;
  QVector<int> dead_, overloaded_;
  double uniform_ = 0;

  QComboBox* window_box_;
  QSpinBox* last_n_box_;
  QComboBox* layer_box_;
  QStackedWidget* pages_;
  QLabel* message_label_;
  QLabel* heat_caption_;
  QLabel* stats_label_;
  QLabel* bar_caption_;
  QCustomPlot* heat_plot_;
  QCPColorMap* heat_map_;
  QCPColorScale* heat_scale_;
  QCPGraph* dead_cells_;
  QCPGraph* overloaded_cells_;
  QCPItemRect* selected_row_;
  QCustomPlot* bar_plot_;
  QCPBars* normal_bars_;
  QCPBars* overloaded_bars_;
  QCPGraph* dead_bars_;
  QCPItemStraightLine* uniform_item_;
  QCPItemText* uniform_label_;
};

}  // namespace moe::views
