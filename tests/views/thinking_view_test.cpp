// The thinking view on the recorded demo session: the timeline holds the turn's generated tokens, the
// running count ends at the thinking tokens, the budget line follows the turn's budget, the cut is
// marked where the injected text starts, and clicking a token selects its trace row.
#include <QtTest>
#include <cmath>
#include <qcustomplot.h>

#include "tests/views/view_fixture.h"
#include "views/thinking_view.h"
#include "views/token_selection.h"

using namespace moe;
using namespace moe::views;

namespace {

// Trace rows of the generated tokens, in order (what the turn's timeline shows).
std::vector<int64_t> generatedRows(const inspect::Trace& trace) {
  std::vector<int64_t> rows;
  for (int64_t r = 0; r < trace.size(); ++r)
    if (trace.generated[size_t(r)]) rows.push_back(r);
  return rows;
}

WorkbenchData withChat(const WorkbenchData& data, std::vector<ChatTurn> chat, uint64_t version) {
  WorkbenchData next = data;
  next.chat = std::make_shared<std::vector<ChatTurn>>(std::move(chat));
  next.version = version;
  return next;
}

// Sum of the widths of the filled runs of a strip graph (points come in threes: start, end, gap).
double stripWidth(QCPGraph* graph) {
  double width = 0, start = 0;
  int k = 0;
  for (auto it = graph->data()->constBegin(); it != graph->data()->constEnd(); ++it, ++k) {
    if (k % 3 == 0) start = it->key;
    if (k % 3 == 1) width += it->key - start;
  }
  return width;
}

QCPGraph* graphNamed(QCustomPlot* plot, const QString& name) {
  for (int i = 0; i < plot->graphCount(); ++i)
    if (plot->graph(i)->name() == name) return plot->graph(i);
  return nullptr;
}

}  // namespace

class ThinkingViewTest : public QObject {
  Q_OBJECT

 private slots:
  void timelineHoldsTheTurnsTokens() {
    const WorkbenchData data = fixture::demoSession();
    const inspect::Trace& trace = *data.trace;
    const std::vector<int64_t> rows = generatedRows(trace);
    int thinking = 0, forced_thinking = 0;
    for (int64_t r : rows) {
      if (trace.phases[size_t(r)] == uint8_t(Phase::Thinking)) {
        ++thinking;
        if (trace.forced[size_t(r)]) ++forced_thinking;
      }
    }
    QCOMPARE(int(rows.size()), 68);  // the fixture as recorded: guards the expectations below

    TokenSelection selection;
    ThinkingView view(&selection);
    view.resize(900, 600);
    view.show();
    view.setData(data);

    QCOMPARE(view.turn(), 0);
    QCOMPARE(view.timelineTokens(), int(rows.size()));
    QCOMPARE(view.thinkingTokensPlotted(), thinking);
    QCPGraph* curve = graphNamed(view.plot(), QStringLiteral("thinking tokens so far"));
    QVERIFY(curve);
    QCOMPARE(curve->data()->size(), int(rows.size()));
    QCOMPARE((curve->data()->constEnd() - 1)->value, double(thinking));
    QCPGraph* forced_strip = graphNamed(view.plot(), QStringLiteral("thinking, injected by the budget"));
    QVERIFY(forced_strip);
    QCOMPARE(stripWidth(forced_strip), double(forced_thinking));
  }

