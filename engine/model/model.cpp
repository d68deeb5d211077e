// Loading a model: config.json → ModelSpec (family adapter), then every tensor the spec needs is looked
// up by the family's names and checked for dtype and shape before the forward pass may touch it.
#include "engine/model/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "engine/common/error.h"
#include "engine/common/packed_int.h"
#include "engine/common/quant_linear.h"
#include "engine/model/family.h"
#include "engine/model/gguf_model.h"

namespace moe {

namespace {

size_t elements(const std::vector<int64_t>& shape) {
  size_t n = 1;
  for (auto d : shape) n *= size_t(d);
  return n;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::ostringstream o;
  o << '[';
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << ']';
  return o.str();
}

// Where tensors come from: a checkpoint (checked) or synthetic memory (made to measure).
class WeightSource {
 public:
  virtual ~WeightSource() = default;
  // Whether an optional tensor is there; `config_says` is what config.json implies (synthetic weights
  // follow it, checkpoints answer with what they hold).
  virtual bool has(const std::string& name, bool config_says = false) const = 0;
  // The data of `name`, which must have `shape`; nullptr when absent and not required.
  virtual const void* get(const std::string& name, const std::vector<int64_t>& shape, bool required, DType& dtype) = 0;
  // Synthetic memory holds no layout worth reordering: tensors stored in another layout (GPT-OSS's
  // experts) are bound in place instead of copied.
  virtual bool synthetic() const { return false; }
  // Raw bytes (U8) of a tensor that must have `shape`: quantized blocks and scales. Synthetic sources have none.
  virtual const uint8_t* get_u8(const std::string&, const std::vector<int64_t>&) { return nullptr; }
  // The F32 tile scales of an F8_E4M3 weight (engine/common/fp8.h), `<weight>_scale_inv` of shape `grid`.
  virtual const float* fp8_scales(const std::string& weight, const std::vector<int64_t>&) {
    throw EngineError(weight, "dtype", "F8_E4M3 weights are read from Hugging Face checkpoints only");
  }
  // A weight stored as compressed-tensors' packed integers (engine/common/packed_int.h): `<weight>_packed` with its
  // `<weight>_scale`, bound into m; false when the source has no `<weight>_packed`.
  virtual bool packed_int(const std::string&, int64_t, int64_t, WeightMatrix&) { return false; }
};

class CheckpointSource : public WeightSource {
 public:
  // What config.json declares decides what is read: F8_E4M3 weights when it declares fine-grained FP8, packed
  // integers when it declares them (compressed-tensors' `<weight>_packed`, GPTQ's or AWQ's `<module>.qweight`); owned
  // keeps their scales as F32 (and GPTQ's and AWQ's values rearranged).
  CheckpointSource(const TensorStore& store, std::string config_file, const ModelSpec& spec, OwnedWeights& owned)
      : store_(store),
        config_(std::move(config_file)),
        fp8_(spec.fp8_tile_rows > 0),
        packed_(spec.packed_int),
        zero_points_required_(spec.packed_int_asymmetric),
        owned_(owned) {}
  bool has(const std::string& name, bool) const override { return store_.find(name) != nullptr; }
  const void* get(const std::string& name, const std::vector<int64_t>& shape, bool required, DType& dtype) override {
    const TensorView* t = store_.find(name);
    if (!t) {
      if (required) throw EngineError(store_.source(), name, "tensor is missing (config.json implies it with shape " + shape_str(shape) + ")");
      return nullptr;
    }
    used_.insert(name);
    const bool fp8_matrix = t->dtype == DType::F8_E4M3 && shape.size() == 2;
    if (fp8_matrix && !fp8_)
      throw EngineError(t->file, name, "dtype F8_E4M3, but " + config_ + " has no quantization_config with quant_method 'fp8' to say how it is scaled");
    if (!is_weight_dtype(t->dtype) && !fp8_matrix)
      throw EngineError(t->file, name, "dtype " + std::string(dtype_name(t->dtype)) + " is not supported for weights (F32, F16 or BF16; F8_E4M3 matrices in FP8 checkpoints)");
    // A vector may come as a row: ERNIE-4.5 stores its router bias as [1, E].
    const bool as_row = shape.size() == 1 && t->shape == std::vector<int64_t>{1, shape[0]};
    if (t->shape != shape && !as_row)
      throw EngineError(t->file, name, "shape " + shape_str(t->shape) + " disagrees with " + config_ + ", which implies " + shape_str(shape));
    dtype = t->dtype;
    return t->data;
  }
  const uint8_t* get_u8(const std::string& name, const std::vector<int64_t>& shape) override {
    const TensorView* t = store_.find(name);
    if (!t) throw EngineError(store_.source(), name, "tensor is missing (config.json implies it with shape " + shape_str(shape) + ")");
    used_.insert(name);
    if (t->dtype != DType::U8)
      throw EngineError(t->file, name, "dtype " + std::string(dtype_name(t->dtype)) + " is not U8, as MXFP4 blocks and scales are");
    if (t->shape != shape)
      throw EngineError(t->file, name, "shape " + shape_str(t->shape) + " disagrees with " + config_ + ", which implies " + shape_str(shape));
    return reinterpret_cast<const uint8_t*>(t->data);
  }
  const float* fp8_scales(const std::string& weight, const std::vector<int64_t>& grid) override {
    const std::string name = weight + "_scale_inv";
    const TensorView* t = store_.find(name);
    if (!t) throw EngineError(store_.source(), name, "tensor is missing (the F8_E4M3 weight " + weight + " needs its scales, " + shape_str(grid) + ")");
    used_.insert(name);
    if (!is_weight_dtype(t->dtype))
      throw EngineError(t->file, name, "dtype " + std::string(dtype_name(t->dtype)) + " is not read for FP8 scales (F32, BF16 or F16 are)");
    if (t->shape != grid)
      throw EngineError(t->file, name, "shape " + shape_str(t->shape) + " disagrees with the weight's tiles in " + config_ +
                                           " (weight_block_size), which imply " + shape_str(grid));
    return f32_copy(*t);
  }
  bool packed_int(const std::string& weight, int64_t rows, int64_t cols, WeightMatrix& m) override {
    const TensorView* p = store_.find(weight + "_packed");
    if (!p) return quant_linear(weight, rows, cols, m);
    const std::string name = weight + "_packed";
    if (packed_ != ModelSpec::PackedInts::CompressedTensors)
      throw EngineError(p->file, name, "a packed weight, but " + config_ +
                                           " has no quantization_config with quant_method 'compressed-tensors' and format 'pack-quantized'");
    if (const TensorView* g = store_.find(weight + "_g_idx"))  // compressed-tensors itself no longer reads them
      throw EngineError(g->file, weight + "_g_idx", "activation order by group (actorder 'group') is not read");
    used_.insert(name);
    if (p->dtype != DType::I32)
      throw EngineError(p->file, name, "dtype " + std::string(dtype_name(p->dtype)) + " is not I32, as packed weights are");
    const int64_t words = p->shape.size() == 2 ? p->shape[1] : -1;
    const int bits = cols > 0 && words > 0 && words * 32 % cols == 0 ? int(words * 32 / cols) : 0;
    if (p->shape.size() != 2 || p->shape[0] != rows || (bits != 4 && bits != 8))
      throw EngineError(p->file, name, "shape " + shape_str(p->shape) + " disagrees with " + config_ + ", which implies " +
                                           shape_str({rows, cols * 4 / 32}) + " for 4-bit or " + shape_str({rows, cols * 8 / 32}) +
                                           " for 8-bit values (rows of whole 32-bit words)");
    if (const TensorView* shape = store_.find(weight + "_shape")) {
      used_.insert(weight + "_shape");
      const bool ints = (shape->dtype == DType::I32 || shape->dtype == DType::I64) && shape->shape == std::vector<int64_t>{2};
      int64_t dims[2] = {-1, -1};
      for (int i = 0; ints && i < 2; ++i) {
        if (shape->dtype == DType::I64) {
          std::memcpy(&dims[i], shape->data + 8 * i, 8);
        } else {
          int32_t d = 0;
          std::memcpy(&d, shape->data + 4 * i, 4);
          dims[i] = d;
        }
      }
      if (dims[0] != rows || dims[1] != cols)
        throw EngineError(shape->file, weight + "_shape", "does not say " + shape_str({rows, cols}) + ", the shape " + config_ + " implies");
    }
    const std::string scale_name = weight + "_scale";
    const TensorView* sc = store_.find(scale_name);
    if (!sc) throw EngineError(store_.source(), scale_name, "tensor is missing (the packed weight " + name + " needs its scales)");
    used_.insert(scale_name);
    if (!is_weight_dtype(sc->dtype))
      throw EngineError(sc->file, scale_name, "dtype " + std::string(dtype_name(sc->dtype)) + " is not read for scales (F32, BF16 or F16 are)");
    const int64_t groups = sc->shape.size() == 2 ? sc->shape[1] : -1;
    if (sc->shape.size() != 2 || sc->shape[0] != rows || groups < 1 || cols % groups)
      throw EngineError(sc->file, scale_name, "shape " + shape_str(sc->shape) + " is not [" + std::to_string(rows) +
                                                  ", groups] with groups dividing the " + std::to_string(cols) + " columns");
    m.data = p->data;
    m.dtype = bits == 4 ? DType::PACKED_I4 : DType::PACKED_I8;
    m.rows = rows;
    m.cols = cols;
    m.tiles = {f32_copy(*sc), 1, cols / groups, groups, 0, sc->dtype};
    if (const TensorView* z = store_.find(weight + "_zero_point")) {  // an asymmetric scheme's
      const std::string zname = weight + "_zero_point";
      used_.insert(zname);
      const std::vector<int64_t> want = {(rows * bits + 31) / 32, groups};
      if (z->dtype != DType::I32 || z->shape != want)
        throw EngineError(z->file, zname, std::string(dtype_name(z->dtype)) + " " + shape_str(z->shape) + " is not I32 " +
                                              shape_str(want) + ", the zero points of " + std::to_string(rows) + " rows by " +
                                              std::to_string(groups) + " groups packed down the rows");
      owned_.emplace_back(new std::byte[size_t(rows * groups)]);
      auto* zeros = reinterpret_cast<int8_t*>(owned_.back().get());
      packed_int_unpack_zero_points(m.dtype, reinterpret_cast<const uint8_t*>(z->data), rows, groups, zeros);
      m.tiles.zero_points = zeros;
    } else if (zero_points_required_) {  // read as symmetric, every weight would be off by its zero point
      throw EngineError(store_.source(), weight + "_zero_point",
                        "tensor is missing (every scheme in " + config_ + "'s quantization_config is asymmetric, so the "
                        "packed weight " + name + " needs its zero points)");
    }
    return true;
  }
  std::vector<std::string> unused() const {
    std::vector<std::string> out;
    for (const auto& n : store_.names())
      if (!used_.count(n)) out.push_back(n);
    return out;
  }

