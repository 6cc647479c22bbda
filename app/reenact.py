"""Offline reenactment: drive an avatar from a source video (or its own test frames)."""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..engines.base import predicts_mask
from ..engines.stepper import GeneratorStepper
from .background import Background, Compositor, no_mask_problem
from .pipeline import photo_meshes
from ..engines import load as load_engine
from ..models.avatar import Avatar, AvatarError
from ..models.geometry.conditioning import conditioning_overlay
from ..models.geometry.conditioning import ConditioningRenderer, TrackedFace, overlay
from ..models.geometry.face_model import load_face_model
from ..models.geometry.retarget import Retargeted, Retargeter, SourceCalibration
from ..models.source import locate_crop, tracked_crops
from ..models.video import VideoWriter, probe

Frame = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]  # source crop, NMFC, eyes, correspondence


@dataclass
class ReenactResult:
    out: Path
    frames: int
    no_face: int
    seconds: float

    def summary(self) -> str:
        held = f" ({self.no_face} without a face held the last pose)" if self.no_face else ""
        return f"wrote {self.out}: {self.frames} frames{held}, {self.seconds:.1f} s"


@dataclass
class DrivenFrame:
    """A source crop, its tracked face (None when lost), the retargeted target face and the
    conditioning rendered from it (the last one held while the face is lost), with the
    correspondence to the photos when there are any (see ConditioningRenderer)."""

    crop: np.ndarray
    face: TrackedFace | None
    retargeted: Retargeted | None
    nmfc: np.ndarray
    eyes: np.ndarray
    corr: np.ndarray | None = None


def driven(avatar: Avatar, source: Path, mode: str, max_frames: int | None,
           photos: list[np.ndarray] | None = None, tracker: str = "mediapipe") -> tuple[float, Iterator[DrivenFrame]]:
    """(fps, iterator of DrivenFrame): the source tracked by the `tracker` back-end
    (whole-video calibration) and retargeted onto the avatar; `photos`: see FaceStage."""
    info = probe(source)
    model = load_face_model()
    size = avatar.resolution
    crops, faces = zip(*tracked_crops(info, locate_crop(info), size, model, max_frames, tracker))
    found = [f.landmarks for f in faces if f is not None]
    if not found:
        raise AvatarError(f"{info.path}: no face found in the source; use a clip where one face is visible")
    calibration = SourceCalibration.from_frames(model, np.stack(found))
    retargeter = Retargeter(model, avatar.subject, mode, target_poses=avatar.poses(avatar.split_indices("train")))

    def frames() -> Iterator[DrivenFrame]:
        renderer = ConditioningRenderer(model, size, brows=avatar.brows, photos=photos)
        last = (np.zeros((size, size, 3), np.uint8),) * 2 + (None,)
        try:
            for crop, face in zip(crops, faces):
                retargeted = retargeter.retarget(face.landmarks, face.pupils, calibration.subject) if face is not None else None
                if retargeted is not None:
                    last = (*renderer.render(retargeted), renderer.render_correspondence(retargeted))
                yield DrivenFrame(crop, face, retargeted, *last)
        finally:
            renderer.close()

    return info.fps, frames()


def driven_frames(avatar: Avatar, source: Path, mode: str, max_frames: int | None, counter: list[int],
                  photos: list[np.ndarray] | None = None, tracker: str = "mediapipe") -> tuple[float, Iterator[Frame]]:
    """(fps, iterator of source crop + retargeted conditioning); frames without a face hold
    the last conditioning and are counted in `counter`."""
    fps, frames = driven(avatar, source, mode, max_frames, photos, tracker)

    def crops_and_conditioning() -> Iterator[Frame]:
        for frame in frames:
            counter[0] += frame.face is None
            yield frame.crop, frame.nmfc, frame.eyes, frame.corr

    return fps, crops_and_conditioning()


def self_frames(avatar: Avatar, max_frames: int | None) -> Iterator[Frame]:
    """The avatar's held-out test frames with their own conditioning."""
    avatar.require_video("--mode self")
    for i in avatar.split_indices("test")[:max_frames]:
        yield avatar.read_image("frame", int(i)), avatar.read_image("nmfc", int(i)), avatar.read_image("eyes", int(i)), None


def target_reference(avatar: Avatar) -> np.ndarray:
    """A picture of the target to draw the conditioning over: its first training frame, or
    the thumbnail for a live-only package."""
    if not avatar.live_only:
        return avatar.read_image("frame", int(avatar.split_indices("train")[0]))
    thumbnail = avatar.files.read_image("thumbnail.png")
    return cv2.resize(thumbnail, (avatar.resolution, avatar.resolution), interpolation=cv2.INTER_CUBIC)


def reenact(
    library: Path,
    avatar_name: str,
    source: str | Path | None,
    out: str | Path,
    mode: str = "head",
    max_frames: int | None = None,
    conditioning_only: bool = False,
    side_by_side: bool = False,
    run: str | None = None,
    background: Background | None = None,
    tracker: str = "mediapipe",
) -> ReenactResult:
    """Write the reenactment video; see `h2h reenact --help` for the layouts."""
    started = time.perf_counter()
    avatar = Avatar.open(library, avatar_name)
    out = Path(out)
    if not out.parent.is_dir():
        raise AvatarError(f"{out.parent}: output folder does not exist; create it or choose another --out")
    if mode == "self" and conditioning_only:
        raise AvatarError("--mode self needs the generator; drop --conditioning-only")
    if mode != "self" and source is None:
        raise AvatarError(f"--mode {mode} needs --source VIDEO")
    stepper, photos = None, None
    compose = Compositor(background)
    if not conditioning_only:
        engine = load_engine(avatar, "auto", run)
        photos = photo_meshes(avatar, engine, load_face_model())
        stepper = GeneratorStepper(engine.run, avatar.resolution, engine.sequential)
        if compose.background.replaces and not predicts_mask(engine):
            raise AvatarError(f"{no_mask_problem(avatar.name)}; or drop --background")
    no_face = [0]
    if mode == "self":
        fps, frames = avatar.fps, self_frames(avatar, max_frames)
    else:
        fps, frames = driven_frames(avatar, Path(source), mode, max_frames, no_face, photos, tracker)
    size = avatar.resolution
    reference = target_reference(avatar) if conditioning_only else None
    panels = 4 if conditioning_only else (3 if side_by_side else 1)
    count = 0
    with VideoWriter(out, fps, (size * panels, size)) as writer:
        for crop, nmfc, eyes, corr in frames:
            if stepper is None:
                row = [crop, nmfc, eyes, overlay(reference, nmfc, eyes)]
            else:
                generated = compose(stepper(nmfc, eyes, corr), stepper.mask)
                row = [crop, conditioning_overlay(nmfc, eyes), generated] if side_by_side else [generated]
            writer.write(np.concatenate(row, 1))
            count += 1
    return ReenactResult(out, count, no_face[0], time.perf_counter() - started)
