#pragma once
// The warp matrix functions (nvcuda::wmma, <mma.h>) for the CUDA emulator. The toolkit's mma.h is empty
// under the host compiler, so kernel_prelude.h provides these instead.
//
// A fragment's elements are spread over the 32 lanes of its warp, as on a GPU. Lane l holds elements
// l·n … l·n + n − 1 of the tile in row-major order, where n = num_elements = rows·cols / 32. The GPU's
// layout is unspecified and different, but a kernel that is legal on a GPU applies the same operation to
// every element, so the layout cannot change its results.
//
// mma_sync gathers the warp's A and B tiles in memory shared by the warp (warp_scratch), and each lane
// computes its own elements of the product. Products of the 16-bit (or TF32) inputs are exact, and they are
// accumulated in F32, as on the tensor cores. The order of the additions differs from the hardware's,
// but both stay within F32 rounding.
//
// What a GPU requires, and the emulator checks:
//   - the whole warp calls every load, store and mma, converged;
//   - all lanes pass the same pointer and stride;
//   - the pointer is 32-byte aligned;
//   - the stride (ldm) is a multiple of 16 bytes.
// A violation is reported as a kernel fault.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

#include "tests/cuda_emulator/block_runner.h"

namespace nvcuda::wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };
namespace precision {
struct tf32 {};  // A and B of m16n16k8 held as F32; the tensor cores read their upper 19 bits
}  // namespace precision

// F32 → TF32, rounding to nearest with ties away from zero (cvt.rna.tf32.f32); the result is an F32
// whose low 13 mantissa bits are zero.
inline float __float_to_tf32(float v) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  if ((b & 0x7f800000u) != 0x7f800000u) b = (b + 0x1000u) & 0xffffe000u;  // Inf and NaN pass through
  std::memcpy(&v, &b, 4);
  return v;
}

namespace detail {

// The tile a fragment holds: A is M×K, B is K×N, the accumulator M×N.
template <typename Use, int M, int N, int K>
struct Dims;
template <int M, int N, int K>
struct Dims<matrix_a, M, N, K> {
  static constexpr int rows = M, cols = K;
};
template <int M, int N, int K>
struct Dims<matrix_b, M, N, K> {
  static constexpr int rows = K, cols = N;
};
template <int M, int N, int K>
struct Dims<accumulator, M, N, K> {
  static constexpr int rows = M, cols = N;
};

inline float to_float(float v) { return v; }
inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
inline float to_float(__half v) { return __half2float(v); }

// What a fragment of element type T stores, and what the tensor cores see of a stored value.
template <typename T>
struct Storage {
  using type = T;
};
template <>
struct Storage<precision::tf32> {
  using type = float;
};
template <typename T>
float operand(typename Storage<T>::type v) {
  if constexpr (std::is_same_v<T, precision::tf32>) {  // the low 13 mantissa bits are not read
    uint32_t b;
    std::memcpy(&b, &v, 4);
    b &= 0xffffe000u;
    std::memcpy(&v, &b, 4);
    return v;
  } else {
    return to_float(v);
  }
}


template <typename T>
T from_float(float v);
template <>
inline float from_float<float>(float v) { return v; }
template <>
inline __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <>
inline __half from_float<__half>(float v) { return __float2half_rn(v); }

// The rendezvous of a warp-wide matrix operation: every lane of the warp must arrive, converged, with
// the same pointer and stride, and the memory must be laid out as the tensor cores need.
inline void warp_collective(const char* op, const void* ptr, unsigned ldm, size_t elem_bytes) {
  constexpr unsigned kAll = 0xffffffffu;
  uint64_t bits = 0;
  std::memcpy(&bits, &ptr, sizeof(ptr));
  const bool same_ptr = ::moe_emu::exchange(kAll, bits, 0) == bits;
  const bool same_ldm = ::moe_emu::exchange(kAll, ldm, 0) == ldm;
  if (!same_ptr || !same_ldm)
    ::moe_emu::kernel_fault(std::string(op) + ": the lanes of a warp pass different pointers or strides");
  if (bits % 32 != 0) ::moe_emu::kernel_fault(std::string(op) + ": the pointer is not 32-byte aligned");
  if ((size_t(ldm) * elem_bytes) % 16 != 0)
    ::moe_emu::kernel_fault(std::string(op) + ": ldm " + std::to_string(ldm) + " is not a multiple of 16 bytes");
}

}  // namespace detail

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
class fragment {
 public:
  using element_type = typename detail::Storage<T>::type;
  static constexpr int rows = detail::Dims<Use, M, N, K>::rows;
  static constexpr int cols = detail::Dims<Use, M, N, K>::cols;
  static_assert(rows * cols % 32 == 0);
  static constexpr int num_elements = rows * cols / 32;  // this lane's share
  element_type x[num_elements];
};

