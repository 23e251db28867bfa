// CB_HOST_DEVICE marks a small inline function that both the host code and
// the CUDA kernels call (nvcc compiles it for both; other compilers see a
// plain inline function), so one formula serves the reference kernel, the
// CPU backend and the GPU.
#pragma once

#ifdef __CUDACC__
#define CB_HOST_DEVICE __host__ __device__
#else
#define CB_HOST_DEVICE
#endif
