#include "views/controls_panel.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QPushButton>
#include <QSettings>
#include <QSignalBlocker>
#include <QSlider>
#include <QSpinBox>
#include <QTableWidget>
#include <QVBoxLayout>

namespace moe::views {

namespace {

constexpr int kBudgetMax = 2048;

// "1, 5,7" → {1, 5, 7}; a problem text when a part is not an expert id of this model.
std::optional<std::vector<int32_t>> parse_experts(const QString& text, int experts, QString* problem) {
  std::vector<int32_t> ids;
  for (const QString& part : text.split(QLatin1Char(','), Qt::SkipEmptyParts)) {
    bool ok = false;
    const int id = part.trimmed().toInt(&ok);
    if (!ok || id < 0 || id >= experts) {
      *problem = QObject::tr("'%1' is not an expert id (0 … %2)").arg(part.trimmed(), QString::number(experts - 1));
      return std::nullopt;
    }
    ids.push_back(id);
  }
  return ids;
}

}  // namespace

ControlsPanel::ControlsPanel(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);

  // ---- The next turn ----
  auto* turn = new QGroupBox(tr("Next message"), this);
  auto* turn_form = new QFormLayout(turn);
  mode_ = new QComboBox(turn);
  mode_->setObjectName(QStringLiteral("mode"));
  mode_->addItem(tr("Think"), QStringLiteral("think"));
  mode_->addItem(tr("No think"), QStringLiteral("no-think"));
  mode_->addItem(tr("Auto (/think, /no_think in the message)"), QStringLiteral("auto"));
  mode_->setToolTip(tr("Think: the model reasons inside <think>…</think> before answering. No think: the template "
                       "closes the think block at once. Auto: the latest /think or /no_think in your messages decides."));
  turn_form->addRow(tr("Mode"), mode_);
  max_tokens_ = new QSpinBox(turn);
  max_tokens_->setObjectName(QStringLiteral("max_tokens"));
  max_tokens_->setRange(1, 32768);
  max_tokens_->setValue(512);
  max_tokens_->setToolTip(tr("The most tokens the reply may have, thinking included"));
  turn_form->addRow(tr("Max tokens"), max_tokens_);
  layout->addWidget(turn);

  // ---- Thinking budget (live) ----
  auto* budget = new QGroupBox(tr("Thinking budget (live)"), this);
  auto* budget_layout = new QVBoxLayout(budget);
  budget_unlimited_ = new QCheckBox(tr("Unlimited"), budget);
  budget_unlimited_->setObjectName(QStringLiteral("budget_unlimited"));
  budget_unlimited_->setChecked(true);
  auto* slider_row = new QHBoxLayout;
  budget_slider_ = new QSlider(Qt::Horizontal, budget);
  budget_slider_->setObjectName(QStringLiteral("budget_slider"));
  budget_slider_->setRange(0, 512);
  budget_slider_->setValue(128);
  budget_spin_ = new QSpinBox(budget);
  budget_spin_->setObjectName(QStringLiteral("budget_spin"));
  budget_spin_->setRange(0, kBudgetMax);
  budget_spin_->setValue(128);
  budget_spin_->setSuffix(tr(" tokens"));
  slider_row->addWidget(budget_slider_, 1);
  slider_row->addWidget(budget_spin_);
  budget_label_ = new QLabel(budget);
  budget_label_->setWordWrap(true);
  stop_thinking_ = new QPushButton(tr("Stop thinking now"), budget);
  stop_thinking_->setObjectName(QStringLiteral("stop_thinking"));
  stop_thinking_->setToolTip(tr("Ends the think block at the next token: the model is told to answer from what it has "
                                "thought so far (the injected text is shown in the chat)."));
  stop_thinking_->setEnabled(false);
  budget_layout->addWidget(budget_unlimited_);
  budget_layout->addLayout(slider_row);
  budget_layout->addWidget(budget_label_);
  budget_layout->addWidget(stop_thinking_);
  budget->setToolTip(tr("When the thinking tokens reach the budget the model is made to stop thinking and answer. "
                        "Lowering it below what was already used stops thinking at the next token; raising it lets it go on."));
  layout->addWidget(budget);

  stop_ = new QPushButton(tr("Stop generating"), this);
  stop_->setObjectName(QStringLiteral("stop"));
  stop_->setEnabled(false);
  layout->addWidget(stop_);

