// RoutingMap holds, cell for cell, the first expert (or router entropy) of the recorded session's
// trace, marks the forced stop and the selected token, and ends the same whether the session arrives at
// once or streams in.
#include <QtTest>
#include <cmath>
#include <qcustomplot.h>

#include "view_fixture.h"
#include "views/routing_map.h"
#include "views/token_selection.h"

using moe::views::RoutingMap;
using moe::views::TokenSelection;
using moe::views::WorkbenchData;

namespace {

// The session as it stood after its first n rows: every per-row column cut to n rows, the forced stops
// whose first injected token had run, the text of those rows.
WorkbenchData prefix(const WorkbenchData& full, int64_t n) {
  const moe::inspect::Trace& t = *full.trace;
  auto cut = std::make_shared<moe::inspect::Trace>(t);
  const size_t rows = size_t(n), M = size_t(t.n_moe()), K = size_t(t.top_k), L = size_t(t.n_layers),
               H = size_t(t.n_heads), E = size_t(t.n_experts);
  auto shrink = [](auto& column, size_t size) {
    if (column.size() > size) column.resize(size);
  };
  shrink(cut->tokens, rows);
  shrink(cut->positions, rows);
  shrink(cut->phases, rows);
  shrink(cut->forced, rows);
  shrink(cut->generated, rows);
  shrink(cut->step, rows);
  shrink(cut->segment, rows);
  shrink(cut->has_routing, rows);
  shrink(cut->expert_ids, rows * M * K);
  shrink(cut->expert_weights, rows * M * K);
  shrink(cut->router_entropy, rows * M);
  shrink(cut->top1_margin, rows * M);
  shrink(cut->shared_gate, rows * M);
  shrink(cut->has_router_probs, rows);
  shrink(cut->router_probs, rows * M * E);
  shrink(cut->has_attention, rows);
  for (auto* column : {&cut->attn_entropy, &cut->attn_max, &cut->attn_topk_mass, &cut->attn_first_mass})
    shrink(*column, rows * L * H);
  shrink(cut->has_hidden_norm, rows);
  shrink(cut->hidden_norm, rows * L);
  cut->forced_stops.clear();
  for (const auto& stop : t.forced_stops)
    for (size_t r = 0; r < rows; ++r)
      if (t.positions[r] == stop.position && t.forced[r]) cut->forced_stops.push_back(stop);

  WorkbenchData data = full;
  data.trace = cut;
  auto text = std::make_shared<std::vector<std::string>>(*full.token_text);
  shrink(*text, rows);
  data.token_text = text;
  data.version = uint64_t(n) + 1;
  return data;
}

// A long session: the recorded one played `times` times in a row (every per-row column repeated, the
// positions and forced stops moved on by the length of one play).
WorkbenchData repeated(const WorkbenchData& once, int times) {
  const moe::inspect::Trace& t = *once.trace;
  auto r = std::make_shared<moe::inspect::Trace>(t);
  auto repeat = [times](auto& column, const auto& source) {
    column.clear();
    for (int i = 0; i < times; ++i) column.insert(column.end(), source.begin(), source.end());
  };
  repeat(r->tokens, t.tokens);
  r->positions.clear();
  r->forced_stops.clear();
  const int32_t length = int32_t(t.size());
  for (int i = 0; i < times; ++i) {
    for (int32_t p : t.positions) r->positions.push_back(p + i * length);
    for (auto stop : t.forced_stops) {
      stop.position += i * length;
      r->forced_stops.push_back(stop);
    }
  }
  repeat(r->phases, t.phases);
  repeat(r->forced, t.forced);
  repeat(r->generated, t.generated);
  repeat(r->step, t.step);
  repeat(r->segment, t.segment);
  repeat(r->has_routing, t.has_routing);
  repeat(r->expert_ids, t.expert_ids);
  repeat(r->expert_weights, t.expert_weights);
  repeat(r->router_entropy, t.router_entropy);
  repeat(r->top1_margin, t.top1_margin);
  r->has_router_probs.clear();
  r->router_probs.clear();
  r->has_attention.clear();
  r->has_hidden_norm.clear();
  WorkbenchData data = once;
  data.trace = r;
  auto text = std::make_shared<std::vector<std::string>>();
  repeat(*text, *once.token_text);
  data.token_text = text;
  return data;
}

QCPColorMap* tokenMap(const RoutingMap& map) {
  return qobject_cast<QCPColorMap*>(map.plot()->plottable(0));
}

size_t slot(const moe::inspect::Trace& t, int64_t row, int m) {
  return (size_t(row) * size_t(t.n_moe()) + size_t(m)) * size_t(t.top_k);
}

bool routed(const moe::inspect::Trace& t, int64_t row, int m) {
  return t.has_routing[size_t(row)] && t.expert_ids[slot(t, row, m)] >= 0;
}

}  // namespace

