// The CUDA runtime calls the engine makes, implemented on the host for the emulator (runtime.h says
// how streams are emulated). The emulated device is visible only where MOE_CUDA_EMULATOR=1 is set (the
// CUDA tests); elsewhere it reports no device, so everything else in an emulator build takes the CPU
// path exactly as a build on a machine without a GPU does.
#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "tests/cuda_emulator/runtime.h"

namespace moe_emu {
namespace {

constexpr size_t kSharedPerBlock = 48 << 10;         // without cudaFuncSetAttribute
constexpr size_t kSharedPerBlockOptIn = 227 << 10;   // Hopper's limit with it
constexpr int kMultiprocessors = 4;
constexpr size_t kPoisonUpTo = size_t(64) << 20;     // fresh allocations up to this size start as NaN bytes

struct Stream {
  bool blocking = true;  // synchronises with the legacy default stream
  bool capturing = false;
  std::vector<Work> captured;
  std::deque<Work> pending;
};

struct Event {
  Stream* stream = nullptr;  // where it was last recorded
  bool recorded = false;
  bool completed = false;
  std::chrono::steady_clock::time_point at{};
};

struct Graph {
  std::vector<Work> ops;
};

struct Allocation {
  size_t bytes = 0;
  bool pinned_host = false;
};

struct Device {
  std::recursive_mutex mutex;
  std::map<uintptr_t, Allocation> allocations;
  size_t used = 0;
  size_t capacity = 0;
  Stream legacy;
  std::set<Stream*> streams;
  int captures = 0;
  bool captures_invalidated = false;
  cudaError_t last_error = cudaSuccess;
  std::map<const void*, size_t> dynamic_shared_limit;

