#!/usr/bin/env bash
# Re-make the bundled demo avatar (assets/demo/d6) from ../shared/data/video/d6.mp4.
# Usage: bash scripts/make_demo_avatar.sh [FIRST_MINUTES] [TOTAL_MINUTES]   (default 10 30: the shipped demo)
# Fine-tunes the shipped multi-person base (assets/base) for FIRST_MINUTES (the finetune
# schedule: single-frame L1, then the GAN; the run scored in docs/RESULTS.md), then resumes the
# same run up to TOTAL_MINUTES, which continues its GAN phase with a fresh learning-rate decay;
# then it is exported (int8, with the foreground mask) and given its 10-minute 512x512
# upsampler. Run it again after an interruption: every step resumes from the last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
first=${1:-10}
total=${2:-30}
lib=build/library
h2h=.venv/bin/h2h
state=$lib/d6/checkpoints/main/state.pt
minutes_done() { .venv/bin/python -c "import sys, torch; print(torch.load(sys.argv[1], weights_only=True)['elapsed'] / 60)" "$state"; }
[ -f "$lib/d6/avatar.json" ] || $h2h prepare ../shared/data/video/d6.mp4 --name d6 --library "$lib"
if [ ! -f "$state" ]; then
  $h2h train d6 --init base --max-minutes "$first" --library "$lib"
elif python3 -c "import sys; sys.exit(float(sys.argv[1]) >= float(sys.argv[2]))" "$(minutes_done)" "$first"; then
  $h2h train d6 --init base --max-minutes "$first" --library "$lib" --resume
fi
$h2h train d6 --init base --max-minutes "$total" --library "$lib" --resume
$h2h export d6 --run main --int8 --library "$lib"
$h2h upsampler d6 --video ../shared/data/video/d6.mp4 --minutes 10 --int8 --library "$lib"
$h2h package d6 --out assets/demo --overwrite --library "$lib"
