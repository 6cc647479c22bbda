"""Tracking a whole video: one fixed square crop, then landmarks and pupils per crop."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from tqdm import tqdm

from .avatar import AvatarError
from .geometry.conditioning import TrackedFace, track_face
from .geometry.crop import crop_frame, face_box, square_crop_box
from .geometry.face_model import FaceModel
from .geometry.tracker import MediaPipeTracker
from .video import VideoInfo, read_frames

BOX_SAMPLES = 60


def locate_crop(info: VideoInfo) -> tuple[int, int, int]:
    """The fixed crop box (x, y, side) from face boxes on ~BOX_SAMPLES evenly spaced frames."""
    total = info.frame_count
    step = max(1, total // BOX_SAMPLES) if total else 1
    boxes = []
    with MediaPipeTracker(video_mode=False) as tracker:
        frames = tqdm(read_frames(info.path), total=total or None, desc="locating face", unit="f", leave=False)
        for i, frame in enumerate(frames):
            if i % step == 0 and (marks := tracker.track(frame)) is not None:
                boxes.append(face_box(marks))
    if not boxes:
        raise AvatarError(f"{info.path}: no face found; use a clip where one face is clearly visible")
    return square_crop_box(np.stack(boxes), info.width, info.height)


def tracked_crops(
    info: VideoInfo, box: tuple[int, int, int], size: int, model: FaceModel, max_frames: int | None = None
) -> Iterator[tuple[np.ndarray, TrackedFace | None]]:
    """(crop, face or None) for each frame, tracked in video mode, with a progress bar."""
    total = min(info.frame_count, max_frames) if max_frames else info.frame_count
    with MediaPipeTracker(video_mode=True) as tracker:
        for frame in tqdm(read_frames(info.path, max_frames), total=total or None, desc="tracking", unit="f"):
            crop = crop_frame(frame, box, size)
            yield crop, track_face(tracker, crop, model)
