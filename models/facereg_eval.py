"""DenseFaceReg against its teacher on people it never saw (`h2h eval-facereg`): each clip
tracked by the live app's DenseFaceRegTracker, every crop taken around the network's own
previous answer (the teacher's stored points stand in for MediaPipe: they start a clip,
restart it after a lost face and calibrate the first frames); then the vertex error over the
inter-ocular distance, eye and mouth correlation with the teacher, and frame-to-frame jitter
of both."""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .avatar import Avatar
from .avatar_files import AvatarFiles
from .checkpoint import CheckpointError, read_model_meta, read_weights
from .expression_features import IRIS_CENTRES, LEFT_EYE, RIGHT_EYE, correlation, face_features
from .facereg_data import mirror_order, to_input
from .facereg_training import FACEREG_FILE, FACEREG_META
from .geometry.face_crop import PARTS, checked_part_points
from .geometry.facereg_tracker import CALIBRATION_FRAMES, DenseFaceRegTracker, PartStage
from .geometry.face_model import load_face_model
from .networks.facereg import NUM_POINTS, DenseFaceReg, FaceRegConfig, MirrorAveraged

CONFIG_BOUNDS = {"size": (32, 512), "width": (1, 128), "max_channels": (1, 512), "squeeze": (1, 256)}
TRACKED = ("eye_right", "eye_left", "mouth_open")


SHAPES = {"face": (NUM_POINTS, 1), **{p.name: (p.points, p.aspect) for p in PARTS.values()}}  # part -> (points, crop aspect)


def facereg_config_from_dict(data: object) -> FaceRegConfig:
    """A FaceRegConfig from JSON, refused when out of bounds (a shared file must not build a huge net);
    a face network saved before configs named their part, aspect and points gets the defaults."""
    names = {f.name for f in fields(FaceRegConfig)}
    if isinstance(data, dict) and set(data) | {"aspect", "points", "part"} == names:
        data = {"aspect": 1, "points": NUM_POINTS, "part": "face", **data}
    if not isinstance(data, dict) or set(data) != names:
        raise CheckpointError("facereg.json: not a DenseFaceReg config")
    part = data["part"]
    if not isinstance(part, str) or part not in SHAPES or (data["points"], data["aspect"]) != SHAPES[part]:
        raise CheckpointError("facereg.json: part, points or aspect is not one DenseFaceReg makes")
    for name, (low, high) in CONFIG_BOUNDS.items():
        if not isinstance(data[name], int) or not low <= data[name] <= high:
            raise CheckpointError(f"facereg.json: {name} {data[name]!r} is outside {low}-{high}")
    blocks = data["blocks"]
    if not isinstance(blocks, list) or not 1 <= len(blocks) <= 6 or any(not isinstance(b, int) or not 1 <= b <= 8 for b in blocks):
        raise CheckpointError("facereg.json: blocks must be 1-6 whole numbers of 1-8")
    if data["size"] % 2 ** (1 + len(blocks)):
        raise CheckpointError("facereg.json: size does not divide into its stages")
    return FaceRegConfig(**{**data, "blocks": tuple(blocks)})


def part_points_from(meta: dict, part: str, label: str) -> np.ndarray:
    """(2, N) point indices of a `part` network from its metadata (checked)."""
    try:
        return checked_part_points(meta.get(PARTS[part].key), PARTS[part], label)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from exc


def load_part_stage(folder: Path, part: str, mirror: bool = True) -> PartStage:
    """A trained `part` network (eye, mouth) as the tracker's stage (`mirror`: mirror_averaged)."""
    net, meta = load_facereg(folder, part)
    rows = part_points_from(meta, part, str(folder))
    return PartStage(PARTS[part], TorchRegressor(mirror_averaged(net, rows) if mirror else net), rows)


def mirror_averaged(net: DenseFaceReg, rows: np.ndarray | None) -> DenseFaceReg | MirrorAveraged:
    """The network (`rows`: a part's point indices, None for the face) averaged with its answer
    on the mirrored crop (MirrorAveraged) where its points have mirror images among them (the
    face, the mouth), else itself (the eyes)."""
    order = mirror_order(load_face_model(), rows)
    return net if order is None else MirrorAveraged(net, order)


def load_facereg(folder: Path, part: str | None = "face") -> tuple[DenseFaceReg, dict]:
    """The network (eval mode) and its metadata, through the checked accessor (no code runs);
    refused unless it is a `part` network (None: either)."""
    files = AvatarFiles(folder)
    meta = read_model_meta(files, FACEREG_META, FACEREG_FILE, f"no DenseFaceReg in {folder}; run h2h train-facereg first")
    net = DenseFaceReg(facereg_config_from_dict(meta.get("config")))
    try:
        net.load_state_dict(read_weights(files, FACEREG_FILE))
    except RuntimeError as exc:
        raise CheckpointError(f"{folder}: DenseFaceReg weights do not fit its config; train again") from exc
    if part is not None and net.config.part != part:
        raise CheckpointError(f"{folder}: a DenseFaceReg {net.config.part} network, not a {part} network")
    return net.eval(), meta


class TorchRegressor:
    """A network (face or part) as the tracker's regressor: crops (N, H, W, 3) uint8 -> their crop points (N, P, 3)."""

    def __init__(self, net: DenseFaceReg | MirrorAveraged) -> None:
        self.net, self.size, self.width = net, net.config.size, net.config.size * net.config.aspect

    @torch.no_grad()
    def run(self, crops: np.ndarray) -> np.ndarray:
        return self.net(to_input(crops)).numpy()


