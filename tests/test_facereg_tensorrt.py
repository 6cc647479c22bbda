"""DenseFaceReg on TensorRT, everything around the GPU calls on the CPU: `h2h export-facereg --trt`
builds one checked fp32 plan per network into this machine's cache (as the generator's), the
tracker's networks run on those plans when they passed, and anything else falls back to ONNX
Runtime with the reason. The "plan" here is the network's ONNX run by ONNX Runtime, so a plan
that is used gives the tracker the same points."""
import logging

import numpy as np
import pytest

from h2h.app.cli import main
from h2h.engines import facereg_engine
from h2h.engines import tensorrt_engine as trt
from h2h.engines.cache import EngineKey, engine_path, read_record
from h2h.export import tensorrt_export as tx

from .conftest import SAMPLE_CLIP


def key_of(onnx: bytes, precision: str, kind: str = "generator") -> EngineKey:
    return EngineKey("Test GPU", (8, 9), "10.16", trt.bytes_sha256(onnx), precision, kind)


class OnnxAsPlan:
    """Stands in for a deserialized plan: the 'plan' file holds the network's ONNX, run by ONNX
    Runtime, plus the drift the test asks for."""

    drift: dict[str, float] = {}
    opened: list = []

    def __init__(self, plan, precision="fp32"):
        import onnxruntime as ort

        self.provider, self.precision = "TensorRT", precision
        self.session = ort.InferenceSession(plan.read_bytes(), providers=["CPUExecutionProvider"])
        self.error = self.drift.get(trt.bytes_sha256(plan.read_bytes()), 0.0)
        self.opened.append(plan)

    def run(self, inputs):
        return self.session.run(["points"], {"crop": inputs})[0] + self.error


@pytest.fixture
def gpu(monkeypatch, tmp_path):
    """A machine where TensorRT 'works': builds write the ONNX as the plan, plans run on ONNX Runtime."""
    builds = []

    def fake_build(onnx, label, out, precision, fp32_norm=False, workspace_gb=2.0, tf32=True):
        builds.append((label, precision, tf32))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(onnx)
        return out

    monkeypatch.setenv("H2H_CACHE", str(tmp_path / "cache"))
    for module in (tx, trt):
        monkeypatch.setattr(module, "tensorrt_missing", lambda: None)
        monkeypatch.setattr(module, "current_key", key_of)
    monkeypatch.setattr(tx, "build_engine", fake_build)
    monkeypatch.setattr(tx, "FaceRegPlan", OnnxAsPlan)
    monkeypatch.setattr(trt, "FaceRegPlan", OnnxAsPlan)
    monkeypatch.setattr(OnnxAsPlan, "drift", {})
    monkeypatch.setattr(OnnxAsPlan, "opened", [])
    return builds


def crops_for(engine, count: int) -> np.ndarray:
    return np.stack(tx.check_crops(SAMPLE_CLIP, engine.size, engine.width, count))


