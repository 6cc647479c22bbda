"""A live session: the avatar, its engine, the source, the pipeline and the sinks. The GUI
and headless mode both drive this; nothing here imports training code."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..engines import Engine, engine_status
from ..engines.base import predicts_mask
from ..engines import load as load_engine
from ..engines.base import EngineError
from ..engines.upsampler_engine import load_upsampler_engine
from ..models.avatar import Avatar
from ..models.geometry.face_model import load_face_model
from ..models.geometry.retarget import RetargetOptions
from ..models.geometry.tracker import tracker_problem
from ..models.library import BUNDLED, list_avatars
from .background import Background, Compositor, no_mask_problem
from .pipeline import FaceStage, GeneratorStage, Packet, Pipeline, photo_meshes
from .sinks import Recorder, VirtualCamera
from .sources import FrameSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AvatarEntry:
    name: str
    path: Path
    frames: int
    engine: str  # TensorRT / ONNX / PyTorch / none
    bundled: bool
    thumbnail: bytes | None = None  # PNG bytes read through the checked accessor
    oneshot: bool = False  # made from photos (person-generic generator)


def available_avatars(library: Path, problems: list[str] | None = None) -> list[AvatarEntry]:
    """The library's avatars, then the bundled demo avatars not shadowed by a library one;
    a damaged or refused folder is skipped, and why goes to the log and to `problems`."""
    entries = []
    for folder, names, bundled in ((library, list_avatars(library), False), (BUNDLED, list_avatars(BUNDLED), True)):
        for name in names:
            if bundled and any(e.name == name for e in entries):
                continue
            try:
                avatar = Avatar.open_path(folder / name, arrays=False)
                entry = AvatarEntry(name, avatar.path, avatar.schema.counts.frames, engine_status(avatar), bundled, avatar.thumbnail(),
                                    avatar.oneshot)
            except Exception as exc:  # a damaged folder must not hide the others
                log.warning("skipping %s: %s", folder / name, exc)
                if problems is not None:
                    problems.append(f"{name}: {exc}")
                continue
            entries.append(entry)
    return entries


@dataclass
class LoadedAvatar:
    avatar: Avatar
    engine: Engine
    photos: list[np.ndarray] | None = None  # its photos' posed meshes, when its engine takes their correspondence
    upsampler: object | None = None  # its learned 512 upsampler engine, loaded when first asked for
    upsampler_problem: str | None = None  # why it has none (found at that first load)

    def load_upsampler(self) -> str | None:
        """Load the avatar's upsampler engine, once (a failure is not retried); returns why it
        has none, or None."""
        if self.upsampler is None and self.upsampler_problem is None:
            try:
                self.upsampler = load_upsampler_engine(self.avatar)
            except EngineError as exc:
                self.upsampler_problem = str(exc)
        return self.upsampler_problem

    @property
    def has_mask(self) -> bool:
        """Whether its generator predicts the foreground mask (needed to replace the background)."""
        return predicts_mask(self.engine)


def load_avatar(entry: AvatarEntry, engine: str = "auto", device: str = "cpu") -> LoadedAvatar:
    avatar = Avatar.open_path(entry.path)
    loaded = load_engine(avatar, engine, device=device)
    return LoadedAvatar(avatar, loaded, photo_meshes(avatar, loaded, load_face_model()))


class LiveSession:
    """Runs the pipeline for one avatar and source; avatars switch without stopping."""

    def __init__(self, mode: str = "head", options: RetargetOptions | None = None) -> None:
        self.model = load_face_model()
        self.mode = mode
        self.tracker = "mediapipe"  # set_tracker switches it
        self.options = options or RetargetOptions(smoothing=0.3)
        self.current: LoadedAvatar | None = None
        self.pipeline: Pipeline | None = None
        self.source: FrameSource | None = None
        self.face: FaceStage | None = None
        self.vcam: VirtualCamera | None = None
        self.recorder: Recorder | None = None
        self._latest: Packet | None = None
        self._lock = threading.Lock()
        self._sink_lock = threading.Lock()  # held while a sink sends or closes
        self.pipeline_stats = None
        self.dropped = 0
        self._error: BaseException | None = None
        self.compositor = Compositor()
        self.hires = False  # 512x512 through the avatar's learned upsampler

    # ----- avatar ---------------------------------------------------------------------
    def set_avatar(self, loaded: LoadedAvatar) -> None:
        """Use this avatar from the next frame on (safe while running)."""
        self.current = loaded
        if self.pipeline is not None:
            self.face.set_target(loaded.avatar.subject, self._poses(loaded), self.mode, loaded.avatar.brows, loaded.photos)
            self.pipeline.generator = GeneratorStage(loaded.engine, loaded.avatar.resolution, loaded.photos)
            self.pipeline.output.upsampler = self._upsampler()

    def set_hires(self, on: bool) -> str | None:
        """512x512 output from the next frame on (safe while running); returns why the current
        avatar cannot give it (then the output stays at its own size), or None."""
        self.hires = on
        if self.pipeline is not None:
            self.pipeline.output.upsampler = self._upsampler()
        return self.hires_problem()

    def hires_problem(self) -> str | None:
        if not self.hires or self.current is None:
            return None
        return self.current.load_upsampler()

    def _upsampler(self):
        """The current avatar's upsampler engine when 512 is on and it has one, else None."""
        if not self.hires or self.current is None or self.hires_problem() is not None:
            return None
        return self.current.upsampler

    def set_background(self, background: Background) -> str | None:
        """Use this background from the next frame on (safe while running); returns why it
        cannot be seen with the current avatar, or None."""
        self.compositor.set(background)
        return self.background_problem()

    def background_problem(self) -> str | None:
        if self.compositor.background.replaces and self.current is not None and not self.current.has_mask:
            return no_mask_problem(self.current.avatar.name)
        return None

    def set_tracker(self, kind: str) -> str | None:
        """Track with this back-end from the next frame on (safe while running); returns why
        it cannot be used (then the tracker stays as it was), or None."""
        problem = tracker_problem(kind)
        if problem is None:
            self.tracker = kind
            if self.face is not None:
                self.face.set_tracker(kind)
        return problem

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        if self.face is not None and self.current is not None:
            self.face.set_target(self.current.avatar.subject, self._poses(self.current), mode, self.current.avatar.brows,
                                 self.current.photos)

    @staticmethod
    def _poses(loaded: LoadedAvatar):
        return loaded.avatar.poses(loaded.avatar.split_indices("train"))

    # ----- running --------------------------------------------------------------------
    def start(self, source: FrameSource, realtime: bool = True, extra_sinks: list | None = None,
              keep_all_timings: bool = False) -> None:
        if self.current is None:
            raise RuntimeError("pick an avatar first")
        self.stop()
        avatar = self.current.avatar
        self.source = source
        self.face = FaceStage(self.model, avatar.subject, self.mode, self._poses(self.current), self.options, brows=avatar.brows,
                              photos=self.current.photos, tracker=self.tracker)
        generator = GeneratorStage(self.current.engine, avatar.resolution, self.current.photos)
        sinks = [self._deliver, *(extra_sinks or [])]
        self.pipeline = Pipeline(iter(source), self.face, generator, sinks, realtime, keep_all_timings, self._upsampler()).start()

    def stop(self) -> None:
        if self.pipeline is not None:
            if self.source is not None:
                self.source.stop()
            self.pipeline.stop()
            self.pipeline.join(5.0)
            self.pipeline_stats, self.dropped = self.pipeline.stats, self.pipeline.dropped
            self._error = self.pipeline.error
            self.pipeline = None

    def wait(self) -> None:
        if self.pipeline is not None:
            self.pipeline.wait()

    @property
    def running(self) -> bool:
        return self.pipeline is not None and any(t.is_alive() for t in self.pipeline._threads)

    def recalibrate(self) -> None:
        if self.face is not None:
            self.face.recalibrate()

    # ----- sinks ----------------------------------------------------------------------
    def _deliver(self, packet: Packet) -> None:
        packet.output = self.compositor(packet.output, packet.mask)
        with self._lock:
            self._latest = packet
        with self._sink_lock:
            if self.vcam is not None:
                self.vcam.send(packet.output)
            if self.recorder is not None:
                self.recorder.send(packet.output, packet.captured)

    def latest(self) -> Packet | None:
        with self._lock:
            return self._latest

    def open_vcam(self, size: tuple[int, int], fps: float = 30.0, backend: str | None = None) -> VirtualCamera:
        """Replace the virtual camera (the old one is released first: devices are exclusive)."""
        self.close_vcam()
        cam = VirtualCamera(size, fps, backend)
        with self._sink_lock:
            self.vcam = cam
        return cam

    def close_vcam(self) -> None:
        with self._sink_lock:
            cam, self.vcam = self.vcam, None
            if cam is not None:
                cam.close()

    def start_recording(self, path: Path, size: tuple[int, int], fps: float, paced: bool = True) -> Recorder:
        """Record the output; `paced` keeps real time (frames repeat or skip to hold fps)."""
        self.stop_recording()
        recorder = Recorder(path, size, fps, paced)
        with self._sink_lock:
            self.recorder = recorder
        return recorder

    def stop_recording(self) -> Recorder | None:
        with self._sink_lock:
            recorder, self.recorder = self.recorder, None
            if recorder is not None:
                recorder.close()
        return recorder

    @property
    def error(self) -> BaseException | None:
        return self.pipeline.error if self.pipeline is not None else self._error

    def close(self) -> None:
        self.stop()
        self.close_vcam()
        self.stop_recording()


def landmarks_overlay(packet: Packet) -> np.ndarray:
    """The source frame with the tracked landmarks drawn (preview)."""
    import cv2

    frame = packet.source.copy()
    if packet.landmarks is not None:
        scale = max(1, frame.shape[0] // 256)
        for x, y in packet.landmarks[:, :2].astype(int):
            cv2.circle(frame, (x, y), scale, (0, 255, 0), -1)
    return frame
