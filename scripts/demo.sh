#!/usr/bin/env bash
# Set up (if needed) and run the main job: prepare an avatar from the bundled sample clip
# and write its preview (the live app takes this place once it exists).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/h2h prepare assets/sample_driver.mp4 --name sample --overwrite --preview "$@"
