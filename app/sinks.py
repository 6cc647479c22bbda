"""Output sinks: sizing, the virtual camera (pyvirtualcam) and the mp4 recorder."""
from __future__ import annotations

import queue
import sys
import threading
from pathlib import Path

import cv2
import numpy as np

from ..models.video import VideoError, VideoWriter

OUTPUT_SIZES: dict[str, tuple[int, int]] = {
    "1280x720": (1280, 720),
    "640x480": (640, 480),
    "512x512": (512, 512),
    "256x256": (256, 256),
}


class RecordingError(VideoError):
    """The recording could not be written; the message says which file and why."""


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
    """mp4 of the avatar output at a fixed size, encoded on its own thread.

    paced: live output arrives at a varying rate, so each frame is written as often as the
    wall clock says (repeated when the pipeline is slower than `fps`, skipped when faster)
    and the file plays in real time; when the encoder falls behind, a frame is left out of the
    queue and the next one is repeated in its place, so the pipeline never waits for the
    encoder. Unpaced: one written frame per frame sent, every frame kept (send waits).
    """

    QUEUE = 8  # frames waiting for the encoder

    def __init__(self, path: str | Path, size: tuple[int, int], fps: float, paced: bool = False) -> None:
        self.size, self.fps, self.paced = size, fps, paced
        self.path = Path(path)
        self.sent = 0
        self.left_out = 0  # frames the encoder had no room for (paced only)
        self._writer = VideoWriter(self.path, fps, size, preset="ultrafast" if paced else "veryfast")
        self._start: float | None = None
        self._queued = 0  # written frames asked for so far (a frame repeated n times counts n)
        self._pending: tuple[np.ndarray, int] | None = None  # (frame, written frames due by it) not yet queued
        self._queue: queue.Queue[tuple[np.ndarray, int] | None] = queue.Queue(self.QUEUE)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._encode, name="h2h-recorder", daemon=True)
        self._thread.start()

    @property
    def frames(self) -> int:
        return self._writer.frames

    @property
    def codec(self) -> str:
        return self._writer.codec

    def _encode(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is not None:
                continue  # keep draining so that send and close never block on a dead encoder
            frame, copies = item
            try:
                image = fit_output(frame, self.size)
                for _ in range(copies):
                    self._writer.write(image)
            except BaseException as exc:  # reported by the next send or close
                self._error = exc

    def _raise_error(self) -> None:
        if self._error is not None:
            raise RecordingError(f"recording {self.path.name} failed: {self._error}") from self._error

    def send(self, frame: np.ndarray, timestamp: float | None = None) -> None:
        self._raise_error()
        self.sent += 1
        frame = frame.copy()  # the encoder reads it later, on its own thread
        if not self.paced or timestamp is None:
            self._queue.put((frame, 1))
            self._queued += 1
            return
        if self._start is None:
            self._start = timestamp
        self._pending = (frame, int((timestamp - self._start) * self.fps) + 1)
        self._offer(block=False)

    def _offer(self, block: bool) -> None:
        """Queue the pending frame as often as the clock says is due (left out when the queue
        is full and not `block`: the next frame, or close, writes the frames it owed)."""
        frame, due = self._pending
        copies = min(due - self._queued, int(self.fps))
        if copies > 0:
            try:
                self._queue.put((frame, copies), block=block)
            except queue.Full:
                self.left_out += 1
                return
            self._queued += copies
        self._pending = None

    def close(self) -> None:
        """Encode what is queued (and the last frame's due copies), then finish the file."""
        if self._thread.is_alive():
            if self._pending is not None:
                self._offer(block=True)
            self._queue.put(None)
            self._thread.join()
        self._writer.close()
        self._raise_error()
