"""Capture sources for the live path: webcams (with retry) and video files (looping, paced)."""
from __future__ import annotations

import glob
import logging
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..models.video import VideoError, probe

log = logging.getLogger(__name__)
RETRY_SECONDS = 1.0


@dataclass(frozen=True)
class CameraInfo:
    index: int
    label: str


def list_cameras(max_index: int = 8) -> list[CameraInfo]:
    """Webcams that open and deliver a frame; on Linux only /dev/video* nodes are probed."""
    if sys.platform.startswith("linux"):
        indices = sorted(int(p.removeprefix("/dev/video")) for p in glob.glob("/dev/video*") if p[10:].isdigit())
    else:
        indices = list(range(max_index))
    found = []
    for index in indices:
        cap = cv2.VideoCapture(index)
        try:
            if cap.isOpened() and cap.read()[0]:
                found.append(CameraInfo(index, f"Camera {index}"))
        finally:
            cap.release()
    return found


class FrameSource:
    """Iterating yields RGB frames until stop(); `status` says what the source is doing."""

    name = "source"
    fps = 30.0

    def __init__(self, mirror: bool = False) -> None:
        self.mirror = mirror
        self.status = ""
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _out(self, bgr: np.ndarray) -> np.ndarray:
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return np.ascontiguousarray(rgb[:, ::-1]) if self.mirror else rgb

    def __iter__(self) -> Iterator[np.ndarray]:
        raise NotImplementedError


class VideoFileSource(FrameSource):
    """A video file; `loop` restarts it at the end, `paced` plays it at its own frame rate
    (like a camera) instead of as fast as it decodes."""

    def __init__(self, path: str | Path, loop: bool = True, paced: bool = True, mirror: bool = False,
                 max_frames: int | None = None) -> None:
        super().__init__(mirror)
        self.info = probe(path)
        self.name = self.info.path.name
        self.fps = self.info.fps
        self.loop, self.paced, self.max_frames = loop, paced, max_frames

    def __iter__(self) -> Iterator[np.ndarray]:
        count, interval = 0, 1.0 / self.fps
        next_time = time.perf_counter()
        self.status = f"playing {self.name}"
        while not self.stopped:
            cap = cv2.VideoCapture(str(self.info.path))
            delivered_any = False
            try:
                while not self.stopped:
                    if self.max_frames is not None and count >= self.max_frames:
                        return
                    ok, bgr = cap.read()
                    if not ok:
                        break
                    if self.paced:
                        next_time += interval
                        time.sleep(max(0.0, next_time - time.perf_counter()))
                    delivered_any = True
                    count += 1
                    yield self._out(bgr)
            finally:
                cap.release()
            if not (self.loop and delivered_any):
                return


class CameraSource(FrameSource):
    """A webcam by index; a lost camera is reopened every second and `status` says so.
    `give_up_after` (seconds): a camera that never delivers a frame in that time raises
    VideoError instead of retrying for ever (headless runs)."""

    def __init__(self, index: int, width: int | None = None, height: int | None = None, mirror: bool = True,
                 give_up_after: float | None = None) -> None:
        super().__init__(mirror)
        self.index, self.width, self.height = index, width, height
        self.give_up_after = give_up_after
        self.name = f"camera {index}"

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(self.index)
        if self.width and self.height:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 1 <= fps <= 120 else 30.0
        return cap

    def __iter__(self) -> Iterator[np.ndarray]:
        cap = self._open()
        started, delivered = time.monotonic(), False
        try:
            while not self.stopped:
                ok, bgr = cap.read() if cap.isOpened() else (False, None)
                if ok:
                    delivered = True
                    self.status = f"{self.name}: {bgr.shape[1]}x{bgr.shape[0]}"
                    yield self._out(bgr)
                    continue
                if not delivered and self.give_up_after is not None and time.monotonic() - started >= self.give_up_after:
                    raise VideoError(
                        f"{self.name} gave no frame in {self.give_up_after:g} s; check it is connected and not in use "
                        "by another app, or pass a video file as --source"
                    )
                self.status = f"{self.name} lost; retrying every {RETRY_SECONDS:g} s (check the cable or another app using it)"
                log.warning("%s", self.status)
                cap.release()
                self._stop.wait(RETRY_SECONDS)
                cap = self._open()
        finally:
            cap.release()


def open_source(spec: str, realtime: bool = True, mirror: bool | None = None, max_frames: int | None = None,
                loop: bool | None = None, give_up_after: float | None = None) -> FrameSource:
    """A camera for an integer spec ("0"), else a video file (looping and paced when real time)."""
    if spec.isdigit():
        return CameraSource(int(spec), mirror=True if mirror is None else mirror, give_up_after=give_up_after)
    return VideoFileSource(spec, loop=realtime if loop is None else loop, paced=realtime, mirror=bool(mirror),
                           max_frames=max_frames)
