"""`h2h bench`: per-stage timings of the live face path on a real clip, as JSON."""
from __future__ import annotations

import json
import os
import platform
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from ..models.geometry.conditioning import ConditioningRenderer
from ..models.geometry.eyes import detect_pupils
from ..models.geometry.face_model import load_face_model
from ..models.geometry.retarget import CameraStats, Retargeter, SourceCalibration, Subject
from ..models.geometry.tracker import MediaPipeTracker
from ..models.video import probe

FACE_STAGES = ("track", "fit", "retarget", "render", "eyes")
WARMUP_FRAMES = 5


def _default_target(size: int) -> Subject:
    """The mean face centred in the frame, standing in for an avatar."""
    model = load_face_model()
    camera = CameraStats(size * 0.22, 2.0, np.array([size / 2, size / 2, 0.0]), np.array([4.0, 4.0, 1.0]))
    return Subject(model.mean_shape, camera)


def run_bench(source: str | Path, frames: int | None = None, json_out: str | Path | None = None) -> str:
    """Time each stage on every frame of the clip; report medians in ms."""
    info = probe(source)
    model = load_face_model()
    size = 256
    renderer = ConditioningRenderer(model, size)
    retargeter = Retargeter(model, _default_target(size), "head")
    calibration = SourceCalibration(model)
    times: dict[str, list[float]] = defaultdict(list)
    cap = cv2.VideoCapture(str(info.path))
    tracked = 0
    try:
        with MediaPipeTracker(video_mode=True) as tracker:
            i = 0
            while frames is None or i < frames:
                t0 = time.perf_counter()
                ok, bgr = cap.read()
                if not ok:
                    break
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                t1 = time.perf_counter()
                landmarks = tracker.track(rgb)
                t2 = time.perf_counter()
                if landmarks is None:
                    i += 1
                    continue
                pupils = detect_pupils(rgb, landmarks, model.topology)
                t3 = time.perf_counter()
                calibration.observe(landmarks)
                fit = retargeter.fit(landmarks, pupils, calibration.subject)
                t4 = time.perf_counter()
                face = retargeter.apply(fit, calibration.subject)
                t5 = time.perf_counter()
                renderer.render_nmfc(face)
                t6 = time.perf_counter()
                renderer.render_eyes(face)
                t7 = time.perf_counter()
                if i >= WARMUP_FRAMES:
                    for name, dt in zip(
                        ("decode", "track", "fit", "retarget", "render", "eyes"),
                        (t1 - t0, t2 - t1, t4 - t3, t5 - t4, t6 - t5, (t3 - t2) + (t7 - t6)),
                    ):
                        times[name].append(dt * 1000)
                tracked += 1
                i += 1
    finally:
        cap.release()
        renderer.close()
    medians = {k: round(float(np.median(v)), 3) for k, v in times.items()}
    face_total = round(sum(medians.get(k, 0.0) for k in FACE_STAGES), 3)
    report = {
        "source": str(info.path),
        "source_size": [info.width, info.height],
        "frames": i,
        "frames_with_face": tracked,
        "timed_frames": len(times["decode"]),
        "resolution": size,
        "nmfc_backend": renderer.nmfc.backend,
        "stages_ms": medians,
        "face_total_ms": face_total,
        "face_path_fps": round(1000.0 / face_total, 1) if face_total else None,
        "machine": {"cpus": os.cpu_count(), "processor": platform.machine(), "python": platform.python_version()},
    }
    text = json.dumps(report, indent=2)
    if json_out:
        Path(json_out).write_text(text + "\n")
    return text
