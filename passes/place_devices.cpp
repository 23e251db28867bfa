#include "passes/place_devices.h"

#include <map>
#include <set>

#include "ir/codebook.h"
#include "ir/placement.h"
#include "support/error.h"

namespace cb {

PlacementTarget placement_target(const Backend& device_backend) {
  return {device_backend.device(), [&device_backend](const Node& n) { return device_backend.supports(n); }};
}

namespace {

bool has_subgraph(const Node& n) {
  for (auto& [k, a] : n.attrs)
    if (std::holds_alternative<std::shared_ptr<Graph>>(a)) return true;
  return false;
}

// "x" on "sim:0" -> "x.on_sim0": a value name the IR text reads back.
std::string copy_name(const Value& v, const Device& d) {
  return v.name + ".on_" + d.kind + (d.is_host() ? "" : std::to_string(d.index));
}

}  // namespace

PlacementStats place_devices(Graph& g, const PlacementTarget& target) {
  PlacementStats stats;
  CB_CHECK(!target.device.is_host(), "place-devices: the target device must not be the host");
  for (auto& n : g.nodes())
    if (is_copy_to_device(*n) || is_copy_to_host(*n)) return stats;  // already placed

  // Values read by subgraphs must stay on the host: their producers are not placed.
  std::set<const Value*> captured;
  for (auto& n : g.nodes())
    for (auto& [k, a] : n->attrs)
      if (auto sg = std::get_if<std::shared_ptr<Graph>>(&a))
        for (Value* v : graph_captures(**sg)) captured.insert(v);
  const std::string device = target.device.str();
  for (auto& n : g.nodes()) {
    if (has_subgraph(*n) || !target.supports(*n)) continue;
    bool feeds_subgraph = false;
    for (Value* v : n->outputs) feeds_subgraph |= v && captured.count(v);
    if (feeds_subgraph) continue;
    n->attrs[kDeviceAttr] = device;
    stats.placed++;
  }
  if (stats.placed == 0) return stats;

  // Where each value is available: its home (the producer's device, the host
  // for inputs and constants), plus the copies made so far.
  std::map<std::pair<const Value*, bool>, Value*> on;  // (value, on the device?) -> the value there
  auto home_is_device = [](const Value* v) { return v->producer && !output_device(*v->producer).is_host(); };
  auto available = [&](Value* v, bool want_device) -> Value* {
    if (home_is_device(v) == want_device) return v;
    auto [it, fresh] = on.emplace(std::pair{v, want_device}, nullptr);
    if (!fresh) return it->second;
    Value* c = g.add_value(copy_name(*v, want_device ? target.device : Device::host()), v->type);
    g.add_node(want_device ? kCopyToDeviceOp : kCopyToHostOp, {v}, {c}, {{kDeviceAttr, device}}, "", kCodebookDomain);
    (want_device ? stats.copies_to_device : stats.copies_to_host)++;
    return it->second = c;
  };

  // A graph output made on the device: the device result gets a new name and
  // the output's own value becomes its host copy.
  for (Value*& out : g.outputs) {
    if (!out || !home_is_device(out)) continue;
    Value* dev = g.add_value(copy_name(*out, target.device), out->type);
    Node* producer = out->producer;
    producer->outputs[size_t(out->producer_output)] = dev;
    dev->producer = producer;
    dev->producer_output = out->producer_output;
    for (auto& n : g.nodes())
      for (Value*& in : n->inputs)
        if (in == out) in = dev;
    g.add_node(kCopyToHostOp, {dev}, {out}, {{kDeviceAttr, device}}, "", kCodebookDomain);
    stats.copies_to_host++;
    on[{dev, false}] = out;
  }

  std::vector<Node*> nodes;
  for (auto& n : g.nodes()) nodes.push_back(n.get());
  for (Node* n : nodes) {
    if (is_copy_to_device(*n) || is_copy_to_host(*n) || reads_only_dims(*n)) continue;
    const bool want_device = !input_device(*n).is_host();
    for (Value*& in : n->inputs)
      if (in) in = available(in, want_device);
  }
  for (Value*& out : g.outputs)
    if (out) out = available(out, false);
  g.toposort();  // each copy lands just before its first reader
  return stats;
}

}  // namespace cb
