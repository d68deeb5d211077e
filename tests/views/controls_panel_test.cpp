// The controls panel: the intents it emits (thinking budget, stop, interventions) and the settings it
// hands the app (sampling, the interventions table), read back through its public accessors and the
// named child widgets a user would touch.
#include <QtTest>
#include <QCheckBox>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QLabel>
#include <QPushButton>
#include <QSettings>
#include <QSlider>
#include <QSpinBox>
#include <QTableWidget>
#include <QTemporaryDir>

#include "views/controls_panel.h"

using namespace moe;
using namespace moe::views;

namespace {

ModelFacts moeModel() {
  ModelFacts m;
  m.name = "moe";
  m.family = "Qwen3-MoE";
  m.layers = 4;
  m.moe_layers = 4;
  m.moe_layer_indices = {0, 1, 2, 3};
  m.experts = 16;
  m.top_k = 2;
  m.supports_thinking = true;
  return m;
}

ModelFacts denseModel() {
  ModelFacts m;
  m.name = "dense";
  m.family = "Qwen3";
  m.layers = 4;
  m.supports_thinking = true;
  return m;
}

WorkbenchData withModel(const ModelFacts& model) {
  WorkbenchData data = WorkbenchData::empty();
  data.model = std::make_shared<const ModelFacts>(model);
  return data;
}

template <typename W>
W* child(const QWidget& parent, const char* name) {
  W* w = parent.findChild<W*>(QLatin1String(name));
  if (!w) qFatal("no child widget named %s", name);
  return w;
}

QList<int> budgets(const QSignalSpy& spy) {
  QList<int> values;
  for (const QList<QVariant>& args : spy) values << args.at(0).toInt();
  return values;
}

}  // namespace

class ControlsPanelTest : public QObject {
  Q_OBJECT
 private slots:
  void budgetFromUnlimitedEmitsOnlyTheNewBudget();
  void budgetChangeWhileLimitedEmitsOnce();
  void unlimitedBudget();
  void sliderEmitsLive();
  void tableHasOneRowPerMoeLayer();
  void typedMaskAndTopKBecomeInterventions();
  void invalidExpertIdIsReportedAndLeftOut();
  void invalidTopKIsReported();
  void denseSetsTopKToAllExperts();
  void denseModelDisablesInterventions();
  void samplingFollowsRecommended();
  void settingsRoundTrip();
  void stopButtons();
  void generatingFollowsTheLastTurn();
};

void ControlsPanelTest::budgetFromUnlimitedEmitsOnlyTheNewBudget() {
  ControlsPanel panel;
  panel.setData(withModel(moeModel()));
  QCOMPARE(panel.thinkingBudget(), -1);  // a new panel has no budget
  QSignalSpy spy(&panel, &ControlsPanel::budgetChanged);
  panel.setThinkingBudget(40);
  QCOMPARE(panel.thinkingBudget(), 40);
  // The app forwards every emission to the engine, so a transient "unlimited" on the way to 40 would
  // be a wrong command to a running turn.
  QCOMPARE(budgets(spy), QList<int>{40});
  QVERIFY(child<QSlider>(panel, "budget_slider")->isEnabled());
  QCOMPARE(child<QSlider>(panel, "budget_slider")->value(), 40);
}

void ControlsPanelTest::budgetChangeWhileLimitedEmitsOnce() {
  ControlsPanel panel;
  panel.setThinkingBudget(100);
  QSignalSpy spy(&panel, &ControlsPanel::budgetChanged);
  panel.setThinkingBudget(40);
  QCOMPARE(budgets(spy), QList<int>{40});
  // Beyond the slider's initial range the spin box takes it and the slider follows.
  spy.clear();
  panel.setThinkingBudget(1500);
  QCOMPARE(panel.thinkingBudget(), 1500);
  QCOMPARE(child<QSlider>(panel, "budget_slider")->value(), 1500);
  QCOMPARE(budgets(spy), QList<int>{1500});
}