  Device() {
    const char* mib = std::getenv("MOE_CUDA_EMULATOR_MEMORY_MIB");
    capacity = (mib ? std::strtoull(mib, nullptr, 10) : 4096ull) << 20;
  }
};

Device& device() {
  static Device d;
  return d;
}

bool enabled() {
  const char* e = std::getenv("MOE_CUDA_EMULATOR");
  return e && std::strcmp(e, "1") == 0;
}

Stream* stream_of(cudaStream_t s) {
  // 0, cudaStreamLegacy and cudaStreamPerThread all name the default stream here.
  if (s == nullptr || s == cudaStreamLegacy || s == cudaStreamPerThread) return &device().legacy;
  return reinterpret_cast<Stream*>(s);
}

// Runs queued work in order; the early part of each item runs before the item ahead of it.
template <typename Queue>
void run_in_order(Queue& q) {
  while (!q.empty()) {
    Work w = std::move(q.front());
    q.pop_front();
    if (!q.empty() && q.front().early) q.front().early();
    w.run();
  }
}

void drain(Stream& s) { run_in_order(s.pending); }

// The legacy default stream waits for the blocking streams' earlier work, and they for its.
void drain_legacy() {
  Device& d = device();
  for (Stream* s : d.streams)
    if (s->blocking) drain(*s);
  drain(d.legacy);
}
void drain_stream(Stream& s) {
  if (&s == &device().legacy) return drain_legacy();
  if (s.blocking) drain(device().legacy);
  drain(s);
}
void drain_all() {
  Device& d = device();
  for (Stream* s : d.streams) drain(*s);
  drain(d.legacy);
}

// A call that would synchronise while a stream is being captured: the capture is broken (as on the GPU).
bool capture_forbids() {
  Device& d = device();
  if (d.captures == 0) return false;
  d.captures_invalidated = true;
  return true;
}

const Allocation* find_allocation(const void* p, uintptr_t* base = nullptr) {
  auto& a = device().allocations;
  const auto u = reinterpret_cast<uintptr_t>(p);
  auto it = a.upper_bound(u);
  if (it == a.begin()) return nullptr;
  --it;
  if (u >= it->first + std::max<size_t>(it->second.bytes, 1)) return nullptr;
  if (base) *base = it->first;
  return &it->second;
}

// [p, p + n) lies inside one allocation of the wanted kind.
bool inside(const void* p, size_t n, bool want_device) {
  uintptr_t base = 0;
  const Allocation* a = find_allocation(p, &base);
  if (!a || a->pinned_host == want_device) return false;
  return reinterpret_cast<uintptr_t>(p) + n <= base + a->bytes;
}
bool pinned(const void* p) {
  const Allocation* a = find_allocation(p);
  return a && a->pinned_host;
}

// Whether dst/src of a copy are where its kind says; pageable host memory is fine where host memory is.
bool copy_ends_valid(void* dst, const void* src, size_t n, cudaMemcpyKind kind) {
  const bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (kind == cudaMemcpyDefault) return true;
  if (dst_dev ? !inside(dst, n, true) : find_allocation(dst) && !pinned(dst)) return false;
  if (src_dev ? !inside(src, n, true) : find_allocation(src) && !pinned(src)) return false;
  return true;
}

cudaError_t allocate(void** p, size_t bytes, bool pinned_host) {
  Device& d = device();
  if (!pinned_host && d.used + bytes > d.capacity) return note_error(cudaErrorMemoryAllocation);
  void* mem = nullptr;
  if (posix_memalign(&mem, 256, std::max<size_t>(bytes, 1)) != 0) return note_error(cudaErrorMemoryAllocation);
  if (bytes <= kPoisonUpTo) std::memset(mem, 0xff, bytes);
  d.allocations[reinterpret_cast<uintptr_t>(mem)] = Allocation{bytes, pinned_host};
  if (!pinned_host) d.used += bytes;
  *p = mem;
  return cudaSuccess;
}

cudaError_t release(void* p, bool pinned_host) {
  if (!p) return cudaSuccess;
  Device& d = device();
  auto it = d.allocations.find(reinterpret_cast<uintptr_t>(p));
  if (it == d.allocations.end() || it->second.pinned_host != pinned_host) return note_error(cudaErrorInvalidValue);
  if (!pinned_host) d.used -= it->second.bytes;
  d.allocations.erase(it);
  std::free(p);
  return cudaSuccess;
}

}  // namespace

cudaError_t note_error(cudaError_t e) {
  if (e != cudaSuccess) device().last_error = e;
  return e;
}

bool is_device_pointer(const void* p) {
  std::lock_guard lock(device().mutex);
  return find_allocation(p) != nullptr;
}

void kernel_launch_fault(const char* kernel, const std::string& what) {
  std::fprintf(stderr, "CUDA emulator: launch of %s: %s\n", kernel, what.c_str());
  std::fflush(stderr);
  std::abort();
}

cudaError_t enqueue(cudaStream_t stream, Work op) {
  Device& d = device();
  std::lock_guard lock(d.mutex);
  Stream* s = stream_of(stream);
  if (s->capturing) {
    s->captured.push_back(std::move(op));
    return cudaSuccess;
  }
  // Work on the legacy stream during a capture would be an implicit dependency the graph cannot hold.
  if (d.captures > 0 && s == &d.legacy) {
    d.captures_invalidated = true;
    return note_error(cudaErrorStreamCaptureImplicit);
  }
  s->pending.push_back(std::move(op));
  return cudaSuccess;
}

void submit_kernel(const GridShape& shape, const void* kernel, cudaStream_t stream, std::function<void()> body) {
  Device& d = device();
  std::lock_guard lock(d.mutex);
  const dim3 b = shape.block, g = shape.grid;
  const unsigned long long threads = 1ull * b.x * b.y * b.z;
  if (threads == 0 || threads > 1024 || b.z > 64 || g.x == 0 || g.y == 0 || g.z == 0 || g.y > 65535 || g.z > 65535 ||
      g.x > 0x7fffffffu) {
    note_error(cudaErrorInvalidConfiguration);
    return;
  }
  size_t limit = kSharedPerBlock;
  if (auto it = d.dynamic_shared_limit.find(kernel); it != d.dynamic_shared_limit.end()) limit = it->second;
  if (shape.dynamic_shared_bytes > limit) {
    note_error(cudaErrorInvalidValue);
    return;
  }
  if (shape.dependent) {
    auto grid = std::make_shared<DependentGrid>(shape, std::move(body));
    enqueue(stream, Work{[grid] { grid->run(); }, [grid] { grid->start_early(); }});
    return;
  }
  enqueue(stream, [shape, body = std::move(body)] { run_grid(shape, body); });
}

}  // namespace moe_emu

