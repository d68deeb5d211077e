#pragma once
// Several observers on one forward pass: the request is the union of theirs, and every record goes to
// each of them (each reads only what it asked for).
#include <vector>

#include "engine/hooks/step_observer.h"

namespace moe {

class ObserverFanout : public StepObserver {
 public:
  explicit ObserverFanout(std::vector<StepObserver*> observers) : observers_(std::move(observers)) {}
  HookRequest ask() const override {
    HookRequest r;
    for (const StepObserver* o : observers_)
      if (o) r.merge(o->ask());
    return r;
  }
  void observe(const StepRecord& record) override {
    for (StepObserver* o : observers_)
      if (o) o->observe(record);
  }

 private:
  std::vector<StepObserver*> observers_;
};

}  // namespace moe
