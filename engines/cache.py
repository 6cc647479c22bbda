"""TensorRT engine cache keys: an engine is only valid for one GPU model, compute
capability, TensorRT version and ONNX file, so all four name the file."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class EngineKey:
    gpu: str
    capability: tuple[int, int]
    trt_version: str
    onnx_sha256: str
    precision: str

    def filename(self) -> str:
        gpu = re.sub(r"[^A-Za-z0-9]+", "-", self.gpu).strip("-").lower()
        cc = f"sm{self.capability[0]}{self.capability[1]}"
        return f"generator.{gpu}.{cc}.trt{self.trt_version}.{self.precision}.{self.onnx_sha256[:12]}.plan"


def engine_path(engines_dir: Path, key: EngineKey) -> Path:
    return engines_dir / key.filename()


def stale_engines(engines_dir: Path, key: EngineKey) -> list[Path]:
    """Serialized engines in the folder that do not match this key (other GPU, TensorRT or ONNX)."""
    return [p for p in engines_dir.glob("generator.*.plan") if p.name != key.filename()]
