#!/usr/bin/env bash
# Re-make the bundled demo avatar (assets/demo/d6) from ../shared/data/video/d6.mp4.
# Usage: bash scripts/make_demo_avatar.sh [MINUTES]   (training time, default 45; resumable)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
minutes=${1:-45}
lib=build/library
h2h=.venv/bin/h2h
[ -f "$lib/d6/avatar.json" ] || $h2h prepare ../shared/data/video/d6.mp4 --name d6 --library "$lib"
resume=()
[ -f "$lib/d6/checkpoints/main/state.pt" ] && resume=(--resume)
$h2h train d6 --preset lite --max-minutes "$minutes" --library "$lib" "${resume[@]}"
$h2h export d6 --library "$lib"
$h2h package d6 --out assets/demo --overwrite --library "$lib"
