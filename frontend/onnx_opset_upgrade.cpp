// Older-opset ONNX node forms -> latest forms (see onnx_opset_upgrade.h). The
// version table below lists, for every ai.onnx op, the opsets at which its
// definition changed (ONNX 1.23, opset 28); an upgrade is keyed on the
// definition in effect at the model's opset.
#include "frontend/onnx_opset_upgrade.h"

#include <optional>
#include <type_traits>
#include <unordered_map>

#include "support/error.h"

namespace cb {

namespace {

struct OpVersions {
  const char* name;
  std::vector<int> since;  // ascending
};

// Generated from onnx.defs.get_all_schemas_with_history() (onnx 1.23).
const std::vector<OpVersions>& version_table() {
  static const std::vector<OpVersions> t = {
      {"Abs", {1, 6, 13}},
      {"Acos", {7, 22}},
      {"Acosh", {9, 22}},
      {"Add", {1, 6, 7, 13, 14}},
      {"AffineGrid", {20}},
      {"And", {1, 7}},
      {"ArgMax", {1, 11, 12, 13}},
      {"ArgMin", {1, 11, 12, 13}},
      {"Asin", {7, 22}},
      {"Asinh", {9, 22}},
      {"Atan", {7, 22}},
      {"Atanh", {9, 22}},
      {"Attention", {23, 24, 25}},
      {"AveragePool", {1, 7, 10, 11, 19, 22}},
      {"BatchNormalization", {1, 6, 7, 9, 14, 15}},
      {"Bernoulli", {15, 22}},
      {"BitCast", {26}},
      {"BitShift", {11, 28}},
      {"BitwiseAnd", {18}},
      {"BitwiseNot", {18}},
      {"BitwiseOr", {18}},
      {"BitwiseXor", {18}},
      {"BlackmanWindow", {17}},
      {"Cast", {1, 6, 9, 13, 19, 21, 23, 24, 25, 28}},
      {"CastLike", {15, 19, 21, 23, 24, 25}},
      {"CausalConvWithState", {27}},
      {"Ceil", {1, 6, 13}},
      {"Celu", {12, 28}},
      {"CenterCropPad", {18}},
      {"Clip", {1, 6, 11, 12, 13}},
      {"Col2Im", {18}},
      {"Compress", {9, 11, 28}},
      {"Concat", {1, 4, 11, 13}},
      {"ConcatFromSequence", {11}},
      {"Constant", {1, 9, 11, 12, 13, 19, 21, 23, 24, 25}},
      {"ConstantOfShape", {9, 20, 21, 23, 24, 25}},
      {"Conv", {1, 11, 22}},
      {"ConvInteger", {10}},
      {"ConvTranspose", {1, 11, 22}},
      {"Cos", {7, 22}},
      {"Cosh", {9, 22}},
      {"CumProd", {26}},
      {"CumSum", {11, 14}},
      {"DFT", {17, 20}},
      {"DeformConv", {19, 22}},
      {"DepthToSpace", {1, 11, 13, 28}},
      {"DequantizeLinear", {10, 13, 19, 21, 23, 24, 25, 28}},
      {"Det", {11, 22}},
      {"Div", {1, 6, 7, 13, 14}},
      {"Dropout", {1, 6, 7, 10, 12, 13, 22}},
      {"DynamicQuantizeLinear", {11}},
      {"Einsum", {12, 28}},
      {"Elu", {1, 6, 22}},
      {"Equal", {1, 7, 11, 13, 19}},
      {"Erf", {9, 13}},
      {"Exp", {1, 6, 13}},
      {"Expand", {8, 13}},
      {"EyeLike", {9, 22}},
      {"Flatten", {1, 9, 11, 13, 21, 23, 24, 25}},
      {"Floor", {1, 6, 13}},
      {"GRU", {1, 3, 7, 14, 22}},
      {"Gather", {1, 11, 13}},
      {"GatherElements", {11, 13}},
      {"GatherND", {11, 12, 13}},
      {"Gelu", {20}},
      {"Gemm", {1, 6, 7, 9, 11, 13}},
      {"GlobalAveragePool", {1, 22}},
      {"GlobalLpPool", {1, 2, 22}},
      {"GlobalMaxPool", {1, 22}},
      {"Greater", {1, 7, 9, 13}},
      {"GreaterOrEqual", {12, 16}},
      {"GridSample", {16, 20, 22}},
      {"GroupNormalization", {18, 21}},
      {"HammingWindow", {17}},
      {"HannWindow", {17}},
      {"HardSigmoid", {1, 6, 22}},
      {"HardSwish", {14, 22}},
      {"Hardmax", {1, 11, 13}},
      {"Identity", {1, 13, 14, 16, 19, 21, 23, 24, 25}},
      {"If", {1, 11, 13, 16, 19, 21, 23, 24, 25}},
      {"ImageDecoder", {20}},
      {"InstanceNormalization", {1, 6, 22}},
      {"IsInf", {10, 20}},
      {"IsNaN", {9, 13, 20}},
      {"LRN", {1, 13}},
      {"LSTM", {1, 7, 14, 22}},
      {"LayerNormalization", {17}},
      {"LeakyRelu", {1, 6, 16}},
      {"Less", {1, 7, 9, 13}},
      {"LessOrEqual", {12, 16}},
      {"LinearAttention", {27}},
      {"Log", {1, 6, 13}},
      {"LogSoftmax", {1, 11, 13}},
      {"Loop", {1, 11, 13, 16, 19, 21, 23, 24, 25}},
      {"LpNormalization", {1, 22}},
      {"LpPool", {1, 2, 11, 18, 22}},
      {"MatMul", {1, 9, 13}},
      {"MatMulInteger", {10}},
      {"Max", {1, 6, 8, 12, 13}},
      {"MaxPool", {1, 8, 10, 11, 12, 22}},
      {"MaxRoiPool", {1, 22}},
      {"MaxUnpool", {9, 11, 22}},
      {"Mean", {1, 6, 8, 13}},
      {"MeanVarianceNormalization", {9, 13}},
      {"MelWeightMatrix", {17}},
      {"Min", {1, 6, 8, 12, 13}},
      {"Mish", {18, 22}},
      {"Mod", {10, 13, 28}},
      {"Mul", {1, 6, 7, 13, 14}},
      {"Multinomial", {7, 22}},
      {"Neg", {1, 6, 13}},
      {"NegativeLogLikelihoodLoss", {12, 13, 22}},
      {"NonMaxSuppression", {10, 11}},
      {"NonZero", {9, 13}},
      {"Not", {1}},
      {"OneHot", {9, 11, 28}},
      {"Optional", {15, 28}},
      {"OptionalGetElement", {15, 18, 28}},
      {"OptionalHasElement", {15, 18, 28}},
      {"Or", {1, 7}},
      {"PRelu", {1, 6, 7, 9, 16}},
      {"Pad", {1, 2, 11, 13, 18, 19, 21, 23, 24, 25}},
      {"Pow", {1, 7, 12, 13, 15}},
      {"QLinearConv", {10}},
      {"QLinearMatMul", {10, 21}},
      {"QuantizeLinear", {10, 13, 19, 21, 23, 24, 25, 28}},
      {"RMSNormalization", {23}},
      {"RNN", {1, 7, 14, 22}},
      {"RandomNormal", {1, 22}},
      {"RandomNormalLike", {1, 22}},
      {"RandomUniform", {1, 22}},
      {"RandomUniformLike", {1, 22}},
      {"Range", {11, 27}},
      {"Reciprocal", {1, 6, 13}},
      {"ReduceL1", {1, 11, 13, 18}},
      {"ReduceL2", {1, 11, 13, 18}},
      {"ReduceLogSum", {1, 11, 13, 18, 28}},
      {"ReduceLogSumExp", {1, 11, 13, 18, 28}},
      {"ReduceMax", {1, 11, 12, 13, 18, 20}},
      {"ReduceMean", {1, 11, 13, 18}},
      {"ReduceMin", {1, 11, 12, 13, 18, 20}},
      {"ReduceProd", {1, 11, 13, 18}},
      {"ReduceSum", {1, 11, 13}},
      {"ReduceSumSquare", {1, 11, 13, 18}},
      {"RegexFullMatch", {20}},
      {"Relu", {1, 6, 13, 14}},
      {"Reshape", {1, 5, 13, 14, 19, 21, 23, 24, 25}},
      {"Resize", {10, 11, 13, 18, 19}},
      {"ReverseSequence", {10, 28}},
      {"RoiAlign", {10, 16, 22}},
      {"RotaryEmbedding", {23}},
      {"Round", {11, 22}},
      {"STFT", {17}},
      {"Scan", {8, 9, 11, 16, 19, 21, 23, 24, 25}},
      {"Scatter", {9, 11}},
      {"ScatterElements", {11, 13, 16, 18}},
      {"ScatterND", {11, 13, 16, 18}},
      {"Selu", {1, 6, 22}},
      {"SequenceAt", {11}},
      {"SequenceConstruct", {11}},
      {"SequenceEmpty", {11}},
      {"SequenceErase", {11}},
      {"SequenceInsert", {11}},
      {"SequenceLength", {11}},
      {"SequenceMap", {17}},
      {"Shape", {1, 13, 15, 19, 21, 23, 24, 25}},
      {"Shrink", {9}},
      {"Sigmoid", {1, 6, 13}},
      {"Sign", {9, 13}},
      {"Sin", {7, 22}},
      {"Sinh", {9, 22}},
      {"Size", {1, 13, 19, 21, 23, 24, 25}},
      {"Slice", {1, 10, 11, 13}},
      {"Softmax", {1, 11, 13}},
      {"SoftmaxCrossEntropyLoss", {12, 13}},
      {"Softplus", {1, 22}},
      {"Softsign", {1, 22}},
      {"SpaceToDepth", {1, 13, 28}},
      {"Split", {1, 2, 11, 13, 18}},
      {"SplitToSequence", {11, 24}},
      {"Sqrt", {1, 6, 13}},
      {"Squeeze", {1, 11, 13, 21, 23, 24, 25}},
      {"StringConcat", {20}},
      {"StringNormalizer", {10}},
      {"StringSplit", {20}},
      {"Sub", {1, 6, 7, 13, 14}},
      {"Sum", {1, 6, 8, 13}},
      {"SwiGLU", {28}},
      {"Swish", {24}},
      {"Tan", {7, 22}},
      {"Tanh", {1, 6, 13}},
      {"TensorScatter", {24}},
      {"TfIdfVectorizer", {9}},
      {"ThresholdedRelu", {10, 22}},
      {"Tile", {1, 6, 13}},
      {"TopK", {1, 10, 11, 24}},
      {"Transpose", {1, 13, 21, 23, 24, 25}},
      {"Trilu", {14}},
      {"Unique", {11, 28}},
      {"Unsqueeze", {1, 11, 13, 21, 23, 24, 25}},
      {"Upsample", {1, 7, 9, 10}},
      {"Where", {9, 16}},
      {"Xor", {1, 7}},
  };
  return t;
}

const OpVersions* find_versions(const std::string& op) {
  static const std::unordered_map<std::string, const OpVersions*> index = [] {
    std::unordered_map<std::string, const OpVersions*> m;
    for (auto& v : version_table()) m[v.name] = &v;
    return m;
  }();
  auto it = index.find(op);
  return it == index.end() ? nullptr : it->second;
}

std::string where(const NodeDraft& n, int64_t opset) {
  return "op " + n.op_type + " (node '" + n.name + "', opset " + std::to_string(opset) + ")";
}

Tensor i64_tensor(const std::vector<int64_t>& v) { return Tensor::from_vector<int64_t>(v, {int64_t(v.size())}); }

// A scalar of `dtype` holding `v` (for attributes that became typed inputs).
Tensor scalar_of(DType dtype, double v) {
  Tensor t = Tensor::empty(dtype, {});
  dtype_dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    *t.data<T>() = from_double<T>(v);
  });
  return t;
}

