"""Retargeting (DESIGN 3.3): a source's pose, expression and gaze onto a target identity."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from .eyes import eyelid_opening, pupils_absolute, pupils_relative
from .face_model import FaceModel
from .fitting import Pose, fit_frame, fit_pose, neutral_shape
from .smoothing import OneEuroFilter

MODES = ("head", "face", "self")
MIN_TRANSLATION_STD = 2.0  # pixels; keeps the clamp from pinning a very still target


@dataclass
class CameraStats:
    """Mean and spread of a subject's scale and translation over its frames."""

    scale_mean: float
    scale_std: float
    translation_mean: np.ndarray
    translation_std: np.ndarray

    @classmethod
    def from_poses(cls, scales: np.ndarray, translations: np.ndarray) -> "CameraStats":
        scales, translations = np.asarray(scales, np.float64), np.asarray(translations, np.float64)
        return cls(float(scales.mean()), float(scales.std()), translations.mean(0), translations.std(0))

    def to_dict(self) -> dict:
        return {
            "scale_mean": self.scale_mean,
            "scale_std": self.scale_std,
            "translation_mean": [float(v) for v in self.translation_mean],
            "translation_std": [float(v) for v in self.translation_std],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "CameraStats":
        return cls(
            float(data["scale_mean"]),
            float(data["scale_std"]),
            np.asarray(data["translation_mean"], np.float64),
            np.asarray(data["translation_std"], np.float64),
        )


@dataclass
class Subject:
    """What retargeting needs of a person: neutral identity (V, 3) and camera statistics.
    `eye_detail`: as a target, its generator was trained on conditioning that carries the
    eye detail the expression basis misses (conditioning version 3)."""

    neutral: np.ndarray
    camera: CameraStats
    eye_detail: bool = False


class SourceCalibration:
    """The source's neutral shape and camera statistics.

    Offline it is computed from the whole source video (`from_frames`). Live it is learnt
    from the first `frames` frames after a (re)calibration, then frozen.
    """

    def __init__(self, model: FaceModel, frames: int = 30) -> None:
        self.model = model
        self.frames = frames
        self.reset()

    def reset(self) -> None:
        self._canonicals: list[np.ndarray] = []
        self._scales: list[float] = []
        self._translations: list[np.ndarray] = []
        self.subject: Subject | None = None
        self.frozen = False

    @classmethod
    def from_frames(cls, model: FaceModel, landmarks: np.ndarray) -> "SourceCalibration":
        calib = cls(model, frames=len(landmarks))
        for marks in landmarks:
            calib.observe(marks)
        return calib

    def observe(self, landmarks: np.ndarray) -> None:
        if self.frozen:
            return
        pose = fit_pose(landmarks, self.model)
        self._canonicals.append(pose.invert(landmarks[: self.model.num_vertices, :3]))
        self._scales.append(pose.scale)
        self._translations.append(pose.translation)
        self.subject = Subject(
            neutral_shape(np.stack(self._canonicals), self.model),
            CameraStats.from_poses(np.array(self._scales), np.stack(self._translations)),
        )
        self.frozen = len(self._canonicals) >= self.frames


@dataclass
class SourceFit:
    """A source frame's pose, expression coefficients and pupils relative to its eyes."""

    pose: Pose
    expression: np.ndarray
    gaze: np.ndarray
    detail: np.ndarray | None = None  # FaceModel.eye_detail of the offset, when the target uses it


@dataclass
class Retargeted:
    """A retargeted frame: posed target mesh (V, 3) in target pixels and its eyes."""

    vertices: np.ndarray
    pupils: np.ndarray
    openings: np.ndarray
    pose: Pose
    expression: np.ndarray
    detail: np.ndarray | None = None


@dataclass
class RetargetOptions:
    """Live controls; the defaults reproduce the papers' behaviour."""

    expression_scale: float = 1.0
    pose_offset_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)  # yaw, pitch, roll
    lock_pose: bool = False
    gaze_at_camera: bool = False
    smoothing: float = 0.0  # 0 = off, 1 = strong (One-Euro min cutoff from 8 Hz to 0.5 Hz)
    average_window: int = 3


def posed_mesh(model: FaceModel, neutral: np.ndarray, pose: Pose, expression: np.ndarray,
               detail: np.ndarray | None = None) -> np.ndarray:
    """The face model reconstruction: identity + expression offset (+ eye detail), posed into the image."""
    canonical = neutral + model.expression_offset(expression)
    return pose.apply(canonical if detail is None else canonical + detail)


def tracked_mesh(model: FaceModel, subject: Subject, tracks: dict[str, np.ndarray], i: int) -> np.ndarray:
    """Tracked frame i's model reconstruction (V, 3) in its image, as prepare rendered its conditioning."""
    pose = Pose(float(tracks["scale"][i]), tracks["rotation"][i], tracks["translation"][i])
    detail = None
    if subject.eye_detail:
        detail = model.eye_detail(pose.invert(tracks["landmarks"][i][: model.num_vertices, :3]) - subject.neutral)
    return posed_mesh(model, subject.neutral, pose, tracks["expression"][i], detail)


def retargeted_face(model: FaceModel, neutral: np.ndarray, pose: Pose, expression: np.ndarray, gaze: np.ndarray,
                    detail: np.ndarray | None = None) -> Retargeted:
    """The posed mesh of identity + expression with its eyes: pupils placed by `gaze`
    (relative to each eye) and the eyelid openings of the mesh."""
    vertices = posed_mesh(model, neutral, pose, expression, detail)
    openings = eyelid_opening(vertices, model.topology_lid_pairs)
    return Retargeted(vertices, pupils_absolute(vertices, gaze), openings, pose, expression, detail)


