// The backend's memory by part, grouped into the memory view's parts: every part a backend reports
// lands in exactly one of the view's, the device's numbers pass through, and the CPU backend's own
// report (KV cache and workspace only) comes out as the view has always drawn it.
#include <QtTest>

#include "app/gui/memory_sample.h"

using moe::DeviceMemory;
using moe::app::memory_sample;

class MemorySampleTest : public QObject {
  Q_OBJECT
 private slots:
  void gpuPartsAreGroupedIntoTheViewsParts() {
    DeviceMemory m;
    m.device = "NVIDIA H100 80GB HBM3";
    m.total_bytes = 80'000'000'000;
    m.free_bytes = 60'000'000'000;
    m.other_bytes = 1'500'000'000;
    m.kv_used_bytes = 12'345;
    // Per layer where the allocator tags a layer, as the CUDA backend reports them; every size distinct
    // so that a part summed into the wrong field shows.
    m.uses = {{"embeddings", -1, 1000},     {"attention", 0, 200},      {"attention", 1, 201},
              {"router", 0, 30},            {"router", 1, 31},          {"routed experts", 0, 40'000},
              {"routed experts", 1, 40'001}, {"shared experts", 0, 5000}, {"shared experts", 1, 5001},
              {"dense mlp", 0, 700},        {"norms", 0, 6},            {"norms", -1, 7},
              {"head", -1, 900},            {"kv cache", -1, 64'000},   {"activations", -1, 3000},
              {"workspace", -1, 8000}};
    const moe::views::MemorySample s = memory_sample(m, true);
    QCOMPARE(s.embedding_bytes, uint64_t(1000));
    QCOMPARE(s.attention_bytes, uint64_t(401));
    QCOMPARE(s.routed_expert_bytes, uint64_t(80'001));
    QCOMPARE(s.shared_expert_bytes, uint64_t(10'001));
    QCOMPARE(s.other_weight_bytes, uint64_t(30 + 31 + 700 + 6 + 7 + 900));  // routers, dense MLP, norms, head
    QCOMPARE(s.kv_allocated_bytes, uint64_t(64'000));
    QCOMPARE(s.kv_used_bytes, uint64_t(12'345));
    QCOMPARE(s.activation_bytes, uint64_t(3000));
    QCOMPARE(s.workspace_bytes, uint64_t(8000));
    uint64_t reported = 0;
    for (const auto& u : m.uses) reported += u.bytes;
    QCOMPARE(s.weight_bytes() + s.kv_allocated_bytes + s.activation_bytes + s.workspace_bytes, reported);

    QVERIFY(s.gpu);
    QCOMPARE(s.device, std::string("NVIDIA H100 80GB HBM3"));
    QCOMPARE(s.device_total_bytes, uint64_t(80'000'000'000));
    QCOMPARE(s.device_free_bytes, uint64_t(60'000'000'000));
    QCOMPARE(s.other_process_bytes, uint64_t(1'500'000'000));
  }

  void cpuReportHasNoWeights() {
    DeviceMemory m;
    m.device = "cpu";
    m.kv_used_bytes = 4096;
    m.uses = {{"kv cache", -1, 1 << 20}, {"workspace", -1, 70'000}};
    const moe::views::MemorySample s = memory_sample(m, false);
    QVERIFY(!s.gpu);
    QCOMPARE(s.weight_bytes(), uint64_t(0));
    QCOMPARE(s.kv_allocated_bytes, uint64_t(1 << 20));
    QCOMPARE(s.kv_used_bytes, uint64_t(4096));
    QCOMPARE(s.workspace_bytes, uint64_t(70'000));
    QCOMPARE(s.activation_bytes, uint64_t(0));
    QCOMPARE(s.device_total_bytes, uint64_t(0));
    QCOMPARE(s.other_process_bytes, uint64_t(0));
  }

  // A part added to the engine before this table knows it still counts, as workspace.
  void anUnknownPartCountsAsWorkspace() {
    DeviceMemory m;
    m.uses = {{"workspace", -1, 100}, {"expert cache", -1, 23}};
    QCOMPARE(memory_sample(m, true).workspace_bytes, uint64_t(123));
  }
};

QTEST_MAIN(MemorySampleTest)
#include "memory_sample_test.moc"
