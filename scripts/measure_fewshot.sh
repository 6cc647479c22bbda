#!/usr/bin/env bash
# The fine-tuning measurement of docs/RESULTS.md ("A new avatar from the multi-person base"):
# d9 (held out of the base's pretraining) trained four ways on the same train split, each
# scored with h2h eval on its held-out test split.
# Usage: bash scripts/measure_fewshot.sh BASE [RUNS...]
#   BASE: a base made by scripts/make_base.sh (a name in work/bases, or base for assets/base)
#   RUNS: any of ft10 scratch10 ft10-f100 scratch10-f100 scratch45 (default: all)
# Every run resumes after an interruption; run one job at a time (2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:?usage: measure_fewshot.sh BASE [RUNS...]}
shift
runs=("${@:-ft10 scratch10 ft10-f100 scratch10-f100 scratch45}")
read -r -a runs <<< "${runs[*]}"
lib=work/lib
h2h=.venv/bin/h2h
[ -f "$lib/d9/avatar.json" ] || $h2h prepare ../shared/data/video/d9.mp4 --name d9 --library "$lib"
train() {  # RUN ARGS...: train (or resume) one run
  local run=$1; shift
  local resume=()
  [ -f "$lib/d9/checkpoints/$run/state.pt" ] && resume=(--resume)
  $h2h train d9 --run "$run" --library "$lib" --bases work/bases "$@" "${resume[@]}"
}
for run in "${runs[@]}"; do
  case $run in
    ft10) train ft10 --init "$base" --max-minutes 10 ;;
    scratch10) train scratch10 --init none --preset lite --max-minutes 10 ;;
    ft10-f100) train ft10-f100 --init "$base" --frames 100 --max-minutes 10 ;;
    scratch10-f100) train scratch10-f100 --init none --preset lite --frames 100 --max-minutes 10 ;;
    scratch45) train scratch45 --init none --preset lite --max-minutes 45 ;;
    *) echo "unknown run $run" >&2; exit 2 ;;
  esac
done
args=()
for run in "${runs[@]}"; do args+=(--run "$run"); done
$h2h eval d9 --library "$lib" "${args[@]}" --json "work/fewshot_${base}.json"
