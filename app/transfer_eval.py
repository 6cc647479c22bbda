"""`h2h eval NAME --source VIDEO`: transfer fidelity, the way the product is used. The avatar is
driven by another person's clip; MediaPipe measures the source frames and the generated
frames, the retargeted mesh gives the conditioning's features, and each feature of the output
and of the conditioning is correlated with the source's (models/expression_features.py)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..engines import load as load_engine
from ..models.avatar import Avatar
from ..models.geometry.conditioning import conditioning_overlay
from ..models.expression_features import FEATURES, IRIS_CENTRES, LEFT_EYE, MOMENTS, RIGHT_EYE, face_features, feature_table, gaze_while_open, normalise, transfer_report
from ..models.geometry.face_model import load_face_model
from ..models.geometry.fitting import fit_pose
from ..models.geometry.retarget import SourceCalibration
from ..models.geometry.tracker import MediaPipeTracker
from .pipeline import make_stepper, photo_meshes
from .reenact import driven


def measured(points: np.ndarray | None, pupils: np.ndarray | None, model) -> dict[str, float] | None:
    """Features of tracked MediaPipe points (iris centres as pupils), or None without a face."""
    if points is None:
        return None
    return face_features(points, pupils if pupils is not None else points[list(IRIS_CENTRES), :2], fit_pose(points, model).rotation)


MOMENT_MAX_DEGREES = 12.0  # head yaw and pitch of a frame that shows an expression plainly


class Moments:
    """For each of MOMENTS, the source frame that shows it most strongly, with the conditioning
    and the output generated from it."""

    def __init__(self) -> None:
        self.best: dict[str, tuple[tuple[bool, float], int, list[np.ndarray]]] = {}

    def offer(self, index: int, features: dict[str, float] | None, images: list[np.ndarray]) -> None:
        """Keep the frame if it shows a moment more clearly; near-frontal frames come first, as
        a turned head foreshortens one eye and tilts the brows."""
        if features is None:
            return
        frontal = max(abs(features["yaw"]), abs(features["pitch"])) <= MOMENT_MAX_DEGREES
        for name, score in MOMENTS.items():
            key = (frontal, score(features))
            if name not in self.best or key > self.best[name][0]:
                self.best[name] = (key, index, [im.copy() for im in images])

    def frames(self) -> dict[str, int]:
        return {name: best[1] for name, best in self.best.items()}

    def grid(self, out: Path, title: str) -> Path:
        """Rows of moments, columns source | conditioning | output, labelled."""
        import cv2

        rows = []
        for name, (_, index, images) in self.best.items():
            size = images[-1].shape[0]
            row = np.concatenate([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in images], 1)
            cv2.putText(row, f"{name} (frame {index})", (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 0), 1, cv2.LINE_AA)
            rows.append(row)
        if not rows:
            raise ValueError("no frame with a tracked face to show")
        header = np.zeros((28, rows[0].shape[1], 3), np.uint8)
        cv2.putText(header, f"{title}: source | conditioning | output", (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        image = np.concatenate([header, *rows], 0)
        if not cv2.imwrite(str(out), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {out}")
        return out


def identity_drift(model, target_neutral: np.ndarray, clips: dict[str, list[np.ndarray]]) -> dict[str, float | None]:
    """RMS distance, in eye-corner distances, between the neutral face shape of each clip's
    points and the target's own neutral (both in the model's canonical frame). The source's
    distance is how different the two people are; the conditioning's and the output's should
    stay well below it, or the driver's face shape is leaking into the avatar."""
    unit = float(np.linalg.norm(model.mean_shape[RIGHT_EYE["outer"]] - model.mean_shape[LEFT_EYE["outer"]]))
    drift: dict[str, float | None] = {}
    for kind, points in clips.items():
        if len(points) < 2:
            drift[f"{kind}_vs_target"] = None
            continue
        neutral = SourceCalibration.from_frames(model, np.stack(points)).subject.neutral
        drift[f"{kind}_vs_target"] = float(np.sqrt(((neutral - target_neutral) ** 2).sum(-1).mean()) / unit)
    gap = drift.get("source_vs_target")
    drift["output_leak"] = drift["output_vs_target"] / gap if gap and drift.get("output_vs_target") is not None else None
    return drift


