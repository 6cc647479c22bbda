"""The live window, offscreen: avatars, previews, virtual camera, switching, settings, messages."""
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")
import pyvirtualcam  # noqa: E402
from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from h2h.app.gui.main_window import MainWindow, fix_qt_plugin_path  # noqa: E402
from h2h.app.sinks import OUTPUT_SIZES  # noqa: E402
from h2h.models.avatar import Avatar  # noqa: E402
from h2h.models.train import Trainer  # noqa: E402
from h2h.models.train_config import RunOptions, train_config  # noqa: E402
from h2h.models.video import VideoWriter  # noqa: E402

SCREENSHOTS = Path(__file__).resolve().parents[1] / "test-output"


class RecordingCamera:
    """A pyvirtualcam backend that keeps what it is sent."""

    frames: list = []

    def __init__(self, *, width, height, fps, fourcc, device, **kw):
        self.width, self.height = width, height

    def send(self, frame):
        RecordingCamera.frames.append(frame.reshape(self.height, self.width, 3).copy())

    def close(self):
        pass

    def device(self):
        return "recording-test-camera"

    def native_fourcc(self):
        return None


@pytest.fixture(scope="module")
def app():
    fix_qt_plugin_path()
    return QApplication.instance() or QApplication([])


@pytest.fixture(scope="module")
def library(prepared, tmp_path_factory):
    """Two trained, exported tiny avatars in a library of their own."""
    from h2h.export.onnx_export import export_avatar

    source_library, _ = prepared
    library = tmp_path_factory.mktemp("gui-library")
    shutil.copytree(source_library / "sample", library / "alice", ignore=shutil.ignore_patterns("checkpoints", "engines"))
    for name in ("alice", "bob"):
        if name == "bob":
            shutil.copytree(library / "alice", library / "bob", ignore=shutil.ignore_patterns("checkpoints", "engines"))
        manifest = (library / name / "avatar.json").read_text().replace('"name": "sample"', f'"name": "{name}"').replace('"name": "alice"', f'"name": "{name}"')
        (library / name / "avatar.json").write_text(manifest)
        avatar = Avatar.open(library, name)
        Trainer(avatar, train_config("tiny", seed=len(name)), RunOptions(max_steps=1, progress=False)).run()
        export_avatar(avatar)
    return library


def _settings(tmp_path) -> QSettings:
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


def _wait(app, condition, seconds=20.0) -> bool:
    end = time.time() + seconds
    while time.time() < end:
        app.processEvents()
        if condition():
            app.processEvents()  # the layout requests the change posted, so a screenshot shows it laid out
            return True
        time.sleep(0.01)
    return False


def _window(app, library, settings, source) -> MainWindow:
    window = MainWindow(settings, library)
    window.resize(1280, 720)
    window.show()
    window.set_source(str(source))
    return window


def test_window_drives_avatars_into_a_virtual_camera(app, library, short_clip, tmp_path, monkeypatch):
    monkeypatch.setitem(pyvirtualcam.camera.BACKENDS, "recording", RecordingCamera)
    RecordingCamera.frames = []
    settings = _settings(tmp_path)
    settings.setValue("vcam/backend", "recording")  # never a real v4l2loopback device in tests
    window = _window(app, library, settings, short_clip)
    try:
        assert [e.name for e in window.entries][:2] == ["alice", "bob"]
        assert window.avatar_list.count() >= 2 and "ONNX" in window.avatar_list.item(0).text()
        window.size_combo.setCurrentText("512x512")
        window.start_when_ready()
        assert _wait(app, lambda: window.session.latest() is not None), window.message.text()
        assert _wait(app, lambda: not window.output_view.pixmap().isNull())
        assert not window.source_view.pixmap().isNull() and not window.cond_view.pixmap().isNull()
        window.vcam_check.setChecked(True)
        assert "recording" in window.vcam_label.text()
        assert _wait(app, lambda: len(RecordingCamera.frames) >= 3)
        assert RecordingCamera.frames[-1].shape == (*OUTPUT_SIZES["512x512"][::-1], 3)
        assert "fps" in window.fps_label.text() and "ONNX Runtime" in window.engine_label.text()
        assert _wait(app, lambda: "latency p50" in window.stage_label.text())
        assert "dropped" in window.stage_label.text()  # what a user sees of stutter

        window.avatar_list.setCurrentRow(1)  # switch mid-stream
        assert _wait(app, lambda: window.session.current.avatar.name == "bob")
        sent = len(RecordingCamera.frames)
        assert _wait(app, lambda: len(RecordingCamera.frames) > sent + 3)  # frames keep flowing
        assert window.session.running
        SCREENSHOTS.mkdir(exist_ok=True)
        assert window.grab().save(str(SCREENSHOTS / "live_window.png"))
    finally:
        window.close()


