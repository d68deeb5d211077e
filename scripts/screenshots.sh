#!/usr/bin/env bash
# The README's screenshots: the real window under Xvfb, on the bundled demo model, after one answer.
# Needs a build (./scripts/build.sh build) and xvfb (apt-get install xvfb).
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/screenshots
mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
shot() {
  local name="$1"; shift
  # A fresh settings folder per shot, so the default layout is what is shown.
  XDG_CONFIG_HOME="$tmp/config-$name" MOE_RESOURCES_DIR="$PWD/resources" \
    xvfb-run -a -s "-screen 0 1680x1050x24" ./build/app/moe-workbench --screenshot "$out/$name.png" \
    --session-dir "$tmp/session-$name" "$@"
  echo "$out/$name.png"
}
# Think mode, no budget: the model adds column by column and answers right; tokens coloured by expert.
shot workbench-thinking --colour-layer 0
# The same question with a thinking budget of 24: cut mid-thought (dark palette, thinking and memory views).
shot workbench-budget-cut --budget 24 --dark --raise thinking,memory-speed