// Removes attribute `k` and returns its value (nullopt when absent).
template <typename T>
std::optional<T> take_attr(NodeDraft& n, const std::string& k, int64_t opset) {
  auto it = n.attrs.find(k);
  if (it == n.attrs.end()) return std::nullopt;
  T* v = std::get_if<T>(&it->second);
  if (!v) {
    // INT written where FLOAT is expected is common in hand-made models.
    if constexpr (std::is_same_v<T, float>) {
      if (auto i = std::get_if<int64_t>(&it->second)) {
        float f = float(*i);
        n.attrs.erase(it);
        return f;
      }
    }
    CB_FAIL(where(n, opset) << ": attribute '" << k << "' has the wrong type");
  }
  T out = std::move(*v);
  n.attrs.erase(it);
  return out;
}

void set_input(NodeDraft& n, size_t i, Value* v) {
  if (n.inputs.size() <= i) n.inputs.resize(i + 1, nullptr);
  n.inputs[i] = v;
}

// Moves an INTS attribute into input slot `slot` as an i64 constant.
bool ints_attr_to_input(NodeDraft& n, const std::string& attr, size_t slot, int64_t opset, UpgradeSink& sink) {
  auto v = take_attr<std::vector<int64_t>>(n, attr, opset);
  if (!v) return false;
  set_input(n, slot, sink.constant(n.name + "_" + attr, i64_tensor(*v)));
  return true;
}