 private:
  // A weight stored in GPTQ's or AWQ's QuantLinear layout (engine/common/quant_linear.h): `<module>.qweight` where
  // `<module>.weight` would be. Its values are rearranged into packed_int.h's rows, its scales copied as F32 (rows
  // first) and its zero points unpacked (dropped when all are the symmetric midpoint), all kept with the model. False
  // when the source has no `<module>.qweight`.
  bool quant_linear(const std::string& weight, int64_t rows, int64_t cols, WeightMatrix& m) {
    const std::string suffix = ".weight";
    if (!weight.ends_with(suffix)) return false;
    const std::string module = weight.substr(0, weight.size() - suffix.size()), name = module + ".qweight";
    const TensorView* p = store_.find(name);
    if (!p) return false;
    const bool gptq = packed_ == ModelSpec::PackedInts::GptqV1 || packed_ == ModelSpec::PackedInts::GptqV2;
    if (!gptq && packed_ != ModelSpec::PackedInts::Awq)
      throw EngineError(p->file, name, "a GPTQ or AWQ weight, but " + config_ + " has no quantization_config with quant_method 'gptq' or 'awq'");
    used_.insert(name);
    if (p->dtype != DType::I32)
      throw EngineError(p->file, name, "dtype " + std::string(dtype_name(p->dtype)) + " is not I32, as packed weights are");
    // GPTQ packs each output's values down the inputs ([cols · bits / 32, rows]), AWQ 8 outputs to a word ([cols, rows / 8]).
    int bits = 0;
    if (p->shape.size() == 2 && gptq && p->shape[1] == rows && cols > 0 && p->shape[0] * 32 % cols == 0)
      bits = int(p->shape[0] * 32 / cols);
    if (p->shape.size() == 2 && !gptq && p->shape[0] == cols && rows % 8 == 0 && p->shape[1] == rows / 8 && cols % 8 == 0)
      bits = 4;
    if ((bits != 4 && bits != 8) || rows % (32 / bits))
      throw EngineError(p->file, name, "shape " + shape_str(p->shape) + " disagrees with " + config_ + ", which implies " +
                                           (gptq ? shape_str({cols * 4 / 32, rows}) + " for 4-bit or " + shape_str({cols * 8 / 32, rows}) +
                                                       " for 8-bit values (each output's values packed down the inputs, whole words)"
                                                 : shape_str({cols, rows / 8}) + " (AWQ's 4-bit values, 8 outputs to a word)"));
    const TensorView* sc = store_.find(module + ".scales");
    if (!sc) throw EngineError(store_.source(), module + ".scales", "tensor is missing (the packed weight " + name + " needs its scales)");
    used_.insert(module + ".scales");
    const int64_t groups = sc->shape.size() == 2 ? sc->shape[0] : -1;
    if (!is_weight_dtype(sc->dtype) || sc->shape.size() != 2 || sc->shape[1] != rows || groups < 1 || cols % groups)
      throw EngineError(sc->file, module + ".scales", std::string(dtype_name(sc->dtype)) + " " + shape_str(sc->shape) +
                                                          " is not F16, BF16 or F32 [groups, " + std::to_string(rows) +
                                                          "] with groups dividing the " + std::to_string(cols) + " inputs");
    const int64_t group = cols / groups;
    const int32_t* input_order = this->input_order(module + ".g_idx", cols, groups);  // GPTQ's group of each input
    const TensorView* z = store_.find(module + ".qzeros");
    const std::vector<int64_t> zshape = {groups, rows * bits / 32};
    if (!z) throw EngineError(store_.source(), module + ".qzeros", "tensor is missing (the packed weight " + name + " needs its zero points)");
    used_.insert(module + ".qzeros");
    if (z->dtype != DType::I32 || z->shape != zshape)
      throw EngineError(z->file, module + ".qzeros", std::string(dtype_name(z->dtype)) + " " + shape_str(z->shape) + " is not I32 " +
                                                         shape_str(zshape) + ", the zero points of " + std::to_string(groups) +
                                                         " groups by " + std::to_string(rows) + " outputs");
    const QuantLinearLayout layout = gptq ? QuantLinearLayout::Gptq : QuantLinearLayout::Awq;
    const auto* words = reinterpret_cast<const uint8_t*>(p->data);
    owned_.emplace_back(new std::byte[size_t(rows * cols * bits / 8)]);
    auto* values = reinterpret_cast<uint8_t*>(owned_.back().get());
    quant_linear_values(layout, bits, words, rows, cols, values);
    if (input_order) packed_int_gather_columns(bits, values, rows, cols, input_order);
    // The scales, [groups, rows] as stored, rows first as TileScales has them.
    std::vector<float> by_group(size_t(groups * rows));
    convert_to_f32(sc->data, sc->dtype, by_group.size(), by_group.data());
    owned_.emplace_back(new std::byte[by_group.size() * sizeof(float)]);
    auto* scales = reinterpret_cast<float*>(owned_.back().get());
    for (int64_t g = 0; g < groups; ++g)
      for (int64_t r = 0; r < rows; ++r) scales[r * groups + g] = by_group[size_t(g * rows + r)];
    std::unique_ptr<std::byte[]> zeros(new std::byte[size_t(rows * groups)]);
    auto* zero_points = reinterpret_cast<int8_t*>(zeros.get());
    const bool asymmetric = quant_linear_zero_points(layout, bits, packed_ == ModelSpec::PackedInts::GptqV1,
                                                     reinterpret_cast<const uint8_t*>(z->data), rows, groups, zero_points);
    m.data = values;
    m.dtype = bits == 4 ? DType::PACKED_I4 : DType::PACKED_I8;
    m.rows = rows;
    m.cols = cols;
    m.tiles = {scales, 1, group, groups, 0, sc->dtype};
    m.tiles.input_order = input_order;
    if (asymmetric) {
      owned_.push_back(std::move(zeros));
      m.tiles.zero_points = zero_points;
    }
    return true;
  }

