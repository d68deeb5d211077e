#include "views/token_inspector_model.h"

#include <QStringList>
#include <cmath>

namespace moe::views {

namespace {

struct HeadSpread {
  double mean = 0, min = 0, max = 0;
  int argmin = 0, argmax = 0;
};

// Mean, min and max over the heads of one layer of a [N][n_layers][n_heads] column.
HeadSpread overHeads(const std::vector<float>& column, const inspect::Trace& trace, int64_t row, int layer) {
  HeadSpread spread;
  const int heads = trace.n_heads;
  const size_t at = (size_t(row) * size_t(trace.n_layers) + size_t(layer)) * size_t(heads);
  if (heads <= 0 || at + size_t(heads) > column.size()) return spread;
  double sum = 0;
  spread.min = spread.max = column[at];
  for (int h = 0; h < heads; ++h) {
    const double v = column[at + size_t(h)];
    sum += v;
    if (v < spread.min) spread.min = v, spread.argmin = h;
    if (v > spread.max) spread.max = v, spread.argmax = h;
  }
  spread.mean = sum / heads;
  return spread;
}

QString perHead(const std::vector<float>& column, const inspect::Trace& trace, int64_t row, int layer) {
  QStringList values;
  const size_t at = (size_t(row) * size_t(trace.n_layers) + size_t(layer)) * size_t(trace.n_heads);
  for (int h = 0; h < trace.n_heads && at + size_t(h) < column.size(); ++h)
    values << QString::number(column[at + size_t(h)], 'f', 3);
  return values.join(QStringLiteral(", "));
}

bool flag(const std::vector<uint8_t>& column, int64_t row) { return row >= 0 && size_t(row) < column.size() && column[size_t(row)]; }

}  // namespace

TokenInspectorModel::TokenInspectorModel(QObject* parent) : QAbstractTableModel(parent) {}

void TokenInspectorModel::setToken(std::shared_ptr<const inspect::Trace> trace, qint64 row) {
  beginResetModel();
  trace_ = std::move(trace);
  const bool valid = trace_ && row >= 0 && row < trace_->size();
  row_ = valid ? row : -1;
  layers_ = valid ? trace_->n_layers : 0;
  const int moe = valid ? trace_->n_moe() : 0;
  has_routing_ = valid && moe > 0 && trace_->top_k > 0 && flag(trace_->has_routing, row);
  has_attention_ = valid && trace_->n_heads > 0 && flag(trace_->has_attention, row);
  has_hidden_norm_ = valid && flag(trace_->has_hidden_norm, row);

  moe_of_layer_.assign(size_t(std::max(layers_, 0)), -1);
  for (int m = 0; m < moe; ++m) {
    const int layer = trace_->moe_layers[size_t(m)];
    if (layer >= 0 && layer < layers_) moe_of_layer_[size_t(layer)] = m;
  }

  columns_ = {Column::Layer};
  if (has_routing_) {
    columns_.push_back(Column::Experts);
    columns_.push_back(Column::RouterEntropy);
    columns_.push_back(Column::Top1Margin);
    if (!trace_->shared_gate.empty()) columns_.push_back(Column::SharedGate);
  }
  if (has_attention_) {
    columns_.push_back(Column::AttentionEntropy);
    columns_.push_back(Column::SinkMass);
  }
  if (has_hidden_norm_) columns_.push_back(Column::HiddenNorm);
  endResetModel();
}

int TokenInspectorModel::columnOf(Column column) const {
  for (size_t c = 0; c < columns_.size(); ++c)
    if (columns_[c] == column) return int(c);
  return -1;
}

int TokenInspectorModel::moeOrdinal(int layer) const {
  return layer >= 0 && layer < int(moe_of_layer_.size()) ? moe_of_layer_[size_t(layer)] : -1;
}

int TokenInspectorModel::rowCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : layers_; }
int TokenInspectorModel::columnCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : int(columns_.size()); }

