"""DenseFaceReg as the face tracker (Head2Head++ 3.1): one small network maps a crop around
the face to its 478 points; each crop is taken around the network's previous answer.
MediaPipe stays for detection and as the teacher: its face mesh finds the face at the start
and after a loss and calibrates the network to that face on the first few frames, and its
face detector checks every few frames that the face is still where the network thinks it is
(the network itself always answers with a face)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .face_crop import Crop, Part, PartCrop, mesh_box, part_corners, unshift
from .smoothing import OneEuroFilter
from .tracker import MediaPipeTracker, quiet_native_logs

CHECK_EVERY = 5  # frames between presence checks (~2 ms each)
CALIBRATION_FRAMES = 5  # frames after a find on which the finder's points calibrate the network
SMOOTHING = (8.0, 40.0)  # One-Euro min cutoff (Hz) and beta (in face-box sides per second) on the answers
MAX_SCALE_CHANGE = 1.5  # the face's box may not grow or shrink more than this from one frame to the next
MAX_SHIFT = 0.5  # nor move by more than this share of its side


class Regressor(Protocol):
    """Crops (N, size, width, 3) uint8 -> (N, points, 3) crop-normalised points (engines.facereg_engine)."""

    size: int
    width: int

    def run(self, crops: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True, eq=False)
class PartStage:
    """A part network (eyes, mouth) in the tracker: it redraws the points `rows` (2, N) of its
    `part` (their first part.redrawn) from crops placed by the face network's answer (one per
    part.shifts, their answers averaged; all of a frame's crops in one batch)."""

    part: Part
    regressor: Regressor
    rows: np.ndarray

    def __post_init__(self) -> None:
        if self.rows.shape != (2, self.part.points):
            raise ValueError(f"the {self.part.name} stage needs 2 rows of {self.part.points} point indices")


def followed(points: np.ndarray, previous: np.ndarray) -> bool:
    """Whether `points` plausibly continue `previous` (no jump in place or size)."""
    if not np.isfinite(points).all():
        return False
    (c0, s0), (c1, s1) = mesh_box(previous), mesh_box(points)
    return 1 / MAX_SCALE_CHANGE < s1 / max(s0, 1e-6) < MAX_SCALE_CHANGE and float(np.linalg.norm(c1 - c0)) < MAX_SHIFT * s0


class FaceDetector:
    """MediaPipe's short-range face detector: face boxes as (x0, y0, x1, y1) in pixels."""

    def __init__(self, min_confidence: float = 0.5) -> None:
        quiet_native_logs()
        from mediapipe.python.solutions import face_detection

        self._detector = face_detection.FaceDetection(model_selection=0, min_detection_confidence=min_confidence)

    def boxes(self, rgb: np.ndarray) -> list[tuple[float, float, float, float]]:
        result = self._detector.process(np.ascontiguousarray(rgb))
        h, w = rgb.shape[:2]
        found = []
        for detection in result.detections or []:
            b = detection.location_data.relative_bounding_box
            found.append((b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h))
        return found

    def close(self) -> None:
        self._detector.close()


def present(points: np.ndarray, boxes: list[tuple[float, float, float, float]]) -> bool:
    """Whether a detected face box has its centre inside the points' face box."""
    centre, side = mesh_box(points)
    return any(abs((x0 + x1) / 2 - centre[0]) < side / 2 and abs((y0 + y1) / 2 - centre[1]) < side / 2 for x0, y0, x1, y1 in boxes)


class MeanError:
    """The network's mean error (teacher - network, crop coordinates) over the calibration frames so far."""

    def __init__(self) -> None:
        self.count, self.value = 0, np.zeros((1, 3), np.float32)

    def add(self, error: np.ndarray) -> None:
        self.count += 1
        self.value = self.value + (error - self.value) / self.count