class RoutingMapTest : public QObject {
  Q_OBJECT
 private:
  WorkbenchData session_ = moe::views::fixture::demoSession();

 private slots:
  void holdsTheFirstExpertOfEveryRoutedCell() {
    const moe::inspect::Trace& t = *session_.trace;
    QVERIFY(t.size() > 0);
    TokenSelection selection;
    RoutingMap map(&selection);
    map.setData(session_);
    QCOMPARE(map.mode(), RoutingMap::FirstExpert);
    QCOMPARE(map.columns(), t.size());
    int routed_cells = 0;
    for (int64_t row = 0; row < t.size(); ++row)
      for (int m = 0; m < t.n_moe(); ++m) {
        if (!routed(t, row, m)) {
          QVERIFY2(std::isnan(map.cellValue(row, m)), qPrintable(QStringLiteral("row %1 layer %2").arg(row).arg(m)));
          continue;
        }
        ++routed_cells;
        QCOMPARE(map.cellValue(row, m), double(t.expert_ids[slot(t, row, m)]));
      }
    QVERIFY(routed_cells > 0);
    QVERIFY(std::isnan(map.cellValue(t.size(), 0)));  // past the last token
    QVERIFY(std::isnan(map.cellValue(0, t.n_moe())));  // no such layer
  }

  void holdsTheRouterEntropyInEntropyMode() {
    const moe::inspect::Trace& t = *session_.trace;
    RoutingMap map(nullptr);
    map.setData(session_);
    map.setMode(RoutingMap::RouterEntropy);
    QCOMPARE(map.mode(), RoutingMap::RouterEntropy);
    for (int64_t row = 0; row < t.size(); ++row)
      for (int m = 0; m < t.n_moe(); ++m) {
        const double expected = routed(t, row, m) ? double(t.router_entropy[size_t(row) * size_t(t.n_moe()) + size_t(m)])
                                                  : std::nan("");
        if (std::isnan(expected))
          QVERIFY(std::isnan(map.cellValue(row, m)));
        else
          QCOMPARE(map.cellValue(row, m), expected);
      }
    map.setMode(RoutingMap::FirstExpert);
    QCOMPARE(map.cellValue(t.size() - 1, 0), double(t.expert_ids[slot(t, t.size() - 1, 0)]));
  }

  void rowsWithoutRoutingAreEmpty() {
    // Rows that did not record routing (a step run at hook level off) show nothing, however their
    // columns read.
    auto trace = std::make_shared<moe::inspect::Trace>(*session_.trace);
    const std::vector<int64_t> unrouted = {0, 5, trace->size() - 1};
    for (int64_t row : unrouted) trace->has_routing[size_t(row)] = 0;
    WorkbenchData data = session_;
    data.trace = trace;
    RoutingMap map(nullptr);
    map.setData(data);
    for (int64_t row : unrouted)
      for (int m = 0; m < trace->n_moe(); ++m) QVERIFY(std::isnan(map.cellValue(row, m)));
    QCOMPARE(map.cellValue(1, 0), double(trace->expert_ids[slot(*trace, 1, 0)]));
  }