QVariant TokenInspectorModel::cellValue(Column column, int layer) const {
  const inspect::Trace& t = *trace_;
  const int m = moeOrdinal(layer);
  const size_t per_moe = size_t(row_) * size_t(t.n_moe()) + size_t(m);
  switch (column) {
    case Column::Layer: return layer;
    case Column::Experts: return {};
    case Column::RouterEntropy:
      return m >= 0 && per_moe < t.router_entropy.size() ? QVariant(double(t.router_entropy[per_moe])) : QVariant();
    case Column::Top1Margin:
      return m >= 0 && per_moe < t.top1_margin.size() ? QVariant(double(t.top1_margin[per_moe])) : QVariant();
    case Column::SharedGate:
      return m >= 0 && per_moe < t.shared_gate.size() ? QVariant(double(t.shared_gate[per_moe])) : QVariant();
    case Column::AttentionEntropy: return overHeads(t.attn_entropy, t, row_, layer).mean;
    case Column::SinkMass: return overHeads(t.attn_first_mass, t, row_, layer).mean;
    case Column::HiddenNorm: {
      const size_t at = size_t(row_) * size_t(t.n_layers) + size_t(layer);
      return at < t.hidden_norm.size() ? QVariant(double(t.hidden_norm[at])) : QVariant();
    }
  }
  return {};
}

QString TokenInspectorModel::cellText(Column column, int layer) const {
  if (column == Column::Layer) return QString::number(layer);
  if (column == Column::Experts) {
    if (moeOrdinal(layer) < 0) return tr("dense");
    const QVariantList ids = data(index(layer, columnOf(column)), ExpertIdsRole).toList();
    const QVariantList weights = data(index(layer, columnOf(column)), ExpertWeightsRole).toList();
    QStringList parts;
    for (int k = 0; k < ids.size(); ++k)
      parts << QStringLiteral("E%1 %2").arg(ids[k].toInt()).arg(weights[k].toDouble(), 0, 'f', 2);
    return parts.join(QStringLiteral(", "));
  }
  const QVariant value = cellValue(column, layer);
  if (!value.isValid()) return {};
  const int decimals = column == Column::HiddenNorm ? 1 : 3;
  return QString::number(value.toDouble(), 'f', decimals);
}

QString TokenInspectorModel::cellTooltip(Column column, int layer) const {
  const inspect::Trace& t = *trace_;
  const int m = moeOrdinal(layer);
  if (m < 0 && (column == Column::Experts || column == Column::RouterEntropy || column == Column::Top1Margin ||
                column == Column::SharedGate))
    return tr("Layer %1 is dense: it has no router, every token goes through its one MLP.").arg(layer);
  const double value = cellValue(column, layer).toDouble();
  switch (column) {
    case Column::Layer:
      return m >= 0 ? tr("Layer %1 of the model (MoE layer %2)").arg(layer).arg(m) : tr("Layer %1 of the model (dense)").arg(layer);
    case Column::Experts: {
      const QVariantList ids = data(index(layer, columnOf(column)), ExpertIdsRole).toList();
      const QVariantList weights = data(index(layer, columnOf(column)), ExpertWeightsRole).toList();
      QStringList lines;
      for (int k = 0; k < ids.size(); ++k)
        lines << tr("choice %1: expert %2, gate weight %3").arg(k + 1).arg(ids[k].toInt()).arg(weights[k].toDouble(), 0, 'f', 4);
      return tr("The router's top-%1 at layer %2 (the gate weights mix the experts' outputs):\n").arg(t.top_k).arg(layer) +
             lines.join(QLatin1Char('\n'));
    }
    case Column::RouterEntropy:
      return tr("Router entropy %1: 0 = all probability on one expert, 1 = spread evenly over all %2 experts.")
          .arg(value, 0, 'f', 4)
          .arg(t.n_experts);
    case Column::Top1Margin:
      return tr("Top-1 margin %1: how far the router's first choice is ahead of its second.").arg(value, 0, 'f', 4);
    case Column::SharedGate:
      return tr("Shared-expert gate %1: how much of the shared expert's output is added for this token.").arg(value, 0, 'f', 4);
    case Column::AttentionEntropy: {
      const HeadSpread s = overHeads(t.attn_entropy, t, row_, layer);
      const int keys = t.positions[size_t(row_)] + 1;
      return tr("Attention entropy, mean over %1 heads: %2 nats (uniform over the %3 keys this token sees: %4 nats)\n"
                "min %5 (head %6), max %7 (head %8)\nper head: %9")
          .arg(t.n_heads)
          .arg(s.mean, 0, 'f', 4)
          .arg(keys)
          .arg(std::log(double(keys)), 0, 'f', 3)
          .arg(s.min, 0, 'f', 3)
          .arg(s.argmin)
          .arg(s.max, 0, 'f', 3)
          .arg(s.argmax)
          .arg(perHead(t.attn_entropy, t, row_, layer));
    }
    case Column::SinkMass: {
      const HeadSpread s = overHeads(t.attn_first_mass, t, row_, layer);
      return tr("Attention on the first token (the sink), mean over %1 heads: %2\nmin %3 (head %4), max %5 (head %6)\n"
                "per head: %7")
          .arg(t.n_heads)
          .arg(s.mean, 0, 'f', 4)
          .arg(s.min, 0, 'f', 3)
          .arg(s.argmin)
          .arg(s.max, 0, 'f', 3)
          .arg(s.argmax)
          .arg(perHead(t.attn_first_mass, t, row_, layer));
    }
    case Column::HiddenNorm: return tr("Norm of the hidden state after layer %1: %2").arg(layer).arg(value, 0, 'f', 3);
  }
  return {};
}

