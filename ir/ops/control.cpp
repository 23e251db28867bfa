// Schemas of control-flow ops (If, Loop). None yet: the importer reports them
// as unsupported.
#include "ir/op_registry.h"

namespace cb {

void register_control_ops(OpRegistry&) {}

}  // namespace cb
