#pragma once
// The controls panel: how the next turn runs (mode, token limit, sampling) and what can be changed
// while it runs (the thinking budget, "stop thinking now", stop, the hook level, router interventions,
// slow motion). It only emits intents; the app turns them into engine calls (DESIGN.md: views never
// call the engine). The live ones are emitted the moment the user moves a control.
#include <QWidget>
#include <optional>

#include "engine/hooks/interventions.h"
#include "engine/hooks/step_observer.h"
#include "engine/runtime/sampler.h"
#include "views/workbench_view.h"

class QCheckBox;
class QComboBox;
class QDoubleSpinBox;
class QLabel;
class QPushButton;
class QSettings;
class QSlider;
class QSpinBox;
class QTableWidget;

namespace moe::views {

class ControlsPanel : public QWidget, public WorkbenchView {
  Q_OBJECT
 public:
  explicit ControlsPanel(QWidget* parent = nullptr);
  void setData(const WorkbenchData& data) override;

  // The next turn's settings.
  QString mode() const;                        // "think", "no-think", "auto"
  int thinkingBudget() const;                  // -1: unlimited
  int maxNewTokens() const;
  std::optional<SamplingParams> sampling() const;  // unset: the mode's recommendation
  HookLevel hookLevel() const;
  double pace() const;                         // generated tokens per second; 0 = full speed
  // The interventions in the table, for the model's layers (empty when none is set). Cells that do not
  // parse are left out and shown in red with the reason.
  Interventions interventions() const;
  QString interventionProblem() const;         // the first cell that does not parse ("" when all do)

  void setMode(const QString& mode);
  void setThinkingBudget(int budget);          // moves the slider; emits budgetChanged
  void setHookLevel(HookLevel level);
  void setPace(double tokens_per_second);     // emits paceChanged
  void setGenerating(bool generating);         // enables stop and "stop thinking now"

  void saveSettings(QSettings& settings) const;
  void restoreSettings(QSettings& settings);

 signals:
  void budgetChanged(int budget);
  void stopThinkingRequested();
  void stopRequested();
  void hookLevelChanged(moe::HookLevel level);
  void interventionsChanged();
  void paceChanged(double tokens_per_second);

 private:
  void rebuildInterventionTable();
  void onBudgetSlider(int value);
  void updateBudgetLabel();
  void updateSamplingEnabled();

  QComboBox* mode_;
  QSpinBox* max_tokens_;
  QCheckBox* budget_unlimited_;
  QSlider* budget_slider_;
  QSpinBox* budget_spin_;
  QLabel* budget_label_;
  QPushButton* stop_thinking_;
  QPushButton* stop_;
  QCheckBox* recommended_;
  QCheckBox* greedy_;
  QDoubleSpinBox* temperature_;
  QDoubleSpinBox* top_p_;
  QSpinBox* top_k_;
  QDoubleSpinBox* min_p_;
  QDoubleSpinBox* repetition_;
  QSpinBox* seed_;
  QComboBox* hook_level_;
  QCheckBox* dense_;
  QTableWidget* interventions_;
  QLabel* intervention_status_;
  QSpinBox* pace_;
  std::vector<int> moe_layers_;
  int layers_ = 0, experts_ = 0, top_k_model_ = 0;
  int thinking_now_ = 0;
  bool thinking_supported_ = true;
  bool updating_table_ = false;
};

}  // namespace moe::views
