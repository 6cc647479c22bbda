"""`h2h train-oneshot` and `h2h eval-oneshot`: the person-generic one-shot generator
(Free-HeadGAN path, issue 15), trained on self-reenactment pairs of prepared avatars and
scored on clips of people it never saw."""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from ..models.avatar import Avatar
from ..models.io_utils import atomic_write_bytes
from ..models.library import resolve_library
from ..models.oneshot_data import PairSamples
from ..models.oneshot_model import SHIPPED_ONESHOT
from ..models.oneshot_training import ONESHOT_STATE, ONESHOT_TRAIN_PRESETS, OneShotTrainer
from .timed_commands import add_timed_training_arguments, run_folder


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    add_timed_training_arguments(p, ONESHOT_TRAIN_PRESETS, 90.0, "frames")
    p.add_argument("--init", metavar="DIR", help="start from the generator of another run (e.g. --preset gan after an L1 run)")
    p.add_argument("--sources", type=int, choices=range(1, 5), metavar="K",
                   help="source frames per training pair (1-4; more than 1 trains the N-shot attention; default: the preset's)")


def cmd_train_oneshot(args: argparse.Namespace) -> int:
    library = resolve_library(args.library)
    out = run_folder(args, ONESHOT_STATE, "one-shot")
    avatars = [Avatar.open(library, name) for name in args.avatars]
    for avatar in avatars:
        avatar.require_video("one-shot training")
    samples = PairSamples(avatars)
    init = Path(args.init) if args.init else None
    config = ONESHOT_TRAIN_PRESETS[args.preset]
    if args.sources is not None:
        config = replace(config, sources=args.sources)
    trainer = OneShotTrainer(samples, out, config, args.minutes, args.resume, init=init)
    result = trainer.run(max_steps=args.max_steps)
    print(f"trained the one-shot generator on {samples.frames()} frames of {len(avatars)} people: "
          f"{result['step']} steps in {result['minutes']:.1f} min -> {out} (samples: {out / 'samples.png'})")
    return 0


def _shots(text: str) -> int:
    """argparse type: a number of source frames, 1 to MAX_PHOTOS."""
    from ..models.manifest import MAX_PHOTOS

    if not text.isdigit() or not 1 <= int(text) <= MAX_PHOTOS:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_PHOTOS}")
    return int(text)


def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--avatars", nargs="+", required=True, metavar="NAME", help="prepared clips of people it never saw")
    p.add_argument("--oneshot", metavar="DIR", help="a folder from h2h train-oneshot (default: the shipped generator)")
    p.add_argument("--shots", nargs="+", type=_shots, default=[1, 4], metavar="N", help="source frames per run (default: 1 4)")
    p.add_argument("--frames", type=int, default=None, help="score at most N test frames per clip")
    p.add_argument("--sheet", metavar="DIR", help="save a PNG of a few frames per method and clip in DIR")
    p.add_argument("--json", metavar="OUT", help="also write the results as JSON")


def cmd_eval_oneshot(args: argparse.Namespace) -> int:
    from .evaluate import format_table
    from .oneshot_eval import evaluate_oneshot

    library = resolve_library(args.library)
    weights = Path(args.oneshot) if args.oneshot else SHIPPED_ONESHOT
    sheets = Path(args.sheet) if args.sheet else None
    if sheets is not None:
        sheets.mkdir(parents=True, exist_ok=True)
    report = {}
    for name in args.avatars:
        avatar = Avatar.open(library, name)
        sheet = sheets / f"oneshot_{name}.png" if sheets else None
        report[name] = evaluate_oneshot(avatar, weights, args.shots, args.frames, sheet)
        print(f"{name} (test split, {report[name][next(iter(report[name]))]['frames']} frames)")
        print(format_table(report[name]))
    if args.json:
        atomic_write_bytes(Path(args.json), json.dumps(report, indent=2).encode())
    return 0
