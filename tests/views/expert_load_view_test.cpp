// ExpertLoadView counts the recorded session's selections per layer and expert over the chosen window
// of tokens, marks dead and overloaded experts by its rule, and states the load measures; the expected
// numbers are counted here straight from the trace's expert_ids.
#include <QtTest>
#include <cmath>
#include <qcustomplot.h>

#include "view_fixture.h"
#include "views/expert_load_view.h"

using moe::views::ExpertLoadView;
using moe::views::WorkbenchData;

namespace {

// Selections per (MoE ordinal, expert) and routed tokens per MoE ordinal over the rows [begin, end)
// whose phase passes `keep`.
struct Counts {
  int experts = 0, top_k = 0;
  std::vector<std::vector<int64_t>> selections;  // [M][E]
  std::vector<int64_t> tokens;                   // [M]
};

template <class Keep>
Counts countSelections(const moe::inspect::Trace& t, int64_t begin, int64_t end, Keep keep) {
  Counts c;
  c.experts = t.n_experts;
  c.top_k = t.top_k;
  c.selections.assign(size_t(t.n_moe()), std::vector<int64_t>(size_t(t.n_experts), 0));
  c.tokens.assign(size_t(t.n_moe()), 0);
  for (int64_t row = begin; row < end; ++row) {
    if (!t.has_routing[size_t(row)] || !keep(row)) continue;
    for (int m = 0; m < t.n_moe(); ++m) {
      c.tokens[size_t(m)] += 1;
      for (int k = 0; k < t.top_k; ++k) {
        const int32_t e = t.expert_ids[(size_t(row) * size_t(t.n_moe()) + size_t(m)) * size_t(t.top_k) + size_t(k)];
        if (e >= 0) c.selections[size_t(m)][size_t(e)] += 1;
      }
    }
  }
  return c;
}

Counts countAll(const moe::inspect::Trace& t) {
  return countSelections(t, 0, t.size(), [](int64_t) { return true; });
}

double cvOf(const std::vector<int64_t>& counts) {
  double mean = 0;
  for (int64_t c : counts) mean += double(c);
  mean /= double(counts.size());
  double var = 0;
  for (int64_t c : counts) var += (double(c) - mean) * (double(c) - mean);
  return std::sqrt(var / double(counts.size())) / mean;
}

// The bars as the plot holds them right now (not through the view's accessors, which catch up first).
QVector<double> plottedBars(const ExpertLoadView& view, int experts) {
  QVector<double> values(experts, 0.0);
  for (int i = 0; i < view.barPlot()->plottableCount(); ++i) {
    auto* bars = qobject_cast<QCPBars*>(view.barPlot()->plottable(i));
    if (!bars) continue;
    for (auto it = bars->data()->constBegin(); it != bars->data()->constEnd(); ++it) {
      const int e = int(std::lround(it->key));
      if (e >= 0 && e < experts) values[e] = it->value;
    }
  }
  return values;
}

QVector<double> asDoubles(const std::vector<int64_t>& counts) {
  QVector<double> out;
  for (int64_t c : counts) out.push_back(double(c));
  return out;
}

}  // namespace

class ExpertLoadViewTest : public QObject {
  Q_OBJECT
 private:
  WorkbenchData session_ = moe::views::fixture::demoSession();

  // Every cell of the heatmap against count / (tokens × k).
  void compareHeatmap(const ExpertLoadView& view, const Counts& expected) {
    for (int m = 0; m < int(expected.tokens.size()); ++m)
      for (int e = 0; e < expected.experts; ++e) {
        const double share = double(expected.selections[size_t(m)][size_t(e)]) /
                             double(expected.tokens[size_t(m)] * expected.top_k);
        QVERIFY2(std::abs(view.heatValue(m, e) - share) < 1e-12,
                 qPrintable(QStringLiteral("layer %1 expert %2: %3 vs %4").arg(m).arg(e).arg(view.heatValue(m, e)).arg(share)));
      }
  }

 private slots:
  void heatmapHoldsEachLayersShares() {
    const moe::inspect::Trace& t = *session_.trace;
    ExpertLoadView view;
    view.setData(session_);
    QVERIFY(view.message().isEmpty());
    const Counts expected = countAll(t);
    QCOMPARE(expected.tokens[0], t.size());  // the fixture routes every row
    compareHeatmap(view, expected);
    QVERIFY(std::isnan(view.heatValue(t.n_moe(), 0)));
  }

