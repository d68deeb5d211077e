#pragma once
// The backend's memory by part (Backend::device_memory()) as the memory view draws it: the one place
// that knows which of the backend's parts go into which of the view's.
#include "engine/backend/backend.h"
#include "views/workbench_data.h"

namespace moe::app {

// Sums the backend's uses into the view's parts: the weights into embeddings, attention, routed and
// shared experts and other (router, dense MLP, norms, head); the KV cache as allocated; activations;
// workspace. A part this table does not know counts as workspace, so that the total stays what the
// backend holds. `gpu`: the backend's memory is device memory (Backend::is_gpu()). Leaves t_s and the
// process's resident set to the caller.
views::MemorySample memory_sample(const DeviceMemory& memory, bool gpu);

}  // namespace moe::app
