#!/usr/bin/env bash
# Re-make the bundled demo avatar (assets/demo/d6) from ../shared/data/video/d6.mp4:
# L1 single-frame training first, then the Head2Head++ GAN started from it (both resumable).
# Usage: bash scripts/make_demo_avatar.sh [L1_MINUTES] [GAN_MINUTES]   (default 45 22)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
l1_minutes=${1:-45}
gan_minutes=${2:-22}
lib=build/library
h2h=.venv/bin/h2h
[ -f "$lib/d6/avatar.json" ] || $h2h prepare ../shared/data/video/d6.mp4 --name d6 --library "$lib"
resume() { [ -f "$lib/d6/checkpoints/$1/state.pt" ] && echo --resume || true; }
$h2h train d6 --preset lite --ablation l1-single --max-minutes "$l1_minutes" --library "$lib" $(resume l1-single)
if [ -f "$lib/d6/checkpoints/gan-warm/state.pt" ]; then
  $h2h train d6 --preset lite --run gan-warm --max-minutes "$gan_minutes" --library "$lib" --resume
else
  $h2h train d6 --preset lite --run gan-warm --max-minutes "$gan_minutes" --library "$lib" \
    --init "$lib/d6/checkpoints/l1-single/state.pt"
fi
$h2h export d6 --run gan-warm --int8 --library "$lib"
$h2h package d6 --out assets/demo --overwrite --library "$lib"