namespace detail {
// The tile position (row · cols + col) of element i of this lane's share.
template <typename F>
int tile_index(int i) {
  return ::moe_emu::lane_id() * F::num_elements + i;
}
}  // namespace detail

template <typename Use, int M, int N, int K, typename T, typename Layout, typename V>
void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, const V& v) {
  for (int i = 0; i < f.num_elements; ++i) f.x[i] = typename detail::Storage<T>::type(v);
}

// A or B: the layout is the fragment's type.
template <typename Use, int M, int N, int K, typename T, typename Layout>
void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const typename detail::Storage<T>::type* p, unsigned ldm) {
  static_assert(std::is_same_v<Layout, row_major> || std::is_same_v<Layout, col_major>);
  detail::warp_collective("wmma::load_matrix_sync", p, ldm, sizeof(*p));
  using F = fragment<Use, M, N, K, T, Layout>;
  for (int i = 0; i < F::num_elements; ++i) {
    const int e = detail::tile_index<F>(i), r = e / F::cols, c = e % F::cols;
    f.x[i] = std::is_same_v<Layout, row_major> ? p[size_t(r) * ldm + c] : p[size_t(c) * ldm + r];
  }
}

// The accumulator: the layout is given at the call.
template <int M, int N, int K, typename T>
void load_matrix_sync(fragment<accumulator, M, N, K, T>& f, const T* p, unsigned ldm, layout_t layout) {
  detail::warp_collective("wmma::load_matrix_sync", p, ldm, sizeof(T));
  using F = fragment<accumulator, M, N, K, T>;
  for (int i = 0; i < F::num_elements; ++i) {
    const int e = detail::tile_index<F>(i), r = e / N, c = e % N;
    f.x[i] = layout == mem_row_major ? p[size_t(r) * ldm + c] : p[size_t(c) * ldm + r];
  }
}

template <int M, int N, int K, typename T>
void store_matrix_sync(T* p, const fragment<accumulator, M, N, K, T>& f, unsigned ldm, layout_t layout) {
  detail::warp_collective("wmma::store_matrix_sync", p, ldm, sizeof(T));
  using F = fragment<accumulator, M, N, K, T>;
  for (int i = 0; i < F::num_elements; ++i) {
    const int e = detail::tile_index<F>(i), r = e / N, c = e % N;
    (layout == mem_row_major ? p[size_t(r) * ldm + c] : p[size_t(c) * ldm + r]) = f.x[i];
  }
}

// d = a · b + c (d may be c): every lane puts its share of A and B in the warp's scratch memory, then
// computes its share of d from the whole tiles there.
template <int M, int N, int K, typename Ta, typename La, typename Tb, typename Lb, typename Tc>
void mma_sync(fragment<accumulator, M, N, K, Tc>& d, const fragment<matrix_a, M, N, K, Ta, La>& a,
              const fragment<matrix_b, M, N, K, Tb, Lb>& b, const fragment<accumulator, M, N, K, Tc>& c) {
  using FA = fragment<matrix_a, M, N, K, Ta, La>;
  using FB = fragment<matrix_b, M, N, K, Tb, Lb>;
  using FC = fragment<accumulator, M, N, K, Tc>;
  constexpr size_t kFloats = size_t(M) * K + size_t(K) * N;
  float* s = ::moe_emu::warp_scratch(kFloats);
  for (int i = 0; i < FA::num_elements; ++i) s[detail::tile_index<FA>(i)] = detail::operand<Ta>(a.x[i]);
  for (int i = 0; i < FB::num_elements; ++i) s[M * K + detail::tile_index<FB>(i)] = detail::operand<Tb>(b.x[i]);
  ::moe_emu::sync_warp(0xffffffffu);  // the whole warp, converged; both tiles complete
  s = ::moe_emu::warp_scratch(kFloats);
  const float* A = s;          // [M][K]
  const float* B = s + M * K;  // [K][N]
  float out[FC::num_elements];
  for (int i = 0; i < FC::num_elements; ++i) {
    const int e = detail::tile_index<FC>(i), r = e / N, col = e % N;
    float acc = detail::to_float(c.x[i]);
    for (int k = 0; k < K; ++k) acc += A[r * K + k] * B[k * N + col];
    out[i] = acc;
  }
  for (int i = 0; i < FC::num_elements; ++i) d.x[i] = detail::from_float<Tc>(out[i]);
  ::moe_emu::sync_warp(0xffffffffu);  // every lane has read the tiles before the next mma overwrites them
}

}  // namespace nvcuda::wmma
