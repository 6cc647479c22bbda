"""The transfer-fidelity measure: features that move with the face they describe, wink scores,
and `h2h eval NAME --source VIDEO` end to end (JSON and plot)."""
import json

import cv2
import numpy as np
import pytest

from h2h.app.cli import main
from h2h.models.expression_features import (
    FEATURES, LEFT_BROW, LEFT_EYE, MOMENTS, RIGHT_BROW, RIGHT_EYE, correlation, best_lag, euler_degrees, face_features,
    gaze_while_open, transfer_report, wink_score,
)
from h2h.models.geometry.retarget import euler_rotation
from h2h.models.geometry.tracker import MediaPipeTracker
from h2h.models.video import read_frames

from .conftest import SAMPLE_CLIP


@pytest.fixture(scope="module")
def landmarks():
    with MediaPipeTracker(video_mode=False) as tracker:
        marks = tracker.track(next(read_frames(SAMPLE_CLIP)))
    assert marks is not None
    return marks


def _features(points):
    return face_features(points, points[[468, 473], :2], np.eye(3))


def test_each_feature_moves_with_its_own_part_of_the_face(landmarks):
    base = _features(landmarks)
    assert set(base) == set(FEATURES)
    wink = landmarks.copy()
    wink[RIGHT_EYE["top"], :2] = wink[RIGHT_EYE["bottom"], :2]  # right eye shut
    shut = _features(wink)
    assert shut["eye_right"] < 0.2 * base["eye_right"] and shut["eye_left"] == pytest.approx(base["eye_left"])
    raised = landmarks.copy()
    raised[list(LEFT_BROW), 1] -= 8  # left brow up by 8 px
    up = _features(raised)
    assert up["brow_left"] > base["brow_left"] and up["brow_right"] == pytest.approx(base["brow_right"])
    opened = landmarks.copy()
    opened[14, 1] += 10  # lower lip down
    assert _features(opened)["mouth_open"] > base["mouth_open"]
    right = face_features(landmarks, landmarks[[468, 473], :2] + [3.0, 0.0], np.eye(3))
    down = face_features(landmarks, landmarks[[468, 473], :2] + [0.0, 3.0], np.eye(3))
    assert right["gaze_x"] > base["gaze_x"] and down["gaze_y"] > base["gaze_y"]
    assert set(RIGHT_BROW).isdisjoint(LEFT_BROW) and LEFT_EYE["top"] != RIGHT_EYE["top"]


def test_head_angles_read_back_from_the_rotation():
    assert euler_degrees(euler_rotation(12.0, -7.0, 4.0)) == pytest.approx((12.0, -7.0, 4.0), abs=1e-6)


def test_correlation_lag_and_wink_scores():
    t = np.arange(60, dtype=float)
    wave = np.sin(t / 4)
    assert correlation(wave, 2 * wave + 1) == pytest.approx(1.0)
    assert best_lag(wave, np.roll(wave, 2)) == 2
    open_ = np.ones(60)
    right = open_.copy()
    right[20:30] = 0.0  # the source winks its right eye for 10 frames
    source = {"eye_right": right, "eye_left": open_ + np.linspace(0, 0.01, 60)}
    assert wink_score(source, source) == {"wink_frames": 10, "followed": 10, "score": 1.0}
    both = {"eye_right": right, "eye_left": right + np.linspace(0, 0.01, 60)}  # a two-eye blink
    assert wink_score(source, both)["score"] == 0.0


def test_a_blink_is_not_read_as_a_glance():
    """Gaze counts only while both eyes are open: a closing lid drags the tracked iris down,
    and a clip's blinks would otherwise dominate its gaze correlation."""
    n = 80
    t = np.arange(n, dtype=float)
    table = {name: np.zeros(n) for name in FEATURES}
    table["eye_right"], table["eye_left"] = np.full(n, 0.3), np.full(n, 0.3)
    table["gaze_y"] = 0.05 * np.sin(t / 5)  # the source looks up and down slowly
    blink = table | {"eye_right": table["eye_right"].copy(), "eye_left": table["eye_left"].copy(), "gaze_y": table["gaze_y"].copy()}
    for start in (10, 40, 70):  # three blinks; the output's tracker reads each as a glance down
        blink["eye_right"][start : start + 3] = blink["eye_left"][start : start + 3] = 0.02
        blink["gaze_y"][start : start + 3] = 0.6
    masked = gaze_while_open(blink)
    assert np.isnan(masked["gaze_y"][10:13]).all() and np.isfinite(masked["gaze_y"][:10]).all()
    assert np.array_equal(masked["eye_right"], blink["eye_right"])  # only gaze is masked
    assert correlation(table["gaze_y"], blink["gaze_y"]) < 0.7  # unmasked, the blinks fail a faithful output
    report = transfer_report(gaze_while_open(table), gaze_while_open(table), masked)
    assert report["features"]["gaze_y"]["r_output"] == pytest.approx(1.0)
    assert report["features"]["gaze_y"]["source_range"] == pytest.approx(0.1, abs=0.01)


def test_eval_source_reports_every_feature_and_plots_them(exported, short_clip, tmp_path, capsys):
    library, _ = exported
    out, plot, moments = tmp_path / "transfer.json", tmp_path / "transfer.png", tmp_path / "moments.png"
    argv = ["eval", "sample", "--source", str(short_clip), "--json", str(out), "--plot", str(plot),
            "--moments", str(moments), "--library", str(library)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "mouth_open" in printed and "wink:" in printed
    report = json.loads(out.read_text())
    assert set(report["features"]) == set(FEATURES) and report["frames"] == 36
    for name in ("eye_right", "eye_left", "brow_right", "yaw"):  # retargeting carries these (the mouth stays shut here)
        assert report["features"][name]["r_conditioning"] > 0.8, name
    assert {"wink_frames", "followed", "score"} <= set(report["wink"])
    assert len(report["series"]["source"]["eye_left"]) == 36
    image = cv2.imread(str(plot))
    assert image is not None and image.shape[0] > 600
    assert report["identity"]["conditioning_vs_target"] < 0.05  # retargeting keeps the target's face shape
    assert set(report["moments"]) == set(MOMENTS) and all(0 <= i < 36 for i in report["moments"].values())
    grid = cv2.imread(str(moments))
    assert grid is not None and grid.shape[0] > 5 * 256 and grid.shape[1] == 3 * 256
    capsys.readouterr()
    assert main(["eval", "sample", "--moments", str(moments), "--library", str(library)]) == 2  # needs --source
    assert "--source" in capsys.readouterr().err


def test_identity_drift_tells_the_targets_shape_from_anothers(model):
    from h2h.app.transfer_eval import identity_drift

    target = model.mean_shape.copy()
    other = target.copy()
    other[:, 1] *= 1.15  # a longer face
    pose = np.diag([40.0, 40.0, 40.0])
    posed = lambda shape, shift: [shape @ pose + [128.0 + shift, 128.0, 0.0] for _ in range(6)]
    drift = identity_drift(model, target, {"source": posed(other, 0), "conditioning": posed(target, 3), "output": posed(target, -2)})
    assert drift["conditioning_vs_target"] < 0.01 and drift["source_vs_target"] > 0.05
    assert drift["output_leak"] < 0.1