using namespace moe_emu;

#define MOE_EMU_ENTRY()                       \
  if (!enabled()) return cudaErrorNoDevice;   \
  std::lock_guard lock_(device().mutex)

// ---- errors ----
cudaError_t cudaGetLastError() {
  const cudaError_t e = device().last_error;
  device().last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return device().last_error; }
const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureImplicit: return "cudaErrorStreamCaptureImplicit";
    case cudaErrorIllegalState: return "cudaErrorIllegalState";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    default: return "cudaErrorUnknown";
  }
}
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected (CUDA emulator not enabled: MOE_CUDA_EMULATOR=1)";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureImplicit: return "operation would make the legacy stream depend on a capturing blocking stream";
    case cudaErrorIllegalState: return "the operation is not permitted in the current state";
    case cudaErrorNotSupported: return "operation not supported (by the CUDA emulator)";
    default: return "unknown error (CUDA emulator)";
  }
}

// ---- devices ----
cudaError_t cudaGetDeviceCount(int* count) {
  *count = 0;
  if (!enabled()) return note_error(cudaErrorNoDevice);
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int dev) {
  MOE_EMU_ENTRY();
  return dev == 0 ? cudaSuccess : note_error(cudaErrorInvalidDevice);
}
cudaError_t cudaGetDevice(int* dev) {
  MOE_EMU_ENTRY();
  *dev = 0;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int dev) {
  MOE_EMU_ENTRY();
  if (dev != 0) return note_error(cudaErrorInvalidDevice);
  std::memset(p, 0, sizeof(*p));
  std::snprintf(p->name, sizeof(p->name), "CUDA emulator (host CPU)");
  p->totalGlobalMem = device().capacity;
  p->sharedMemPerBlock = kSharedPerBlock;
  p->sharedMemPerBlockOptin = kSharedPerBlockOptIn;
  p->regsPerBlock = 65536;
  p->warpSize = 32;
  p->maxThreadsPerBlock = 1024;
  p->maxThreadsDim[0] = p->maxThreadsDim[1] = 1024;
  p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 0x7fffffff;
  p->maxGridSize[1] = p->maxGridSize[2] = 65535;
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = kMultiprocessors;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int dev) {
  MOE_EMU_ENTRY();
  if (dev != 0) return note_error(cudaErrorInvalidDevice);
  switch (attr) {
    case cudaDevAttrMultiProcessorCount: *value = kMultiprocessors; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = int(kSharedPerBlockOptIn); return cudaSuccess;
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; return cudaSuccess;
    case cudaDevAttrWarpSize: *value = 32; return cudaSuccess;
    default: return note_error(cudaErrorNotSupported);
  }
}
cudaError_t cudaDeviceSynchronize() {
  MOE_EMU_ENTRY();
  if (capture_forbids()) return note_error(cudaErrorStreamCaptureUnsupported);
  drain_all();
  return cudaSuccess;
}
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* a, const void* func) {
  MOE_EMU_ENTRY();
  if (!func) return note_error(cudaErrorInvalidDeviceFunction);
  std::memset(a, 0, sizeof(*a));
  a->maxThreadsPerBlock = 1024;
  a->binaryVersion = a->ptxVersion = 90;  // what cudaGetDeviceProperties reports
  auto it = device().dynamic_shared_limit.find(func);
  a->maxDynamicSharedSizeBytes = int(it == device().dynamic_shared_limit.end() ? kSharedPerBlock : it->second);
  return cudaSuccess;
}
cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  MOE_EMU_ENTRY();
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return note_error(cudaErrorNotSupported);
  if (value < 0 || size_t(value) > kSharedPerBlockOptIn) return note_error(cudaErrorInvalidValue);
  device().dynamic_shared_limit[func] = std::max(kSharedPerBlock, size_t(value));
  return cudaSuccess;
}

