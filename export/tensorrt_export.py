"""ONNX -> TensorRT plans for this GPU in this machine's cache, each checked against ONNX
Runtime: a generator (engines/generator.onnx) and the DenseFaceReg networks. Every verdict is
recorded beside the plan: live uses only plans that passed, and a rejected build is not
retried unless asked (--rebuild-trt)."""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..engines.base import EngineError, correspondence_sources
from ..engines.cache import engine_path, read_record, record_path, stale_engines, write_record
from ..engines.facereg_engine import FACEREG_KIND, FaceRegEngine, facereg_networks, read_facereg
from ..engines.onnx_engine import OnnxEngine
from ..engines.select import ONNX_FILE, read_onnx
from ..engines.stepper import image_to_input
from ..engines.tensorrt_build import build_engine, buildable_precision
from ..engines.tensorrt_engine import FaceRegPlan, TensorRTEngine, current_key, tensorrt_missing
from ..models.avatar import Avatar
from .onnx_export import PARITY_FRAMES, conditioning_frames, parity

log = logging.getLogger(__name__)
TOLERANCE = {"fp16": 0.05, "fp32": 1e-3}  # outputs are in [-1, 1]; fp16 drifts by a few 1e-3
FACEREG_TOLERANCE = 1e-3  # largest point difference, crop-normalised (1 = half the crop): 0.06 px of a 128-pixel face crop
FACEREG_CHECK_FRAMES = 6


@dataclass
class TensorRTResult:
    plan: Path
    precision: str
    max_abs_error: float
    removed_stale: list[str]
    notes: list[str]


def export_tensorrt(avatar: Avatar, fp16: bool = True, sequential: bool = True, rebuild: bool = False) -> TensorRTResult:
    """Build (or reuse) the checked plan keyed by GPU, compute capability, TensorRT, ONNX hash
    and precision; fp16 that drifts is retried once with normalisation layers in fp32."""
    reason = tensorrt_missing()
    if reason:
        raise EngineError(reason)
    onnx = read_onnx(avatar)
    if onnx is None:
        raise EngineError(f"avatar '{avatar.name}' has no {ONNX_FILE}; run h2h export {avatar.name} first")
    label = str(avatar.path / "engines" / ONNX_FILE)
    precision, note = buildable_precision(fp16)

    def checker() -> Callable[[Path, str], float]:
        reference = OnnxEngine(onnx, label, avatar.resolution, sequential, providers=["CPUExecutionProvider"])
        frames = conditioning_frames(avatar, PARITY_FRAMES, correspondence_sources(reference))
        return lambda plan, precision: parity(reference, TensorRTEngine(plan, precision, sequential), frames)

    return checked_build(onnx, label, precision, "generator", checker, TOLERANCE[precision], rebuild, [note] if note else [])


def checked_build(onnx: bytes, label: str, precision: str, kind: str, checker: Callable[[], Callable[[Path, str], float]],
                  tolerance: float, rebuild: bool, notes: list[str], tf32: bool = True) -> TensorRTResult:
    """This machine's plan of `onnx`, reused when it passed before, else built and kept only if
    `check(plan, precision)` (its largest difference from ONNX Runtime; `checker()` makes it, once,
    before anything in the cache is touched) is within `tolerance`; a rejected build is
    remembered. Plans of the same ONNX built for another GPU or TensorRT go."""
    key = current_key(onnx, precision, kind)
    plan, record = engine_path(key), read_record(engine_path(key))
    if record and record.get("status") == "rejected" and not rebuild:
        also = ", or --fp32" if precision == "fp16" else ""
        raise EngineError(f"the {precision} TensorRT build of {label} was rejected before ({record.get('detail')}); "
                          f"pass --rebuild-trt to try again{also}")
    removed = []
    for stale in stale_engines(key):
        stale.unlink(missing_ok=True)
        removed.append(stale.name)
    if record and record.get("status") == "passed" and plan.is_file() and not rebuild:
        return TensorRTResult(plan, precision, float(record["max_abs_error"]), removed, notes)
    check = checker()  # a broken reference fails here, before a passed plan is thrown away
    record_path(plan).unlink(missing_ok=True)  # from here until a verdict, the plan counts as unchecked
    try:
        return _build_and_check(onnx, label, plan, precision, check, tolerance, removed, notes, tf32)
    except BaseException:
        if read_record(plan) is None:
            plan.unlink(missing_ok=True)  # an interrupted or failed build never leaves a plan behind
        raise


