"""The `h2h` command: prepare, reenact and bench (more subcommands as they work)."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..engines.base import EngineError
from ..models.avatar import AvatarError
from ..models.checkpoint import CheckpointError
from ..models.interrupts import Interrupted
from ..models.library import LIBRARY_ENV, LibraryError, check_run_name, resolve_library
from ..models.video import VideoError
from .background import BackgroundError

if TYPE_CHECKING:
    from ..models.train_config import RunOptions

log = logging.getLogger(__name__)
USER_ERRORS = (AvatarError, BackgroundError, CheckpointError, EngineError, LibraryError, VideoError, OSError)


def _fraction(text: str) -> float:
    """argparse type: a number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text!r}")
    return value


def _run_name(text: str) -> str:
    """argparse type: a run name (a plain folder name under checkpoints/)."""
    try:
        return check_run_name(text)
    except LibraryError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _count(text: str) -> int:
    """argparse type: a whole number >= 0."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return int(text)


def _positive_int(text: str) -> int:
    if _count(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """How long and where a training run goes (train and pretrain)."""
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this much training time")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    p.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="start an existing run again from scratch (its checkpoint, log and samples go)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                   help="auto: bf16 (else fp16 with a gradient scaler) autocast on a GPU, fp32 on a CPU")
    p.add_argument("--checkpoint-steps", type=_positive_int, metavar="N", help="also checkpoint every N steps (default: every 5 minutes)")
    p.add_argument("--threads", type=_positive_int, metavar="N", help="torch CPU threads (default: all cores)")
    p.add_argument("--sample-minutes", type=float, default=5.0, help="write a sample grid this often")
    p.add_argument("--seed", type=_count, default=None, help="random seed (a whole number >= 0; default 0)")


def _run_options(args: argparse.Namespace, run: str) -> RunOptions:
    from ..models.train_config import RunOptions

    return RunOptions(
        run=run,
        max_minutes=args.max_minutes,
        max_steps=args.max_steps,
        resume=args.resume,
        overwrite=args.overwrite,
        init=getattr(args, "init", None) if getattr(args, "init", None) != "none" else None,
        bases=getattr(args, "bases", None),
        device=args.device,
        vgg_weights=getattr(args, "vgg_weights", None),
        sample_minutes=args.sample_minutes,
        checkpoint_steps=args.checkpoint_steps,
        threads=args.threads,
        precision=args.precision,
    )


def _library_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--library", metavar="DIR", help=f"avatar library folder (default: ${LIBRARY_ENV}, else a per-user data folder)"
    )


def cmd_prepare(args: argparse.Namespace) -> int:
    from ..models.photo_prepare import is_photo
    from ..models.prepare import prepare

    photos = [is_photo(path) for path in args.video]
    if any(photos) and not all(photos):
        raise AvatarError("give either one video or one or more photos, not both")
    if all(photos):
        return prepare_from_photos(args)
    if len(args.video) > 1:
        raise AvatarError("give one video (several photos of one person are fine, several videos are not)")
    result = prepare(args.video[0], resolve_library(args.library), args.name, args.overwrite, args.preview, args.discard_training,
                     args.tracker)
    print(result.summary())
    for warning in result.warnings():
        print(warning, file=sys.stderr)
    if result.preview:
        print(f"preview: {result.preview} and {result.preview.with_name('preview.mp4')}")
    return 0


def prepare_from_photos(args: argparse.Namespace) -> int:
    """A one-shot avatar from photos (person-generic generator, no training)."""
    from ..export.oneshot_export import make_photo_avatar

    from ..models.oneshot_model import SHIPPED_ONESHOT

    weights = Path(args.oneshot) if args.oneshot else SHIPPED_ONESHOT
    result, export = make_photo_avatar(args.video, resolve_library(args.library), args.name, args.overwrite, weights)
    int8 = f", int8 {export.int8_psnr:.1f} dB against fp32" if export.int8_psnr is not None else f"; fp32 only: {export.int8_problem}"
    print(f"made one-shot avatar {result.path.name} from {result.frames} photo{'s' if result.frames > 1 else ''} "
          f"in {result.seconds:.1f} s (engine checked against PyTorch: {export.max_abs_error:.1e}{int8}) -> {result.path}")
    print(f"drive it: h2h live --avatar {result.path.name}")
    return 0


def cmd_reenact(args: argparse.Namespace) -> int:
    from .background import parse_background
    from .reenact import reenact

    result = reenact(
        resolve_library(args.library),
        args.avatar,
        args.source,
        args.out,
        mode=args.mode,
        max_frames=args.frames,
        conditioning_only=args.conditioning_only,
        side_by_side=args.side_by_side,
        run=args.run,
        background=parse_background(args.background),
        tracker=args.tracker,
    )
    print(result.summary())
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from ..models.base_model import bases_folder
    from ..models.pretrain import BaseTrainer, open_people
    from ..models.train_config import train_config

    overrides = {"seed": args.seed or 0, **({"warmup": args.warmup} if args.warmup is not None else {})}
    config = train_config(args.preset, **overrides)
    library = resolve_library(args.library)
    bases = bases_folder(args.bases, library)
    if os.environ.get("RANK", "0") != "0":
        logging.getLogger().setLevel(logging.WARNING)
    trainer = BaseTrainer(open_people(library, args.avatars), bases, args.out, config, _run_options(args, "main"))
    result = trainer.run()
    if os.environ.get("RANK", "0") == "0":
        print(f"pretrained base {args.out} on {len(args.avatars)} people: {result['step']} steps in {result['minutes']:.1f} min -> {result['folder']}")
    return 0


def _choose_start(args: argparse.Namespace, library: Path) -> tuple[str, str]:
    """(preset, init) of a train command: what was asked for; without --init and --preset, the
    shipped base fine-tuned when there is one (Head2HeadFS), else lite from scratch; a base
    named by --init brings its fine-tuning preset."""
    from ..models.avatar_files import AvatarFiles
    from ..models.base_model import SHIPPED_BASE, bases_folder, find_base, read_base_meta
    from ..models.train_config import finetune_preset

    init = args.init
    if init is None:
        shipped = (SHIPPED_BASE / "base.json").is_file()
        init = "base" if args.preset is None and args.ablation is None and shipped else "none"
        if init == "base":
            log.info("fine-tuning the shipped base (assets/base); --init none trains from scratch")
    if args.preset is not None or init == "none":
        return args.preset or "lite", init
    found = find_base(init, bases_folder(args.bases, library))
    if found is None:
        return "lite", init
    return finetune_preset(read_base_meta(AvatarFiles(found))[1].generator), init


def cmd_train(args: argparse.Namespace) -> int:
    from ..models.avatar import Avatar
    from ..models.checkpoint import STATE_FILE, load_state
    from ..models.train import Trainer, saved_config
    from ..models.train_config import train_config

    given = {"ablation": args.ablation, "seed": args.seed, "frames": args.frames, "epochs": args.epochs,
             "warmup": args.warmup, "ema": args.ema, "batch": args.batch}
    overrides = {k: v for k, v in given.items() if v is not None}
    library = resolve_library(args.library)
    avatar = Avatar.open(library, args.name)
    run = args.run or ("main" if not args.ablation else args.ablation)
    if args.resume and args.preset is None:  # the run's own settings, whatever the defaults are today
        path = avatar.path / "checkpoints" / run / STATE_FILE
        config = replace(saved_config(load_state(path, avatar.files), path), **overrides)
    else:
        preset, args.init = _choose_start(args, library)
        config = train_config(preset, **overrides)
    options = _run_options(args, run)
    if os.environ.get("RANK", "0") != "0":
        logging.getLogger().setLevel(logging.WARNING)  # under torchrun only rank 0 reports
    result = Trainer(avatar, config, options).run()
    if os.environ.get("RANK", "0") == "0":
        print(f"trained {args.name}: {result['step']} steps in {result['minutes']:.1f} min -> {result['folder']}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import json

    from ..models.avatar import Avatar

    if args.source and args.sheet:
        print("h2h eval: error: --sheet shows self-reenactment; with --source use --moments OUT.png", file=sys.stderr)
        return 2
    if args.source:
        return cmd_transfer_eval(args)
    if args.plot or args.moments or args.mode != "head":
        print("h2h eval: error: --plot, --moments and --mode measure transfer fidelity; add --source VIDEO", file=sys.stderr)
        return 2
    from .evaluate import available_runs, evaluate, format_table

    avatar = Avatar.open(resolve_library(args.library), args.name)
    avatar.require_video("h2h eval")
    runs = args.run or available_runs(avatar)
    if not runs:
        raise AvatarError(f"avatar '{args.name}' has no trained generator; run h2h train {args.name} first")
    results = evaluate(avatar, runs, args.frames, Path(args.sheet) if args.sheet else None)
    print(format_table(results))
    if args.sheet:
        print(f"held-out frames side by side: {args.sheet}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def cmd_transfer_eval(args: argparse.Namespace) -> int:
    """h2h eval NAME --source VIDEO: the avatar driven by a clip, features compared end to end."""
    from .transfer_eval import Moments, format_report, plot_report, transfer_eval, write_json

    moments = Moments() if args.moments else None
    report = transfer_eval(resolve_library(args.library), args.name, Path(args.source), args.mode, args.frames, moments)
    print(format_report(report))
    if args.json:
        write_json(report, Path(args.json))
    if args.plot:
        print(f"plot: {plot_report(report, Path(args.plot))}")
    if moments is not None:
        print(f"moments: {moments.grid(Path(args.moments), f'{args.name} driven by {Path(args.source).name}')}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..export.onnx_export import export_avatar
    from ..models.avatar import Avatar

    avatar = Avatar.open(resolve_library(args.library), args.name)
    if avatar.oneshot:
        print(f"{avatar.name} is a one-shot avatar: h2h prepare made and checked its ONNX and int8 models "
              "(re-run h2h prepare PHOTO --overwrite to make them again)")
    else:
        result = export_avatar(avatar, args.run, int8=args.int8)
        print(f"exported {result.onnx} (max abs error vs PyTorch {result.max_abs_error:.2e} over {result.frames_checked} frames)")
        if result.int8:
            print(f"exported {result.int8} (int8 for CPUs, {result.int8_psnr:.1f} dB PSNR vs fp32)")
    if not args.trt:
        return 0
    from ..engines.tensorrt_engine import tensorrt_missing
    from ..export.tensorrt_export import export_tensorrt

    missing = tensorrt_missing()
    if missing:
        print(f"h2h export: TensorRT engine not built: {missing}. The ONNX export is done.", file=sys.stderr)
        return 2
    trt = export_tensorrt(avatar, fp16=not args.fp32, sequential=not avatar.oneshot, rebuild=args.rebuild_trt)
    print(f"TensorRT {trt.precision} engine {trt.plan} (max abs error vs ONNX Runtime {trt.max_abs_error:.2e})")
    for note in trt.notes:
        print(f"note: {note}")
    for name in trt.removed_stale:
        print(f"removed stale engine {name}")
    return 0


def cmd_package(args: argparse.Namespace) -> int:
    from ..export.package import folder_size, package_live
    from ..models.avatar import Avatar

    path = package_live(Avatar.open(resolve_library(args.library), args.name), Path(args.out), args.overwrite)
    print(f"packaged {path} ({folder_size(path) / 1e6:.1f} MB, live only: no frames or training state)")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_bench

    library = resolve_library(args.library) if args.avatar else None
    report = run_bench(args.source, args.frames, args.json, library, args.avatar, args.engine, args.realtime, args.hires,
                       args.tracker)
    print(report)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    import json

    from .doctor import diagnose

    report = diagnose(resolve_library(args.library), args.avatar)
    print(json.dumps(report, indent=2))
    return 1 if report["onnxruntime"]["problem"] or "error" in report["live"] else 0


def build_parser() -> argparse.ArgumentParser:
    from .live import add_live_arguments, add_tracker_argument, cmd_live

    parser = argparse.ArgumentParser(prog="h2h", description="Head2Head++ avatars: prepare, train, eval, reenact, bench.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("prepare", help="turn a target video (or one or a few photos) into an avatar folder")
    p.add_argument("video", nargs="+", metavar="VIDEO_OR_PHOTOS",
                   help="video of the target person (mp4, mov, avi, mkv), or 1-8 photos of them (jpg, png, ...) for a "
                        "one-shot avatar that needs no training")
    p.add_argument("--name", required=True, help="avatar name (folder name in the library)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing avatar of that name (its checkpoints/ and engines/ are kept)")
    p.add_argument("--discard-training", action="store_true",
                   help="with --overwrite: also drop the replaced avatar's checkpoints/ and engines/")
    p.add_argument("--preview", action="store_true", help="write preview/contact_sheet.png and preview.mp4")
    p.add_argument("--oneshot", metavar="DIR", help="with photos: the person-generic generator to use (a folder from "
                                                     "h2h train-oneshot; default: the shipped one)")
    add_tracker_argument(p, note=" (tracks a video; photos always use MediaPipe)")
    _library_arg(p)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("reenact", help="drive an avatar from a source video, offline")
    p.add_argument("--avatar", required=True, help="avatar name in the library")
    p.add_argument("--source", help="driving video (not needed with --mode self)")
    p.add_argument("--out", required=True, help="output mp4")
    p.add_argument(
        "--mode", choices=("head", "face", "self"), default="head",
        help="head: pose+expression+gaze; face: expression+gaze; self: the avatar's own test frames",
    )
    p.add_argument("--side-by-side", action="store_true", help="source | conditioning | output")
    p.add_argument("--conditioning-only", action="store_true", help="no generator: source | NMFC | eyes | overlay")
    p.add_argument("--run", type=_run_name, help="which training run's generator (default: the exported one, else main)")
    p.add_argument("--frames", type=int, default=None, help="stop after N source frames")
    p.add_argument("--background", default="keep", metavar="keep|blur|color:RRGGBB|PATH",
                   help="what goes behind the person (needs a generator with a mask: fine-tuned from the base)")
    add_tracker_argument(p)
    _library_arg(p)
    p.set_defaults(func=cmd_reenact)

    p = sub.add_parser("train", help="train an avatar's generator (Head2Head++ GAN)")
    p.add_argument("name", help="avatar name in the library")
    p.add_argument("--preset", choices=("lite", "paper", "tiny", "finetune", "finetune-tiny"), default=None,
                   help="network size and losses (default: finetune when --init names a base, else lite; the tiny ones are for smoke tests)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: the preset's, 40 + 20 decay)")
    p.add_argument("--init", metavar="BASE_OR_AVATAR", default=None,
                   help="base: fine-tune the shipped multi-person base (the default when one is shipped and no --preset is given); "
                        "NAME: a base from h2h pretrain, or another avatar's run; a state.pt file; none: from scratch")
    p.add_argument("--bases", metavar="DIR", help="where --init looks for bases by name (default: $H2H_BASES, else 'bases' beside the library)")
    p.add_argument("--frames", type=_positive_int, metavar="N", help="train on the first N frames of the train split only (few-shot: 50-500)")
    p.add_argument("--ablation", choices=("l1-single",), help="l1-single: L1 loss only, single frames, no GAN")
    p.add_argument("--warmup", type=_fraction, default=None, metavar="FRACTION",
                   help="fraction of the run trained on single frames with L1 before the GAN (default: the preset's)")
    p.add_argument("--ema", type=_fraction, default=None, metavar="DECAY",
                   help="decay of the saved weight average of the generator, 0 = off (default: the preset's)")
    p.add_argument("--batch", type=_positive_int, default=None, help="sequences per step and process (default: 1)")
    p.add_argument("--run", type=_run_name, help="run name, a folder under checkpoints/ (default: main, or the ablation's name)")
    p.add_argument("--vgg-weights", metavar="PATH", help="torchvision vgg19-dcbb9e9d.pth for the perceptual loss")
    _add_run_options(p)
    _library_arg(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("pretrain", help="train a multi-person base that new avatars fine-tune from (Head2HeadFS)")
    p.add_argument("--avatars", nargs="+", required=True, metavar="NAME", help="the prepared avatars (people) to learn from")
    p.add_argument("--out", required=True, metavar="NAME", help="base name; the base goes to BASES/NAME")
    p.add_argument("--bases", metavar="DIR", help="where bases live (default: $H2H_BASES, else 'bases' beside the library)")
    p.add_argument("--preset", choices=("base", "base-tiny"), default="base", help="network size (base-tiny is for smoke tests)")
    p.add_argument("--warmup", type=_fraction, default=None, metavar="FRACTION", help="single-frame L1 share of the run (default: the preset's)")
    _add_run_options(p)
    _library_arg(p)
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("eval", help="self-reenactment metrics on the held-out test split")
    p.add_argument("name", help="avatar name in the library")
    p.add_argument("--run", action="append", type=_run_name, help="training run(s) to score (default: all)")
    p.add_argument("--frames", type=int, default=None, help="score only the first N test frames")
    p.add_argument("--json", metavar="OUT", help="also write the metrics as JSON")
    p.add_argument("--sheet", metavar="OUT.png", help="also save three held-out frames as every run made them, beside the real ones")
    p.add_argument("--source", metavar="VIDEO",
                   help="transfer fidelity instead: drive the avatar with this clip and compare eyes, brows, mouth, gaze and pose")
    p.add_argument("--plot", metavar="OUT.png", help="with --source: the source, conditioning and output curves per feature")
    p.add_argument("--moments", metavar="OUT.png",
                   help="with --source: the clip's clearest wink, frown, raised brows, O mouth and lowered lids, "
                        "as source | conditioning | output")
    p.add_argument("--mode", choices=("head", "face"), default="head", help="with --source: reenactment mode")
    _library_arg(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("export", help="compile the trained generator to ONNX (and TensorRT)")
    p.add_argument("name", help="avatar name in the library")
    p.add_argument("--onnx", action="store_true", help="export ONNX (always done; the flag is for clarity)")
    p.add_argument("--trt", action="store_true", help="also build a TensorRT engine for this GPU")
    p.add_argument("--int8", action="store_true", help="also write an int8 model for CPUs (calibrated on the avatar)")
    precision = p.add_mutually_exclusive_group()
    precision.add_argument("--fp16", action="store_true", help="TensorRT in FP16 (default)")
    precision.add_argument("--fp32", action="store_true", help="TensorRT in FP32")
    p.add_argument("--rebuild-trt", action="store_true", help="build the TensorRT engine again, even one that was rejected before")
    p.add_argument("--run", default="main", type=_run_name, help="which training run to export (default: main)")
    _library_arg(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("upsampler", help="learn the avatar's 512x512 output from its source video, export and score it")
    from .upsampling import add_upsampler_arguments, cmd_upsampler

    add_upsampler_arguments(p)
    _library_arg(p)
    p.set_defaults(func=cmd_upsampler)

    from . import facereg_commands as facereg
    from . import oneshot_commands as oneshot

    for name, help_text, add_arguments, func in (
        ("train-facereg", "distil DenseFaceReg, the project's own dense face regressor, from MediaPipe",
         facereg.add_train_arguments, facereg.cmd_train_facereg),
        ("eval-facereg", "score DenseFaceReg against MediaPipe on people it never saw", facereg.add_eval_arguments, facereg.cmd_eval_facereg),
        ("export-facereg", "DenseFaceReg to ONNX (and int8) and TensorRT, each checked", facereg.add_export_arguments, facereg.cmd_export_facereg),
        ("train-oneshot", "train the person-generic generator that turns one photo into an avatar",
         oneshot.add_train_arguments, oneshot.cmd_train_oneshot),
        ("eval-oneshot", "score the one-shot generator's self-reenactment on clips of people it never saw",
         oneshot.add_eval_arguments, oneshot.cmd_eval_oneshot),
    ):
        p = sub.add_parser(name, help=help_text)
        add_arguments(p)
        _library_arg(p)
        p.set_defaults(func=func)

    p = sub.add_parser("package", help="copy what the live app needs of an avatar (to share or ship it)")
    p.add_argument("name", help="avatar name in the library")
    p.add_argument("--out", required=True, help="folder to write <name>/ into")
    p.add_argument("--overwrite", action="store_true")
    _library_arg(p)
    p.set_defaults(func=cmd_package)

    p = sub.add_parser("live", help="the live app: drive an avatar from a webcam into a virtual camera")
    add_live_arguments(p)
    p.set_defaults(func=cmd_live)

    p = sub.add_parser("doctor", help="versions, GPU, ONNX Runtime providers, TensorRT, and the engine live will use (JSON)")
    p.add_argument("--avatar", help="avatar to check (default: as h2h live picks)")
    _library_arg(p)
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("bench", help="per-stage timings of the live path, as JSON")
    p.add_argument("--source", required=True, help="driving video")
    p.add_argument("--frames", type=int, default=None, help="use at most N frames")
    p.add_argument("--json", metavar="OUT", help="also write the JSON report here")
    p.add_argument("--avatar", help="include the generator of this avatar")
    p.add_argument("--engine", choices=("auto", "trt", "onnx", "torch"), default="auto", help="generator engine")
    p.add_argument("--realtime", action="store_true",
                   help="also play the clip at its frame rate through the live pipeline: frames delivered, drops, latency p50/p95, jitter")
    p.add_argument("--hires", action="store_true", help="with --avatar: 512x512 output through its learned upsampler")
    add_tracker_argument(p)
    _library_arg(p)
    p.set_defaults(func=cmd_bench)
    return parser


INTERRUPTED = {  # what an interrupt leaves behind, per command
    "": "nothing already saved was changed",
    "train": "the last checkpoint (every 5 minutes) is kept; add --resume to the same command to continue",
    "pretrain": "the last checkpoint (every 5 minutes) is kept; add --resume to the same command to continue",
    "upsampler": "the last checkpoint (every 2 minutes) is kept; add --resume to the same command to continue",
    "train-facereg": "the last checkpoint (every 2 minutes) is kept; add --resume to the same command to continue",
    "train-oneshot": "the last checkpoint (every 2 minutes) is kept; add --resume to the same command to continue",
}
STOPPED = {  # after a clean stop between steps (Ctrl-C or SIGTERM)
    "": "stopped; nothing already saved was changed",
    "train": "stopped after checkpointing the last finished step; add --resume to the same command to continue",
    "pretrain": "stopped after checkpointing the last finished step; add --resume to the same command to continue",
    "upsampler": "stopped after checkpointing the last finished step; add --resume to the same command to continue",
    "train-facereg": "stopped after checkpointing the last finished step; add --resume to the same command to continue",
    "train-oneshot": "stopped after checkpointing the last finished step; add --resume to the same command to continue",
}


def run(argv: list[str] | None, handlers: tuple[type[BaseException], ...] = USER_ERRORS) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except handlers as exc:
        print(f"h2h {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except Interrupted as stop:
        print(f"h2h {args.command}: {STOPPED.get(args.command, STOPPED[''])}", file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:
        print(f"h2h {args.command}: interrupted; {INTERRUPTED.get(args.command, INTERRUPTED[''])}", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
