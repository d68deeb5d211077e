#include "engine/backend/cuda/cuda_check.h"

#include <string>

#include "engine/common/error.h"

namespace moe::cuda {

void throw_cuda_error(const char* call, const char* detail, const char* file, int line) {
  std::string where = file;
  const auto slash = where.rfind('/');
  if (slash != std::string::npos) where = where.substr(slash + 1);
  throw EngineError("", "CUDA", std::string(detail) + " (" + call + ", " + where + ":" + std::to_string(line) + ")");
}

}  // namespace moe::cuda
