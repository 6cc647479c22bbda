#!/usr/bin/env bash
# Re-make the shipped person-generic one-shot generator (assets/oneshot) from ../shared/data's clips.
# Usage: bash scripts/make_oneshot.sh [L1_MINUTES] [L1_MORE_MINUTES] [GAN_MINUTES] [GAN_MORE_MINUTES] [N_SHOT_MINUTES]
#        (default 45 45 22 60 32)
# Trained on d6 d3 d18 d19; d9 and d0 are held out: they are the people the self-reenactment
# measurement in docs/RESULTS.md (h2h eval-oneshot --avatars d9 d0) is made on.
# Five stages, each started from the one before (--init) with a fresh cosine schedule: two of
# the L1 preset, then two of the gan preset (image and mouth discriminators), then one of the gan
# preset with two source frames per training pair (--sources 2: the N-shot attention learns on
# top of its area-fit prior). The shipped weights are this recipe, except that none of their stages
# saw greyscale pairs (added after them), and their first four
# stages ran with older code (the fourth: the learned flow residual also moved the face, no
# hole fill, no attention prior, a learned mask only), and the first three: a softmax
# colour match instead of the exact per-triangle correspondence, each side of a training pair
# with its own random affine (the background moved with the head), and, in the first stage, no
# keep_bias (the blend started at 50% instead of 95%).
# Each stage resumes from its last checkpoint, so run this again after an interruption.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
stages=("${1:-45}" "${2:-45}" "${3:-22}" "${4:-60}" "${5:-32}")
lib=work/lib
runs=work/oneshot
people=(d6 d3 d18 d19)
h2h=.venv/bin/h2h
for person in "${people[@]}"; do
  [ -f "$lib/$person/avatar.json" ] || $h2h prepare "../shared/data/video/$person.mp4" --name "$person" --library "$lib"
done
train() {  # OUT MINUTES PRESET [INIT] [SOURCES]: a run started from INIT, resumed when it has a checkpoint
  local out=$1 minutes=$2 preset=$3 init=${4:-} sources=${5:-1}
  local start=()
  if [ -f "$out/oneshot_state.pt" ]; then start=(--resume); elif [ -n "$init" ]; then start=(--init "$init"); fi
  $h2h train-oneshot --avatars "${people[@]}" --out "$out" --minutes "$minutes" --preset "$preset" --library "$lib" --sources "$sources" "${start[@]}"
}
train "$runs/os6" "${stages[0]}" small
train "$runs/os7" "${stages[1]}" small "$runs/os6"
train "$runs/os8" "${stages[2]}" gan "$runs/os7"
train "$runs/os9" "${stages[3]}" gan "$runs/os8"
train "$runs/os12" "${stages[4]}" gan "$runs/os9" 2
mkdir -p assets/oneshot
cp "$runs/os12/oneshot.safetensors" "$runs/os12/oneshot.json" assets/oneshot/
