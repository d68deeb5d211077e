// ExpertLoadModel shows the counts inspect::ExpertLoad gathered, and behaves as a Qt model should.
#include <QAbstractItemModelTester>
#include <QtTest>

#include "views/expert_load_model.h"

using moe::inspect::ExpertLoad;
using moe::views::ExpertLoadModel;

class ExpertLoadModelTest : public QObject {
  Q_OBJECT
 private slots:
  void showsCountsSharesAndDeadExperts() {
    ExpertLoad load({1, 3}, 4);  // MoE layers 1 and 3, four experts
    const int32_t a[] = {0, 2}, b[] = {2, 3}, c[] = {1, 0};
    const float w[] = {0.75f, 0.25f};
    load.add(1, a, w);
    load.add(1, b, w);
    load.add(3, c, w);
    load.add(2, c, w);  // not a MoE layer: ignored

    ExpertLoadModel model;
    QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
    model.setSnapshot(load);
    QCOMPARE(model.rowCount(), 2);
    QCOMPARE(model.columnCount(), 4);
    QCOMPARE(model.headerData(1, Qt::Vertical).toString(), QStringLiteral("layer 3"));
    QCOMPARE(model.headerData(2, Qt::Horizontal).toString(), QStringLiteral("E2"));
    QCOMPARE(model.data(model.index(0, 2)).toLongLong(), 2LL);   // layer 1, expert 2: both tokens
    QCOMPARE(model.data(model.index(0, 1)).toLongLong(), 0LL);
    QCOMPARE(model.data(model.index(0, 2), ExpertLoadModel::ShareRole).toDouble(), 0.5);  // 2 of 4 selections
    QVERIFY(model.data(model.index(0, 1), ExpertLoadModel::DeadRole).toBool());
    QVERIFY(!model.data(model.index(1, 0), ExpertLoadModel::DeadRole).toBool());
    QVERIFY(model.data(model.index(0, 0), Qt::ToolTipRole).toString().contains(QStringLiteral("gate weight 0.750")));

    load.clear();
    model.setSnapshot(load);
    QCOMPARE(model.data(model.index(0, 2)).toLongLong(), 0LL);
  }
};

QTEST_MAIN(ExpertLoadModelTest)
#include "expert_load_model_test.moc"
