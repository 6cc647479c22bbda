"""The live pipeline (DESIGN 8): capture -> face (track, fit, retarget, render) ->
generator -> output (the optional 512 upsampler, then the sinks), each on its own thread,
joined by queues of one frame.

Real-time mode drops the oldest waiting frame (newest wins; capture never blocks), so a
slow generator lowers the frame rate instead of growing the latency. Offline mode blocks
instead, delivering every frame in order (bench, recording a file).
"""
from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..engines.base import Engine, correspondence_sources
from ..engines.stepper import GeneratorStepper, conditioning_input, image_to_input, output_to_image
from ..models.avatar import Avatar
from ..models.geometry.conditioning import ConditioningRenderer, track_face
from ..models.geometry.eyes import pupils_relative
from ..models.geometry.face_model import FaceModel
from ..models.geometry.fitting import Pose
from ..models.geometry.retarget import (
    Retargeted,
    RetargetOptions,
    Retargeter,
    SourceCalibration,
    Subject,
    retargeted_face,
)
from ..models.geometry.tracker import create_tracker

log = logging.getLogger(__name__)
HOLD_SECONDS = 0.5  # keep the last good face this long when the face is lost
EASE_SECONDS = 1.0  # then ease to the neutral pose over this long


@dataclass
class Packet:
    """One frame travelling through the pipeline."""

    index: int
    captured: float
    source: np.ndarray
    landmarks: np.ndarray | None = None
    face_found: bool = False
    nmfc: np.ndarray | None = None
    eyes: np.ndarray | None = None
    cond: np.ndarray | None = None  # nmfc and eyes as the generator's float input (made on the face thread)
    corr: np.ndarray | None = None  # a one-shot avatar's correspondence to its photos, when its generator takes it
    corr_for: list | None = None  # the photos' meshes it was rendered onto (a switch leaves frames of the last avatar in flight)
    raw: np.ndarray | None = None  # the generator's float output, turned into images on the output thread
    output: np.ndarray | None = None
    mask: np.ndarray | None = None  # the generator's foreground mask (uint8, 255 = person), if it has one
    timings: dict[str, float] = field(default_factory=dict)


class LatestQueue:
    """A queue of one: in real-time mode put() replaces a waiting item (counted as dropped);
    otherwise put() waits for room."""

    def __init__(self, realtime: bool) -> None:
        self.realtime = realtime
        self._item: Packet | None = None
        self._cond = threading.Condition()
        self.dropped = 0
        self.closed = False

    def put(self, item: Packet) -> None:
        with self._cond:
            while not self.realtime and self._item is not None and not self.closed:
                self._cond.wait(0.1)
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._cond.notify_all()

    def get(self, timeout: float = 0.1) -> Packet | None:
        with self._cond:
            if self._item is None:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            self._cond.notify_all()
            return item

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    @property
    def pending(self) -> bool:
        with self._cond:
            return self._item is not None


class StageStats:
    """Rolling per-stage milliseconds and output frame rate."""

    def __init__(self, window: int = 120, keep_all: bool = False) -> None:
        self._ms: dict[str, deque] = defaultdict(lambda: deque(maxlen=window))
        self._out: deque = deque(maxlen=window)
        self._lock = threading.Lock()
        self.delivered = 0
        self.keep_all = keep_all  # every timing, for bench and headless summaries (bounded runs)
        self.all_ms: dict[str, list[float]] = defaultdict(list)

    def add(self, timings: dict[str, float]) -> None:
        with self._lock:
            for k, v in timings.items():
                self._ms[k].append(v)
                if self.keep_all:
                    self.all_ms[k].append(v)

    def delivered_frame(self) -> None:
        with self._lock:
            self._out.append(time.perf_counter())
            self.delivered += 1

    def medians(self) -> dict[str, float]:
        with self._lock:
            return {k: float(np.median(v)) for k, v in self._ms.items() if v}

    def percentiles(self, key: str, qs: tuple[float, ...] = (50, 95)) -> tuple[float, ...] | None:
        """Percentiles of one timing over the rolling window (e.g. latency p50, p95), or None."""
        with self._lock:
            values = list(self._ms.get(key, ()))
        return tuple(float(v) for v in np.percentile(values, qs)) if values else None

    def fps(self) -> float:
        with self._lock:
            if len(self._out) < 2:
                return 0.0
            return (len(self._out) - 1) / max(self._out[-1] - self._out[0], 1e-6)


