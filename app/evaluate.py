"""`h2h eval`: self-reenactment on the held-out test split against a nearest-frame baseline."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

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


def score(avatar: Avatar, frames: Callable[[], Iterator[tuple[np.ndarray, np.ndarray | None]]], indices: np.ndarray,
          label: str, kept: dict[int, np.ndarray] | None = None) -> dict:
    """Metrics of generated frames (and predicted masks, against prepare's segmentation) on the
    real test frames; the generated frames whose index is a key of `kept` are stored there."""
    model = load_face_model()
    neutral = avatar.subject.neutral
    mouth = avatar.tracks["mouth"]
    rows = []
    with MediaPipeTracker(video_mode=False) as tracker:
        for i, (generated, predicted) in zip(indices, tqdm(frames(), total=len(indices), desc=label, unit="f", leave=False)):
            real = avatar.read_image("frame", int(i))
            if kept is not None and int(i) in kept:
                kept[int(i)] = generated.copy()
            mask = avatar.read_image("nmfc", int(i)).any(-1)
            measured = (measure_face(tracker, generated, model, neutral), measure_face(tracker, real, model, neutral))
            rows.append(frame_metrics(generated, real, mask, mouth[i], measured))
            if predicted is not None and avatar.has_masks():
                rows[-1]["mask_iou"] = mask_iou(predicted, avatar.read_mask(int(i)))
    return summarise(rows)


def sheet_frames(test: np.ndarray, count: int = 3) -> list[int]:
    """Test frames for a sheet: spread evenly over the split, away from its ends."""
    return [int(test[round(len(test) * (k + 0.5) / count)]) for k in range(count)] if len(test) else []


def evaluate(avatar: Avatar, runs: list[str], max_frames: int | None = None, sheet: Path | None = None) -> dict[str, dict]:
    """{run or baseline: metrics} on the test split; with `sheet`, a PNG of a few test frames as
    each run made them, the baseline's and the real ones."""
    test = avatar.split_indices("test")[:max_frames]
    train = avatar.split_indices("train")
    shown = sheet_frames(test)
    columns: dict[str, dict[int, np.ndarray]] = {}
    results = {}
    for run in runs:
        engine = TorchEngine(avatar.files, run, size=avatar.resolution)
        label = f"{run} ({engine.meta.get('preset')}, {engine.meta.get('train_minutes')} min, {engine.meta.get('step')} steps)"
        columns[run] = dict.fromkeys(shown)
        results[label] = score(avatar, lambda: self_reenactment(avatar, engine, test), test, run, columns[run])
    keys = lambda idx: np.stack([search_key(conditioning_overlay(avatar.read_image("nmfc", int(i)), avatar.read_image("eyes", int(i)))) for i in idx])
    nearest = train[nearest_frames(keys(train), keys(test))]
    columns["nearest frame"] = dict.fromkeys(shown)
    results[BASELINE] = score(avatar, lambda: ((avatar.read_image("frame", int(i)), None) for i in nearest), test, "baseline",
                              columns["nearest frame"])
    if sheet is not None:
        columns["real"] = {i: avatar.read_image("frame", i) for i in shown}
        write_sheet(sheet, columns, f"{avatar.name}: held-out test frames")
    return results


def write_sheet(out: Path, columns: dict[str, dict[int, np.ndarray | None]], title: str) -> Path:
    """One labelled column per source, one row per frame (a frame a source did not make stays black)."""
    import cv2

    frames = list(next(iter(columns.values())))
    if not frames:
        raise ValueError("no test frames to show")
    size = next(im.shape[0] for column in columns.values() for im in column.values() if im is not None)
    header = np.zeros((28, size * len(columns), 3), np.uint8)
    for c, name in enumerate(columns):
        cv2.putText(header, name, (c * size + 6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    rows = []
    for i in frames:
        row = [column.get(i) if column.get(i) is not None else np.zeros((size, size, 3), np.uint8) for column in columns.values()]
        row = np.concatenate(row, 1)
        cv2.putText(row, f"frame {i}", (6, size - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1, cv2.LINE_AA)
        rows.append(row)
    caption = np.zeros((24, header.shape[1], 3), np.uint8)
    cv2.putText(caption, title, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (200, 200, 200), 1, cv2.LINE_AA)
    if not cv2.imwrite(str(out), cv2.cvtColor(np.concatenate([caption, header, *rows], 0), cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {out}")
    return out


def format_table(results: dict[str, dict]) -> str:
    keys = ("masked_apd", "apd", "mouth_apd", "psnr", "aeld", "ard", "aed", "sharpness", "coarse_sharpness", "mask_iou", "face_found")
    width = max(len(k) for k in results) + 2
    columns = [max(11, len(k) + 2) for k in keys]
    lines = ["".ljust(width) + "".join(k.rjust(c) for k, c in zip(keys, columns))]
    for name, metrics in results.items():
        lines.append(name.ljust(width) + "".join(f"{metrics[k]:{c}.3f}" for k, c in zip(keys, columns)))
    return "\n".join(lines)


def available_runs(avatar: Avatar) -> list[str]:
    files = avatar.files
    return [run for run in files.names("checkpoints") if files.is_file(f"checkpoints/{run}/generator.safetensors")]