DType input_dtype_for(const NodeDraft& n, int64_t opset, const char* why) {
  Value* x = n.inputs.empty() ? nullptr : n.inputs[0];
  CB_CHECK(x && x->type.dtype != DType::undefined, where(n, opset)
                                                       << ": cannot upgrade its '" << why
                                                       << "' attribute: the element type of its input is unknown");
  return x->type.dtype;
}

bool is_reduce(const std::string& op) { return op.rfind("Reduce", 0) == 0; }

bool is_legacy_broadcast_op(const std::string& op) {
  static const char* ops[] = {"Add", "Sub",   "Mul",     "Div",  "Pow",   "And", "Or",
                              "Xor", "Equal", "Greater", "Less", "PRelu", "Gemm"};
  for (auto o : ops)
    if (op == o) return true;
  return false;
}

// Softmax / LogSoftmax / Hardmax before opset 13 flatten the input to 2-D at
// `axis` and normalise each row.
std::vector<NodeDraft> upgrade_coerced_softmax(NodeDraft n, int64_t opset, UpgradeSink& sink) {
  int64_t axis = 1;
  if (auto a = n.attrs.find("axis"); a != n.attrs.end())
    if (auto i = std::get_if<int64_t>(&a->second)) axis = *i;
  Value* x = n.inputs.empty() ? nullptr : n.inputs[0];
  if (x && x->type.shape.rank_known) {
    int64_t rank = int64_t(x->type.shape.rank());
    int64_t norm = axis < 0 ? axis + rank : axis;
    // Same as the latest semantics when every dim from `axis` up to the last
    // one is 1 (in particular when `axis` is the last axis).
    bool same = rank == 0 || (norm >= 0 && norm < rank);
    for (int64_t d = norm; same && d + 1 < rank; ++d) {
      const Dim& dim = x->type.shape.dims[size_t(d)];
      same = dim.is_static() && dim.value == 1;
    }
    if (same) {
      n.attrs["axis"] = int64_t(-1);
      return {std::move(n)};
    }
  }
  CB_CHECK(x && n.outputs.size() == 1 && n.outputs[0], where(n, opset) << ": expected one input and one output");
  std::vector<NodeDraft> out;
  Value* flat = sink.intermediate(n.name + "_2d");
  Value* shape = sink.intermediate(n.name + "_shape");
  Value* norm2d = sink.intermediate(n.name + "_2d_out");
  out.push_back(NodeDraft{"Flatten", "", n.name + "_flatten", {x}, {flat}, {{"axis", axis}}});
  out.push_back(NodeDraft{"Shape", "", n.name + "_shape", {x}, {shape}, {}});
  Value* y = n.outputs[0];
  NodeDraft core = std::move(n);
  core.inputs = {flat};
  core.outputs = {norm2d};
  core.attrs["axis"] = int64_t(1);
  std::string name = core.name;
  out.push_back(std::move(core));
  out.push_back(NodeDraft{"Reshape", "", name + "_reshape", {norm2d, shape}, {y}, {}});
  return out;
}

}  // namespace

