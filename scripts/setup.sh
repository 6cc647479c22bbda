#!/usr/bin/env bash
# Create .venv (Python 3.11) with the project and its test tools; a no-op when up to date.
#   bash scripts/setup.sh              CPU: onnxruntime (the `cpu` extra)
#   H2H_GPU=1 bash scripts/setup.sh    NVIDIA: torch for CUDA 13 from PyTorch's index, then
#                                      onnxruntime-gpu and TensorRT 10 for CUDA 13 (the `gpu` extra)
# The mode is remembered (H2H_GPU=0 switches back). Exactly one ONNX Runtime package ends up
# installed: switching modes removes the other.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
TORCH=torch==2.13.0
# the mode sticks: demo.sh and test.sh call this script without H2H_GPU and keep a GPU setup
mode_file=.venv/.h2h-mode
case "${H2H_GPU:-}" in
  1) mode=gpu ;;
  0) mode=cpu ;;
  *) mode=$(cat "$mode_file" 2>/dev/null || echo cpu) ;;
esac
stamp=.venv/.h2h-installed
want=$( (cat pyproject.toml scripts/setup.sh; echo "mode=$mode") | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "setting up .venv (first run takes a few minutes)..." >&2
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip "$@"; }
pip install -q --upgrade pip
if [ "$mode" = gpu ]; then
  # PyTorch publishes CUDA builds on its own index; cu130 matches onnxruntime-gpu 1.27+ (CUDA 13).
  # The local version pins the CUDA build (a plain ==2.13.0 is satisfied by an installed CPU build)
  pip install -q "$TORCH+cu130" --index-url https://download.pytorch.org/whl/cu130
  pip uninstall -q -y onnxruntime 2>/dev/null || true
  pip install -q -e ".[gpu,test]"
else
  # torch first and pinned, so nothing pulls a newer one. Which build this is depends on the
  # index: on our development machines a local CPU wheel; from PyPI on Linux x86_64, a CUDA
  # build (it runs on the CPU too). For a small CPU-only build elsewhere, install
  # "$TORCH" from https://download.pytorch.org/whl/cpu into .venv before running this.
  pip install -q "$TORCH"
  pip uninstall -q -y onnxruntime-gpu 2>/dev/null || true
  pip install -q -e ".[cpu,test]"
fi
echo "$mode" > "$mode_file"
echo "$want" > "$stamp"