void ControlsPanelTest::unlimitedBudget() {
  ControlsPanel panel;
  panel.setThinkingBudget(40);
  QSignalSpy spy(&panel, &ControlsPanel::budgetChanged);
  panel.setThinkingBudget(-1);
  QCOMPARE(panel.thinkingBudget(), -1);
  QCOMPARE(budgets(spy), QList<int>{-1});
  QVERIFY(child<QCheckBox>(panel, "budget_unlimited")->isChecked());
  QVERIFY(!child<QSlider>(panel, "budget_slider")->isEnabled());
}

void ControlsPanelTest::sliderEmitsLive() {
  ControlsPanel panel;
  panel.setData(withModel(moeModel()));
  panel.setThinkingBudget(40);
  QSignalSpy spy(&panel, &ControlsPanel::budgetChanged);
  auto* slider = child<QSlider>(panel, "budget_slider");
  slider->setValue(64);
  QCOMPARE(budgets(spy), QList<int>{64});
  QCOMPARE(panel.thinkingBudget(), 64);
  QCOMPARE(child<QSpinBox>(panel, "budget_spin")->value(), 64);
  // A user's step on the slider, not just a programmatic value.
  slider->triggerAction(QAbstractSlider::SliderSingleStepAdd);
  QCOMPARE(spy.count(), 2);
  QCOMPARE(spy.last().at(0).toInt(), 64 + slider->singleStep());
  QCOMPARE(panel.thinkingBudget(), 64 + slider->singleStep());
}

void ControlsPanelTest::tableHasOneRowPerMoeLayer() {
  ControlsPanel panel;
  ModelFacts m = moeModel();
  m.layers = 6;
  m.moe_layers = 3;
  m.moe_layer_indices = {1, 3, 5};
  panel.setData(withModel(m));
  auto* table = child<QTableWidget>(panel, "interventions");
  QCOMPARE(table->rowCount(), 3);
  QCOMPARE(table->verticalHeaderItem(0)->text(), QStringLiteral("layer 1"));
  QCOMPARE(table->verticalHeaderItem(2)->text(), QStringLiteral("layer 5"));
  QVERIFY(panel.interventions().empty());
  QCOMPARE(panel.interventionProblem(), QString());

  // Typing into row 1 (layer 3) lands on layer 3 of the interventions.
  table->item(1, 1)->setText(QStringLiteral("7"));
  const Interventions iv = panel.interventions();
  QCOMPARE(int(iv.layers.size()), 6);
  QVERIFY(iv.at(3));
  QCOMPARE(iv.at(3)->forced, std::vector<int32_t>{7});
  QVERIFY(iv.layers[1].empty());
  QVERIFY(iv.layers[5].empty());

  panel.setData(withModel(moeModel()));
  QCOMPARE(table->rowCount(), 4);
}

void ControlsPanelTest::typedMaskAndTopKBecomeInterventions() {
  ControlsPanel panel;
  panel.setData(withModel(moeModel()));
  auto* table = child<QTableWidget>(panel, "interventions");
  QSignalSpy spy(&panel, &ControlsPanel::interventionsChanged);
  table->item(2, 0)->setText(QStringLiteral("1, 5"));
  QCOMPARE(spy.count(), 1);
  table->item(2, 2)->setText(QStringLiteral("3"));
  QCOMPARE(spy.count(), 2);

  const Interventions iv = panel.interventions();
  QCOMPARE(int(iv.layers.size()), 4);
  QCOMPARE(iv.layers[2].masked, (std::vector<int32_t>{1, 5}));
  QVERIFY(iv.layers[2].forced.empty());
  QCOMPARE(iv.layers[2].top_k, 3);
  for (int l : {0, 1, 3}) QVERIFY2(iv.layers[size_t(l)].empty(), qPrintable(QString::number(l)));
  QCOMPARE(panel.interventionProblem(), QString());

  // "Clear all" empties the table again and says so.
  spy.clear();
  QPushButton* clear = nullptr;
  for (auto* b : panel.findChildren<QPushButton*>())
    if (b->text() == QStringLiteral("Clear all")) clear = b;
  QVERIFY(clear);
  clear->click();
  QVERIFY(spy.count() >= 1);
  QVERIFY(panel.interventions().empty());
}

