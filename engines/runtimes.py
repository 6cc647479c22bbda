"""ONNX Runtime as installed: exactly one runtime package, its execution providers in order
of preference, and sessions that fall back provider by provider with a reason each."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

log = logging.getLogger(__name__)

# every accelerator an ONNX Runtime build may offer, fastest first; CPU always last
PREFERRED = (
    "TensorrtExecutionProvider",   # NVIDIA, onnxruntime-gpu (+ TensorRT libraries)
    "CUDAExecutionProvider",       # NVIDIA, onnxruntime-gpu
    "MIGraphXExecutionProvider",   # AMD, onnxruntime-migraphx / ROCm builds
    "ROCMExecutionProvider",       # AMD, older ROCm builds
    "DmlExecutionProvider",        # any DirectX 12 GPU on Windows, onnxruntime-directml
    "OpenVINOExecutionProvider",   # Intel CPUs/GPUs/NPUs, onnxruntime-openvino
    "CoreMLExecutionProvider",     # Apple, the macOS onnxruntime wheel
    "CPUExecutionProvider",
)
# PyPI distributions that each install the same `onnxruntime` module: two at once overwrite
# each other's files and the GPU providers silently disappear
RUNTIME_PACKAGES = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino",
                    "onnxruntime-migraphx", "onnxruntime-rocm", "onnxruntime-qnn")


def installed_runtimes() -> list[str]:
    """The ONNX Runtime distributions installed in this environment."""
    found = []
    for name in RUNTIME_PACKAGES:
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        found.append(name)
    return found


def runtime_problem(installed: list[str] | None = None) -> str | None:
    """Why the ONNX Runtime installation is unusable or unreliable, or None when it is fine."""
    installed = installed_runtimes() if installed is None else installed
    if not installed:
        return "ONNX Runtime is not installed; pip install -e '.[cpu]' (or '.[gpu]' on an NVIDIA machine)"
    if len(installed) > 1:
        keep = next((n for n in installed if n != "onnxruntime"), installed[0])
        return (f"{' and '.join(installed)} are all installed; they overwrite each other's files and the GPU providers go "
                f"missing: pip uninstall -y {' '.join(installed)} && pip install {keep}")
    return None


@dataclass
class ProviderChoice:
    """Providers to ask ONNX Runtime for, with options, and why others were left out."""

    providers: list = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [p[0] if isinstance(p, tuple) else p for p in self.providers]


def choose_providers(available: list[str], fp16: bool, trt_cache: Path, onnx_sha256: str,
                     tensorrt: bool = False) -> ProviderChoice:
    """Preferred providers this build has, in order. ONNX Runtime's own TensorRT provider only
    when asked (`tensorrt`): it builds an engine when the session starts (minutes) without our
    parity check, and h2h's TensorRT engines come from h2h export --trt instead. Its engine and
    timing caches live in this machine's cache, one folder per ONNX sha256 and prefixed by it,
    because ONNX Runtime's own cache key hashes the graph, not the weights."""
    choice = ProviderChoice()
    for name in PREFERRED:
        if name not in available:
            continue
        if name == "TensorrtExecutionProvider" and not tensorrt:
            choice.reasons.append("ONNX Runtime's TensorRT provider not used (it would build an unchecked engine at start-up); "
                                  "h2h export NAME --trt builds a checked one")
            continue
        if name == "TensorrtExecutionProvider":
            trt_cache.mkdir(parents=True, exist_ok=True)
            choice.providers.append((name, {
                "trt_fp16_enable": fp16,
                "trt_layer_norm_fp32_fallback": True,  # LayerNorm's decomposed Pow + Reduce in fp32
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(trt_cache),
                "trt_engine_cache_prefix": f"h2h_{onnx_sha256[:16]}",
                "trt_timing_cache_enable": True,
                "trt_timing_cache_path": str(trt_cache),
            }))
        else:
            choice.providers.append(name)
    return choice


def create_session(model: bytes, options, choice: ProviderChoice, label: str):
    """An InferenceSession on the first providers that start; each one that fails to start, or
    that ONNX Runtime silently drops, is recorded in choice.reasons."""
    import onnxruntime as ort

    providers = list(choice.providers)
    while True:
        try:
            session = ort.InferenceSession(model, options, providers=providers)
            break
        except Exception as exc:  # a provider whose libraries are missing, out of memory, ...
            names = [p[0] if isinstance(p, tuple) else p for p in providers]
            if len(names) <= 1:
                raise
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            choice.reasons.append(f"{names[0]} could not start ({first}); trying {names[1]}")
            providers = providers[1:]
    active = session.get_providers()
    for name in [p[0] if isinstance(p, tuple) else p for p in providers]:
        if name not in active:
            choice.reasons.append(f"{name} was asked for but ONNX Runtime did not enable it (its libraries are missing?)")
    return session
