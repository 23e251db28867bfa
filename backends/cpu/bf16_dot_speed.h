// Whether this CPU's bf16 dot product (VDPBF16PS) outruns its f32 FMAs.
// AVX512_BF16 does not promise it: on AMD Zen 4 a 512-bit VDPBF16PS does
// twice the multiply-adds of a 512-bit FMA per cycle, but on Intel Xeons
// without AMX (measured on an Emerald Rapids VM) it issues at half the rate,
// so its bf16 matmuls take 1.6x the time of f32 ones (docs/precision.md).
// The CPU backend's bf16 matmuls therefore multiply the bf16 factors as f32
// where that is faster: the same products (a product of two bf16 values is
// exact in f32) at f32 speed.
#pragma once

namespace cb {

// Measured once per process (~1 ms): the better of 5 interleaved trials of
// each instruction's throughput. False without AVX512_BF16. The environment
// variable CB_BF16_KERNELS=bf16 or =f32 decides instead (the tests run both).
bool cpu_bf16_dot_is_fast();

}  // namespace cb
