"""The `h2h` command: prepare, reenact and bench (more subcommands as they work)."""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from ..models.avatar import AvatarError
from ..models.library import LIBRARY_ENV, LibraryError, resolve_library
from ..models.video import VideoError

USER_ERRORS = (AvatarError, LibraryError, VideoError, FileNotFoundError, PermissionError)


def _library_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--library", metavar="DIR", help=f"avatar library folder (default: ${LIBRARY_ENV}, else a per-user data folder)"
    )


def cmd_prepare(args: argparse.Namespace) -> int:
    from ..models.prepare import prepare

    result = prepare(args.video, resolve_library(args.library), args.name, args.overwrite, args.preview)
    print(result.summary())
    if result.preview:
        print(f"preview: {result.preview} and {result.preview.with_name('preview.mp4')}")
    return 0


def cmd_reenact(args: argparse.Namespace) -> int:
    from .reenact import reenact

    if not args.conditioning_only:
        raise AvatarError("the generator is not available yet; pass --conditioning-only to render NMFC + eyes")
    result = reenact(
        resolve_library(args.library), args.avatar, args.source, args.out, mode=args.mode, max_frames=args.frames
    )
    print(result.summary())
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_bench

    report = run_bench(args.source, frames=args.frames, json_out=args.json)
    print(report)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="h2h", description="Head2Head++ avatars: prepare, reenact, bench.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("prepare", help="turn a target video into an avatar folder")
    p.add_argument("video", help="video of the target person (mp4, mov, avi, mkv)")
    p.add_argument("--name", required=True, help="avatar name (folder name in the library)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing avatar of that name")
    p.add_argument("--preview", action="store_true", help="write preview/contact_sheet.png and preview.mp4")
    _library_arg(p)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("reenact", help="drive an avatar from a source video, offline")
    p.add_argument("--avatar", required=True, help="avatar name in the library")
    p.add_argument("--source", required=True, help="driving video")
    p.add_argument("--out", required=True, help="output mp4")
    p.add_argument("--mode", choices=("head", "face"), default="head", help="head: pose+expression+gaze; face: expression+gaze")
    p.add_argument("--conditioning-only", action="store_true", help="render NMFC + eye sketch beside the source")
    p.add_argument("--frames", type=int, default=None, help="stop after N source frames")
    _library_arg(p)
    p.set_defaults(func=cmd_reenact)

    p = sub.add_parser("bench", help="per-stage timings of the live path, as JSON")
    p.add_argument("--source", required=True, help="driving video")
    p.add_argument("--frames", type=int, default=None, help="use at most N frames")
    p.add_argument("--json", metavar="OUT", help="also write the JSON report here")
    p.set_defaults(func=cmd_bench)
    return parser


def run(argv: list[str] | None, handlers: tuple[type[BaseException], ...] = USER_ERRORS) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except handlers as exc:
        print(f"h2h {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"h2h {args.command}: interrupted; nothing already saved was changed", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
