"""Measure what each speed lever buys for the generator step in ONNX Runtime on this CPU.

    python scripts/bench_levers.py --avatar d6 [--library DIR] [--json OUT]

Session levers (threads, graph optimisation level, int8 static quantisation) run on the
avatar's trained, exported generator with real conditioning; architecture levers (norm,
upsampling, depthwise convs, channels, stem) on randomly initialised variants of `lite`.
Prints medians in ms and each lever's ratio to the shipped setting, measured in one run.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort

from h2h.engines.torch_engine import TorchEngine
from h2h.export.onnx_export import ONNX_FILE, conditioning_frames, export_onnx, recorded_steps
from h2h.export.quantize import output_psnr, quantize_int8
from h2h.models.avatar import Avatar
from h2h.models.library import resolve_library
from h2h.models.networks import SequentialGenerator, generator_config

RUNS = 40


def real_inputs(avatar: Avatar, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(cond, prev) pairs the generator sees on the avatar's test frames."""
    engine = TorchEngine(avatar.files, "main", size=avatar.resolution)
    return [(feeds["cond"], feeds["prev"]) for feeds, _ in recorded_steps(engine, conditioning_frames(avatar, count))]


def session(model: bytes, threads: int = 2, level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.graph_optimization_level = level
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def median_ms(sess: ort.InferenceSession, inputs: list[tuple[np.ndarray, np.ndarray]]) -> float:
    names = [i.name for i in sess.get_inputs()]
    for cond, prev in inputs[:3]:
        sess.run(None, dict(zip(names, (cond, prev))))
    times = []
    for k in range(RUNS):
        cond, prev = inputs[k % len(inputs)]
        t0 = time.perf_counter()
        sess.run(None, dict(zip(names, (cond, prev))))
        times.append((time.perf_counter() - t0) * 1e3)
    return round(float(np.median(times)), 2)


def session_levers(avatar: Avatar) -> dict:
    onnx = (avatar.path / "engines" / ONNX_FILE).read_bytes()
    inputs = real_inputs(avatar, 24)
    levels = ort.GraphOptimizationLevel
    out = {
        "shipped (2 threads, ORT_ENABLE_ALL)": median_ms(session(onnx), inputs),
        "1 thread": median_ms(session(onnx, 1), inputs),
        "ORT_DISABLE_ALL": median_ms(session(onnx, 2, levels.ORT_DISABLE_ALL), inputs),
        "ORT_ENABLE_BASIC": median_ms(session(onnx, 2, levels.ORT_ENABLE_BASIC), inputs),
        "ORT_ENABLE_EXTENDED": median_ms(session(onnx, 2, levels.ORT_ENABLE_EXTENDED), inputs),
    }
    q = quantize_int8(onnx, [{"cond": c, "prev": p} for c, p in inputs[:16]])
    fp32, int8 = session(onnx), session(q)
    out["int8 static QDQ (per-channel)"] = median_ms(int8, inputs)
    names = [i.name for i in fp32.get_inputs()]
    cond, prev = inputs[-1]
    out["int8 PSNR vs fp32 output (dB)"] = round(output_psnr(fp32.run(None, dict(zip(names, (cond, prev))))[0], int8.run(None, dict(zip(names, (cond, prev))))[0]), 2)
    return out


def architecture_levers() -> dict:
    base = generator_config("lite")
    variants = {
        "lite (shipped)": base,
        "InstanceNorm": replace(base, norm="instance"),
        "transposed-conv upsampling": replace(base, upsample="transpose", up_kernel=3),
        "depthwise residual blocks": replace(base, depthwise=True),
        "96 trunk channels": replace(base, max_channels=96),
        "192 trunk channels": replace(base, ngf=96, max_channels=192),
        "conv7 stem at full resolution (ngf 16)": replace(base, stem="conv7", ngf=16, n_down=3, head_kernel=7),
    }
    cond = np.random.default_rng(0).uniform(-1, 1, (1, 18, 256, 256)).astype(np.float32)
    prev = np.zeros((1, 6, 256, 256), np.float32)
    out = {}
    for name, config in variants.items():
        try:
            generator = SequentialGenerator(config).eval()
        except ValueError as exc:
            out[name] = f"not buildable: {exc}"
            continue
        params = sum(p.numel() for p in generator.parameters())
        out[name] = {"ms": median_ms(session(export_onnx(generator)), [(cond, prev)]), "params_m": round(params / 1e6, 2)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--avatar", required=True)
    parser.add_argument("--library")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    avatar = Avatar.open(resolve_library(args.library), args.avatar)
    report = {"session": session_levers(avatar), "architecture": architecture_levers()}
    text = json.dumps(report, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
