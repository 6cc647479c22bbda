"""`h2h bench`: per-stage timings of the live path on a real clip, as JSON.

Stages are timed one after another in a plain loop (clean medians); then the same frames
go through the threaded pipeline the live app uses, and both end-to-end rates are reported.
With --realtime the clip is also played at its own frame rate, as a camera delivers frames,
through the real-time pipeline (newest frame wins): the share of frames delivered, how the
drops are spread, latency p50/p95 and the jitter of the output.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from ..engines import load as load_engine
from ..engines.base import EngineError
from ..engines.upsampler_engine import load_upsampler_engine
from ..models.avatar import Avatar
from ..models.geometry.conditioning import ConditioningRenderer
from ..models.geometry.eyes import detect_pupils
from ..models.geometry.face_model import load_face_model
from ..models.geometry.retarget import CameraStats, Retargeter, SourceCalibration, Subject
from ..models.geometry.tracker import create_tracker
from ..models.video import probe, read_frames
from .pipeline import FaceStage, GeneratorStage, OutputStage, Packet, Pipeline, photo_meshes
from .sources import VideoFileSource

FACE_STAGES = ("track", "fit", "retarget", "render", "eyes")
WARMUP_FRAMES = 5
SIZE = 256


def _default_target() -> Subject:
    """The mean face centred in the frame, standing in for an avatar."""
    model = load_face_model()
    camera = CameraStats(SIZE * 0.22, 2.0, np.array([SIZE / 2, SIZE / 2, 0.0]), np.array([4.0, 4.0, 1.0]))
    return Subject(model.mean_shape, camera)


def plain_loop(source: Path, target: Subject, generator: GeneratorStage | None, frames: int | None,
               brows: bool = True, upsampler=None, photos=None, tracker: str = "mediapipe") -> tuple[dict, int, float]:
    """Every stage of every frame in turn: ({stage: [ms]}, frames, the frames per second after
    the first WARMUP_FRAMES: models loading and first runs are not the rate). `photos` and
    `tracker`: see FaceStage (rendering counts the correspondence)."""
    model = load_face_model()
    renderer = ConditioningRenderer(model, SIZE, brows=brows, photos=photos)
    output = OutputStage(upsampler)
    retargeter = Retargeter(model, target, "head")
    calibration = SourceCalibration(model)
    times: dict[str, list[float]] = defaultdict(list)
    cap = cv2.VideoCapture(str(source))
    count, started, warm = 0, time.perf_counter(), 0
    try:
        with create_tracker(tracker, video_mode=True) as points:
            while frames is None or count < frames:
                if count == WARMUP_FRAMES:  # a clip shorter than that is timed whole
                    started, warm = time.perf_counter(), WARMUP_FRAMES
                t = [time.perf_counter()]
                ok, bgr = cap.read()
                if not ok:
                    break
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                t.append(time.perf_counter())
                landmarks = points.track(rgb)
                t.append(time.perf_counter())
                count += 1
                if landmarks is None:
                    continue
                pupils = detect_pupils(rgb, landmarks, model.topology)
                t.append(time.perf_counter())
                calibration.observe(landmarks)
                fit = retargeter.fit(landmarks, pupils, calibration.subject)
                t.append(time.perf_counter())
                face = retargeter.apply(fit, calibration.subject)
                t.append(time.perf_counter())
                nmfc = renderer.render_nmfc(face)
                corr = renderer.render_correspondence(face)
                t.append(time.perf_counter())
                eyes = renderer.render_eyes(face)
                t.append(time.perf_counter())
                stage = {
                    "decode": t[1] - t[0], "track": t[2] - t[1], "fit": t[4] - t[3], "retarget": t[5] - t[4],
                    "render": t[6] - t[5], "eyes": (t[3] - t[2]) + (t[7] - t[6]),
                }
                if generator is not None:
                    packet = output.process(generator.process(Packet(count, t[0], rgb, nmfc=nmfc, eyes=eyes, corr=corr, corr_for=photos)))
                    stage.update({k: packet.timings[k] / 1e3 for k in ("generator", "convert", "output", "upsample") if k in packet.timings})
                if count > WARMUP_FRAMES:
                    for k, v in stage.items():
                        times[k].append(v * 1e3)
    finally:
        cap.release()
        renderer.close()
    return times, count, (count - warm) / max(time.perf_counter() - started, 1e-6)


def threaded(source: Path, target: Subject, generator: GeneratorStage | None, frames: int | None,
             mode: str = "head", target_poses=None, brows: bool = True, upsampler=None,
             photos=None, tracker: str = "mediapipe") -> tuple[int, float, dict, float | None]:
    """The live pipeline over the same frames, delivering every one: (frames, frames per second,
    medians, seconds to the first frame); the rate counts from the WARMUP_FRAMES'th delivered
    frame, as the plain loop's does (the start, threads loading their models, is reported apart)."""
    model = load_face_model()
    face = FaceStage(model, target, mode, target_poses, brows=brows, photos=photos, tracker=tracker)
    if generator is not None:
        generator.reset()
    times: list[float] = []
    pipeline = Pipeline(read_frames(source, frames), face, generator, sinks=[lambda packet: times.append(time.perf_counter())],
                        realtime=False, keep_all_timings=True, upsampler=upsampler)
    started = time.perf_counter()
    pipeline.start().wait()
    steady = times[WARMUP_FRAMES - 1:] if len(times) > WARMUP_FRAMES else [started, *times]  # a short clip is timed whole
    rate = (len(steady) - 1) / max(steady[-1] - steady[0], 1e-6) if len(steady) > 1 else 0.0
    return len(times), rate, pipeline.stats.medians(), times[0] - started if times else None