def euler_rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Rotation from degrees about the image y (yaw), x (pitch) and z (roll) axes."""
    y, p, r = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass
class PoseAdapter:
    """Source pose -> target camera statistics: scale by the ratio of means, translation
    shifted by the mean difference and clamped to the target's mean +- 2 std, then a
    short moving average."""

    target: CameraStats
    window: int = 3
    _history: deque = field(default_factory=deque)

    def adapt(self, pose: Pose, source: CameraStats) -> Pose:
        ratio = self.target.scale_mean / max(source.scale_mean, 1e-6)
        t = self.target.translation_mean + (pose.translation - source.translation_mean) * ratio
        spread = 2.0 * np.maximum(self.target.translation_std[:2], MIN_TRANSLATION_STD)
        t[:2] = np.clip(t[:2], self.target.translation_mean[:2] - spread, self.target.translation_mean[:2] + spread)
        t[2] = self.target.translation_mean[2]
        self._history.append(np.concatenate([[pose.scale * ratio], t]))
        while len(self._history) > max(self.window, 1):
            self._history.popleft()
        mean = np.mean(self._history, axis=0)
        return Pose(float(mean[0]), pose.rotation, mean[1:])

    def reset(self) -> None:
        self._history.clear()


class Retargeter:
    """Per-frame retargeting of source landmarks onto a target subject.

    head: source pose (adapted), expression and gaze; face: the target's own camera track
    (`target_poses`, cycled) with the source's expression and gaze; self: the source is the
    target itself, so nothing is adapted.
    """

    def __init__(
        self,
        model: FaceModel,
        target: Subject,
        mode: str = "head",
        target_poses: list[Pose] | None = None,
        options: RetargetOptions | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        if mode == "face" and not target_poses:
            raise ValueError("face reenactment needs the target's own poses")
        self.model, self.target, self.mode = model, target, mode
        self.target_poses = target_poses or []
        self.options = options or RetargetOptions()
        self.adapter = PoseAdapter(target.camera, self.options.average_window)
        self._filter = OneEuroFilter()
        self._locked: Pose | None = None
        self._step = 0

    def reset(self) -> None:
        """Forget stream state (smoothing, moving average, pose lock, face-mode position)."""
        self.adapter.reset()
        self._filter.reset()
        self._locked = None
        self._step = 0

    def retarget(self, landmarks: np.ndarray, pupils: np.ndarray, source: Subject) -> Retargeted:
        """Source landmarks (478, 3) and pupils (2, 2), with the source's calibration."""
        return self.apply(self.fit(landmarks, pupils, source), source)

    def fit(self, landmarks: np.ndarray, pupils: np.ndarray, source: Subject) -> SourceFit:
        """The source's own pose, expression (relative to its neutral) and gaze."""
        fit = fit_frame(landmarks, self.model, source.neutral)
        detail = self.model.eye_detail(fit.canonical - source.neutral) if self.target.eye_detail else None
        return SourceFit(fit.pose, fit.expression, pupils_relative(landmarks, pupils), detail)

    def apply(self, fit: SourceFit, source: Subject) -> Retargeted:
        """The target's posed mesh and eyes for a source fit."""
        opts = self.options
        expression = fit.expression * opts.expression_scale
        detail = fit.detail * opts.expression_scale if fit.detail is not None else None
        gaze = np.zeros((2, 2), np.float32) if opts.gaze_at_camera else fit.gaze
        pose, expression, gaze, detail = self._smooth(self._target_pose(fit.pose, source), expression, gaze, detail)
        self._step += 1
        return retargeted_face(self.model, self.target.neutral, pose, expression, gaze, detail)

    def _target_pose(self, pose: Pose, source: Subject) -> Pose:
        if self.mode == "face":
            return self.target_poses[self._step % len(self.target_poses)]
        if self.mode == "head":
            pose = self.adapter.adapt(pose, source.camera)
        if self.options.lock_pose:
            self._locked = self._locked or pose
            pose = self._locked
        if any(self.options.pose_offset_deg):
            pose = Pose(pose.scale, pose.rotation @ euler_rotation(*self.options.pose_offset_deg), pose.translation)
        return pose

    def _smooth(self, pose: Pose, expression: np.ndarray, gaze: np.ndarray, detail: np.ndarray | None
                ) -> tuple[Pose, np.ndarray, np.ndarray, np.ndarray | None]:
        strength = float(np.clip(self.options.smoothing, 0.0, 1.0))
        if strength <= 0.0:
            return pose, expression, gaze, detail
        self._filter.min_cutoff = 8.0 * (1.0 / 16.0) ** strength
        rotvec = cv2.Rodrigues(np.asarray(pose.rotation, np.float64))[0].ravel()
        k = len(expression)
        extra = [] if detail is None else [detail.ravel()]
        state = np.concatenate([[pose.scale], rotvec, pose.translation, expression, gaze.ravel(), *extra])
        out = self._filter(state)
        rotation = cv2.Rodrigues(out[1:4].reshape(3, 1))[0]
        smoothed = Pose(float(out[0]), rotation, out[4:7])
        gaze = out[7 + k : 11 + k].reshape(2, 2).astype(np.float32)
        detail = out[11 + k :].reshape(detail.shape).astype(np.float32) if detail is not None else None
        return smoothed, out[7 : 7 + k].astype(np.float32), gaze, detail