class FaceStage:
    """Track, fit, retarget and render; creates its GL context on first use, so it must be
    used from one thread. Without a face it holds the last pose, then eases to neutral."""

    def __init__(self, model: FaceModel, target: Subject, mode: str = "head", target_poses: list[Pose] | None = None,
                 options: RetargetOptions | None = None, size: int = 256, calibration_frames: int = 30,
                 brows: bool = False, photos: list[np.ndarray] | None = None, tracker: str = "mediapipe") -> None:
        self.model, self.target, self.size, self.brows, self.photos = model, target, size, brows, photos
        self.tracker = tracker  # the tracker back-end (models.geometry.tracker.TRACKERS)
        self._tracker_pending: str | None = None
        self.retargeter = Retargeter(model, target, mode, target_poses, options)
        self.calibration = SourceCalibration(model, calibration_frames)
        self._tracker = None
        self._renderer: ConditioningRenderer | None = None
        self._last: Retargeted | None = None
        self._lost_since: float | None = None
        self._pending: tuple | None = None
        self._pending_lock = threading.Lock()  # set_target from any thread, taken on the face thread
        self._recalibrate = False

    @property
    def options(self) -> RetargetOptions:
        return self.retargeter.options

    def set_target(self, target: Subject, target_poses: list[Pose] | None = None, mode: str | None = None,
                   brows: bool | None = None, photos: list[np.ndarray] | None = None) -> None:
        """Switch avatar (or mode) from any thread; applied before the next frame. `brows`: the
        new avatar's eye sketches carry brows (its conditioning version); `photos`: the posed
        meshes of a one-shot avatar's photos when its generator takes their correspondence (None:
        the avatar has none)."""
        with self._pending_lock:
            self._pending = (target, target_poses, mode or self.retargeter.mode, self.brows if brows is None else brows, photos)

    def set_tracker(self, kind: str) -> None:
        """Switch the tracker back-end from any thread; applied before the next frame."""
        with self._pending_lock:
            self._tracker_pending = kind

    def _apply_pending(self) -> None:
        with self._pending_lock:
            kind, self._tracker_pending = self._tracker_pending, None
        if kind is not None and kind != self.tracker:
            self._switch_tracker(kind)
        if self._recalibrate:
            self._recalibrate = False
            self.calibration.reset()
            self.retargeter.reset()
        with self._pending_lock:
            pending, self._pending = self._pending, None
        if pending is not None:
            target, poses, mode, self.brows, self.photos = pending
            if self._renderer is not None:
                self._renderer.brows, self._renderer.photos = self.brows, self.photos
            self.target = target
            self.retargeter = Retargeter(self.model, target, mode, poses, self.retargeter.options)
            self._last = None

    def _switch_tracker(self, kind: str) -> None:
        """The new back-end from this frame on (its own idea of the neutral face too); when it
        cannot be made, the old one stays and the reason is logged."""
        if self._tracker is not None:
            try:
                tracker = create_tracker(kind, video_mode=True)
            except Exception as exc:  # a runtime or provider failure must not stop the pipeline
                log.warning("face tracker stays %s: %s cannot start (%s: %s)", self.tracker, kind, type(exc).__name__, exc)
                return
            self._tracker.close()
            self._tracker = tracker
        self.tracker = kind
        self._recalibrate = True

    def recalibrate(self) -> None:
        """Take the source's neutral face and camera statistics from the coming frames
        (applied on the face thread before the next frame)."""
        self._recalibrate = True

    def process(self, packet: Packet) -> Packet:
        self._apply_pending()
        if self._renderer is None:
            self._tracker = create_tracker(self.tracker, video_mode=True)
            self._renderer = ConditioningRenderer(self.model, self.size, brows=self.brows, photos=self.photos)
        t0 = time.perf_counter()
        face = track_face(self._tracker, packet.source, self.model)
        t1 = time.perf_counter()
        now = packet.captured
        if face is not None:
            self.calibration.observe(face.landmarks)
            retargeted = self.retargeter.retarget(face.landmarks, face.pupils, self.calibration.subject)
            self._last, self._lost_since = retargeted, None
            packet.landmarks, packet.face_found = face.landmarks, True
        else:
            self._lost_since = self._lost_since or now
            retargeted = self._fallback(now - self._lost_since)
        t2 = time.perf_counter()
        if retargeted is None:
            packet.nmfc = packet.eyes = np.zeros((self.size, self.size, 3), np.uint8)
        else:
            packet.nmfc, packet.eyes = self._renderer.render(retargeted)
        packet.corr, packet.corr_for = self._renderer.render_correspondence(retargeted), self._renderer.photos
        packet.cond = conditioning_input(packet.nmfc, packet.eyes)
        t3 = time.perf_counter()
        packet.timings.update(track=(t1 - t0) * 1e3, retarget=(t2 - t1) * 1e3, render=(t3 - t2) * 1e3)
        return packet

    def _fallback(self, lost_for: float) -> Retargeted | None:
        """Hold the last face, then blend its pose and expression towards neutral."""
        last = self._last
        if last is None:
            return None
        ease = float(np.clip((lost_for - HOLD_SECONDS) / EASE_SECONDS, 0.0, 1.0))
        if ease == 0.0:
            return last
        camera = self.target.camera
        rotvec = cv2.Rodrigues(np.asarray(last.pose.rotation, np.float64))[0] * (1 - ease)
        pose = Pose(
            (1 - ease) * last.pose.scale + ease * camera.scale_mean,
            cv2.Rodrigues(rotvec)[0],
            (1 - ease) * last.pose.translation + ease * camera.translation_mean,
        )
        gaze = pupils_relative(last.vertices, last.pupils) * (1 - ease)
        detail = last.detail * (1 - ease) if last.detail is not None else None
        return retargeted_face(self.model, self.target.neutral, pose, last.expression * (1 - ease), gaze, detail)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._tracker.close()
            self._renderer = self._tracker = None


