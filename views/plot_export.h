#pragma once
// Export of what a view shows: any plot to PNG, SVG or PDF (chosen by the file's suffix), any table to
// CSV. Files are written atomically (a temporary file renamed into place), so an export that fails
// half way leaves no half-written file behind.
#include <QString>
#include <functional>

#include "inspect/table.h"

class QCustomPlot;
class QWidget;
class QMenu;

namespace moe::views {

// Writes the plot at its on-screen size (PNG at 2× for sharp slides). Returns false and sets *error
// (naming the file) when the suffix is unknown or writing fails.
bool savePlot(QCustomPlot* plot, const QString& path, QString* error = nullptr);
bool saveTableCsv(const inspect::Table& table, const QString& path, QString* error = nullptr);

// Adds "Export plot…" (and, when `table` is given, "Export table as CSV…") to `menu`; the actions ask
// for a file name with a dialog parented to `parent` and report failures in a message box.
void addExportActions(QMenu* menu, QWidget* parent, QCustomPlot* plot, const QString& base_name,
                      std::function<inspect::Table()> table = {});

// Gives `plot` a context menu with the export actions above (right click on the plot).
void enableExportMenu(QCustomPlot* plot, const QString& base_name, std::function<inspect::Table()> table = {});

}  // namespace moe::views
