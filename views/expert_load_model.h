#pragma once
// A table of expert load for Qt views: one row per MoE layer, one column per expert; the display role
// is the count, the tooltip gives the share and gate weight. Reset from a snapshot of inspect data,
// never from the engine (DESIGN.md: views read inspect/).
#include <QAbstractTableModel>
#include <vector>

#include "inspect/expert_load.h"

namespace moe::views {

class ExpertLoadModel : public QAbstractTableModel {
  Q_OBJECT
 public:
  // Extra roles beside Qt's: the share of the layer's selections (0..1) for heatmap colours.
  enum Role { ShareRole = Qt::UserRole + 1, DeadRole };

  explicit ExpertLoadModel(QObject* parent = nullptr);
  // Replaces the contents with a copy of the load tables.
  void setSnapshot(const inspect::ExpertLoad& load);

  int rowCount(const QModelIndex& parent = {}) const override;
  int columnCount(const QModelIndex& parent = {}) const override;
  QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
  QVariant headerData(int section, Qt::Orientation orientation, int role = Qt::DisplayRole) const override;

 private:
  std::vector<int> layers_;
  int experts_ = 0;
  std::vector<qint64> counts_;
  std::vector<double> shares_;
  std::vector<double> weights_;
};

}  // namespace moe::views
