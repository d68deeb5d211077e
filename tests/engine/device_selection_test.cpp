// Choosing the device (make_backend): the CPU when asked; the GPU when asked or found and usable; on a
// machine without one, the CPU with a note saying why — never a crash. Runs everywhere: what it
// expects depends on whether this build has CUDA and this machine a GPU.
#include <gtest/gtest.h>

#include <string>

#include "engine/backend/backend.h"
#include "engine/backend/cuda_coverage.h"
#include "engine/common/error.h"
#include "engine/model/model.h"
#include "engine/runtime/session.h"
#ifdef MOE_HAVE_CUDA
#include "engine/backend/cuda/device_probe.h"
#endif

namespace moe {
namespace {

const std::string kModels = std::string(MOE_TEST_DATA_DIR) + "/models/";
const std::string kConfigs = std::string(MOE_TEST_DATA_DIR) + "/../../resources/configs/";

bool machine_has_gpu() {
#ifdef MOE_HAVE_CUDA
  return !cuda::probe_devices().devices.empty();
#else
  return false;
#endif
}

TEST(DeviceSelection, Names) {
  Device d = Device::Cpu;
  EXPECT_TRUE(parse_device("cuda", d));
  EXPECT_EQ(d, Device::Cuda);
  EXPECT_TRUE(parse_device("auto", d));
  EXPECT_EQ(d, Device::Auto);
  EXPECT_FALSE(parse_device("tpu", d));
  EXPECT_EQ(d, Device::Auto);
  for (Device x : {Device::Auto, Device::Cpu, Device::Cuda}) {
    EXPECT_TRUE(parse_device(device_name(x), d));
    EXPECT_EQ(d, x);
  }
}

TEST(DeviceSelection, KvCacheDtypes) {
  DType t = DType::F16;
  EXPECT_TRUE(parse_kv_dtype("bf16", t));
  EXPECT_EQ(t, DType::BF16);
  EXPECT_TRUE(parse_kv_dtype("f32", t));
  EXPECT_EQ(t, DType::F32);
  EXPECT_FALSE(parse_kv_dtype("f16", t));  // the attention kernels read F32 or BF16 caches only
  EXPECT_EQ(t, DType::F32);
}

TEST(DeviceSelection, CpuWhenAsked) {
  auto model = Model::load(kModels + "qwen3_moe");
  BackendOptions o;
  o.device = Device::Cpu;
  const MadeBackend made = make_backend(*model, o);
  EXPECT_FALSE(made.backend->is_gpu());
  EXPECT_EQ(made.note.rfind("CPU", 0), 0u) << made.note;
  const DeviceMemory m = made.backend->device_memory();
  EXPECT_EQ(m.device, "cpu");
  EXPECT_EQ(m.bytes_of("kv cache"), made.backend->kv_cache_bytes_allocated());
  EXPECT_EQ(m.bytes_of("workspace"), made.backend->workspace_bytes());
}

TEST(DeviceSelection, CudaOrTheCpuWithTheReason) {
  auto model = Model::load(kModels + "qwen3_moe");
  for (Device d : {Device::Cuda, Device::Auto}) {
    BackendOptions o;
    o.device = d;
    const MadeBackend made = make_backend(*model, o);
    if (machine_has_gpu()) {
      EXPECT_TRUE(made.backend->is_gpu()) << made.note;
      EXPECT_EQ(made.note.rfind("CUDA, ", 0), 0u) << made.note;
    } else {
      // The CPU runs, and the note says why the GPU does not.
      EXPECT_FALSE(made.backend->is_gpu());
      EXPECT_NE(made.note.find("running on the CPU"), std::string::npos) << made.note;
#ifndef MOE_HAVE_CUDA
      if (d == Device::Cuda) {
        EXPECT_NE(made.note.find("built without CUDA"), std::string::npos) << made.note;
      }
#endif
    }
  }
  // Sessions say which device runs.
  BackendOptions o;
  o.device = Device::Auto;
  Session session(*model, o);
  EXPECT_FALSE(session.device_note().empty());
  EXPECT_EQ(session.backend().is_gpu(), machine_has_gpu());
}

TEST(DeviceSelection, AGpuThatDoesNotExist) {
  auto model = Model::load(kModels + "qwen3_moe");
  BackendOptions o;
  o.device = Device::Cuda;
  o.cuda_device = 99;
  const MadeBackend made = make_backend(*model, o);
  EXPECT_FALSE(made.backend->is_gpu());
  EXPECT_NE(made.note.find("running on the CPU"), std::string::npos) << made.note;
}

// What the CUDA kernels do not implement is named before a GPU is touched (make_backend then runs the model
// on the CPU with that sentence in its note), instead of computing another model there. Every family runs
// on the GPU now; a latent-attention spec with GPT-OSS's sinks or windows would not.
TEST(DeviceSelection, WhatTheGpuDoesNotRunRunsOnTheCpu) {
  for (const char* name : {"qwen3_moe", "deepseek_v3", "gpt_oss"})
    EXPECT_EQ(cuda_unsupported_features(Model::load(kModels + name)->spec()), "") << name;
  // Latent attention's kernels take neither sinks nor windows: a spec with both is refused by name.
  ModelSpec latent = Model::load(kModels + "deepseek_v3")->spec();
  latent.attn.sinks = true;
  latent.layer_window.assign(size_t(latent.n_layers), 0);
  latent.layer_window[1] = 8;
  EXPECT_EQ(cuda_unsupported_features(latent),
            "attention sinks with latent attention and sliding windows with latent attention");
  EXPECT_EQ(cuda_refusal(latent), "the CUDA backend does not run " + latent.family +
                                      "'s attention sinks with latent attention and sliding windows with latent attention yet");
  latent.attn.sinks = false;
  EXPECT_EQ(cuda_unsupported_features(latent), "sliding windows with latent attention");
}

// Shapes only (synthetic weights to be made on a GPU): without a GPU there is nothing to run them on.
TEST(DeviceSelection, ShapesWithoutAGpuAreAClearError) {
  if (machine_has_gpu()) GTEST_SKIP() << "a GPU is here: the shapes would run on it";
  SyntheticOptions so;
  so.shape_only = true;
  auto model = Model::synthetic(kConfigs + "olmoe-1b-7b-4layers.json", so);
  BackendOptions o;
  o.device = Device::Auto;
  try {
    make_backend(*model, o);
    FAIL() << "expected an error";
  } catch (const EngineError& e) {
    EXPECT_FALSE(std::string(e.what()).empty());
  }
}

}  // namespace
}  // namespace moe