class DenseFaceRegTracker:
    """The FaceTracker protocol on DenseFaceReg: (478, 3) image-space points, or None.

    `finder` (a FaceTracker: MediaPipe's face mesh in the app) finds the face when there is
    none, and gives the teacher's points for the first `calibration` frames after each find:
    the network's mean error on them, in crop coordinates, is added to its later answers. That
    takes out most of what the network gets wrong about a face it never saw (its shape), which
    stays the same from frame to frame. `detector` (None: no checks) says every `check_every`
    frames whether the face is still there. `stages`, second networks on finer crops around a
    part (each eye: its contour and iris; the mouth: its lips), then
    redraw those points, calibrated the same way.
    The answers pass a light One-Euro filter (MediaPipe smooths its own landmarks too), which
    takes the network's frame-to-frame noise below the teacher's without lagging blinks."""

    def __init__(self, regressor: Regressor, finder, detector: FaceDetector | None, check_every: int = CHECK_EVERY,
                 calibration: int = CALIBRATION_FRAMES, stages: tuple[PartStage, ...] = ()) -> None:
        self.regressor, self.check_every, self.calibration = regressor, check_every, calibration
        self._finder, self._detector = finder, detector
        self.stages = tuple(stages)
        self._corners = [part_corners(s.part, s.rows) for s in self.stages]
        self.reset()

    @classmethod
    def with_mediapipe(cls, regressor: Regressor, stages: tuple[PartStage, ...] = ()) -> "DenseFaceRegTracker":
        """MediaPipe's face mesh finds and calibrates, its face detector checks."""
        detector = FaceDetector()
        try:
            return cls(regressor, MediaPipeTracker(video_mode=False), detector, stages=stages)
        except BaseException:
            detector.close()
            raise

    def _anchor(self, rgb: np.ndarray) -> tuple[np.ndarray | None, bool]:
        """(where to crop, whether it was just found): the previous answer while the face is
        still there, else the finder's points (None: no face)."""
        previous = self._previous
        if previous is not None:
            self._since_check += 1
            if self._detector is None or self._since_check < self.check_every:
                return previous, False
            self._since_check = 0
            if present(previous, self._detector.boxes(rgb)):
                return previous, False
        self.reset()
        return self._finder.track(rgb), True

    def _refine(self, rgb: np.ndarray, points: np.ndarray, teacher: np.ndarray | None) -> None:
        """Each stage's points redrawn by its network (in place): its answers on the crop the face's
        answer gives and on that crop shifted (part.shifts), averaged, then calibrated like the face."""
        for n, (stage, corners) in enumerate(zip(self.stages, self._corners)):
            part, sides, width = stage.part, stage.part.sides, stage.regressor.width
            crops = [PartCrop.around(*(points[stage.rows[side][k]] for k in corners), width, part, side == 1) for side in sides]
            images = np.concatenate([crop.shifted(rgb, part.shifts) for crop in crops])
            answers = stage.regressor.run(images)[:, : part.redrawn].reshape(len(sides), len(part.shifts), part.redrawn, 3)
            for side, crop, answer in zip(sides, crops, answers):
                indices = stage.rows[side][: part.redrawn]
                raw = unshift(answer, part.shifts, width).mean(0)
                error = self._part_errors[n][side]
                if teacher is not None:
                    error.add(crop.normalise(teacher[indices]) - raw)
                points[indices] = crop.denormalise(raw + error.value)

    def track(self, rgb: np.ndarray) -> np.ndarray | None:
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError("track() expects an HxWx3 uint8 RGB image")
        anchor, found = self._anchor(rgb)
        if anchor is None:
            return None
        crop = Crop.around(anchor, self.regressor.size)
        raw = self.regressor.run(crop.image(rgb)[None])[0]
        teacher = None
        if self._calibrating < self.calibration:
            self._calibrating += 1
            teacher = anchor if found else self._finder.track(rgb)
            if teacher is not None:
                self._error.add(crop.normalise(teacher) - raw)
        points = crop.denormalise(raw + self._error.value)
        if not followed(points, anchor):
            self.reset()
            return None
        self._refine(rgb, points, teacher)
        self._previous = points  # the next crop is placed by the unfiltered answer
        if found:
            self._side = mesh_box(points)[1]
        return (self._filter(points / self._side) * self._side).astype(np.float32)

    def reset(self) -> None:
        """Forget the face (and its calibration): the next frame is found again."""
        self._previous: np.ndarray | None = None
        self._since_check = 0
        self._calibrating = 0
        self._error = MeanError()
        self._part_errors = [{side: MeanError() for side in s.part.sides} for s in self.stages]
        self._filter = OneEuroFilter(*SMOOTHING)
        self._side = 1.0

    def close(self) -> None:
        self._finder.close()
        if self._detector is not None:
            self._detector.close()

    def __enter__(self) -> "DenseFaceRegTracker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
