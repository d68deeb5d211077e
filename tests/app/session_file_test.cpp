// Saved sessions: what is saved comes back, and a damaged chat.json is refused with the file and the
// field named, never half-loaded.
#include <QTemporaryDir>
#include <QtTest>
#include <fstream>

#include "app/gui/session_file.h"
#include "engine/common/error.h"
#include "inspect/trace_file.h"

using moe::app::SessionFile;

namespace {

SessionFile sample() {
  SessionFile s;
  s.model_path = "/models/demo";
  s.trace = moe::inspect::load_trace(std::string(MOE_TEST_DATA_DIR) + "/views/demo_think_budget.trace.safetensors");
  moe::views::ChatTurn t;
  t.user_text = "What is 4821 + 739?";
  t.mode = "think";
  t.thinking = true;
  t.segment = 0;
  t.first_row = 0;
  t.thinking_budget = 12;
  t.thinking_tokens = 61;
  t.forced_stops = {{33, 12, 12}};
  t.finished = true;
  t.stop_reason = "eos";
  t.prompt_tokens = 21;
  t.tokens.push_back({"Add", 300, moe::Phase::Thinking, false, 22, 22, 0.01});
  t.tokens.push_back({" é", 301, moe::Phase::Answer, true, 88, 88, 0.02});
  t.tokens.push_back({"", 2, moe::Phase::Answer, false, 400, 89, 0.03});  // row past the trace: never ran
  s.turns = {t};
  return s;
}

void write(const QString& path, const std::string& text) {
  std::ofstream(path.toStdString(), std::ios::binary) << text;
}

}  // namespace

class SessionFileTest : public QObject {
  Q_OBJECT
 private slots:
  void savedSessionComesBack() {
    QTemporaryDir dir;
    const SessionFile s = sample();
    moe::app::save_session(dir.path().toStdString(), s);
    QVERIFY(moe::app::has_session(dir.path().toStdString()));
    QVERIFY(!QFile::exists(dir.filePath(QStringLiteral("chat.json.part"))));
    const SessionFile back = moe::app::load_session(dir.path().toStdString());
    QCOMPARE(back.model_path, s.model_path);
    QCOMPARE(back.trace.size(), s.trace.size());
    QCOMPARE(back.trace.expert_ids, s.trace.expert_ids);
    QCOMPARE(int(back.turns.size()), 1);
    const auto& t = back.turns[0];
    QCOMPARE(t.user_text, s.turns[0].user_text);
    QCOMPARE(t.thinking_budget, 12);
    QCOMPARE(int(t.forced_stops.size()), 1);
    QCOMPARE(t.forced_stops[0].position, 33);
    QCOMPARE(int(t.tokens.size()), 3);
    QCOMPARE(t.tokens[1].piece, std::string(" é"));
    QVERIFY(t.tokens[1].forced);
    QCOMPARE(t.tokens[1].phase, moe::Phase::Answer);
    QCOMPARE(t.tokens[1].row, qint64(88));
    QCOMPARE(t.tokens[2].row, qint64(-1));  // pointed past the trace
  }

  void damagedChatNamesFileAndField() {
    QTemporaryDir dir;
    moe::app::save_session(dir.path().toStdString(), sample());
    const QString chat = dir.filePath(QStringLiteral("chat.json"));
    struct Case {
      std::string text, field;
    };
    const std::vector<Case> cases = {
        {"{\"format\": \"moe-workbench-chat\", \"version\": 1, \"model\": \"m\"", ""},  // truncated
        {"{\"format\": \"something else\"}", "format"},
        {"{\"format\": \"moe-workbench-chat\", \"version\": 1, \"model\": \"m\"}", "turns"},
        {"{\"format\": \"moe-workbench-chat\", \"version\": 1, \"model\": \"m\", \"turns\": [{\"user\": 3}]}", "turns[0].user"},
        {"{\"format\": \"moe-workbench-chat\", \"version\": 9, \"model\": \"m\", \"turns\": []}", "version"},
    };
    for (const Case& c : cases) {
      write(chat, c.text);
      try {
        moe::app::load_session(dir.path().toStdString());
        QFAIL(("accepted: " + c.text).c_str());
      } catch (const moe::EngineError& e) {
        QVERIFY2(std::string(e.what()).find("chat.json") != std::string::npos, e.what());
        QCOMPARE(e.field(), c.field);
      }
    }
    // A token with a phase that does not exist.
    std::string text = moe::app::chat_to_json("m", sample().turns);
    const size_t at = text.find("\"Add\"");
    QVERIFY(at != std::string::npos);
    text.replace(text.find(',', at + 6) - 1, 1, "9");  // the phase after the piece
    write(chat, text);
    try {
      moe::app::load_session(dir.path().toStdString());
      QFAIL("accepted a phase of 9");
    } catch (const moe::EngineError& e) {
      QCOMPARE(e.field(), std::string("turns[0].tokens[0]"));
    }
  }

  void truncatedTraceIsRefused() {
    QTemporaryDir dir;
    moe::app::save_session(dir.path().toStdString(), sample());
    QFile trace(dir.filePath(QStringLiteral("trace.safetensors")));
    QVERIFY(trace.resize(trace.size() / 2));
    QVERIFY_THROWS_EXCEPTION(moe::EngineError, moe::app::load_session(dir.path().toStdString()));
  }
};

QTEST_MAIN(SessionFileTest)
#include "session_file_test.moc"
