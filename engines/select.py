"""Pick the best engine an avatar and this machine allow: TensorRT, ONNX Runtime, PyTorch.

Everything is read from the avatar folder through its checked accessor; TensorRT plans come
only from this machine's cache (engines/cache.py)."""
from __future__ import annotations

import logging
from collections.abc import Callable

from ..models.avatar import Avatar
from ..models.avatar_files import MAX_MODEL_BYTES, AvatarError, AvatarFiles
from .base import Engine, EngineError, failure
from .cache import bytes_sha256

log = logging.getLogger(__name__)
CHOICES = ("auto", "trt", "onnx", "torch")
ONNX_FILE = "generator.onnx"
ONNX_META = "generator.onnx.json"
INT8_FILE = "generator.int8.onnx"
INT8_META = "generator.int8.onnx.json"
INT8_MIN_PSNR = 35.0


def onnx_meta(files: AvatarFiles) -> dict:
    """engines/generator.onnx.json, or {} when missing or unreadable."""
    try:
        meta = files.read_json(f"engines/{ONNX_META}") if files.is_file(f"engines/{ONNX_META}") else {}
    except AvatarError as exc:
        log.warning("ignoring %s", exc)
        return {}
    return meta if isinstance(meta, dict) else {}


def read_onnx(avatar: Avatar) -> bytes | None:
    """The fp32 ONNX bytes (checked accessor: a link or a non-file is an error), or None when
    the avatar has none."""
    relative = f"engines/{ONNX_FILE}"
    return avatar.files.read_bytes(relative, MAX_MODEL_BYTES) if avatar.files.path(relative).exists() else None


def int8_problem(files: AvatarFiles, parent_sha256: str, int8_file: str = INT8_FILE, int8_meta: str = INT8_META) -> str | None:
    """Why the int8 model must not be used (missing, stale or below the PSNR gate), or None."""
    if not files.is_file(f"engines/{int8_file}"):
        return "no int8 model"
    try:
        meta = files.read_json(f"engines/{int8_meta}")
    except AvatarError as exc:
        return f"int8 metadata unreadable ({exc})"
    if not isinstance(meta, dict) or meta.get("parent_onnx_sha256") != parent_sha256:
        return "int8 model is stale (not made from the current generator.onnx); re-run h2h export --int8"
    psnr = meta.get("psnr_vs_fp32_db")
    if not isinstance(psnr, (int, float)) or not psnr >= INT8_MIN_PSNR:
        return f"int8 model did not pass its {INT8_MIN_PSNR:g} dB gate; re-run h2h export --int8"
    return None


def engine_status(avatar: Avatar) -> str:
    """What the avatar can run on, for listings: TensorRT, ONNX, PyTorch or none. TensorRT
    only when this machine's cache holds a plan for this GPU and this ONNX."""
    files = avatar.files
    if files.is_file(f"engines/{ONNX_FILE}"):
        from .tensorrt_engine import checked_plan, tensorrt_missing

        if tensorrt_missing() is None:
            try:
                if checked_plan(read_onnx(avatar)) is not None:
                    return "TensorRT"
            except AvatarError:
                raise
            except Exception as exc:  # a broken CUDA/TensorRT install must not hide the avatar
                log.info("TensorRT status unknown (%s: %s)", type(exc).__name__, exc)
        return "ONNX"
    if any(files.is_file(f"checkpoints/{run}/generator.safetensors") for run in files.names("checkpoints")):
        return "PyTorch"
    return "none"


