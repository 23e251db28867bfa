// Reference kernels of the neural-network ops, one file per family:
// matmul.cpp (MatMul, Gemm), einsum.cpp, normalization.cpp (Softmax,
// LogSoftmax, LayerNormalization) and loss.cpp (NLL, SoftmaxCrossEntropy).
#include "backends/reference/reference_backend.h"

namespace cb {

void register_reference_matmul(KernelTable& t);
void register_reference_einsum(KernelTable& t);
void register_reference_normalization(KernelTable& t);
void register_reference_loss(KernelTable& t);

void register_reference_nn(KernelTable& t) {
  register_reference_matmul(t);
  register_reference_einsum(t);
  register_reference_normalization(t);
  register_reference_loss(t);
}

}  // namespace cb
