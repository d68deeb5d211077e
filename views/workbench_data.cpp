#include "views/workbench_data.h"

namespace moe::views {

WorkbenchData WorkbenchData::empty() {
  WorkbenchData d;
  d.trace = std::make_shared<const inspect::Trace>();
  d.token_text = std::make_shared<const std::vector<std::string>>();
  d.chat = std::make_shared<const std::vector<ChatTurn>>();
  d.memory = std::make_shared<const std::vector<MemorySample>>();
  return d;
}

const std::string& WorkbenchData::text_of(int64_t row) const {
  static const std::string none;
  if (!token_text || row < 0 || row >= int64_t(token_text->size())) return none;
  return (*token_text)[size_t(row)];
}

}  // namespace moe::views
