"""Stills driven by a clip through the one-shot path, as one PNG sheet (for docs and looking).

Each still becomes a one-shot avatar (as `h2h prepare PHOTO.jpg` makes it) and is driven by
the clip in head mode; the columns are the clip's moments picked from its own tracking: the
most frontal frame, the most turned head, the widest open mouth and the strongest sideways gaze.

    python scripts/oneshot_stills.py ../shared/data/video/d3.mp4 docs/images/oneshot_stills.jpg \\
        --stills ../shared/data/images/s1.jpg ../shared/data/images/s2.jpg ../shared/data/images/s7.jpg
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from h2h.app.pipeline import photo_meshes
from h2h.app.reenact import driven
from h2h.engines import load as load_engine
from h2h.engines.stepper import GeneratorStepper
from h2h.export.oneshot_export import make_photo_avatar
from h2h.models.avatar import Avatar
from h2h.models.expression_features import face_features
from h2h.models.geometry.face_model import load_face_model
from h2h.models.io_utils import atomic_write_image
from h2h.models.oneshot_model import SHIPPED_ONESHOT

MOMENTS = ("frontal", "turned head", "open mouth", "gaze")


def moments(frames) -> dict[str, int]:
    """The frame index of each moment, from the driver's own tracked features."""
    rows = {}
    for i, frame in enumerate(frames):
        if frame.face is not None:
            rows[i] = face_features(frame.face.landmarks, frame.face.pupils, frame.retargeted.pose.rotation)
    index = np.array(list(rows))
    pick = lambda key: int(index[np.argmax([key(rows[i]) for i in index])])
    return {
        "frontal": pick(lambda f: -abs(f["yaw"]) - abs(f["pitch"]) - 10 * f["mouth_open"]),
        "turned head": pick(lambda f: abs(f["yaw"])),
        "open mouth": pick(lambda f: f["mouth_open"]),
        "gaze": pick(lambda f: abs(f["gaze_x"]) - 0.02 * abs(f["yaw"])),
    }


def label(image: np.ndarray, text: str) -> np.ndarray:
    out = image.copy()
    cv2.putText(out, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1, cv2.LINE_AA)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("driver", type=Path, help="driving clip")
    parser.add_argument("out", type=Path, help="output image (PNG or JPEG)")
    parser.add_argument("--stills", type=Path, nargs="+", required=True)
    parser.add_argument("--oneshot", type=Path, default=SHIPPED_ONESHOT, help="one-shot generator folder")
    args = parser.parse_args(argv)
    library = Path(tempfile.mkdtemp(prefix="oneshot-stills-"))
    rows, header = [], None
    for n, still in enumerate(args.stills):
        name = f"still{n}"
        make_photo_avatar([still], library, name, weights=args.oneshot)
        avatar = Avatar.open(library, name)
        engine = load_engine(avatar)
        _, frames = driven(avatar, args.driver, "head", None, photo_meshes(avatar, engine, load_face_model()))
        frames = list(frames)
        picked = moments(frames)
        stepper = GeneratorStepper(engine.run, avatar.resolution, sequential=False)
        outputs = [stepper(frames[i].nmfc, frames[i].eyes, frames[i].corr) for i in picked.values()]
        if header is None:
            header = [np.zeros_like(outputs[0])] + [label(frames[i].crop, f"{m} ({i})") for m, i in picked.items()]
        rows.append(np.concatenate([label(avatar.read_image("frame", 0), still.name), *outputs], 1))
    sheet = np.concatenate([np.concatenate(header, 1), *rows], 0)
    atomic_write_image(args.out, sheet)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