// ---- memory ----
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total) {
  MOE_EMU_ENTRY();
  *total = device().capacity;
  *free_bytes = device().capacity - device().used;
  return cudaSuccess;
}
cudaError_t cudaMalloc(void** p, size_t bytes) {
  MOE_EMU_ENTRY();
  if (capture_forbids()) return note_error(cudaErrorStreamCaptureUnsupported);
  return allocate(p, bytes, false);
}
cudaError_t cudaFree(void* p) {
  MOE_EMU_ENTRY();
  if (capture_forbids()) return note_error(cudaErrorStreamCaptureUnsupported);
  drain_all();  // cudaFree waits for the device
  return release(p, false);
}
cudaError_t cudaMallocHost(void** p, size_t bytes) {
  MOE_EMU_ENTRY();
  return allocate(p, bytes, true);
}
cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned int) {
  MOE_EMU_ENTRY();
  return allocate(p, bytes, true);
}
cudaError_t cudaFreeHost(void* p) {
  MOE_EMU_ENTRY();
  drain_all();
  return release(p, true);
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t n, cudaMemcpyKind kind) {
  MOE_EMU_ENTRY();
  if (n == 0) return cudaSuccess;  // nothing to copy (the pointers may be null)
  if (capture_forbids()) return note_error(cudaErrorStreamCaptureUnsupported);
  if (!copy_ends_valid(dst, src, n, kind)) return note_error(cudaErrorInvalidValue);
  drain_legacy();
  std::memmove(dst, src, n);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n, cudaMemcpyKind kind, cudaStream_t stream) {
  MOE_EMU_ENTRY();
  if (n == 0) return cudaSuccess;  // nothing to copy (the pointers may be null)
  if (!copy_ends_valid(dst, src, n, kind)) return note_error(cudaErrorInvalidValue);
  Stream* s = stream_of(stream);
  const bool host_src = kind == cudaMemcpyHostToDevice, host_dst = kind == cudaMemcpyDeviceToHost;
  const bool pageable = (host_src && !pinned(src)) || (host_dst && !pinned(dst));
  if (pageable) {
    // A graph cannot hold a copy from or to pageable memory; outside a capture the copy is staged at
    // the call (host to device) or completes before the call returns (device to host).
    if (s->capturing) {
      device().captures_invalidated = true;
      return note_error(cudaErrorStreamCaptureUnsupported);
    }
    if (host_dst) {
      drain_stream(*s);
      std::memmove(dst, src, n);
      return cudaSuccess;
    }
    auto staged = std::make_shared<std::vector<unsigned char>>(static_cast<const unsigned char*>(src),
                                                               static_cast<const unsigned char*>(src) + n);
    return enqueue(stream, [dst, staged] { std::memcpy(dst, staged->data(), staged->size()); });
  }
  return enqueue(stream, [dst, src, n] { std::memmove(dst, src, n); });
}
cudaError_t cudaMemset(void* p, int value, size_t n) {
  MOE_EMU_ENTRY();
  if (capture_forbids()) return note_error(cudaErrorStreamCaptureUnsupported);
  if (n == 0) return cudaSuccess;
  if (!inside(p, n, true)) return note_error(cudaErrorInvalidValue);
  drain_legacy();
  std::memset(p, value, n);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* p, int value, size_t n, cudaStream_t stream) {
  MOE_EMU_ENTRY();
  if (n == 0) return cudaSuccess;  // nothing to copy (the pointers may be null)
  if (!inside(p, n, true)) return note_error(cudaErrorInvalidValue);
  return enqueue(stream, [p, value, n] { std::memset(p, value, n); });
}

