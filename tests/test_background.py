"""Background replacement with the generator's mask: parsing, compositing, headless live,
reenact and the window's switch while running."""
import shutil

import cv2
import numpy as np
import pytest

from h2h.app.background import Background, BackgroundError, Compositor, parse_background
from h2h.app.cli import main
from h2h.models.avatar import Avatar
from h2h.models.train import Trainer
from h2h.models.train_config import RunOptions, train_config
from h2h.models.video import read_frames


@pytest.fixture(scope="module")
def library(prepared, tmp_path_factory):
    """'masked': a tiny generator with a mask output; 'plain': one without, both exported."""
    from h2h.export.onnx_export import export_avatar

    source, _ = prepared
    library = tmp_path_factory.mktemp("background-library")
    for name, mask in (("masked", 10.0), ("plain", 0.0)):
        shutil.copytree(source / "sample", library / name, ignore=shutil.ignore_patterns("checkpoints", "engines", "preview"))
        manifest = (library / name / "avatar.json").read_text().replace('"name": "sample"', f'"name": "{name}"')
        (library / name / "avatar.json").write_text(manifest)
        avatar = Avatar.open(library, name)
        Trainer(avatar, train_config("tiny", mask=mask), RunOptions(max_steps=2, progress=False)).run()
        export_avatar(avatar)
    return library


def test_background_specs_parse_or_say_what_is_wrong(tmp_path):
    assert parse_background("keep").replaces is False
    assert parse_background("color:00ff00").color == (0, 255, 0)
    assert parse_background("blur").kind == "blur"
    image = tmp_path / "beach.png"
    cv2.imwrite(str(image), np.full((40, 60, 3), 200, np.uint8))
    assert parse_background(str(image)).image.shape == (40, 60, 3)
    with pytest.raises(BackgroundError, match="RRGGBB"):
        parse_background("color:green")
    with pytest.raises(BackgroundError, match="keep, blur"):
        parse_background(str(tmp_path / "missing.jpg"))
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(BackgroundError, match="not a readable image"):
        parse_background(str(tmp_path / "junk.png"))


def test_compositing_keeps_the_person_and_replaces_the_rest(prepared):
    library, _ = prepared
    avatar = Avatar.open(library, "sample")
    frame, mask = avatar.read_image("frame", 0), avatar.read_mask(0)
    person, rest = mask == 255, mask == 0
    assert person.any() and rest.any()
    green = Compositor(parse_background("color:00FF00"))(frame, mask)
    assert np.array_equal(green[person], frame[person])
    assert np.all(green[rest] == (0, 255, 0))
    blurred = Compositor(parse_background("blur"))(frame, mask)
    assert np.array_equal(blurred[person], frame[person])
    assert np.abs(blurred[rest].astype(int) - frame[rest]).mean() > 0.5
    assert Compositor(Background())(frame, mask) is frame
    assert Compositor(parse_background("blur"))(frame, None) is frame  # no mask: nothing to replace


def _recorded(library, tmp_path, name, background, capsys):
    out = tmp_path / f"{name}-{background.replace(':', '_')}.mp4"
    argv = ["live", "--headless", "--avatar", name, "--source", str(_clip(library)), "--record", str(out),
            "--background", background, "--library", str(library)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    return np.stack(list(read_frames(out))).astype(float), printed


def _clip(library):
    from h2h.models.video import VideoWriter

    path = library / "driver.mp4"
    if not path.exists():
        avatar = Avatar.open(library, "plain")
        with VideoWriter(path, 30.0, (256, 256)) as writer:
            for i in avatar.split_indices("test"):
                writer.write(avatar.read_image("frame", int(i)))
    return path


def test_headless_live_puts_the_person_on_a_green_background(library, tmp_path, capsys):
    keep, _ = _recorded(library, tmp_path, "masked", "keep", capsys)
    green, _ = _recorded(library, tmp_path, "masked", "color:00FF00", capsys)
    assert keep.shape == green.shape
    shift = (green - keep).mean(axis=(0, 1, 2))
    assert shift[1] > 5 and shift[0] < 0 and shift[2] < 0  # towards pure green wherever the mask says background


def test_an_avatar_without_a_mask_keeps_its_background_and_says_why(library, tmp_path, capsys):
    keep, _ = _recorded(library, tmp_path, "plain", "keep", capsys)
    blurred, printed = _recorded(library, tmp_path, "plain", "blur", capsys)
    assert "predicts no foreground mask" in printed
    assert np.abs(keep - blurred).max() < 1e-6
    code = main(["reenact", "--avatar", "plain", "--source", str(_clip(library)), "--out", str(tmp_path / "r.mp4"),
                 "--background", "blur", "--library", str(library)])
    assert code == 1 and "no foreground mask" in capsys.readouterr().err
    assert main(["live", "--headless", "--avatar", "masked", "--source", str(_clip(library)), "--background", "color:xyz",
                 "--library", str(library)]) == 1
    assert "RRGGBB" in capsys.readouterr().err


def test_reenact_with_a_background(library, tmp_path, capsys):
    out = tmp_path / "green.mp4"
    assert main(["reenact", "--avatar", "masked", "--source", str(_clip(library)), "--out", str(out), "--frames", "4",
                 "--background", "color:00FF00", "--library", str(library)]) == 0
    frames = np.stack(list(read_frames(out))).astype(float)
    assert frames.shape[0] == 4 and frames[..., 1].mean() > frames[..., 0].mean()


def test_the_window_switches_background_while_running(prepared, library, tmp_path, monkeypatch):
    pytest.importorskip("PySide6")
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from h2h.app.gui.main_window import MainWindow, fix_qt_plugin_path

    from .test_gui import SCREENSHOTS, _wait

    fix_qt_plugin_path()
    app = QApplication.instance() or QApplication([])
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    settings.setValue("avatar", "masked")
    window = MainWindow(settings, library)
    window.resize(1280, 720)
    window.show()
    window.set_source(str(_clip(library)))
    try:
        assert _wait(app, lambda: window.session.current is not None and window.session.current.avatar.name == "masked")
        window.start_when_ready()
        assert _wait(app, lambda: window.session.latest() is not None), window.message.text()
        window.background_combo.setCurrentText("Green")
        assert window.session.compositor.background.kind == "color"
        assert "Background: color:00B140" in window.message.text()
        first = window.session.latest().index
        assert _wait(app, lambda: window.session.latest().index > first + 2)
        output = window.session.latest().output.astype(float)
        assert output[..., 1].mean() > output[..., 0].mean()
        SCREENSHOTS.mkdir(exist_ok=True)
        assert window.grab().save(str(SCREENSHOTS / "background_green.png"))
        window.use_background("color:FF0000")  # as --background does: the combo names what is in use
        assert window.background_combo.currentText() == "color:FF0000"
        from PySide6.QtWidgets import QFileDialog

        monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: ("", "")))  # the user cancels
        window.background_combo.setCurrentText("Image…")
        assert window.background_combo.currentText() == "color:FF0000"
        assert window.session.compositor.background.label == "color:FF0000"
        row = next(i for i, e in enumerate(window.entries) if e.name == "plain")
        window.avatar_list.setCurrentRow(row)
        assert _wait(app, lambda: "predicts no foreground mask" in window.message.text()), window.message.text()
    finally:
        window.close()