def load(avatar: Avatar, prefer: str = "auto", run: str | None = None, fp16: bool = True, int8: bool = True,
         device: str = "cpu") -> Engine:
    """The engine to drive this avatar with; each fallback is logged with its reason. `device`
    is where the PyTorch engine runs (cpu, or cuda when asked).

    run=None takes whatever run was exported (PyTorch falls back to run "main"); a named run
    uses the exported engines only if they were exported from that run."""
    if prefer not in CHOICES:
        raise EngineError(f"unknown engine {prefer!r}; choose one of {', '.join(CHOICES)}")
    files, size = avatar.files, avatar.resolution
    onnx = read_onnx(avatar)
    label = str(files.root / "engines" / ONNX_FILE)
    meta = onnx_meta(files)
    sequential = bool(meta.get("sequential", True))
    reasons = []
    if run is not None and onnx is not None and meta.get("run", run) != run:
        reasons.append(f"exported engines are of run '{meta.get('run')}', not '{run}'")
        prefer = "torch" if prefer == "auto" else prefer
        if prefer != "torch":
            raise EngineError(f"{reasons[0]}; run h2h export --run {run} first")
    if onnx is not None and prefer != "torch":
        from .onnx_check import check_generator_onnx

        try:
            check_generator_onnx(onnx, size, label)
        except EngineError as exc:
            if prefer != "auto":
                raise
            reasons.append(f"ONNX skipped ({exc})")
            onnx = None
    if prefer in ("auto", "trt"):
        from .tensorrt_engine import load_checked, tensorrt_missing

        reason = tensorrt_missing() or (None if onnx is not None else f"no usable {ONNX_FILE}; run h2h export first")
        if reason is None:
            try:
                return _logged(load_checked(onnx, sequential), reasons)
            except EngineError as exc:
                reason = str(exc)
            except Exception as exc:  # CUDA out of memory, a driver error, a TensorRT API mismatch
                reason = failure(exc)
        if prefer == "trt":
            raise EngineError(f"TensorRT engine unavailable: {reason}")
        reasons.append(f"TensorRT skipped ({reason})")
    if prefer in ("auto", "onnx"):
        if onnx is not None:
            try:
                return _logged(_onnx_engine(avatar, onnx, label, sequential, fp16, int8, reasons), reasons)
            except EngineError as exc:
                reasons.append(f"ONNX Runtime skipped ({exc})")
        elif not any("ONNX skipped" in r for r in reasons):
            reasons.append(f"ONNX Runtime skipped (no {ONNX_FILE}; run h2h export)")
        if prefer == "onnx":
            raise EngineError("; ".join(reasons))
    from .torch_engine import TorchEngine

    try:
        engine = TorchEngine(files, run or "main", device=device, size=size)
    except Exception as exc:
        raise EngineError("; ".join([*reasons, f"PyTorch: {exc}"])) from exc
    return _logged(engine, reasons)


def _onnx_engine(avatar: Avatar, onnx: bytes, label: str, sequential: bool, fp16: bool, int8: bool, reasons: list[str]) -> Engine:
    """ONNX Runtime on the fp32 model, or on the int8 one on CPUs when it is current and loads."""
    from .onnx_engine import OnnxEngine

    engine = OnnxEngine(onnx, label, avatar.resolution, sequential, fp16)
    reasons.extend(engine.choice.reasons)
    if not int8:
        return engine
    engine, problem = prefer_int8(engine, avatar.files, onnx,
                                  lambda data, name: OnnxEngine(data, name, avatar.resolution, sequential, fp16=False))
    if problem:
        reasons.append(problem)
    return engine


def prefer_int8(fp32, files: AvatarFiles, onnx: bytes, load: Callable[[bytes, str], object],
                int8_file: str = INT8_FILE, int8_meta: str = INT8_META) -> tuple[object, str | None]:
    """The int8 model (2.6x faster on CPUs) in place of the fp32 session `fp32` of `onnx`, when
    that runs on the CPU and the int8 model is current, passed its gate and loads through
    `load(bytes, label)`; else `fp32`, with why the int8 one was skipped (None when there is
    none or the provider is not the CPU's)."""
    if not fp32.provider.endswith("(CPUExecutionProvider)"):
        return fp32, None
    problem = int8_problem(files, bytes_sha256(onnx), int8_file, int8_meta)
    if problem is None:
        try:
            quantized = load(files.read_bytes(f"engines/{int8_file}", MAX_MODEL_BYTES), str(files.root / "engines" / int8_file))
            quantized.precision = "int8"
            return quantized, None
        except (EngineError, AvatarError) as exc:
            problem = str(exc)
    return fp32, None if problem == "no int8 model" else f"int8 skipped, using fp32 ({problem})"


def _logged(engine: Engine, reasons: list[str]) -> Engine:
    for reason in reasons:
        log.info("%s", reason)
    log.info("engine: %s, %s", engine.provider, engine.precision)
    return engine