  // ---- Sampling (next turn) ----
  auto* sampling = new QGroupBox(tr("Sampling (next message)"), this);
  auto* sampling_form = new QFormLayout(sampling);
  recommended_ = new QCheckBox(tr("Recommended for the mode"), sampling);
  recommended_->setObjectName(QStringLiteral("recommended"));
  recommended_->setChecked(true);
  recommended_->setToolTip(tr("Qwen's recommendation: thinking T 0.6, top-p 0.95, top-k 20; no thinking T 0.7, top-p 0.8, "
                              "top-k 20 (other models: their generation_config.json)"));
  sampling_form->addRow(recommended_);
  greedy_ = new QCheckBox(tr("Greedy (always the most likely token)"), sampling);
  greedy_->setObjectName(QStringLiteral("greedy"));
  sampling_form->addRow(greedy_);
  temperature_ = new QDoubleSpinBox(sampling);
  temperature_->setObjectName(QStringLiteral("temperature"));
  temperature_->setRange(0.01, 5.0);
  temperature_->setSingleStep(0.05);
  temperature_->setValue(0.6);
  sampling_form->addRow(tr("Temperature"), temperature_);
  top_p_ = new QDoubleSpinBox(sampling);
  top_p_->setObjectName(QStringLiteral("top_p"));
  top_p_->setRange(0.01, 1.0);
  top_p_->setSingleStep(0.05);
  top_p_->setValue(0.95);
  sampling_form->addRow(tr("Top-p"), top_p_);
  top_k_ = new QSpinBox(sampling);
  top_k_->setObjectName(QStringLiteral("top_k"));
  top_k_->setRange(0, 1000);
  top_k_->setValue(20);
  top_k_->setSpecialValueText(tr("off"));
  sampling_form->addRow(tr("Top-k"), top_k_);
  min_p_ = new QDoubleSpinBox(sampling);
  min_p_->setObjectName(QStringLiteral("min_p"));
  min_p_->setRange(0.0, 1.0);
  min_p_->setSingleStep(0.01);
  min_p_->setDecimals(3);
  sampling_form->addRow(tr("Min-p"), min_p_);
  repetition_ = new QDoubleSpinBox(sampling);
  repetition_->setObjectName(QStringLiteral("repetition_penalty"));
  repetition_->setRange(0.5, 2.0);
  repetition_->setSingleStep(0.05);
  repetition_->setValue(1.0);
  sampling_form->addRow(tr("Repetition penalty"), repetition_);
  seed_ = new QSpinBox(sampling);
  seed_->setObjectName(QStringLiteral("seed"));
  seed_->setRange(0, 1 << 30);
  sampling_form->addRow(tr("Seed"), seed_);
  layout->addWidget(sampling);

  // ---- Instrumentation and interventions (live) ----
  auto* hooks = new QGroupBox(tr("What the engine records (live)"), this);
  auto* hooks_form = new QFormLayout(hooks);
  hook_level_ = new QComboBox(hooks);
  hook_level_->setObjectName(QStringLiteral("hook_level"));
  hook_level_->addItem(tr("Off (fastest; no routing shown)"), int(HookLevel::Off));
  hook_level_->addItem(tr("Routing (experts, weights, router entropy)"), int(HookLevel::Routing));
  hook_level_->addItem(tr("Full (+ router distributions, attention statistics, layer times)"), int(HookLevel::Full));
  hook_level_->addItem(tr("Attention maps (+ full attention rows)"), int(HookLevel::AttentionMaps));
  hook_level_->setCurrentIndex(2);
  hooks_form->addRow(tr("Hook level"), hook_level_);
  pace_ = new QSpinBox(hooks);
  pace_->setObjectName(QStringLiteral("pace"));
  pace_->setRange(0, 1000);
  pace_->setSpecialValueText(tr("full speed"));
  pace_->setSuffix(tr(" tokens/s"));
  pace_->setToolTip(tr("Slow motion: at most this many generated tokens per second, so a class can watch the routing"));
  hooks_form->addRow(tr("Slow motion"), pace_);
  layout->addWidget(hooks);

