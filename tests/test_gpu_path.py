"""Everything around the GPU calls, on the CPU: provider order and fallback reasons, one ONNX
Runtime, the TensorRT build rules (checked, precision in the key, rejected builds remembered,
TensorRT 10 vs 11 builder APIs) and falling back from any TensorRT failure."""
import logging
import sys
import types

import numpy as np
import pytest

from h2h.engines import load
from h2h.engines import runtimes
from h2h.engines.base import EngineError
from h2h.engines.cache import EngineKey, engine_path, read_record


def test_providers_are_chosen_fastest_first_with_the_tensorrt_cache_keyed_by_weights(tmp_path):
    available = ["CPUExecutionProvider", "CoreMLExecutionProvider", "DmlExecutionProvider",
                 "CUDAExecutionProvider", "TensorrtExecutionProvider", "OpenVINOExecutionProvider"]
    choice = runtimes.choose_providers(available, True, tmp_path / "trt", "ab" * 32, tensorrt=True)
    assert choice.names == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "DmlExecutionProvider",
                            "OpenVINOExecutionProvider", "CoreMLExecutionProvider", "CPUExecutionProvider"]
    options = choice.providers[0][1]
    assert options["trt_engine_cache_path"] == str(tmp_path / "trt") and options["trt_engine_cache_prefix"].endswith("ab" * 8)
    assert options["trt_fp16_enable"] and options["trt_timing_cache_enable"]
    other = runtimes.choose_providers(available, True, tmp_path / "trt", "cd" * 32, tensorrt=True)
    assert other.providers[0][1]["trt_engine_cache_prefix"] != options["trt_engine_cache_prefix"]