  void budgetLineFollowsTheTurnsBudget() {
    const WorkbenchData data = fixture::demoSession();
    TokenSelection selection;
    ThinkingView view(&selection);
    view.show();
    view.setData(data);
    QCOMPARE(view.budgetLine(), 12.0);

    std::vector<ChatTurn> chat = *data.chat;
    chat[0].thinking_budget = 40;
    view.setData(withChat(data, chat, 2));
    QCOMPARE(view.budgetLine(), 40.0);
    bool line_at_40 = false;
    for (int i = 0; i < view.plot()->itemCount(); ++i)
      if (auto* line = qobject_cast<QCPItemStraightLine*>(view.plot()->item(i)))
        line_at_40 |= line->visible() && line->point1->coords().y() == 40.0 && line->point2->coords().y() == 40.0;
    QVERIFY(line_at_40);
    QVERIFY(view.plot()->yAxis->range().upper > 40.0);

    chat[0].thinking_budget = -1;
    view.setData(withChat(data, chat, 3));
    QVERIFY(std::isnan(view.budgetLine()));
  }

  void forcedStopMarkedAtTheFirstInjectedToken() {
    const WorkbenchData data = fixture::demoSession();
    const std::vector<int64_t> rows = generatedRows(*data.trace);
    int first_forced = -1;
    for (size_t i = 0; i < rows.size() && first_forced < 0; ++i)
      if (data.trace->forced[size_t(rows[i])]) first_forced = int(i);
    QVERIFY(first_forced > 0);

    TokenSelection selection;
    ThinkingView view(&selection);
    view.show();
    view.setData(data);
    QCOMPARE(view.forcedStopMarkers(), 1);
    QCOMPARE(view.forcedStopIndices().value(0), double(first_forced));
    QVERIFY2(view.caption().contains(QStringLiteral("cut once")), qPrintable(view.caption()));
    QVERIFY2(view.caption().contains(QStringLiteral("budget 12")), qPrintable(view.caption()));

    // The chat's own positions place the stop when its tokens have no trace rows yet.
    std::vector<ChatTurn> unrun = *data.chat;
    for (ChatToken& t : unrun[0].tokens) {
      t.position = data.trace->positions[size_t(t.row)];
      t.row = -1;
      t.forced = false;  // no injected run to fall back on: only the position can place the marker
    }
    view.setData(withChat(data, unrun, 2));
    QCOMPARE(view.forcedStopMarkers(), 1);
    QCOMPARE(view.forcedStopIndices().value(0), double(first_forced));

    // A stop whose position is not in the turn still gets its marker, at the injected text.
    std::vector<ChatTurn> chat = *data.chat;
    chat[0].forced_stops[0].position = 100000;
    chat[0].forced_stops.push_back({100001, 5, -1});
    view.setData(withChat(data, chat, 3));
    QCOMPARE(view.forcedStopMarkers(), 2);
    QCOMPARE(view.forcedStopIndices().value(0), double(first_forced));
    QVERIFY2(view.caption().contains(QStringLiteral("stopped by user")), qPrintable(view.caption()));
  }

  void captionCountsBothPhases() {
    const WorkbenchData data = fixture::demoSession();
    const inspect::Trace& trace = *data.trace;
    int thinking = 0, answer = 0;
    for (int64_t r : generatedRows(trace)) (trace.phases[size_t(r)] == uint8_t(Phase::Thinking) ? thinking : answer) += 1;
    TokenSelection selection;
    ThinkingView view(&selection);
    view.show();
    view.setData(data);
    const QString caption = view.caption();
    QVERIFY2(caption.startsWith(QStringLiteral("Thinking %1 tokens in ").arg(thinking)), qPrintable(caption));
    QVERIFY2(caption.contains(QStringLiteral("answer %1 tokens").arg(answer)), qPrintable(caption));
  }

