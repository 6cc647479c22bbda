"""Where engines built on this machine live, and their keys.

A serialized TensorRT engine is executable code, so it is never read from an avatar folder
(those are shared between people): plans and ONNX Runtime TensorRT caches live in a per-user
cache folder, and a plan is only valid for one GPU model, compute capability, TensorRT version
and ONNX file, so all four name it."""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

CACHE_ENV = "H2H_CACHE"


def engine_cache_dir() -> Path:
    """$H2H_CACHE, else the per-user cache folder (e.g. ~/.cache/h2h/engines)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser() / "engines"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("h2h", appauthor=False)) / "engines"


def bytes_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class EngineKey:
    gpu: str
    capability: tuple[int, int]
    trt_version: str
    onnx_sha256: str
    precision: str
    kind: str = "generator"  # or "facereg": what the plan runs, the first part of its name

    def machine(self) -> str:
        """The kind, GPU, compute capability and TensorRT version part of the name."""
        gpu = re.sub(r"[^A-Za-z0-9]+", "-", self.gpu).strip("-").lower()
        return f"{self.kind}.{gpu}.sm{self.capability[0]}{self.capability[1]}.trt{self.trt_version}."

    def filename(self) -> str:
        return f"{self.machine()}{self.precision}.{self.onnx_sha256[:16]}.plan"


def engine_path(key: EngineKey, cache: Path | None = None) -> Path:
    """The plan for this key in this machine's cache."""
    return (cache or engine_cache_dir()) / key.filename()


def ort_tensorrt_cache(onnx_sha256: str, cache: Path | None = None) -> Path:
    """ONNX Runtime's TensorRT engine cache for one ONNX model, in this machine's cache."""
    return (cache or engine_cache_dir()) / "ort-tensorrt" / onnx_sha256[:16]


def stale_engines(key: EngineKey, cache: Path | None = None) -> list[Path]:
    """Plans (and their records) of this ONNX model in the cache built for another GPU or
    TensorRT version; plans of other precisions on this machine are kept."""
    folder = cache or engine_cache_dir()
    tag = f".{key.onnx_sha256[:16]}.plan"
    plans = [p for p in folder.glob(f"{key.kind}.*.plan") if p.name.endswith(tag) and not p.name.startswith(key.machine())]
    return plans + [record_path(p) for p in plans if record_path(p).exists()]


def record_path(plan: Path) -> Path:
    """plan.json beside a plan: whether its parity check against ONNX Runtime passed."""
    return plan.with_suffix(".json")


def read_record(plan: Path) -> dict | None:
    try:
        record = json.loads(record_path(plan).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write_record(plan: Path, status: str, **facts: object) -> None:
    """Remember a build's verdict ("passed" or "rejected"): a rejected build is not retried."""
    from ..models.io_utils import atomic_write_bytes

    atomic_write_bytes(record_path(plan), json.dumps({"status": status, **facts}, indent=2).encode())