def test_no_virtual_camera_says_how_to_get_one_and_keeps_previewing(app, library, short_clip, tmp_path, monkeypatch):
    monkeypatch.setattr(pyvirtualcam.camera, "BACKENDS", {"v4l2loopback": pyvirtualcam.camera.BACKENDS.get("v4l2loopback", RecordingCamera)})
    if pyvirtualcam.camera.BACKENDS["v4l2loopback"] is RecordingCamera:
        pytest.skip("no native backend to fail")
    window = _window(app, library, _settings(tmp_path), short_clip)
    try:
        window.start_when_ready()
        assert _wait(app, lambda: window.session.latest() is not None)
        window.vcam_check.setChecked(True)
        text = window.vcam_label.text()
        assert "unavailable" in text and ("v4l2loopback" in text or "OBS" in text)
        assert not window.vcam_check.isChecked() and window.session.running
    finally:
        window.close()


def test_no_face_in_view_is_shown(app, library, tmp_path):
    blank = tmp_path / "blank.mp4"
    with VideoWriter(blank, 30.0, (256, 256)) as writer:
        for _ in range(30):
            writer.write(np.full((256, 256, 3), 90, np.uint8))
    window = _window(app, library, _settings(tmp_path), blank)
    try:
        window.start_when_ready()
        assert _wait(app, lambda: "No face" in window.face_label.text()), window.face_label.text()
    finally:
        window.close()


def test_settings_survive_a_restart(app, library, short_clip, tmp_path):
    window = _window(app, library, _settings(tmp_path), short_clip)
    assert _wait(app, lambda: window.session.current is not None)
    window.avatar_list.setCurrentRow(1)
    assert _wait(app, lambda: window.session.current.avatar.name == "bob")
    window.expression.setValue(150)
    window.yaw.setValue(-12)
    window.gaze_check.setChecked(True)
    window.mode_combo.setCurrentText("face")
    window.size_combo.setCurrentText("640x480")
    window.close()
    again = _window(app, library, _settings(tmp_path), short_clip)
    try:
        assert again.expression.value() == 150 and again.yaw.value() == -12 and again.gaze_check.isChecked()
        assert again.mode_combo.currentText() == "face" and again.size_combo.currentText() == "640x480"
        assert again.avatar_list.currentRow() == 1
        assert again.source_combo.currentData() == str(short_clip)
    finally:
        again.close()


def test_the_face_tracker_switches_while_running_and_a_missing_network_is_said(app, library, short_clip, tmp_path, monkeypatch):
    settings = _settings(tmp_path)
    window = _window(app, library, settings, short_clip)
    try:
        window.start_when_ready()
        assert _wait(app, lambda: window.session.latest() is not None), window.message.text()
        window.use_tracker("densefacereg")
        assert window.tracker_combo.currentText() == "DenseFaceReg" and "DenseFaceReg" in window.message.text()
        assert _wait(app, lambda: window.session.face.tracker == "densefacereg")
        shown = window.session.pipeline.stats.delivered
        assert _wait(app, lambda: window.session.pipeline.stats.delivered > shown + 3 and window.session.latest().face_found)
        assert settings.value("tracker") == "densefacereg"
        window.use_tracker("mediapipe")
        monkeypatch.setattr("h2h.engines.facereg_engine.SHIPPED_FACEREG", tmp_path / "nowhere")
        window.use_tracker("densefacereg")
        assert "DenseFaceReg cannot run" in window.message.text()
        assert window.tracker_combo.currentText() == "MediaPipe" and window.session.tracker == "mediapipe"
        assert window.session.running
    finally:
        window.close()


