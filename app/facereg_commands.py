"""`h2h train-facereg` and `h2h eval-facereg`: the project's own dense face regressor
(DenseFaceReg, issue 16), distilled from MediaPipe over prepared avatars and scored against
it on people it never saw."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from ..engines.base import EngineError
from ..models.facereg_data import FaceSamples
from ..models.facereg_eval import evaluate, format_report
from ..models.facereg_training import FACEREG_STATE, FACEREG_TRAIN_PRESETS, FaceRegTrainer
from ..models.geometry.facereg_tracker import CALIBRATION_FRAMES
from ..models.io_utils import atomic_write_bytes
from ..models.library import resolve_library
from .live import SAMPLE_CLIP
from .timed_commands import add_timed_training_arguments, run_folder


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    add_timed_training_arguments(p, FACEREG_TRAIN_PRESETS, 30.0, "frames and tracks")
    p.add_argument("--seed", type=int, default=0, help="the run's random seed (weights, sampling, augmentation; default 0)")


def cmd_train_facereg(args: argparse.Namespace) -> int:
    library = resolve_library(args.library)
    out = run_folder(args, FACEREG_STATE, "DenseFaceReg")
    samples = FaceSamples.from_avatars(library, args.avatars)
    trainer = FaceRegTrainer(samples, out, replace(FACEREG_TRAIN_PRESETS[args.preset], seed=args.seed), args.minutes, args.resume, people=sorted(args.avatars))
    result = trainer.run(max_steps=args.max_steps)
    print(f"trained DenseFaceReg on {len(samples.images)} frames of {len(args.avatars)} people: "
          f"{result['step']} steps in {result['minutes']:.1f} min -> {out} (samples: {out / 'samples.png'})")
    return 0


def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", help="a DenseFaceReg folder (from h2h train-facereg)")
    p.add_argument("--avatars", nargs="+", required=True, metavar="NAME", help="prepared avatars to score it on (people it never saw)")
    p.add_argument("--json", metavar="OUT", help="also write the report as JSON")
    p.add_argument("--eyes", metavar="DIR", help="also run this eye network (h2h train-facereg --preset eye) on each eye")
    p.add_argument("--mouth", metavar="DIR", help="also run this mouth network (h2h train-facereg --preset mouth) on the mouth")
    p.add_argument("--calibration", type=int, default=CALIBRATION_FRAMES, metavar="N",
                   help=f"frames after each find on which the teacher calibrates the network, as the live tracker does "
                        f"(default {CALIBRATION_FRAMES}; 0: the network alone)")
    p.add_argument("--no-mirror", dest="mirror", action="store_false",
                   help="score each network on its crop alone, not averaged with its answer on the mirrored crop as exported")


def cmd_eval_facereg(args: argparse.Namespace) -> int:
    stages = {part: Path(folder) for part, folder in (("eye", args.eyes), ("mouth", args.mouth)) if folder}
    report = evaluate(Path(args.folder), resolve_library(args.library), args.avatars, calibration=args.calibration, stage_folders=stages,
                      mirror=args.mirror)
    print(format_report(report))
    if args.json:
        atomic_write_bytes(Path(args.json), json.dumps(report, indent=2).encode())
    return 0


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", nargs="?", help="a DenseFaceReg folder (from h2h train-facereg); with --trt alone, default: the shipped one")
    p.add_argument("--avatars", nargs="+", metavar="NAME",
                   help="export the folder's trained network to ONNX, checked (and calibrated) on these prepared avatars' crops")
    p.add_argument("--int8", action="store_true", help="also write an int8 model for CPUs")
    p.add_argument("--no-mirror", dest="mirror", action="store_false",
                   help="export the network alone, not averaged with its answer on the mirrored crop (the face and mouth networks are by default)")
    p.add_argument("--trt", action="store_true",
                   help="build TensorRT engines of the folder's networks for this GPU (fp32), each checked against ONNX Runtime")
    p.add_argument("--rebuild-trt", action="store_true", help="build the TensorRT engines again, even ones rejected before")
    p.add_argument("--clip", type=Path, default=SAMPLE_CLIP, help="video whose frames check the TensorRT engines (default: the bundled sample)")


def cmd_export_facereg(args: argparse.Namespace) -> int:
    if not args.avatars and not args.trt or args.avatars and not args.folder:
        print("h2h export-facereg: give a folder h2h train-facereg trained into and --avatars NAME ... to export it to ONNX, "
              "and/or --trt to build TensorRT engines of its networks (of the shipped ones without a folder)", file=sys.stderr)
        return 2
    if args.avatars:
        from ..export.facereg_export import export_facereg

        samples = FaceSamples.from_avatars(resolve_library(args.library), args.avatars, progress=False)
        report = export_facereg(Path(args.folder), samples, args.int8, args.mirror)
        print(f"exported {report['onnx']} (max abs error vs PyTorch {report['max_abs_error']:.2e})")
        if "int8" in report:
            print(f"exported {report['int8']} (mean point error vs fp32 {report['int8_mean_error']:.4f} of half the crop)")
    if args.trt:
        return build_tensorrt(Path(args.folder) if args.folder else None, args.clip, args.rebuild_trt)
    return 0


def build_tensorrt(folder: Path | None, clip: Path, rebuild: bool) -> int:
    """The TensorRT engines of a DenseFaceReg folder's networks: exit 1 when one was rejected (the
    others are built), 2 saying why there can be none."""
    from ..engines.tensorrt_engine import tensorrt_missing
    from ..export.tensorrt_export import export_facereg_tensorrt

    missing = tensorrt_missing()
    if missing:
        print(f"h2h export-facereg: TensorRT engines not built: {missing}. The tracker runs on ONNX Runtime.", file=sys.stderr)
        return 2
    results = export_facereg_tensorrt(folder, clip, rebuild)
    for result in results:
        if isinstance(result, EngineError):
            print(f"h2h export-facereg: {result}", file=sys.stderr)
            continue
        print(f"TensorRT {result.precision} engine {result.plan} (max point error vs ONNX Runtime {result.max_abs_error:.2e})")
        for name in result.removed_stale:
            print(f"removed stale engine {name}")
    return 1 if any(isinstance(r, EngineError) for r in results) else 0
