"""The shipped DenseFaceReg tracker against MediaPipe on a raw video, as the live app runs both
(full frames, MediaPipe in video mode as the teacher): median point error over the
inter-ocular distance, eye and mouth correlation, jitter of each, and ms a frame; JSON.

    python scripts/trackers_on_clip.py ../shared/data/video/d9.mp4
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from h2h.models.expression_features import correlation
from h2h.models.facereg_eval import TRACKED, features, interocular, jitter
from h2h.models.geometry.tracker import create_tracker
from h2h.models.video import read_frames


def track_all(kind: str, frames: list[np.ndarray]) -> tuple[list[np.ndarray | None], float]:
    """Each frame's points by tracker `kind` (None: no face), and the median ms a frame."""
    found, times = [], []
    with create_tracker(kind) as tracker:
        for frame in frames:
            start = time.perf_counter()
            found.append(tracker.track(frame))
            times.append(time.perf_counter() - start)
    return found, 1000 * float(np.median(times))


def compare(clip: str) -> dict:
    frames = list(read_frames(clip))
    teacher, teacher_ms = track_all("mediapipe", frames)
    student, student_ms = track_all("densefacereg", frames)
    both = [i for i, (t, s) in enumerate(zip(teacher, student)) if t is not None and s is not None]
    t, s = np.stack([teacher[i] for i in both]), np.stack([student[i] for i in both])
    scale = np.array([interocular(p) for p in t])
    error = np.linalg.norm(s[:, :, :2] - t[:, :, :2], axis=-1).mean(-1) / scale
    ours, theirs = [features(p) for p in s], [features(p) for p in t]
    report = {"clip": clip, "frames": len(frames), "scored": len(both), "median_error_iod": float(np.median(error)),
              "p90_error_iod": float(np.percentile(error, 90)), "jitter_densefacereg_iod": jitter(s, scale),
              "jitter_mediapipe_iod": jitter(t, scale), "ms_densefacereg": student_ms, "ms_mediapipe": teacher_ms}
    for name in TRACKED:
        report[f"r_{name}"] = correlation(np.array([f[name] for f in ours]), np.array([f[name] for f in theirs]))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", help="a video of one face")
    print(json.dumps(compare(parser.parse_args().clip), indent=2))


if __name__ == "__main__":
    main()
