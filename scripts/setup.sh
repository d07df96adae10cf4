#!/usr/bin/env bash
# Idempotent set-up: system libraries for a drawing (Xvfb-capable) napari, then .venv at the
# repository root with napari-ptycho and its test tools. Sourced by gui.sh and test.sh;
# safe to run again (it skips what is already done).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

APT_PACKAGES=(xvfb xauth libgl1 libgl1-mesa-dri libegl1 libglib2.0-0 libfontconfig1
  libdbus-1-3 libxkbcommon-x11-0 libx11-xcb1 libxcb-cursor0 libxcb-icccm4 libxcb-image0
  libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xfixes0
  libxcb-xinerama0 libxcb-xkb1)

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  if command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing system packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
  else
    echo "[setup] please install these system packages: ${missing[*]}" >&2
  fi
fi

PYTHON="${PYTHON:-python3}"
# torch is pinned by a constraint on every pip call, or pip drifts to a multi-GB CUDA build.
# Users with a GPU can set TORCH_SPEC (e.g. TORCH_SPEC=torch==2.13.0+cu126) before set-up.
CONSTRAINTS="$ROOT/.venv/constraints.txt"
STAMP="$ROOT/.venv/.napari-ptycho-installed"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x .venv/bin/python ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
echo "${TORCH_SPEC:-torch==2.13.0}" > "$CONSTRAINTS"
echo "[setup] installing napari-ptycho into .venv (about 3 minutes the first time)"
.venv/bin/python -m pip install -q --upgrade pip -c "$CONSTRAINTS" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q -c "$CONSTRAINTS" "${TORCH_SPEC:-torch==2.13.0}" -e ".[testing]" \
  2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import napari_ptycho, torch, napari" \
  || { echo "[setup] installation failed" >&2; exit 1; }
echo "$want" > "$STAMP"
