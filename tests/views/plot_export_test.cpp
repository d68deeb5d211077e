// Plot and table export: each format lands as a complete file of the right kind (checked by its magic
// bytes and, for PNG, its pixel size), no temporary file is left beside it, and failures name the file.
#include <QtTest>
#include <QDir>
#include <QFile>
#include <QImageReader>
#include <QTemporaryDir>
#include <qcustomplot.h>

#include "views/plot_export.h"

using namespace moe;
using namespace moe::views;

namespace {

constexpr int kWidth = 400, kHeight = 300;

// A small plot with something on it, at a known size (never shown: export must not need a window).
std::unique_ptr<QCustomPlot> makePlot() {
  auto plot = std::make_unique<QCustomPlot>();
  plot->setObjectName(QStringLiteral("load per expert"));
  plot->resize(kWidth, kHeight);
  QCPGraph* graph = plot->addGraph();
  graph->setData({0, 1, 2, 3}, {1, 4, 2, 8});
  plot->xAxis->setLabel(QStringLiteral("expert"));
  plot->yAxis->setLabel(QStringLiteral("tokens"));
  plot->rescaleAxes();
  return plot;
}

QByteArray readAll(const QString& path) {
  QFile f(path);
  if (!f.open(QIODevice::ReadOnly)) return {};
  return f.readAll();
}

// Everything in `dir` other than the files we meant to write: temporary names left behind.
QStringList leftovers(const QTemporaryDir& dir, const QStringList& expected) {
  QStringList extra;
  for (const QString& name : QDir(dir.path()).entryList(QDir::Files | QDir::Hidden | QDir::NoDotAndDotDot))
    if (!expected.contains(name)) extra << name;
  return extra;
}

inspect::Table smallTable() {
  inspect::Table t;
  t.title = "Expert load";
  t.columns = {"expert", "tokens", "share", "note"};
  t.add_row({0, 12, inspect::Cell(0.25, 3), "busy, often"});
  t.add_row({1, 36, inspect::Cell(0.75, 3), inspect::Cell()});
  t.notes = {"a note CSV leaves out"};
  return t;
}

}  // namespace

class PlotExportTest : public QObject {
  Q_OBJECT
 private slots:
  void png();
  void svg();
  void pdf();
  void overwritesAnExistingFile();
  void unknownSuffix();
  void unwritablePlotPath();
  void tableCsv();
  void tableCsvUnwritablePath();
};

void PlotExportTest::png() {
  QTemporaryDir dir;
  QVERIFY(dir.isValid());
  auto plot = makePlot();
  const QString path = dir.filePath(QStringLiteral("plot.png"));
  QString error;
  QVERIFY2(savePlot(plot.get(), path, &error), qPrintable(error));
  QVERIFY(error.isEmpty());
  const QByteArray bytes = readAll(path);
  QVERIFY(bytes.size() > 8);
  QVERIFY(bytes.startsWith(QByteArray("\x89PNG\r\n\x1a\n", 8)));
  QImageReader reader(path);
  QCOMPARE(reader.size(), QSize(2 * kWidth, 2 * kHeight));  // 2× for slides
  QCOMPARE(leftovers(dir, {QStringLiteral("plot.png")}), QStringList());
}

void PlotExportTest::svg() {
  QTemporaryDir dir;
  QVERIFY(dir.isValid());
  auto plot = makePlot();
  const QString path = dir.filePath(QStringLiteral("plot.SVG"));  // the suffix counts in any case
  QString error;
  QVERIFY2(savePlot(plot.get(), path, &error), qPrintable(error));
  const QByteArray bytes = readAll(path);
  QVERIFY(bytes.startsWith("<?xml"));
  QVERIFY(bytes.contains("<svg"));
  QVERIFY(bytes.trimmed().endsWith("</svg>"));  // complete, not cut off
  QVERIFY(bytes.contains("load per expert"));   // the plot's name is the drawing's title
  QVERIFY(bytes.contains(QByteArray("viewBox=\"0 0 ") + QByteArray::number(kWidth) + ' ' + QByteArray::number(kHeight)));
  QCOMPARE(leftovers(dir, {QStringLiteral("plot.SVG")}), QStringList());
}

