#!/usr/bin/env bash
# Configures and builds into build/ (or $1), Release with debug info. Extra arguments go to cmake.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-build}"
shift || true
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
jobs="$(nproc)"
cmake --build "$dir" -j "$jobs"