  // Activation order: where the I32 [cols] tensor `name` (GPTQ's g_idx) puts the inputs in other groups than
  // c / (cols / groups), the order their values are held in (quant_linear_input_order), kept with the model; null
  // when it is absent or plain.
  const int32_t* input_order(const std::string& name, int64_t cols, int64_t groups) {
    const TensorView* g = store_.find(name);
    if (!g) return nullptr;
    used_.insert(name);
    if (g->dtype != DType::I32 || g->shape != std::vector<int64_t>{cols})
      throw EngineError(g->file, name, std::string(dtype_name(g->dtype)) + " " + shape_str(g->shape) + " is not I32 [" + std::to_string(cols) + "]");
    owned_.emplace_back(new std::byte[size_t(cols) * sizeof(int32_t)]);
    auto* order = reinterpret_cast<int32_t*>(owned_.back().get());
    try {
      if (quant_linear_input_order(reinterpret_cast<const uint8_t*>(g->data), cols, groups, order)) return order;
    } catch (const std::invalid_argument& e) {
      throw EngineError(g->file, name, e.what());
    }
    owned_.pop_back();
    return nullptr;
  }

  // A tensor of F32, BF16 or F16 values as an F32 copy kept with the model.
  const float* f32_copy(const TensorView& t) {
    const size_t n = elements(t.shape);
    owned_.emplace_back(new std::byte[n * sizeof(float)]);
    auto* out = reinterpret_cast<float*>(owned_.back().get());
    convert_to_f32(t.data, t.dtype, n, out);
    return out;
  }

