"""The learned 512x512 output: the network, its training, the video re-crop it learns from,
export (fp32 and int8), the checks on a shared upsampler.onnx, headless live, bench and the
window's switch."""
import contextlib
import io
import json
import shutil

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from h2h.app.cli import main
from h2h.engines.base import EngineError
from h2h.engines.onnx_check import check_upsampler_onnx
from h2h.models.avatar import Avatar, AvatarError
from h2h.models.checkpoint import CheckpointError
from h2h.models.networks.upsampler import Upsampler, upsampler_config
from h2h.models.source import hires_crops
from h2h.models.upsampler_training import UPSAMPLER_STATE, UpsamplerPairs, UpsamplerTrainConfig, UpsamplerTrainer
from h2h.models.video import VideoWriter, read_frames


def test_an_untrained_upsampler_is_bilinear_and_doubles_the_size():
    net = Upsampler(upsampler_config("tiny"))
    x = torch.rand(1, 3, 32, 48) * 2 - 1
    out = net(x)
    assert out.shape == (1, 3, 64, 96)
    assert torch.allclose(out, F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
    with pytest.raises(ValueError, match="unknown upsampler preset"):
        upsampler_config("huge")


def _pairs(n: int = 6, size: int = 32, seed: int = 0) -> UpsamplerPairs:
    """Blocky images whose 2x target is nearest-neighbour: bilinear blurs their edges, which
    the residual can learn to undo."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (n, size // 4, size // 4, 3), dtype=np.uint8)
    real = coarse.repeat(4, 1).repeat(4, 2)
    return UpsamplerPairs(real.copy(), real, real.repeat(2, 1).repeat(2, 2))


def test_patches_are_aligned_between_the_input_and_its_target():
    pairs = _pairs()
    low, high = pairs.batch(np.random.default_rng(1), UpsamplerTrainConfig(preset="tiny", batch=4, patch=16, blur=0.0))
    assert low.shape == (4, 3, 16, 16) and high.shape == (4, 3, 32, 32)
    assert torch.equal(F.avg_pool2d(high, 2), low)  # the target is the input's own 2x copy, not a shifted one
    with pytest.raises(ValueError, match="must match"):
        UpsamplerPairs(pairs.real[:2], pairs.real, pairs.hires)


def test_training_learns_detail_that_bilinear_misses_and_resumes(tmp_path):
    pairs = _pairs()
    config = UpsamplerTrainConfig(preset="tiny", batch=4, patch=16, lr=3e-3, blur=0.0)
    trainer = UpsamplerTrainer(pairs, tmp_path, config, minutes=10, progress=False)
    before = _l1(trainer.net, pairs)
    result = trainer.run(max_steps=60)
    after = _l1(trainer.net, pairs)
    assert result["step"] == 60
    assert after < 0.7 * before, (before, after)
    meta = json.loads((tmp_path / "upsampler.json").read_text())
    assert meta["preset"] == "tiny" and meta["step"] == result["step"]
    again = UpsamplerTrainer(pairs, tmp_path, UpsamplerTrainConfig(), minutes=10, resume=True, progress=False)
    assert again.step == 60 and again.config == config  # the saved settings, not the ones given
    assert again.run(max_steps=70)["step"] == 70
    (tmp_path / UPSAMPLER_STATE).write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable h2h checkpoint"):
        UpsamplerTrainer(pairs, tmp_path, config, minutes=1, resume=True, progress=False)


def _l1(net: Upsampler, pairs: UpsamplerPairs) -> float:
    as_tensor = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        return float((net(as_tensor(pairs.real)) - as_tensor(pairs.hires)).abs().mean())


@pytest.fixture(scope="module")
def hires_library(exported, short_clip, tmp_path_factory):
    """(library, what the command printed, its scores): a copy of the exported sample avatar
    given an upsampler by `h2h upsampler` (trained briefly, exported with int8, scored)."""
    source, _ = exported
    library = tmp_path_factory.mktemp("hires-library")
    shutil.copytree(source / "sample", library / "sample", ignore=shutil.ignore_patterns("preview"))
    scores = library / "scores.json"
    args = ["upsampler", "sample", "--video", str(short_clip), "--preset", "tiny", "--minutes", "0.05", "--int8",
            "--score", "4", "--json", str(scores), "--library", str(library)]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(args) == 0
    return library, printed.getvalue(), json.loads(scores.read_text())


def test_hires_crops_come_from_the_prepared_video_only(exported, short_clip, tmp_path):
    library, _ = exported
    avatar = Avatar.open(library, "sample")
    indices = avatar.split_indices("train")[:3]
    crops = hires_crops(avatar, short_clip, indices, 512)
    assert crops.shape == (3, 512, 512, 3) and crops.std() > 10
    mirrored, cut = tmp_path / "mirrored.mp4", tmp_path / "cut.mp4"
    with VideoWriter(mirrored, 30.0, (256, 256)) as writer:
        for frame in read_frames(short_clip):
            writer.write(np.ascontiguousarray(frame[:, ::-1]))  # as long, other pictures
    with VideoWriter(cut, 30.0, (256, 256)) as writer:
        for frame in read_frames(short_clip, 10):
            writer.write(frame)
    with pytest.raises(AvatarError, match="give the video it was prepared from"):
        hires_crops(avatar, mirrored, indices, 512)
    with pytest.raises(AvatarError, match="not the video avatar 'sample' was prepared from"):
        hires_crops(avatar, cut, indices, 512)


def test_the_upsampler_command_trains_exports_and_scores(hires_library, tmp_path, capsys):
    library, printed, scores = hires_library
    assert "upsampler.onnx" in printed and "int8 for CPUs" in printed and "learned upsampler: masked_apd" in printed
    assert set(scores) == {"learned upsampler", "bicubic", "256 output"}
    assert all(np.isfinite(scores[k]["masked_apd"]) and scores[k]["frames"] == 4 for k in scores)
    engines = library / "sample" / "engines"
    assert (engines / "upsampler.onnx").is_file() and (engines / "upsampler.int8.onnx").is_file()
    assert main(["upsampler", "sample", "--video", str(tmp_path / "none.mp4"), "--library", str(library)]) == 1
    assert "no such file" in capsys.readouterr().err


def test_live_and_bench_run_at_512(hires_library, short_clip, tmp_path, capsys):
    library = hires_library[0]
    record = tmp_path / "hires.mp4"
    assert main(["live", "--headless", "--avatar", "sample", "--source", str(short_clip), "--frames", "6", "--hires",
                 "--record", str(record), "--library", str(library)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads(printed[printed.index("{"):])
    assert "upsample" in summary["stages_ms"]
    frames = list(read_frames(record))
    assert frames and frames[0].shape == (512, 512, 3)
    report = tmp_path / "bench.json"
    assert main(["bench", "--source", str(short_clip), "--frames", "8", "--avatar", "sample", "--hires",
                 "--json", str(report), "--library", str(library)]) == 0
    bench = json.loads(report.read_text())
    assert bench["output_resolution"] == 512 and "upsample" in bench["stages_ms"]
    assert bench["engine"]["upsampler"] == {"provider": "ONNX Runtime (CPUExecutionProvider)", "precision": "int8"}


def test_an_avatar_without_an_upsampler_says_how_to_make_one(exported, short_clip, capsys):
    library, _ = exported
    assert main(["live", "--headless", "--avatar", "sample", "--source", str(short_clip), "--frames", "3", "--hires",
                 "--library", str(library)]) == 0
    assert "h2h upsampler sample --video" in capsys.readouterr().out
    from h2h.app.bench import run_bench

    with pytest.raises(EngineError, match="needs --avatar"):
        run_bench(short_clip, 3, hires=True)


def test_a_shared_upsampler_onnx_is_checked_before_it_runs(hires_library):
    import onnx

    data = (hires_library[0] / "sample" / "engines" / "upsampler.onnx").read_bytes()
    check_upsampler_onnx(data, 256, "upsampler.onnx")
    with pytest.raises(EngineError, match="1x3x128x128"):
        check_upsampler_onnx(data, 128, "upsampler.onnx")
    model = onnx.load_model_from_string(data)
    model.graph.initializer[0].data_location = onnx.TensorProto.EXTERNAL
    with pytest.raises(EngineError, match="external data"):
        check_upsampler_onnx(model.SerializeToString(), 256, "upsampler.onnx")
    with pytest.raises(EngineError, match="not an ONNX model"):
        check_upsampler_onnx(b"\x00junk", 256, "upsampler.onnx")


def test_the_window_switches_to_512_while_running(hires_library, short_clip, tmp_path):
    pytest.importorskip("PySide6")
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from h2h.app.gui.main_window import MainWindow, fix_qt_plugin_path

    from .test_gui import SCREENSHOTS, _wait

    fix_qt_plugin_path()
    app = QApplication.instance() or QApplication([])
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    settings.setValue("avatar", "sample")
    window = MainWindow(settings, hires_library[0])
    window.resize(1280, 720)
    window.show()
    window.set_source(str(short_clip))
    try:
        assert _wait(app, lambda: window.session.current is not None)
        window.start_when_ready()
        assert _wait(app, lambda: window.session.latest() is not None), window.message.text()
        assert window.session.latest().output.shape == (256, 256, 3)
        window.hires_check.setChecked(True)
        assert window.message.text() == "512x512 output on."
        assert _wait(app, lambda: window.session.latest().output.shape == (512, 512, 3)), window.message.text()
        SCREENSHOTS.mkdir(exist_ok=True)
        assert window.grab().save(str(SCREENSHOTS / "hires_512.png"))
        window.hires_check.setChecked(False)
        assert _wait(app, lambda: window.session.latest().output.shape == (256, 256, 3))
    finally:
        window.close()


def test_a_received_upsampler_that_reaches_outside_is_refused_not_followed(hires_library, short_clip, tmp_path, capsys):
    from h2h.engines.upsampler_engine import load_upsampler_engine

    library = tmp_path / "received"
    shutil.copytree(hires_library[0] / "sample", library / "sample", ignore=shutil.ignore_patterns("checkpoints"))
    engines = library / "sample" / "engines"
    (engines / "upsampler.int8.onnx").write_bytes(b"\x00junk")  # a damaged int8 model: fp32 is used instead
    engine = load_upsampler_engine(Avatar.open(library, "sample"))
    assert engine.precision == "fp32"
    secret = tmp_path / "secret.onnx"
    shutil.copy(engines / "upsampler.onnx", secret)
    (engines / "upsampler.onnx").unlink()
    (engines / "upsampler.onnx").symlink_to(secret)
    with pytest.raises(EngineError, match="ONNX upsampler skipped"):
        load_upsampler_engine(Avatar.open(library, "sample"))
    assert main(["live", "--headless", "--avatar", "sample", "--source", str(short_clip), "--frames", "3", "--hires",
                 "--library", str(library)]) == 0
    assert "512x512 off" in capsys.readouterr().out


class _Doubling:
    """A stand-in upsampler engine: nearest-neighbour 2x."""

    def run(self, frame: np.ndarray) -> np.ndarray:
        return frame.repeat(2, 2).repeat(2, 3)


def test_the_output_stage_makes_images_at_the_upsampled_size_with_the_mask():
    from h2h.app.pipeline import OutputStage, Packet

    raw = np.zeros((4, 8, 8), np.float32)
    raw[0], raw[3] = 1.0, 1.0  # red, all foreground
    packet = OutputStage().process(Packet(0, 0.0, np.zeros((8, 8, 3), np.uint8), raw=raw.copy()))
    assert packet.output.shape == (8, 8, 3) and packet.output[0, 0].tolist() == [255, 128, 128]
    assert packet.mask.shape == (8, 8) and packet.mask.min() == 255
    packet = OutputStage(_Doubling()).process(Packet(0, 0.0, np.zeros((8, 8, 3), np.uint8), raw=raw.copy()))
    assert packet.output.shape == (16, 16, 3) and packet.mask.shape == (16, 16) and "upsample" in packet.timings
    images = Packet(0, 0.0, np.zeros((8, 8, 3), np.uint8), output=np.full((8, 8, 3), 200, np.uint8), mask=np.full((8, 8), 255, np.uint8))
    packet = OutputStage(_Doubling()).process(images)  # a device stepper's images
    assert packet.output.shape == (16, 16, 3) and abs(int(packet.output[0, 0, 0]) - 200) <= 1 and packet.mask.shape == (16, 16)