  void barsShowTheSelectedLayer() {
    const moe::inspect::Trace& t = *session_.trace;
    ExpertLoadView view;
    view.setData(session_);
    QCOMPARE(view.selectedLayer(), 0);
    view.selectLayer(1);
    QCOMPARE(view.selectedLayer(), 1);
    const Counts expected = countAll(t);
    QCOMPARE(view.barValues(), asDoubles(expected.selections[1]));
    QCOMPARE(view.uniformLine(), double(expected.tokens[1] * t.top_k) / t.n_experts);
    view.selectLayer(t.n_moe());  // no such layer: the selection stays
    QCOMPARE(view.selectedLayer(), 1);
  }

  void marksDeadAndOverloadedExpertsByTheRule() {
    // Dead: no selection. Overloaded: more than 2 × the layer's mean selections (tokens × k / E).
    const moe::inspect::Trace& t = *session_.trace;
    const Counts expected = countAll(t);
    ExpertLoadView view;
    view.setData(session_);
    int flagged = 0;
    for (int m = 0; m < t.n_moe(); ++m) {
      view.selectLayer(m);
      const double mean = double(expected.tokens[size_t(m)] * t.top_k) / t.n_experts;
      QVector<int> dead, overloaded;
      for (int e = 0; e < t.n_experts; ++e) {
        const int64_t c = expected.selections[size_t(m)][size_t(e)];
        if (c == 0) dead.push_back(e);
        if (double(c) > 2.0 * mean) overloaded.push_back(e);  // the documented rule
      }
      QCOMPARE(view.deadExperts(), dead);
      QCOMPARE(view.overloadedExperts(), overloaded);
      flagged += int(dead.size() + overloaded.size());
      // The overloaded bars are the ones drawn in the warning colour.
      QCPBars* warning = nullptr;
      for (int i = 0; i < view.barPlot()->plottableCount(); ++i)
        if (auto* bars = qobject_cast<QCPBars*>(view.barPlot()->plottable(i)); bars && bars->name() == "overloaded")
          warning = bars;
      QVERIFY(warning);
      QCOMPARE(warning->data()->size(), int(overloaded.size()));
    }
    QVERIFY(flagged > 0);  // the fixture's routing is uneven enough for the rule to bite somewhere
  }

  void thinkingWindowCountsOnlyThinkingRows() {
    const moe::inspect::Trace& t = *session_.trace;
    ExpertLoadView view;
    view.setData(session_);
    view.setWindow(ExpertLoadView::Thinking);
    QCOMPARE(view.window(), ExpertLoadView::Thinking);
    const Counts expected = countSelections(t, 0, t.size(), [&](int64_t row) { return t.phases[size_t(row)] == 2; });
    QVERIFY(expected.tokens[0] > 0 && expected.tokens[0] < t.size());
    compareHeatmap(view, expected);
    QCOMPARE(view.barValues(), asDoubles(expected.selections[0]));
    QVERIFY(view.statsText().contains(QStringLiteral("%1 tokens").arg(expected.tokens[0])));
  }

  void lastTokensWindowCountsOnlyTheLastRows() {
    const moe::inspect::Trace& t = *session_.trace;
    ExpertLoadView view;
    view.setData(session_);
    view.setWindow(ExpertLoadView::LastTokens, 20);
    QCOMPARE(view.lastTokens(), 20);
    const Counts expected = countSelections(t, t.size() - 20, t.size(), [](int64_t) { return true; });
    QCOMPARE(expected.tokens[0], int64_t(20));
    compareHeatmap(view, expected);
    view.selectLayer(1);
    QCOMPARE(view.barValues(), asDoubles(expected.selections[1]));
    view.setWindow(ExpertLoadView::WholeSession);
    QCOMPARE(view.barValues(), asDoubles(countAll(t).selections[1]));
  }

  void statsLineStatesTheMeasures() {
    const moe::inspect::Trace& t = *session_.trace;
    const Counts expected = countAll(t);
    ExpertLoadView view;
    view.setData(session_);
    view.selectLayer(2);
    const QString stats = view.statsText();
    const QString cv = QString::number(cvOf(expected.selections[2]), 'f', 3);
    QVERIFY2(stats.contains(QStringLiteral("CV %1 (uniform 0.000").arg(cv)), qPrintable(stats));
    int64_t dead = 0;
    for (int64_t c : expected.selections[2]) dead += c == 0 ? 1 : 0;
    QVERIFY2(stats.contains(QStringLiteral("dead %1 (uniform 0").arg(dead)), qPrintable(stats));
    QVERIFY2(stats.contains(QStringLiteral("Layer %1,").arg(t.moe_layers[2])), qPrintable(stats));
  }

