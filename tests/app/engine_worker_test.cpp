// The engine worker as the window drives it, without the window: bad folders are refused with the file
// named, a reply can be stopped mid-way (slow motion does not delay the stop), bad interventions are
// reported and not applied, and a new chat forgets the conversation and its trace.
#include <QSignalSpy>
#include <QtTest>

#include "app/gui/engine_worker.h"

using moe::app::EngineWorker;
using moe::app::TurnRequest;

namespace {

QString demoModel() { return QStringLiteral(MOE_SOURCE_DIR "/resources/demo/moe"); }

moe::app::LoadOptions oneThread() {
  moe::app::LoadOptions o;
  o.threads = 1;
  return o;
}

}  // namespace

class EngineWorkerTest : public QObject {
  Q_OBJECT
 private slots:
  void aFolderWithoutConfigIsRefusedByName() {
    EngineWorker worker;
    QSignalSpy failed(&worker, &EngineWorker::loadFailed);
    worker.loadModel(QStringLiteral(MOE_TEST_DATA_DIR "/tokenizers/bpe"), oneThread());
    QVERIFY(failed.wait(30000));
    QVERIFY2(failed.at(0).at(0).toString().contains(QStringLiteral("config.json")), qPrintable(failed.at(0).at(0).toString()));
    QVERIFY(worker.modelPath().isEmpty());
  }

  void sendingWithoutAModelSaysSo() {
    EngineWorker worker;
    QSignalSpy error(&worker, &EngineWorker::engineError);
    TurnRequest r;
    r.user_text = "hello";
    worker.send(r);
    QVERIFY(error.wait(10000));
    QVERIFY(error.at(0).at(0).toString().contains(QStringLiteral("No model")));
  }

  void stopEndsASlowReplyAtOnce() {
    EngineWorker worker;
    QSignalSpy loaded(&worker, &EngineWorker::modelLoaded);
    worker.loadModel(demoModel(), oneThread());
    QVERIFY(loaded.wait(30000));
    worker.setPace(5);  // 5 tokens a second: the reply would take many seconds
    QSignalSpy finished(&worker, &EngineWorker::turnFinished);
    TurnRequest r;
    r.user_text = "What is 4821 + 739?";
    worker.send(r);
    QTRY_VERIFY_WITH_TIMEOUT(!worker.live().turns.empty() && worker.live().turns.back().tokens.size() >= 2, 10000);
    QElapsedTimer clock;
    clock.start();
    worker.stop();
    QVERIFY(finished.wait(5000));
    QVERIFY2(clock.elapsed() < 2000, "the stop waited for the slow-motion pace");
    QCOMPARE(finished.at(0).at(1).toString(), QStringLiteral("stopped"));
    const auto turn = worker.live().turns.back();
    QVERIFY(turn.finished);
    QVERIFY(turn.tokens.size() < 20);
  }

  void badInterventionsAreReportedAndNotApplied() {
    EngineWorker worker;
    QSignalSpy loaded(&worker, &EngineWorker::modelLoaded);
    worker.loadModel(demoModel(), oneThread());
    QVERIFY(loaded.wait(30000));
    QSignalSpy error(&worker, &EngineWorker::engineError);
    QSignalSpy finished(&worker, &EngineWorker::turnFinished);
    moe::Interventions iv;
    iv.layer(1, 4).masked = {99};  // the demo model has 16 experts
    worker.setInterventions(iv);
    TurnRequest r;
    r.user_text = "What is 1 + 2?";
    r.mode = "no-think";
    r.max_new_tokens = 4;
    worker.send(r);
    QVERIFY(finished.wait(30000));
    QVERIFY(error.count() >= 1);
    QVERIFY2(error.at(0).at(0).toString().contains(QStringLiteral("99")), qPrintable(error.at(0).at(0).toString()));
    QVERIFY(worker.store().size() > 0);  // the turn ran without them
  }

  void newChatForgetsTheConversationAndTheTrace() {
    EngineWorker worker;
    QSignalSpy loaded(&worker, &EngineWorker::modelLoaded);
    worker.loadModel(demoModel(), oneThread());
    QVERIFY(loaded.wait(30000));
    QSignalSpy finished(&worker, &EngineWorker::turnFinished);
    TurnRequest r;
    r.user_text = "What is 1 + 2?";
    r.mode = "no-think";
    r.max_new_tokens = 4;
    worker.send(r);
    QVERIFY(finished.wait(30000));
    QCOMPARE(int(worker.live().turns.size()), 1);
    QVERIFY(worker.store().size() > 0);
    worker.newChat();
    QTRY_VERIFY_WITH_TIMEOUT(worker.live().turns.empty() && worker.store().size() == 0, 10000);
  }
};

QTEST_MAIN(EngineWorkerTest)
#include "engine_worker_test.moc"
