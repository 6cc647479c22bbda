"""`h2h doctor`: what this machine offers the app (torch, CUDA, ONNX Runtime and its providers,
TensorRT, the GPU) and which engine an avatar will run on, with the reason for each fallback."""
from __future__ import annotations

import logging
import platform
from pathlib import Path

from ..engines.cache import engine_cache_dir
from ..engines.runtimes import PREFERRED, installed_runtimes, runtime_problem


def torch_facts() -> dict:
    import torch

    facts = {"version": torch.__version__, "cuda_build": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
    if facts["cuda_available"]:
        facts["gpu"] = torch.cuda.get_device_name(0)
        facts["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
    return facts


def onnxruntime_facts() -> dict:
    facts: dict = {"packages": installed_runtimes(), "problem": runtime_problem()}
    try:
        import onnxruntime as ort
    except ImportError:
        return facts
    available = ort.get_available_providers()
    facts.update(version=ort.__version__, providers=available,
                 accelerators=[p for p in PREFERRED if p in available and p != "CPUExecutionProvider"])
    return facts


def tensorrt_facts() -> dict:
    from ..engines.tensorrt_engine import tensorrt_missing

    missing = tensorrt_missing()
    try:
        import tensorrt

        version = tensorrt.__version__
    except Exception:  # missing, or a broken install: tensorrt_missing says which
        version = None
    return {"version": version, "usable": missing is None, "problem": missing}


def engine_choice(library: Path, avatar: str | None) -> dict:
    """The engine `h2h live` would pick for this avatar (default: the bundled demo)."""
    from ..app.live import pick_avatar
    from ..app.session import load_avatar

    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Collect(logging.INFO)
    logger = logging.getLogger("h2h.engines")
    logger.addHandler(handler)
    try:
        entry = pick_avatar(library, avatar)
        engine = load_avatar(entry).engine
        return {"avatar": entry.name, "engine": engine.provider, "precision": engine.precision,
                "fallbacks": [r for r in records if not r.startswith("engine:")]}
    except Exception as exc:  # reported, not raised: doctor runs where other things fail
        return {"avatar": avatar, "error": str(exc), "fallbacks": records}
    finally:
        logger.removeHandler(handler)


def densefacereg_facts() -> dict:
    """Where the DenseFaceReg tracker would run (`--tracker densefacereg`), or why it cannot."""
    from ..engines.base import EngineError
    from ..engines.facereg_engine import load_facereg

    try:
        face, stages = load_facereg()
    except EngineError as exc:
        return {"problem": str(exc)}
    return {"provider": face.provider, "precision": face.precision, "crop": face.size,
            "stages": {s.part.name: s.regressor.provider for s in stages}}


def diagnose(library: Path, avatar: str | None) -> dict:
    return {
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}",
        "torch": torch_facts(),
        "onnxruntime": onnxruntime_facts(),
        "tensorrt": tensorrt_facts(),
        "engine_cache": str(engine_cache_dir()),
        "live": engine_choice(library, avatar),
        "densefacereg": densefacereg_facts(),
    }
