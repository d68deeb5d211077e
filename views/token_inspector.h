#pragma once
// The selected token under a magnifying glass: what it is (text, id, position, phase, whether the model
// wrote it or the runtime injected it) and, layer by layer, where the router sent it and how its
// attention looked (TokenInspectorModel). Follows the shared selection; next/previous step through the
// trace one row at a time (the app binds shortcuts to them).
#include <QWidget>

#include "views/token_inspector_model.h"
#include "views/token_selection.h"
#include "views/workbench_view.h"

class QLabel;
class QTableView;
class QToolButton;

namespace moe::views {

class TokenInspector : public QWidget, public WorkbenchView {
  Q_OBJECT
 public:
  explicit TokenInspector(TokenSelection* selection, QWidget* parent = nullptr);

  void setData(const WorkbenchData& data) override;

  // What the inspector shows, for tests and the end-to-end check (a hidden inspector is brought up to
  // date first). tokenSummary: the line describing the token ("" when none is selected); message: why
  // the table is empty or incomplete ("" when there is nothing to explain).
  const TokenInspectorModel* model() const;
  QString tokenSummary() const;
  QString message() const;

 public slots:
  // Move the selection one trace row on / back, clamped to the trace (from no selection: the first /
  // the last row).
  void selectNext();
  void selectPrevious();

 protected:
  void showEvent(QShowEvent* event) override;

 private:
  void refresh();
  void bringUpToDate() const;
  void onSelectionChanged();

  TokenSelection* selection_;
  WorkbenchData data_ = WorkbenchData::empty();
  bool dirty_ = false;
  qint64 shown_row_ = -2;  // -2: nothing shown yet
  bool shown_row_in_trace_ = false;
  int64_t shown_trace_size_ = 0;

  TokenInspectorModel* model_ = nullptr;
  QLabel* summary_ = nullptr;
  QLabel* message_ = nullptr;
  QToolButton* previous_ = nullptr;
  QToolButton* next_ = nullptr;
  QTableView* table_ = nullptr;
  QLabel* caption_ = nullptr;
};

}  // namespace moe::views
