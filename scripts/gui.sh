#!/usr/bin/env bash
# Set up (first time only), then open napari with the reconstruction dock and a sample scan.
# Extra arguments go to `napari-ptycho gui` (e.g. --sample bragg, --screenshot out.png).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
  echo "[gui] no display found: running under a virtual X server (xvfb-run)" >&2
  exec xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/napari-ptycho gui "$@"
fi
exec .venv/bin/napari-ptycho gui "$@"