def test_each_network_gets_a_checked_fp32_plan_and_the_tracker_runs_on_them(gpu, capsys, caplog):
    networks = facereg_engine.facereg_networks(facereg_engine.read_facereg())
    assert main(["export-facereg", "--trt"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("TensorRT fp32 engine") == len(networks) == 3  # the face, eye and mouth networks
    assert gpu == [(n.label, "fp32", False) for n in networks]  # fp32 with TF32 off
    for network in networks:
        plan = engine_path(key_of(network.onnx, "fp32", "facereg"))
        assert plan.name.startswith("facereg.test-gpu.sm89.") and read_record(plan)["status"] == "passed"
    assert main(["export-facereg", "--trt"]) == 0 and len(gpu) == 3  # checked plans are reused, not rebuilt

    with caplog.at_level(logging.INFO):
        face, stages = facereg_engine.load_facereg()
    assert face.provider == "TensorRT" and [s.regressor.provider for s in stages] == ["TensorRT", "TensorRT"]
    assert "DenseFaceReg: TensorRT, fp32" in caplog.text
    onnx_face, onnx_stages = facereg_engine.load_facereg(providers=["CPUExecutionProvider"])  # asked for: no plan
    assert onnx_face.provider.startswith("ONNX Runtime")
    for plan_engine, onnx_engine in [(face, onnx_face), *((s.regressor, o.regressor) for s, o in zip(stages, onnx_stages))]:
        crops = crops_for(onnx_engine, onnx_engine.batch * 2)  # two of the network's batches
        assert np.allclose(plan_engine.run(crops), onnx_engine.run(crops), atol=1e-6)


def test_a_drifting_plan_is_rejected_remembered_and_its_network_stays_on_onnx_runtime(gpu, caplog, capsys):
    face, eyes, mouth = facereg_engine.facereg_networks(facereg_engine.read_facereg())
    OnnxAsPlan.drift = {trt.bytes_sha256(eyes.onnx): 0.01, trt.bytes_sha256(mouth.onnx): float("nan")}
    assert main(["export-facereg", "--trt"]) == 1
    out, err = capsys.readouterr()
    assert "eyes.onnx rejected: max abs error 0.01" in err and "mouth.onnx rejected: max abs error nan" in err
    assert out.count("TensorRT fp32 engine") == 1  # the face network's plan is built all the same
    for network in (eyes, mouth):
        plan = engine_path(key_of(network.onnx, "fp32", "facereg"))
        assert not plan.exists() and read_record(plan)["status"] == "rejected"
    results = tx.export_facereg_tensorrt(None, SAMPLE_CLIP)
    assert [type(r).__name__ for r in results] == ["TensorRTResult", "EngineError", "EngineError"]
    assert "rejected before" in str(results[1]) and "--rebuild-trt" in str(results[1])
    assert [label for label, _, _ in gpu].count(eyes.label) == 1  # not retried unless asked
    with caplog.at_level(logging.INFO):
        loaded, stages = facereg_engine.load_facereg()
    assert loaded.provider == "TensorRT"
    assert [s.regressor.provider[:12] for s in stages] == ["ONNX Runtime"] * 2  # no plan that passed
    assert f"{eyes.label}: TensorRT skipped (no checked TensorRT engine" in caplog.text
    OnnxAsPlan.drift = {}
    results = tx.export_facereg_tensorrt(None, SAMPLE_CLIP, rebuild=True)
    assert [read_record(r.plan)["status"] for r in results] == ["passed"] * 3


def test_a_plan_that_fails_while_tracking_hands_over_to_onnx_runtime(gpu, caplog):
    tx.export_facereg_tensorrt(None, SAMPLE_CLIP)
    face, _ = facereg_engine.load_facereg()
    reference, _ = facereg_engine.load_facereg(providers=["CPUExecutionProvider"])
    crops = crops_for(reference, 2)

    def lost(inputs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    face.plan.run = lost
    with caplog.at_level(logging.WARNING):
        assert np.allclose(face.run(crops), reference.run(crops), atol=1e-6)
    assert face.provider.startswith("ONNX Runtime") and "TensorRT failed (RuntimeError: CUDA error" in caplog.text
    assert np.allclose(face.run(crops), reference.run(crops), atol=1e-6)


@pytest.mark.parametrize("error", [ImportError("libnvinfer.so.10: cannot open"), RuntimeError("CUDA out of memory")])
def test_a_plan_that_fails_to_load_falls_back_to_onnx_runtime_with_the_reason(gpu, monkeypatch, caplog, error):
    tx.export_facereg_tensorrt(None, SAMPLE_CLIP)

    def broken(plan, precision="fp32"):
        raise error

    monkeypatch.setattr(trt, "FaceRegPlan", broken)
    with caplog.at_level(logging.INFO):
        face, stages = facereg_engine.load_facereg()
    assert face.provider.startswith("ONNX Runtime") and all(s.regressor.provider.startswith("ONNX Runtime") for s in stages)
    assert f"TensorRT skipped ({type(error).__name__}: {error}" in caplog.text


def test_without_tensorrt_the_tracker_is_on_onnx_runtime_and_export_trt_says_why(capsys):
    face, _ = facereg_engine.load_facereg()
    assert face.provider.startswith("ONNX Runtime")
    assert main(["export-facereg", "--trt"]) == 2
    assert "TensorRT engines not built: TensorRT is not installed" in capsys.readouterr().err


def test_generator_and_facereg_plans_of_one_machine_do_not_touch_each_other(tmp_path):
    from h2h.engines.cache import stale_engines

    generator = EngineKey("RTX 4090", (8, 9), "10.16", "a" * 64, "fp16")
    facereg = EngineKey("RTX 4090", (8, 9), "10.16", "a" * 64, "fp32", "facereg")
    old_facereg = EngineKey("RTX 3060", (8, 6), "10.16", "a" * 64, "fp32", "facereg")
    for key in (generator, facereg, old_facereg):
        engine_path(key, tmp_path).write_bytes(b"plan")
    assert engine_path(facereg, tmp_path).name.startswith("facereg.rtx-4090.sm89.trt10.16.fp32.")
    assert [p.name for p in stale_engines(facereg, tmp_path)] == [engine_path(old_facereg, tmp_path).name]
    assert stale_engines(generator, tmp_path) == []