def _build_and_check(onnx, label, plan, precision, check, tolerance, removed, notes, tf32) -> TensorRTResult:
    attempts = [False, True] if precision == "fp16" else [False]  # fp16 that drifts: again with fp32 normalisation
    for fp32_norm in attempts:
        build_engine(onnx, label, plan, precision, fp32_norm, tf32=tf32)
        error = check(plan, precision)
        if error <= tolerance:  # NaN is not
            write_record(plan, "passed", max_abs_error=error, fp32_normalisation=fp32_norm, tf32=tf32, onnx=label)
            if fp32_norm:
                notes.append("normalisation layers run in fp32 (fp16 drifted)")
            return TensorRTResult(plan, precision, error, removed, notes)
        log.info("TensorRT %s engine differs from ONNX Runtime by %.3g%s", precision, error,
                 "; retrying with normalisation in fp32" if not fp32_norm and len(attempts) > 1 else "")
    plan.unlink(missing_ok=True)  # never leave a failed engine for live to pick up
    detail = f"max abs error {error:.3g} > {tolerance:g} vs ONNX Runtime"
    write_record(plan, "rejected", detail=detail, max_abs_error=error)
    raise EngineError(f"TensorRT {precision} engine of {label} rejected: {detail}; live keeps using ONNX Runtime")


def check_crops(clip: Path, height: int, width: int, count: int) -> list[np.ndarray]:
    """`count` uint8 crops (H, W, 3) of a clip's frames spread over it, the frame's centre cut to
    the crop's shape: real image statistics to compare two runtimes on."""
    capture = cv2.VideoCapture(str(clip))
    try:
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        crops = []
        for index in np.linspace(0, max(total - 1, 0), count).astype(int):
            capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
            ok, frame = capture.read()
            if not ok:
                continue
            h, w = frame.shape[:2]
            cut_w = min(w, h * width // height)
            cut_h = cut_w * height // width
            top, left = (h - cut_h) // 2, (w - cut_w) // 2
            crops.append(cv2.resize(frame[top:top + cut_h, left:left + cut_w, ::-1], (width, height), interpolation=cv2.INTER_AREA))
    finally:
        capture.release()
    if not crops:
        raise EngineError(f"{clip}: no frames to check the TensorRT engines on")
    return crops


def facereg_parity(reference: FaceRegEngine, plan: FaceRegPlan, crops: list[np.ndarray]) -> float:
    """Largest point difference between ONNX Runtime and the plan, crop-normalised, over the crops
    in the network's batches."""
    inputs = image_to_input(np.stack(crops))
    batches = [inputs[(np.arange(reference.batch) + start) % len(inputs)] for start in range(0, len(inputs), reference.batch)]
    return float(np.max([np.abs(plan.run(np.ascontiguousarray(b)) - reference.answer(np.ascontiguousarray(b))).max() for b in batches]))


def export_facereg_tensorrt(folder: Path | None, clip: Path, rebuild: bool = False) -> list[TensorRTResult | EngineError]:
    """Checked fp32 plans of the DenseFaceReg networks in `folder` (the shipped ones by default)
    for this GPU, compared with ONNX Runtime on crops of `clip`; each network's result, or why
    it has no plan (the others are built all the same: the tracker runs each network on its plan
    or on ONNX Runtime). fp32 without TF32: the networks take ~1 ms on a CPU already, and
    reduced precision cost the eyes their correlation."""
    reason = tensorrt_missing()
    if reason:
        raise EngineError(reason)
    results: list[TensorRTResult | EngineError] = []
    for network in facereg_networks(read_facereg(folder)):

        def checker(network=network) -> Callable[[Path, str], float]:
            reference = network.engine(providers=["CPUExecutionProvider"])
            crops = check_crops(clip, reference.size, reference.width, FACEREG_CHECK_FRAMES)
            return lambda plan, precision: facereg_parity(reference, FaceRegPlan(plan, precision), crops)

        try:
            results.append(checked_build(network.onnx, network.label, "fp32", FACEREG_KIND, checker, FACEREG_TOLERANCE, rebuild, [],
                                         tf32=False))
        except EngineError as exc:
            results.append(exc)
    return results
