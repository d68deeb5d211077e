// How long the workbench's event loop is ever blocked while the model streams (issue 6: at most 50 ms).
// Opens the window on the bundled demo model with every dock visible, sends the same question N times at
// full speed (thousands of tokens a second: the worst case for the views, each snapshot brings hundreds
// of rows), and measures the gaps between the ticks of a 5 ms timer on the GUI thread.
//
// STALL_CHAT_ONLY=1 closes every dock (the chat and the feed alone).
//   QT_QPA_PLATFORM=offscreen build/tests/workbench_stall_bench [turns=100] [hook level: routing|full] [engine threads, 0 = all cores]
#include <QApplication>
#include <QDockWidget>
#include <QElapsedTimer>
#include <QPlainTextEdit>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QTimer>
#include <algorithm>
#include <cstdio>
#include <vector>

#include "app/gui/main_window.h"
#include "app/gui/workbench_feed.h"
#include "views/controls_panel.h"

int main(int argc, char** argv) {
  QApplication app(argc, argv);
  QStandardPaths::setTestModeEnabled(true);
  const int turns = argc > 1 ? std::atoi(argv[1]) : 100;
  const auto level = moe::parse_hook_level(argc > 2 ? argv[2] : "full");
  QTemporaryDir session;
  moe::app::MainWindowOptions options;
  options.model_path = moe::app::MainWindow::demoModelPath();
  options.restore_session = false;
  options.session_dir = session.path();
  options.load.context = 32768;  // the whole run stays in one conversation
  options.load.threads = argc > 3 ? std::atoi(argv[3]) : 0;
  moe::app::MainWindow window(options);
  window.resize(1640, 1000);
  window.show();
  // Undock the tabbed views so every one of them is visible and draws.
  const bool chat_only = qEnvironmentVariableIsSet("STALL_CHAT_ONLY");
  for (QDockWidget* d : window.findChildren<QDockWidget*>()) {
    if (chat_only) d->close();
    else d->setFloating(true);
  }

  std::vector<qint64> gaps;
  QElapsedTimer clock;
  qint64 last = -1;
  QTimer tick;
  tick.setInterval(5);
  QObject::connect(&tick, &QTimer::timeout, [&] {
    const qint64 now = clock.elapsed();
    if (last >= 0) gaps.push_back(now - last - 5);
    last = now;
  });
  int sent = 0;
  auto send = [&] {
    window.controls()->setMode(sent % 2 ? QStringLiteral("no-think") : QStringLiteral("think"));
    window.input()->setPlainText(QStringLiteral("What is 4821 + 739?"));
    window.sendMessage();
    ++sent;
  };
  QObject::connect(&window, &moe::app::MainWindow::modelReady, [&] {
    window.controls()->setHookLevel(level.value_or(moe::HookLevel::Full));
    window.controls()->setPace(0);
    clock.start();
    tick.start();
    send();
  });
  QObject::connect(&window, &moe::app::MainWindow::turnDone, [&](int turn) {
    (void)turn;
    if (sent < turns) {
      send();
      return;
    }
    QTimer::singleShot(200, [&] { QApplication::exit(0); });
  });
  const int rc = app.exec();
  if (gaps.empty()) return 1;
  std::sort(gaps.begin(), gaps.end());
  auto pct = [&](double p) { return gaps[std::min(gaps.size() - 1, size_t(p * double(gaps.size())))]; };
  std::printf("turns %d, hook level %s, %lld trace rows, %.1f s, %zu ticks: stall median %lld ms, p99 %lld ms, max %lld ms\n",
              sent, moe::hook_level_name(level.value_or(moe::HookLevel::Full)),
              static_cast<long long>(window.feed()->data().trace->size()), double(clock.elapsed()) / 1000.0, gaps.size(),
              pct(0.5), pct(0.99), gaps.back());
  return rc;
}
