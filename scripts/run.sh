#!/usr/bin/env bash
# Installs what is needed, builds, and runs the workbench's engine on a checkpoint this repository ships.
# Until the window (issue 6) and the trained demo model (issue 3) exist, this runs `moe-inspect` on the
# tiny random Qwen3-MoE checkpoint the tests use: it shows the engine working, not sensible text.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh build
model=tests/data/models/qwen3_moe
./build/app/moe-inspect info "$model"
echo
./build/app/moe-inspect generate "$model" --chat "What is 12 + 30?" --max-tokens 24 --greedy
