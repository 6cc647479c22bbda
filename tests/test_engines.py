"""Export and engines: ONNX parity, one interface, fallbacks, cache keys, TensorRT where present."""
import json

import numpy as np
import onnx
import pytest

from h2h.app.cli import main
from h2h.engines import EngineError, engine_status, load
from h2h.engines.cache import EngineKey, stale_engines
from h2h.engines.onnx_engine import OnnxEngine, session_options
from h2h.engines.stepper import GeneratorStepper
from h2h.engines.tensorrt_engine import tensorrt_missing
from h2h.engines.torch_engine import TorchEngine
from h2h.models.avatar import Avatar


def test_export_writes_a_checked_onnx(exported):
    _, avatar = exported
    meta = json.loads((avatar.path / "engines" / "generator.onnx.json").read_text())
    assert meta["max_abs_error_vs_torch"] <= 1e-3 and meta["opset"] >= 17
    onnx_file = avatar.path / "engines" / "generator.onnx"
    engine = OnnxEngine(onnx_file.read_bytes(), str(onnx_file))
    assert [s.shape for s in engine.inputs] == [(1, 18, 256, 256), (1, 6, 256, 256)]
    assert [s.shape for s in engine.outputs] == [(1, 3, 256, 256)]
    assert engine_status(avatar) == "ONNX"


def test_onnx_runtime_workers_do_not_spin_between_frames():
    """Spinning workers take the cores the face stage needs (RESULTS: 22 vs 16 ms per step
    beside a busy process); the thread count stays the machine's cores."""
    opts = session_options()
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert opts.intra_op_num_threads >= 1 and session_options(threads=1).intra_op_num_threads == 1


def test_onnx_and_torch_engines_give_the_same_frames(exported):
    _, avatar = exported
    onnx_file = avatar.path / "engines" / "generator.onnx"
    engines = [OnnxEngine(onnx_file.read_bytes(), str(onnx_file)), TorchEngine(avatar.files, "main")]
    outputs = []
    for engine in engines:
        stepper = GeneratorStepper(engine.run, 256, engine.sequential)
        outputs.append([stepper(avatar.read_image("nmfc", i), avatar.read_image("eyes", i)) for i in range(24, 29)])
    for a, b in zip(*outputs):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


@pytest.mark.skipif(tensorrt_missing() is None, reason="TensorRT and a GPU are present")
def test_engine_selection_falls_back_without_tensorrt(exported, tmp_path):
    import shutil

    _, avatar = exported
    assert load(avatar).provider == "ONNX Runtime (CPUExecutionProvider)"
    with pytest.raises(EngineError, match="TensorRT"):
        load(avatar, "trt")
    assert load(avatar, "torch").provider == "PyTorch (cpu)"
    shutil.copytree(avatar.path, tmp_path / "sample", ignore=shutil.ignore_patterns("engines", "frames", "conditioning"))
    bare = Avatar.open(tmp_path, "sample")
    assert load(bare).provider == "PyTorch (cpu)"  # no ONNX: falls back to PyTorch
    with pytest.raises(EngineError, match="run h2h export"):
        load(bare, "onnx")


@pytest.mark.skipif(tensorrt_missing() is None, reason="TensorRT and a GPU are present")
def test_export_trt_without_gpu_says_what_is_missing(exported, capsys):
    library, avatar = exported
    assert main(["export", "sample", "--trt", "--library", str(library)]) == 2
    err = capsys.readouterr().err
    assert "TensorRT engine not built" in err and "ONNX export is done" in err
    assert (avatar.path / "engines" / "generator.onnx").is_file()


def test_cache_key_changes_with_the_onnx_and_marks_stale_engines(tmp_path):
    a = EngineKey("NVIDIA GeForce RTX 4090", (8, 9), "10.7.0", "a" * 64, "fp16")
    a32 = EngineKey("NVIDIA GeForce RTX 4090", (8, 9), "10.7.0", "a" * 64, "fp32")
    b = EngineKey("NVIDIA GeForce RTX 4090", (8, 9), "10.7.0", "b" * 64, "fp16")
    c = EngineKey("NVIDIA A100-SXM4-40GB", (8, 0), "10.7.0", "a" * 64, "fp16")
    d = EngineKey("NVIDIA GeForce RTX 4090", (8, 9), "11.4.0", "a" * 64, "fp32")
    assert len({k.filename() for k in (a, a32, b, c, d)}) == 5  # precision and weights are in the key
    for key in (a, a32, b, c, d):
        (tmp_path / key.filename()).write_bytes(b"")
    stale = sorted(p.name for p in stale_engines(a, tmp_path))
    assert stale == sorted([c.filename(), d.filename()])  # other GPU or TensorRT, same ONNX


