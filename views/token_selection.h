#pragma once
// The token the user is looking at, shared by every view: clicking a token in the chat, a column of the
// routing map or a point of the thinking timeline selects it everywhere (the views stay in sync
// through this one object, never by calling each other). A row is a trace row (-1: none).
#include <QObject>

namespace moe::views {

class TokenSelection : public QObject {
  Q_OBJECT
 public:
  explicit TokenSelection(QObject* parent = nullptr) : QObject(parent) {}
  qint64 row() const { return row_; }

 public slots:
  void setRow(qint64 row) {
    if (row < -1) row = -1;
    if (row == row_) return;
    row_ = row;
    emit rowChanged(row_);
  }

 signals:
  void rowChanged(qint64 row);

 private:
  qint64 row_ = -1;
};

}  // namespace moe::views
