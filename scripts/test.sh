#!/usr/bin/env bash
# Set up (first time only), then run the whole test suite headless (pytest-xvfb starts Xvfb).
# Extra arguments go to pytest (e.g. -k engines, -x).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
unset QT_QPA_PLATFORM  # offscreen breaks vispy drawing; pytest-xvfb provides a display
exec .venv/bin/python -m pytest -q "$@"