  const TensorStore& store_;
  std::string config_;
  bool fp8_;
  ModelSpec::PackedInts packed_;
  bool zero_points_required_;  // compressed-tensors with every scheme asymmetric
  OwnedWeights& owned_;
  std::set<std::string> used_;
};

// A GGUF file's tensors under llama.cpp's names (gguf_model.h); shapes in PyTorch order (GGUF's dims
// reversed). Matrices may be in llama.cpp's block-quantized types; vectors must be F32, F16 or BF16.
class GgufSource : public WeightSource {
 public:
  GgufSource(const GgufFile& file, OwnedWeights& owned) : file_(file), owned_(owned) {}
  bool has(const std::string& name, bool) const override { return file_.find(name) != nullptr; }
  const void* get(const std::string& name, const std::vector<int64_t>& shape, bool required, DType& dtype) override {
    const GgufTensor* t = file_.find(name);
    if (!t && shape.size() == 2) {
      if (auto joined = join_split_kv_b(file_, name, shape[0], shape[1])) {
        used_.insert(joined->k_b);
        used_.insert(joined->v_b);
        dtype = joined->dtype;
        owned_.push_back(std::move(joined->data));
        return owned_.back().get();
      }
    }
    if (!t) {
      if (required) throw EngineError(file_.path(), name, "tensor is missing (the metadata implies it with shape " + shape_str(shape) + ")");
      return nullptr;
    }
    used_.insert(name);
    if (!t->readable)
      throw EngineError(t->view.file, name, "ggml type " + t->type_name + " is not read (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K to Q6_K, IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ4_NL, IQ4_XS and MXFP4 are)");
    if (shape.size() == 1 && !is_weight_dtype(t->view.dtype))
      throw EngineError(t->view.file, name, "a vector in " + t->type_name + "; vectors are read in F32, F16 or BF16");
    // A [1, n] matrix may be stored as a vector (Qwen2-MoE's shared expert gate), and a vector as [1, n].
    const auto& got = t->view.shape;
    const bool same = got == shape || (shape.size() == 2 && shape[0] == 1 && got == std::vector<int64_t>{shape[1]}) ||
                      (shape.size() == 1 && got == std::vector<int64_t>{1, shape[0]});
    if (!same) {
      std::vector<int64_t> ne(shape.rbegin(), shape.rend());
      throw EngineError(t->view.file, name, "dims " + shape_str(std::vector<int64_t>(got.rbegin(), got.rend())) +
                                                " (innermost first) disagree with the metadata, which implies " + shape_str(ne));
    }
    dtype = t->view.dtype;
    return t->view.data;
  }
  std::vector<std::string> unused() const {
    std::vector<std::string> out;
    for (const auto& [n, t] : file_.tensors())
      if (!used_.count(n)) out.push_back(n);
    return out;
  }

 private:
  const GgufFile& file_;
  OwnedWeights& owned_;
  std::set<std::string> used_;
};

// Synthetic weights, first pass: measures the matrices the spec needs (norm vectors become ones in
// the binder; optional tensors follow config.json). The second pass (in Model::synthetic) places them.
class SyntheticSizing : public WeightSource {
 public:
  bool has(const std::string&, bool config_says) const override { return config_says; }
  bool synthetic() const override { return true; }
  const void* get(const std::string&, const std::vector<int64_t>& shape, bool required, DType& dtype) override {
    if (!required || shape.size() == 1) return nullptr;
    dtype = dtype_;
    add(elements(shape) * dtype_size(dtype_));
    return nullptr;
  }
  // MXFP4 blocks come from the arena like matrices; their scales are made apart (Placed::get_u8).
  const uint8_t* get_u8(const std::string& name, const std::vector<int64_t>& shape) override {
    if (name.ends_with("_blocks")) add(elements(shape));
    return nullptr;
  }
  explicit SyntheticSizing(DType dtype) : dtype_(dtype) {}
  size_t total_ = 0;
  size_t largest_ = 0;

 private:
  void add(size_t bytes) {
    bytes = (bytes + 63) & ~size_t(63);
    total_ += bytes;
    largest_ = std::max(largest_, bytes);
  }
  DType dtype_;
};

// Binds every weight of the spec through a source. For synthetic models it runs twice: once to size
// the arena, once with the addresses.
class Binder {
 public:
  // owned: where copies in the engine's layout are kept (GPT-OSS's experts); null when none may be made.
  Binder(const ModelSpec& spec, const TensorNaming& names, WeightSource& src, OwnedWeights* owned = nullptr)
      : s_(spec), n_(names), src_(src), owned_(owned) {}

  WeightMatrix matrix(const std::string& name, int64_t rows, int64_t cols, bool required = true) {
    WeightMatrix m;
    if (src_.packed_int(name, rows, cols, m)) return m;
    DType dt = DType::F32;
    m.data = src_.get(name, {rows, cols}, required, dt);
    m.dtype = dt;
    m.rows = rows;
    m.cols = cols;
    if (m.data && dt == DType::F8_E4M3) {
      const int64_t tr = s_.fp8_tile_rows, tc = s_.fp8_tile_cols, grid_cols = tile_count(cols, tc);
      m.tiles = {src_.fp8_scales(name, {tile_count(rows, tr), grid_cols}), tr, tc, grid_cols, 0};
    }
    return m;
  }
  // Stacked experts are bound by offset, with no per-expert scales: an FP8 stack is refused by name.
  static void refuse_fp8_stack(const std::string& name, DType dt) {
    if (dt == DType::F8_E4M3)
      throw EngineError(name, "dtype", "F8_E4M3 experts stacked in one tensor are not read (FP8 experts are, one tensor each with its weight_scale_inv)");
  }
  // synthetic_fill: every element's value when the source has no data (synthetic weights): 1 for the
  // norms, 0 for a bias.
  std::vector<float> vec(const std::string& name, int64_t n, bool required = true, float synthetic_fill = 1.0f) {
    DType dt = DType::F32;
    const void* p = src_.get(name, {n}, required, dt);
    std::vector<float> out;
    if (p) {
      out.resize(size_t(n));
      convert_to_f32(p, dt, size_t(n), out.data());
    } else if (required) {
      out.assign(size_t(n), synthetic_fill);
    }
    return out;
  }
  // A [rows, cols] tensor as F32 (expert biases); filled with synthetic_fill when the source has no data.
  std::vector<float> table(const std::string& name, int64_t rows, int64_t cols, float synthetic_fill = 0.0f) {
    DType dt = DType::F32;
    const void* p = src_.get(name, {rows, cols}, true, dt);
    if (p && !is_weight_dtype(dt))
      throw EngineError(name, "dtype", std::string(dtype_name(dt)) + " where a table of F32, F16 or BF16 values belongs");
    std::vector<float> out(size_t(rows * cols), synthetic_fill);
    if (p) convert_to_f32(p, dt, out.size(), out.data());
    return out;
  }
  SwiGluWeights swiglu(const std::string& g, const std::string& u, const std::string& d, int64_t ffn) {
    SwiGluWeights w;
    w.gate = matrix(g, ffn, s_.hidden);
    w.up = matrix(u, ffn, s_.hidden);
    w.down = matrix(d, s_.hidden, ffn);
    return w;
  }