def test_headless_records_one_frame_per_source_frame(library, short_clip, tmp_path, capsys):
    import json

    from h2h.app.cli import main
    from h2h.models.video import read_frames

    out = tmp_path / "live.mp4"
    argv = ["live", "--headless", "--avatar", "bob", "--source", str(short_clip), "--record", str(out)]
    assert main([*argv, "--library", str(library)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads(printed[printed.index("{"):])
    source_frames = len(list(read_frames(short_clip)))
    assert summary["frames"] == source_frames and summary["recorded"]["frames"] == source_frames
    assert len(list(read_frames(out))) == source_frames
    assert "engine ONNX Runtime" in printed and summary["fps"] > 0
    assert summary["tracker"] == "mediapipe"


def test_headless_without_a_virtual_camera_keeps_running(library, short_clip, capsys, monkeypatch):
    from h2h.app.cli import main

    monkeypatch.setattr(pyvirtualcam.camera, "BACKENDS", {})
    argv = ["live", "--headless", "--avatar", "alice", "--source", str(short_clip), "--vcam", "--frames", "10"]
    assert main([*argv, "--library", str(library)]) == 0
    out = capsys.readouterr().out
    assert "virtual camera off" in out and '"frames": 10' in out


def test_the_window_honours_the_command_line_flags(app, library, short_clip, tmp_path, monkeypatch):
    from h2h.app.cli import build_parser
    from h2h.app.gui.main_window import apply_cli_flags
    from h2h.models.video import read_frames

    monkeypatch.setitem(pyvirtualcam.camera.BACKENDS, "recording", RecordingCamera)
    RecordingCamera.frames = []
    settings = _settings(tmp_path)
    settings.setValue("vcam/backend", "recording")
    settings.setValue("mode", "head")
    settings.setValue("output_size", "1280x720")
    out = tmp_path / "gui.mp4"
    args = build_parser().parse_args([
        "live", "--avatar", "bob", "--source", str(short_clip), "--mode", "face", "--engine", "torch",
        "--vcam", "--record", str(out), "--size", "640x480", "--library", str(library),
    ])
    window = MainWindow(settings, library, args.engine)
    try:
        apply_cli_flags(window, args)
        window.show()
        window.start_when_ready()
        assert _wait(app, lambda: window.session.latest() is not None and len(RecordingCamera.frames) >= 3), window.message.text()
        assert window.session.current.avatar.name == "bob"
        assert window.session.current.engine.provider == "PyTorch (cpu)"  # --engine torch
        assert window.session.face.retargeter.mode == "face"  # --mode face reached the pipeline
        assert window.session.source.name == short_clip.name  # --source
        assert RecordingCamera.frames[-1].shape == (480, 640, 3)  # --vcam at --size
        assert window.session.recorder is not None and window.session.recorder.size == (640, 480)
        window.toggle_recording()
    finally:
        window.close()
    frames = list(read_frames(out))
    assert frames and frames[0].shape == (480, 640, 3)  # --record wrote the avatar at the output size


def _conditioning(window, frames) -> list[np.ndarray]:
    """What the face stage makes of these source frames under the window's current controls."""
    from h2h.app.pipeline import Packet

    packets = [window.session.face.process(Packet(i, i / 30, frame)) for i, frame in enumerate(frames)]
    return [np.concatenate([p.nmfc, p.eyes]) for p in packets]  # NMFC on top of the eye sketch


def _holes(image: np.ndarray) -> int:
    """Pixels enclosed by the rendered face but not covered by it (the open mouth, the eyes)."""
    import cv2

    mask = image.any(-1).astype(np.uint8)
    filled = mask.copy()
    cv2.floodFill(filled, None, (0, 0), 1)
    return int((filled == 0).sum())


def _centroid_x(image: np.ndarray) -> float:
    return float(np.argwhere(image.any(-1))[:, 1].mean())


def test_controls_change_the_conditioning_as_labelled(app, library, short_clip, tmp_path):
    """Each control, set on its widget, judged by the NMFC and eye images it produces."""
    from h2h.models.video import read_frames

    frames = list(read_frames(short_clip))[::3]
    window = _window(app, library, _settings(tmp_path), short_clip)
    try:
        window.smoothing.setValue(0)
        window.start_when_ready()
        assert _wait(app, lambda: window.session.latest() is not None)
        window.toggle_running()  # stop the threads; the face stage stays for direct use
        window.session.recalibrate()
        _conditioning(window, frames)  # the source's neutral and position are learnt here
        base = _conditioning(window, frames)
        nmfc = lambda c: c[:256]  # noqa: E731
        eyes = lambda c: c[256:]  # noqa: E731

        centres = {}
        for yaw in (-25, 25):
            window.yaw.setValue(yaw)
            centres[yaw] = _centroid_x(nmfc(_conditioning(window, frames[:1])[0]))
        window.yaw.setValue(0)
        mid = _centroid_x(nmfc(base[0]))
        assert (centres[-25] - mid) * (centres[25] - mid) < 0 and abs(centres[25] - centres[-25]) > 4

        window.expression.setValue(0)
        still = _conditioning(window, frames)
        window.expression.setValue(100)
        mouth_moves = lambda seq: np.std([_holes(nmfc(c)) for c in seq])  # noqa: E731
        assert mouth_moves(still) < 0.5 * mouth_moves(base)

        window.gaze_check.setChecked(True)
        looking = _conditioning(window, frames)
        window.gaze_check.setChecked(False)
        assert any(not np.array_equal(eyes(a), eyes(b)) for a, b in zip(looking, base))

        window.lock_check.setChecked(True)
        window.expression.setValue(0)
        window.gaze_check.setChecked(True)
        frozen = _conditioning(window, frames)
        assert all(np.array_equal(frozen[0], c) for c in frozen[1:])  # pose, expression and gaze all held
        for widget in (window.lock_check, window.gaze_check):
            widget.setChecked(False)
        window.expression.setValue(100)

        window.smoothing.setValue(95)
        smooth = _conditioning(window, frames)
        window.smoothing.setValue(0)
        jitter = lambda seq: np.mean([np.abs(a.astype(int) - b).mean() for a, b in zip(seq, seq[1:])])  # noqa: E731
        assert jitter(smooth) < jitter(base)
    finally:
        window.close()


def test_recalibrate_takes_the_neutral_and_position_from_the_coming_frames(app, library, short_clip, tmp_path):
    """After the source moved far from the camera, recalibrating makes the avatar's size follow
    the new position as a fresh start would; without it, the old calibration distorts it."""
    import cv2

    from h2h.models.video import read_frames

    frames = list(read_frames(short_clip))
    small = [cv2.copyMakeBorder(cv2.resize(f, (128, 128)), 64, 64, 64, 64, cv2.BORDER_REPLICATE) for f in frames]
    window = _window(app, library, _settings(tmp_path), short_clip)
    try:
        window.smoothing.setValue(0)
        window.start_when_ready()
        assert _wait(app, lambda: window.session.latest() is not None)
        window.toggle_running()
        area = lambda c: float(c[:256].any(-1).mean())  # noqa: E731
        window.session.recalibrate()
        fresh = area(_conditioning(window, frames)[-1])
        window.session.recalibrate()
        _conditioning(window, small)  # calibrated on a face twice as far away
        stale = area(_conditioning(window, frames)[-1])
        window.session.recalibrate()
        recalibrated = area(_conditioning(window, frames)[-1])
        assert abs(recalibrated - fresh) < 0.1 * fresh < abs(stale - fresh)
    finally:
        window.close()


def test_headless_gives_up_on_a_camera_that_never_delivers(library, capsys):
    from h2h.app.cli import main

    started = time.time()
    argv = ["live", "--headless", "--avatar", "bob", "--source", "7", "--frames", "3", "--camera-timeout", "1"]
    assert main([*argv, "--library", str(library)]) == 1
    assert time.time() - started < 60
    err = capsys.readouterr().err
    assert "camera 7 gave no frame in 1 s" in err and "Traceback" not in err


def test_headless_on_a_clip_without_a_face_says_so(library, tmp_path, capsys):
    from h2h.app.cli import main

    blank = tmp_path / "blank.mp4"
    with VideoWriter(blank, 30.0, (256, 256)) as writer:
        for _ in range(10):
            writer.write(np.full((256, 256, 3), 90, np.uint8))
    assert main(["live", "--headless", "--avatar", "bob", "--source", str(blank), "--library", str(library)]) == 1
    assert "no face in any of the 10 frames of blank.mp4" in capsys.readouterr().err