  // The speed curve, recomputed from the trace's step clock: each sampled (not injected) token is timed
  // at the end of the step it ran in; one point per step (but the first), counting the tokens that arrived after
  // the window's start, which lies at least 16 tokens back and before the step.
  void speedCurveFromTheStepClock() {
    const WorkbenchData data = fixture::demoSession();
    const inspect::Trace& trace = *data.trace;
    const std::vector<int64_t> rows = generatedRows(trace);
    const double start = trace.step_end_s[0] - trace.step_time_s[0];
    std::vector<double> t;
    for (int64_t r : rows)
      if (!trace.forced[size_t(r)]) t.push_back(trace.step_end_s[size_t(trace.step[size_t(r)])] - start);
    int samples = 0, first_of_step = 0;
    double last_rate = 0, max_rate = 0;
    for (size_t k = 0; k < t.size(); ++k) {
      if (k > 0 && t[k] != t[k - 1]) first_of_step = int(k);
      if (first_of_step == 0 || (k + 1 < t.size() && t[k + 1] == t[k])) continue;
      const int from = std::min(int(k) - ThinkingView::kRateWindow, first_of_step - 1);
      const double t0 = t[size_t(std::max(from, 0))];
      const auto arrived = std::count_if(t.begin(), t.end(), [&](double x) { return x > t0 && x <= t[k]; });
      ++samples;
      last_rate = double(arrived) / (t[k] - t0);
      max_rate = std::max(max_rate, last_rate);
    }
    // One per step but the prompt's, the first decode step's and the injected text's step.
    QCOMPARE(samples, int(trace.step_tokens.size()) - 3);

    TokenSelection selection;
    ThinkingView view(&selection);
    view.show();
    view.setData(data);
    QCOMPARE(view.rateSamples(), samples);
    QCPGraph* answer = graphNamed(view.plot(), QStringLiteral("speed while answering"));
    QVERIFY(answer && !answer->data()->isEmpty());
    QCOMPARE((answer->data()->constEnd() - 1)->key, t.back());
    QCOMPARE((answer->data()->constEnd() - 1)->value, last_rate);
    QCOMPARE(view.plot()->axisRect(1)->axis(QCPAxis::atLeft)->range().upper, max_rate * 1.1);
  }

  // When the chat timed its tokens, that clock wins over the trace's steps.
  void speedCurveFromTheChatClock() {
    const WorkbenchData data = fixture::demoSession();
    std::vector<ChatTurn> chat = *data.chat;
    for (size_t i = 0; i < chat[0].tokens.size(); ++i) {
      chat[0].tokens[i].elapsed_s = 0.01 * double(i + 1);
      chat[0].tokens[i].forced = false;  // an injected burst is one arrival: next test
    }
    TokenSelection selection;
    ThinkingView view(&selection);
    view.show();
    view.setData(withChat(data, chat, 2));
    QCOMPARE(view.rateSamples(), int(chat[0].tokens.size()) - 1);
    QCPGraph* answer = graphNamed(view.plot(), QStringLiteral("speed while answering"));
    QCOMPARE((answer->data()->constEnd() - 1)->key, chat[0].tokens.back().elapsed_s);
    QCOMPARE((answer->data()->constEnd() - 1)->value, ThinkingView::kRateWindow / (0.01 * ThinkingView::kRateWindow));
  }

  // The injected early-stop text arrives in one burst (microseconds apart on the chat clock) without a
  // decode step per token: it is left out of the speed curve, which would otherwise spike to millions of
  // tokens a second.
  void injectedTokensAreNotDecodeSpeed() {
    const WorkbenchData data = fixture::demoSession();
    std::vector<ChatTurn> chat = *data.chat;
    double t = 0;
    int sampled = 0;
    for (size_t i = 0; i < chat[0].tokens.size(); ++i) {
      const bool forced = chat[0].tokens[i].forced;
      t += forced ? 1e-6 : 0.01;
      sampled += !forced;
      chat[0].tokens[i].elapsed_s = t;
    }
    TokenSelection selection;
    ThinkingView view(&selection);
    view.show();
    view.setData(withChat(data, chat, 2));
    QCOMPARE(view.rateSamples(), sampled - 1);
    const double top = view.plot()->axisRect(1)->axis(QCPAxis::atLeft)->range().upper;
    QCOMPARE(top, 100.0 * 1.1);  // every sampled token 10 ms after the one before
  }

