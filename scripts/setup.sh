#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian machine: system packages, a venv, the pinned project.
# Called by `make demo` and `make test`; safe to run again (it skips what is already there).
set -euo pipefail
cd "$(dirname "$0")/.."

# libusb: pyrealsense2 fails to import without it; tcmalloc: ~3x faster torch training on CPU;
# EGL + Mesa: MuJoCo's headless renderer.
apt_packages=(libusb-1.0-0 libtcmalloc-minimal4 libegl1 libgl1-mesa-dri libegl-mesa0)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3}"
stamp=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
  echo "[setup] creating .venv and installing the pinned project (about a minute)"
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  # torch==2.13.0 is pinned in pyproject: the CPU build; a loose pin would pull a CUDA build.
  # compat mode: a path entry to this folder, so new modules need no re-install
  .venv/bin/pip install -q -e ".[dev,ros,sweep,data]" --config-settings editable_mode=compat
  rm -f .venv/.installed-*
  touch "$stamp"
fi