def test_a_provider_onnx_runtime_drops_is_reported(exported):
    """This CPU build has no CUDA: asking for it falls back to the CPU with the reason."""
    from h2h.engines.onnx_engine import OnnxEngine

    _, avatar = exported
    onnx = (avatar.path / "engines" / "generator.onnx").read_bytes()
    engine = OnnxEngine(onnx, "generator.onnx", providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert engine.provider == "ONNX Runtime (CPUExecutionProvider)"
    assert any("CUDAExecutionProvider" in r for r in engine.choice.reasons)


def test_two_onnx_runtimes_installed_is_a_clear_message(exported, monkeypatch, caplog):
    assert runtimes.runtime_problem(["onnxruntime"]) is None
    problem = runtimes.runtime_problem(["onnxruntime", "onnxruntime-gpu"])
    assert "overwrite each other" in problem and "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu" in problem
    assert "not installed" in runtimes.runtime_problem([])
    _, avatar = exported
    monkeypatch.setattr(runtimes, "installed_runtimes", lambda: ["onnxruntime", "onnxruntime-gpu"])
    with caplog.at_level(logging.INFO):
        assert load(avatar).provider.startswith("ONNX Runtime")
    assert "overwrite each other" in caplog.text


@pytest.mark.parametrize("error", [ImportError("libcudart.so.13: cannot open"), TypeError("pybind11 signature"),
                                   RuntimeError("CUDA out of memory")])
def test_any_tensorrt_failure_falls_back_to_onnx_runtime_with_the_reason(exported, monkeypatch, caplog, error):
    from h2h.engines import tensorrt_engine as trt

    _, avatar = exported

    def broken(onnx, sequential):
        raise error

    monkeypatch.setattr(trt, "tensorrt_missing", lambda: None)
    monkeypatch.setattr(trt, "load_checked", broken)
    with caplog.at_level(logging.INFO):
        assert load(avatar).provider.startswith("ONNX Runtime")
    assert f"TensorRT skipped ({type(error).__name__}" in caplog.text


def _logger(level):
    return None


_logger.WARNING = 2


class FakeTensorRT(types.SimpleNamespace):
    """Just enough of the tensorrt module to follow build_engine's calls (10.x or 11.x API)."""

    def __init__(self, version: str):
        calls = []
        flags = {"OBEY_PRECISION_CONSTRAINTS": "obey", "TF32": "tf32"}
        if version.startswith("10."):
            flags["FP16"] = "fp16"  # removed in TensorRT 11
        layer = types.SimpleNamespace(type="norm", precision=None, outputs={})
        layer.set_output_type = lambda i, t: layer.outputs.__setitem__(i, t)
        network = types.SimpleNamespace(num_layers=1, get_layer=lambda i: layer)
        cache = types.SimpleNamespace(serialize=lambda: b"timings")
        config = types.SimpleNamespace(
            set_memory_pool_limit=lambda *a: None, set_flag=lambda f: calls.append(("flag", f)),
            clear_flag=lambda f: calls.append(("clear", f)),
            create_timing_cache=lambda data: calls.append(("timing", data)) or cache,
            set_timing_cache=lambda c, ignore_mismatch: True, get_timing_cache=lambda: cache)
        builder = types.SimpleNamespace(
            create_network=lambda flags: calls.append(("network", flags)) or network,
            create_builder_config=lambda: config, build_serialized_network=lambda n, c: b"plan")
        parser = types.SimpleNamespace(parse=lambda data: True, num_errors=0)
        super().__init__(
            __version__=version, calls=calls, layer=layer, Logger=_logger, Builder=lambda logger: builder,
            OnnxParser=lambda network, logger: parser, MemoryPoolType=types.SimpleNamespace(WORKSPACE=0),
            BuilderFlag=types.SimpleNamespace(**flags), LayerType=types.SimpleNamespace(NORMALIZATION="norm"), float32="f32")


@pytest.fixture
def fake_trt(monkeypatch):
    def install(version):
        fake = FakeTensorRT(version)
        monkeypatch.setitem(sys.modules, "tensorrt", fake)
        return fake
    return install


def test_tensorrt_10_builds_fp16_and_can_pin_normalisation_to_fp32(fake_trt, tmp_path):
    from h2h.engines.tensorrt_build import build_engine, buildable_precision

    fake = fake_trt("10.16.1")
    assert buildable_precision(True) == ("fp16", None)
    plan = tmp_path / EngineKey("RTX 4090", (8, 9), "10.16.1", "a" * 64, "fp16").filename()
    build_engine(b"onnx", "g.onnx", plan, "fp16", fp32_norm=True)
    assert ("flag", "fp16") in fake.calls and ("flag", "obey") in fake.calls
    assert fake.layer.precision == "f32" and fake.layer.outputs == {0: "f32"}
    timing = tmp_path / "generator.rtx-4090.sm89.trt10.16.1.timing-cache.bin"  # per GPU and TensorRT version
    assert plan.read_bytes() == b"plan" and timing.read_bytes() == b"timings"
    build_engine(b"onnx", "g.onnx", plan, "fp16")
    assert ("timing", b"timings") in fake.calls  # the second build reuses the kernel timings


def test_tensorrt_11_builds_fp32_without_the_removed_fp16_flag(fake_trt, tmp_path):
    from h2h.engines.tensorrt_build import build_engine, buildable_precision

    fake = fake_trt("11.4.0")
    precision, why = buildable_precision(True)
    assert precision == "fp32" and "TensorRT 11" in why
    build_engine(b"onnx", "g.onnx", tmp_path / "g.plan", precision)
    assert not [c for c in fake.calls if c[0] in ("flag", "clear")]
    build_engine(b"onnx", "f.onnx", tmp_path / "f.plan", precision, tf32=False)  # DenseFaceReg: full fp32
    assert [c for c in fake.calls if c[0] in ("flag", "clear")] == [("clear", "tf32")]
    with pytest.raises(EngineError, match="no fp16 builder flag"):
        build_engine(b"onnx", "g.onnx", tmp_path / "h.plan", "fp16")


def test_export_trt_checks_retries_and_remembers_a_rejected_build(exported, monkeypatch, tmp_path):
    """fp16 that drifts is rebuilt with fp32 normalisation; a build that still drifts is
    recorded as rejected and not retried; a passing one is recorded and reused."""
    from h2h.engines.onnx_engine import OnnxEngine
    from h2h.export import tensorrt_export as tx

    _, avatar = exported
    monkeypatch.setenv("H2H_CACHE", str(tmp_path))
    onnx = (avatar.path / "engines" / "generator.onnx").read_bytes()
    reference = OnnxEngine(onnx, "generator.onnx")
    builds, drift = [], {"fp16": [0.3, 0.3]}

    class FakeEngine:
        def __init__(self, plan, precision, sequential):
            self.error = drift[precision].pop(0) if drift.get(precision) else 0.0
            self.sequential = sequential

        def run(self, cond, prev):
            return reference.run(cond, prev) + self.error

    def fake_build(onnx, label, out, precision, fp32_norm=False, tf32=True):
        builds.append((precision, fp32_norm))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(b"plan")
        return out

    monkeypatch.setattr(tx, "tensorrt_missing", lambda: None)
    monkeypatch.setattr(tx, "buildable_precision", lambda fp16: ("fp16" if fp16 else "fp32", None))
    monkeypatch.setattr(tx, "current_key", lambda data, precision, kind: EngineKey("Test GPU", (8, 9), "10.16", "e" * 64, precision, kind))
    monkeypatch.setattr(tx, "build_engine", fake_build)
    monkeypatch.setattr(tx, "TensorRTEngine", FakeEngine)
    with pytest.raises(EngineError, match="rejected"):
        tx.export_tensorrt(avatar, fp16=True)
    assert builds == [("fp16", False), ("fp16", True)]  # retried once with fp32 normalisation
    plan = engine_path(EngineKey("Test GPU", (8, 9), "10.16", "e" * 64, "fp16"))
    assert not plan.exists() and read_record(plan)["status"] == "rejected"
    with pytest.raises(EngineError, match="rejected before"):
        tx.export_tensorrt(avatar, fp16=True)
    assert len(builds) == 2  # not retried
    result = tx.export_tensorrt(avatar, fp16=True, rebuild=True)  # asked for: tried again, drift gone
    assert result.precision == "fp16" and read_record(result.plan)["status"] == "passed"
    again = tx.export_tensorrt(avatar, fp16=True)
    assert again.plan == result.plan and len(builds) == 3  # a checked plan is reused, not rebuilt
    fp32 = tx.export_tensorrt(avatar, fp16=False)
    assert fp32.precision == "fp32" and fp32.plan != result.plan and result.plan.exists()


def test_onnx_runtime_binds_inputs_by_name(exported):
    """Feeding by name: swapping the order of the graph's inputs changes nothing."""
    import onnx

    from h2h.engines.onnx_engine import OnnxEngine

    _, avatar = exported
    model = onnx.load_model_from_string((avatar.path / "engines" / "generator.onnx").read_bytes())
    reordered = onnx.load_model_from_string(model.SerializeToString())
    inputs = list(reordered.graph.input)
    del reordered.graph.input[:]
    reordered.graph.input.extend(inputs[::-1])
    rng = np.random.default_rng(0)
    cond = rng.uniform(-1, 1, (1, 18, 256, 256)).astype(np.float32)
    prev = rng.uniform(-1, 1, (1, 6, 256, 256)).astype(np.float32)
    a = OnnxEngine(model.SerializeToString(), "a").run(cond, prev)
    b = OnnxEngine(reordered.SerializeToString(), "b").run(cond, prev)
    assert np.array_equal(a, b)


def test_mixed_precision_trains_and_resumes_its_state(prepared, tmp_path):
    """bf16 autocast (what a GPU without fp16 trouble gets) runs the GAN step; a CPU asks for it
    explicitly here. A CUDA-only setting on this machine is a clear error."""
    import torch

    from h2h.models.avatar import Avatar
    from h2h.models.checkpoint import CheckpointError
    from h2h.models.mixed_precision import resolve_precision
    from h2h.models.train import Trainer
    from h2h.models.train_config import RunOptions, train_config

    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    library, _ = prepared
    avatar = Avatar.open(library, "sample")
    trainer = Trainer(avatar, train_config("tiny"), RunOptions(run="bf16", progress=False, max_steps=2, precision="bf16", overwrite=True))
    losses = trainer.run()["losses"]
    assert {"g_image", "d_image"} <= set(losses) and all(np.isfinite(v) for v in losses.values())
    with pytest.raises(CheckpointError, match="unknown precision"):
        Trainer(avatar, train_config("tiny"), RunOptions(run="x", progress=False, precision="int4"))


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a GPU is present")
def test_the_pytorch_engine_on_cuda_without_a_gpu_says_so(exported, caplog):
    _, avatar = exported
    with pytest.raises(EngineError, match="sees no CUDA GPU"):
        load(avatar, "torch", device="cuda")


def test_the_device_stepper_makes_the_same_frames_as_the_numpy_one(exported):
    """The GPU path's stepper (window and previous outputs kept on the device, uint8 in and
    out), run here on the CPU device, against the numpy stepper every engine can use."""
    from h2h.engines.device_stepper import DeviceStepper
    from h2h.engines.stepper import GeneratorStepper
    from h2h.engines.torch_engine import TorchEngine

    _, avatar = exported
    engine = TorchEngine(avatar.files, "main")
    plain = GeneratorStepper(engine.run, 256, engine.sequential)
    device = DeviceStepper(engine.run_device, 256, engine.sequential, "cpu")
    for i in range(24, 30):
        nmfc, eyes = avatar.read_image("nmfc", i), avatar.read_image("eyes", i)
        a, b = plain(nmfc, eyes), device(nmfc, eyes)
        assert a.dtype == b.dtype == np.uint8 and np.abs(a.astype(int) - b).max() <= 1
    device.reset()
    plain.reset()
    first = avatar.read_image("nmfc", 24), avatar.read_image("eyes", 24)
    assert np.abs(plain(*first).astype(int) - device(*first)).max() <= 1  # reset starts a new sequence


def test_onnx_runtimes_own_tensorrt_provider_is_used_only_when_asked(tmp_path):
    """It would build an unchecked engine for minutes at start-up; live uses CUDA instead."""
    available = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    choice = runtimes.choose_providers(available, True, tmp_path, "a" * 64)
    assert choice.names == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert any("h2h export NAME --trt" in r for r in choice.reasons)
    assert runtimes.choose_providers(available, True, tmp_path, "a" * 64, tensorrt=True).names[0] == "TensorrtExecutionProvider"