  ModelWeights bind(ModelSpec& spec_out) {
    ModelWeights w;
    const int64_t H = s_.hidden, V = s_.vocab_size;
    w.embed = matrix(n_.embed, V, H);
    w.final_norm = vec(n_.final_norm, H);
    // Tied: lm_head is absent and the embedding is used. Untied but absent is an error.
    if (s_.tied_embeddings) {
      w.lm_head = w.embed;
    } else {
      w.lm_head = matrix(n_.lm_head, V, H);
    }
    const auto& A = s_.attn;
    // MLA: attention_bias covers q_a_proj, kv_a_proj_with_mqa and o_proj.
    spec_out.attn.qkv_bias = src_.has(tensor_name(A.is_mla() ? n_.kv_a : n_.q, 0) + ".bias", A.qkv_bias);
    spec_out.attn.o_bias = src_.has(tensor_name(n_.o, 0) + ".bias", A.o_bias);
    w.layers.resize(s_.n_layers);
    for (int l = 0; l < s_.n_layers; ++l) {
      auto& L = w.layers[l];
      auto name = [l](const std::string& p) { return tensor_name(p, l); };
      L.attn_norm = vec(name(n_.attn_norm), H);
      L.ffn_norm = vec(name(n_.ffn_norm), H);
      if (A.is_mla()) {
        bind_mla(L, name, spec_out.attn.qkv_bias);
        if (spec_out.attn.o_bias) L.o_bias = vec(name(n_.o) + ".bias", H);
      } else {
        bind_attention(L, name, spec_out.attn.qkv_bias, spec_out.attn.o_bias);
      }
      bind_ffn(L, l, name);
    }
    return w;
  }

 private:
  template <typename Name>
  void bind_attention(LayerWeights& L, const Name& name, bool qkv_bias, bool o_bias) {
    const auto& A = s_.attn;
    const int64_t H = s_.hidden, q = s_.q_dim(), kv = s_.kv_dim();
    L.q = matrix(name(n_.q) + ".weight", q, H);
    L.k = matrix(name(n_.k) + ".weight", kv, H);
    L.v = matrix(name(n_.v) + ".weight", kv, H);
    L.o = matrix(name(n_.o) + ".weight", H, q);
    if (qkv_bias) {
      L.q_bias = vec(name(n_.q) + ".bias", q);
      L.k_bias = vec(name(n_.k) + ".bias", kv);
      L.v_bias = vec(name(n_.v) + ".bias", kv);
    }
    if (o_bias) L.o_bias = vec(name(n_.o) + ".bias", H);
    if (A.sinks) L.sinks = vec(name(n_.sinks), A.n_heads, true, 0.0f);
    if (A.qk_norm == QkNorm::PerHead) {
      L.q_norm = vec(name(n_.q_norm), A.head_dim);
      L.k_norm = vec(name(n_.k_norm), A.head_dim);
    } else if (A.qk_norm == QkNorm::WholeProjection) {
      L.q_norm = vec(name(n_.q_norm), q);
      L.k_norm = vec(name(n_.k_norm), kv);
    }
  }

  // MLA (SPECS.md §6.2): q_proj or q_a_proj → q_a_layernorm → q_b_proj; kv_a_proj_with_mqa →
  // kv_a_layernorm (on the latent part); kv_b_proj; o_proj over nh·v_head_dim. The a-projections carry
  // the biases attention_bias adds; the other projections have none.
  template <typename Name>
  void bind_mla(LayerWeights& L, const Name& name, bool a_bias) {
    const auto& A = s_.attn;
    const auto& m = A.mla;
    const int64_t H = s_.hidden, nh = A.n_heads, rope = A.rotary_dim;
    if (m.q_lora_rank > 0) {
      L.q_a = matrix(name(n_.q_a) + ".weight", m.q_lora_rank, H);
      if (a_bias) L.q_a_bias = vec(name(n_.q_a) + ".bias", m.q_lora_rank, true, 0.0f);
      L.q_a_norm = vec(name(n_.q_a_norm), m.q_lora_rank);
      L.q = matrix(name(n_.q_b) + ".weight", s_.q_dim(), m.q_lora_rank);
    } else {
      L.q = matrix(name(n_.q) + ".weight", s_.q_dim(), H);
    }
    L.kv_a = matrix(name(n_.kv_a) + ".weight", m.kv_lora_rank + rope, H);
    if (a_bias) L.kv_a_bias = vec(name(n_.kv_a) + ".bias", m.kv_lora_rank + rope, true, 0.0f);
    L.kv_a_norm = vec(name(n_.kv_a_norm), m.kv_lora_rank);
    L.kv_b = matrix(name(n_.kv_b) + ".weight", nh * (m.qk_nope_dim + m.v_head_dim), m.kv_lora_rank);
    L.o = matrix(name(n_.o) + ".weight", H, s_.attn_out_dim());
  }

  template <typename Name>
  void bind_ffn(LayerWeights& L, int l, const Name& name) {
    const int64_t H = s_.hidden;
    if (s_.layer_is_moe[l]) {
      const auto& M = s_.moe;
      const int64_t E = M.n_experts, I = M.expert_ffn;
      L.router = matrix(name(n_.router), E, H);
      if (M.selection_bias) L.router_bias = vec(name(n_.router_bias), E, true, 0.0f);
      if (M.router_logit_bias) L.router_logit_bias = vec(name(n_.router_logit_bias), E, true, 0.0f);
      L.experts.resize(size_t(E));
      const std::string fused_gu = name(n_.experts_gate_up), fused_d = name(n_.experts_down);
      if (n_.stacked_transposed) {
        bind_transposed_experts(L, name);
      } else if (!n_.experts_gate_up.empty() && src_.has(fused_gu)) {
        // Stacked layout: gate_up [E, 2I, H] with the gate rows first, down [E, H, I].
        DType dt = DType::F32, dt2 = DType::F32;
        const auto* gu = static_cast<const std::byte*>(src_.get(fused_gu, {E, 2 * I, H}, true, dt));
        const auto* dn = static_cast<const std::byte*>(src_.get(fused_d, {E, H, I}, true, dt2));
        refuse_fp8_stack(fused_gu, dt);
        refuse_fp8_stack(fused_d, dt2);
        for (int64_t e = 0; e < E; ++e) {
          auto& X = L.experts[size_t(e)];
          X.gate = {gu + matrix_bytes(dt, e * 2 * I, H), dt, I, H};
          X.up = {gu + matrix_bytes(dt, e * 2 * I + I, H), dt, I, H};
          X.down = {dn + matrix_bytes(dt2, e * H, I), dt2, H, I};
        }
      } else if (!n_.experts_gate.empty() && src_.has(name(n_.experts_gate))) {
        // Stacked apart (GGUF): gate [E, I, H], up [E, I, H], down [E, H, I], each in its own type.
        DType dg = DType::F32, du = DType::F32, dd = DType::F32;
        const auto* g = static_cast<const std::byte*>(src_.get(name(n_.experts_gate), {E, I, H}, true, dg));
        const auto* u = static_cast<const std::byte*>(src_.get(name(n_.experts_up), {E, I, H}, true, du));
        const auto* d = static_cast<const std::byte*>(src_.get(fused_d, {E, H, I}, true, dd));
        for (int64_t e = 0; e < E; ++e) {
          auto& X = L.experts[size_t(e)];
          X.gate = {g + matrix_bytes(dg, e * I, H), dg, I, H};
          X.up = {u + matrix_bytes(du, e * I, H), du, I, H};
          X.down = {d + matrix_bytes(dd, e * H, I), dd, H, I};
        }
        bind_expert_biases(L, name);
      } else {
        for (int64_t e = 0; e < E; ++e) {
          auto ename = [l, e](const std::string& p) { return tensor_name(p, l, int(e)); };
          L.experts[size_t(e)] = swiglu(ename(n_.expert_gate), ename(n_.expert_up), ename(n_.expert_down), I);
        }
      }
      if (M.shared_ffn > 0) {
        L.shared = swiglu(name(n_.shared_gate_proj), name(n_.shared_up_proj), name(n_.shared_down_proj), M.shared_ffn);
        if (M.shared_gate) L.shared_gate = matrix(name(n_.shared_expert_gate), 1, H);
      }
    } else {
      L.mlp = swiglu(name(n_.mlp_gate), name(n_.mlp_up), name(n_.mlp_down), s_.dense_ffn);
    }
  }

