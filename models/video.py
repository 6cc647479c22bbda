"""Reading and writing video files with clear errors."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


class VideoError(Exception):
    """A video that cannot be read or written; the message says what to do."""


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    fps: float
    frame_count: int
    width: int
    height: int


def probe(path: str | Path) -> VideoInfo:
    """Open a video and read its header; raise VideoError for a missing or non-video file."""
    path = Path(path)
    if not path.exists():
        raise VideoError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise VideoError(f"{path}: is a folder, expected a video file (mp4, mov, avi, mkv)")
    cap = cv2.VideoCapture(str(path))
    try:
        ok, frame = cap.read() if cap.isOpened() else (False, None)
        if not ok or frame is None:
            raise VideoError(f"{path}: not a readable video; give an mp4/mov/avi/mkv file")
        fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
        return VideoInfo(
            path=path,
            fps=fps if 1.0 <= fps <= 240.0 else 30.0,
            frame_count=int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0),
            width=frame.shape[1],
            height=frame.shape[0],
        )
    finally:
        cap.release()


def read_frames(path: str | Path, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Yield RGB uint8 frames of a video file."""
    info = probe(path)
    cap = cv2.VideoCapture(str(info.path))
    try:
        count = 0
        while max_frames is None or count < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            count += 1
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


class VideoWriter:
    """mp4 writer taking RGB frames of a fixed size."""

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int]) -> None:
        self.path = Path(path)
        self.size = size
        self.frames = 0
        self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not self._writer.isOpened():
            raise VideoError(f"{self.path}: cannot write a video here; check the folder exists and is writable")

    def write(self, rgb: np.ndarray) -> None:
        if (rgb.shape[1], rgb.shape[0]) != self.size:
            raise ValueError(f"frame size {rgb.shape[1]}x{rgb.shape[0]} != video size {self.size[0]}x{self.size[1]}")
        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        self._writer.release()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
