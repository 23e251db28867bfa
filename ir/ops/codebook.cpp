// Schema of codebook.Codebook (contract in ir/codebook.h): checks the shapes
// of x, codes and the LayerNorm parameters against each other and the
// intervention attributes against G and K.
#include "ir/codebook.h"

#include "ir/op_registry.h"

namespace cb {
namespace {

void check_f32(const InferContext& ctx, size_t i, const char* what) {
  DType t = ctx.input_dtype(i);
  ctx.check(t == DType::undefined || t == DType::f32,
            std::string(what) + " has dtype " + std::string(dtype_name(t)) + ", expected f32");
}

void infer_codebook(InferContext& ctx) {
  check_f32(ctx, 0, "x");
  check_f32(ctx, 1, "codes");
  check_f32(ctx, 2, "ln_scale");
  check_f32(ctx, 3, "ln_bias");
  const Shape& x = ctx.input_shape(0);
  const Shape& codes = ctx.input_shape(1);
  ctx.check(!x.rank_known || x.rank() == 3, "x must have rank 3 [batch, seq, D], got " + x.str());
  ctx.check(!codes.rank_known || codes.rank() == 3, "codes must have rank 3 [G, K, D/G], got " + codes.str());
  int64_t G = -1, K = -1, Dg = -1;
  if (codes.rank_known) {
    G = codes.dims[0].value;
    K = codes.dims[1].value;
    Dg = codes.dims[2].value;
  }
  for (size_t i : {size_t(2), size_t(3)}) {
    const Shape& s = ctx.input_shape(i);
    const char* what = i == 2 ? "ln_scale" : "ln_bias";
    ctx.check(!s.rank_known || s.rank() == 2, std::string(what) + " must have rank 2 [G, D/G], got " + s.str());
    if (s.rank_known && codes.rank_known)
      ctx.check(s.dims[0] == codes.dims[0] && s.dims[1] == codes.dims[2],
                std::string(what) + " has shape " + s.str() + ", expected [G, D/G] of codes " + codes.str());
  }
  if (x.rank_known && G > 0 && Dg > 0 && x.dims[2].is_static())
    ctx.check(x.dims[2].value == G * Dg, "x has width " + x.dims[2].str() + " but the codes cover G*D/G = " +
                                             std::to_string(G) + "*" + std::to_string(Dg));
  CodebookAttrs a = CodebookAttrs::from_node(ctx.node(), G, K);  // errors name the node
  ctx.set_output(0, DType::f32, x);
  Shape ids = x.rank_known ? Shape({x.dims[0], x.dims[1], G > 0 ? Dim::fixed(G) : Dim::unknown(), Dim::fixed(a.k)})
                           : Shape::unknown_rank();
  ctx.set_output(1, DType::i64, ids);
  ctx.set_output(2, DType::f32, ids);
}

}  // namespace

void register_codebook_ops(OpRegistry& r) {
  OpSchema s = make_op_schema(kCodebookOp, 4, 4, 1, 3, infer_codebook,
                              "LayerNorm, top-k most similar codes, mean of their rows (ir/codebook.h).");
  s.domain = kCodebookDomain;
  r.add(std::move(s));
}

}  // namespace cb
