#include "app/gui/main_window.h"

#include <QAction>
#include <QApplication>
#include <QCloseEvent>
#include <QCoreApplication>
#include <QDir>
#include <QDockWidget>
#include <QDragEnterEvent>
#include <QDropEvent>
#include <QFileDialog>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QKeySequence>
#include <QLabel>
#include <QMenuBar>
#include <QMessageBox>
#include <QMimeData>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QScrollArea>
#include <QSettings>
#include <QShortcut>
#include <QStandardPaths>
#include <QStatusBar>
#include <QStyle>
#include <QStyleFactory>
#include <QTimer>
#include <QToolButton>
#include <QVBoxLayout>

#include "app/gui/workbench_feed.h"
#include "inspect/trace_file.h"
#include "views/chat_view.h"
#include "views/controls_panel.h"
#include "views/expert_load_view.h"
#include "views/memory_speed_view.h"
#include "views/model_card_view.h"
#include "views/plot_export.h"
#include "views/routing_map.h"
#include "views/thinking_view.h"
#include "views/token_inspector.h"
#include "views/token_selection.h"

namespace moe::app {

namespace {

constexpr int kMaxRecent = 10;

QPalette makeLightPalette() { return QStyleFactory::create(QStringLiteral("Fusion"))->standardPalette(); }

QPalette makeDarkPalette() {
  QPalette p;
  const QColor window(0x2b, 0x2d, 0x31), base(0x1f, 0x21, 0x24), text(0xe6, 0xe6, 0xe6), mid(0x3a, 0x3d, 0x42);
  p.setColor(QPalette::Window, window);
  p.setColor(QPalette::WindowText, text);
  p.setColor(QPalette::Base, base);
  p.setColor(QPalette::AlternateBase, mid);
  p.setColor(QPalette::ToolTipBase, base);
  p.setColor(QPalette::ToolTipText, text);
  p.setColor(QPalette::Text, text);
  p.setColor(QPalette::Button, window);
  p.setColor(QPalette::ButtonText, text);
  p.setColor(QPalette::BrightText, Qt::red);
  p.setColor(QPalette::Link, QColor(0x6a, 0xb0, 0xf3));
  p.setColor(QPalette::Highlight, QColor(0x3d, 0x7e, 0xc9));
  p.setColor(QPalette::HighlightedText, Qt::white);
  p.setColor(QPalette::PlaceholderText, QColor(0x90, 0x90, 0x90));
  p.setColor(QPalette::Disabled, QPalette::Text, QColor(0x80, 0x80, 0x80));
  p.setColor(QPalette::Disabled, QPalette::ButtonText, QColor(0x80, 0x80, 0x80));
  p.setColor(QPalette::Disabled, QPalette::WindowText, QColor(0x80, 0x80, 0x80));
  return p;
}

}  // namespace

QString MainWindow::demoModelPath() {
  const QByteArray env = qgetenv("MOE_RESOURCES_DIR");
  if (!env.isEmpty()) return QDir(QString::fromLocal8Bit(env)).filePath(QStringLiteral("demo/moe"));
  const QString installed = QDir(QCoreApplication::applicationDirPath()).filePath(QStringLiteral("../share/moe-workbench/demo/moe"));
  if (QFileInfo::exists(installed + QStringLiteral("/config.json"))) return QDir::cleanPath(installed);
#ifdef MOE_RESOURCES_DIR
  return QDir(QStringLiteral(MOE_RESOURCES_DIR)).filePath(QStringLiteral("demo/moe"));
#else
  return installed;
#endif
}

MainWindow::MainWindow(const MainWindowOptions& options, QWidget* parent) : QMainWindow(parent), options_(options) {
  setWindowTitle(tr("MoE Workbench"));
  setAcceptDrops(true);
  setDockNestingEnabled(true);
  session_dir_ = options.session_dir.isEmpty()
                     ? QDir(QStandardPaths::writableLocation(QStandardPaths::AppDataLocation)).filePath(QStringLiteral("session"))
                     : options.session_dir;
  worker_ = new EngineWorker(this);
  worker_->setAutosaveDir(session_dir_);
  feed_ = new WorkbenchFeed(worker_, this);
  selection_ = new views::TokenSelection(this);
  buildViews();
  buildMenus();
  buildStatusBar();
  connectWorker();
  default_state_ = saveState();
  restoreSettings();
  startup();
}

MainWindow::~MainWindow() {
  // Views go before the feed that calls them; the worker (a child) is destroyed after, joining its thread.
  worker_->stop();
}

// ---- Layout -------------------------------------------------------------------------------------------

QDockWidget* MainWindow::addDock(QWidget* view, const QString& title, const QString& object_name, Qt::DockWidgetArea area) {
  auto* dock = new QDockWidget(title, this);
  dock->setObjectName(object_name);  // saveState() keys the layout by it
  dock->setWidget(view);
  addDockWidget(area, dock);
  docks_.push_back(dock);
  return dock;
}

void MainWindow::buildViews() {
  // Centre: the chat and the message box.
  auto* centre = new QWidget(this);
  auto* layout = new QVBoxLayout(centre);
  layout->setContentsMargins(4, 4, 4, 4);
  chat_ = new views::ChatView(selection_, centre);
  layout->addWidget(chat_, 1);
  auto* entry = new QHBoxLayout;
  input_ = new QPlainTextEdit(centre);
  input_->setPlaceholderText(tr("Message the model (Ctrl+Return sends). Try: What is 4821 + 739?"));
  input_->setMaximumHeight(90);
  entry->addWidget(input_, 1);
  auto* buttons = new QVBoxLayout;
  send_ = new QPushButton(tr("Send"), centre);
  send_->setToolTip(tr("Send the message (Ctrl+Return)"));
  stop_ = new QPushButton(tr("Stop"), centre);
  stop_->setToolTip(tr("Stop generating (Esc)"));
  stop_->setEnabled(false);
  buttons->addWidget(send_);
  buttons->addWidget(stop_);
  entry->addLayout(buttons);
  layout->addLayout(entry);
  centre->setMinimumWidth(440);  // the chat stays readable however the docks are arranged
  setCentralWidget(centre);
  connect(send_, &QPushButton::clicked, this, &MainWindow::sendMessage);
  connect(stop_, &QPushButton::clicked, this, &MainWindow::stopGenerating);

  controls_ = new views::ControlsPanel(this);
  auto* controls_scroll = new QScrollArea(this);
  controls_scroll->setWidget(controls_);
  controls_scroll->setWidgetResizable(true);
  card_ = new views::ModelCardView(this);
  routing_ = new views::RoutingMap(selection_, this);
  load_ = new views::ExpertLoadView(this);
  thinking_ = new views::ThinkingView(selection_, this);
  memory_ = new views::MemorySpeedView(this);
  inspector_ = new views::TokenInspector(selection_, this);

  QDockWidget* controls_dock = addDock(controls_scroll, tr("Controls"), QStringLiteral("controls"), Qt::LeftDockWidgetArea);
  QDockWidget* card_dock = addDock(card_, tr("Model card"), QStringLiteral("model-card"), Qt::LeftDockWidgetArea);
  tabifyDockWidget(controls_dock, card_dock);
  controls_dock->raise();
  QDockWidget* routing_dock = addDock(routing_, tr("Routing map"), QStringLiteral("routing-map"), Qt::BottomDockWidgetArea);
  QDockWidget* thinking_dock = addDock(thinking_, tr("Thinking"), QStringLiteral("thinking"), Qt::BottomDockWidgetArea);
  tabifyDockWidget(routing_dock, thinking_dock);
  routing_dock->raise();
  QDockWidget* load_dock = addDock(load_, tr("Expert load"), QStringLiteral("expert-load"), Qt::RightDockWidgetArea);
  QDockWidget* memory_dock = addDock(memory_, tr("Memory and speed"), QStringLiteral("memory-speed"), Qt::RightDockWidgetArea);
  tabifyDockWidget(load_dock, memory_dock);
  load_dock->raise();
  addDock(inspector_, tr("Token inspector"), QStringLiteral("token-inspector"), Qt::RightDockWidgetArea);
  // Dock sizes only take once the window has its size: set them on the first turn of the event loop
  // (a saved layout, restored later, replaces them).
  QTimer::singleShot(0, this, [this, controls_dock, load_dock, routing_dock] {
    if (restored_layout_) return;
    resizeDocks({controls_dock, load_dock}, {300, 520}, Qt::Horizontal);
    resizeDocks({routing_dock}, {300}, Qt::Vertical);
  });

  for (views::WorkbenchView* v : std::initializer_list<views::WorkbenchView*>{chat_, controls_, card_, routing_, load_,
                                                                              thinking_, memory_, inspector_})
    feed_->addView(v);

  // Live controls go straight to the worker's atomics.
  connect(controls_, &views::ControlsPanel::budgetChanged, this, [this](int b) { worker_->setThinkingBudget(b); });
  connect(controls_, &views::ControlsPanel::stopThinkingRequested, this, [this] { worker_->stopThinkingNow(); });
  connect(controls_, &views::ControlsPanel::stopRequested, this, &MainWindow::stopGenerating);
  connect(controls_, &views::ControlsPanel::hookLevelChanged, this, [this](HookLevel l) { worker_->setHookLevel(l); });
  connect(controls_, &views::ControlsPanel::paceChanged, this, [this](double p) { worker_->setPace(p); });
  connect(controls_, &views::ControlsPanel::interventionsChanged, this, [this] {
    if (controls_->interventionProblem().isEmpty()) worker_->setInterventions(controls_->interventions());
  });
  connect(feed_, &WorkbenchFeed::updated, this, [this] {
    const auto& chat = *feed_->data().chat;
    const bool generating = !chat.empty() && !chat.back().finished;
    stop_->setEnabled(generating);
  });
}

void MainWindow::buildMenus() {
  QMenu* file = menuBar()->addMenu(tr("&File"));
  QAction* open = file->addAction(tr("&Open model folder…"), this, &MainWindow::openModelDialog);
  open->setShortcut(QKeySequence::Open);
  file->addAction(tr("Open model &file (GGUF, or one in a folder)…"), this, &MainWindow::openModelFileDialog);
  file->addAction(tr("Open the &demo model"), this, [this] { openModel(demoModelPath()); });
  recent_menu_ = file->addMenu(tr("&Recent models"));
  file->addSeparator();
  file->addAction(tr("&New chat"), this, &MainWindow::newChat)->setShortcut(QKeySequence(QStringLiteral("Ctrl+N")));
  file->addAction(tr("Save &trace as…"), this, [this] {
    const QString path = QFileDialog::getSaveFileName(this, tr("Save trace"), QStringLiteral("session.trace.safetensors"),
                                                      tr("Trace (*.safetensors)"));
    if (path.isEmpty()) return;
    try {
      // The views' trace leaves out detail spilled to disk in long sessions; the file gets all of it.
      const LiveView live = worker_->live();
      const inspect::Trace all = join_restored(
          live.base_trace.get(), worker_->store().snapshot().materialize(inspect::SpilledDetail::Load));
      inspect::save_trace(all, path.toStdString());
      status_->setText(tr("Trace saved to %1").arg(path));
    } catch (const std::exception& e) {
      QMessageBox::warning(this, tr("Save trace"), QString::fromStdString(e.what()));
    }
  });
  file->addAction(tr("Export token &table as CSV…"), this, [this] {
    const QString path = QFileDialog::getSaveFileName(this, tr("Export tokens"), QStringLiteral("tokens.csv"), tr("CSV (*.csv)"));
    if (path.isEmpty()) return;
    try {
      inspect::write_trace_tokens_csv(*feed_->data().trace, path.toStdString());
    } catch (const std::exception& e) {
      QMessageBox::warning(this, tr("Export tokens"), QString::fromStdString(e.what()));
    }
  });
  file->addSeparator();
  file->addAction(tr("&Quit"), this, &QWidget::close)->setShortcut(QKeySequence::Quit);

  QMenu* generate = menuBar()->addMenu(tr("&Generate"));
  QAction* send = generate->addAction(tr("&Send"), this, &MainWindow::sendMessage);
  send->setShortcuts({QKeySequence(QStringLiteral("Ctrl+Return")), QKeySequence(QStringLiteral("Ctrl+Enter"))});
  QAction* stop = generate->addAction(tr("S&top"), this, &MainWindow::stopGenerating);
  stop->setShortcut(QKeySequence(Qt::Key_Escape));
  generate->addAction(tr("Stop &thinking now"), this, [this] { worker_->stopThinkingNow(); })
      ->setShortcut(QKeySequence(QStringLiteral("Ctrl+.")));
  generate->addSeparator();
  generate->addAction(tr("&Next token"), inspector_, &views::TokenInspector::selectNext)
      ->setShortcuts({QKeySequence(QStringLiteral("Alt+Right")), QKeySequence(QStringLiteral("Ctrl+]"))});
  generate->addAction(tr("&Previous token"), inspector_, &views::TokenInspector::selectPrevious)
      ->setShortcuts({QKeySequence(QStringLiteral("Alt+Left")), QKeySequence(QStringLiteral("Ctrl+["))});

  view_menu_ = menuBar()->addMenu(tr("&View"));
  for (QDockWidget* d : docks_) view_menu_->addAction(d->toggleViewAction());
  view_menu_->addSeparator();
  dark_action_ = view_menu_->addAction(tr("&Dark palette"));
  dark_action_->setCheckable(true);
  dark_action_->setShortcut(QKeySequence(QStringLiteral("Ctrl+Shift+D")));
  connect(dark_action_, &QAction::toggled, this, &MainWindow::setDarkPalette);
  view_menu_->addAction(tr("&Reset layout"), this, &MainWindow::resetLayout);

  QMenu* help = menuBar()->addMenu(tr("&Help"));
  help->addAction(tr("&About MoE Workbench"), this, [this] {
    QMessageBox::about(this, tr("About MoE Workbench"),
                       tr("<b>MoE Workbench %1</b><p>Chat with a Mixture-of-Experts model and watch which experts every "
                          "token is routed to, how balanced they are, what it thinks and where the memory goes.</p>"
                          "<p>Shortcuts: Ctrl+Return send, Esc stop, Ctrl+. stop thinking, Alt+Left/Right previous/next "
                          "token, Ctrl+O open a model.</p>")
                           .arg(QStringLiteral(MOE_VERSION)));
  });
}

void MainWindow::buildStatusBar() {
  status_ = new QLabel(this);
  progress_ = new QProgressBar(this);
  progress_->setRange(0, 100);
  progress_->setMaximumWidth(220);
  progress_->setVisible(false);
  cancel_ = new QToolButton(this);
  cancel_->setText(tr("Cancel"));
  cancel_->setToolTip(tr("Cancel loading the model"));
  cancel_->setVisible(false);
  statusBar()->addWidget(status_, 1);
  statusBar()->addPermanentWidget(progress_);
  statusBar()->addPermanentWidget(cancel_);
  connect(cancel_, &QToolButton::clicked, this, [this] { worker_->cancelLoad(); });
}

void MainWindow::connectWorker() {
  connect(worker_, &EngineWorker::loadProgress, this, [this](int percent, const QString& stage) {
    progress_->setValue(percent);
    status_->setText(stage);
  });
  connect(worker_, &EngineWorker::modelLoaded, this, [this](const QString& path) {
    setLoading(false);
    addRecent(path);
    status_->setText(tr("Loaded %1").arg(path));
    setWindowTitle(tr("MoE Workbench — %1").arg(QFileInfo(path).fileName()));
    // The engine starts with the panel's live settings.
    worker_->setHookLevel(controls_->hookLevel());
    worker_->setPace(controls_->pace());
    emit modelReady(path);
  });
  connect(worker_, &EngineWorker::loadFailed, this, [this](const QString& error) {
    setLoading(false);
    status_->setText(error);
    // At startup, a session or model that no longer opens falls back to the demo model once.
    if (!startup_fallback_done_ && worker_->modelPath().isEmpty()) {
      startup_fallback_done_ = true;
      QMessageBox::warning(this, tr("Open model"), tr("%1\n\nOpening the demo model instead.").arg(error));
      openModel(demoModelPath());
      return;
    }
    QMessageBox::warning(this, tr("Open model"), error);
  });
  connect(worker_, &EngineWorker::sessionRestoreFailed, this, [this](const QString& error) {
    status_->setText(tr("The last session could not be restored: %1").arg(error));
    openModel(options_.model_path.isEmpty() ? demoModelPath() : options_.model_path);
  });
  connect(worker_, &EngineWorker::turnFinished, this, [this](int turn, const QString& reason) {
    feed_->refresh();  // the last tokens at once; the stop buttons follow the chat's state
    status_->setText(tr("Turn %1 finished: %2").arg(turn + 1).arg(reason));
    emit turnDone(turn, reason);
  });
  connect(worker_, &EngineWorker::engineError, this, [this](const QString& error) {
    status_->setText(error);
    statusBar()->setToolTip(error);
  });
}

// ---- Actions ------------------------------------------------------------------------------------------

void MainWindow::startup() {
  if (!options_.model_path.isEmpty()) {
    openModel(options_.model_path);
    return;
  }
  // The last session comes back (chat and trace); the first start opens the demo model.
  if (options_.restore_session && QFileInfo::exists(QDir(session_dir_).filePath(QStringLiteral("chat.json")))) {
    setLoading(true);
    worker_->restore(session_dir_, options_.load);
    return;
  }
  openModel(demoModelPath());
}

void MainWindow::setLoading(bool loading) {
  loading_ = loading;
  progress_->setVisible(loading);
  cancel_->setVisible(loading);
  if (loading) progress_->setValue(0);
}

void MainWindow::openModel(const QString& path) {
  if (path.isEmpty()) return;
  worker_->stop();  // a reply in progress ends, so the load is next in the queue
  setLoading(true);
  status_->setText(tr("Opening %1").arg(path));
  worker_->loadModel(path, options_.load);
}

void MainWindow::openModelDialog() {
  const QString dir = QFileDialog::getExistingDirectory(this, tr("Open a model folder (config.json + safetensors)"),
                                                        recent_.isEmpty() ? QDir::homePath() : recent_.front());
  if (!dir.isEmpty()) openModel(dir);
}

void MainWindow::openModelFileDialog() {
  const QString file = QFileDialog::getOpenFileName(
      this, tr("Open a GGUF file, or a model folder by one of its files"), recent_.isEmpty() ? QDir::homePath() : recent_.front(),
      tr("Model files (*.gguf config.json *.safetensors *.safetensors.index.json);;Any file (*)"));
  if (!file.isEmpty()) openModel(file);
}

void MainWindow::sendMessage() {
  const QString text = input_->toPlainText().trimmed();
  if (text.isEmpty() || loading_) return;
  TurnRequest r;
  r.user_text = text.toStdString();
  r.mode = controls_->mode().toStdString();
  r.max_new_tokens = controls_->maxNewTokens();
  r.sampling = controls_->sampling();
  r.thinking_budget = controls_->thinkingBudget();
  worker_->send(r);
  input_->clear();
  status_->setText(tr("Generating…"));
}

void MainWindow::stopGenerating() { worker_->stop(); }

void MainWindow::newChat() {
  worker_->stop();
  worker_->newChat();
  selection_->setRow(-1);
}

void MainWindow::setDarkPalette(bool dark) {
  dark_ = dark;
  if (dark_action_ && dark_action_->isChecked() != dark) dark_action_->setChecked(dark);
  qApp->setStyle(QStyleFactory::create(QStringLiteral("Fusion")));
  qApp->setPalette(dark ? makeDarkPalette() : makeLightPalette());
}

void MainWindow::resetLayout() {
  restoreState(default_state_);
  for (QDockWidget* d : docks_) d->setVisible(true);
}

void MainWindow::raiseDock(const QString& object_name) {
  for (QDockWidget* d : docks_)
    if (d->objectName() == object_name) {
      d->show();
      d->raise();
    }
}

// ---- Recent models, settings --------------------------------------------------------------------------

void MainWindow::addRecent(const QString& path) {
  recent_.removeAll(path);
  recent_.prepend(path);
  while (recent_.size() > kMaxRecent) recent_.removeLast();
  rebuildRecentMenu();
  QSettings().setValue(QStringLiteral("recent_models"), recent_);
}

void MainWindow::rebuildRecentMenu() {
  recent_menu_->clear();
  for (const QString& p : recent_) recent_menu_->addAction(p, this, [this, p] { openModel(p); });
  recent_menu_->setEnabled(!recent_.isEmpty());
}

void MainWindow::saveSettings() {
  QSettings s;
  s.setValue(QStringLiteral("window/geometry"), saveGeometry());
  s.setValue(QStringLiteral("window/state"), saveState());
  s.setValue(QStringLiteral("window/dark"), dark_);
  s.setValue(QStringLiteral("recent_models"), recent_);
  controls_->saveSettings(s);
}

void MainWindow::restoreSettings() {
  QSettings s;
  if (!restoreGeometry(s.value(QStringLiteral("window/geometry")).toByteArray())) resize(1640, 1000);
  restored_layout_ = restoreState(s.value(QStringLiteral("window/state")).toByteArray());
  recent_ = s.value(QStringLiteral("recent_models")).toStringList();
  rebuildRecentMenu();
  controls_->restoreSettings(s);
  setDarkPalette(s.value(QStringLiteral("window/dark"), false).toBool());
}

void MainWindow::closeEvent(QCloseEvent* event) {
  saveSettings();
  worker_->stop();
  QMainWindow::closeEvent(event);
}

void MainWindow::dragEnterEvent(QDragEnterEvent* event) {
  if (event->mimeData()->hasUrls()) event->acceptProposedAction();
}

void MainWindow::dropEvent(QDropEvent* event) {
  const QList<QUrl> urls = event->mimeData()->urls();
  if (urls.isEmpty() || !urls.front().isLocalFile()) return;
  openModel(urls.front().toLocalFile());
  event->acceptProposedAction();
}

}  // namespace moe::app
