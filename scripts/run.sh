#!/usr/bin/env bash
# Installs what is needed, builds, and opens the workbench window. The first start opens the bundled
# demo model (resources/demo/moe); later starts restore the last session (chat and trace).
# Without a display (no DISPLAY or WAYLAND_DISPLAY) it runs the command-line tool on the demo model
# instead: the model thinks through an addition, answers without thinking, and shows its expert load.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh build
if [ -x build/app/moe-workbench ] && { [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ]; }; then
  exec ./build/app/moe-workbench "$@"
fi
echo "note: no display found; running the command-line demo (xvfb-run ./build/app/moe-workbench works headless)" >&2
./build/app/moe-inspect info
echo
./build/app/moe-inspect generate --chat "What is 4821 + 739?" --mode think --greedy
echo
./build/app/moe-inspect generate --chat "What is 4821 + 739?" --mode no-think --greedy
echo
./build/app/moe-inspect trace --chat "What is 4821 + 739?" --greedy --out build/demo.trace.safetensors > /dev/null
./build/app/moe-inspect stats build/demo.trace.safetensors | head -8