void ControlsPanelTest::invalidExpertIdIsReportedAndLeftOut() {
  ControlsPanel panel;
  panel.setData(withModel(moeModel()));
  auto* table = child<QTableWidget>(panel, "interventions");
  table->item(1, 1)->setText(QStringLiteral("4"));
  QSignalSpy spy(&panel, &ControlsPanel::interventionsChanged);
  table->item(2, 0)->setText(QStringLiteral("99"));
  QCOMPARE(spy.count(), 1);

  const QString problem = panel.interventionProblem();
  QVERIFY(!problem.isEmpty());
  QVERIFY2(problem.contains(QStringLiteral("layer 2")), qPrintable(problem));
  QVERIFY2(problem.contains(QStringLiteral("99")), qPrintable(problem));
  QVERIFY2(problem.contains(QStringLiteral("mask")), qPrintable(problem));
  QVERIFY2(child<QLabel>(panel, "intervention_status")->text().contains(problem), qPrintable(problem));

  const Interventions iv = panel.interventions();
  QVERIFY(iv.layers[2].masked.empty());  // the bad cell is left out …
  QCOMPARE(iv.layers[1].forced, std::vector<int32_t>{4});  // … the good ones still apply

  // A negative id and a word are no expert ids either.
  table->item(2, 0)->setText(QStringLiteral("-1"));
  QVERIFY(panel.interventionProblem().contains(QStringLiteral("layer 2")));
  table->item(2, 0)->setText(QStringLiteral("two"));
  QVERIFY(panel.interventionProblem().contains(QStringLiteral("layer 2")));
  table->item(2, 0)->setText(QStringLiteral("15"));
  QCOMPARE(panel.interventionProblem(), QString());
  QCOMPARE(child<QLabel>(panel, "intervention_status")->text(), QString());
  QCOMPARE(panel.interventions().layers[2].masked, std::vector<int32_t>{15});
}

void ControlsPanelTest::invalidTopKIsReported() {
  ControlsPanel panel;
  panel.setData(withModel(moeModel()));
  auto* table = child<QTableWidget>(panel, "interventions");
  table->item(3, 2)->setText(QStringLiteral("17"));
  const QString problem = panel.interventionProblem();
  QVERIFY2(problem.contains(QStringLiteral("layer 3")) && problem.contains(QStringLiteral("top-k")), qPrintable(problem));
  QVERIFY(panel.interventions().empty());
  table->item(3, 2)->setText(QStringLiteral("16"));
  QCOMPARE(panel.interventionProblem(), QString());
  QCOMPARE(panel.interventions().layers[3].top_k, 16);
}

void ControlsPanelTest::denseSetsTopKToAllExperts() {
  ControlsPanel panel;
  panel.setData(withModel(moeModel()));
  auto* dense = child<QCheckBox>(panel, "dense");
  auto* table = child<QTableWidget>(panel, "interventions");
  QVERIFY(dense->isEnabled());
  table->item(0, 0)->setText(QStringLiteral("3"));
  QSignalSpy spy(&panel, &ControlsPanel::interventionsChanged);
  dense->setChecked(true);
  QCOMPARE(spy.count(), 1);
  QVERIFY(!table->isEnabled());

  const Interventions iv = panel.interventions();
  QCOMPARE(int(iv.layers.size()), 4);
  for (int l = 0; l < 4; ++l) {
    QCOMPARE(iv.layers[size_t(l)].top_k, 16);
    QVERIFY(iv.layers[size_t(l)].masked.empty());  // dense means every expert, the table aside
  }

  dense->setChecked(false);
  QCOMPARE(spy.count(), 2);
  QVERIFY(table->isEnabled());
  QCOMPARE(panel.interventions().layers[0].masked, std::vector<int32_t>{3});
  QCOMPARE(panel.interventions().layers[0].top_k, 0);
}