// ---- streams ----
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned int flags) {
  MOE_EMU_ENTRY();
  auto* st = new Stream;
  st->blocking = !(flags & cudaStreamNonBlocking);
  device().streams.insert(st);
  *s = reinterpret_cast<cudaStream_t>(st);
  return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, cudaStreamDefault); }
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  MOE_EMU_ENTRY();
  Stream* st = stream_of(s);
  if (st == &device().legacy || !device().streams.count(st)) return note_error(cudaErrorInvalidResourceHandle);
  drain(*st);  // its work still completes
  device().streams.erase(st);
  delete st;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  MOE_EMU_ENTRY();
  if (capture_forbids()) return note_error(cudaErrorStreamCaptureUnsupported);
  drain_stream(*stream_of(s));
  return cudaSuccess;
}

// ---- events ----
cudaError_t cudaEventCreate(cudaEvent_t* e) {
  MOE_EMU_ENTRY();
  *e = reinterpret_cast<cudaEvent_t>(new Event);
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned int) { return cudaEventCreate(e); }
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  MOE_EMU_ENTRY();
  delete reinterpret_cast<Event*>(e);
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  MOE_EMU_ENTRY();
  Event* ev = reinterpret_cast<Event*>(e);
  Stream* st = stream_of(s);
  if (!st->capturing) {
    ev->stream = st;
    ev->recorded = true;
    ev->completed = false;
  }
  return enqueue(s, [ev, st] {
    ev->stream = st;
    ev->recorded = ev->completed = true;
    ev->at = std::chrono::steady_clock::now();
  });
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  MOE_EMU_ENTRY();
  if (capture_forbids()) return note_error(cudaErrorStreamCaptureUnsupported);
  Event* ev = reinterpret_cast<Event*>(e);
  if (ev->stream) drain_stream(*ev->stream);
  return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  MOE_EMU_ENTRY();
  const Event* ea = reinterpret_cast<Event*>(a);
  const Event* eb = reinterpret_cast<Event*>(b);
  if (!ea->recorded || !eb->recorded) return note_error(cudaErrorInvalidResourceHandle);
  if (!ea->completed || !eb->completed) return note_error(cudaErrorNotReady);
  *ms = std::chrono::duration<float, std::milli>(eb->at - ea->at).count();
  return cudaSuccess;
}

// ---- graphs ----
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode) {
  MOE_EMU_ENTRY();
  Stream* st = stream_of(s);
  if (st == &device().legacy || st->capturing) return note_error(cudaErrorStreamCaptureUnsupported);
  st->capturing = true;
  st->captured.clear();
  if (device().captures++ == 0) device().captures_invalidated = false;
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* graph) {
  MOE_EMU_ENTRY();
  Stream* st = stream_of(s);
  *graph = nullptr;
  if (!st->capturing) return note_error(cudaErrorIllegalState);
  st->capturing = false;
  --device().captures;
  if (device().captures_invalidated) {
    st->captured.clear();
    return note_error(cudaErrorStreamCaptureInvalidated);
  }
  auto* g = new Graph;
  g->ops = std::move(st->captured);
  st->captured.clear();
  *graph = reinterpret_cast<cudaGraph_t>(g);
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  MOE_EMU_ENTRY();
  if (!graph) return note_error(cudaErrorInvalidValue);
  *exec = reinterpret_cast<cudaGraphExec_t>(new Graph(*reinterpret_cast<Graph*>(graph)));
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s) {
  MOE_EMU_ENTRY();
  if (!exec) return note_error(cudaErrorInvalidValue);
  const Graph* g = reinterpret_cast<Graph*>(exec);
  // The launch runs the graph as instantiated, even if the executable graph is destroyed before it runs.
  return enqueue(s, [q = std::deque<Work>(g->ops.begin(), g->ops.end())]() mutable { run_in_order(q); });
}
cudaError_t cudaGraphDestroy(cudaGraph_t g) {
  MOE_EMU_ENTRY();
  delete reinterpret_cast<Graph*>(g);
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t g) {
  MOE_EMU_ENTRY();
  delete reinterpret_cast<Graph*>(g);
  return cudaSuccess;
}
