#!/usr/bin/env bash
# Re-make the bundled demo avatar (assets/demo/d6) from ../shared/data/video/d6.mp4 with the
# lite schedule (single-frame L1 warm-up, then the Head2Head++ GAN; see docs/RESULTS.md).
# Usage: bash scripts/make_demo_avatar.sh [MINUTES]   (default 45)
# Resumable: run it again after an interruption; run it with a larger MINUTES to extend a
# finished run (its GAN phase continues with a fresh learning-rate decay).
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
$h2h export d6 --run main --int8 --library "$lib"
$h2h package d6 --out assets/demo --overwrite --library "$lib"
