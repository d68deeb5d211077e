// The GGML block types (GGUF's Q8_0, Q4_K, Q6_K, ...) against gguf-py, the reference implementation:
// tests/data/ggml_quants/reference.safetensors holds, per type, rows of random valid blocks and the
// values gguf.quants.dequantize makes of them (tests/make_ggml_quant_reference.py). dequantize_row must
// give those values bit for bit; matmul, on both paths, must give their products with x to within f32
// rounding of a double-precision sum. Matrices of any shape are assembled from the reference's blocks
// (a block carries its own scales, so it may sit anywhere in any row). MXFP4_GGML (GGUF type 39) also
// has edge rows, one block for each of its 256 exponents, checked where f32 still holds the values.
// IQ4_NL and IQ4_XS (GGUF types 20 and 23: a non-linear table of 16 values) come from gguf-py's
// dequantize of random blocks, as it cannot quantize them; so do the IQ1–IQ3 types (GGUF types 16–19, 21,
// 22 and 29, which index fixed codebooks), whose reference rows also index every row of each codebook
// (engine/common/iq_grids.h) once, so each table entry is checked against gguf-py's.
#include "engine/common/ggml_quants.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "engine/backend/cpu/matmul.h"
#include "engine/backend/cpu/thread_pool.h"
#include "engine/common/dtype.h"
#include "engine/common/mxfp4.h"
#include "engine/formats/gguf.h"
#include "engine/formats/safetensors.h"
#include "tests/support/ggml_blocks.h"
#include "tests/support/gguf_builder.h"
#include "tests/support/matmul_reference.h"
#include "tests/support/test_support.h"

namespace moe {
namespace {

using cpu::MatrixRef;
using cpu::ThreadPool;

// Every block type (tests/support/ggml_blocks.h).
const std::vector<DType>& kTypes = test::kGgmlBlockTypes;

using test::ScopedForceScalar;

// Both paths where the CPU has the SIMD one.
std::vector<bool> paths() {
  if (cpu::simd_supported()) return {true, false};
  return {true};
}

// One type's reference rows: `rows` rows of n values, their blocks and gguf-py's values.
struct Reference {
  int64_t rows = 0, n = 0;
  const uint8_t* blocks = nullptr;  // [rows, row_bytes]
  const float* values = nullptr;    // [rows, n]
};

const SafetensorsFile& reference_file() {
  static const std::unique_ptr<SafetensorsFile> f =
      SafetensorsFile::open(std::string(MOE_TEST_DATA_DIR) + "/ggml_quants/reference.safetensors");
  return *f;
}

// `part` "" for a type's random rows, ".edges" for MXFP4_GGML's rows of every exponent.
Reference reference(DType t, const std::string& part = "") {
  const auto& tensors = reference_file().tensors();
  const std::string name = std::string(dtype_name(t)) + part;
  const TensorView& b = tensors.at(name + ".blocks");
  const TensorView& v = tensors.at(name + ".values");
  EXPECT_EQ(b.dtype, DType::U8);
  EXPECT_EQ(v.dtype, DType::F32);
  Reference r;
  r.rows = v.shape.at(0);
  r.n = v.shape.at(1);
  EXPECT_EQ(b.shape.at(0), r.rows) << name;
  EXPECT_EQ(size_t(b.shape.at(1)), row_bytes(t, r.n)) << name;
  r.blocks = reinterpret_cast<const uint8_t*>(b.data);
  r.values = reinterpret_cast<const float*>(v.data);
  return r;
}

// A [rows, cols] matrix of type t whose blocks are drawn from the reference's, with their values.
struct TestMatrix {
  DType dtype;
  int64_t rows, cols;
  std::vector<uint8_t> bytes;  // rows · row_bytes
  std::vector<float> exact;    // [rows, cols]: gguf-py's values of those blocks
  MatrixRef ref() const { return MatrixRef{bytes.data(), dtype, rows, cols}; }
};

TestMatrix make_matrix(DType t, int64_t rows, int64_t cols, uint32_t seed) {
  const Reference ref = reference(t);
  const BlockFormat f = block_format(t);
  const int64_t pool = ref.rows * ref.n / f.values, per_row = cols / f.values;
  TestMatrix m{t, rows, cols, std::vector<uint8_t>(size_t(rows) * row_bytes(t, cols)), std::vector<float>(size_t(rows * cols))};
  std::mt19937 rng(seed);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t b = 0; b < per_row; ++b) {
      const int64_t from = int64_t(rng() % uint32_t(pool));
      std::memcpy(&m.bytes[size_t(r * per_row + b) * f.bytes], ref.blocks + size_t(from) * f.bytes, f.bytes);
      std::copy_n(ref.values + from * f.values, f.values, &m.exact[size_t(r * cols + b * f.values)]);
    }
  }
  return m;
}

