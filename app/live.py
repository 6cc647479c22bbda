"""`h2h live`: the desktop app, or the same pipeline headless (servers, scripts, tests)."""
from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from pathlib import Path

import numpy as np

from ..engines.base import EngineError
from ..models.avatar import AvatarError
from ..models.geometry.tracker import TRACKERS
from ..models.library import resolve_library
from .background import parse_background
from .session import AvatarEntry, LiveSession, available_avatars, load_avatar
from .sinks import OUTPUT_SIZES, VirtualCameraError
from .sources import FrameSource, list_cameras, open_source

log = logging.getLogger(__name__)
DEFAULT_SIZE = "1280x720"
SAMPLE_CLIP = Path(__file__).resolve().parents[1] / "assets" / "sample_driver.mp4"


def pick_avatar(library: Path, name: str | None) -> AvatarEntry:
    """The named avatar, else the first bundled demo, else the first in the library. A named
    avatar that is in the library but cannot be opened raises why."""
    problems: list[str] = []
    entries = available_avatars(library, problems)
    for problem in problems:
        if name is not None and problem.startswith(f"{name}: "):
            raise AvatarError(problem.removeprefix(f"{name}: "))
    if not entries:
        raise AvatarError("no avatars in the library and no bundled demo; run h2h prepare and h2h train first")
    if name is None:
        return next((e for e in entries if e.bundled), entries[0])
    for entry in entries:
        if entry.name == name:
            return entry
    raise AvatarError(f"no avatar '{name}'; available: {', '.join(e.name for e in entries)}")


def default_source_spec() -> tuple[str, str]:
    """(spec, note): the first webcam, else the bundled sample clip."""
    cameras = list_cameras()
    if cameras:
        return str(cameras[0].index), f"driving from {cameras[0].label}"
    return str(SAMPLE_CLIP), f"no webcam found; driving from the bundled sample clip {SAMPLE_CLIP.name}"


def run_headless(args: argparse.Namespace) -> int:
    """Run the live pipeline without a window and print a JSON summary."""
    entry = pick_avatar(resolve_library(args.library), args.avatar)
    loaded = load_avatar(entry, args.engine, args.device)
    print(f"avatar {entry.name}{' (bundled demo)' if entry.bundled else ''}: engine {loaded.engine.provider}, {loaded.engine.precision}")
    spec, note = (args.source, None) if args.source else default_source_spec()
    if note:
        print(note)
    camera = spec.isdigit()
    # a file is read frame by frame (one output per source frame) unless --realtime
    realtime = camera or args.realtime
    source: FrameSource = open_source(spec, realtime=realtime, max_frames=args.frames, loop=bool(args.frames) and not args.record,
                                      give_up_after=args.camera_timeout)
    session = LiveSession(mode=args.mode or "head")
    problem = session.set_tracker(args.tracker or "mediapipe")
    if problem:
        raise EngineError(problem)
    session.set_avatar(loaded)
    problem = session.set_background(parse_background(args.background))
    if problem:
        print(f"background: {problem}")
    hires_off = session.set_hires(args.hires) if args.hires else None
    if hires_off:
        print(f"512x512 off: {hires_off}")
    own_size = 2 * loaded.avatar.resolution if session.hires and not hires_off else loaded.avatar.resolution
    size = OUTPUT_SIZES[args.size or DEFAULT_SIZE]
    if args.vcam:
        try:
            cam = session.open_vcam(size, source.fps)
            print(f"virtual camera: {cam.backend} ({cam.device}), {size[0]}x{size[1]}")
        except VirtualCameraError as exc:
            print(f"virtual camera off: {exc}")
    if args.record:
        record_size = size if args.record_size_output else (own_size, own_size)
        session.start_recording(Path(args.record), record_size, source.fps, paced=realtime)
    done = threading.Event()
    delivered, faces = [0], [0]

    def count(packet) -> None:
        delivered[0] += 1
        faces[0] += packet.face_found
        if args.frames and delivered[0] >= args.frames:
            done.set()

    started = time.perf_counter()
    session.start(source, realtime, extra_sinks=[count], keep_all_timings=True)
    try:
        while session.running and not done.is_set():
            done.wait(0.2)
    except KeyboardInterrupt:
        print("stopping")
    finally:
        elapsed = time.perf_counter() - started
        session.stop()
        recorder = session.stop_recording()
        session.close()
    stats = session_stats(session, delivered[0], elapsed)
    stats["frames_with_face"] = faces[0]
    stats["tracker"] = session.tracker
    if recorder is not None:
        stats["recorded"] = {"path": str(recorder.path), "frames": recorder.frames, "codec": recorder.codec}
    print(json.dumps(stats, indent=2))
    if session.error is not None:
        print(f"h2h live: error: the pipeline stopped: {session.error}", file=sys.stderr)
        return 1
    if delivered[0] and not faces[0]:
        print(f"h2h live: error: no face in any of the {delivered[0]} frames of {source.name}; the avatar was never "
              "driven (the output is blank). Use a source where one face is clearly visible", file=sys.stderr)
        return 1
    return 0


