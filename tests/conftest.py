"""Shared fixtures: the shipped face model, a short real clip and an avatar prepared from it."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from h2h.models.geometry.face_model import load_face_model  # noqa: E402
from h2h.models.video import VideoWriter, read_frames  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLE_CLIP = REPO / "assets" / "sample_driver.mp4"
CLIP_FRAMES = 36


@pytest.fixture(scope="session")
def model():
    return load_face_model()


@pytest.fixture(scope="session")
def short_clip(tmp_path_factory) -> Path:
    """The first frames of the shipped sample clip (a real talking head)."""
    path = tmp_path_factory.mktemp("clips") / "short.mp4"
    with VideoWriter(path, 30.0, (256, 256)) as writer:
        for frame in read_frames(SAMPLE_CLIP, CLIP_FRAMES):
            writer.write(frame)
    return path


@pytest.fixture(scope="session")
def prepared(tmp_path_factory, short_clip):
    """(library, avatar path) of an avatar prepared from the short clip."""
    from h2h.models.prepare import prepare

    library = tmp_path_factory.mktemp("library")
    result = prepare(short_clip, library, "sample", preview=True)
    return library, result


def random_rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    from h2h.models.geometry.retarget import euler_rotation

    return euler_rotation(yaw, pitch, roll)


@pytest.fixture(scope="session")
def exported(prepared):
    """(library, avatar): the sample avatar with a briefly trained tiny generator in ONNX."""
    from h2h.app.cli import main
    from h2h.models.avatar import Avatar
    from h2h.models.train import Trainer
    from h2h.models.train_config import RunOptions, train_config

    library, result = prepared
    avatar = Avatar.open(library, "sample")
    if not (result.path / "checkpoints" / "main" / "generator.safetensors").exists():
        Trainer(avatar, train_config("tiny"), RunOptions(run="main", max_steps=1, progress=False)).run()
    assert main(["export", "sample", "--library", str(library)]) == 0
    return library, avatar


@pytest.fixture(scope="session")
def packaged(exported, tmp_path_factory):
    """A library holding the live-only package of the exported sample avatar."""
    from h2h.app.cli import main

    library, _ = exported
    out = tmp_path_factory.mktemp("packages")
    assert main(["package", "sample", "--out", str(out), "--library", str(library)]) == 0
    return out