  auto* iv = new QGroupBox(tr("Router interventions (live)"), this);
  auto* iv_layout = new QVBoxLayout(iv);
  dense_ = new QCheckBox(tr("Dense: every expert in every MoE layer"), iv);
  dense_->setObjectName(QStringLiteral("dense"));
  dense_->setToolTip(tr("Sets top-k to the number of experts in every MoE layer: the model runs as a dense model "
                        "(every expert weighted by its router probability)"));
  iv_layout->addWidget(dense_);
  interventions_ = new QTableWidget(0, 3, iv);
  interventions_->setObjectName(QStringLiteral("interventions"));
  interventions_->setHorizontalHeaderLabels({tr("Mask experts"), tr("Force experts"), tr("Top-k")});
  interventions_->horizontalHeader()->setSectionResizeMode(QHeaderView::Stretch);
  interventions_->setToolTip(tr("Per MoE layer: experts never chosen (mask), experts always chosen (force), as lists "
                                "like 1,5; top-k 0 keeps the model's k"));
  interventions_->setMinimumHeight(120);
  iv_layout->addWidget(interventions_);
  auto* iv_buttons = new QHBoxLayout;
  auto* clear = new QPushButton(tr("Clear all"), iv);
  iv_buttons->addWidget(clear);
  iv_buttons->addStretch();
  iv_layout->addLayout(iv_buttons);
  intervention_status_ = new QLabel(iv);
  intervention_status_->setObjectName(QStringLiteral("intervention_status"));
  intervention_status_->setWordWrap(true);
  iv_layout->addWidget(intervention_status_);
  layout->addWidget(iv);
  layout->addStretch();

  connect(budget_slider_, &QSlider::valueChanged, this, &ControlsPanel::onBudgetSlider);
  connect(budget_spin_, qOverload<int>(&QSpinBox::valueChanged), this, [this](int v) {
    if (budget_slider_->value() != v) {
      if (v > budget_slider_->maximum()) budget_slider_->setMaximum(std::min(kBudgetMax, v));
      budget_slider_->setValue(v);
    }
  });
  connect(budget_unlimited_, &QCheckBox::toggled, this, [this](bool unlimited) {
    budget_slider_->setEnabled(!unlimited);
    budget_spin_->setEnabled(!unlimited);
    updateBudgetLabel();
    emit budgetChanged(thinkingBudget());
  });
  budget_slider_->setEnabled(false);
  budget_spin_->setEnabled(false);
  connect(stop_thinking_, &QPushButton::clicked, this, &ControlsPanel::stopThinkingRequested);
  connect(stop_, &QPushButton::clicked, this, &ControlsPanel::stopRequested);
  connect(recommended_, &QCheckBox::toggled, this, &ControlsPanel::updateSamplingEnabled);
  connect(greedy_, &QCheckBox::toggled, this, &ControlsPanel::updateSamplingEnabled);
  connect(hook_level_, qOverload<int>(&QComboBox::currentIndexChanged), this,
          [this] { emit hookLevelChanged(hookLevel()); });
  connect(pace_, qOverload<int>(&QSpinBox::valueChanged), this, [this] { emit paceChanged(pace()); });
  connect(dense_, &QCheckBox::toggled, this, [this](bool dense) {
    interventions_->setEnabled(!dense);
    emit interventionsChanged();
  });
  connect(interventions_, &QTableWidget::cellChanged, this, [this] {
    if (updating_table_) return;
    const QString problem = interventionProblem();
    intervention_status_->setText(problem.isEmpty() ? QString() : tr("Not applied: %1").arg(problem));
    emit interventionsChanged();
  });
  connect(clear, &QPushButton::clicked, this, [this] {
    dense_->setChecked(false);
    rebuildInterventionTable();
    emit interventionsChanged();
  });
  updateSamplingEnabled();
  updateBudgetLabel();
}

void ControlsPanel::onBudgetSlider(int value) {
  if (budget_spin_->value() != value) budget_spin_->setValue(value);
  updateBudgetLabel();
  emit budgetChanged(thinkingBudget());
}

void ControlsPanel::updateBudgetLabel() {
  if (!thinking_supported_) {
    budget_label_->setText(tr("This model's chat template has no thinking."));
    return;
  }
  const int b = thinkingBudget();
  budget_label_->setText(b < 0 ? tr("Thinking now: %1 tokens, no budget").arg(thinking_now_)
                               : tr("Thinking now: %1 of %2 tokens").arg(thinking_now_).arg(b));
}

