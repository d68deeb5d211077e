#pragma once
// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 for the CUDA emulator (engine/backend/cuda/
// kernels/mma_sync.cuh calls it): d = A · B + d, A 16×8 and B 8×8 in TF32, d 16×8 in F32.
//
// Unlike wmma fragments, these registers have the layout the PTX ISA documents ("Matrix Fragments for
// mma.m16n8k8", .tf32), and kernels rely on it, so the emulator holds exactly that layout. With
// g = lane / 4 and t = lane % 4:
//   a[0] = A[g][t]   a[1] = A[g+8][t]   a[2] = A[g][t+4]   a[3] = A[g+8][t+4]
//   b[0] = B[t][g]   b[1] = B[t+4][g]
//   d[0], d[1] = D[g][2t], D[g][2t+1]      d[2], d[3] = D[g+8][2t], D[g+8][2t+1]
// A and B registers hold F32 bit patterns of which the tensor cores read the upper 19 bits (the low 13
// mantissa bits are dropped, as the wmma emulation does); products of such values are exact in F32 and
// are accumulated in F32 (the order of the additions differs from the hardware's; both stay within F32
// rounding). The whole warp must call it, converged: a lane missing from the rendezvous is a fault.
#include <cstdint>
#include <cstring>

#include "tests/cuda_emulator/block_runner.h"

namespace moe_emu {

inline float tf32_operand(uint32_t bits) {
  bits &= 0xffffe000u;
  float v;
  std::memcpy(&v, &bits, 4);
  return v;
}

inline void mma_m16n8k8_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  constexpr unsigned kAll = 0xffffffffu;
  constexpr int kA = 16 * 8, kB = 8 * 8;
  const int lane = lane_id(), g = lane >> 2, t = lane & 3;
  float* s = warp_scratch(kA + kB);
  float* A = s;       // [16][8]
  float* B = s + kA;  // [8][8]
  A[g * 8 + t] = tf32_operand(a[0]);
  A[(g + 8) * 8 + t] = tf32_operand(a[1]);
  A[g * 8 + t + 4] = tf32_operand(a[2]);
  A[(g + 8) * 8 + t + 4] = tf32_operand(a[3]);
  B[t * 8 + g] = tf32_operand(b[0]);
  B[(t + 4) * 8 + g] = tf32_operand(b[1]);
  sync_warp(kAll);  // the whole warp, converged: both tiles are complete
  s = warp_scratch(kA + kB);
  A = s;
  B = s + kA;
  float out[4];
  for (int i = 0; i < 4; ++i) {
    const int row = g + (i >= 2 ? 8 : 0), col = 2 * t + (i & 1);
    float acc = d[i];
    for (int k = 0; k < 8; ++k) acc += A[row * 8 + k] * B[k * 8 + col];
    out[i] = acc;
  }
  sync_warp(kAll);  // every lane has read the tiles before the next mma overwrites them
  for (int i = 0; i < 4; ++i) d[i] = out[i];
}

}  // namespace moe_emu