def session_stats(session: LiveSession, delivered: int, seconds: float) -> dict:
    pipeline_stats = session.pipeline_stats
    medians = {k: round(float(np.median(v)), 2) for k, v in pipeline_stats.all_ms.items()} if pipeline_stats else {}
    return {
        "frames": delivered,
        "seconds": round(seconds, 2),
        "fps": round(delivered / max(seconds, 1e-6), 2),
        "dropped": session.dropped,
        "stages_ms": medians,
    }


def add_tracker_argument(p: argparse.ArgumentParser, default: str | None = "mediapipe", note: str = "") -> None:
    p.add_argument("--tracker", choices=TRACKERS, default=default,
                   help=f"face tracker: MediaPipe's face mesh, or the project's DenseFaceReg network (faster; MediaPipe "
                        f"still finds the face){note}")


def add_live_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--headless", action="store_true", help="no window: run the pipeline and print a summary")
    p.add_argument("--start", action="store_true", help="start driving as soon as the window opens")
    p.add_argument("--avatar", help="avatar name (default: the last used, else the bundled demo)")
    p.add_argument("--source", help="camera index (0, 1, ...) or a video file (default: first webcam, else the sample clip)")
    p.add_argument("--mode", choices=("head", "face"), help="head (pose + expression + gaze) or face (expression + gaze); default head, or the window's last")
    p.add_argument("--engine", choices=("auto", "trt", "onnx", "torch"), default="auto")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the PyTorch engine runs (with --engine torch)")
    add_tracker_argument(p, None, "; default mediapipe, or the window's last")
    p.add_argument("--vcam", action="store_true", help="send the avatar to a virtual camera")
    p.add_argument("--record", metavar="OUT.mp4", help="record the avatar to an mp4")
    p.add_argument("--record-size-output", action="store_true", help="record at --size instead of the avatar's own size (256, or 512 with --hires)")
    p.add_argument("--hires", action="store_true", help="512x512 avatar through its learned upsampler (made by h2h upsampler)")
    p.add_argument("--size", choices=tuple(OUTPUT_SIZES), help=f"virtual camera (and --record-size-output) size; default {DEFAULT_SIZE}, or the window's last")
    p.add_argument("--frames", type=int, help="stop after N frames")
    p.add_argument("--background", default="keep", metavar="keep|blur|color:RRGGBB|PATH",
                   help="what goes behind the person: the avatar's own (keep, default), blurred, a colour or an image")
    p.add_argument("--realtime", action="store_true", help="pace a video file like a camera (frames may drop)")
    p.add_argument("--camera-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="headless: give up when the camera gives no frame in this time (default 10)")
    p.add_argument("--library", metavar="DIR", help="avatar library folder")


def cmd_live(args: argparse.Namespace) -> int:
    if args.headless:
        return run_headless(args)
    from .gui.main_window import run_gui

    return run_gui(args)
