"""Cut the shipped sample driving clip from a longer talking-head video.

    python scripts/make_sample_clip.py ../shared/data/video/d3.mp4 assets/sample_driver.mp4

keeps frames [--start, --start + --frames) of the head crop, downscaled to --size.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from h2h.models.geometry.crop import crop_frame
from h2h.models.source import locate_crop
from h2h.models.video import VideoWriter, probe, read_frames


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args(argv)
    info = probe(args.source)
    box = locate_crop(info)
    with VideoWriter(args.out, info.fps, (args.size, args.size)) as writer:
        for i, frame in enumerate(read_frames(info.path, args.start + args.frames)):
            if i >= args.start:
                writer.write(crop_frame(frame, box, args.size))
    print(f"{args.out}: {writer.frames} frames at {info.fps:g} fps, {args.out.stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
