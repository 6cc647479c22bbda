"""Tracking a whole video: one fixed square crop, then landmarks and pupils per crop."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .avatar import Avatar, AvatarError
from .geometry.conditioning import TrackedFace, track_face
from .geometry.crop import crop_frame, face_box, square_crop_box
from .geometry.face_model import FaceModel
from .geometry.tracker import MediaPipeTracker, create_tracker
from .metrics import psnr
from .video import VideoInfo, probe, read_frames

BOX_SAMPLES = 60
SAME_VIDEO_PSNR = 30.0  # a re-crop of the prepared video matches its stored frame at least this well


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
    info: VideoInfo, box: tuple[int, int, int], size: int, model: FaceModel, max_frames: int | None = None,
    tracker: str = "mediapipe",
) -> Iterator[tuple[np.ndarray, TrackedFace | None]]:
    """(crop, face or None) for each frame, tracked in video mode by the `tracker` back-end, with a progress bar."""
    total = min(info.frame_count, max_frames) if max_frames else info.frame_count
    with create_tracker(tracker, video_mode=True) as points:
        for frame in tqdm(read_frames(info.path, max_frames), total=total or None, desc="tracking", unit="f"):
            crop = crop_frame(frame, box, size)
            yield crop, track_face(points, crop, model)


def hires_crops(avatar: Avatar, video: str | Path, indices: np.ndarray, size: int) -> np.ndarray:
    """(len(indices), size, size, 3) uint8: the avatar's frames re-cropped from the video it was
    prepared from at `size` (the same crop box), checked against the stored frames."""
    info = probe(video)
    schema = avatar.schema
    x, y, side = schema.crop_box
    if info.frame_count != schema.counts.frames or x + side > info.width or y + side > info.height:
        raise AvatarError(
            f"{info.path}: not the video avatar '{avatar.name}' was prepared from ({schema.source_video}, "
            f"{schema.counts.frames} frames); give that video"
        )
    wanted = {int(i): n for n, i in enumerate(indices)}
    crops = np.zeros((len(indices), size, size, 3), np.uint8)
    frames = tqdm(read_frames(info.path, max(wanted) + 1), total=max(wanted) + 1, desc="full-resolution crops", unit="f", leave=False)
    for i, frame in enumerate(frames):
        if i in wanted:
            crops[wanted[i]] = crop_frame(frame, schema.crop_box, size)
    checked = int(indices[len(indices) // 2])
    again = crop_frame(crops[wanted[checked]], (0, 0, size), avatar.resolution)
    if psnr(again, avatar.read_image("frame", checked)) < SAME_VIDEO_PSNR:
        raise AvatarError(f"{info.path}: its frames differ from avatar '{avatar.name}''s; give the video it was prepared from ({schema.source_video})")
    return crops
