#!/usr/bin/env bash
# Installs what MoE Workbench needs to build and test on Debian/Ubuntu (Debian packages only).
# The CUDA toolkit is optional and not installed here: when nvcc is present the CUDA backend is built too.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
packages=(
  build-essential cmake ninja-build pkg-config git
  nlohmann-json3-dev libpcre2-dev libutf8proc-dev libsentencepiece-dev libgtest-dev
  qt6-base-dev qt6-svg-dev libqcustomplot-dev libgl-dev
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