  // GPT-OSS's stacked experts (family.h: stacked_transposed): gate_up [E, H, 2·I] with gate and up
  // columns interleaved, down [E, I, H]. A checkpoint's are copied, transposed, into one buffer per layer
  // in the engine's [out, in] rows: per expert gate [I, H], up [I, H], down [H, I]. Synthetic memory is
  // bound in place, as its values have no layout to keep.
  template <typename Name>
  void bind_transposed_experts(LayerWeights& L, const Name& name) {
    const int64_t H = s_.hidden, E = s_.moe.n_experts, I = s_.moe.expert_ffn;
    if (s_.moe.experts_mxfp4) {
      bind_mxfp4_experts(L, name);
      bind_expert_biases(L, name);
      return;
    }
    DType dt = DType::F32, dt2 = DType::F32;
    const auto* gu = static_cast<const std::byte*>(src_.get(name(n_.experts_gate_up), {E, H, 2 * I}, true, dt));
    const auto* dn = static_cast<const std::byte*>(src_.get(name(n_.experts_down), {E, I, H}, true, dt2));
    refuse_fp8_stack(name(n_.experts_gate_up), dt);
    refuse_fp8_stack(name(n_.experts_down), dt2);
    if (gu && dn && dt != dt2)
      throw EngineError(name(n_.experts_down), "dtype",
                        std::string(dtype_name(dt2)) + " differs from gate_up_proj's " + std::string(dtype_name(dt)));
    const size_t es = dtype_size(dt);
    auto at = [es](const std::byte* p, int64_t elements) { return p ? p + size_t(elements) * es : nullptr; };
    if (src_.synthetic()) {  // in place: an expert's gate and up are its block of gate_up, its down its block of down
      for (int64_t e = 0; e < E; ++e) {
        auto& X = L.experts[size_t(e)];
        X.gate = {at(gu, e * 2 * I * H), dt, I, H};
        X.up = {at(gu, (e * 2 + 1) * I * H), dt, I, H};
        X.down = {at(dn, e * I * H), dt, H, I};
      }
    } else {
      if (!owned_) throw EngineError(name(n_.experts_gate_up), "layout", "this loader cannot reorder tensors");
      owned_->emplace_back(new std::byte[size_t(E * 3 * I * H) * es]);
      std::byte* out = owned_->back().get();
      transpose_experts(gu, dn, es, E, H, I, out);
      for (int64_t e = 0; e < E; ++e) {
        auto& X = L.experts[size_t(e)];
        X.gate = {at(out, e * 3 * I * H), dt, I, H};
        X.up = {at(out, (e * 3 + 1) * I * H), dt, I, H};
        X.down = {at(out, (e * 3 + 2) * I * H), dt, H, I};
      }
    }
    bind_expert_biases(L, name);
  }

  // The biases of GPT-OSS's experts: gate_up [E, 2·I] interleaved like the columns (or, in GGUF, gate
  // and up [E, I] apart), down [E, H].
  template <typename Name>
  void bind_expert_biases(LayerWeights& L, const Name& name) {
    const int64_t H = s_.hidden, E = s_.moe.n_experts, I = s_.moe.expert_ffn;
    if (!s_.moe.expert_bias) return;
    const bool apart = !n_.experts_gate_bias.empty();
    const std::vector<float> gu_bias = apart ? std::vector<float>() : table(name(n_.experts_gate_up_bias), E, 2 * I);
    const std::vector<float> g_bias = apart ? table(name(n_.experts_gate_bias), E, I) : std::vector<float>();
    const std::vector<float> u_bias = apart ? table(name(n_.experts_up_bias), E, I) : std::vector<float>();
    const std::vector<float> d_bias = table(name(n_.experts_down_bias), E, H);
    for (int64_t e = 0; e < E; ++e) {
      auto& X = L.experts[size_t(e)];
      if (apart) {
        X.gate_bias.assign(g_bias.begin() + e * I, g_bias.begin() + (e + 1) * I);
        X.up_bias.assign(u_bias.begin() + e * I, u_bias.begin() + (e + 1) * I);
      } else {
        X.gate_bias.resize(size_t(I));
        X.up_bias.resize(size_t(I));
        for (int64_t i = 0; i < I; ++i) {
          X.gate_bias[size_t(i)] = gu_bias[size_t(e * 2 * I + 2 * i)];
          X.up_bias[size_t(i)] = gu_bias[size_t(e * 2 * I + 2 * i + 1)];
        }
      }
      X.down_bias.assign(d_bias.begin() + e * H, d_bias.begin() + (e + 1) * H);
    }
  }