def transfer_eval(library: Path, name: str, source: Path, mode: str = "head", max_frames: int | None = None,
                  moments: Moments | None = None) -> dict:
    """Drive the avatar with the source clip and compare the three feature series; `moments`
    collects the frames of the clearest wink, frown, raised brows, O mouth and lowered lids."""
    avatar = Avatar.open(library, name)
    engine = load_engine(avatar)
    stepper = make_stepper(engine, avatar.resolution)
    model = load_face_model()
    fps, frames = driven(avatar, source, mode, max_frames, photo_meshes(avatar, engine, model))
    rows = {"source": [], "conditioning": [], "output": []}
    points = {"source": [], "conditioning": [], "output": []}
    with MediaPipeTracker(video_mode=True) as tracker:
        for index, frame in enumerate(tqdm(frames, desc="driving and measuring", unit="f")):
            source_points = frame.face.landmarks if frame.face else None
            rows["source"].append(measured(source_points, None, model))
            r = frame.retargeted
            rows["conditioning"].append(face_features(r.vertices, r.pupils, r.pose.rotation) if r is not None else None)
            output = stepper(frame.nmfc, frame.eyes, frame.corr)
            tracked = tracker.track(output)
            rows["output"].append(measured(tracked, None, model))
            for kind, found in (("source", source_points),
                                ("conditioning", r.vertices if r is not None else None), ("output", tracked)):
                if found is not None:
                    points[kind].append(found[: model.num_vertices, :3])
            if moments is not None:
                moments.offer(index, rows["source"][-1], [frame.crop, conditioning_overlay(frame.nmfc, frame.eyes), output])
    tables = {k: gaze_while_open(feature_table(v)) for k, v in rows.items()}
    report = transfer_report(tables["source"], tables["conditioning"], tables["output"])
    report.update(avatar=name, source=str(source), mode=mode, frames=len(rows["source"]), fps=fps,
                  engine=f"{engine.provider}, {engine.precision}")
    report["identity"] = identity_drift(model, avatar.subject.neutral, points)
    if moments is not None:
        report["moments"] = moments.frames()
    report["series"] = {k: {f: [None if not np.isfinite(v) else round(float(v), 5) for v in t[f]] for f in FEATURES}
                        for k, t in tables.items()}
    return report


def format_report(report: dict) -> str:
    lines = [f"{report['avatar']} driven by {Path(report['source']).name} ({report['frames']} frames, {report['engine']})",
             f"{'feature':14s}{'r output':>10s}{'r cond.':>10s}{'lag':>6s}{'found':>8s}{'source range':>14s}"]
    for name, f in report["features"].items():
        moved = "" if f["source_range"] is None else f"{f['source_range']:14.3f}"
        lines.append(f"{name:14s}{f['r_output']:10.2f}{f['r_conditioning']:10.2f}{f['lag_output']:6d}{f['output_found']:8.0%}{moved}")
    wink = report["wink"]
    score = "n/a (no wink in the source)" if wink["score"] is None else f"{wink['score']:.2f}"
    lines.append(f"wink: {wink['followed']} of {wink['wink_frames']} source wink frames followed by the output ({score})")
    identity = report["identity"]
    if identity.get("output_leak") is not None:
        lines.append(f"identity: the output's neutral shape is {identity['output_vs_target']:.3f} from the target's, "
                     f"the source's {identity['source_vs_target']:.3f} (leak ratio {identity['output_leak']:.2f}; "
                     f"conditioning {identity['conditioning_vs_target']:.3f})")
    return "\n".join(lines)


def plot_report(report: dict, out: Path) -> Path:
    """One panel per feature: source, conditioning and output, each normalised per person."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = report["series"]
    fig, axes = plt.subplots(len(FEATURES), 1, figsize=(11, 1.5 * len(FEATURES)), sharex=True)
    for ax, name in zip(axes, FEATURES):
        for kind, style in (("source", dict(color="black", lw=1.4)), ("conditioning", dict(color="tab:blue", lw=1, ls="--")),
                            ("output", dict(color="tab:red", lw=1.2))):
            values = normalise(np.array([np.nan if v is None else v for v in series[kind][name]], np.float64))
            ax.plot(values, label=kind, **style)
        f = report["features"][name]
        ax.set_ylabel(name, rotation=0, ha="right", fontsize=9)
        ax.set_title(f"r output {f['r_output']:.2f}   r conditioning {f['r_conditioning']:.2f}", fontsize=8, loc="right")
    axes[0].legend(loc="upper left", fontsize=8, ncol=3)
    axes[-1].set_xlabel("frame")
    fig.suptitle(f"{report['avatar']} driven by {Path(report['source']).name}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def _finite(value):
    """NaN (a correlation over a flat or missing series) becomes null: JSON has no NaN."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def write_json(report: dict, out: Path) -> None:
    out.write_text(json.dumps(_finite(report), indent=2) + "\n")