def photo_meshes(avatar: Avatar, engine: Engine, model: FaceModel) -> list[np.ndarray] | None:
    """What FaceStage renders the correspondence onto: a one-shot avatar's photos' posed meshes
    when its engine takes the correspondence, else None."""
    count = correspondence_sources(engine)
    return avatar.photo_meshes(model, count) if count else None


def make_stepper(engine: Engine, size: int, wrap: Callable[[Callable], Callable] = lambda run: run):
    """A stepper that keeps the window on the engine's GPU when it has one (only images cross
    to and from the device), else the numpy stepper; `wrap` decorates the step (timing)."""
    device = getattr(getattr(engine, "device", None), "type", None) or ("cuda" if engine.provider == "TensorRT" else None)
    if hasattr(engine, "run_device") and device == "cuda":
        from ..engines.device_stepper import DeviceStepper

        import torch

        def finished(*inputs):  # wait for the GPU, so the timing is the engine's, not the enqueue's
            out = engine.run_device(*inputs)
            torch.cuda.current_stream().synchronize()
            return out

        return DeviceStepper(wrap(finished), size, engine.sequential, "cuda")
    return GeneratorStepper(wrap(engine.run), size, engine.sequential)


class GeneratorStage:
    """An engine behind the window/previous-output state; times the engine and the rest.
    `photos`: the meshes its one-shot avatar's correspondence is rendered onto; a frame's
    correspondence reaches the engine only when it was rendered onto these."""

    def __init__(self, engine: Engine, size: int = 256, photos: list[np.ndarray] | None = None) -> None:
        self.engine, self.photos = engine, photos
        self._run_ms = 0.0
        self.stepper = make_stepper(engine, size, self._timed)

    def _timed(self, run: Callable) -> Callable:
        def timed(*inputs):
            t0 = time.perf_counter()
            out = run(*inputs)
            self._run_ms = (time.perf_counter() - t0) * 1e3
            return out
        return timed

    def process(self, packet: Packet) -> Packet:
        """The step; the numpy stepper leaves its raw output for the output stage to convert."""
        t0 = time.perf_counter()
        corr = packet.corr if packet.corr_for is self.photos else None  # another avatar's: none (its own from the NMFC)
        if isinstance(self.stepper, GeneratorStepper):
            cond = packet.cond if packet.cond is not None else conditioning_input(packet.nmfc, packet.eyes)
            packet.raw = self.stepper.step(cond, corr)
        else:
            packet.output = self.stepper(packet.nmfc, packet.eyes, corr)
            packet.mask = self.stepper.mask
        total = (time.perf_counter() - t0) * 1e3
        packet.timings.update(generator=self._run_ms, convert=total - self._run_ms)
        return packet

    def reset(self) -> None:
        self.stepper.reset()