  // GPT-OSS's release experts in MXFP4 (transformers' integrations/mxfp4.py, engine/common/mxfp4.h):
  // gate_up_proj_blocks [E, 2·I, H/32, 16] and _scales [E, 2·I, H/32], down_proj_blocks [E, H, I/32, 16]
  // and _scales [E, H, I/32]. Rows are outputs, each a run of 32-value blocks, so the matrices are
  // bound in place: an expert's gate is the even rows of its gate_up block, its up the odd rows
  // (row_step 2), its down its down block. Synthetic sources hand out blocks of random codes with a
  // realistic scale.
  template <typename Name>
  void bind_mxfp4_experts(LayerWeights& L, const Name& name) {
    const int64_t H = s_.hidden, E = s_.moe.n_experts, I = s_.moe.expert_ffn;
    const std::string gu = name(n_.experts_gate_up), dn = name(n_.experts_down);
    const uint8_t* gu_blocks = src_.get_u8(gu + "_blocks", {E, 2 * I, H / 32, 16});
    const uint8_t* gu_scales = src_.get_u8(gu + "_scales", {E, 2 * I, H / 32});
    const uint8_t* dn_blocks = src_.get_u8(dn + "_blocks", {E, H, I / 32, 16});
    const uint8_t* dn_scales = src_.get_u8(dn + "_scales", {E, H, I / 32});
    auto at = [](const uint8_t* p, int64_t offset) { return p ? p + offset : nullptr; };
    for (int64_t e = 0; e < E; ++e) {
      const int64_t gu_row = e * 2 * I, dn_row = e * H;  // the expert's first stored row
      auto& X = L.experts[size_t(e)];
      X.gate = {at(gu_blocks, gu_row * H / 2), DType::MXFP4, I, H, at(gu_scales, gu_row * H / 32), 2};
      X.up = {at(gu_blocks, (gu_row + 1) * H / 2), DType::MXFP4, I, H, at(gu_scales, (gu_row + 1) * H / 32), 2};
      X.down = {at(dn_blocks, dn_row * I / 2), DType::MXFP4, H, I, at(dn_scales, dn_row * I / 32), 1};
    }
  }

  // Per expert e: out gate[i][h] = gu[e][h][2i], up[i][h] = gu[e][h][2i+1], down[h][i] = dn[e][i][h],
  // element by element (es bytes each), the experts spread over the cores.
  static void transpose_experts(const std::byte* gu, const std::byte* dn, size_t es, int64_t E, int64_t H, int64_t I,
                                std::byte* out) {
    auto one = [&](int64_t e) {
      std::byte* gate = out + size_t(e * 3 * I * H) * es;
      std::byte* up = gate + size_t(I * H) * es;
      std::byte* down = up + size_t(I * H) * es;
      const std::byte* g = gu + size_t(e * H * 2 * I) * es;
      const std::byte* d = dn + size_t(e * I * H) * es;
      constexpr int64_t kTile = 32;  // tiles keep both the reads and the writes within a few cache lines
      for (int64_t h0 = 0; h0 < H; h0 += kTile)
        for (int64_t i0 = 0; i0 < I; i0 += kTile)
          for (int64_t h = h0; h < std::min(H, h0 + kTile); ++h)
            for (int64_t i = i0; i < std::min(I, i0 + kTile); ++i) {
              std::memcpy(gate + size_t(i * H + h) * es, g + size_t(h * 2 * I + 2 * i) * es, es);
              std::memcpy(up + size_t(i * H + h) * es, g + size_t(h * 2 * I + 2 * i + 1) * es, es);
              std::memcpy(down + size_t(h * I + i) * es, d + size_t(i * H + h) * es, es);
            }
    };
    const int64_t threads = std::min<int64_t>(E, std::max(1u, std::thread::hardware_concurrency()));
    std::vector<std::thread> pool;
    for (int64_t t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        for (int64_t e = t; e < E; e += threads) one(e);
      });
    for (auto& th : pool) th.join();
  }

  const ModelSpec& s_;
  const TensorNaming& n_;
  WeightSource& src_;
  OwnedWeights* owned_;
};

WeightBytes count_weight_bytes(const ModelSpec& s, const ModelWeights& w) {
  auto floats = [](std::initializer_list<const std::vector<float>*> vs) {
    size_t n = 0;
    for (const auto* v : vs) n += v->size();
    return n * 4;
  };
  auto mlp = [&](const SwiGluWeights& m) {
    return m.gate.held_bytes() + m.up.held_bytes() + m.down.held_bytes() + floats({&m.gate_bias, &m.up_bias, &m.down_bias});
  };
  WeightBytes b;
  b.embeddings = w.embed.held_bytes() + (s.tied_embeddings ? 0 : w.lm_head.held_bytes());
  b.other = floats({&w.final_norm});
  for (const auto& L : w.layers) {
    for (const WeightMatrix* m : {&L.q, &L.k, &L.v, &L.o, &L.q_a, &L.kv_a, &L.kv_b}) b.attention += m->held_bytes();
    b.attention += floats({&L.q_norm, &L.k_norm, &L.q_bias, &L.k_bias, &L.v_bias, &L.o_bias, &L.q_a_norm, &L.q_a_bias,
                           &L.kv_a_norm, &L.kv_a_bias, &L.sinks});
    for (const auto& e : L.experts) b.routed_experts += mlp(e);
    b.shared_experts += mlp(L.shared) + L.shared_gate.held_bytes();
    b.other += L.router.held_bytes() + floats({&L.router_bias, &L.router_logit_bias, &L.attn_norm, &L.ffn_norm}) + mlp(L.mlp);
  }
  return b;
}

std::filesystem::path config_path_of(const std::filesystem::path& p) {
  return std::filesystem::is_directory(p) ? p / "config.json" : p;
}

}  // namespace

Model::~Model() = default;

std::vector<std::filesystem::path> Model::weight_files() const {
  std::vector<std::string> paths;
  if (gguf_) paths = gguf_->part_paths();
  if (store_) paths = store_->file_paths();
  return {paths.begin(), paths.end()};
}

std::map<std::string, size_t> Model::matrix_bytes_by_dtype() const {
  std::map<std::string, size_t> out;
  for_each_matrix(weights_, spec_.tied_embeddings,
                  [&out](MatrixPart, const WeightMatrix& m) {
                    out[std::string(dtype_name(m.dtype))] += m.bytes();
                    if (m.scale_bytes()) out["scales"] += m.scale_bytes();
                  });
  return out;
}

