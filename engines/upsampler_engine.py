"""The learned 2x upsampler behind the engine interface: run(frame (1, 3, S, S)) -> (1, 3, 2S, 2S),
numpy float32 in [-1, 1]. ONNX Runtime on engines/upsampler.onnx (int8 on CPUs when current),
else PyTorch on the run's checkpoint; read through the avatar's checked accessor like the
generator."""
from __future__ import annotations

import logging

import numpy as np
import torch

from ..models.avatar import Avatar
from ..models.avatar_files import MAX_MODEL_BYTES, AvatarError, AvatarFiles
from ..models.checkpoint import CheckpointError, has_upsampler, load_upsampler
from .base import EngineError
from .onnx_check import check_upsampler_onnx
from .onnx_engine import open_session
from .select import prefer_int8

log = logging.getLogger(__name__)
UPSAMPLER_ONNX = "upsampler.onnx"
UPSAMPLER_ONNX_META = "upsampler.onnx.json"
UPSAMPLER_INT8 = "upsampler.int8.onnx"
UPSAMPLER_INT8_META = "upsampler.int8.onnx.json"


def no_upsampler_problem(name: str) -> str:
    return f"avatar '{name}' has no 512x512 upsampler; make one with: h2h upsampler {name} --video VIDEO"


class OnnxUpsampler:
    def __init__(self, model: bytes, label: str, size: int = 256, fp16: bool = True, threads: int | None = None,
                 providers: list[str] | None = None) -> None:
        check_upsampler_onnx(model, size, label)
        self.session, self.choice, self.provider, self.precision = open_session(model, label, fp16, threads, providers)

    def run(self, frame: np.ndarray) -> np.ndarray:
        return self.session.run(["hires"], {"frame": np.ascontiguousarray(frame, np.float32)})[0]


class TorchUpsampler:
    precision = "fp32"

    def __init__(self, files: AvatarFiles, run: str = "main") -> None:
        self.net, self.meta = load_upsampler(files, run)
        self.provider = "PyTorch (cpu)"

    @torch.inference_mode()
    def run(self, frame: np.ndarray) -> np.ndarray:
        return self.net(torch.from_numpy(np.ascontiguousarray(frame, np.float32))).numpy()


def exported_upsampler(avatar: Avatar) -> bytes | None:
    relative = f"engines/{UPSAMPLER_ONNX}"
    return avatar.files.read_bytes(relative, MAX_MODEL_BYTES) if avatar.files.is_file(relative) else None


def load_upsampler_engine(avatar: Avatar, prefer: str = "auto", run: str = "main", int8: bool = True,
                          threads: int | None = None):
    """The avatar's upsampler on ONNX Runtime (int8 on CPUs when it passed its gate), else
    PyTorch; EngineError when it has none or none loads (the message says why)."""
    reasons: list[str] = []
    if prefer != "torch":
        try:
            onnx = exported_upsampler(avatar)
            if onnx is not None:
                return _logged(_onnx_upsampler(avatar, onnx, int8, threads))
        except (EngineError, AvatarError) as exc:
            if prefer != "auto":
                raise
            reasons.append(f"ONNX upsampler skipped ({exc})")
    try:
        if not has_upsampler(avatar.files, run):
            raise EngineError(no_upsampler_problem(avatar.name))
        engine = TorchUpsampler(avatar.files, run)
    except (EngineError, CheckpointError, AvatarError) as exc:
        raise EngineError("; ".join([*reasons, str(exc)])) from exc
    for reason in reasons:
        log.info("%s", reason)
    return _logged(engine)


def _onnx_upsampler(avatar: Avatar, onnx: bytes, int8: bool, threads: int | None) -> OnnxUpsampler:
    """The fp32 session, or the int8 one on CPUs when it is current, passed its gate and loads."""
    size = avatar.resolution
    engine = OnnxUpsampler(onnx, str(avatar.path / "engines" / UPSAMPLER_ONNX), size, threads=threads)
    if not int8:
        return engine
    engine, problem = prefer_int8(engine, avatar.files, onnx, lambda data, name: OnnxUpsampler(data, name, size, False, threads),
                                  UPSAMPLER_INT8, UPSAMPLER_INT8_META)
    if problem:
        log.info("upsampler %s", problem)
    return engine


def _logged(engine):
    log.info("upsampler: %s, %s", engine.provider, engine.precision)
    return engine
