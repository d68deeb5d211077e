#pragma once
// The model card: what the loaded model is (family, layers, experts, top-k), what it costs (total and
// active parameters per token, weights by part, KV cache per token) and whether it fits (memory needed
// against the device's memory), and what runs it (CPU threads or GPU).
#include <QWidget>

#include "views/workbench_view.h"

class QLabel;
class QProgressBar;

namespace moe::views {

// "1.23 GiB", "512.0 KiB"; "30.53 B", "3.35 M" (shared by the views that print sizes).
QString formatBytes(double bytes);
QString formatCount(double n);

class ModelCardView : public QWidget, public WorkbenchView {
  Q_OBJECT
 public:
  explicit ModelCardView(QWidget* parent = nullptr);
  void setData(const WorkbenchData& data) override;
  // The card as plain text (what the labels show), for tests and for copying.
  QString cardText() const;
  double memoryFraction() const;  // needed / available (0 when unknown)

 private:
  QLabel* title_;
  QLabel* card_;
  QProgressBar* memory_;
  QLabel* memory_label_;
  const ModelFacts* shown_ = nullptr;
  std::shared_ptr<const ModelFacts> model_;
  double fraction_ = 0;
};

}  // namespace moe::views
