#pragma once
// The workbench window: the chat in the middle, every other view in a dock the user can move, stack,
// float or close (the layout is remembered), menus and shortcuts, opening models (dialog, drag and drop,
// recent models) with a progress bar and cancel, light and dark palettes, and the session saved
// automatically after every turn and restored at the next start.
//
// The window owns the EngineWorker (the engine's thread) and the WorkbenchFeed (the ≤30 Hz snapshots);
// views only see WorkbenchData, and every user intent goes through the worker's queue or its live
// controls, so the GUI thread never waits on the engine.
#include <QMainWindow>
#include <QPointer>
#include <QStringList>

#include "app/gui/engine_worker.h"

class QAction;
class QDockWidget;
class QLabel;
class QMenu;
class QPlainTextEdit;
class QProgressBar;
class QPushButton;
class QToolButton;

namespace moe::views {
class ChatView;
class ControlsPanel;
class ExpertLoadView;
class MemorySpeedView;
class ModelCardView;
class RoutingMap;
class ThinkingView;
class TokenInspector;
class TokenSelection;
}  // namespace moe::views

namespace moe::app {

class WorkbenchFeed;

struct MainWindowOptions {
  QString model_path;      // open this model (empty: the last session, else the bundled demo model)
  bool restore_session = true;
  QString session_dir;     // where the session is saved (empty: the app's data folder)
  LoadOptions load;
};

class MainWindow : public QMainWindow {
  Q_OBJECT
 public:
  explicit MainWindow(const MainWindowOptions& options = {}, QWidget* parent = nullptr);
  ~MainWindow() override;

  // The bundled demo model (resources/demo/moe): MOE_RESOURCES_DIR in the environment, else next to the
  // executable (installed), else the source tree's resources/.
  static QString demoModelPath();

  EngineWorker* worker() const { return worker_; }
  WorkbenchFeed* feed() const { return feed_; }
  views::ChatView* chatView() const { return chat_; }
  views::ControlsPanel* controls() const { return controls_; }
  views::RoutingMap* routingMap() const { return routing_; }
  views::ExpertLoadView* expertLoad() const { return load_; }
  views::ThinkingView* thinkingView() const { return thinking_; }
  views::MemorySpeedView* memoryView() const { return memory_; }
  views::TokenInspector* tokenInspector() const { return inspector_; }
  views::ModelCardView* modelCard() const { return card_; }
  views::TokenSelection* selection() const { return selection_; }
  QPlainTextEdit* input() const { return input_; }
  QStringList recentModels() const { return recent_; }
  bool darkPalette() const { return dark_; }

 public slots:
  void openModel(const QString& path);
  void openModelDialog();      // a folder
  void openModelFileDialog();  // a file in the folder (config.json, a shard, the index)
  void sendMessage();             // what is in the input box, with the controls' settings
  void stopGenerating();
  void newChat();
  void setDarkPalette(bool dark);
  void resetLayout();
  void raiseDock(const QString& object_name);  // "routing-map", "thinking", "expert-load", "memory-speed" …

 signals:
  void modelReady(const QString& path);
  void turnDone(int turn, const QString& stop_reason);

 protected:
  void closeEvent(QCloseEvent* event) override;
  void dragEnterEvent(QDragEnterEvent* event) override;
  void dropEvent(QDropEvent* event) override;

 private:
  void buildViews();
  void buildMenus();
  void buildStatusBar();
  void connectWorker();
  QDockWidget* addDock(QWidget* view, const QString& title, const QString& object_name, Qt::DockWidgetArea area);
  void addRecent(const QString& path);
  void rebuildRecentMenu();
  void saveSettings();
  void restoreSettings();
  void setLoading(bool loading);
  void startup();

  MainWindowOptions options_;
  EngineWorker* worker_ = nullptr;
  WorkbenchFeed* feed_ = nullptr;
  views::TokenSelection* selection_ = nullptr;
  views::ChatView* chat_ = nullptr;
  views::ControlsPanel* controls_ = nullptr;
  views::RoutingMap* routing_ = nullptr;
  views::ExpertLoadView* load_ = nullptr;
  views::ThinkingView* thinking_ = nullptr;
  views::MemorySpeedView* memory_ = nullptr;
  views::TokenInspector* inspector_ = nullptr;
  views::ModelCardView* card_ = nullptr;
  QPlainTextEdit* input_ = nullptr;
  QPushButton* send_ = nullptr;
  QPushButton* stop_ = nullptr;
  QProgressBar* progress_ = nullptr;
  QToolButton* cancel_ = nullptr;
  QLabel* status_ = nullptr;
  QMenu* recent_menu_ = nullptr;
  QMenu* view_menu_ = nullptr;
  QAction* dark_action_ = nullptr;
  QList<QDockWidget*> docks_;
  QByteArray default_state_;
  QStringList recent_;
  QString session_dir_;
  bool dark_ = false;
  bool loading_ = false;
  bool startup_fallback_done_ = false;
  bool restored_layout_ = false;
};

}  // namespace moe::app
