"""The run's learned upsampler -> engines/upsampler.onnx (and int8), checked against PyTorch
on the avatar's own frames, written only once checked."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from ..engines.base import EngineError
from ..engines.cache import bytes_sha256
from ..engines.select import INT8_MIN_PSNR
from ..engines.stepper import image_to_input
from ..engines.upsampler_engine import UPSAMPLER_INT8, UPSAMPLER_INT8_META, UPSAMPLER_ONNX, UPSAMPLER_ONNX_META, OnnxUpsampler
from ..models.avatar import Avatar
from ..models.checkpoint import load_upsampler
from ..models.io_utils import atomic_write_bytes
from .onnx_export import CALIBRATION_FRAMES, FP32_TOLERANCE, OPSET, PARITY_FRAMES, onnx_bytes, remove_stale_int8, spread_over


@dataclass
class UpsamplerExport:
    onnx: Path
    max_abs_error: float
    int8: Path | None = None
    int8_psnr: float | None = None


def frame_inputs(avatar: Avatar, split: str, count: int) -> list[np.ndarray]:
    """(1, 3, S, S) inputs from `count` of the split's frames, spread over it."""
    return [image_to_input(avatar.read_image("frame", int(i)))[None] for i in spread_over(avatar.split_indices(split), count)]


def export_upsampler(avatar: Avatar, run: str = "main", int8: bool = False) -> UpsamplerExport:
    """Write and check engines/upsampler.onnx (fail above FP32_TOLERANCE against PyTorch) and,
    with int8, engines/upsampler.int8.onnx (refused below INT8_MIN_PSNR)."""
    from .quantize import output_psnr, quantize_int8

    avatar.require_video("exporting the upsampler")
    net, meta = load_upsampler(avatar.files, run)
    size = avatar.resolution
    data = onnx_bytes(net, (torch.zeros(1, 3, size, size),), ["frame"], ["hires"])
    fp32 = OnnxUpsampler(data, UPSAMPLER_ONNX, size, providers=["CPUExecutionProvider"])
    checks = frame_inputs(avatar, "test", PARITY_FRAMES)
    with torch.inference_mode():
        expected = [net(torch.from_numpy(x)).numpy() for x in checks]
    error = max(float(np.abs(fp32.run(x) - e).max()) for x, e in zip(checks, expected))
    if error > FP32_TOLERANCE:
        raise EngineError(f"upsampler ONNX export differs from PyTorch by {error:.2e} (> {FP32_TOLERANCE:g}); the previous one is kept")
    engines = avatar.files.path("engines")
    engines.mkdir(exist_ok=True)
    atomic_write_bytes(engines / UPSAMPLER_ONNX, data)
    info = {"run": run, "preset": meta.get("preset"), "step": meta.get("step"), "opset": OPSET,
            "max_abs_error_vs_torch": error, "onnx_sha256": bytes_sha256(data),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    atomic_write_bytes(engines / UPSAMPLER_ONNX_META, json.dumps(info, indent=2).encode())
    result = UpsamplerExport(engines / UPSAMPLER_ONNX, error)
    if int8:
        quantized = quantize_int8(data, [{"frame": x} for x in frame_inputs(avatar, "train", CALIBRATION_FRAMES)])
        candidate = OnnxUpsampler(quantized, UPSAMPLER_INT8, size, fp16=False, providers=["CPUExecutionProvider"])
        psnr = min(output_psnr(candidate.run(x), e) for x, e in zip(checks, expected))
        if psnr < INT8_MIN_PSNR:
            raise EngineError(f"int8 upsampler is too far from fp32 ({psnr:.1f} dB < {INT8_MIN_PSNR:g} dB PSNR); not saved")
        atomic_write_bytes(engines / UPSAMPLER_INT8, quantized)
        int8_info = {"from": UPSAMPLER_ONNX, "parent_onnx_sha256": bytes_sha256(data), "psnr_vs_fp32_db": psnr}
        atomic_write_bytes(engines / UPSAMPLER_INT8_META, json.dumps(int8_info, indent=2).encode())
        result.int8, result.int8_psnr = engines / UPSAMPLER_INT8, psnr
    else:
        remove_stale_int8(avatar, UPSAMPLER_INT8, UPSAMPLER_INT8_META)
    return result
