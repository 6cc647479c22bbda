"""Out of the box: the bundled demo avatar and sample clip drive the live pipeline."""
import json

import pytest

from h2h.app.cli import main
from h2h.app.session import BUNDLED
from h2h.app.sources import list_cameras
from h2h.models.avatar import Avatar


def test_the_demo_avatar_is_bundled_and_small():
    avatar = Avatar.open_path(BUNDLED / "d6")
    assert (avatar.path / "engines" / "generator.onnx").is_file()
    assert not (avatar.path / "frames").exists()  # no raw training data shipped
    size = sum(p.stat().st_size for p in avatar.path.rglob("*") if p.is_file())
    assert size < 20e6


@pytest.mark.skipif(bool(list_cameras()), reason="a webcam is attached")
def test_empty_library_and_no_arguments_use_the_demo_and_the_sample_clip(tmp_path, capsys):
    assert main(["live", "--headless", "--frames", "12", "--library", str(tmp_path / "empty")]) == 0
    out = capsys.readouterr().out
    assert "avatar d6 (bundled demo)" in out and "no webcam found" in out
    summary = json.loads(out[out.index("{"):])
    assert summary["frames"] == 12 and summary["fps"] > 0