  void marksTheForcedStop() {
    QCOMPARE(int(session_.trace->forced_stops.size()), 1);
    RoutingMap map(nullptr);
    map.setData(session_);
    QCOMPARE(map.forcedStopMarkers(), 1);
    // The line stands just before the first injected token.
    int64_t first_forced = -1;
    for (int64_t row = 0; row < session_.trace->size() && first_forced < 0; ++row)
      if (session_.trace->forced[size_t(row)]) first_forced = row;
    QVERIFY(first_forced > 0);
    QList<QCPItemStraightLine*> lines;
    for (int i = 0; i < map.plot()->itemCount(); ++i)
      if (auto* line = qobject_cast<QCPItemStraightLine*>(map.plot()->item(i))) lines.push_back(line);
    QCOMPARE(lines.size(), 1);
    QCOMPARE(lines[0]->point1->coords().x(), first_forced - 0.5);
  }

  void followsTheSelection() {
    TokenSelection selection;
    RoutingMap map(&selection);
    map.resize(800, 300);
    map.show();
    QVERIFY(QTest::qWaitForWindowExposed(&map));
    map.setData(session_);
    QCOMPARE(map.markedRow(), -1);
    selection.setRow(30);
    QCOMPARE(map.markedRow(), 30);
    selection.setRow(2);
    QCOMPARE(map.markedRow(), 2);
    const QCPRange shown = map.visibleRows();
    QVERIFY(shown.contains(2));
    selection.setRow(-1);
    QCOMPARE(map.markedRow(), -1);
  }

  void clickingACellSelectsItsToken() {
    TokenSelection selection;
    RoutingMap map(&selection);
    map.resize(800, 300);
    map.show();
    QVERIFY(QTest::qWaitForWindowExposed(&map));
    map.setData(session_);
    map.plot()->replot();
    QCPAxisRect* rect = map.plot()->axisRects().first();
    const int x = int(rect->axis(QCPAxis::atBottom)->coordToPixel(40));
    const int y = int(rect->axis(QCPAxis::atLeft)->coordToPixel(1));
    QTest::mouseClick(map.plot(), Qt::LeftButton, Qt::NoModifier, QPoint(x, y));
    QCOMPARE(selection.row(), qint64(40));
    QCOMPARE(map.markedRow(), qint64(40));
  }

  void streamingEndsAsFeedingAtOnce() {
    const moe::inspect::Trace& t = *session_.trace;
    TokenSelection selection;
    RoutingMap whole(&selection), streamed(&selection);
    streamed.resize(800, 300);
    streamed.show();
    QVERIFY(QTest::qWaitForWindowExposed(&streamed));
    whole.setData(session_);
    for (int64_t n : {int64_t(0), int64_t(1), int64_t(7), int64_t(21), int64_t(22), int64_t(50), t.size() - 3, t.size()}) {
      streamed.setData(prefix(session_, n));
      QCOMPARE(streamed.columns(), n);
      QVERIFY(streamed.following());
      // Following keeps the latest token in view.
      if (n > 0) QVERIFY(streamed.visibleRows().contains(double(n - 1)));
    }
    QCOMPARE(streamed.columns(), whole.columns());
    QCOMPARE(streamed.forcedStopMarkers(), whole.forcedStopMarkers());
    for (int64_t row = 0; row < t.size(); ++row)
      for (int m = 0; m < t.n_moe(); ++m) {
        const double a = streamed.cellValue(row, m), b = whole.cellValue(row, m);
        QVERIFY2((std::isnan(a) && std::isnan(b)) || a == b, qPrintable(QStringLiteral("row %1 layer %2").arg(row).arg(m)));
      }
  }

