#!/usr/bin/env bash
# Re-make the shipped DenseFaceReg tracker (assets/facereg) from ../shared/data's clips.
# Usage: bash scripts/make_facereg.sh [MINUTES]   (default 25)
# Distilled from MediaPipe's tracks of d6, d3, d18 and d0; d9 and d19 are held out: they are
# the people the measurement in docs/RESULTS.md (h2h eval-facereg --avatars d9 d19) is made on.
# One 25-minute run of this recipe scored 0.8% of the inter-ocular distance apart from the next
# (RESULTS.md); the shipped weights are one such run.
# The training resumes from its last checkpoint, so run this again after an interruption.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
minutes=${1:-25}
lib=work/lib
out=work/facereg
h2h=.venv/bin/h2h
people=(d6 d3 d18 d0)
for person in "${people[@]}" d9 d19; do
  [ -f "$lib/$person/avatar.json" ] || $h2h prepare "../shared/data/video/$person.mp4" --name "$person" --library "$lib"
done
start=()
[ -f "$out/facereg_state.pt" ] && start=(--resume)
$h2h train-facereg --avatars "${people[@]}" --out "$out" --minutes "$minutes" --library "$lib" "${start[@]}"
$h2h eval-facereg "$out" --avatars d9 d19 --library "$lib"
$h2h export-facereg "$out" --avatars d6 d3 --library "$lib"
mkdir -p assets/facereg
cp "$out/facereg.onnx" "$out/facereg.json" assets/facereg/