void PlotExportTest::pdf() {
  QTemporaryDir dir;
  QVERIFY(dir.isValid());
  auto plot = makePlot();
  const QString path = dir.filePath(QStringLiteral("plot.pdf"));
  QString error;
  QVERIFY2(savePlot(plot.get(), path, &error), qPrintable(error));
  const QByteArray bytes = readAll(path);
  QVERIFY(bytes.startsWith("%PDF"));
  QVERIFY(bytes.trimmed().endsWith("%%EOF"));
  QCOMPARE(leftovers(dir, {QStringLiteral("plot.pdf")}), QStringList());
}

void PlotExportTest::overwritesAnExistingFile() {
  QTemporaryDir dir;
  QVERIFY(dir.isValid());
  auto plot = makePlot();
  for (const QString& name : {QStringLiteral("old.png"), QStringLiteral("old.pdf"), QStringLiteral("old.svg")}) {
    const QString path = dir.filePath(name);
    {
      QFile old(path);
      QVERIFY(old.open(QIODevice::WriteOnly));
      old.write("stale contents");
    }
    QString error;
    QVERIFY2(savePlot(plot.get(), path, &error), qPrintable(error));
    const QByteArray bytes = readAll(path);
    QVERIFY2(!bytes.startsWith("stale"), qPrintable(name));
    QVERIFY2(bytes.size() > 100, qPrintable(name));
  }
  QCOMPARE(leftovers(dir, {QStringLiteral("old.png"), QStringLiteral("old.pdf"), QStringLiteral("old.svg")}), QStringList());
}

void PlotExportTest::unknownSuffix() {
  QTemporaryDir dir;
  QVERIFY(dir.isValid());
  auto plot = makePlot();
  for (const QString& name : {QStringLiteral("plot.jpg"), QStringLiteral("plot")}) {
    const QString path = dir.filePath(name);
    QString error;
    QVERIFY(!savePlot(plot.get(), path, &error));
    QVERIFY2(error.contains(path), qPrintable(error));
    QVERIFY(!QFile::exists(path));
  }
  QCOMPARE(leftovers(dir, {}), QStringList());
  QVERIFY(!savePlot(plot.get(), dir.filePath(QStringLiteral("plot.gif"))));  // no error pointer is fine
}

void PlotExportTest::unwritablePlotPath() {
  QTemporaryDir dir;
  QVERIFY(dir.isValid());
  auto plot = makePlot();
  for (const QString& name : {QStringLiteral("plot.png"), QStringLiteral("plot.svg"), QStringLiteral("plot.pdf")}) {
    const QString path = dir.filePath(QStringLiteral("missing/") + name);
    QString error;
    QVERIFY2(!savePlot(plot.get(), path, &error), qPrintable(path));
    QVERIFY2(error.contains(path), qPrintable(error));
  }
  QCOMPARE(leftovers(dir, {}), QStringList());
}

void PlotExportTest::tableCsv() {
  QTemporaryDir dir;
  QVERIFY(dir.isValid());
  const inspect::Table table = smallTable();
  const QString path = dir.filePath(QStringLiteral("load.csv"));
  QString error;
  QVERIFY2(saveTableCsv(table, path, &error), qPrintable(error));
  const QByteArray bytes = readAll(path);
  const std::string csv = inspect::to_csv(table);
  QCOMPARE(bytes, QByteArray(csv.data(), qsizetype(csv.size())));
  // What a spreadsheet gets: header, quoted comma, empty cell, CRLF lines; title and notes left out.
  QCOMPARE(bytes, QByteArray("expert,tokens,share,note\r\n0,12,0.250,\"busy, often\"\r\n1,36,0.750,\r\n"));
  QCOMPARE(leftovers(dir, {QStringLiteral("load.csv")}), QStringList());

  // Writing again replaces the file as a whole.
  inspect::Table shorter;
  shorter.columns = {"a"};
  shorter.add_row({1});
  QVERIFY(saveTableCsv(shorter, path, &error));
  QCOMPARE(readAll(path), QByteArray("a\r\n1\r\n"));
}

void PlotExportTest::tableCsvUnwritablePath() {
  QTemporaryDir dir;
  QVERIFY(dir.isValid());
  const QString path = dir.filePath(QStringLiteral("no/such/dir/load.csv"));
  QString error;
  QVERIFY(!saveTableCsv(smallTable(), path, &error));
  QVERIFY2(error.contains(path), qPrintable(error));
  QVERIFY(!QFile::exists(path));
  QCOMPARE(leftovers(dir, {}), QStringList());
}

QTEST_MAIN(PlotExportTest)
#include "plot_export_test.moc"