  void followsTheLatestRowsOfALongSession() {
    // A session longer than the follow window scrolls: the window ends at the last row.
    const int64_t n = session_.trace->size();
    RoutingMap map(nullptr);
    map.setData(session_);
    const QCPRange shown = map.visibleRows();
    QCOMPARE(shown.size(), double(RoutingMap::kFollowWindow));
    QVERIFY(shown.contains(double(n - 1)));
    // Scrolling away turns following off, and new rows leave the range alone; Follow brings it back.
    map.plot()->axisRects().first()->axis(QCPAxis::atBottom)->setRange(0, 20);
    QVERIFY(!map.following());
    map.setData(prefix(session_, n));
    QCOMPARE(map.visibleRows().upper, 20.0);
    map.setFollowing(true);
    QVERIFY(map.visibleRows().contains(double(n - 1)));
  }

  void aLongSessionScrollsAndDrawsOnlyAroundTheScreen() {
    const WorkbenchData longer = repeated(session_, 40);
    const moe::inspect::Trace& t = *longer.trace;
    const int64_t n = t.size();
    TokenSelection selection;
    RoutingMap map(&selection);
    map.resize(800, 300);
    map.show();
    QVERIFY(QTest::qWaitForWindowExposed(&map));
    for (int64_t rows = 500; rows < n; rows += 500) map.setData(prefix(longer, rows));
    map.setData(longer);
    QCOMPARE(map.columns(), n);
    QCOMPARE(map.forcedStopMarkers(), 40);
    // Following: the last kFollowWindow rows are shown, and the plotted data is a window around them,
    // not the whole session.
    QCOMPARE(map.visibleRows().upper, n - 0.5);
    QCOMPARE(map.visibleRows().size(), double(RoutingMap::kFollowWindow));
    QVERIFY(tokenMap(map)->data()->keySize() <= 5 * RoutingMap::kFollowWindow);  // a few follow windows, not n
    QCOMPARE(map.cellValue(n - 1, 3), double(t.expert_ids[slot(t, n - 1, 3)]));
    // Selecting an early token scrolls there, stops following, and the plotted window moves with it.
    selection.setRow(10);
    QVERIFY(!map.following());
    QVERIFY(map.visibleRows().contains(10));
    QCPColorMapData* drawn = tokenMap(map)->data();
    QVERIFY(drawn->keyRange().contains(10));
    QCOMPARE(drawn->data(10, 2), double(t.expert_ids[slot(t, 10, 2)]));
    for (int64_t row = 0; row < n; row += 7)
      for (int m = 0; m < t.n_moe(); ++m) QCOMPARE(map.cellValue(row, m), double(t.expert_ids[slot(t, row, m)]));
    map.setMode(RoutingMap::RouterEntropy);
    QCOMPARE(tokenMap(map)->data()->data(12, 1), double(t.router_entropy[12 * size_t(t.n_moe()) + 1]));
  }

  void explainsEmptyAndDenseData() {
    RoutingMap map(nullptr);
    map.setData(WorkbenchData::empty());
    QCOMPARE(map.columns(), qint64(0));
    QCOMPARE(map.forcedStopMarkers(), 0);
    auto dense = std::make_shared<moe::inspect::Trace>(*session_.trace);
    dense->moe_layers.clear();
    dense->n_experts = 0;
    dense->top_k = 0;
    dense->has_routing.assign(dense->has_routing.size(), 0);
    dense->expert_ids.clear();
    dense->expert_weights.clear();
    dense->router_entropy.clear();
    WorkbenchData data = session_;
    data.trace = dense;
    map.setData(data);
    QCOMPARE(map.columns(), dense->size());
    QVERIFY(std::isnan(map.cellValue(0, 0)));
    map.setData(session_);  // and back to a MoE session
    QCOMPARE(map.cellValue(1, 0), double(session_.trace->expert_ids[slot(*session_.trace, 1, 0)]));
  }
};

QTEST_MAIN(RoutingMapTest)
#include "routing_map_test.moc"
