"""DenseFaceReg -> FOLDER/facereg.onnx (and an int8 model for CPUs), each checked against
PyTorch on real face crops before it is written."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..engines.base import EngineError
from ..engines.facereg_engine import FACEREG_INT8, FACEREG_ONNX, write_int8_record
from ..models.facereg_data import FaceSamples, to_input
from ..models.facereg_eval import load_facereg
from ..models.io_utils import atomic_write_bytes
from .onnx_export import CALIBRATION_FRAMES, onnx_bytes, spread_over

FP32_TOLERANCE = 1e-3  # crop-normalised units (1 = half the crop)
INT8_TOLERANCE = 0.01  # mean point error of the int8 model against fp32, same units


def check_crops(samples: FaceSamples, size: int, count: int) -> list[np.ndarray]:
    """(1, 3, S, S) inputs of `count` unaugmented crops spread over the samples."""
    picks = spread_over(np.arange(len(samples.images)), count)
    rng = np.random.default_rng(0)  # unaugmented crops draw nothing
    return [to_input(samples.example(int(i), rng, size, None, None)[0][None]).numpy() for i in picks]


def session(onnx: bytes):
    import onnxruntime as ort

    from ..engines.onnx_engine import session_options

    return ort.InferenceSession(onnx, session_options(), providers=["CPUExecutionProvider"])


def export_facereg(folder: Path, samples: FaceSamples, int8: bool = False) -> dict:
    """Write and check facereg.onnx and, with int8, facereg.int8.onnx; what was written and how close."""
    net, _ = load_facereg(folder)
    size = net.config.size
    crops = check_crops(samples, size, CALIBRATION_FRAMES)
    onnx = onnx_bytes(net, (torch.zeros(1, 3, size, size),), ["crop"], ["points"])
    fp32 = session(onnx)
    with torch.no_grad():
        expected = [net(torch.from_numpy(c)).numpy() for c in crops]
    error = max(float(np.abs(fp32.run(None, {"crop": c})[0] - e).max()) for c, e in zip(crops, expected))
    if error > FP32_TOLERANCE:
        raise EngineError(f"DenseFaceReg ONNX differs from PyTorch by {error:.2e} (> {FP32_TOLERANCE:g}); not saved")
    atomic_write_bytes(folder / FACEREG_ONNX, onnx)
    report = {"onnx": str(folder / FACEREG_ONNX), "max_abs_error": error}
    if int8:
        from .quantize import quantize_int8

        quantized = quantize_int8(onnx, [{"crop": c} for c in crops])
        int8_session = session(quantized)
        gap = float(np.mean([np.abs(int8_session.run(None, {"crop": c})[0] - e).mean() for c, e in zip(crops, expected)]))
        if gap > INT8_TOLERANCE:
            raise EngineError(f"DenseFaceReg int8 model is {gap:.4f} from fp32 (> {INT8_TOLERANCE:g}); not saved")
        atomic_write_bytes(folder / FACEREG_INT8, quantized)
        write_int8_record(folder, onnx, gap)
        report.update(int8=str(folder / FACEREG_INT8), int8_mean_error=gap)
    return report
