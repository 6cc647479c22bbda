"""Reading and writing video files with clear errors."""
from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np


log = logging.getLogger(__name__)


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
    """mp4 writer taking RGB frames of a fixed size: H.264 (yuv420p, plays in browsers and
    common players) through PyAV's bundled x264; mp4v through OpenCV, with a one-line note,
    only when no H.264 encoder is available. `preset` trades speed for size (x264's names)."""

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int], preset: str = "veryfast") -> None:
        self.path = Path(path)
        self.size = size
        self.frames = 0
        if not (isinstance(fps, (int, float)) and math.isfinite(fps) and 0 < fps <= 240):
            raise VideoError(f"{self.path}: cannot write a video at {fps!r} frames per second (need 0 < fps <= 240)")
        if not self.path.parent.is_dir():
            raise VideoError(f"{self.path}: the folder does not exist; create it or choose another path")
        self.codec = "h264"
        self._av = self._open_h264(fps, preset)
        self._cv = None
        if self._av is None:
            self.codec = "mp4v"
            self._cv = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
            if not self._cv.isOpened():
                raise VideoError(f"{self.path}: cannot write a video here; check the folder exists and is writable")

    def _open_h264(self, fps: float, preset: str):
        """(container, stream) of an H.264 mp4, or None (with a note) when that is not possible."""
        width, height = self.size
        try:
            import av
        except ImportError:
            log.warning("PyAV is not installed; writing %s as mp4v (pip install av for H.264)", self.path.name)
            return None
        if "libx264" not in av.codec.codecs_available or width % 2 or height % 2:
            why = "no H.264 encoder in this PyAV build" if width % 2 == 0 and height % 2 == 0 else "odd frame size"
            log.warning("writing %s as mp4v (%s)", self.path.name, why)
            return None
        try:  # the index goes first (faststart): the file plays while it downloads
            container = av.open(str(self.path), "w", options={"movflags": "+faststart"})
        except OSError as exc:
            raise VideoError(f"{self.path}: cannot write a video here ({exc.strerror or exc}); check the folder is writable") from exc
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18", "preset": preset}
        stream.codec_context.thread_count = 1  # two cores: the live pipeline needs the other one
        return container, stream

    def write(self, rgb: np.ndarray) -> None:
        if (rgb.shape[1], rgb.shape[0]) != self.size:
            raise ValueError(f"frame size {rgb.shape[1]}x{rgb.shape[0]} != video size {self.size[0]}x{self.size[1]}")
        if self._av is not None:
            import av

            container, stream = self._av
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                container.mux(packet)
        else:
            self._cv.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        if self._av is not None:
            container, stream = self._av
            self._av = None
            for packet in stream.encode():
                container.mux(packet)
            container.close()
        elif self._cv is not None:
            self._cv.release()
            self._cv = None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
