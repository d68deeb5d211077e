#pragma once
// The one small interface every panel of the workbench implements (as RenderDoc's viewers do): the app
// hands it a new snapshot when something changed, at most ~30 times a second, and the view redraws
// from it. A hidden view only keeps the snapshot and redraws when it is shown again, so a closed dock
// costs nothing while the model streams.
#include "views/workbench_data.h"

namespace moe::views {

class WorkbenchView {
 public:
  virtual ~WorkbenchView() = default;
  // New data. Called on the GUI thread; must not block (no engine call, no file I/O).
  virtual void setData(const WorkbenchData& data) = 0;
};

}  // namespace moe::views