class StoredTracks:
    """The tracker's finder on stored teacher points: those of frame `index`."""

    def __init__(self, landmarks: np.ndarray) -> None:
        self.landmarks, self.index = landmarks, 0

    def track(self, rgb: np.ndarray) -> np.ndarray:
        return self.landmarks[self.index]

    def close(self) -> None:
        pass


def interocular(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[RIGHT_EYE["outer"], :2] - points[LEFT_EYE["outer"], :2]))


def features(points: np.ndarray) -> dict[str, float]:
    """Eye openness (each eye) and mouth opening of one face."""
    found = face_features(points, points[list(IRIS_CENTRES), :2], np.eye(3))
    return {k: found[k] for k in TRACKED}


def jitter(series: np.ndarray, scale: np.ndarray) -> float:
    """Median over frames of the mean second difference of the points (2D), over the IOD."""
    if len(series) < 3:
        return float("nan")
    second = np.linalg.norm(series[2:, :, :2] - 2 * series[1:-1, :, :2] + series[:-2, :, :2], axis=-1).mean(-1)
    return float(np.median(second / scale[1:-1]))


def track_clip(net: DenseFaceReg | MirrorAveraged, avatar: Avatar, progress: bool = True, calibration: int = CALIBRATION_FRAMES,
               stages: tuple[PartStage, ...] = ()) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(teacher, student) points over the avatar's frames with a face, those frame indices,
    and how often the tracker lost the face (it is then found again on the same frame).
    `stages`: the tracker's part stages (eyes, mouth)."""
    valid = avatar.tracks["valid"]
    teacher = avatar.tracks["landmarks"]
    stored = StoredTracks(teacher)
    tracker = DenseFaceRegTracker(TorchRegressor(net), stored, None, calibration=calibration, stages=stages)
    indices, student, lost = [], [], 0
    for i in tqdm(range(len(valid)), desc=f"tracking {avatar.name}", unit="f", disable=not progress, leave=False):
        if not valid[i]:
            tracker.reset()
            continue
        stored.index = i
        rgb = avatar.read_image("frame", i)
        points = tracker.track(rgb)
        if points is None:
            lost += 1
            points = tracker.track(rgb)  # found again from the teacher's points
        if points is None:
            continue
        student.append(points)
        indices.append(i)
    return teacher[indices], np.asarray(student), np.asarray(indices), lost


def evaluate_person(net: DenseFaceReg | MirrorAveraged, avatar: Avatar, progress: bool = True, calibration: int = CALIBRATION_FRAMES,
                    stages: tuple[PartStage, ...] = ()) -> dict:
    teacher, student, _, lost = track_clip(net, avatar, progress, calibration, stages)
    scale = np.array([interocular(p) for p in teacher])
    error = np.linalg.norm(student[:, :, :2] - teacher[:, :, :2], axis=-1).mean(-1) / scale
    error_3d = np.linalg.norm(student - teacher, axis=-1).mean(-1) / scale
    ours = [features(p) for p in student]
    theirs = [features(p) for p in teacher]
    report = {
        "frames": len(teacher),
        "lost": lost,
        "median_error_iod": float(np.median(error)),
        "p90_error_iod": float(np.percentile(error, 90)),
        "median_error_3d_iod": float(np.median(error_3d)),
        "jitter_teacher_iod": jitter(teacher, scale),
        "jitter_student_iod": jitter(student, scale),
    }
    for name in TRACKED:
        report[f"r_{name}"] = correlation(np.array([f[name] for f in ours]), np.array([f[name] for f in theirs]))
    return report


def evaluate(folder: Path, library: Path, names: list[str], progress: bool = True, calibration: int = CALIBRATION_FRAMES,
             stage_folders: dict[str, Path] | None = None, mirror: bool = True) -> dict:
    """The face network of `folder`, with the part networks of `stage_folders` (part -> folder),
    mirror-averaged as exported (`mirror`)."""
    net, meta = load_facereg(folder)
    face = mirror_averaged(net, None) if mirror else net
    stages = tuple(load_part_stage(path, part, mirror) for part, path in (stage_folders or {}).items())
    people = {name: evaluate_person(face, Avatar.open(library, name), progress, calibration, stages) for name in names}
    seen = sorted(set(names) & set(meta.get("people", [])))
    return {"facereg": str(folder), "stages": {part: str(path) for part, path in (stage_folders or {}).items()}, "step": meta.get("step"),
            "trained_on": meta.get("people"), "also_trained_on": seen, "calibration_frames": calibration, "mirror_averaged": mirror,
            "people": people}


def format_report(report: dict) -> str:
    stages = "".join(f" with the {part} stage {path}" for part, path in report["stages"].items())
    mirrored = ", mirror-averaged" if report["mirror_averaged"] else ""
    lines = [f"DenseFaceReg {report['facereg']} (step {report['step']}){stages}{mirrored} against MediaPipe (the teacher), "
             f"calibrated on {report['calibration_frames']} frames after each find",
             f"{'person':10s}{'frames':>8s}{'median err':>12s}{'p90 err':>10s}{'eye R r':>9s}{'eye L r':>9s}{'mouth r':>9s}{'jitter':>9s}{'teacher':>9s}"]
    for name, r in report["people"].items():
        lines.append(f"{name:10s}{r['frames']:8d}{r['median_error_iod']:11.1%} {r['p90_error_iod']:9.1%} {r['r_eye_right']:8.2f} "
                     f"{r['r_eye_left']:8.2f} {r['r_mouth_open']:8.2f} {r['jitter_student_iod']:8.2%} {r['jitter_teacher_iod']:8.2%}")
    if report["also_trained_on"]:
        lines.append(f"note: {', '.join(report['also_trained_on'])} were in its training data")
    lines.append("errors and jitter in inter-ocular distances (outer eye corners)")
    return "\n".join(lines)