void ControlsPanelTest::denseModelDisablesInterventions() {
  ControlsPanel panel;
  panel.setData(withModel(denseModel()));
  auto* dense = child<QCheckBox>(panel, "dense");
  QVERIFY(!dense->isEnabled());
  QCOMPARE(child<QTableWidget>(panel, "interventions")->rowCount(), 0);
  QVERIFY(!child<QLabel>(panel, "intervention_status")->text().isEmpty());
  QVERIFY(panel.interventions().empty());
  QCOMPARE(panel.interventionProblem(), QString());

  // No model at all is the same; a MoE model enables it again.
  panel.setData(WorkbenchData::empty());
  QVERIFY(!dense->isEnabled());
  QVERIFY(panel.interventions().empty());
  panel.setData(withModel(moeModel()));
  QVERIFY(dense->isEnabled());
  QCOMPARE(child<QTableWidget>(panel, "interventions")->rowCount(), 4);
}

void ControlsPanelTest::samplingFollowsRecommended() {
  ControlsPanel panel;
  panel.setData(withModel(moeModel()));
  auto* recommended = child<QCheckBox>(panel, "recommended");
  auto* greedy = child<QCheckBox>(panel, "greedy");
  auto* temperature = child<QDoubleSpinBox>(panel, "temperature");
  QVERIFY(recommended->isChecked());
  QVERIFY(!panel.sampling().has_value());
  QVERIFY(!temperature->isEnabled());
  QVERIFY(!greedy->isEnabled());

  recommended->setChecked(false);
  QVERIFY(temperature->isEnabled());
  temperature->setValue(0.85);
  child<QDoubleSpinBox>(panel, "top_p")->setValue(0.7);
  child<QSpinBox>(panel, "top_k")->setValue(33);
  child<QDoubleSpinBox>(panel, "min_p")->setValue(0.05);
  child<QDoubleSpinBox>(panel, "repetition_penalty")->setValue(1.1);
  child<QSpinBox>(panel, "seed")->setValue(1234);
  auto s = panel.sampling();
  QVERIFY(s.has_value());
  QVERIFY(!s->greedy);
  QCOMPARE(s->temperature, 0.85f);
  QCOMPARE(s->top_p, 0.7f);
  QCOMPARE(s->top_k, 33);
  QCOMPARE(s->min_p, 0.05f);
  QCOMPARE(s->repetition_penalty, 1.1f);
  QCOMPARE(s->seed, uint64_t(1234));

  greedy->setChecked(true);
  QVERIFY(!temperature->isEnabled());  // greedy ignores the random-sampling fields
  QVERIFY(child<QDoubleSpinBox>(panel, "repetition_penalty")->isEnabled());
  s = panel.sampling();
  QVERIFY(s.has_value());
  QVERIFY(s->greedy);

  recommended->setChecked(true);
  QVERIFY(!panel.sampling().has_value());
}

