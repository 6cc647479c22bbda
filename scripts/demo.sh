#!/usr/bin/env bash
# Set up (if needed) and run the main job: the live app on the bundled demo avatar.
# With no webcam it drives from the bundled sample clip. With no display, or H2H_HEADLESS=1,
# it runs the same pipeline headless for 300 frames and prints the frame rate.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -n "${H2H_HEADLESS:-}" ] || { [ "$(uname)" = Linux ] && [ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; }; then
  echo "no display (or H2H_HEADLESS set): running the live pipeline headless for 300 frames" >&2
  exec .venv/bin/h2h live --headless --frames 300 "$@"
fi
exec .venv/bin/h2h live --start "$@"
