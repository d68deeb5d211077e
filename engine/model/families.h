#pragma once
// The family adapters the registry knows (one family_*.cpp each).
#include <vector>

#include "engine/common/error.h"
#include "engine/model/family.h"

namespace moe {

FamilyAdapter qwen3_moe_family();
FamilyAdapter qwen3_family();
FamilyAdapter qwen2_moe_family();
FamilyAdapter mixtral_family();
FamilyAdapter olmoe_family();
FamilyAdapter llama_family();
FamilyAdapter glm4_moe_family();
FamilyAdapter deepseek_v2_family();
FamilyAdapter deepseek_v3_family();
FamilyAdapter minimax_m2_family();
FamilyAdapter ernie4_5_moe_family();
FamilyAdapter gpt_oss_family();

// DeepSeek's shared expert names (the plural mlp.shared_experts, no gate), which GLM-4.5 and ERNIE-4.5 share.
void name_shared_experts(TensorNaming& names);
// Mixtral's expert names (block_sparse_moe, w1/w3/w2, no shared expert), which MiniMax-M2 shares.
void name_mixtral_experts(TensorNaming& names);

// Qwen2-MoE and Qwen3-MoE choose MoE layers with decoder_sparse_step and mlp_only_layers.
std::vector<bool> qwen_moe_layers(const JsonFields& config, int n_layers, int n_experts);

}  // namespace moe
