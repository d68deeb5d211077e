#include "views/expert_load_model.h"

namespace moe::views {

ExpertLoadModel::ExpertLoadModel(QObject* parent) : QAbstractTableModel(parent) {}

void ExpertLoadModel::setSnapshot(const inspect::ExpertLoad& load) {
  beginResetModel();
  layers_ = load.layers();
  experts_ = load.n_experts();
  counts_.clear();
  shares_.clear();
  weights_.clear();
  for (int r = 0; r < int(layers_.size()); ++r)
    for (int e = 0; e < experts_; ++e) {
      counts_.push_back(load.count(r, e));
      shares_.push_back(load.share(r, e));
      weights_.push_back(load.weight(r, e));
    }
  endResetModel();
}

int ExpertLoadModel::rowCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : int(layers_.size()); }
int ExpertLoadModel::columnCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : experts_; }

QVariant ExpertLoadModel::data(const QModelIndex& index, int role) const {
  if (!index.isValid() || index.row() >= rowCount() || index.column() >= columnCount()) return {};
  const size_t i = size_t(index.row()) * size_t(experts_) + size_t(index.column());
  switch (role) {
    case Qt::DisplayRole: return QVariant::fromValue(counts_[i]);
    case Qt::ToolTipRole:
      return QStringLiteral("layer %1, expert %2: %3 tokens (%4% of selections), gate weight %5")
          .arg(layers_[size_t(index.row())])
          .arg(index.column())
          .arg(counts_[i])
          .arg(shares_[i] * 100.0, 0, 'f', 1)
          .arg(weights_[i], 0, 'f', 3);
    case ShareRole: return shares_[i];
    case DeadRole: return counts_[i] == 0;
    case Qt::TextAlignmentRole: return int(Qt::AlignRight | Qt::AlignVCenter);
    default: return {};
  }
}

QVariant ExpertLoadModel::headerData(int section, Qt::Orientation orientation, int role) const {
  if (role != Qt::DisplayRole) return {};
  if (orientation == Qt::Horizontal) {
    if (section < 0 || section >= experts_) return {};
    return QStringLiteral("E%1").arg(section);
  }
  if (section < 0 || section >= int(layers_.size())) return {};
  return QStringLiteral("layer %1").arg(layers_[size_t(section)]);
}

}  // namespace moe::views
