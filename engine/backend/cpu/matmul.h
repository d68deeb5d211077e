#pragma once
// Matrix products against weights stored as they are in the checkpoint (F32, F16 or BF16, row-major
// [out, in], read in place from the mmap; F8_E4M3 with its tile scales, engine/common/fp8.h; compressed-tensors'
// packed integers with their group scales, engine/common/packed_int.h; MXFP4 blocks and
// scales, engine/common/mxfp4.h; or a GGUF's
// block-quantized rows, Q8_0, Q4_K, ..., MXFP4_GGML, IQ4_NL, IQ4_XS, engine/common/ggml_quants.h).
// Activations are F32; accumulation is F32.
// Also the few vector kernels the forward pass and its hooks share (dot, axpy, top-k sum).
// AVX2/FMA/F16C paths are chosen at run time; a scalar path is always there.
#include <cstdint>

#include "engine/backend/cpu/thread_pool.h"
#include "engine/common/dtype.h"
#include "engine/common/tile_scales.h"

namespace moe::cpu {

struct MatrixRef {
  const void* data = nullptr;  // row 0; a GGML block type's rows lie row_bytes(dtype, cols) apart
  DType dtype = DType::F32;
  int64_t rows = 0;  // out features
  int64_t cols = 0;  // in features
  // MXFP4 only (data: the blocks of row 0): the scales of row 0, and the distance in stored rows
  // between this matrix's rows (2 for GPT-OSS's interleaved gate and up). cols is a multiple of 32.
  const uint8_t* scales = nullptr;
  int64_t row_step = 1;
  // F8_E4M3 and the packed integers only (data: the bytes of row 0): the tile scales. Packed integers whose inputs
  // activation order stored by group (tiles.input_order) read x gathered into that order, a copy per call.
  TileScales tiles = {};
};

// y[t, r] = Σ_c W[r, c] · x[t, c] for t < T and r in [row_begin, row_end), on the calling thread.
// x is [T, cols] contiguous, y is [T, rows] contiguous (only the given rows are written).
// Each weight row is read once for all T tokens (tokens are processed in small tiles).
void matmul_rows(const MatrixRef& W, const float* x, int64_t T, float* y, int64_t row_begin, int64_t row_end);

// The same over all rows, split across the pool.
void matmul(ThreadPool& pool, const MatrixRef& W, const float* x, int64_t T, float* y);

// Σ a[i]·b[i] over n F32 values (SIMD).
float dot_f32(const float* a, const float* b, int64_t n);
// y[i] += s · x[i] (SIMD).
void axpy_f32(float s, const float* x, float* y, int64_t n);

// Σ a[i]·b[i] over n F32 values, accumulated in double (SIMD): for statistics that must keep full
// precision over long rows (attention entropy, hidden-state norms). Each product of two floats is
// exact in double, so the result differs from a sequential double loop only in the order of the
// additions.
double dot_f32_f64(const float* a, const float* b, int64_t n);

// The sum of the k largest of v[0..n), 1 ≤ k ≤ n (NaN-free input; throws std::invalid_argument
// otherwise). The k values are added in ascending order, so the result is the same on every path,
// ties or not. scratch: k floats. The SIMD path compares 8 values at a time against the current k-th
// largest and skips the block when none beats it; for k ≤ 8 the largest 8 live sorted in one register
// and a block is merged in with a sorting network, without a branch per value.
float topk_sum_f32(const float* v, int64_t n, int k, float* scratch);

// Which SIMD path matmul_rows uses on this machine ("avx2+fma+f16c" or "scalar").
const char* simd_path();

// Whether this CPU has AVX2+FMA+F16C (independent of any forcing below).
bool simd_supported();
// Forces the portable scalar path (true) or lets the CPU decide (false). The environment variable
// MOE_FORCE_SCALAR=1 sets the initial value. Meant for tests and benchmarks; not synchronised with
// matmul calls running at the same moment.
void set_force_scalar(bool force);
bool force_scalar();

}  // namespace moe::cpu
