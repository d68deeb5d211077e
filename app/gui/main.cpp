// moe-workbench: the desktop workbench. Opens the last session (or the bundled demo model on the first
// start, or the model folder given on the command line).
//
//   moe-workbench [MODEL_DIR] [--new-session] [--device auto|cpu|cuda] [--kv-dtype f32|bf16] [--threads N] [--context N]
//   moe-workbench --screenshot FILE [--prompt TEXT] [--budget N] [--dark]   (for the README: open the
//       model, send the prompt, wait for the answer, save the window as an image, quit)
#include <QApplication>
#include <cstdio>
#include <QCommandLineParser>
#include <QDir>
#include <QPlainTextEdit>
#include <QTimer>

#include "app/gui/main_window.h"
#include "app/gui/workbench_feed.h"
#include "views/token_selection.h"
#include "views/chat_view.h"
#include "views/controls_panel.h"

int main(int argc, char** argv) {
  QApplication app(argc, argv);
  QApplication::setOrganizationName(QStringLiteral("moe-workbench"));
  QApplication::setApplicationName(QStringLiteral("MoE Workbench"));
  QApplication::setApplicationVersion(QStringLiteral(MOE_VERSION));

  QCommandLineParser parser;
  parser.setApplicationDescription(QStringLiteral("Chat with a Mixture-of-Experts model and watch its experts."));
  parser.addHelpOption();
  parser.addVersionOption();
  parser.addPositionalArgument(QStringLiteral("model"), QStringLiteral("Hugging Face model folder to open"));
  QCommandLineOption fresh(QStringLiteral("new-session"), QStringLiteral("Do not restore the last session"));
  QCommandLineOption threads(QStringLiteral("threads"), QStringLiteral("CPU threads (0 = all cores)"), QStringLiteral("N"), QStringLiteral("0"));
  QCommandLineOption device(QStringLiteral("device"), QStringLiteral("auto (the GPU when one works), cpu or cuda"),
                            QStringLiteral("DEVICE"), QStringLiteral("auto"));
  QCommandLineOption kv_dtype(QStringLiteral("kv-dtype"), QStringLiteral("The GPU's KV cache: f32 (the CPU's numbers) or bf16 (half the memory)"),
                              QStringLiteral("DTYPE"), QStringLiteral("f32"));
  QCommandLineOption context(QStringLiteral("context"), QStringLiteral("KV cache tokens"), QStringLiteral("N"), QStringLiteral("4096"));
  QCommandLineOption shot(QStringLiteral("screenshot"), QStringLiteral("Save the window to FILE after one answer, then quit"), QStringLiteral("FILE"));
  QCommandLineOption prompt(QStringLiteral("prompt"), QStringLiteral("Message for --screenshot"), QStringLiteral("TEXT"),
                            QStringLiteral("What is 4821 + 739?"));
  QCommandLineOption budget(QStringLiteral("budget"), QStringLiteral("Thinking budget for --screenshot"), QStringLiteral("N"), QStringLiteral("-1"));
  QCommandLineOption dark(QStringLiteral("dark"), QStringLiteral("Dark palette for --screenshot"));
  QCommandLineOption colour(QStringLiteral("colour-layer"), QStringLiteral("For --screenshot: colour the chat's tokens by their first expert at this MoE layer"),
                            QStringLiteral("N"));
  QCommandLineOption session(QStringLiteral("session-dir"), QStringLiteral("Where the session is saved"), QStringLiteral("DIR"));
  QCommandLineOption raise(QStringLiteral("raise"), QStringLiteral("For --screenshot: docks to bring to the front (comma-separated: thinking, memory-speed, model-card …)"),
                           QStringLiteral("NAMES"));
  parser.addOptions({fresh, device, kv_dtype, threads, context, shot, prompt, budget, dark, colour, raise, session});
  parser.process(app);

  moe::app::MainWindowOptions options;
  if (!parser.positionalArguments().isEmpty()) options.model_path = parser.positionalArguments().front();
  options.restore_session = !parser.isSet(fresh) && !parser.isSet(shot);
  options.session_dir = parser.value(session);
  options.load.threads = parser.value(threads).toInt();
  options.load.context = parser.value(context).toInt();
  if (!moe::parse_device(parser.value(device).toStdString(), options.load.device)) {
    std::fprintf(stderr, "error: --device: expected auto, cpu or cuda, got '%s'\n", qPrintable(parser.value(device)));
    return 2;
  }
  if (!moe::parse_kv_dtype(parser.value(kv_dtype).toStdString(), options.load.kv_dtype)) {
    std::fprintf(stderr, "error: --kv-dtype: expected f32 or bf16, got '%s'\n", qPrintable(parser.value(kv_dtype)));
    return 2;
  }
  if (parser.isSet(shot) && options.model_path.isEmpty()) options.model_path = moe::app::MainWindow::demoModelPath();

  moe::app::MainWindow window(options);
  window.show();

  if (parser.isSet(shot)) {
    const QString file = parser.value(shot);
    window.setDarkPalette(parser.isSet(dark));
    QObject::connect(&window, &moe::app::MainWindow::modelReady, &window, [&] {
      window.controls()->setMode(QStringLiteral("think"));
      window.controls()->setThinkingBudget(parser.value(budget).toInt());
      window.input()->setPlainText(parser.value(prompt));
      window.newChat();
      window.sendMessage();
    });
    QObject::connect(&window, &moe::app::MainWindow::turnDone, &window, [&] {
      // What a user would do next: open the think block, look at the first answer token.
      window.feed()->refresh();
      window.chatView()->setThinkingCollapsed(0, false);
      if (parser.isSet(colour)) {
        window.chatView()->setColourByExpert(true);
        window.chatView()->setColourLayer(parser.value(colour).toInt());
      }
      const auto& chat = *window.feed()->data().chat;
      if (!chat.empty())
        for (const auto& t : chat.back().tokens)
          if (t.phase == moe::Phase::Answer && t.row >= 0 && !t.forced &&
              QString::fromStdString(t.piece).trimmed().size() > 1) {  // a word, not a line break
            window.selection()->setRow(t.row);
            break;
          }
      for (const QString& name : parser.value(raise).split(QLatin1Char(','), Qt::SkipEmptyParts)) window.raiseDock(name);
      // Two feed ticks so every view has drawn the last tokens.
      QTimer::singleShot(300, &window, [&] {
        const bool ok = window.grab().save(file);
        QApplication::exit(ok ? 0 : 1);
      });
    });
  }
  return app.exec();
}
