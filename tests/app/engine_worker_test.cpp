// The engine worker as the window drives it, without the window: bad folders are refused with the file
// named, a reply can be stopped mid-way (slow motion does not delay the stop), bad interventions are
// reported and not applied, and a new chat forgets the conversation and its trace.
#include <QSignalSpy>
#include <QtTest>

#include "app/gui/engine_worker.h"

using moe::app::EngineWorker;
using moe::app::TurnRequest;

namespace {

// The worker emits on its own thread. QSignalSpy connects directly, so its list and its wait() would be
// touched from two threads; this recorder receives the signals queued on the test's thread instead, as
// the window does.
struct Signals : QObject {
  explicit Signals(EngineWorker& worker) {
    connect(&worker, &EngineWorker::modelLoaded, this, [this](const QString& p) { loaded << p; }, Qt::QueuedConnection);
    connect(&worker, &EngineWorker::loadFailed, this, [this](const QString& e) { failed << e; }, Qt::QueuedConnection);
    connect(&worker, &EngineWorker::engineError, this, [this](const QString& e) { errors << e; }, Qt::QueuedConnection);
    connect(&worker, &EngineWorker::turnFinished, this, [this](int, const QString& r) { finished << r; }, Qt::QueuedConnection);
  }
  QStringList loaded, failed, errors, finished;
};

QString demoModel() { return QStringLiteral(MOE_SOURCE_DIR "/resources/demo/moe"); }

moe::app::LoadOptions oneThread() {
  moe::app::LoadOptions o;
  o.threads = 1;
  return o;
}

// A short no-think turn (four tokens at most).
TurnRequest shortTurn() {
  TurnRequest r;
  r.user_text = "What is 1 + 2?";
  r.mode = "no-think";
  r.max_new_tokens = 4;
  return r;
}

}  // namespace

class EngineWorkerTest : public QObject {
  Q_OBJECT
 private slots:
  void aFolderWithoutConfigIsRefusedByName() {
    EngineWorker worker;
    Signals got(worker);
    worker.loadModel(QStringLiteral(MOE_TEST_DATA_DIR "/tokenizers/bpe"), oneThread());
    QTRY_VERIFY_WITH_TIMEOUT(!got.failed.isEmpty(), 30000);
    QVERIFY2(got.failed[0].contains(QStringLiteral("config.json")), qPrintable(got.failed[0]));
    QVERIFY(worker.modelPath().isEmpty());
  }

  void sendingWithoutAModelSaysSo() {
    EngineWorker worker;
    Signals got(worker);
    TurnRequest r;
    r.user_text = "hello";
    worker.send(r);
    QTRY_VERIFY_WITH_TIMEOUT(!got.errors.isEmpty(), 10000);
    QVERIFY(got.errors[0].contains(QStringLiteral("No model")));
  }

  void stopEndsASlowReplyAtOnce() {
    EngineWorker worker;
    Signals got(worker);
    worker.loadModel(demoModel(), oneThread());
    QTRY_VERIFY_WITH_TIMEOUT(!got.loaded.isEmpty(), 30000);
    worker.setPace(5);  // 5 tokens a second: the reply would take many seconds
    TurnRequest r;
    r.user_text = "What is 4821 + 739?";
    worker.send(r);
    QTRY_VERIFY_WITH_TIMEOUT(!worker.live().turns.empty() && worker.live().turns.back().tokens.size() >= 2, 10000);
    QElapsedTimer clock;
    clock.start();
    worker.stop();
    QTRY_VERIFY_WITH_TIMEOUT(!got.finished.isEmpty(), 5000);
    QVERIFY2(clock.elapsed() < 2000, "the stop waited for the slow-motion pace");
    QCOMPARE(got.finished[0], QStringLiteral("stopped"));
    const auto turn = worker.live().turns.back();
    QVERIFY(turn.finished);
    QVERIFY(turn.tokens.size() < 20);
  }

  void badInterventionsAreReportedAndNotApplied() {
    EngineWorker worker;
    Signals got(worker);
    worker.loadModel(demoModel(), oneThread());
    QTRY_VERIFY_WITH_TIMEOUT(!got.loaded.isEmpty(), 30000);
    moe::Interventions iv;
    iv.layer(1, 4).masked = {99};  // the demo model has 16 experts
    worker.setInterventions(iv);
    worker.send(shortTurn());
    QTRY_VERIFY_WITH_TIMEOUT(!got.finished.isEmpty(), 30000);
    QVERIFY(!got.errors.isEmpty());
    QVERIFY2(got.errors[0].contains(QStringLiteral("99")), qPrintable(got.errors[0]));
    QVERIFY(worker.store().size() > 0);  // the turn ran without them
  }

  // The samples are the backend's own report (Backend::device_memory()): on the CPU its KV cache and
  // workspace, no weights (they are the mapped files), and the host's resident set.
  void memoryIsSampledFromTheBackend() {
    EngineWorker worker;
    Signals got(worker);
    worker.loadModel(demoModel(), oneThread());
    QTRY_VERIFY_WITH_TIMEOUT(!got.loaded.isEmpty(), 30000);
    worker.send(shortTurn());
    QTRY_VERIFY_WITH_TIMEOUT(!got.finished.isEmpty(), 30000);
    const auto live = worker.live();
    QVERIFY(live.memory.size() >= 2);  // at the load and after the turn
    const moe::views::MemorySample& s = live.memory.back();
    QVERIFY(!s.gpu);
    QCOMPARE(s.device, std::string("cpu"));
    QCOMPARE(s.kv_allocated_bytes, live.model->kv_bytes_per_token * uint64_t(live.model->context));
    QVERIFY(s.kv_used_bytes > 0);
    QCOMPARE(s.kv_used_bytes % live.model->kv_bytes_per_token, uint64_t(0));
    QVERIFY(s.workspace_bytes > 0);
    QCOMPARE(s.weight_bytes(), uint64_t(0));
    QCOMPARE(s.other_process_bytes, uint64_t(0));
    QVERIFY(s.process_rss_bytes > 0);
  }

  void newChatForgetsTheConversationAndTheTrace() {
    EngineWorker worker;
    Signals got(worker);
    worker.loadModel(demoModel(), oneThread());
    QTRY_VERIFY_WITH_TIMEOUT(!got.loaded.isEmpty(), 30000);
    worker.send(shortTurn());
    QTRY_VERIFY_WITH_TIMEOUT(!got.finished.isEmpty(), 30000);
    QCOMPARE(int(worker.live().turns.size()), 1);
    QVERIFY(worker.store().size() > 0);
    worker.newChat();
    QTRY_VERIFY_WITH_TIMEOUT(worker.live().turns.empty() && worker.store().size() == 0, 10000);
  }
};

QTEST_MAIN(EngineWorkerTest)
#include "engine_worker_test.moc"
