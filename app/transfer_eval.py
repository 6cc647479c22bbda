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
from ..models.expression_features import FEATURES, IRIS_CENTRES, face_features, feature_table, normalise, transfer_report
from ..models.geometry.face_model import load_face_model
from ..models.geometry.fitting import fit_pose
from ..models.geometry.tracker import MediaPipeTracker
from .pipeline import make_stepper
from .reenact import driven


def measured(points: np.ndarray | None, pupils: np.ndarray | None, model) -> dict[str, float] | None:
    """Features of tracked MediaPipe points (iris centres as pupils), or None without a face."""
    if points is None:
        return None
    return face_features(points, pupils if pupils is not None else points[list(IRIS_CENTRES), :2], fit_pose(points, model).rotation)


def transfer_eval(library: Path, name: str, source: Path, mode: str = "head", max_frames: int | None = None) -> dict:
    """Drive the avatar with the source clip and compare the three feature series."""
    avatar = Avatar.open(library, name)
    engine = load_engine(avatar)
    stepper = make_stepper(engine, avatar.resolution)
    model = load_face_model()
    fps, frames = driven(avatar, source, mode, max_frames)
    rows = {"source": [], "conditioning": [], "output": []}
    with MediaPipeTracker(video_mode=True) as tracker:
        for frame in tqdm(frames, desc="driving and measuring", unit="f"):
            rows["source"].append(measured(frame.face.landmarks if frame.face else None, None, model))
            r = frame.retargeted
            rows["conditioning"].append(face_features(r.vertices, r.pupils, r.pose.rotation) if r is not None else None)
            rows["output"].append(measured(tracker.track(stepper(frame.nmfc, frame.eyes)), None, model))
    tables = {k: feature_table(v) for k, v in rows.items()}
    report = transfer_report(tables["source"], tables["conditioning"], tables["output"])
    report.update(avatar=name, source=str(source), mode=mode, frames=len(rows["source"]), fps=fps,
                  engine=f"{engine.provider}, {engine.precision}")
    report["series"] = {k: {f: [None if not np.isfinite(v) else round(float(v), 5) for v in t[f]] for f in FEATURES}
                        for k, t in tables.items()}
    return report


def format_report(report: dict) -> str:
    lines = [f"{report['avatar']} driven by {Path(report['source']).name} ({report['frames']} frames, {report['engine']})",
             f"{'feature':14s}{'r output':>10s}{'r cond.':>10s}{'lag':>6s}{'found':>8s}"]
    for name, f in report["features"].items():
        lines.append(f"{name:14s}{f['r_output']:10.2f}{f['r_conditioning']:10.2f}{f['lag_output']:6d}{f['output_found']:8.0%}")
    wink = report["wink"]
    score = "n/a (no wink in the source)" if wink["score"] is None else f"{wink['score']:.2f}"
    lines.append(f"wink: {wink['followed']} of {wink['wink_frames']} source wink frames followed by the output ({score})")
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
