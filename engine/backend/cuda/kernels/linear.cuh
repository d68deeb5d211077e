#pragma once
// The dense projections of a decode step (one token): y = W·x as a matrix-vector product that streams
// W once at memory bandwidth. Blas::linear (blas.h) takes this path for T = 1 and cuBLAS for more
// tokens; here x stays F32 (no conversion kernel before each product, and no rounding of x), so a
// decode step is as exact as the CPU backend's, with F32 accumulation.
#include <cuda_runtime.h>

#include "engine/backend/cuda/device_matrix.h"
#include "engine/backend/cuda/kernels/norm.cuh"

namespace moe::cuda {

// y[r] = Σ_c W[r, c] · x[c] (accumulate: y[r] += …) for every row r of W. x: [W.cols], y: [W.rows], F32.
// With `then` (its counter set), the kernel's last block goes on with that residual add + RMSNorm of
// y (W.rows long), as add_rmsnorm_rows would after it: one kernel instead of two.
void linear_decode(const DeviceMatrix& w, const float* x, float* y, bool accumulate, cudaStream_t stream,
                   const ResidualNorm* then = nullptr);

}  // namespace moe::cuda
