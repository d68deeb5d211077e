#!/usr/bin/env bash
# On a GPU machine, from the checkout's root, with gpu-pack/ from scripts/gpu-pack.sh: the CUDA tests,
# then the benchmarks BENCHMARKS.md lists for issue 7. Logs go to $OUT (the device tool's output folder,
# which returns at most 8 files) or gpu-results/: machine.txt, tests.log, bench.log and summary.txt.
# What to run: tests, bench, or all (default). Keeps going past a failure; exits non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"
case $what in tests | bench | all) ;; *) echo "usage: scripts/gpu-run.sh [tests|bench|all]" >&2; exit 2 ;; esac
out="${OUT:-$PWD/gpu-results}"
mkdir -p "$out"
# moe-bench falls back to the CPU when no GPU works, which for a 30B model would run for hours.
nvidia-smi -L >/dev/null 2>&1 || { echo "gpu-run: nvidia-smi sees no GPU here" >&2; exit 2; }
[[ -f gpu-pack/bin.tgz ]] || { echo "gpu-run: no gpu-pack/ here: run scripts/gpu-pack.sh and carry it" >&2; exit 2; }
pack=/tmp/moe-gpu-pack
rm -rf $pack && mkdir -p $pack && tar xzf gpu-pack/bin.tgz -C $pack || exit 2
ln -sfn "$PWD" /tmp/moe-src  # the test data path compiled into the pack
# The pack links libcudart/libcublas 13 dynamically: the toolkit's, wherever nvcc is.
if command -v nvcc >/dev/null; then
  export LD_LIBRARY_PATH="$(dirname "$(command -v nvcc)")/../lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}"
if ldd $pack/moe-bench | grep -q 'not found'; then  # else the pip wheels' copies (nvidia-cublas, -cuda-runtime)
  for d in $(python3 -c 'import glob, site; print(" ".join(glob.glob(site.getsitepackages()[0] + "/nvidia/*/lib")))' 2>/dev/null); do
    LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d"
  done
  export LD_LIBRARY_PATH
fi
if ldd $pack/moe-bench | grep 'not found'; then echo "gpu-run: libraries missing (above)" >&2; exit 2; fi
{ echo "pack built from $(cat $pack/commit) for $(cat $pack/arch)"; date -u; nvidia-smi; } >"$out/machine.txt" 2>&1
head -1 "$out/machine.txt"

failed=0
step() {  # step LOG NAME COMMAND...: runs it, its output appended to $out/LOG and shown
  local log="$out/$1" name="$2"
  shift 2
  echo "=== $name: $*" | tee -a "$log"
  local t0=$SECONDS
  "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  echo "=== $name: exit $rc, $((SECONDS - t0)) s" | tee -a "$log" "$out/summary.txt"
  [[ $rc == 0 ]] || failed=1
}

if [[ $what == tests || $what == all ]]; then
  for t in linear_test norm_test rope_test router_test experts_test attention_test attention_latent_test quantized_weights_test cuda_backend_test; do
    step tests.log "$t" "$pack/$t" --gtest_brief=1
  done
  # The backend again with plain launches (no programmatic dependent launch): the path older GPUs take.
  step tests.log cuda_backend_test_no_pdl env MOE_CUDA_PDL=0 "$pack/cuda_backend_test" --gtest_brief=1
  # And with the decode kernels' fused tails off (last_block.cuh): the path MOE_CUDA_FUSE=0 takes.
  step tests.log cuda_backend_test_no_fuse env MOE_CUDA_FUSE=0 "$pack/cuda_backend_test" --gtest_brief=1
  # And with prefill attention's WMMA kernel instead of the mma one (attention_prefill_mma.cuh).
  step tests.log cuda_backend_test_no_mma env MOE_CUDA_MMA_ATTENTION=0 "$pack/cuda_backend_test" --gtest_brief=1
fi
if [[ $what == bench || $what == all ]]; then
  qwen=(--synthetic resources/configs/qwen3-30b-a3b.json --device cuda)
  step bench.log cuda_prefill_bench "$pack/cuda_prefill_bench"
  step bench.log cuda_decode_bench "$pack/cuda_decode_bench"
  step bench.log cuda_decode_bench_no_pdl env MOE_CUDA_PDL=0 "$pack/cuda_decode_bench"
  step bench.log decode_4k_f32kv "$pack/moe-bench" "${qwen[@]}" --prompt-tokens 4096 --decode-tokens 256 --repeats 5 \
    --hook-levels off,routing,full
  step bench.log decode_4k_bf16kv "$pack/moe-bench" "${qwen[@]}" --prompt-tokens 4096 --decode-tokens 256 \
    --repeats 5 --kv-dtype bf16
  step bench.log decode_4k_bf16kv_no_pdl env MOE_CUDA_PDL=0 "$pack/moe-bench" "${qwen[@]}" --prompt-tokens 4096 \
    --decode-tokens 256 --repeats 5 --kv-dtype bf16
  step bench.log decode_4k_bf16kv_no_fuse env MOE_CUDA_FUSE=0 "$pack/moe-bench" "${qwen[@]}" --prompt-tokens 4096 \
    --decode-tokens 256 --repeats 5 --kv-dtype bf16
  step bench.log prefill_2k "$pack/moe-bench" "${qwen[@]}" --prompt-tokens 2048 --prefill-chunk 2048 \
    --decode-tokens 16 --repeats 5
  # Multi-head latent attention (attention_latent.cuh): DeepSeek-V2-Lite, BF16, 4k context.
  step bench.log deepseek_v2_lite_decode_4k "$pack/moe-bench" --synthetic resources/configs/deepseek-v2-lite.json \
    --device cuda --prompt-tokens 4096 --prefill-chunk 2048 --decode-tokens 128 --repeats 3 --kv-dtype bf16 \
    --hook-levels off,routing,full
  # GPT-OSS (sinks, sliding windows, router and expert biases): gpt-oss-20b, BF16, 4k context.
  step bench.log gpt_oss_20b_decode_4k "$pack/moe-bench" --synthetic resources/configs/gpt-oss-20b.json \
    --device cuda --prompt-tokens 4096 --prefill-chunk 2048 --decode-tokens 128 --repeats 3 --kv-dtype bf16 \
    --hook-levels off,routing,full
  step bench.log prefill_2k_no_mma env MOE_CUDA_MMA_ATTENTION=0 "$pack/moe-bench" "${qwen[@]}" --prompt-tokens 2048 \
    --prefill-chunk 2048 --decode-tokens 16 --repeats 5
fi
cat "$out/summary.txt"
exit $failed