SETTLE_SECONDS = 1.0  # a paced run's first second (models load, the GL context starts) is not scored


def _percentile(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values.size else None


def delivery_stats(captured: int, delivered: list[tuple[int, float, float]], settle: int) -> dict:
    """What a viewer of a paced run sees, from the frames captured and the (index, time s,
    latency ms) of each delivered one, over captured frames from index `settle` on: the share
    delivered, the longest run of dropped frames (bursts are what stutters), latency p50/p95
    and the output's frame interval p50/p95 and jitter (standard deviation), in ms."""
    scored = [d for d in delivered if d[0] >= settle]
    expected = max(captured - settle, 0)
    shown = {d[0] for d in scored}
    longest = run = 0
    for index in range(settle, captured):
        run = 0 if index in shown else run + 1
        longest = max(longest, run)
    latency = np.array([d[2] for d in scored], np.float64)
    intervals = np.diff([d[1] for d in scored]) * 1e3
    return {
        "frames": expected,
        "delivered": len(scored),
        "delivered_share": round(len(scored) / expected, 4) if expected else None,
        "longest_drop_run": longest,
        "latency_ms_p50": _percentile(latency, 50),
        "latency_ms_p95": _percentile(latency, 95),
        "interval_ms_p50": _percentile(intervals, 50),
        "interval_ms_p95": _percentile(intervals, 95),
        "jitter_ms": round(float(np.std(intervals)), 1) if intervals.size else None,
    }


def paced(source: Path, target: Subject, generator: GeneratorStage | None, frames: int | None,
          brows: bool = True, upsampler=None, photos=None, tracker: str = "mediapipe") -> dict:
    """The clip played at its own frame rate through the real-time pipeline, as the live app
    runs a camera: delivery_stats of the run, after SETTLE_SECONDS."""
    model = load_face_model()
    face = FaceStage(model, target, "head", brows=brows, photos=photos, tracker=tracker)
    if generator is not None:
        generator.reset()
    clip = VideoFileSource(source, loop=False, paced=True, max_frames=frames)
    delivered: list[tuple[int, float, float]] = []

    def record(packet: Packet) -> None:
        delivered.append((packet.index, time.perf_counter(), packet.timings["latency"]))

    pipeline = Pipeline(iter(clip), face, generator, sinks=[record], realtime=True, upsampler=upsampler)
    pipeline.start().wait()
    settle = int(round(SETTLE_SECONDS * clip.fps))
    return {"source_fps": round(clip.fps, 2), "settle_frames": settle, **delivery_stats(pipeline.captured, delivered, settle)}


def run_bench(source: str | Path, frames: int | None = None, json_out: str | Path | None = None,
              library: Path | None = None, avatar_name: str | None = None, engine_choice: str = "auto",
              realtime: bool = False, hires: bool = False, tracker: str = "mediapipe") -> str:
    info = probe(source)
    generator, upsampler, target, engine_info, brows, photos = None, None, _default_target(), None, True, None
    if avatar_name:
        avatar = Avatar.open(library, avatar_name)
        target, brows = avatar.subject, avatar.brows
        engine = load_engine(avatar, engine_choice)
        photos = photo_meshes(avatar, engine, load_face_model())
        generator = GeneratorStage(engine, avatar.resolution, photos)
        engine_info = {"provider": engine.provider, "precision": engine.precision}
        if hires:
            upsampler = load_upsampler_engine(avatar)
            engine_info["upsampler"] = {"provider": upsampler.provider, "precision": upsampler.precision}
    elif hires:
        raise EngineError("--hires needs --avatar (the upsampler is the avatar's own)")
    times, count, plain_fps = plain_loop(info.path, target, generator, frames, brows, upsampler, photos, tracker)
    medians = {k: round(float(np.median(v)), 3) for k, v in times.items()}
    face_total = round(sum(medians.get(k, 0.0) for k in FACE_STAGES), 3)
    report = {
        "source": str(info.path),
        "source_size": [info.width, info.height],
        "frames": count,
        "timed_frames": len(times.get("decode", [])),
        "resolution": SIZE,
        "output_resolution": 2 * SIZE if upsampler is not None else SIZE,
        "avatar": avatar_name,
        "engine": engine_info,
        "tracker": tracker,
        "stages_ms": medians,
        "face_total_ms": face_total,
        "face_path_fps": round(1000.0 / face_total, 1) if face_total else None,
        "plain_loop_fps": round(plain_fps, 2),
    }
    delivered, threaded_fps, pipeline_medians, first = threaded(info.path, target, generator, frames, brows=brows, upsampler=upsampler,
                                                                  photos=photos, tracker=tracker)
    report["threaded_fps"] = round(threaded_fps, 2)
    report["threaded_frames"] = delivered
    report["threaded_first_frame_s"] = None if first is None else round(first, 2)
    report["threaded_speedup"] = round(report["threaded_fps"] / max(report["plain_loop_fps"], 1e-6), 2)
    report["threaded_latency_ms"] = round(pipeline_medians.get("latency", 0.0), 1)
    if realtime:
        report["realtime"] = paced(info.path, target, generator, frames, brows, upsampler, photos, tracker)
    report["peak_memory_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    report["machine"] = {"cpus": os.cpu_count(), "processor": platform.machine(), "python": platform.python_version()}
    text = json.dumps(report, indent=2)
    if json_out:
        Path(json_out).write_text(text + "\n")
    return text
