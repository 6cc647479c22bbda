"""What the commands of the small time-bounded trainers share (train-facereg, train-oneshot):
their arguments and the guard that keeps a run from being overwritten by accident."""
from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path


def add_timed_training_arguments(p: argparse.ArgumentParser, presets: Iterable[str], minutes: float, learns_from: str) -> None:
    p.add_argument("--avatars", nargs="+", required=True, metavar="NAME", help=f"prepared avatars whose {learns_from} it learns from")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the weights, the resumable state and samples.png")
    p.add_argument("--preset", choices=sorted(presets), default="small", help="network size (tiny is for smoke tests)")
    p.add_argument("--minutes", type=float, default=minutes, help=f"training time in all, over resumes (default: {minutes:g})")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps in all")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")


def run_folder(args: argparse.Namespace, state_file: str, what: str) -> Path:
    """--out, refused when it holds a run and --resume was not given."""
    out = Path(args.out)
    if not args.resume and (out / state_file).exists():
        raise FileExistsError(f"{out} already holds a {what} run; add --resume to continue it or pick another --out")
    return out
