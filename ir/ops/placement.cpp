// Schemas of codebook.CopyToDevice and codebook.CopyToHost (ir/placement.h):
// one input, one output of the same type, a "device" attribute.
#include "ir/placement.h"

#include "ir/codebook.h"
#include "ir/op_registry.h"

namespace cb {

bool is_copy_to_device(const Node& n) { return n.domain == kCodebookDomain && n.op_type == kCopyToDeviceOp; }
bool is_copy_to_host(const Node& n) { return n.domain == kCodebookDomain && n.op_type == kCopyToHostOp; }

Device node_device(const Node& n) {
  auto it = n.attrs.find(kDeviceAttr);
  if (it == n.attrs.end()) return Device::host();
  const std::string* text = std::get_if<std::string>(&it->second);
  CB_CHECK(text, n.describe() << ": attribute 'device' must be a string such as \"cuda:0\"");
  try {
    return Device::parse(*text);
  } catch (const Error& e) {
    CB_FAIL(n.describe() << ": " << e.what());
  }
}

Device input_device(const Node& n) { return is_copy_to_device(n) ? Device::host() : node_device(n); }
Device output_device(const Node& n) { return is_copy_to_host(n) ? Device::host() : node_device(n); }

bool reads_only_dims(const Node& n) { return n.domain.empty() && (n.op_type == "Shape" || n.op_type == "Size"); }

namespace {

void infer_copy(InferContext& ctx) {
  try {
    const Device d = node_device(ctx.node());
    ctx.check(ctx.node().has_attr(kDeviceAttr) && !d.is_host(),
              "attribute 'device' must name a device other than the host (e.g. \"cuda:0\")");
  } catch (const Error& e) {
    ctx.fail(e.what());
  }
  ctx.set_output(0, ctx.input_dtype(0), ctx.input_shape(0));
}

}  // namespace

void register_placement_ops(OpRegistry& r) {
  for (const char* op : {kCopyToDeviceOp, kCopyToHostOp}) {
    OpSchema s = make_op_schema(op, 1, 1, 1, 1, infer_copy,
                                "a copy between host memory and a device's (ir/placement.h); attribute device");
    s.domain = kCodebookDomain;
    r.add(std::move(s));
  }
}

}  // namespace cb
