#pragma once
// The memory & speed view: where the memory goes and how fast the model runs, for the engineer who
// profiles a deployment and the educator who shows that a sparse model uses a fraction of its
// parameters per token.
//   - "Active parameters this token": for the latest routed token, the parameters every token uses
//     plus one expert's worth per expert the router selected (summed over the MoE layers), of the
//     model's total.
//   - Memory over time, stacked by part: the weights (attention, routed experts, shared experts,
//     embeddings, other), the KV cache in use, the activations and the workspace, with the KV cache
//     allocated and the device's total as lines. On a GPU every part is what the backend's allocator
//     measured, and a band hanging from the device total shows what other processes hold (the hover
//     says what is still free). On the CPU the weights are the mapped files, not allocations,
//     so they come from the model description; the CPU backend does not tell activations from its
//     workspace, and the process's resident set is drawn as a line.
//   - Speed: tokens/s of the decode steps over time (one token each), the multi-token steps (the
//     prompt, injected text) apart; the time to first token of the latest turn; the mean time of each
//     layer over the steps that recorded layer times.
// Step data is folded in incrementally (only the steps added since the last snapshot), so a long
// session costs no more per snapshot than a short one.
#include <QVector>
#include <QWidget>
#include <cstdint>
#include <vector>

#include "views/workbench_view.h"

class QLabel;
class QCustomPlot;
class QCPGraph;
class QCPBars;
class QCPItemStraightLine;
class QCPItemText;
class QMouseEvent;

namespace moe::views {

class MemorySpeedView : public QWidget, public WorkbenchView {
  Q_OBJECT
 public:
  // Decode steps per point of the smoothed tokens/s curve.
  static constexpr int kDecodeWindow = 16;
  // "tokens/s now" covers the decode steps that ended in the last this many seconds of the trace.
  static constexpr double kRecentSeconds = 1.0;

  explicit MemorySpeedView(QWidget* parent = nullptr);

  // Keeps the snapshot; redraws now when visible, otherwise when next shown.
  void setData(const WorkbenchData& data) override;

  // Accessors (for tests and the end-to-end check); they describe the last redraw.
  // Parameters the latest routed token used (the model's active parameters when routing was not
  // recorded, the total for a dense model, 0 without a model).
  qint64 activeParamsNow() const { return active_params_; }
  // Mean time per layer in milliseconds over the steps that recorded layer times (empty: none did).
  QVector<double> layerTimesMs() const { return layer_ms_; }
  // Time to first token of the latest turn in seconds (the chat's, else the turn's first step in the
  // trace); NaN when unknown.
  double timeToFirstTokenS() const { return ttft_s_; }
  // Graphs with data in the memory plot.
  int memorySeries() const { return memory_series_; }
  // The device total drawn as a line, in bytes: the GPU's as the samples report it, else the
  // machine's from the model card (NaN when neither says).
  double deviceTotalLine() const { return device_total_; }
  // Bytes per unit of the memory plot's y axis (MiB or GiB, picked from the magnitude).
  double memoryUnitBytes() const { return unit_bytes_; }
  // The tokens/s line: recent and turn-mean decode speed.
  QString speedText() const;
  // The big "active parameters" label and the line under it.
  QString activeParamsText() const;
  QCustomPlot* memoryPlot() const { return memory_plot_; }
  QCustomPlot* speedPlot() const { return speed_plot_; }
  QCustomPlot* layerTimePlot() const { return layer_plot_; }

 protected:
  void showEvent(QShowEvent* event) override;
  void changeEvent(QEvent* event) override;

 private:
  // The weight parts, then what changes over time, bottom of the stack first.
  enum MemoryPart {
    Embeddings, Attention, RoutedExperts, SharedExperts, OtherWeights, KvUsed, Activations, Workspace, kMemoryParts
  };
  // Decode tokens and seconds of one trace segment (one generate call).
  struct SegmentSpeed {
    int64_t decode_tokens = 0;
    double decode_s = 0;
    double first_step_s = -1;  // wall time of the segment's first step (its prompt); -1: none yet
    int first_step_tokens = 0;
  };

  void redraw();
  void foldNewSteps();
  void updateActiveParams();
  void drawMemory();
  void drawSpeed();
  void drawLayerTimes();
  void updateLabels();
  void styleItems();
  void onMemoryHover(QMouseEvent* event);
  void onLayerHover(QMouseEvent* event);
  uint64_t partBytes(int part, size_t sample) const;
  uint64_t weightBytes(size_t sample) const;

  QLabel* active_label_;
  QLabel* active_detail_;
  QLabel* speed_label_;
  QLabel* ttft_label_;
  QLabel* kv_label_;
  QLabel* weights_label_;
  QCustomPlot* memory_plot_;
  QCustomPlot* speed_plot_;
  QCustomPlot* layer_plot_;
  QCPGraph* memory_graphs_[kMemoryParts];
  QCPGraph* kv_allocated_graph_;
  QCPGraph* rss_graph_;
  QCPGraph* others_graph_;          // the lower edge of the "other processes" band, filled up to…
  QCPGraph* others_ceiling_graph_;  // …the device total (not in the legend)
  QCPItemStraightLine* device_line_;
  QCPItemText* device_label_;
  QCPItemText* memory_note_;
  QVector<QCPGraph*> memory_legend_;  // the graphs the legend lists now, in order
  QCPGraph* decode_graph_;
  QCPGraph* multi_token_graph_;
  QCPItemText* speed_note_;
  QCPBars* moe_bars_;
  QCPBars* dense_bars_;
  QCPItemText* layer_note_;

  WorkbenchData data_ = WorkbenchData::empty();
  bool dirty_ = false;

  // Folded step data (valid for the trace whose first `folded_steps_` steps are these).
  size_t folded_steps_ = 0;
  double folded_last_end_s_ = 0;
  int64_t scanned_rows_ = 0;
  int64_t last_routed_row_ = -1;
  std::vector<size_t> decode_steps_;      // indices of the one-token steps
  std::vector<SegmentSpeed> segments_;
  std::vector<double> layer_sum_s_;       // [n_layers]
  int layer_steps_ = 0;

  qint64 active_params_ = 0;
  qint64 active_experts_ = -1;  // experts the latest routed token selected (-1: not known)
  QVector<double> layer_ms_;
  double ttft_s_ = 0;
  int memory_series_ = 0;
  double device_total_ = 0;
  double unit_bytes_ = 1;
  double recent_rate_ = 0, turn_rate_ = 0;
};

}  // namespace moe::views
