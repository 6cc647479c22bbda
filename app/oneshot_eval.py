"""`h2h eval-oneshot`: the one-shot generator's self-reenactment on prepared clips of people it
never saw. Sources: the clip's first frame (1-shot) or frames spread over its first two
thirds (N-shot); drivers: its last third (the test split), each frame's own conditioning.
Baselines: the unchanged source photo, and the source warped by the tracked mesh's motion
alone (no learned generator)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from scipy.interpolate import griddata

from ..export.oneshot_export import BoundReference
from ..models.avatar import Avatar
from ..models.dataset import model_mesh, to_tensor, unit_masks
from ..models.geometry.face_model import load_face_model
from ..models.geometry.nmfc import NMFCRenderer, correspondence
from ..models.networks.oneshot import OneShotGenerator
from ..models.oneshot_model import load_oneshot
from ..engines.stepper import conditioning_input, output_to_image
from .evaluate import score, sheet_frames, write_sheet

UNCHANGED = "unchanged photo"
MESH_WARP = "mesh warp"  # the model mesh the generator is given
POINTS_WARP = "tracked-points warp"  # MediaPipe's raw points, which the generator never sees


def source_indices(avatar: Avatar, shots: int) -> np.ndarray:
    """The first valid frame, then frames spread evenly over the rest of the train split."""
    train = avatar.split_indices("train")
    return train[np.linspace(0, len(train) - 1, shots).round().astype(int)] if shots > 1 else train[:1]


def bound_to(generator: OneShotGenerator, avatar: Avatar, indices: np.ndarray) -> BoundReference:
    images = np.stack([avatar.read_image("frame", int(i)) for i in indices])
    conds = np.stack([np.concatenate([avatar.read_image("nmfc", int(i)), avatar.read_image("eyes", int(i))], -1) for i in indices])
    masks = np.stack([avatar.read_mask(int(i)) for i in indices])
    return BoundReference(generator.bind(to_tensor(images), to_tensor(conds), unit_masks(masks)))


def generated(reference: BoundReference, avatar: Avatar, sources: np.ndarray, indices: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(frame, mask) for each driver frame's own conditioning and correspondence to the source
    frames' meshes, as the live path gives them."""
    size = avatar.resolution
    prev = np.zeros((1, 6, size, size), np.float32)
    cond = np.zeros((1, 18, size, size), np.float32)
    model = load_face_model()
    photos = [model_mesh(avatar, model, int(s)) for s in sources]
    renderer = NMFCRenderer(model, size)
    try:
        for i in indices:
            cond[0, 12:] = conditioning_input(avatar.read_image("nmfc", int(i)), avatar.read_image("eyes", int(i)))
            out = reference.run(cond, prev, correspondence(renderer, model_mesh(avatar, model, int(i)), photos))[0]
            yield output_to_image(out[:3]), output_to_image(out[3:])[..., 0]
    finally:
        renderer.close()


def mesh_warp(source: np.ndarray, source_points: np.ndarray, driver_points: np.ndarray) -> np.ndarray:
    """The source image moved by the tracked points' motion: a backward map interpolated
    linearly over the driver's points (nearest point's motion outside their hull)."""
    size = source.shape[0]
    grid = np.stack(np.meshgrid(np.arange(size), np.arange(size)), -1).reshape(-1, 2).astype(np.float32)
    motion = source_points - driver_points
    inside = griddata(driver_points, motion, grid, method="linear")
    outside = griddata(driver_points, motion, grid, method="nearest")
    motion = np.where(np.isnan(inside), outside, inside).reshape(size, size, 2).astype(np.float32)
    maps = grid.reshape(size, size, 2) + motion
    return cv2.remap(source, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def warped_frames(avatar: Avatar, source: int, indices: np.ndarray, tracked: bool) -> Iterator[tuple[np.ndarray, None]]:
    """The source frame warped by the motion of the model mesh (or of the tracked points)."""
    model = load_face_model()
    points = (lambda i: avatar.tracks["landmarks"][i, :, :2]) if tracked else (lambda i: model_mesh(avatar, model, i)[:, :2])
    image = avatar.read_image("frame", source)
    for i in indices:
        yield mesh_warp(image, points(source), points(int(i))), None


def evaluate_oneshot(avatar: Avatar, weights: Path, shots: list[int], max_frames: int | None = None,
                     sheet: Path | None = None) -> dict[str, dict]:
    """{method: metrics} on the avatar's test split; `sheet`: a PNG of a few frames per method."""
    avatar.require_video("one-shot evaluation")
    generator, meta = load_oneshot(weights)
    test = avatar.split_indices("test")[:max_frames]
    first = int(source_indices(avatar, 1)[0])
    shown = sheet_frames(test)
    columns: dict[str, dict[int, np.ndarray | None]] = {"source": {i: avatar.read_image("frame", first) for i in shown}}
    results = {}
    columns[UNCHANGED] = dict.fromkeys(shown)
    results[UNCHANGED] = score(avatar, lambda: ((avatar.read_image("frame", first), None) for _ in test), test, UNCHANGED, columns[UNCHANGED])
    for name, tracked in ((MESH_WARP, False), (POINTS_WARP, True)):
        columns[name] = dict.fromkeys(shown)
        results[name] = score(avatar, lambda: warped_frames(avatar, first, test, tracked), test, name, columns[name])
    for k in shots:
        label = f"{k}-shot ({meta.get('step')} steps)"
        sources = source_indices(avatar, k)
        reference = bound_to(generator, avatar, sources)
        columns[f"{k}-shot"] = dict.fromkeys(shown)
        results[label] = score(avatar, lambda: generated(reference, avatar, sources, test), test, label, columns[f"{k}-shot"])
    if sheet is not None:
        columns["real"] = {i: avatar.read_image("frame", i) for i in shown}
        write_sheet(sheet, columns, f"{avatar.name}: one-shot self-reenactment of held-out frames (source: frame {first})")
    return results
