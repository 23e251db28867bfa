// Device placement ("place-devices", docs/cuda.md): every node the device
// supports is placed there (its "device" attribute, ir/placement.h), every
// other node stays on the host; a codebook.CopyToDevice or CopyToHost node
// is inserted at every boundary, once per value and direction. Graph inputs
// arrive on the host and graph outputs are returned there (an output made on
// the device keeps its name on the host copy). Constants a device node reads
// get a CopyToDevice that the runtime runs once, at compile time.
//
// Never placed: control flow (its subgraphs run on the host), the producers
// of values a subgraph captures, and the copy nodes themselves. Shape and Size
// read only dims and take a device value without a copy. A graph that already
// has copy nodes is left as it is.
#pragma once
#include <functional>

#include "backends/backend.h"
#include "ir/graph.h"
#include "passes/pass.h"

namespace cb {

struct PlacementTarget {
  Device device;
  std::function<bool(const Node&)> supports;
};

// The target of a device backend: its device and its supports(node).
PlacementTarget placement_target(const Backend& device_backend);

struct PlacementStats {
  int placed = 0;            // nodes on the device
  int copies_to_device = 0;  // CopyToDevice nodes inserted (constants included)
  int copies_to_host = 0;    // CopyToHost nodes inserted
};

PlacementStats place_devices(Graph& g, const PlacementTarget& target);

class PlaceDevicesPass : public Pass {
 public:
  explicit PlaceDevicesPass(PlacementTarget target) : target_(std::move(target)) {}
  std::string name() const override { return "place-devices"; }
  bool run(Graph& g) override {
    stats_ = place_devices(g, target_);
    return stats_.placed > 0;
  }
  const PlacementStats& stats() const { return stats_; }

 private:
  PlacementTarget target_;
  PlacementStats stats_;
};

}  // namespace cb