using test::make_x;
double max_rel_error(const TestMatrix& m, const std::vector<float>& x, int64_t T, const std::vector<float>& y) {
  return test::max_rel_error(m.exact, m.rows, m.cols, x, T, y);
}

std::string label(DType t, int64_t T, int64_t rows, int64_t cols) {
  return std::string(dtype_name(t)) + " T=" + std::to_string(T) + " rows=" + std::to_string(rows) +
         " cols=" + std::to_string(cols) + " path=" + cpu::simd_path();
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// ---------------------------------------------------------------------------------------------

TEST(GgmlQuants, BlockFormatsNamesAndSizes) {
  const struct {
    DType t;
    const char* name;
    int64_t values;
    size_t bytes;
  } want[] = {{DType::Q4_0, "Q4_0", 32, 18},  {DType::Q4_1, "Q4_1", 32, 20},  {DType::Q5_0, "Q5_0", 32, 22},
              {DType::Q5_1, "Q5_1", 32, 24},  {DType::Q8_0, "Q8_0", 32, 34},  {DType::Q2_K, "Q2_K", 256, 84},
              {DType::Q3_K, "Q3_K", 256, 110}, {DType::Q4_K, "Q4_K", 256, 144}, {DType::Q5_K, "Q5_K", 256, 176},
              {DType::Q6_K, "Q6_K", 256, 210}, {DType::MXFP4_GGML, "MXFP4_GGML", 32, 17},
              {DType::IQ4_NL, "IQ4_NL", 32, 18}, {DType::IQ4_XS, "IQ4_XS", 256, 136},
              {DType::IQ2_XXS, "IQ2_XXS", 256, 66}, {DType::IQ2_XS, "IQ2_XS", 256, 74}, {DType::IQ2_S, "IQ2_S", 256, 82},
              {DType::IQ3_XXS, "IQ3_XXS", 256, 98}, {DType::IQ3_S, "IQ3_S", 256, 110}, {DType::IQ1_S, "IQ1_S", 256, 50},
              {DType::IQ1_M, "IQ1_M", 256, 56},
              // not GGUF types: how the GPU holds fine-grained FP8 and packed integers
              {DType::F8_E4M3_B128, "F8_E4M3_B128", 128, 132}, {DType::PACKED_I4_B32, "PACKED_I4_B32", 32, 18},
              {DType::PACKED_I4_F16_B32, "PACKED_I4_F16_B32", 32, 18},
              {DType::PACKED_I4_ZP_B32, "PACKED_I4_ZP_B32", 32, 20},
              {DType::PACKED_I4_ZP_F16_B32, "PACKED_I4_ZP_F16_B32", 32, 20},
              {DType::PACKED_I8_B32, "PACKED_I8_B32", 32, 34}, {DType::PACKED_I8_F16_B32, "PACKED_I8_F16_B32", 32, 34}};
  for (const auto& w : want) {
    SCOPED_TRACE(w.name);
    EXPECT_EQ(block_format(w.t).values, w.values);
    EXPECT_EQ(block_format(w.t).bytes, w.bytes);
    EXPECT_EQ(dtype_name(w.t), w.name);
    EXPECT_TRUE(is_block_quantized(w.t));
    EXPECT_EQ(dtype_size(w.t), 0u);
    EXPECT_FALSE(is_weight_dtype(w.t));       // never a safetensors weight
    EXPECT_FALSE(parse_dtype(w.name).has_value());
    EXPECT_EQ(row_bytes(w.t, 4 * w.values), 4 * w.bytes);
    EXPECT_EQ(matrix_bytes(w.t, 3, 2 * w.values), 3 * 2 * w.bytes);
  }
  EXPECT_EQ(block_format(DType::BF16).values, 1);
  EXPECT_EQ(block_format(DType::BF16).bytes, 2u);
  EXPECT_EQ(row_bytes(DType::F32, 10), 40u);
  EXPECT_EQ(block_format(DType::MXFP4).bytes, 0u);  // its scales lie apart: no block layout
  EXPECT_FALSE(is_block_quantized(DType::MXFP4));
  EXPECT_FALSE(is_block_quantized(DType::BF16));
  EXPECT_FALSE(is_block_quantized(DType::PACKED_I4));  // its scales lie apart
}

void expect_dequantize_row_matches(DType t, const Reference& ref, const std::string& what) {
  const size_t stride = row_bytes(t, ref.n);
  std::vector<float> row(size_t(ref.n));
  for (int64_t r = 0; r < ref.rows; ++r) {
    dequantize_row(ref.blocks + size_t(r) * stride, t, ref.n, row.data());
    for (int64_t c = 0; c < ref.n; ++c)
      ASSERT_EQ(bits(row[size_t(c)]), bits(ref.values[r * ref.n + c]))
          << what << " row " << r << " value " << c << ": " << row[size_t(c)] << " vs gguf-py " << ref.values[r * ref.n + c];
  }
}

// Bit for bit: the reference's f32 operations in its order (and no fused multiply-add), including the
// blocks with a subnormal and a zero f16 scale (MXFP4_GGML: the E8M0 bytes 0, 1 and 127).
TEST(GgmlQuants, DequantizeRowMatchesGgufPy) {
  for (DType t : kTypes) expect_dequantize_row_matches(t, reference(t), std::string(dtype_name(t)));
}

// Every E8M0 byte: 2^(e − 128) is subnormal for e < 2 and 2^127 for e = 255 (ggml has no NaN scale), and
// the products overflow to ±inf from e = 253 as gguf-py's do. (A scale passed through f16, whose range
// ends at 65504 and 2^-24, would differ here and nowhere in the random rows.)
TEST(GgmlQuants, Mxfp4GgmlEveryExponentMatchesGgufPy) {
  const Reference edges = reference(DType::MXFP4_GGML, ".edges");
  ASSERT_EQ(edges.rows * edges.n, 256 * 32);
  expect_dequantize_row_matches(DType::MXFP4_GGML, edges, "MXFP4_GGML edges");
  const float* v = edges.values;
  EXPECT_EQ(std::count_if(v, v + 256 * 32, [](float f) { return std::isinf(f); }), 48);
  EXPECT_EQ(std::count_if(v, v + 256 * 32, [](float f) { return std::isnan(f); }), 0);
  EXPECT_TRUE(std::any_of(v, v + 32, [](float f) { return f != 0.0f && std::fpclassify(f) == FP_SUBNORMAL; }));
}

// The same codes and exponents in Hugging Face's MXFP4 layout (values 2j, 2j + 1 in byte j's nibbles, the
// scales apart) decode to the same values: the two forms of GPT-OSS's experts agree.
TEST(GgmlQuants, Mxfp4GgmlAndHuggingFaceMxfp4Agree) {
  const Reference edges = reference(DType::MXFP4_GGML, ".edges");
  const int64_t n_blocks = edges.rows * edges.n / 32;
  std::vector<uint8_t> hf_blocks(static_cast<size_t>(n_blocks * 16)), hf_scales(static_cast<size_t>(n_blocks));
  for (int64_t b = 0; b < n_blocks; ++b) {
    const auto& blk = reinterpret_cast<const BlockMXFP4_GGML*>(edges.blocks)[b];
    hf_scales[size_t(b)] = blk.e;
    uint8_t code[32];
    for (int j = 0; j < 16; ++j) code[j] = blk.qs[j] & 15, code[j + 16] = blk.qs[j] >> 4;
    for (int j = 0; j < 16; ++j) hf_blocks[size_t(b * 16 + j)] = uint8_t(code[2 * j] | (code[2 * j + 1] << 4));
  }
  std::vector<float> hf(size_t(n_blocks * 32));
  mxfp4_dequantize(hf_blocks.data(), hf_scales.data(), n_blocks * 32, hf.data());
  for (int64_t i = 0; i < n_blocks * 32; ++i) ASSERT_EQ(bits(hf[size_t(i)]), bits(edges.values[i])) << "value " << i;
  // And back: Hugging Face's blocks rearranged as ggml's (how the GPU holds GPT-OSS's experts) are gguf-py's bytes.
  std::vector<uint8_t> ggml(size_t(n_blocks * 17));
  mxfp4_to_ggml_blocks(hf_blocks.data(), hf_scales.data(), n_blocks, ggml.data());
  EXPECT_EQ(std::memcmp(ggml.data(), edges.blocks, ggml.size()), 0);
}

// A GGUF tensor of ggml type 39 is read as MXFP4_GGML, in place: its rows are the blocks as stored.
TEST(GgmlQuants, GgufTensorOfType39IsMxfp4Ggml) {
  const Reference ref = reference(DType::MXFP4_GGML);
  EXPECT_EQ(dtype_of_ggml_type(39), DType::MXFP4_GGML);
  test::GgufBuilder b;
  b.metadata["general.architecture"] = "gpt-oss";
  const std::string data(reinterpret_cast<const char*>(ref.blocks), size_t(ref.rows) * row_bytes(DType::MXFP4_GGML, ref.n));
  b.tensors.push_back({"blk.0.ffn_down_exps.weight", 39, {uint64_t(ref.n), uint64_t(ref.rows)}, data});
  test::ScratchDir dir;
  const auto g = GgufFile::open(dir.write("mxfp4.gguf", b.bytes()));
  const GgufTensor* t = g->find("blk.0.ffn_down_exps.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(t->readable);
  EXPECT_EQ(t->type_name, "MXFP4");
  EXPECT_EQ(t->view.dtype, DType::MXFP4_GGML);
  EXPECT_EQ(t->view.shape, (std::vector<int64_t>{ref.rows, ref.n}));
  EXPECT_EQ(t->view.nbytes, matrix_bytes(DType::MXFP4_GGML, ref.rows, ref.n));
  const Reference in_file{ref.rows, ref.n, reinterpret_cast<const uint8_t*>(t->view.data), ref.values};
  expect_dequantize_row_matches(DType::MXFP4_GGML, in_file, "type 39 tensor");
}

// The IQ4 reference rows reach what the bit-exact check above needs to mean something: every code of
// the table, and for IQ4_XS every 6-bit sub-block scale (so the −32 and both parts of the packed bits are
// exercised, ls = 32 giving a zero scale), read here as the format documents them.
TEST(GgmlQuants, Iq4ReferenceHoldsEveryCodeAndScale) {
  const Reference nl = reference(DType::IQ4_NL), xs = reference(DType::IQ4_XS);
  std::set<int> nl_codes, xs_codes, xs_scales;
  for (int64_t b = 0; b < nl.rows * nl.n / 32; ++b)
    for (uint8_t q : reinterpret_cast<const BlockIQ4_NL*>(nl.blocks)[b].qs) nl_codes.insert({q & 15, q >> 4});
  for (int64_t b = 0; b < xs.rows * xs.n / 256; ++b) {
    const auto& blk = reinterpret_cast<const BlockIQ4_XS*>(xs.blocks)[b];
    for (int j = 0; j < 8; ++j) xs_scales.insert(iq4_xs_scale(blk.scales_h, blk.scales_l, j));
    for (uint8_t q : blk.qs) xs_codes.insert({q & 15, q >> 4});
  }
  EXPECT_EQ(nl_codes.size(), 16u);
  EXPECT_EQ(xs_codes.size(), 16u);
  EXPECT_EQ(xs_scales.size(), 64u);  // 0 to 63
}

// GGUF tensors of ggml types 16–23 and 29 are read as the IQ types, in place.
TEST(GgmlQuants, GgufTensorsOfTheIqTypesAreReadInPlace) {
  for (auto [id, t] : {std::pair<uint32_t, DType>{20, DType::IQ4_NL}, {23, DType::IQ4_XS}, {16, DType::IQ2_XXS},
                       {17, DType::IQ2_XS}, {22, DType::IQ2_S}, {18, DType::IQ3_XXS}, {21, DType::IQ3_S},
                       {19, DType::IQ1_S}, {29, DType::IQ1_M}}) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    const Reference ref = reference(t);
    EXPECT_EQ(dtype_of_ggml_type(id), t);
    test::GgufBuilder b;
    b.metadata["general.architecture"] = "qwen3moe";
    const std::string data(reinterpret_cast<const char*>(ref.blocks), size_t(ref.rows) * row_bytes(t, ref.n));
    b.tensors.push_back({"blk.0.ffn_down_exps.weight", id, {uint64_t(ref.n), uint64_t(ref.rows)}, data});
    test::ScratchDir dir;
    const auto g = GgufFile::open(dir.write("iq.gguf", b.bytes()));
    const GgufTensor* tensor = g->find("blk.0.ffn_down_exps.weight");
    ASSERT_NE(tensor, nullptr);
    EXPECT_TRUE(tensor->readable);
    EXPECT_EQ(tensor->type_name, dtype_name(t));  // ggml's own names
    EXPECT_EQ(tensor->view.dtype, t);
    EXPECT_EQ(tensor->view.shape, (std::vector<int64_t>{ref.rows, ref.n}));
    EXPECT_EQ(tensor->view.nbytes, matrix_bytes(t, ref.rows, ref.n));
    const Reference in_file{ref.rows, ref.n, reinterpret_cast<const uint8_t*>(tensor->view.data), ref.values};
    expect_dequantize_row_matches(t, in_file, "type " + std::to_string(id) + " tensor");
  }
}

TEST(GgmlQuants, DequantizeRowPlainTypesAndRefusals) {
  const float f[3] = {1.5f, -2.0f, 0.25f};
  const uint16_t h[3] = {f32_to_f16(1.5f), f32_to_f16(-2.0f), f32_to_f16(0.25f)};
  const uint16_t b[3] = {f32_to_bf16(1.5f), f32_to_bf16(-2.0f), f32_to_bf16(0.25f)};
  for (auto [src, t] : {std::pair<const void*, DType>{f, DType::F32}, {h, DType::F16}, {b, DType::BF16}}) {
    float out[3] = {};
    dequantize_row(src, t, 3, out);
    EXPECT_EQ(out[0], 1.5f);
    EXPECT_EQ(out[1], -2.0f);
    EXPECT_EQ(out[2], 0.25f);
  }
  std::vector<uint8_t> blocks(1024);
  std::vector<float> out(512);
  EXPECT_THROW(dequantize_row(blocks.data(), DType::Q4_K, 128, out.data()), std::invalid_argument);  // half a block
  EXPECT_THROW(dequantize_row(blocks.data(), DType::Q8_0, 48, out.data()), std::invalid_argument);
  EXPECT_THROW(dequantize_row(blocks.data(), DType::MXFP4, 32, out.data()), std::invalid_argument);
  EXPECT_THROW(dequantize_row(blocks.data(), DType::I32, 4, out.data()), std::invalid_argument);
}

// One-hot inputs pick out each weight: through the decode GEMV (T = 1, x = e_c), through the few-token kernel (2 to 12
// tokens at a time, x = e_c … e_c+T−1; from 10 tokens for some types in two runs, 11 = 6 + 5) and through the expanded
// panels (T = cols, x the identity) the outputs are the reference values exactly. (Only one product is non-zero, so no
// sum rounds; the GEMV and the few-token kernel form scale · q, then add offset · Σx with Σx = 1, as dequantize_row
// does.) MXFP4_GGML's edge rows too, but for the last (exponents 224–255), whose infinite values times the identity's
// zeros are NaN on every path but the GEMV's.
void expect_picks_out_every_value(DType t, const Reference& ref) {
  const int64_t rows = ref.rows, cols = ref.n;
  const MatrixRef W{ref.blocks, t, rows, cols};
  std::vector<float> identity(size_t(cols * cols), 0.0f);
  for (int64_t c = 0; c < cols; ++c) identity[size_t(c * cols + c)] = 1.0f;
  for (bool scalar : paths()) {
    ScopedForceScalar force(scalar);
    std::vector<float> y(size_t(cols * rows));
    cpu::matmul_rows(W, identity.data(), cols, y.data(), 0, rows);
    for (int64_t c = 0; c < cols; ++c)
      for (int64_t r = 0; r < rows; ++r)
        ASSERT_EQ(y[size_t(c * rows + r)], ref.values[r * cols + c])
            << label(t, cols, rows, cols) << " row " << r << " column " << c;
    for (int64_t T = 1; T <= (scalar ? 1 : 12); ++T) {  // (the scalar path takes every T alike)
      for (int64_t c0 = 0; c0 < cols; c0 += T) {
        const int64_t n = std::min(T, cols - c0);  // the tokens e_c0 … e_c0+n−1: n rows of the identity
        cpu::matmul_rows(W, &identity[size_t(c0 * cols)], n, y.data(), 0, rows);
        for (int64_t i = 0; i < n; ++i)
          for (int64_t r = 0; r < rows; ++r)
            ASSERT_EQ(y[size_t(i * rows + r)], ref.values[r * cols + c0 + i])
                << label(t, n, rows, cols) << " row " << r << " column " << c0 + i;
      }
    }
  }
}

TEST(GgmlQuants, MatmulPicksOutEveryValueExactly) {
  for (DType t : kTypes) expect_picks_out_every_value(t, reference(t));
  Reference edges = reference(DType::MXFP4_GGML, ".edges");
  edges.rows = 7;
  ASSERT_TRUE(std::all_of(edges.values, edges.values + edges.rows * edges.n, [](float f) { return std::isfinite(f); }));
  expect_picks_out_every_value(DType::MXFP4_GGML, edges);
}

// Widths of each type: one block; several; across the prefill path's 512-column blocks (a last
// column block of one group, or of a few 32-value blocks); for the 32-value types a last group of
// fewer than 8 blocks.
std::vector<int64_t> widths(DType t) {
  if (block_format(t).values == 32) return {32, 96, 544, 1120};
  return {256, 768, 1536};
}

// Against a double-precision product of the reference values, every token path (T = 1: the GEMV; 2 to 9: the few-token
// kernel, whose sums per token differ at 2, 3–4 and 5–9 tokens, or for some types from 5, 7 or 9 tokens the panels; 10
// to 12: the kernel in two runs or one short token tile of the panels; 13 and 37: the panels, in several 3-token
// groups), rows that do and do not fill the four streams. Bound: 1e-5 of Σ|w·x|, as for the plain types: f32 sums of
// up to 1536 terms round by well under that; the GEMV's split of a value into scale · q and offset adds two more terms
// per value whose magnitudes stay of the value's order for these scales.
TEST(GgmlQuants, MatmulMatchesReference) {
  for (bool scalar : paths()) {
    ScopedForceScalar force(scalar);
    for (DType t : kTypes) {
      for (int64_t cols : widths(t)) {
        for (int64_t rows : {1, 5, 37}) {
          const TestMatrix m = make_matrix(t, rows, cols, uint32_t(rows * 1000 + cols));
          for (int64_t T : {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 37}) {
            const auto x = make_x(T, cols, uint32_t(T * 7 + cols));
            std::vector<float> y(size_t(T * rows), std::nanf(""));
            cpu::matmul_rows(m.ref(), x.data(), T, y.data(), 0, rows);
            EXPECT_LE(max_rel_error(m, x, T, y), 1e-5) << label(t, T, rows, cols);
          }
        }
      }
    }
  }
}

// The two paths agree with each other as with the reference, over several token tiles (T = 100).
TEST(GgmlQuants, ScalarAndSimdAgree) {
  if (!cpu::simd_supported()) GTEST_SKIP() << "no AVX2+FMA+F16C on this CPU";
  for (DType t : kTypes) {
    const int64_t rows = 9, cols = widths(t)[2];
    const TestMatrix m = make_matrix(t, rows, cols, 77);
    for (int64_t T : {1, 100}) {
      const auto x = make_x(T, cols, uint32_t(T + 3));
      std::vector<float> ys(size_t(T * rows)), yv(size_t(T * rows));
      {
        ScopedForceScalar force(true);
        cpu::matmul_rows(m.ref(), x.data(), T, ys.data(), 0, rows);
      }
      {
        ScopedForceScalar force(false);
        cpu::matmul_rows(m.ref(), x.data(), T, yv.data(), 0, rows);
      }
      EXPECT_LE(max_rel_error(m, x, T, ys), 1e-5) << label(t, T, rows, cols) << " scalar";
      EXPECT_LE(max_rel_error(m, x, T, yv), 1e-5) << label(t, T, rows, cols) << " simd";
    }
  }
}

// Row ranges write exactly their rows, and the pool splits the rows without changing a bit.
TEST(GgmlQuants, RowRangesAndThreads) {
  const float kSentinel = -12345.0f;
  for (bool scalar : paths()) {
    ScopedForceScalar force(scalar);
    for (DType t : kTypes) {
      const int64_t rows = 37, cols = widths(t)[1];
      const TestMatrix m = make_matrix(t, rows, cols, 5);
      for (int64_t T : {1, 3, 17}) {
        const auto x = make_x(T, cols, uint32_t(T));
        std::vector<float> full(size_t(T * rows));
        cpu::matmul_rows(m.ref(), x.data(), T, full.data(), 0, rows);
        for (auto [b, e] : {std::pair<int64_t, int64_t>{0, 1}, {3, 4}, {5, 13}, {1, 36}, {36, 37}}) {
          std::vector<float> y(size_t(T * rows), kSentinel);
          cpu::matmul_rows(m.ref(), x.data(), T, y.data(), b, e);
          for (int64_t tok = 0; tok < T; ++tok)
            for (int64_t r = 0; r < rows; ++r)
              ASSERT_EQ(y[size_t(tok * rows + r)], r >= b && r < e ? full[size_t(tok * rows + r)] : kSentinel)
                  << label(t, T, rows, cols) << " r=" << r << " range [" << b << ", " << e << ")";
        }
        for (int threads : {2, 3}) {
          ThreadPool pool(threads);
          std::vector<float> y(size_t(T * rows));
          cpu::matmul(pool, m.ref(), x.data(), T, y.data());
          EXPECT_EQ(y, full) << label(t, T, rows, cols) << " threads=" << threads;
        }
      }
    }
  }
}

TEST(GgmlQuants, MatmulRejectsMatricesItCannotRead) {
  for (DType t : kTypes) {
    const int64_t values = block_format(t).values;
    const TestMatrix m = make_matrix(t, 4, 2 * values, 1);
    const auto x = make_x(1, 2 * values, 1);
    std::vector<float> y(4);
    MatrixRef bad = m.ref();
    bad.cols = values + 16;  // not whole blocks
    try {
      cpu::matmul_rows(bad, x.data(), 1, y.data(), 0, 4);
      ADD_FAILURE() << dtype_name(t) << ": a width of " << bad.cols << " was accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(std::string(dtype_name(t))), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("whole blocks of " + std::to_string(values)), std::string::npos) << e.what();
    }
    bad = m.ref();
    bad.row_step = 2;  // rows of these types are contiguous
    EXPECT_THROW(cpu::matmul_rows(bad, x.data(), 1, y.data(), 0, 4), std::invalid_argument) << dtype_name(t);
    bad = m.ref();
    const uint8_t scales[4] = {};
    bad.scales = scales;  // their scales are inside the blocks
    EXPECT_THROW(cpu::matmul_rows(bad, x.data(), 1, y.data(), 0, 4), std::invalid_argument) << dtype_name(t);
    ThreadPool pool(2);
    bad = m.ref();
    bad.cols = 8;
    EXPECT_THROW(cpu::matmul(pool, bad, x.data(), 1, y.data()), std::invalid_argument) << dtype_name(t);
  }
}

}  // namespace
}  // namespace moe
