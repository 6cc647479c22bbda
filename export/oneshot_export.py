"""A one-shot avatar's engines: the shipped person-generic generator with the photos' features
folded in as constants (DESIGN 12), exported as the same generator step every avatar has
(engines/generator.onnx, int8 beside it), checked against PyTorch on conditioning of the
bundled demo's recorded motion retargeted onto the photo's identity."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from ..engines.base import CORRESPONDENCE, EngineError
from ..engines.cache import bytes_sha256
from ..engines.onnx_engine import OnnxEngine
from ..engines.select import ONNX_FILE, ONNX_META
from ..models.avatar import Avatar
from ..models.dataset import to_tensor, unit_masks
from ..models.geometry.conditioning import ConditioningRenderer
from ..models.geometry.face_model import load_face_model
from ..models.geometry.fitting import Pose
from ..models.geometry.retarget import Retargeter, SourceFit, Subject
from ..models.io_utils import atomic_write_bytes
from ..models.library import BUNDLED
from ..models.networks.oneshot import BoundOneShot, OneShotGenerator
from ..models.oneshot_model import SHIPPED_ONESHOT, load_oneshot
from ..models.photo_prepare import PhotoSources, prepare_photos
from ..models.prepare import PrepareResult
from .onnx_export import CALIBRATION_FRAMES, FP32_TOLERANCE, OPSET, PARITY_FRAMES, onnx_bytes, parity, spread_over, write_int8

DRIVER = BUNDLED / "d6"  # recorded motion that drives the checks and the int8 calibration


@dataclass
class OneShotExport:
    onnx: Path
    max_abs_error: float
    int8: Path | None
    int8_psnr: float | None
    int8_problem: str | None = None  # why there is no int8 model (it failed its PSNR gate)


class BoundReference:
    """The bound PyTorch module behind the engine interface (the parity reference)."""

    sequential = False

    def __init__(self, module: BoundOneShot) -> None:
        self.module = module.eval()

    @torch.no_grad()
    def run(self, cond: np.ndarray, prev: np.ndarray, corr: np.ndarray | None = None) -> np.ndarray:
        return self.module(torch.from_numpy(cond), torch.from_numpy(prev), None if corr is None else torch.from_numpy(corr)).numpy()


def bind(generator: OneShotGenerator, sources: PhotoSources) -> BoundOneShot:
    """The generator with the photos' features (and masks) computed once and folded in."""
    conds = np.concatenate([sources.nmfc, sources.eyes], -1)
    return generator.bind(to_tensor(sources.images), to_tensor(conds), unit_masks(sources.masks))


def driven_conditioning(subject: Subject, count: int, size: int, photos: list[np.ndarray] | None = None,
                        seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """(NMFC, eyes, correspondence to `photos` or None) of `count` frames of the bundled demo's
    recorded poses and expressions, spread over its clip, retargeted onto `subject` (head
    mode), with random gazes (the package keeps no landmarks to measure its own)."""
    driver = Avatar.open_path(DRIVER)
    tracks = driver.tracks
    model = load_face_model()
    retargeter = Retargeter(model, subject, "head")
    renderer = ConditioningRenderer(model, size, brows=True, photos=photos)
    rng = np.random.default_rng(seed)
    try:
        frames = []
        for i in spread_over(np.flatnonzero(tracks["valid"]), count):
            pose = Pose(float(tracks["scale"][i]), tracks["rotation"][i], tracks["translation"][i])
            gaze = np.tile(rng.normal(scale=0.06, size=2), (2, 1)).astype(np.float32)  # both eyes look one way
            fit = SourceFit(pose, tracks["expression"][i], gaze)
            face = retargeter.apply(fit, driver.subject)
            frames.append((*renderer.render(face), renderer.render_correspondence(face)))
            retargeter.reset()
        return frames
    finally:
        renderer.close()


def export_oneshot(folder: Path, sources: PhotoSources, weights: Path = SHIPPED_ONESHOT, int8: bool = True) -> OneShotExport:
    """engines/generator.onnx (+ int8) of a one-shot avatar being made in `folder`."""
    generator, meta = load_oneshot(weights)
    size = generator.config.size
    if sources.images.shape[1] != size:
        raise EngineError(f"the one-shot generator works at {size} px, the photos were cropped to {sources.images.shape[1]} px")
    bound = bind(generator, sources)
    reference = BoundReference(bound)
    frames = driven_conditioning(sources.subject, CALIBRATION_FRAMES + PARITY_FRAMES, size, list(sources.meshes))
    example = (torch.zeros(1, 18, size, size), torch.zeros(1, 6, size, size), torch.zeros(1, 3 * len(sources.images), size, size))
    data = onnx_bytes(bound, example, ["cond", "prev", CORRESPONDENCE], ["frame"])
    candidate = OnnxEngine(data, ONNX_FILE, size, sequential=False, providers=["CPUExecutionProvider"])
    error = parity(reference, candidate, frames[:PARITY_FRAMES])
    if error > FP32_TOLERANCE:
        raise EngineError(f"ONNX export of the one-shot generator differs from PyTorch by {error:.2e} (> {FP32_TOLERANCE:g})")
    engines = folder / "engines"
    engines.mkdir(exist_ok=True)
    atomic_write_bytes(engines / ONNX_FILE, data)
    atomic_write_bytes(engines / ONNX_META, json.dumps({
        "run": "oneshot",
        "preset": meta.get("preset"),
        "step": meta.get("step"),
        "sequential": False,
        "sources": len(sources.images),
        "opset": OPSET,
        "max_abs_error_vs_torch": error,
        "frames_checked": PARITY_FRAMES,
        "onnx_sha256": bytes_sha256(data),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }, indent=2).encode())
    result = OneShotExport(engines / ONNX_FILE, error, None, None)
    if int8:
        try:
            result.int8, result.int8_psnr = write_int8(engines, data, size, False, frames[PARITY_FRAMES:], frames[:PARITY_FRAMES],
                                                       conv_only=True)
        except EngineError as exc:  # the avatar still works, in fp32
            result.int8_problem = str(exc)
    return result


def make_photo_avatar(photos: list[str | Path], library: Path, name: str, overwrite: bool = False,
                      weights: Path = SHIPPED_ONESHOT) -> tuple[PrepareResult, OneShotExport]:
    """`h2h prepare PHOTO.jpg ...`: the one-shot avatar NAME, engines included, in the library."""
    exported: list[OneShotExport] = []
    result = prepare_photos(photos, library, name, lambda folder, sources: exported.append(export_oneshot(folder, sources, weights)),
                            overwrite)
    return result, exported[0]