int onnx_op_version(const std::string& op_type, int64_t opset) {
  const OpVersions* v = find_versions(op_type);
  if (!v) return -1;
  int best = 0;
  for (int s : v->since)
    if (s <= opset) best = s;
  return best;
}

int onnx_op_removed_in(const std::string& op_type) {
  if (op_type == "Upsample") return 10;
  if (op_type == "Scatter") return 11;
  return 0;
}

std::vector<NodeDraft> upgrade_onnx_node(NodeDraft n, int64_t opset, UpgradeSink& sink) {
  const std::string& op = n.op_type;
  int version = onnx_op_version(op, opset);
  CB_CHECK(version != 0, where(n, opset) << ": " << op << " is not defined at opset " << opset
                                         << " (it first appears at opset " << find_versions(op)->since.front() << ")");
  if (int removed = onnx_op_removed_in(op); removed && opset >= removed)
    CB_FAIL(where(n, opset) << ": " << op << " was removed at opset " << removed);
  if (version < 0) return {std::move(n)};  // unknown to ONNX: the registry decides

  // Opsets before 7: `consumed_inputs` is gone, legacy `broadcast` is numpy
  // broadcasting unless an `axis` aligns the second input elsewhere.
  if (version < 7) {
    n.attrs.erase("consumed_inputs");
    if (is_legacy_broadcast_op(op)) {
      auto b = take_attr<int64_t>(n, "broadcast", opset);
      if (op != "Gemm" && b && *b && n.attrs.count("axis"))
        CB_FAIL(where(n, opset) << ": legacy broadcasting with an explicit axis is not supported");
    }
  }

  if (op == "Squeeze" || op == "Unsqueeze") {
    if (version < 13) ints_attr_to_input(n, "axes", 1, opset, sink);
  } else if (is_reduce(op)) {
    int axes_input_since = op == "ReduceSum" ? 13 : 18;
    if (version < axes_input_since) ints_attr_to_input(n, "axes", 1, opset, sink);
  } else if (op == "Split") {
    // From Split-13 the sizes are input 2; an opset-11 'split' attribute
    // would be ignored and the tensor cut into equal parts instead.
    CB_CHECK(version < 13 || !n.attrs.count("split"),
             where(n, opset) << ": attribute 'split' is not part of Split since opset 13 (its sizes are the second "
                                "input)");
    if (version < 13) {
      if (!ints_attr_to_input(n, "split", 1, opset, sink) && !n.input(1))
        n.attrs["num_outputs"] = int64_t(n.outputs.size());
    } else if (version < 18 && !n.input(1)) {
      n.attrs["num_outputs"] = int64_t(n.outputs.size());
    }
  } else if (op == "Pad") {
    if (version < 11) {
      auto pads = take_attr<std::vector<int64_t>>(n, version < 2 ? "paddings" : "pads", opset);
      CB_CHECK(pads, where(n, opset) << ": missing attribute 'pads'");
      set_input(n, 1, sink.constant(n.name + "_pads", i64_tensor(*pads)));
      auto value = take_attr<float>(n, "value", opset);
      if (value && *value != 0.0f)
        set_input(n, 2, sink.constant(n.name + "_value", scalar_of(input_dtype_for(n, opset, "value"), *value)));
    }
  } else if (op == "Clip") {
    if (version < 11) {
      auto lo = take_attr<float>(n, "min", opset);
      auto hi = take_attr<float>(n, "max", opset);
      if (lo) set_input(n, 1, sink.constant(n.name + "_min", scalar_of(input_dtype_for(n, opset, "min"), *lo)));
      if (hi) set_input(n, 2, sink.constant(n.name + "_max", scalar_of(input_dtype_for(n, opset, "max"), *hi)));
    }
  } else if (op == "Slice") {
    if (version < 10) {
      CB_CHECK(ints_attr_to_input(n, "starts", 1, opset, sink), where(n, opset) << ": missing attribute 'starts'");
      CB_CHECK(ints_attr_to_input(n, "ends", 2, opset, sink), where(n, opset) << ": missing attribute 'ends'");
      ints_attr_to_input(n, "axes", 3, opset, sink);
    }
  } else if (op == "Softmax" || op == "LogSoftmax" || op == "Hardmax") {
    if (version < 13) return upgrade_coerced_softmax(std::move(n), opset, sink);
  } else if (op == "Dropout") {
    if (version < 12) {
      n.attrs.erase("is_test");  // inference: the IR has no training graphs
      auto ratio = take_attr<float>(n, "ratio", opset);
      if (ratio) set_input(n, 1, sink.constant(n.name + "_ratio", Tensor::scalar<float>(*ratio)));
    }
  } else if (op == "TopK") {
    if (version < 10) {
      auto k = take_attr<int64_t>(n, "k", opset);
      CB_CHECK(k, where(n, opset) << ": missing attribute 'k'");
      set_input(n, 1, sink.constant(n.name + "_k", i64_tensor({*k})));
    }
  } else if (op == "Reshape") {
    if (version < 5) ints_attr_to_input(n, "shape", 1, opset, sink);
  } else if (op == "Concat") {
    if (version < 4 && !n.attrs.count("axis")) n.attrs["axis"] = int64_t(1);
  } else if (op == "Cast") {
    if (version < 6) {
      if (auto s = take_attr<std::string>(n, "to", opset)) {
        static const std::pair<const char*, int64_t> names[] = {
            {"FLOAT", 1},  {"UINT8", 2}, {"INT8", 3},     {"UINT16", 4},  {"INT16", 5},   {"INT32", 6},  {"INT64", 7},
            {"STRING", 8}, {"BOOL", 9},  {"FLOAT16", 10}, {"DOUBLE", 11}, {"UINT32", 12}, {"UINT64", 13}};
        int64_t to = -1;
        for (auto& [k, v] : names)
          if (*s == k) to = v;
        CB_CHECK(to >= 0, where(n, opset) << ": unknown type '" << *s << "' in attribute 'to'");
        n.attrs["to"] = to;
      }
    }
  } else if (op == "Scatter") {
    n.op_type = "ScatterElements";  // same semantics, renamed at opset 11
  }
  return {std::move(n)};
}

}  // namespace cb
