#!/usr/bin/env bash
# Installs what is needed, builds, and runs the engine on the bundled demo model (resources/demo/moe).
# Until the window (issue 6) exists, this runs the command-line tool `moe-inspect`: the model thinks
# through an addition, then answers the same question without thinking, then shows its expert load.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh build
./build/app/moe-inspect info
echo
./build/app/moe-inspect generate --chat "What is 4821 + 739?" --mode think --greedy
echo
./build/app/moe-inspect generate --chat "What is 4821 + 739?" --mode no-think --greedy
echo
./build/app/moe-inspect trace --chat "What is 4821 + 739?" --greedy --out build/demo.trace.safetensors > /dev/null
./build/app/moe-inspect stats build/demo.trace.safetensors | head -8