std::unique_ptr<Model> Model::load(const std::filesystem::path& dir) {
  if (is_gguf_file(dir)) return load_gguf(dir);
  if (!std::filesystem::is_directory(dir))
    throw EngineError(dir.string(), "", "not a folder or a GGUF file (expected a Hugging Face checkpoint folder with config.json, or a .gguf file)");
  const auto config_file = dir / "config.json";
  if (!std::filesystem::exists(config_file))
    throw EngineError(config_file.string(), "", "missing: a checkpoint folder needs config.json");
  std::unique_ptr<Model> m(new Model());
  m->dir_ = dir;
  const JsonFields config = JsonFields::load(config_file);
  m->spec_ = read_model_spec(config);
  m->store_ = std::make_unique<TensorStore>(TensorStore::open_folder(dir));
  const FamilyAdapter* f = find_family(m->spec_.model_type);
  // Tied embeddings: trust the tensors when config.json is silent on it (HF drops default values).
  if (!config.has("tie_word_embeddings"))
    m->spec_.tied_embeddings = !m->store_->find(f->names.lm_head);
  CheckpointSource src(*m->store_, "config.json", m->spec_, m->owned_weights_);
  ModelSpec spec = m->spec_;
  Binder binder(m->spec_, f->names, src, &m->owned_weights_);
  m->weights_ = binder.bind(spec);
  m->spec_ = spec;
  m->unused_ = src.unused();
  m->weight_bytes_ = count_weight_bytes(m->spec_, m->weights_);
  return m;
}

std::unique_ptr<Model> Model::load_gguf(const std::filesystem::path& path) {
  std::unique_ptr<Model> m(new Model());
  m->dir_ = path;
  m->gguf_ = GgufFile::open(path);
  const GgufModelConfig gc = read_gguf_model_config(*m->gguf_);
  m->spec_ = read_model_spec(JsonFields(gc.config, gc.config_name));
  if (gc.interleaved_rope) m->spec_.attn.rope_style = RopeStyle::Interleaved;
  GgufSource src(*m->gguf_, m->owned_weights_);
  ModelSpec spec = m->spec_;
  Binder binder(m->spec_, gc.names, src);
  m->weights_ = binder.bind(spec);
  m->spec_ = spec;
  m->unused_ = src.unused();
  m->weight_bytes_ = count_weight_bytes(m->spec_, m->weights_);
  return m;
}

std::unique_ptr<Model> Model::synthetic(const std::filesystem::path& config, const SyntheticOptions& opt) {
  const auto config_file = config_path_of(config);
  if (!std::filesystem::exists(config_file)) throw EngineError(config_file.string(), "", "config file not found");
  if (!is_weight_dtype(opt.dtype)) throw EngineError(config_file.string(), "dtype", "synthetic weights must be F32, F16 or BF16");
  std::unique_ptr<Model> m(new Model());
  m->synthetic_ = true;
  m->spec_ = read_model_spec(JsonFields::load(config_file));
  const FamilyAdapter* f = find_family(m->spec_.model_type);

  // Pass 1: sizes.
  SyntheticSizing sizing(opt.dtype);
  ModelSpec spec = m->spec_;
  Binder(m->spec_, f->names, sizing).bind(spec);
  if (opt.shape_only) {
    m->spec_ = spec;
    m->weights_ = Binder(m->spec_, f->names, sizing).bind(spec);
    m->weight_bytes_ = count_weight_bytes(m->spec_, m->weights_);
    return m;
  }
  const size_t cap = opt.max_distinct_bytes ? std::min(sizing.total_, opt.max_distinct_bytes) : sizing.total_;
  const size_t arena = std::max(cap, sizing.largest_);  // at least the largest single tensor
  m->synthetic_memory_.reset(new std::byte[arena]);
  m->synthetic_bytes_ = arena;

  // Fill with small values: uniform in ±0.04 (std ≈ 0.023, like a trained model's init), in parallel.
  const int threads = opt.threads > 0 ? opt.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  {
    std::vector<std::thread> pool;
    const size_t n16 = arena / 2;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        const size_t b = n16 * size_t(t) / size_t(threads), e = n16 * size_t(t + 1) / size_t(threads);
        std::mt19937_64 rng(opt.seed * 7919 + uint64_t(t));
        auto* p = reinterpret_cast<uint16_t*>(m->synthetic_memory_.get());
        if (opt.dtype == DType::F32) {
          // 4-byte values: fill pairs of halves as whole floats.
          auto* f32 = reinterpret_cast<float*>(m->synthetic_memory_.get());
          for (size_t i = b / 2; i < e / 2; ++i) f32[i] = float(int64_t(rng() % 2001) - 1000) * 4e-5f;
        } else {
          for (size_t i = b; i < e; ++i) {
            const float v = float(int64_t(rng() % 2001) - 1000) * 4e-5f;
            p[i] = opt.dtype == DType::BF16 ? f32_to_bf16(v) : f32_to_f16(v);
          }
        }
      });
    }
    for (auto& th : pool) th.join();
  }
  // Pass 2: the addresses, wrapping around the arena.
  class Placed : public WeightSource {
   public:
    Placed(std::byte* base, size_t size, DType dt, OwnedWeights& owned) : base_(base), size_(size), dt_(dt), owned_(owned) {}
    bool has(const std::string&, bool config_says) const override { return config_says; }
    bool synthetic() const override { return true; }
    // MXFP4 (GPT-OSS's experts): the blocks are the arena's bytes (random codes); every scale is
    // 2^-7, which gives the values an RMS of about 0.023, as the other synthetic weights.
    const uint8_t* get_u8(const std::string& name, const std::vector<int64_t>& shape) override {
      const size_t n = elements(shape);
      if (name.ends_with("_blocks")) return reinterpret_cast<const uint8_t*>(place(n));
      owned_.emplace_back(new std::byte[n]);
      std::memset(owned_.back().get(), 127 - 7, n);
      return reinterpret_cast<const uint8_t*>(owned_.back().get());
    }
    const void* get(const std::string&, const std::vector<int64_t>& shape, bool required, DType& dtype) override {
      if (!required) return nullptr;
      const size_t n = elements(shape);
      if (shape.size() == 1) {  // norms: ones, converted to F32 by the binder
        ones_.assign(n, 1.0f);
        dtype = DType::F32;
        return ones_.data();
      }
      dtype = dt_;
      return place(n * dtype_size(dt_));
    }

   private:
    // The next `bytes` of the arena, from its start again when they do not fit.
    const std::byte* place(size_t bytes) {
      bytes = (bytes + 63) & ~size_t(63);
      if (cursor_ + bytes > size_) cursor_ = 0;
      const std::byte* p = base_ + cursor_;
      cursor_ += bytes;
      return p;
    }
    std::byte* base_;
    size_t size_;
    DType dt_;
    OwnedWeights& owned_;
    size_t cursor_ = 0;
    std::vector<float> ones_;
  } placed(m->synthetic_memory_.get(), arena, opt.dtype, m->owned_weights_);
  spec = m->spec_;
  m->weights_ = Binder(m->spec_, f->names, placed).bind(spec);
  m->spec_ = spec;
  m->weight_bytes_ = count_weight_bytes(m->spec_, m->weights_);
  return m;
}

}  // namespace moe
