// Device placement in the IR (docs/cuda.md). A placed node carries a
// "device" attribute ("cuda:0", "sim:0"): the backend of that device runs it
// and its inputs and outputs live in that device's memory. Nodes without one
// run on the host. The placement pass (passes/place_devices.h) inserts the
// two copy ops at every boundary:
//   codebook.CopyToDevice {device}: a host value copied to `device`;
//   codebook.CopyToHost {device}:   a value on `device` copied to the host.
// Both run on the device's backend (it owns the stream); on a host backend
// they are plain copies.
#pragma once
#include "ir/graph.h"

namespace cb {

inline constexpr const char* kCopyToDeviceOp = "CopyToDevice";
inline constexpr const char* kCopyToHostOp = "CopyToHost";
inline constexpr const char* kDeviceAttr = "device";

bool is_copy_to_device(const Node& n);
bool is_copy_to_host(const Node& n);
// The device whose backend runs `n`: its "device" attribute, else the host.
Device node_device(const Node& n);
// Where the node's input i / outputs are: the node's device, except the
// host side of a copy.
Device input_device(const Node& n);
Device output_device(const Node& n);
// Ops whose kernels read their inputs' dims, never their bytes (Shape,
// Size): they take a value on any device without a copy.
bool reads_only_dims(const Node& n);

}  // namespace cb
