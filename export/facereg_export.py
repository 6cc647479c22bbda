"""DenseFaceReg -> FOLDER/facereg.onnx (and an int8 model for CPUs), each checked against
PyTorch on real face crops before it is written."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..engines.base import EngineError
from ..engines.cache import bytes_sha256
from ..engines.facereg_engine import FACEREG_ONNX, PART_FILES
from ..engines.onnx_check import check_facereg_onnx
from ..models.facereg_data import FaceSamples, to_input
from ..models.facereg_eval import load_facereg, mirror_averaged, part_points_from
from ..models.geometry.face_crop import PARTS
from ..models.networks.facereg import DenseFaceReg
from ..models.io_utils import atomic_write_bytes
from .onnx_export import CALIBRATION_FRAMES, onnx_bytes, spread_over

FACEREG_INT8 = "facereg.int8.onnx"  # for measuring only: the tracker runs fp32 (docs/RESULTS.md)
FACEREG_INT8_META = "facereg.int8.onnx.json"
FP32_TOLERANCE = 1e-3  # crop-normalised units (1 = half the crop)
INT8_TOLERANCE = 0.01  # mean point error of the int8 model against fp32, same units


def check_crops(samples: FaceSamples, net: DenseFaceReg, count: int, rows: np.ndarray | None) -> list[np.ndarray]:
    """(1, 3, H, W) inputs of `count` unaugmented crops spread over the samples, as the network
    reads them (FaceSamples.examples; `rows`: a part stage's point indices)."""
    picks = spread_over(np.arange(len(samples.images)), count)
    crops, _ = samples.examples(picks, np.random.default_rng(0), net.config, None, None, rows)  # unaugmented: draws nothing
    return [to_input(crop[None]).numpy() for crop in crops]


def batches(inputs: list[np.ndarray], batch: int) -> list[np.ndarray]:
    """The (1, 3, H, W) inputs in groups of `batch`, the last one filled up from the first inputs."""
    return [np.concatenate([inputs[(start + k) % len(inputs)] for k in range(batch)]) for start in range(0, len(inputs), batch)]


def session(onnx: bytes):
    import onnxruntime as ort

    from ..engines.onnx_engine import session_options

    return ort.InferenceSession(onnx, session_options(), providers=["CPUExecutionProvider"])


def export_facereg(folder: Path, samples: FaceSamples, int8: bool = False, mirror: bool = True) -> dict:
    """Write and check facereg.onnx (a part network: eyes.onnx or mouth.onnx and its point
    indices in eyes.json or mouth.json) and, with int8 (face networks), facereg.int8.onnx; what
    was written and how close. With `mirror` the face and mouth networks answer with the mean
    of their answers on the crop and on the crop mirrored, in one batch (MirrorAveraged)."""
    trained, meta = load_facereg(folder, part=None)
    part = trained.config.part
    rows = None if part == "face" else part_points_from(meta, part, str(folder))
    if rows is not None and int8:
        raise EngineError(f"the {part} stage is exported in fp32 only (int8 cost the eyes their correlation); leave out --int8")
    net = mirror_averaged(trained, rows) if mirror else trained
    batch = 1 if rows is None else PARTS[part].batch  # a part stage reads all its crops of a frame in one run
    crops = batches(check_crops(samples, trained, CALIBRATION_FRAMES, rows), batch)
    onnx = onnx_bytes(net, (torch.zeros(crops[0].shape),), ["crop"], ["points"])
    check_facereg_onnx(onnx, str(folder), net.config.points, net.config.aspect, batch)  # what the tracker will load
    fp32 = session(onnx)
    with torch.no_grad():
        expected = [net(torch.from_numpy(c)).numpy() for c in crops]
    error = max(float(np.abs(fp32.run(None, {"crop": c})[0] - e).max()) for c, e in zip(crops, expected))
    if error > FP32_TOLERANCE:
        raise EngineError(f"DenseFaceReg ONNX differs from PyTorch by {error:.2e} (> {FP32_TOLERANCE:g}); not saved")
    name = FACEREG_ONNX if rows is None else PART_FILES[part][0]
    atomic_write_bytes(folder / name, onnx)
    if rows is not None:
        made = {k: meta.get(k) for k in ("preset", "step", "train_minutes", "people")}
        atomic_write_bytes(folder / PART_FILES[part][1], json.dumps({PARTS[part].key: rows.tolist(), **made}, indent=1).encode())
    report = {"onnx": str(folder / name), "max_abs_error": error}
    if int8:
        from .quantize import quantize_int8

        quantized = quantize_int8(onnx, [{"crop": c} for c in crops])
        int8_session = session(quantized)
        gap = float(np.mean([np.abs(int8_session.run(None, {"crop": c})[0] - e).mean() for c, e in zip(crops, expected)]))
        if gap > INT8_TOLERANCE:
            raise EngineError(f"DenseFaceReg int8 model is {gap:.4f} from fp32 (> {INT8_TOLERANCE:g}); not saved")
        atomic_write_bytes(folder / FACEREG_INT8, quantized)
        record = {"parent_onnx_sha256": bytes_sha256(onnx), "mean_point_error": gap}
        atomic_write_bytes(folder / FACEREG_INT8_META, json.dumps(record, indent=2).encode())
        report.update(int8=str(folder / FACEREG_INT8), int8_mean_error=gap)
    return report
