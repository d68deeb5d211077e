#!/usr/bin/env bash
# Installs what is needed, builds, and runs every test: the full suite, then the engine and inspect
# tests again under AddressSanitizer + UndefinedBehaviorSanitizer (the loaders must never crash).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh build
(cd build && QT_QPA_PLATFORM=offscreen ctest --output-on-failure -j "$(nproc)")
./scripts/build.sh build-asan -DMOE_SANITIZE=ON -DMOE_BUILD_GUI=OFF -DMOE_ENABLE_CUDA=OFF -DMOE_CUDA_EMULATOR=ON
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j "$(nproc)")
