#pragma once
// The CUDA backend: the CPU backend's forward pass (cpu_backend.cpp) on one NVIDIA GPU, with the same
// hooks and interventions. Weights live on the GPU in their stored dtype (BF16/F16; F32 for tests) or
// are made there (synthetic models); dense projections go through cuBLAS, everything else through our
// kernels (kernels/*.cuh). A decode step is captured once as a CUDA graph and replayed; its hook records
// are copied to pinned host memory once per step.
#include <memory>

#include "engine/backend/backend.h"

namespace moe::cuda {

// Throws EngineError when the GPU cannot take the model: no device, out of memory (naming what did not
// fit), a CUDA error, or a cancelled upload (field "cancelled").
std::unique_ptr<Backend> make_cuda_backend(const Model& model, const BackendOptions& options);

}  // namespace moe::cuda