@pytest.mark.skipif(tensorrt_missing() is not None, reason="needs TensorRT and an NVIDIA GPU")
def test_tensorrt_engine_matches_onnx_runtime(exported):
    from h2h.export.tensorrt_export import export_tensorrt

    _, avatar = exported
    result = export_tensorrt(avatar, fp16=True)
    assert result.plan.exists() and result.max_abs_error < 0.05
    assert load(avatar).provider == "TensorRT"


def test_bench_with_an_avatar_reports_the_documented_keys(exported, short_clip, tmp_path):
    library, _ = exported
    out = tmp_path / "bench.json"
    argv = ["bench", "--source", str(short_clip), "--avatar", "sample", "--engine", "onnx", "--frames", "20"]
    assert main([*argv, "--json", str(out), "--library", str(library)]) == 0
    report = json.loads(out.read_text())
    expected = {"decode", "track", "fit", "retarget", "render", "eyes", "generator", "convert", "output"}
    assert set(report["stages_ms"]) == expected
    for key in ("plain_loop_fps", "threaded_fps", "threaded_speedup", "peak_memory_mb", "threaded_latency_ms", "threaded_first_frame_s"):
        assert report[key] > 0
    assert report["threaded_frames"] == report["frames"] == 20
    assert report["engine"]["provider"].startswith("ONNX Runtime")


def test_int8_export_is_checked_and_preferred_on_the_cpu(exported, capsys):
    library, avatar = exported
    assert main(["export", "sample", "--int8", "--library", str(library)]) == 0
    meta = json.loads((avatar.path / "engines" / "generator.int8.onnx.json").read_text())
    assert meta["psnr_vs_fp32_db"] >= 35
    graph = onnx.load(str(avatar.path / "engines" / "generator.int8.onnx")).graph
    producers = {out: node.op_type for node in graph.node for out in node.output}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    assert producers[convs[0].input[1]] == "DequantizeLinear"  # int8 weights
    assert producers.get(convs[-1].input[1]) != "DequantizeLinear"  # the output layer stays fp32 (no speckle)
    engine = load(avatar)
    assert engine.precision == "int8" and engine.provider == "ONNX Runtime (CPUExecutionProvider)"
    assert load(avatar, int8=False).precision == "fp32"
    assert main(["export", "sample", "--library", str(library)]) == 0  # a plain re-export drops it
    assert not (avatar.path / "engines" / "generator.int8.onnx").exists()


def test_normalised_generator_exports_exactly_at_a_sequence_start(tmp_path):
    """All-zero previous outputs must not make a normalised net depend on rounding noise."""
    import torch

    from h2h.export.onnx_export import export_onnx
    from h2h.models.networks import GeneratorConfig, SequentialGenerator

    config = GeneratorConfig(ngf=8, n_down=2, max_channels=32, n_blocks_encoder=1, n_blocks_decoder=1, gate_empty_prev=True)
    torch.manual_seed(0)
    generator = SequentialGenerator(config).eval()
    engine = OnnxEngine(export_onnx(generator), "g.onnx")
    cond = np.random.default_rng(0).uniform(-1, 1, (1, 18, 256, 256)).astype(np.float32)
    zeros = np.zeros((1, 6, 256, 256), np.float32)
    with torch.no_grad():
        expected = generator(torch.from_numpy(cond), torch.from_numpy(zeros)).numpy()
        nudged = generator(torch.from_numpy(cond), torch.from_numpy(zeros + 1e-6)).numpy()
    assert np.abs(engine.run(cond, zeros) - expected).max() < 1e-4
    assert np.abs(nudged - expected).max() > 0  # a real previous frame does reach the output


def test_engines_of_another_run_are_not_used_for_a_named_run(exported):
    _, avatar = exported
    meta_file = avatar.path / "engines" / "generator.onnx.json"
    meta = json.loads(meta_file.read_text())
    try:
        meta_file.write_text(json.dumps(dict(meta, run="warm")))
        assert load(avatar).provider.startswith("ONNX Runtime")  # any exported run
        assert load(avatar, run="main").provider == "PyTorch (cpu)"  # not run main's export
        with pytest.raises(EngineError, match="run 'warm'"):
            load(avatar, "onnx", run="main")
    finally:
        meta_file.write_text(json.dumps(meta))
