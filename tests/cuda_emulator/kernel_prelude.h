#pragma once
// Included first by every kernel file the emulator build compiles with the host compiler (see
// rewrite_kernels.cmake): the CUDA headers' host side, then the device-side language — qualifiers,
// built-in variables, intrinsics and the launch that replaces `kernel<<<...>>>(...)` — mapped onto the
// emulator. Nothing here is used by the real (nvcc) build.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "tests/cuda_emulator/block_runner.h"
#include "tests/cuda_emulator/mma_sync.h"
#include "tests/cuda_emulator/runtime.h"
#include "tests/cuda_emulator/wmma.h"

// Kernel headers that need the emulator's hooks (dependent_launch.cuh) test this.
#define MOE_CUDA_EMULATED 1

#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __noinline__
#undef __launch_bounds__
#undef __shared__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
// Static shared arrays are function statics: one copy, reused by the blocks that run one after another.
#define __shared__ static

#define threadIdx (::moe_emu::position().thread_idx)
#define blockIdx (::moe_emu::position().block_idx)
#define blockDim (::moe_emu::position().block_dim)
#define gridDim (::moe_emu::position().grid_dim)

// ---- synchronisation and warp intrinsics ----
inline void __syncthreads() { ::moe_emu::sync_block(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { ::moe_emu::sync_warp(mask); }

namespace moe_emu {
template <typename T>
uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>);
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof(T));
  return b;
}
template <typename T>
T from_bits(uint64_t b) {
  T v;
  std::memcpy(&v, &b, sizeof(T));
  return v;
}
// The lane a shuffle within segments of `width` lanes reads; its own when the source falls outside.
inline int segment_lane(int lane, int src, int width) {
  const int base = lane & ~(width - 1);
  return (src < base || src >= base + width) ? lane : src;
}
}  // namespace moe_emu

template <typename T>
T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  const int lane = ::moe_emu::lane_id();
  const int s = (lane & ~(width - 1)) + (src & (width - 1));
  return ::moe_emu::from_bits<T>(::moe_emu::exchange(mask, ::moe_emu::to_bits(v), s));
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  const int lane = ::moe_emu::lane_id();
  const int s = ::moe_emu::segment_lane(lane, lane ^ lane_mask, width);
  return ::moe_emu::from_bits<T>(::moe_emu::exchange(mask, ::moe_emu::to_bits(v), s));
}
template <typename T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = ::moe_emu::lane_id();
  const int s = ::moe_emu::segment_lane(lane, lane - int(delta), width);
  return ::moe_emu::from_bits<T>(::moe_emu::exchange(mask, ::moe_emu::to_bits(v), s));
}
template <typename T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = ::moe_emu::lane_id();
  const int s = ::moe_emu::segment_lane(lane, lane + int(delta), width);
  return ::moe_emu::from_bits<T>(::moe_emu::exchange(mask, ::moe_emu::to_bits(v), s));
}
inline unsigned __ballot_sync(unsigned mask, int predicate) { return ::moe_emu::ballot(mask, predicate != 0); }

// ---- atomics: blocks and threads run one at a time, so a plain read-modify-write is atomic ----
template <typename T>
T atomicAdd(T* p, T v) {
  const T old = *p;
  *p = old + v;
  return old;
}
template <typename T>
T atomicExch(T* p, T v) {
  const T old = *p;
  *p = v;
  return old;
}
template <typename T>
T atomicMax(T* p, T v) {
  const T old = *p;
  *p = std::max(old, v);
  return old;
}

// ---- bit and arithmetic intrinsics ----
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline float __uint_as_float(unsigned x) { return ::moe_emu::from_bits<float>(x); }
inline unsigned __float_as_uint(float x) { return unsigned(::moe_emu::to_bits(x)); }
inline float __int_as_float(int x) { return ::moe_emu::from_bits<float>(uint32_t(x)); }
inline int __float_as_int(float x) { return int(::moe_emu::to_bits(x)); }
// The _rn forms exist on the GPU to forbid fusing into an FMA; the host compiler does not fuse here.
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
template <typename T>
T __ldg(const T* p) {
  return *p;
}
// Loads through L2 only (what a block reads of other blocks' writes in the same kernel): memory is one
// coherent array here, and blocks run one after another.
template <typename T>
T __ldcg(const T* p) {
  return *p;
}
inline void __threadfence() {}
// Device code calls min/max unqualified on mixed int types; the CUDA headers give the host no such
// overloads.
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
inline long min(long a, long b) { return a < b ? a : b; }
inline long max(long a, long b) { return a > b ? a : b; }
inline unsigned long min(unsigned long a, unsigned long b) { return a < b ? a : b; }
inline unsigned long max(unsigned long a, unsigned long b) { return a > b ? a : b; }
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }

// cuda_runtime.h has this overload only for nvcc: a kernel's address as the attribute's key.
template <typename T>
cudaError_t cudaFuncSetAttribute(T* entry, cudaFuncAttribute attr, int value) {
  return ::cudaFuncSetAttribute(reinterpret_cast<const void*>(entry), attr, value);
}

// ---- the launch: `k<<<grid, block, smem, stream>>>(args)` becomes launch("k", LaunchConfig(...), k, args) ----
// A kernel template must be launched with its template arguments named (k<float><<<...>>>), so that
// `k` has an address here (cudaFuncSetAttribute limits are looked up by it).
namespace moe_emu {

struct LaunchConfig {
  LaunchConfig(dim3 g, dim3 b, size_t smem = 0, cudaStream_t s = nullptr, bool dep = false)
      : grid(g), block(b), shared_bytes(smem), stream(s), dependent(dep) {}
  dim3 grid, block;
  size_t shared_bytes;
  cudaStream_t stream;
  bool dependent;  // a programmatic dependent launch (launch_dependent)
};

// A kernel argument that is a pointer must point into device (or pinned host) memory: a kernel handed a
// pageable host pointer reads garbage on a GPU.
template <typename P>
void check_argument(const char* kernel, int index, const P& value) {
  if constexpr (std::is_pointer_v<P>) {
    if (value != nullptr && !is_device_pointer(value))
      kernel_launch_fault(kernel, "argument " + std::to_string(index) + " is a pointer outside device memory");
  }
}

template <typename... Params, typename... Args>
void launch(const char* name, const LaunchConfig& c, void (*kernel)(Params...), Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "kernel launched with the wrong number of arguments");
  // Arguments are converted to the parameter types and copied at the launch, as CUDA does.
  std::tuple<std::decay_t<Params>...> params(std::forward<Args>(args)...);
  std::apply([&](const auto&... p) {
    int i = 0;
    (check_argument(name, i++, p), ...);
  }, params);
  GridShape shape;
  shape.kernel = name;
  shape.grid = c.grid;
  shape.block = c.block;
  shape.dynamic_shared_bytes = c.shared_bytes;
  shape.dependent = c.dependent;
  submit_kernel(shape, reinterpret_cast<const void*>(kernel), c.stream,
                [kernel, params = std::move(params)]() { std::apply(kernel, params); });
}

}  // namespace moe_emu
