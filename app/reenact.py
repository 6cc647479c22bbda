"""Offline reenactment: drive an avatar from a source video and write an mp4."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..models.avatar import Avatar, AvatarError
from ..models.geometry.conditioning import ConditioningRenderer, overlay
from ..models.geometry.face_model import load_face_model
from ..models.geometry.retarget import Retargeter, SourceCalibration
from ..models.source import locate_crop, tracked_crops
from ..models.video import VideoWriter, probe


@dataclass
class ReenactResult:
    out: Path
    frames: int
    no_face: int
    seconds: float

    def summary(self) -> str:
        return (
            f"wrote {self.out}: {self.frames} frames ({self.no_face} without a face held the last pose), "
            f"{self.seconds:.1f} s"
        )


def reenact(
    library: Path,
    avatar_name: str,
    source: str | Path,
    out: str | Path,
    mode: str = "head",
    max_frames: int | None = None,
) -> ReenactResult:
    """Conditioning-only reenactment: source crop | NMFC | eyes | NMFC over the target."""
    started = time.perf_counter()
    avatar = Avatar.open(library, avatar_name)
    info = probe(source)
    out = Path(out)
    if not out.parent.is_dir():
        raise AvatarError(f"{out.parent}: output folder does not exist; create it or choose another --out")
    model = load_face_model()
    size = avatar.resolution
    crops, faces = zip(*tracked_crops(info, locate_crop(info), size, model, max_frames))
    found = [f.landmarks for f in faces if f is not None]
    if not found:
        raise AvatarError(f"{info.path}: no face found in the source; use a clip where one face is visible")
    calibration = SourceCalibration.from_frames(model, np.stack(found))
    train = avatar.split_indices("train")
    retargeter = Retargeter(model, avatar.subject, mode, target_poses=avatar.poses(train))
    reference = avatar.read_image("frame", int(train[0]))
    renderer = ConditioningRenderer(model, size)
    last = (np.zeros((size, size, 3), np.uint8),) * 2
    try:
        with VideoWriter(out, info.fps, (size * 4, size)) as writer:
            for crop, face in zip(crops, faces):
                if face is not None:
                    last = renderer.render(retargeter.retarget(face.landmarks, face.pupils, calibration.subject))
                nmfc, eyes = last
                writer.write(np.concatenate([crop, nmfc, eyes, overlay(reference, nmfc, eyes)], 1))
    finally:
        renderer.close()
    no_face = sum(f is None for f in faces)
    return ReenactResult(out, len(crops), no_face, time.perf_counter() - started)
