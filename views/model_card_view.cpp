#include "views/model_card_view.h"

#include <QLabel>
#include <QProgressBar>
#include <QTextDocument>
#include <QVBoxLayout>

namespace moe::views {

QString formatBytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    ++u;
  }
  return u == 0 ? QStringLiteral("%1 B").arg(qint64(bytes)) : QStringLiteral("%1 %2").arg(bytes, 0, 'f', bytes < 10 ? 2 : 1).arg(QLatin1String(units[u]));
}

QString formatCount(double n) {
  if (n >= 1e9) return QStringLiteral("%1 B").arg(n / 1e9, 0, 'f', 2);
  if (n >= 1e6) return QStringLiteral("%1 M").arg(n / 1e6, 0, 'f', 2);
  if (n >= 1e3) return QStringLiteral("%1 K").arg(n / 1e3, 0, 'f', 1);
  return QString::number(qint64(n));
}

ModelCardView::ModelCardView(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  title_ = new QLabel(this);
  QFont f = title_->font();
  f.setPointSizeF(f.pointSizeF() * 1.3);
  f.setBold(true);
  title_->setFont(f);
  card_ = new QLabel(this);
  card_->setTextFormat(Qt::RichText);
  card_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  card_->setWordWrap(true);
  memory_ = new QProgressBar(this);
  memory_->setRange(0, 1000);
  memory_->setTextVisible(false);
  memory_label_ = new QLabel(this);
  memory_label_->setWordWrap(true);
  layout->addWidget(title_);
  layout->addWidget(card_);
  layout->addWidget(new QLabel(tr("Memory needed (weights + full KV cache) against the device:"), this));
  layout->addWidget(memory_);
  layout->addWidget(memory_label_);
  layout->addStretch();
  setData(WorkbenchData::empty());
}

void ModelCardView::setData(const WorkbenchData& data) {
  if (data.model.get() == shown_ && shown_) return;  // the card only changes with the model
  model_ = data.model;
  shown_ = data.model.get();
  if (!shown_) {
    title_->setText(tr("No model loaded"));
    card_->setText(tr("Open a Hugging Face model folder with File ▸ Open model, or drop it on the window."));
    memory_->setValue(0);
    memory_label_->clear();
    fraction_ = 0;
    return;
  }
  const ModelFacts& m = *shown_;
  title_->setText(QString::fromStdString(m.name.empty() ? m.family : m.name));
  auto row = [](const QString& k, const QString& v) {
    return QStringLiteral("<tr><td><b>%1</b>&nbsp;&nbsp;</td><td>%2</td></tr>").arg(k.toHtmlEscaped(), v.toHtmlEscaped());
  };
  QString html = QStringLiteral("<table>");
  html += row(tr("Family"), QStringLiteral("%1 (%2)").arg(QString::fromStdString(m.family), QString::fromStdString(m.model_type)));
  html += row(tr("Folder"), QString::fromStdString(m.path));
  html += row(tr("Layers"), m.moe_layers == m.layers || m.experts == 0
                                ? QString::number(m.layers)
                                : tr("%1 (%2 MoE, %3 dense)").arg(m.layers).arg(m.moe_layers).arg(m.layers - m.moe_layers));
  if (m.experts > 0) {
    html += row(tr("Experts"), tr("%1 routed per MoE layer, top-%2 per token%3")
                                   .arg(m.experts)
                                   .arg(m.top_k)
                                   .arg(m.shared_experts_ffn ? tr(", plus a shared expert") : QString()));
  } else {
    html += row(tr("Experts"), tr("none (dense model)"));
  }
  if (m.latent_kv > 0)
    html += row(tr("Attention"), tr("%1 heads, latent attention: q/k head size %2, v %3; the cache holds a latent of "
                                    "%4 and a shared RoPE key of %5 per token")
                                     .arg(m.heads)
                                     .arg(m.head_dim)
                                     .arg(m.v_head_dim)
                                     .arg(m.latent_kv)
                                     .arg(m.latent_rope));
  else
    html += row(tr("Attention"), tr("%1 heads, %2 KV heads, head size %3%4%5")
                                     .arg(m.heads)
                                     .arg(m.kv_heads)
                                     .arg(m.head_dim)
                                     .arg(m.windowed_layers > 0 ? tr("; %1 of %2 layers see only the last %3 tokens")
                                                                      .arg(m.windowed_layers)
                                                                      .arg(m.layers)
                                                                      .arg(m.sliding_window)
                                                                : QString())
                                     .arg(m.attention_sinks ? tr("; a sink per head takes part of every softmax") : QString()));
  html += row(tr("Hidden size / vocabulary"), QStringLiteral("%1 / %2").arg(m.hidden).arg(m.vocab));
  const double active_share = m.total_params > 0 ? 100.0 * double(m.active_params) / double(m.total_params) : 0;
  html += row(tr("Parameters"), tr("%1 total, %2 active per token (%3%)")
                                    .arg(formatCount(double(m.total_params)), formatCount(double(m.active_params)))
                                    .arg(active_share, 0, 'f', 1));
  html += row(tr("Weights"), tr("%1: attention %2, routed experts %3, shared experts %4, embeddings %5, other %6")
                                 .arg(formatBytes(double(m.weight_bytes())), formatBytes(double(m.attention_bytes)),
                                      formatBytes(double(m.routed_expert_bytes)), formatBytes(double(m.shared_expert_bytes)),
                                      formatBytes(double(m.embedding_bytes)), formatBytes(double(m.other_bytes))));
  html += row(tr("KV cache"), tr("%1 per token, %2 tokens").arg(formatBytes(double(m.kv_bytes_per_token))).arg(m.context));
  const QString thinking = !m.supports_thinking ? tr(" (no thinking)")
                           : m.always_thinks   ? tr(" (always thinks; no-think cuts it at once)")
                                               : tr(" (thinking on/off)");
  html += row(tr("Chat format"), QString::fromStdString(m.chat_format) + thinking);
  html += row(tr("Backend"), QString::fromStdString(m.backend));
  html += QStringLiteral("</table>");
  card_->setText(html);
  fraction_ = m.memory_available_bytes > 0 ? double(m.memory_needed_bytes) / double(m.memory_available_bytes) : 0;
  memory_->setValue(int(std::min(1.0, fraction_) * 1000));
  memory_label_->setText(m.memory_available_bytes > 0
                             ? tr("%1 needed of %2 (%3%)%4")
                                   .arg(formatBytes(double(m.memory_needed_bytes)), formatBytes(double(m.memory_available_bytes)))
                                   .arg(fraction_ * 100, 0, 'f', 1)
                                   .arg(fraction_ > 1 ? tr(" — does not fit") : QString())
                             : tr("%1 needed").arg(formatBytes(double(m.memory_needed_bytes))));
}

QString ModelCardView::cardText() const {
  QTextDocument doc;
  doc.setHtml(card_->text());
  return title_->text() + QLatin1Char('\n') + doc.toPlainText() + QLatin1Char('\n') + memory_label_->text();
}

double ModelCardView::memoryFraction() const { return fraction_; }

}  // namespace moe::views