void ControlsPanel::updateSamplingEnabled() {
  const bool custom = !recommended_->isChecked();
  greedy_->setEnabled(custom);
  const bool random = custom && !greedy_->isChecked();
  for (QWidget* w : std::initializer_list<QWidget*>{temperature_, top_p_, top_k_, min_p_, seed_}) w->setEnabled(random);
  repetition_->setEnabled(custom);
}

void ControlsPanel::setData(const WorkbenchData& data) {
  const ModelFacts* m = data.model.get();
  std::vector<int> moe = m ? m->moe_layer_indices : std::vector<int>{};
  const int layers = m ? m->layers : 0, experts = m ? m->experts : 0;
  if (moe != moe_layers_ || layers != layers_ || experts != experts_) {
    moe_layers_ = moe;
    layers_ = layers;
    experts_ = experts;
    top_k_model_ = m ? m->top_k : 0;
    rebuildInterventionTable();
  }
  thinking_supported_ = !m || m->supports_thinking;
  thinking_now_ = 0;
  if (!data.chat->empty()) {
    const ChatTurn& t = data.chat->back();
    if (!t.finished) thinking_now_ = t.thinking_tokens;
    setGenerating(!t.finished);
  } else {
    setGenerating(false);
  }
  mode_->setEnabled(thinking_supported_);
  updateBudgetLabel();
}

void ControlsPanel::rebuildInterventionTable() {
  updating_table_ = true;
  interventions_->setRowCount(int(moe_layers_.size()));
  QStringList labels;
  for (size_t i = 0; i < moe_layers_.size(); ++i) {
    labels << tr("layer %1").arg(moe_layers_[i]);
    for (int c = 0; c < 2; ++c) interventions_->setItem(int(i), c, new QTableWidgetItem());
    auto* k = new QTableWidgetItem(QStringLiteral("0"));
    k->setToolTip(tr("0 = the model's top-%1; 1 … %2").arg(top_k_model_).arg(experts_));
    interventions_->setItem(int(i), 2, k);
  }
  interventions_->setVerticalHeaderLabels(labels);
  dense_->setEnabled(experts_ > 0);
  interventions_->setEnabled(experts_ > 0 && !dense_->isChecked());
  intervention_status_->setText(experts_ > 0 ? QString() : tr("This model has no routed experts."));
  updating_table_ = false;
}

QString ControlsPanel::interventionProblem() const {
  for (int r = 0; r < interventions_->rowCount(); ++r) {
    for (int c = 0; c < 2; ++c) {
      QString problem;
      const auto* item = interventions_->item(r, c);
      if (item && !parse_experts(item->text(), experts_, &problem))
        return tr("layer %1, %2: %3").arg(QString::number(moe_layers_[size_t(r)]), c == 0 ? tr("mask") : tr("force"), problem);
    }
    const auto* k = interventions_->item(r, 2);
    bool ok = false;
    const int v = k ? k->text().trimmed().toInt(&ok) : 0;
    if (k && (!ok || v < 0 || v > experts_))
      return tr("layer %1, top-k: '%2' is not 0 … %3").arg(QString::number(moe_layers_[size_t(r)]), k->text(), QString::number(experts_));
  }
  return {};
}

Interventions ControlsPanel::interventions() const {
  Interventions iv;
  if (experts_ <= 0) return iv;
  if (dense_->isChecked()) {
    for (int l : moe_layers_) iv.layer(l, layers_).top_k = experts_;
    return iv;
  }
  for (int r = 0; r < interventions_->rowCount(); ++r) {
    const int l = moe_layers_[size_t(r)];
    QString problem;
    const auto masked = parse_experts(interventions_->item(r, 0)->text(), experts_, &problem);
    const auto forced = parse_experts(interventions_->item(r, 1)->text(), experts_, &problem);
    bool ok = false;
    const int k = interventions_->item(r, 2)->text().trimmed().toInt(&ok);
    if (masked && !masked->empty()) iv.layer(l, layers_).masked = *masked;
    if (forced && !forced->empty()) iv.layer(l, layers_).forced = *forced;
    if (ok && k > 0 && k <= experts_) iv.layer(l, layers_).top_k = k;
  }
  return iv;
}

QString ControlsPanel::mode() const { return mode_->currentData().toString(); }
int ControlsPanel::thinkingBudget() const { return budget_unlimited_->isChecked() ? -1 : budget_spin_->value(); }
int ControlsPanel::maxNewTokens() const { return max_tokens_->value(); }
double ControlsPanel::pace() const { return pace_->value(); }
HookLevel ControlsPanel::hookLevel() const { return HookLevel(hook_level_->currentData().toInt()); }

