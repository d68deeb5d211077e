#pragma once
// The model card's numbers, read from a loaded model and its session (engine → views::ModelFacts).
#include <string>

#include "views/workbench_data.h"

namespace moe {
class Model;
class Conversation;
}  // namespace moe

namespace moe::app {

// Everything the model card shows. Weight bytes per part are the part's share of the parameters times
// the bytes the checkpoint stores per parameter (its matrices share one dtype in every HF checkpoint we
// load; the F32 norm vectors are a rounding error next to them).
views::ModelFacts model_facts(const Model& model, Conversation& conversation);

// The machine's memory (MemTotal of /proc/meminfo): the device total of the CPU backend; 0 when unknown.
uint64_t device_memory_bytes();
// Resident set of this process (/proc/self/statm), 0 when unknown.
uint64_t process_rss_bytes();

}  // namespace moe::app
