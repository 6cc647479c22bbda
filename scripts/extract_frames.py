"""Save chosen frames of a video as PNGs (for docs and visual checks).

    python scripts/extract_frames.py out.mp4 docs/images/d3_on_d6 --frames 40 120 200
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

from h2h.models.video import read_frames


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("video", type=Path)
    parser.add_argument("prefix", help="output path prefix; _<frame>.png is appended")
    parser.add_argument("--frames", type=int, nargs="+", required=True)
    args = parser.parse_args(argv)
    wanted = set(args.frames)
    Path(args.prefix).parent.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(read_frames(args.video, max(wanted) + 1)):
        if i in wanted:
            path = f"{args.prefix}_{i:04d}.png"
            cv2.imwrite(path, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
