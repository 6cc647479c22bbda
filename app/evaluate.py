"""`h2h eval`: self-reenactment on the held-out test split against a nearest-frame baseline."""
from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
from tqdm import tqdm

from ..engines.base import Engine
from ..engines.stepper import GeneratorStepper
from ..engines.torch_engine import TorchEngine
from ..models.avatar import Avatar
from ..models.geometry.conditioning import conditioning_overlay
from ..models.geometry.face_model import load_face_model
from ..models.geometry.tracker import MediaPipeTracker
from ..models.metrics import frame_metrics, mask_iou, measure_face, nearest_frames, search_key, summarise

BASELINE = "nearest-frame baseline"


def self_reenactment(avatar: Avatar, engine: Engine, indices: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """(generated frame, its predicted foreground mask or None) for the given frames' own
    conditioning, sequentially; the window restarts where the valid frames are not consecutive."""
    stepper = GeneratorStepper(engine.run, avatar.resolution, engine.sequential)
    previous = None
    for i in indices:
        if previous is not None and i != previous + 1:
            stepper.reset()
        previous = i
        frame = stepper(avatar.read_image("nmfc", int(i)), avatar.read_image("eyes", int(i)))
        yield frame, stepper.mask


def score(avatar: Avatar, frames: Callable[[], Iterator[tuple[np.ndarray, np.ndarray | None]]], indices: np.ndarray, label: str) -> dict:
    """Metrics of generated frames (and predicted masks, against prepare's segmentation) on the
    real test frames."""
    model = load_face_model()
    neutral = avatar.subject.neutral
    mouth = avatar.tracks["mouth"]
    rows = []
    with MediaPipeTracker(video_mode=False) as tracker:
        for i, (generated, predicted) in zip(indices, tqdm(frames(), total=len(indices), desc=label, unit="f", leave=False)):
            real = avatar.read_image("frame", int(i))
            mask = avatar.read_image("nmfc", int(i)).any(-1)
            measured = (measure_face(tracker, generated, model, neutral), measure_face(tracker, real, model, neutral))
            rows.append(frame_metrics(generated, real, mask, mouth[i], measured))
            if predicted is not None and avatar.has_masks():
                rows[-1]["mask_iou"] = mask_iou(predicted, avatar.read_mask(int(i)))
    return summarise(rows)


def evaluate(avatar: Avatar, runs: list[str], max_frames: int | None = None) -> dict[str, dict]:
    """{run or baseline: metrics} on the test split."""
    test = avatar.split_indices("test")[:max_frames]
    train = avatar.split_indices("train")
    results = {}
    for run in runs:
        engine = TorchEngine(avatar.files, run, size=avatar.resolution)
        label = f"{run} ({engine.meta.get('preset')}, {engine.meta.get('train_minutes')} min, {engine.meta.get('step')} steps)"
        results[label] = score(avatar, lambda: self_reenactment(avatar, engine, test), test, run)
    keys = lambda idx: np.stack([search_key(conditioning_overlay(avatar.read_image("nmfc", int(i)), avatar.read_image("eyes", int(i)))) for i in idx])
    nearest = train[nearest_frames(keys(train), keys(test))]
    results[BASELINE] = score(avatar, lambda: ((avatar.read_image("frame", int(i)), None) for i in nearest), test, "baseline")
    return results


def format_table(results: dict[str, dict]) -> str:
    keys = ("masked_apd", "apd", "mouth_apd", "psnr", "aeld", "ard", "aed", "sharpness", "mask_iou", "face_found")
    width = max(len(k) for k in results) + 2
    lines = ["".ljust(width) + "".join(k.rjust(11) for k in keys)]
    for name, metrics in results.items():
        lines.append(name.ljust(width) + "".join(f"{metrics[k]:11.3f}" for k in keys))
    return "\n".join(lines)


def available_runs(avatar: Avatar) -> list[str]:
    files = avatar.files
    return [run for run in files.names("checkpoints") if files.is_file(f"checkpoints/{run}/generator.safetensors")]

