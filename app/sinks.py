"""Output sinks: sizing, the virtual camera (pyvirtualcam) and the mp4 recorder."""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from ..models.video import VideoWriter

OUTPUT_SIZES: dict[str, tuple[int, int]] = {
    "1280x720": (1280, 720),
    "640x480": (640, 480),
    "512x512": (512, 512),
    "256x256": (256, 256),
}


class VirtualCameraError(Exception):
    """No virtual camera could be opened; the message says how to get one."""


def how_to_get_a_virtual_camera() -> str:
    if sys.platform.startswith("linux"):
        return ("install v4l2loopback and load it: sudo apt install v4l2loopback-dkms && "
                "sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=h2h")
    return "install OBS Studio (obsproject.com) and start its Virtual Camera once, then stop it"


def fit_output(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale the square avatar frame into width x height, letterboxed on black."""
    width, height = size
    side = min(width, height)
    scaled = cv2.resize(frame, (side, side), interpolation=cv2.INTER_CUBIC if side > frame.shape[0] else cv2.INTER_AREA)
    if (width, height) == (side, side):
        return scaled
    out = np.zeros((height, width, 3), np.uint8)
    y, x = (height - side) // 2, (width - side) // 2
    out[y : y + side, x : x + side] = scaled
    return out


class VirtualCamera:
    """pyvirtualcam camera of a fixed size; `backend` and `device` name what is in use."""

    def __init__(self, size: tuple[int, int], fps: float = 30.0, backend: str | None = None) -> None:
        import pyvirtualcam

        self.size = size
        try:
            self._cam = pyvirtualcam.Camera(width=size[0], height=size[1], fps=fps, backend=backend)
        except Exception as exc:  # pyvirtualcam raises RuntimeError listing every backend's failure
            first = (str(exc).splitlines() or ["no backend installed"])[0]
            raise VirtualCameraError(f"no virtual camera available ({first}); {how_to_get_a_virtual_camera()}") from exc
        self.backend, self.device = self._cam.backend, self._cam.device

    def send(self, frame: np.ndarray) -> None:
        self._cam.send(np.ascontiguousarray(fit_output(frame, self.size)))

    def close(self) -> None:
        self._cam.close()


class Recorder:
    """mp4 of the avatar output at a fixed size.

    paced: live output arrives at a varying rate, so each frame is written as often as the
    wall clock says (repeated when the pipeline is slower than `fps`, skipped when faster)
    and the file plays in real time. Unpaced: one written frame per frame sent.
    """

    def __init__(self, path: str | Path, size: tuple[int, int], fps: float, paced: bool = False) -> None:
        self.size, self.fps, self.paced = size, fps, paced
        self.path = Path(path)
        self.sent = 0
        self._writer = VideoWriter(self.path, fps, size, preset="ultrafast" if paced else "veryfast")
        self._start: float | None = None

    @property
    def frames(self) -> int:
        return self._writer.frames

    @property
    def codec(self) -> str:
        return self._writer.codec

    def send(self, frame: np.ndarray, timestamp: float | None = None) -> None:
        self.sent += 1
        image = fit_output(frame, self.size)
        if not self.paced or timestamp is None:
            self._writer.write(image)
            return
        if self._start is None:
            self._start = timestamp
        due = int((timestamp - self._start) * self.fps) + 1
        for _ in range(min(due - self._writer.frames, int(self.fps))):
            self._writer.write(image)

    def close(self) -> None:
        self._writer.close()
