#pragma once
// What the CUDA backend does not run yet. make_backend checks it before it touches a GPU, so such a model
// runs on the CPU with a note that says why, instead of on a GPU that would compute something else.
#include <string>

#include "engine/model/model_spec.h"

namespace moe {

// The parts of the spec the CUDA kernels do not implement, in words for the user ("" when none).
std::string cuda_unsupported_features(const ModelSpec& spec);
// The sentence that says so ("the CUDA backend does not run GPT-OSS's … yet"), or "" when it runs the spec.
std::string cuda_refusal(const ModelSpec& spec);

}  // namespace moe
