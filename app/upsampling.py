"""`h2h upsampler NAME --video VIDEO`: the avatar's learned 512x512 output (issue 18).

Trains the run's upsampler on the generator's own re-renderings of the train split (by the
engine the live app uses for it) against the same frames cropped again from the source video
at 512, exports it to ONNX (and int8), and scores 512 output on the held-out test split:
learned upsampler vs bicubic, beside the 256 output scored at 256.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..engines import Engine
from ..engines import load as load_engine
from ..engines.stepper import image_to_input, output_to_image
from ..engines.upsampler_engine import load_upsampler_engine
from ..models.avatar import Avatar
from ..models.library import check_run_name, resolve_library
from ..models.metrics import frame_metrics, summarise
from ..models.networks.upsampler import SCALE, UPSAMPLER_PRESETS
from ..models.source import hires_crops
from ..models.upsampler_training import UPSAMPLER_TRAIN_PRESETS, UpsamplerPairs, UpsamplerTrainer
from .evaluate import self_reenactment

MAX_PAIRS = 1200  # train frames kept in memory (~1.2 MB each at 512)


def upsampler_pairs(avatar: Avatar, engine: Engine, video: Path, max_frames: int = MAX_PAIRS) -> UpsamplerPairs:
    """The engine's self-reenactment of the first `max_frames` train frames (what the upsampler
    sees live), the stored frames and their 512 re-crops."""
    indices = avatar.split_indices("train")[:max_frames]
    frames = tqdm(self_reenactment(avatar, engine, indices), total=len(indices), desc="generator outputs", unit="f", leave=False)
    generated = np.stack([frame for frame, _ in frames])
    real = np.stack([avatar.read_image("frame", int(i)) for i in indices])
    return UpsamplerPairs(generated, real, hires_crops(avatar, video, indices, SCALE * avatar.resolution))


def hires_scores(avatar: Avatar, engine: Engine, upsampler, video: Path, max_frames: int | None = None) -> dict[str, dict]:
    """Pixel metrics on the test split: at 512 the learned upsampler and bicubic, both on the
    generator's own 256 output, against the 512 re-crops; and that output at 256 against the
    stored frames."""
    indices = avatar.split_indices("test")[:max_frames]
    hires = hires_crops(avatar, video, indices, SCALE * avatar.resolution)
    mouth = avatar.tracks["mouth"]
    rows: dict[str, list] = {"learned upsampler": [], "bicubic": [], "256 output": []}
    frames = tqdm(self_reenactment(avatar, engine, indices), total=len(indices), desc="512 output", unit="f", leave=False)
    for n, (i, (frame, _)) in enumerate(zip(indices, frames)):
        size = hires.shape[1]
        face = avatar.read_image("nmfc", int(i)).any(-1)
        face_hires = cv2.resize(face.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST) > 0
        learned = output_to_image(upsampler.run(image_to_input(frame)[None])[0])
        bicubic = cv2.resize(frame, (size, size), interpolation=cv2.INTER_CUBIC)
        for name, image in (("learned upsampler", learned), ("bicubic", bicubic)):
            rows[name].append(frame_metrics(image, hires[n], face_hires, mouth[i] * SCALE, (None, None)))
        rows["256 output"].append(frame_metrics(frame, avatar.read_image("frame", int(i)), face, mouth[i], (None, None)))
    return {name: summarise(r) for name, r in rows.items()}


def cmd_upsampler(args: argparse.Namespace) -> int:
    from ..export.upsampler_export import export_upsampler

    avatar = Avatar.open(resolve_library(args.library), args.name)
    avatar.require_video("h2h upsampler")
    check_run_name(args.run)
    video = Path(args.video)
    folder = avatar.files.path(f"checkpoints/{args.run}")
    engine = load_engine(avatar, run=args.run)
    if args.minutes > 0:
        pairs = upsampler_pairs(avatar, engine, video, args.max_frames)
        trainer = UpsamplerTrainer(pairs, folder, UPSAMPLER_TRAIN_PRESETS[args.preset], args.minutes, args.resume, avatar.files)
        result = trainer.run()
        print(f"trained the upsampler of {args.name}/{args.run}: {result['step']} steps in {result['minutes']:.1f} min")
    exported = export_upsampler(avatar, args.run, int8=args.int8)
    print(f"exported {exported.onnx} (max abs error vs PyTorch {exported.max_abs_error:.2e})")
    if exported.int8:
        print(f"exported {exported.int8} (int8 for CPUs, {exported.int8_psnr:.1f} dB PSNR vs fp32)")
    if args.score:
        upsampler = load_upsampler_engine(avatar, run=args.run)
        scores = hires_scores(avatar, engine, upsampler, video, args.score)
        for name, metrics in scores.items():
            print(f"{name:>18}: " + "  ".join(f"{k} {metrics[k]:.3f}" for k in ("masked_apd", "mouth_apd", "psnr", "sharpness")))
        if args.json:
            Path(args.json).write_text(json.dumps(scores, indent=2) + "\n")
    return 0


def add_upsampler_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="avatar name in the library")
    p.add_argument("--video", required=True, help="the video the avatar was prepared from (its frames are cropped again at 512)")
    p.add_argument("--run", default="main", help="the generator run it upsamples (default: main; its exported engine when there is one)")
    p.add_argument("--minutes", type=float, default=10.0, help="training time, total over resumes (0: export and score only)")
    p.add_argument("--preset", choices=tuple(UPSAMPLER_PRESETS), default="lite", help="network size (tiny is for smoke tests)")
    p.add_argument("--resume", action="store_true", help="continue the last upsampler training of this run")
    p.add_argument("--int8", action="store_true", help="also write an int8 model for CPUs")
    p.add_argument("--max-frames", type=int, default=MAX_PAIRS, help="train frames to learn from")
    p.add_argument("--score", type=int, default=0, metavar="N",
                   help="then score 512 output on N test frames: learned upsampler vs bicubic (masked APD, mouth APD, PSNR, sharpness)")
    p.add_argument("--json", metavar="OUT", help="with --score: also write the scores as JSON")