  void computesInTheBackgroundOnlyWhenVisibleAndAtMostAFewTimesASecond() {
    const moe::inspect::Trace& t = *session_.trace;
    auto shorter = std::make_shared<moe::inspect::Trace>(t);
    for (size_t r = 30; r < size_t(t.size()); ++r) shorter->has_routing[r] = 0;  // only the first 30 rows routed
    WorkbenchData early = session_;
    early.trace = shorter;
    const QVector<double> all = asDoubles(countAll(t).selections[0]);
    const QVector<double> first30 = asDoubles(countSelections(t, 0, 30, [](int64_t) { return true; }).selections[0]);

    ExpertLoadView view;
    view.resize(700, 600);
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    view.setData(early);
    QTRY_COMPARE_WITH_TIMEOUT(plottedBars(view, t.n_experts), first30, 2000);
    view.setData(session_);
    QCOMPARE(plottedBars(view, t.n_experts), first30);  // the next one waits for the refresh tick ...
    QTRY_COMPARE_WITH_TIMEOUT(plottedBars(view, t.n_experts), all, 2000);  // ... which comes

    // Hidden, it only keeps the snapshot; shown again, it counts what arrived meanwhile.
    view.hide();
    view.setData(early);
    QTest::qWait(400);
    QCOMPARE(plottedBars(view, t.n_experts), all);
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    QTRY_COMPARE_WITH_TIMEOUT(plottedBars(view, t.n_experts), first30, 2000);
  }

  void closingWhileComputingIsSafe() {
    // The worker posts its result to the view; a view closed before it arrives must not receive it.
    for (int i = 0; i < 5; ++i) {
      auto view = std::make_unique<ExpertLoadView>();
      view->show();
      view->setData(session_);
      view.reset();
      QCoreApplication::processEvents();
    }
  }

  void explainsWhyNothingIsPlotted() {
    ExpertLoadView view;
    view.setData(WorkbenchData::empty());
    QVERIFY(!view.message().isEmpty());
    QVERIFY(view.barValues().isEmpty());
    QCOMPARE(view.selectedLayer(), -1);

    // A MoE model before its first token: the empty trace has no MoE layers yet, and that is not "dense".
    WorkbenchData fresh = session_;
    fresh.trace = std::make_shared<moe::inspect::Trace>();
    QVERIFY(fresh.model && fresh.model->experts > 0);
    view.setData(fresh);
    QVERIFY2(view.message().contains(QStringLiteral("No tokens yet")), qPrintable(view.message()));

    // Dense model: no MoE layer at all.
    auto dense = std::make_shared<moe::inspect::Trace>(*session_.trace);
    dense->moe_layers.clear();
    dense->n_experts = 0;
    dense->top_k = 0;
    WorkbenchData data = session_;
    data.trace = dense;
    view.setData(data);
    QVERIFY(view.message().contains(QStringLiteral("dense")));
    QVERIFY(std::isnan(view.heatValue(0, 0)));

    // Hook level off: rows without routing.
    auto unrouted = std::make_shared<moe::inspect::Trace>(*session_.trace);
    unrouted->has_routing.assign(unrouted->has_routing.size(), 0);
    data.trace = unrouted;
    view.setData(data);
    QVERIFY(view.message().contains(QStringLiteral("No routing")));

    // A window without tokens: the session as recorded has no "other" phase, but the answer window of a
    // thinking-only prefix is empty.
    view.setData(session_);
    QVERIFY(view.message().isEmpty());
    view.setWindow(ExpertLoadView::Answer);
    auto thinking_only = std::make_shared<moe::inspect::Trace>(*session_.trace);
    for (auto& p : thinking_only->phases)
      if (p == 3) p = 2;
    data.trace = thinking_only;
    view.setData(data);
    QVERIFY(view.message().contains(QStringLiteral("No routed tokens")));
  }
};

QTEST_MAIN(ExpertLoadViewTest)
#include "expert_load_view_test.moc"
