"""`h2h prepare` end to end on a real clip, and every bad input the issue lists."""
import json
import os

import cv2
import numpy as np
import pytest

from h2h.app.cli import main
from h2h.models.avatar import Avatar
from h2h.models.video import VideoWriter, read_frames

from .conftest import CLIP_FRAMES


def test_prepare_writes_a_complete_avatar_folder(prepared, model):
    library, result = prepared
    assert (result.frames, result.valid, result.dropped) == (CLIP_FRAMES, CLIP_FRAMES, 0)
    avatar = Avatar.open(library, "sample")
    manifest = json.loads((result.path / "avatar.json").read_text())
    assert manifest["counts"] == {"frames": 36, "valid": 36, "dropped": 0, "train": 24, "test": 12}
    assert manifest["split"] == {"train": [0, 24], "test": [24, 36]}
    tracks = avatar.tracks
    n, k = CLIP_FRAMES, model.num_expressions
    expected = {
        "landmarks": (n, 478, 3), "valid": (n,), "scale": (n,), "rotation": (n, 3, 3),
        "translation": (n, 3), "expression": (n, k), "pupils": (n, 2, 2), "mouth": (n, 2),
    }
    assert {key: tracks[key].shape for key in expected} == expected
    assert avatar.subject.neutral.shape == (468, 3)
    for kind in ("frame", "nmfc", "eyes"):
        image = avatar.read_image(kind, n - 1)
        assert image.shape == (256, 256, 3)
    nmfc = avatar.read_image("nmfc", 0)
    assert 0.08 < nmfc.any(-1).mean() < 0.8  # a face, not an empty or full image
    with np.load(result.path / "conditioning" / "flow.npz") as data:
        assert data["flow"].shape == (n, 128, 128, 2)
        assert np.abs(data["flow"][1:]).max() > 0.1  # the head moves
    assert cv2.imread(str(result.path / "thumbnail.png")).shape == (128, 128, 3)
    sheet = cv2.imread(str(result.preview))
    assert sheet.shape == (4 * 256, 4 * 256, 3)
    assert sum(1 for _ in read_frames(result.path / "preview" / "preview.mp4")) == n
    assert not [p for p in library.iterdir() if p.name.startswith(".")]  # no partial folders left


def test_pupils_sit_inside_the_eyes(prepared):
    library, _ = prepared
    avatar = Avatar.open(library, "sample")
    tracks = avatar.tracks
    topo_eyes = avatar.subject  # noqa: F841 - loads identity too
    from h2h.models.geometry.topology import load_topology

    topo = load_topology()
    for marks, pupils in zip(tracks["landmarks"], tracks["pupils"]):
        for eye, pupil in zip(topo.eyes, pupils):
            contour = marks[eye, :2].astype(np.float32)
            assert cv2.pointPolygonTest(contour, tuple(map(float, pupil)), True) > -1.0


def _write_clip(path, frames):
    with VideoWriter(path, 30.0, (frames[0].shape[1], frames[0].shape[0])) as writer:
        for f in frames:
            writer.write(f)
    return path


def test_frames_without_a_face_are_dropped_not_fatal(tmp_path, short_clip, capsys):
    frames = list(read_frames(short_clip, 24))
    frames[8:12] = [np.full_like(frames[0], 127)] * 4
    clip = _write_clip(tmp_path / "gaps.mp4", frames)
    assert main(["prepare", str(clip), "--name", "gaps", "--library", str(tmp_path / "lib")]) == 0
    out = capsys.readouterr().out
    assert "24 frames, 20 valid, 4 dropped" in out
    tracks = Avatar.open(tmp_path / "lib", "gaps").tracks
    assert not tracks["valid"][8:12].any() and tracks["valid"][:8].all()


def _error_of(argv, capsys) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code != 0
    errors = [line for line in err.replace("\r", "\n").splitlines() if ": error: " in line]
    assert len(errors) == 1, err  # one line saying what is wrong and what to do
    return errors[0]


def test_missing_file(tmp_path, capsys):
    err = _error_of(["prepare", str(tmp_path / "nope.mp4"), "--name", "x", "--library", str(tmp_path)], capsys)
    assert "no such file" in err


def test_file_that_is_not_a_video(tmp_path, capsys):
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video")
    err = _error_of(["prepare", str(fake), "--name", "x", "--library", str(tmp_path)], capsys)
    assert "not a readable video" in err


def test_video_without_a_face(tmp_path, capsys):
    rng = np.random.default_rng(0)
    clip = _write_clip(tmp_path / "noise.mp4", [rng.integers(0, 255, (128, 128, 3), np.uint8) for _ in range(10)])
    err = _error_of(["prepare", str(clip), "--name", "x", "--library", str(tmp_path / "lib")], capsys)
    assert "no face found" in err
    assert not (tmp_path / "lib" / "x").exists()
    assert not [p for p in (tmp_path / "lib").iterdir()]


def test_existing_avatar_is_refused_without_overwrite(prepared, short_clip, capsys):
    library, result = prepared
    before = (result.path / "avatar.json").read_text()
    err = _error_of(["prepare", str(short_clip), "--name", "sample", "--library", str(library)], capsys)
    assert "already exists" in err and "--overwrite" in err
    assert (result.path / "avatar.json").read_text() == before


def test_unwritable_library(tmp_path, short_clip, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    err = _error_of(["prepare", str(short_clip), "--name", "x", "--library", str(blocker / "lib")], capsys)
    assert "cannot write to the avatar library" in err


def test_invalid_name(tmp_path, short_clip, capsys):
    err = _error_of(["prepare", str(short_clip), "--name", "../escape", "--library", str(tmp_path)], capsys)
    assert "invalid avatar name" in err


def test_failed_overwrite_keeps_the_good_avatar(tmp_path, short_clip, monkeypatch):
    from h2h.models import prepare as prep

    library = tmp_path / "lib"
    frames = list(read_frames(short_clip, 12))
    clip = _write_clip(tmp_path / "c.mp4", frames)
    prep.prepare(clip, library, "keep")
    before = {p.name: p.stat().st_mtime_ns for p in (library / "keep").iterdir()}

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(prep, "dense_flow", boom)
    with pytest.raises(OSError):
        prep.prepare(clip, library, "keep", overwrite=True)
    assert {p.name: p.stat().st_mtime_ns for p in (library / "keep").iterdir()} == before
    assert os.listdir(library) == ["keep"]