std::optional<SamplingParams> ControlsPanel::sampling() const {
  if (recommended_->isChecked()) return std::nullopt;
  SamplingParams s;
  s.greedy = greedy_->isChecked();
  s.temperature = float(temperature_->value());
  s.top_p = float(top_p_->value());
  s.top_k = top_k_->value();
  s.min_p = float(min_p_->value());
  s.repetition_penalty = float(repetition_->value());
  s.seed = uint64_t(seed_->value());
  return s;
}

void ControlsPanel::setMode(const QString& mode) {
  const int i = mode_->findData(mode);
  if (i >= 0) mode_->setCurrentIndex(i);
}

void ControlsPanel::setThinkingBudget(int budget) {
  {
    // The spin box, slider and checkbox each report their own step (from unlimited: first "unlimited",
    // then the value); every emission goes to the engine, so it must hear only the result.
    const QSignalBlocker quiet(this);
    if (budget < 0) {
      budget_unlimited_->setChecked(true);
    } else {
      budget_spin_->setValue(std::min(budget, kBudgetMax));  // moves the slider too
      budget_unlimited_->setChecked(false);
    }
  }
  emit budgetChanged(thinkingBudget());
}

void ControlsPanel::setHookLevel(HookLevel level) {
  const int i = hook_level_->findData(int(level));
  if (i >= 0) hook_level_->setCurrentIndex(i);
}

void ControlsPanel::setPace(double tokens_per_second) { pace_->setValue(int(tokens_per_second + 0.5)); }

void ControlsPanel::setGenerating(bool generating) {
  stop_->setEnabled(generating);
  stop_thinking_->setEnabled(generating && thinking_supported_);
}

void ControlsPanel::saveSettings(QSettings& s) const {
  s.setValue(QStringLiteral("controls/mode"), mode());
  s.setValue(QStringLiteral("controls/max_tokens"), maxNewTokens());
  s.setValue(QStringLiteral("controls/budget"), thinkingBudget());
  s.setValue(QStringLiteral("controls/recommended"), recommended_->isChecked());
  s.setValue(QStringLiteral("controls/greedy"), greedy_->isChecked());
  s.setValue(QStringLiteral("controls/temperature"), temperature_->value());
  s.setValue(QStringLiteral("controls/top_p"), top_p_->value());
  s.setValue(QStringLiteral("controls/top_k"), top_k_->value());
  s.setValue(QStringLiteral("controls/min_p"), min_p_->value());
  s.setValue(QStringLiteral("controls/repetition"), repetition_->value());
  s.setValue(QStringLiteral("controls/seed"), seed_->value());
  s.setValue(QStringLiteral("controls/hook_level"), int(hookLevel()));
  s.setValue(QStringLiteral("controls/pace"), pace_->value());
}

void ControlsPanel::restoreSettings(QSettings& s) {
  setMode(s.value(QStringLiteral("controls/mode"), mode()).toString());
  max_tokens_->setValue(s.value(QStringLiteral("controls/max_tokens"), maxNewTokens()).toInt());
  setThinkingBudget(s.value(QStringLiteral("controls/budget"), -1).toInt());
  recommended_->setChecked(s.value(QStringLiteral("controls/recommended"), true).toBool());
  greedy_->setChecked(s.value(QStringLiteral("controls/greedy"), false).toBool());
  temperature_->setValue(s.value(QStringLiteral("controls/temperature"), temperature_->value()).toDouble());
  top_p_->setValue(s.value(QStringLiteral("controls/top_p"), top_p_->value()).toDouble());
  top_k_->setValue(s.value(QStringLiteral("controls/top_k"), top_k_->value()).toInt());
  min_p_->setValue(s.value(QStringLiteral("controls/min_p"), min_p_->value()).toDouble());
  repetition_->setValue(s.value(QStringLiteral("controls/repetition"), repetition_->value()).toDouble());
  seed_->setValue(s.value(QStringLiteral("controls/seed"), seed_->value()).toInt());
  setHookLevel(HookLevel(s.value(QStringLiteral("controls/hook_level"), int(hookLevel())).toInt()));
  pace_->setValue(s.value(QStringLiteral("controls/pace"), 0).toInt());
}

}  // namespace moe::views
