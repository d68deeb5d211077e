// Choosing the device: the GPU when asked for (or found, with Auto) and usable, else the CPU, and one
// line for the user saying which and why.
#include "engine/backend/backend.h"
#include "engine/backend/cuda_coverage.h"
#include "engine/common/error.h"
#include "engine/model/model.h"

#ifdef MOE_HAVE_CUDA
#include "engine/backend/cuda/cuda_backend.h"
#include "engine/backend/cuda/device_probe.h"
#endif

namespace moe {

MadeBackend make_backend(const Model& model, const BackendOptions& options) {
  MadeBackend made;
  if (options.device == Device::Cpu) {
    made.backend = make_cpu_backend(model, options);
    made.note = made.backend->describe();
    return made;
  }
#ifdef MOE_HAVE_CUDA
  // What the kernels do not implement runs on the CPU without touching a device.
  std::string why = cuda_refusal(model.spec());
  if (why.empty()) {
    const cuda::Probe probe = cuda::probe_devices();
    if (probe.devices.empty()) {
      why = probe.problem;
    } else if (options.cuda_device < 0 || size_t(options.cuda_device) >= probe.devices.size()) {
      why = "CUDA device " + std::to_string(options.cuda_device) + " does not exist (" +
            std::to_string(probe.devices.size()) + " found)";
    } else {
      try {
        made.backend = cuda::make_cuda_backend(model, options);
        made.note = made.backend->describe();
        return made;
      } catch (const EngineError& e) {
        if (e.field() == "cancelled") throw;
        why = e.what();
      }
    }
  }
  if (!model.has_weights()) throw EngineError("", "device", why + "; and this model has no weights for the CPU");
  made.backend = make_cpu_backend(model, options);
  made.note = why + "; running on the CPU (" + made.backend->describe() + ")";
  return made;
#else
  // Asked for a GPU, or for whatever works best: say why it is the CPU.
  made.backend = make_cpu_backend(model, options);
  made.note = "built without CUDA; running on the CPU (" + made.backend->describe() + ")";
  return made;
#endif
}

}  // namespace moe
