#pragma once
// The trace file: one safetensors file that Python reads in one line
//   from safetensors.numpy import load_file; t = load_file("run.trace.safetensors")
// (DESIGN.md, "Traces and files users keep"). Written atomically (temp file, fsync, rename).
//
// Arrays (N tokens, M MoE layers, K = top_k, E experts, L layers, H heads, S steps, F forced stops,
// R attention rows). Always present:
//   tokens, positions, step, segment [N] I32; phases, forced [N] U8 (phases: moe::Phase 0..4;
//   segment -1 = before any segment); has_routing, has_router_probs, has_attention, has_hidden_norm
//   [N] U8 (1 = the row is real); moe_layers [M] I32 (layer index of each MoE ordinal);
//   step.first_token, step.tokens [S] I32; step.time_s, step.end_s [S] F64; has_layer_time [S] U8;
//   forced_stops [F, 3] I32 (position, thinking_tokens, budget).
// Present only when some row has them (absent = no row has them):
//   routing.ids [N, M, K] I32 (-1 = empty slot), routing.weights [N, M, K] F32,
//   routing.entropy, routing.top1_margin [N, M] F32; routing.shared_gate [N, M] F32;
//   router.probs [N, M, E] F32; attn.entropy, attn.max, attn.topk_mass, attn.first_mass [N, L, H] F32;
//   hidden.norm [N, L] F32; layer.time_s [S, L] F64;
//   attn_rows.index [R, 4] I32 (step, layer, head, position), attn_rows.offsets [R + 1] I64,
//   attn_rows.weights [sum of lengths] F32 (row r is weights[offsets[r]:offsets[r+1]], position + 1 long).
// Metadata (strings): format "moe-workbench-trace", version "1", trace (the Trace's metadata_json),
// segments (a JSON array of the segments' settings objects), n_layers, n_heads, n_experts, top_k,
// attention_topk (decimal integers).
//
// load_trace checks everything a reader relies on (format and version, every array's presence, dtype
// and shape against N/M/K/E/L/H/S, values in range, steps and attention-row offsets consistent) and
// throws EngineError naming the file and the field: a truncated, corrupted or foreign file gives a
// clear error, never a crash or a Trace that breaks a measure later. Arrays it does not know are
// ignored, so later versions can add some without breaking older readers.
#include <filesystem>

#include "inspect/trace.h"
#include "inspect/trace_store.h"

namespace moe::inspect {

inline constexpr const char* kTraceFormat = "moe-workbench-trace";
inline constexpr const char* kTraceVersion = "1";

// Throws EngineError(path, field, ...) when the Trace's columns disagree with its shape, or on I/O
// failure.
void save_trace(const Trace& trace, const std::filesystem::path& path);
// Saves what the snapshot holds, detail that was spilled to disk included.
void save_trace(const TraceSnapshot& snapshot, const std::filesystem::path& path);

Trace load_trace(const std::filesystem::path& path);

// The per-token routing table as CSV, one row per token and MoE layer (one row per token when the
// model has no MoE layer): row, token, position, phase (name), step, segment, forced, layer, entropy,
// top1_margin, expert_0..expert_{K-1}, weight_0..weight_{K-1}. Routing cells are empty for tokens
// without routing and for empty slots. Written atomically; throws EngineError on I/O failure.
void write_trace_tokens_csv(const Trace& trace, const std::filesystem::path& path);

}  // namespace moe::inspect