QVariant TokenInspectorModel::data(const QModelIndex& index, int role) const {
  if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid)) return {};
  const Column column = columns_[size_t(index.column())];
  const int layer = index.row();
  switch (role) {
    case Qt::DisplayRole: return cellText(column, layer);
    case Qt::ToolTipRole: return cellTooltip(column, layer);
    case ValueRole: return cellValue(column, layer);
    case ExpertIdsRole:
    case ExpertWeightsRole: {
      const int m = moeOrdinal(layer);
      if (column != Column::Experts || m < 0) return {};
      const inspect::Trace& t = *trace_;
      const size_t at = (size_t(row_) * size_t(t.n_moe()) + size_t(m)) * size_t(t.top_k);
      QVariantList values;
      for (int k = 0; k < t.top_k && at + size_t(k) < t.expert_ids.size(); ++k) {
        const int expert = t.expert_ids[at + size_t(k)];
        if (expert < 0) continue;
        if (role == ExpertIdsRole)
          values << expert;
        else
          values << double(t.expert_weights[at + size_t(k)]);
      }
      return values;
    }
    case Qt::TextAlignmentRole:
      return column == Column::Experts ? int(Qt::AlignLeft | Qt::AlignVCenter) : int(Qt::AlignRight | Qt::AlignVCenter);
    default: return {};
  }
}

QVariant TokenInspectorModel::headerData(int section, Qt::Orientation orientation, int role) const {
  if (orientation == Qt::Vertical) {
    if (role != Qt::DisplayRole || section < 0 || section >= layers_) return {};
    return section;
  }
  if (section < 0 || section >= int(columns_.size())) return {};
  const Column column = columns_[size_t(section)];
  if (role == Qt::DisplayRole) {
    switch (column) {
      case Column::Layer: return tr("Layer");
      case Column::Experts: return tr("Experts (gate weight)");
      case Column::RouterEntropy: return tr("Router entropy");
      case Column::Top1Margin: return tr("Top-1 margin");
      case Column::SharedGate: return tr("Shared gate");
      case Column::AttentionEntropy: return tr("Attention entropy");
      case Column::SinkMass: return tr("First-token mass");
      case Column::HiddenNorm: return tr("Hidden norm");
    }
  }
  if (role == Qt::ToolTipRole) {
    switch (column) {
      case Column::Layer: return tr("Layer of the model, from the input up");
      case Column::Experts: return tr("The experts the router sent this token to, first choice first, with their gate weights");
      case Column::RouterEntropy:
        return tr("Entropy of the router's probabilities over all experts, divided by its maximum: 0 = certain, 1 = undecided");
      case Column::Top1Margin: return tr("Router probability of the first choice minus that of the second");
      case Column::SharedGate: return tr("Gate of the shared expert that every token goes through");
      case Column::AttentionEntropy:
        return tr("How spread out this token's attention is, in nats, averaged over the layer's heads (hover a cell for min/max)");
      case Column::SinkMass:
        return tr("Share of this token's attention on the first token of the sequence (the attention sink), averaged over heads");
      case Column::HiddenNorm: return tr("Length (L2 norm) of the hidden state leaving the layer");
    }
  }
  return {};
}

}  // namespace moe::views