class OutputStage:
    """The generator's raw output as images (frame and mask), through the avatar's learned 2x
    upsampler when one is set; runs on the output thread, beside the next generator step."""

    def __init__(self, upsampler=None) -> None:
        self.upsampler = upsampler

    def process(self, packet: Packet) -> Packet:
        t0 = time.perf_counter()
        raw, upsampler = packet.raw, self.upsampler
        if raw is not None:  # the numpy stepper's float output (a device stepper gives images)
            packet.output = output_to_image(raw[:3]) if upsampler is None else None
            packet.mask = output_to_image(raw[3:])[..., 0] if raw.shape[0] > 3 else None
        upsampled = 0.0
        if upsampler is not None and (raw is not None or packet.output is not None):
            frame = raw[None, :3] if raw is not None else image_to_input(packet.output)[None]
            t1 = time.perf_counter()
            packet.output = output_to_image(upsampler.run(frame)[0])
            upsampled = (time.perf_counter() - t1) * 1e3
            packet.timings["upsample"] = upsampled
            if packet.mask is not None:
                packet.mask = cv2.resize(packet.mask, packet.output.shape[1::-1], interpolation=cv2.INTER_LINEAR)
        packet.timings["output"] = (time.perf_counter() - t0) * 1e3 - upsampled
        return packet


Sink = Callable[[Packet], None]


class Pipeline:
    """capture -> face -> generator -> output (images, [upsampling], sinks) on four threads."""

    def __init__(self, frames: Iterator[np.ndarray], face: FaceStage, generator: GeneratorStage | None,
                 sinks: list[Sink], realtime: bool = True, keep_all_timings: bool = False, upsampler=None) -> None:
        """`upsampler`: the avatar's learned 2x upsampler engine, or None for its own size."""
        self.frames, self.face, self.generator = frames, face, generator
        self.output = OutputStage(upsampler)
        self.sinks = list(sinks)
        self.realtime = realtime
        self.to_face, self.to_generator, self.to_output = LatestQueue(realtime), LatestQueue(realtime), LatestQueue(realtime)
        self.stats = StageStats(keep_all=keep_all_timings)
        self.captured = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._source_done = threading.Event()
        self._face_done = threading.Event()
        self._generator_done = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def dropped(self) -> int:
        return self.to_face.dropped + self.to_generator.dropped + self.to_output.dropped

    def start(self) -> "Pipeline":
        loops = ((self._capture, "capture"), (self._face_loop, "face"), (self._generator_loop, "generator"), (self._output_loop, "output"))
        for target, name in loops:
            thread = threading.Thread(target=self._guard(target), name=f"h2h-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _guard(self, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:  # surfaced to the caller through .error
                log.exception("pipeline thread failed")
                self.error = exc
                self.stop()
        return run

    def _capture(self) -> None:
        try:
            for i, frame in enumerate(self.frames):
                if self._stop.is_set():
                    break
                self.to_face.put(Packet(i, time.perf_counter(), frame))
                self.captured += 1
        finally:
            self._source_done.set()

    def _packets(self, queue: LatestQueue, upstream_done: threading.Event) -> Iterator[Packet]:
        """The packets arriving on `queue` until the pipeline stops, or until the stage before
        it is done and nothing waits."""
        while not self._stop.is_set():
            packet = queue.get()
            if packet is not None:
                yield packet
            elif upstream_done.is_set() and not queue.pending:
                return

    def _face_loop(self) -> None:
        try:
            for packet in self._packets(self.to_face, self._source_done):
                self.to_generator.put(self.face.process(packet))
        finally:
            self.face.close()
            self._face_done.set()

    def _generator_loop(self) -> None:
        try:
            for packet in self._packets(self.to_generator, self._face_done):
                if self.generator is not None:
                    self.generator.process(packet)
                self.to_output.put(packet)
        finally:
            self._generator_done.set()

    def _output_loop(self) -> None:
        """The output stage and the sinks, beside the generator working on the next frame."""
        for packet in self._packets(self.to_output, self._generator_done):
            self.output.process(packet)
            packet.timings["latency"] = (time.perf_counter() - packet.captured) * 1e3
            for sink in self.sinks:
                sink(packet)
            self.stats.add(packet.timings)
            self.stats.delivered_frame()

    def stop(self) -> None:
        self._stop.set()
        self.to_face.close()
        self.to_generator.close()
        self.to_output.close()

    def join(self, timeout: float | None = None) -> None:
        for thread in self._threads:
            thread.join(timeout)

    def wait(self) -> None:
        """Run until the source is exhausted and every frame is through; re-raise failures."""
        self.join()
        if self.error is not None:
            raise self.error
