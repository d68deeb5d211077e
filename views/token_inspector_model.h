#pragma once
// What the model did for one token, layer by layer: one row per layer of the model; columns for the
// router's choice (top-k experts with their gate weights), how sure it was (normalised entropy, top-1
// margin), the shared-expert gate, and — where the token carries attention statistics — the attention
// entropy and first-token (sink) mass averaged over heads, and the hidden-state norm. Columns that the
// trace does not hold for this token are left out. Reset from a trace snapshot and a row.
#include <QAbstractTableModel>
#include <memory>
#include <vector>

#include "inspect/trace.h"

namespace moe::views {

class TokenInspectorModel : public QAbstractTableModel {
  Q_OBJECT
 public:
  enum class Column { Layer, Experts, RouterEntropy, Top1Margin, SharedGate, AttentionEntropy, SinkMass, HiddenNorm };
  // Extra roles beside Qt's. ValueRole: the cell's number (double; the layer index for Layer; invalid
  // for a dense layer's router columns). ExpertIdsRole / ExpertWeightsRole: the Experts cell's choice,
  // first choice first (QVariantList of int / double, empty slots left out).
  enum Role { ValueRole = Qt::UserRole + 1, ExpertIdsRole, ExpertWeightsRole };

  explicit TokenInspectorModel(QObject* parent = nullptr);

  // Shows `row` of `trace` (no rows when row is -1 or not in the trace).
  void setToken(std::shared_ptr<const inspect::Trace> trace, qint64 row);
  qint64 row() const { return row_; }
  // Whether the token has router.topk (false: the hook level was off when it ran).
  bool hasRouting() const { return has_routing_; }
  bool hasAttention() const { return has_attention_; }
  // The column showing `column`, -1 when it is left out.
  int columnOf(Column column) const;
  Column columnKind(int column) const { return columns_[size_t(column)]; }

  int rowCount(const QModelIndex& parent = {}) const override;
  int columnCount(const QModelIndex& parent = {}) const override;
  QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
  QVariant headerData(int section, Qt::Orientation orientation, int role = Qt::DisplayRole) const override;

 private:
  // MoE ordinal of a model layer (-1: dense layer).
  int moeOrdinal(int layer) const;
  QVariant cellValue(Column column, int layer) const;
  QString cellText(Column column, int layer) const;
  QString cellTooltip(Column column, int layer) const;

  std::shared_ptr<const inspect::Trace> trace_;
  qint64 row_ = -1;
  int layers_ = 0;
  bool has_routing_ = false, has_attention_ = false, has_hidden_norm_ = false;
  std::vector<Column> columns_;
  std::vector<int> moe_of_layer_;
};

}  // namespace moe::views
