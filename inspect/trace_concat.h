#pragma once
// Joins traces of the same model into one, in order (e.g. the parts of a resumable corpus run). Token
// rows, steps, segments, attention rows and forced stops are appended with their indices shifted; a
// detail column one part lacks is filled with zeros and has_* = 0 for its rows; routing rows narrower
// than the widest part are padded with expert -1 / weight 0. Metadata is the first part's.
// Throws EngineError when the shapes (layers, MoE layers, experts, heads) differ.
#include <vector>

#include "inspect/trace.h"

namespace moe::inspect {

Trace concat_traces(const std::vector<Trace>& parts);

}  // namespace moe::inspect
