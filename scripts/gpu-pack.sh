#!/usr/bin/env bash
# Builds what a GPU session runs first, here where nvcc is but no GPU: the CUDA kernel and parity tests,
# cuda_prefill_bench, cuda_decode_bench and moe-bench, for one architecture (default sm_90: H100/H200),
# stripped, into gpu-pack/bin.tgz (git-ignored). The device tool carries gpu-pack/ with the checkout, and scripts/gpu-run.sh
# runs it there, so no device time goes to building:
#   scripts/gpu-pack.sh            # here
#   run: bash scripts/gpu-run.sh   # on the GPU machine, carry ["gpu-pack"]
set -euo pipefail
cd "$(dirname "$0")/.."
arch="${1:-90}"
# The tests read their data through a path compiled in. /tmp/moe-src points at the checkout, here and
# (made by gpu-run.sh) on the GPU machine, whose checkout lives elsewhere.
ln -sfn "$PWD" /tmp/moe-src
config="$(cmake -S /tmp/moe-src -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOE_BUILD_GUI=OFF \
  -DMOE_CUDA_EMULATOR=OFF -DMOE_CUDA_ARCHITECTURES="$arch")"
grep -q 'CUDA backend ON (emulated: OFF)' <<<"$config" || { echo "gpu-pack: CMake found no CUDA toolkit" >&2; exit 1; }
tests=(linear_test norm_test rope_test router_test experts_test attention_test attention_latent_test quantized_weights_test cuda_backend_test cuda_prefill_bench
  cuda_decode_bench)
cmake --build build-gpu -j "$(nproc)" --target "${tests[@]}" moe-bench
# Stripped and gzipped (about 14 MB for 43 MB of binaries): the carried tree has a 64 MiB limit.
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
for t in "${tests[@]}"; do strip -o "$stage/$t" "build-gpu/tests/$t"; done
strip -o "$stage/moe-bench" build-gpu/app/moe-bench
git rev-parse HEAD >"$stage/commit"
echo "sm_$arch" >"$stage/arch"
rm -rf gpu-pack
mkdir -p gpu-pack
tar czf gpu-pack/bin.tgz -C "$stage" .
du -sh gpu-pack/bin.tgz
