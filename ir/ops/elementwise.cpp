// Schemas (type checks and shape inference) for the elementwise ops: unary
// math, broadcasting binary arithmetic/logic/comparison, the variadic
// Max/Min/Sum/Mean, Where, Clip, Cast/CastLike, Identity and Dropout.
// Semantics are ONNX's at the latest opset; the dtypes each op accepts are the
// ONNX ones restricted to the dtypes codebook supports.
#include <climits>
#include <initializer_list>
#include <string>

#include "ir/op_registry.h"

namespace cb {

namespace {

// A set of dtypes as a bit mask, so type constraints read like ONNX's.
using DTypeSet = uint32_t;
constexpr DTypeSet bit(DType t) { return DTypeSet(1) << unsigned(t); }
constexpr DTypeSet kFloat = bit(DType::f32) | bit(DType::f64) | bit(DType::f16) | bit(DType::bf16);
constexpr DTypeSet kSignedInt = bit(DType::i64) | bit(DType::i32) | bit(DType::i16) | bit(DType::i8);
constexpr DTypeSet kUnsignedInt = bit(DType::u64) | bit(DType::u32) | bit(DType::u16) | bit(DType::u8);
constexpr DTypeSet kInt = kSignedInt | kUnsignedInt;
constexpr DTypeSet kNumeric = kFloat | kInt;
constexpr DTypeSet kSignedNumeric = kFloat | kSignedInt;
constexpr DTypeSet kBool = bit(DType::boolean);
constexpr DTypeSet kAny = kNumeric | kBool;
constexpr DTypeSet kPowBase = kFloat | bit(DType::i32) | bit(DType::i64);
constexpr int kUnboundedInputs = INT_MAX;

std::string dtype_set_str(DTypeSet set) {
  std::string s;
  for (DType t : {DType::f32, DType::f16, DType::bf16, DType::f64, DType::i64, DType::i32, DType::i16, DType::i8,
                  DType::u64, DType::u32, DType::u16, DType::u8, DType::boolean})
    if (set & bit(t)) s += (s.empty() ? "" : ", ") + std::string(dtype_name(t));
  return s;
}

// Fails unless input i's dtype is in `allowed`. An undefined (not yet known)
// dtype passes: inference then simply knows less.
void check_dtype(const InferContext& ctx, size_t i, DTypeSet allowed) {
  DType t = ctx.input_dtype(i);
  if (t == DType::undefined || (allowed & bit(t))) return;
  ctx.fail("input " + std::to_string(i) + " has dtype " + std::string(dtype_name(t)) +
           ", expected one of: " + dtype_set_str(allowed));
}

// Fails unless inputs i and j have the same dtype (when both are known).
void check_same_dtype(const InferContext& ctx, size_t i, size_t j) {
  DType a = ctx.input_dtype(i), b = ctx.input_dtype(j);
  if (a == DType::undefined || b == DType::undefined || a == b) return;
  ctx.fail("inputs " + std::to_string(i) + " and " + std::to_string(j) + " must have the same dtype, got " +
           std::string(dtype_name(a)) + " and " + std::string(dtype_name(b)) + " (shapes " + ctx.input_shape(i).str() +
           " and " + ctx.input_shape(j).str() + ")");
}

// The first known dtype among the given inputs (undefined if none is known).
DType first_known_dtype(const InferContext& ctx, std::initializer_list<size_t> inputs) {
  for (size_t i : inputs)
    if (ctx.has_input(i) && ctx.input_dtype(i) != DType::undefined) return ctx.input_dtype(i);
  return DType::undefined;
}

// Fails unless optional input i, when present, holds exactly one element.
void check_scalar_if_present(const InferContext& ctx, size_t i, const char* what) {
  if (!ctx.has_input(i)) return;
  const Shape& s = ctx.input_shape(i);
  if (!s.rank_known) return;
  for (const Dim& d : s.dims)
    if (d.is_static() && d.value != 1) ctx.fail(std::string(what) + " must be a scalar, got shape " + s.str());
}

OpSchema schema(const char* name, int min_in, int max_in, std::function<void(InferContext&)> infer, int min_out = 1,
                int max_out = 1) {
  return make_op_schema(name, min_in, max_in, min_out, max_out, std::move(infer));
}

// y = f(x), same dtype and shape.
OpSchema unary(const char* name, DTypeSet types) {
  return schema(name, 1, 1, [types](InferContext& ctx) {
    check_dtype(ctx, 0, types);
    ctx.set_output(0, ctx.input_dtype(0), ctx.input_shape(0));
  });
}

// y = predicate(x): bool of the input's shape.
OpSchema unary_predicate(const char* name, DTypeSet types) {
  return schema(name, 1, 1, [types](InferContext& ctx) {
    check_dtype(ctx, 0, types);
    ctx.set_output(0, DType::boolean, ctx.input_shape(0));
  });
}

// C = A op B with numpy broadcasting; A and B share a dtype from `types`.
// The output has that dtype, or bool for comparisons.
OpSchema binary(const char* name, DTypeSet types, bool bool_output = false) {
  return schema(name, 2, 2, [types, bool_output](InferContext& ctx) {
    check_dtype(ctx, 0, types);
    check_dtype(ctx, 1, types);
    check_same_dtype(ctx, 0, 1);
    Shape shape = broadcast_shapes(ctx, ctx.input_shape(0), ctx.input_shape(1));
    ctx.set_output(0, bool_output ? DType::boolean : first_known_dtype(ctx, {0, 1}), shape);
  });
}

// Max/Min/Sum/Mean: one or more inputs of one dtype, all broadcast together.
OpSchema variadic(const char* name, DTypeSet types) {
  return schema(name, 1, kUnboundedInputs, [types](InferContext& ctx) {
    Shape shape = ctx.input_shape(0);
    for (size_t i = 0; i < ctx.num_inputs(); ++i) {
      check_dtype(ctx, i, types);
      check_same_dtype(ctx, 0, i);
      if (i > 0) shape = broadcast_shapes(ctx, shape, ctx.input_shape(i));
    }
    ctx.set_output(0, ctx.input_dtype(0), shape);
  });
}

OpSchema gelu() {
  return schema("Gelu", 1, 1, [](InferContext& ctx) {
    std::string approximate = ctx.node().attr_string("approximate", "none");
    ctx.check(approximate == "none" || approximate == "tanh",
              "attribute 'approximate' must be \"none\" or \"tanh\", got \"" + approximate + "\"");
    check_dtype(ctx, 0, kFloat);
    ctx.set_output(0, ctx.input_dtype(0), ctx.input_shape(0));
  });
}

void infer_pow(InferContext& ctx) {
  check_dtype(ctx, 0, kPowBase);
  check_dtype(ctx, 1, kNumeric);
  ctx.set_output(0, ctx.input_dtype(0), broadcast_shapes(ctx, ctx.input_shape(0), ctx.input_shape(1)));
}

void infer_bitshift(InferContext& ctx) {
  std::string dir = ctx.node().attr_string("direction", "");
  ctx.check(dir == "LEFT" || dir == "RIGHT",
            "attribute 'direction' must be \"LEFT\" or \"RIGHT\", got \"" + dir + "\"");
  check_dtype(ctx, 0, kInt);
  check_dtype(ctx, 1, kInt);
  check_same_dtype(ctx, 0, 1);
  ctx.set_output(0, ctx.input_dtype(0), broadcast_shapes(ctx, ctx.input_shape(0), ctx.input_shape(1)));
}

void infer_mod(InferContext& ctx) {
  int64_t fmod = ctx.node().attr_int("fmod", 0);
  ctx.check(fmod == 0 || fmod == 1, "attribute 'fmod' must be 0 or 1, got " + std::to_string(fmod));
  check_dtype(ctx, 0, kNumeric);
  check_dtype(ctx, 1, kNumeric);
  check_same_dtype(ctx, 0, 1);
  ctx.set_output(0, first_known_dtype(ctx, {0, 1}), broadcast_shapes(ctx, ctx.input_shape(0), ctx.input_shape(1)));
}

void infer_where(InferContext& ctx) {
  check_dtype(ctx, 0, kBool);
  check_dtype(ctx, 1, kAny);
  check_dtype(ctx, 2, kAny);
  check_same_dtype(ctx, 1, 2);
  Shape shape = broadcast_shapes(ctx, ctx.input_shape(0), ctx.input_shape(1));
  shape = broadcast_shapes(ctx, shape, ctx.input_shape(2));
  ctx.set_output(0, first_known_dtype(ctx, {1, 2}), shape);
}

void infer_clip(InferContext& ctx) {
  check_dtype(ctx, 0, kNumeric);
  for (size_t i : {1, 2}) {
    if (!ctx.has_input(i)) continue;
    check_same_dtype(ctx, 0, i);
    check_scalar_if_present(ctx, i, i == 1 ? "input 'min'" : "input 'max'");
  }
  ctx.set_output(0, ctx.input_dtype(0), ctx.input_shape(0));
}

// The dtype a Cast targets, from its ONNX TensorProto number.
DType cast_target(const InferContext& ctx) {
  ctx.check(ctx.node().has_attr("to"), "missing required attribute 'to'");
  int64_t to = ctx.node().attr_int("to", 0);
  std::optional<DType> t = dtype_from_onnx(int32_t(to));
  if (!t)
    ctx.fail("cannot cast to " + onnx_dtype_name(int32_t(to)) + " (ONNX type " + std::to_string(to) +
             "): codebook does not support that dtype");
  return *t;
}

void infer_cast(InferContext& ctx) {
  DType to = cast_target(ctx);
  ctx.set_output(0, to, ctx.input_shape(0));
}

void infer_cast_like(InferContext& ctx) { ctx.set_output(0, ctx.input_dtype(1), ctx.input_shape(0)); }

void infer_identity(InferContext& ctx) { ctx.set_output(0, ctx.input_dtype(0), ctx.input_shape(0)); }

void infer_dropout(InferContext& ctx) {
  check_dtype(ctx, 0, kFloat);
  if (ctx.has_input(1)) {
    check_dtype(ctx, 1, kFloat);
    check_scalar_if_present(ctx, 1, "input 'ratio'");
    if (const Tensor* r = ctx.input_value(1); r && r->numel() == 1) {
      double ratio = r->get_double(0);
      ctx.check(ratio >= 0 && ratio < 1, "ratio must be in [0, 1), got " + std::to_string(ratio));
    }
  }
  if (ctx.has_input(2)) {
    check_dtype(ctx, 2, kBool);
    check_scalar_if_present(ctx, 2, "input 'training_mode'");
  }
  ctx.set_output(0, ctx.input_dtype(0), ctx.input_shape(0));
  ctx.set_output(1, DType::boolean, ctx.input_shape(0));
}

}  // namespace

void register_elementwise_ops(OpRegistry& r) {
  for (const char* name : {"Exp", "Log", "Sqrt", "Reciprocal", "Sin", "Cos", "Tan", "Tanh", "Sigmoid", "Erf",
                           "LeakyRelu", "Elu", "Selu", "HardSigmoid", "Softplus", "Ceil", "Floor", "Round"})
    r.add(unary(name, kFloat));
  r.add(gelu());
  r.add(unary("Abs", kNumeric));
  r.add(unary("Sign", kNumeric));
  r.add(unary("Neg", kSignedNumeric));
  r.add(unary("Relu", kSignedNumeric));
  r.add(unary("Not", kBool));
  r.add(unary_predicate("IsNaN", kFloat));
  r.add(unary_predicate("IsInf", kFloat));

  for (const char* name : {"Add", "Sub", "Mul", "Div"}) r.add(binary(name, kNumeric));
  for (const char* name : {"And", "Or", "Xor"}) r.add(binary(name, kBool, true));
  r.add(binary("Equal", kAny, true));
  for (const char* name : {"Less", "Greater", "LessOrEqual", "GreaterOrEqual"}) r.add(binary(name, kNumeric, true));
  r.add(schema("Pow", 2, 2, infer_pow));
  r.add(schema("Mod", 2, 2, infer_mod));
  r.add(schema("BitShift", 2, 2, infer_bitshift));

  r.add(variadic("Max", kNumeric));
  r.add(variadic("Min", kNumeric));
  r.add(variadic("Sum", kFloat));
  r.add(variadic("Mean", kFloat));

  r.add(schema("Where", 3, 3, infer_where));
  r.add(schema("Clip", 1, 3, infer_clip));
  r.add(schema("Cast", 1, 1, infer_cast));
  r.add(schema("CastLike", 2, 2, infer_cast_like));
  r.add(schema("Identity", 1, 1, infer_identity));
  r.add(schema("Dropout", 1, 3, infer_dropout, 1, 2));
}

}  // namespace cb
