"""One avatar driven by one clip with each face tracker, as a PNG/JPEG sheet: the source with
each tracker's points, then the avatar each one drives, at evenly spaced frames.

    python scripts/compare_trackers.py d6 ../shared/data/video/d19.mp4 docs/images/trackers_d19_on_demo.jpg \\
        --library assets/demo
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from h2h.app.pipeline import photo_meshes
from h2h.app.reenact import driven
from h2h.engines import load as load_engine
from h2h.engines.stepper import GeneratorStepper
from h2h.models.avatar import Avatar
from h2h.models.geometry.face_model import load_face_model
from h2h.models.geometry.tracker import TRACKER_NAMES
from h2h.models.io_utils import atomic_write_image


def with_points(image: np.ndarray, points: np.ndarray | None, text: str) -> np.ndarray:
    out = image.copy()
    if points is not None:
        for x, y in points[:, :2].astype(int):
            cv2.circle(out, (int(x), int(y)), 1, (0, 255, 0), -1)
    cv2.putText(out, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1, cv2.LINE_AA)
    return out


def drive(avatar: Avatar, source: Path, tracker: str, frames: int | None) -> tuple[list, list[np.ndarray]]:
    """The driven frames and the avatar's output for each, generated in sequence."""
    engine = load_engine(avatar)
    photos = photo_meshes(avatar, engine, load_face_model())
    _, driven_frames = driven(avatar, source, "head", frames, photos, tracker)
    driven_frames = list(driven_frames)
    stepper = GeneratorStepper(engine.run, avatar.resolution, sequential=engine.sequential)
    return driven_frames, [stepper(f.nmfc, f.eyes, f.corr) for f in driven_frames]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("avatar", help="avatar name")
    parser.add_argument("source", type=Path, help="driving clip")
    parser.add_argument("out", type=Path, help="output image (PNG or JPEG)")
    parser.add_argument("--library", type=Path, required=True)
    parser.add_argument("--columns", type=int, default=6)
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--at", type=int, nargs="+", help="these frame indices instead of evenly spaced ones")
    args = parser.parse_args(argv)
    avatar = Avatar.open(args.library, args.avatar)
    runs = {kind: drive(avatar, args.source, kind, args.frames) for kind in TRACKER_NAMES}
    count = min(len(outputs) for _, outputs in runs.values())
    picks = [i for i in args.at if i < count] if args.at else np.linspace(0, count - 1, args.columns + 2).astype(int)[1:-1]
    rows = []
    for kind, (frames, _) in runs.items():
        rows.append([with_points(frames[i].crop, frames[i].face.landmarks if frames[i].face else None, f"{TRACKER_NAMES[kind]} ({i})")
                     for i in picks])
    for kind, (_, outputs) in runs.items():
        rows.append([with_points(outputs[i], None, f"avatar, {TRACKER_NAMES[kind]}") for i in picks])
    sheet = np.concatenate([np.concatenate(row, 1) for row in rows], 0)
    atomic_write_image(args.out, sheet)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
