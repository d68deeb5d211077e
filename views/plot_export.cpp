#include "views/plot_export.h"

#include <QFileDialog>
#include <QFileInfo>
#include <QMenu>
#include <QMessageBox>
#include <QSaveFile>
#include <QSvgGenerator>
#include <cstdio>
#include <qcustomplot.h>

namespace moe::views {

namespace {

bool fail(QString* error, const QString& message) {
  if (error) *error = message;
  return false;
}

// QCustomPlot writes PNG and PDF to a path directly; to keep the export atomic it writes to a
// temporary name beside the target, which rename(2) then puts in place of the old file in one step
// (the old file stays whole until then). A failed write removes the temporary file.
bool renameInto(const QString& tmp, const QString& path, QString* error) {
  if (std::rename(QFile::encodeName(tmp).constData(), QFile::encodeName(path).constData()) != 0) {
    QFile::remove(tmp);
    return fail(error, QStringLiteral("%1: cannot move the finished file into place").arg(path));
  }
  return true;
}

bool writeFailed(const QString& tmp, QString* error, const QString& message) {
  QFile::remove(tmp);
  return fail(error, message);
}

}  // namespace

bool savePlot(QCustomPlot* plot, const QString& path, QString* error) {
  const QString suffix = QFileInfo(path).suffix().toLower();
  const int w = plot->width(), h = plot->height();
  const QString tmp = path + QStringLiteral(".part");
  if (suffix == QLatin1String("png")) {
    if (!plot->savePng(tmp, w, h, 2.0)) return writeFailed(tmp, error, QStringLiteral("%1: cannot write the PNG").arg(path));
    return renameInto(tmp, path, error);
  }
  if (suffix == QLatin1String("pdf")) {
    if (!plot->savePdf(tmp, w, h)) return writeFailed(tmp, error, QStringLiteral("%1: cannot write the PDF").arg(path));
    return renameInto(tmp, path, error);
  }
  if (suffix == QLatin1String("svg")) {
    QSaveFile file(path);
    if (!file.open(QIODevice::WriteOnly)) return fail(error, QStringLiteral("%1: %2").arg(path, file.errorString()));
    QSvgGenerator svg;
    svg.setOutputDevice(&file);
    svg.setSize(QSize(w, h));
    svg.setViewBox(QRect(0, 0, w, h));
    svg.setTitle(plot->objectName());
    QCPPainter painter;
    if (!painter.begin(&svg)) return fail(error, QStringLiteral("%1: cannot paint the SVG").arg(path));
    plot->toPainter(&painter, w, h);
    painter.end();
    if (!file.commit()) return fail(error, QStringLiteral("%1: %2").arg(path, file.errorString()));
    return true;
  }
  return fail(error, QStringLiteral("%1: unknown plot format '%2' (use .png, .svg or .pdf)").arg(path, suffix));
}

bool saveTableCsv(const inspect::Table& table, const QString& path, QString* error) {
  QSaveFile file(path);
  if (!file.open(QIODevice::WriteOnly)) return fail(error, QStringLiteral("%1: %2").arg(path, file.errorString()));
  const std::string csv = inspect::to_csv(table);
  if (file.write(csv.data(), qint64(csv.size())) != qint64(csv.size()) || !file.commit())
    return fail(error, QStringLiteral("%1: %2").arg(path, file.errorString()));
  return true;
}

void addExportActions(QMenu* menu, QWidget* parent, QCustomPlot* plot, const QString& base_name,
                      std::function<inspect::Table()> table) {
  QObject::connect(menu->addAction(QObject::tr("Export plot…")), &QAction::triggered, parent, [=] {
    const QString path = QFileDialog::getSaveFileName(parent, QObject::tr("Export plot"), base_name + QStringLiteral(".png"),
                                                      QObject::tr("PNG image (*.png);;SVG drawing (*.svg);;PDF document (*.pdf)"));
    if (path.isEmpty()) return;
    QString error;
    if (!savePlot(plot, path, &error)) QMessageBox::warning(parent, QObject::tr("Export plot"), error);
  });
  if (!table) return;
  QObject::connect(menu->addAction(QObject::tr("Export table as CSV…")), &QAction::triggered, parent, [=] {
    const QString path = QFileDialog::getSaveFileName(parent, QObject::tr("Export table"), base_name + QStringLiteral(".csv"),
                                                      QObject::tr("CSV table (*.csv)"));
    if (path.isEmpty()) return;
    QString error;
    if (!saveTableCsv(table(), path, &error)) QMessageBox::warning(parent, QObject::tr("Export table"), error);
  });
}

void enableExportMenu(QCustomPlot* plot, const QString& base_name, std::function<inspect::Table()> table) {
  plot->setContextMenuPolicy(Qt::CustomContextMenu);
  QObject::connect(plot, &QWidget::customContextMenuRequested, plot, [=](const QPoint& pos) {
    QMenu menu(plot);
    addExportActions(&menu, plot, plot, base_name, table);
    menu.exec(plot->mapToGlobal(pos));
  });
}

}  // namespace moe::views