  void clickingATokenSelectsItsRow() {
    const WorkbenchData data = fixture::demoSession();
    const std::vector<int64_t> rows = generatedRows(*data.trace);
    TokenSelection selection;
    ThinkingView view(&selection);
    view.resize(900, 600);
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    view.setData(data);
    view.plot()->replot();  // lay out the axes now, so pixels map to tokens

    const int index = 20;
    QCPAxisRect* timeline = view.plot()->xAxis->axisRect();
    const QPoint at(int(view.plot()->xAxis->coordToPixel(index)), timeline->center().y());
    QTest::mouseClick(view.plot(), Qt::LeftButton, Qt::NoModifier, at);
    QCOMPARE(selection.row(), qint64(rows[index]));
    QCOMPARE(view.selectedIndex(), index);

    selection.setRow(rows[50]);
    QCOMPARE(view.selectedIndex(), 50);
    selection.setRow(3);  // a prompt row: not on the timeline
    QCOMPARE(view.selectedIndex(), -1);
  }

  void picksATurn() {
    const WorkbenchData data = fixture::demoSession();
    std::vector<ChatTurn> chat = *data.chat;
    ChatTurn answer_only = chat[0];
    answer_only.thinking = false;
    answer_only.thinking_budget = -1;
    answer_only.forced_stops.clear();
    answer_only.tokens.clear();
    for (const ChatToken& t : chat[0].tokens)
      if (t.phase == Phase::Answer) answer_only.tokens.push_back(t);
    chat.push_back(answer_only);

    TokenSelection selection;
    ThinkingView view(&selection);
    view.show();
    view.setData(withChat(data, chat, 2));
    QCOMPARE(view.turn(), 1);  // follows the latest
    QCOMPARE(view.timelineTokens(), int(answer_only.tokens.size()));
    QCOMPARE(view.thinkingTokensPlotted(), 0);
    QCOMPARE(view.forcedStopMarkers(), 0);
    QVERIFY(std::isnan(view.budgetLine()));
    QVERIFY2(view.caption().startsWith(QStringLiteral("No thinking")), qPrintable(view.caption()));

    view.setTurn(0);
    QCOMPARE(view.turn(), 0);
    QCOMPARE(view.timelineTokens(), int(chat[0].tokens.size()));
    QCOMPARE(view.forcedStopMarkers(), 1);
    view.setTurn(-1);
    QCOMPARE(view.turn(), 1);
  }

  void hiddenViewRedrawsWhenShown() {
    TokenSelection selection;
    ThinkingView view(&selection);
    view.setData(fixture::demoSession());
    QCOMPARE(view.timelineTokens(), 0);
    view.show();
    QCOMPARE(view.timelineTokens(), 68);
  }

  void emptyDataShowsNothing() {
    TokenSelection selection;
    ThinkingView view(&selection);
    view.show();
    view.setData(WorkbenchData::empty());
    QCOMPARE(view.turn(), -1);
    QCOMPARE(view.timelineTokens(), 0);
    QCOMPARE(view.rateSamples(), 0);
    QCOMPARE(view.forcedStopMarkers(), 0);
    QVERIFY(!view.caption().isEmpty());

    // A turn that has started but whose tokens have not run yet (rows -1, no times).
    WorkbenchData data = WorkbenchData::empty();
    ChatTurn turn;
    turn.thinking = true;
    turn.thinking_budget = 8;
    ChatToken pending;
    pending.phase = Phase::Thinking;
    turn.tokens.push_back(pending);
    data.chat = std::make_shared<std::vector<ChatTurn>>(std::vector<ChatTurn>{turn});
    view.setData(data);
    QCOMPARE(view.timelineTokens(), 1);
    QCOMPARE(view.thinkingTokensPlotted(), 1);
    QCOMPARE(view.rateSamples(), 0);
    QCOMPARE(view.budgetLine(), 8.0);
  }
};

QTEST_MAIN(ThinkingViewTest)
#include "thinking_view_test.moc"