void ControlsPanelTest::settingsRoundTrip() {
  QTemporaryDir dir;
  QVERIFY(dir.isValid());
  const QString ini = dir.filePath(QStringLiteral("controls.ini"));
  {
    ControlsPanel panel;
    panel.setData(withModel(moeModel()));
    panel.setMode(QStringLiteral("no-think"));
    child<QSpinBox>(panel, "max_tokens")->setValue(777);
    panel.setThinkingBudget(300);
    child<QCheckBox>(panel, "recommended")->setChecked(false);
    child<QDoubleSpinBox>(panel, "temperature")->setValue(1.25);
    child<QDoubleSpinBox>(panel, "top_p")->setValue(0.6);
    child<QSpinBox>(panel, "top_k")->setValue(7);
    child<QDoubleSpinBox>(panel, "min_p")->setValue(0.025);
    child<QDoubleSpinBox>(panel, "repetition_penalty")->setValue(1.3);
    child<QSpinBox>(panel, "seed")->setValue(99);
    panel.setHookLevel(HookLevel::Routing);
    panel.setPace(12);
    QSettings settings(ini, QSettings::IniFormat);
    panel.saveSettings(settings);
    settings.sync();
    QCOMPARE(settings.status(), QSettings::NoError);
  }
  QSettings settings(ini, QSettings::IniFormat);
  ControlsPanel restored;
  restored.setData(withModel(moeModel()));
  QSignalSpy budget(&restored, &ControlsPanel::budgetChanged);
  QSignalSpy hooks(&restored, &ControlsPanel::hookLevelChanged);
  QSignalSpy pace(&restored, &ControlsPanel::paceChanged);
  restored.restoreSettings(settings);
  QCOMPARE(restored.mode(), QStringLiteral("no-think"));
  QCOMPARE(restored.maxNewTokens(), 777);
  QCOMPARE(restored.thinkingBudget(), 300);
  QCOMPARE(budget.last().at(0).toInt(), 300);
  QCOMPARE(restored.hookLevel(), HookLevel::Routing);
  QCOMPARE(hooks.count(), 1);
  QCOMPARE(restored.pace(), 12.0);
  QCOMPARE(pace.last().at(0).toDouble(), 12.0);
  const auto s = restored.sampling();
  QVERIFY(s.has_value());
  QVERIFY(!s->greedy);
  QCOMPARE(s->temperature, 1.25f);
  QCOMPARE(s->top_p, 0.6f);
  QCOMPARE(s->top_k, 7);
  QCOMPARE(s->min_p, 0.025f);
  QCOMPARE(s->repetition_penalty, 1.3f);
  QCOMPARE(s->seed, uint64_t(99));

  // Unlimited and "recommended" survive the trip too.
  {
    ControlsPanel panel;
    panel.setThinkingBudget(-1);
    QSettings again(dir.filePath(QStringLiteral("defaults.ini")), QSettings::IniFormat);
    panel.saveSettings(again);
    ControlsPanel other;
    other.setThinkingBudget(50);
    other.restoreSettings(again);
    QCOMPARE(other.thinkingBudget(), -1);
    QVERIFY(!other.sampling().has_value());
    QCOMPARE(other.mode(), panel.mode());
  }
}

void ControlsPanelTest::stopButtons() {
  ControlsPanel panel;
  panel.setData(withModel(moeModel()));
  auto* stop = child<QPushButton>(panel, "stop");
  auto* stop_thinking = child<QPushButton>(panel, "stop_thinking");
  QVERIFY(!stop->isEnabled());
  QVERIFY(!stop_thinking->isEnabled());

  QSignalSpy stops(&panel, &ControlsPanel::stopRequested);
  QSignalSpy stop_thinkings(&panel, &ControlsPanel::stopThinkingRequested);
  stop->click();  // a disabled button does nothing
  QCOMPARE(stops.count(), 0);

  panel.setGenerating(true);
  QVERIFY(stop->isEnabled());
  QVERIFY(stop_thinking->isEnabled());
  stop_thinking->click();
  QCOMPARE(stop_thinkings.count(), 1);
  QCOMPARE(stops.count(), 0);
  stop->click();
  QCOMPARE(stops.count(), 1);
  QCOMPARE(stop_thinkings.count(), 1);

  panel.setGenerating(false);
  QVERIFY(!stop->isEnabled());
  QVERIFY(!stop_thinking->isEnabled());

  // A model without thinking can be stopped but has no thinking to stop.
  ModelFacts plain = moeModel();
  plain.supports_thinking = false;
  panel.setData(withModel(plain));
  panel.setGenerating(true);
  QVERIFY(stop->isEnabled());
  QVERIFY(!stop_thinking->isEnabled());
}

void ControlsPanelTest::generatingFollowsTheLastTurn() {
  ControlsPanel panel;
  WorkbenchData data = withModel(moeModel());
  ChatTurn turn;
  turn.finished = false;
  turn.thinking_tokens = 9;
  data.chat = std::make_shared<const std::vector<ChatTurn>>(std::vector<ChatTurn>{turn});
  panel.setData(data);
  QVERIFY(child<QPushButton>(panel, "stop")->isEnabled());
  QVERIFY(child<QPushButton>(panel, "stop_thinking")->isEnabled());
  turn.finished = true;
  data.chat = std::make_shared<const std::vector<ChatTurn>>(std::vector<ChatTurn>{turn});
  panel.setData(data);
  QVERIFY(!child<QPushButton>(panel, "stop")->isEnabled());
}

QTEST_MAIN(ControlsPanelTest)
#include "controls_panel_test.moc"
