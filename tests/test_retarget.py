import numpy as np
import pytest

from h2h.models.geometry.fitting import Pose
from h2h.models.geometry.retarget import (
    CameraStats,
    RetargetOptions,
    SourceCalibration,
    Retargeter,
    Subject,
    euler_rotation,
)
from h2h.models.geometry.smoothing import OneEuroFilter


def _identity(model, widen: float, lengthen: float) -> np.ndarray:
    shape = model.mean_shape.copy()
    shape[:, 0] *= widen
    shape[:, 1] *= lengthen
    return shape


def _landmarks(shape: np.ndarray, pose: Pose) -> np.ndarray:
    return np.concatenate([pose.apply(shape), np.zeros((10, 3), np.float32)])


@pytest.fixture
def people(model):
    source = Subject(_identity(model, 1.15, 0.92), CameraStats(150.0, 5.0, np.array([300.0, 240.0, 0]), np.array([20.0, 15.0, 1])))
    target = Subject(_identity(model, 0.9, 1.1), CameraStats(60.0, 2.0, np.array([128.0, 120.0, 0]), np.array([5.0, 4.0, 1])))
    return source, target


def test_head_reenactment_keeps_target_identity_and_source_pose(model, people):
    source, target = people
    coeffs = np.zeros(model.num_expressions, np.float32)
    coeffs[0] = 0.4
    pose = Pose(150.0, euler_rotation(20, -8, 3), np.array([300.0, 240.0, 0.0]))
    marks = _landmarks(source.neutral + model.expression_offset(coeffs), pose)
    calibration = SourceCalibration.from_frames(model, _landmarks(source.neutral, pose)[None])
    out = Retargeter(model, target, "head").retarget(marks, np.zeros((2, 2)), calibration.subject)
    canonical = out.pose.invert(out.vertices) - model.expression_offset(out.expression)
    assert np.linalg.norm(canonical - target.neutral) < 0.1 * np.linalg.norm(canonical - source.neutral)
    cos = (np.trace(out.pose.rotation.T @ pose.rotation) - 1) / 2
    assert np.degrees(np.arccos(min(cos, 1.0))) < 1.0  # the source's head rotation
    np.testing.assert_allclose(out.expression[0], 0.4, atol=0.05)
    assert abs(out.pose.scale - 60.0) < 1.0  # scale ratio of the means
    np.testing.assert_allclose(out.pose.translation[:2], [128.0, 120.0], atol=1.0)  # mean shift


def test_head_translation_is_clamped_to_the_target_range(model, people):
    source, target = people
    far = Pose(150.0, np.eye(3), np.array([300.0 + 400.0, 240.0, 0.0]))
    retargeter = Retargeter(model, target, "head", options=RetargetOptions(average_window=1))
    out = retargeter.retarget(_landmarks(source.neutral, far), np.zeros((2, 2)), source)
    assert out.pose.translation[0] == pytest.approx(128.0 + 2 * 5.0, abs=1e-3)


def test_face_reenactment_uses_the_target_camera_track(model, people):
    source, target = people
    track = [Pose(60.0, euler_rotation(a, 0, 0), np.array([128.0, 120.0, 0.0])) for a in (0, 10, 20)]
    retargeter = Retargeter(model, target, "face", target_poses=track)
    marks = _landmarks(source.neutral, Pose(150.0, euler_rotation(-30, 0, 0), np.array([300.0, 240.0, 0.0])))
    rotations = [retargeter.retarget(marks, np.zeros((2, 2)), source).pose.rotation for _ in range(4)]
    np.testing.assert_allclose(rotations[1], track[1].rotation)
    np.testing.assert_allclose(rotations[3], track[0].rotation)


def test_one_euro_filter_smooths_jitter_but_follows_a_step():
    rng = np.random.default_rng(0)
    f = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    noisy = 1.0 + rng.normal(scale=0.1, size=200)
    smooth = np.array([f(np.array([x]))[0] for x in noisy])
    assert smooth[50:].std() < 0.4 * noisy[50:].std()
    f = OneEuroFilter(min_cutoff=1.0, beta=5.0)
    out = [f(np.array([0.0 if i < 30 else 10.0]))[0] for i in range(60)]
    assert out[-1] > 9.5


def test_a_one_eye_closure_reaches_targets_that_use_eye_detail(model, people):
    """The expression basis is mostly symmetric; conditioning version 3 adds what it misses
    around the eyes, so a wink closes the target's one eye and leaves its identity alone."""
    from dataclasses import replace

    source, target = people
    pose = Pose(150.0, euler_rotation(10, -5, 2), np.array([300.0, 240.0, 0.0]))
    winking = source.neutral.copy()
    lids = model.topology_lid_pairs[:3]  # the subject's right eye
    winking[lids[:, 0]] = winking[lids[:, 1]]
    calibration = SourceCalibration.from_frames(model, _landmarks(source.neutral, pose)[None])
    openings = {}
    for detail in (False, True):
        retargeter = Retargeter(model, replace(target, eye_detail=detail), "head")
        out = retargeter.retarget(_landmarks(winking, pose), np.zeros((2, 2)), calibration.subject)
        openings[detail] = out.openings / out.pose.scale
        assert (out.detail is not None) == detail
    neutral_opening = np.linalg.norm(target.neutral[lids[:, 0]] - target.neutral[lids[:, 1]], axis=-1).mean()
    assert openings[True][0] < 0.3 * neutral_opening  # the right eye closes (by the source's lid travel)
    assert openings[True][1] > 0.8 * neutral_opening  # the left stays open
    assert openings[True][0] < 0.5 * openings[False][0]
    untouched = model.eye_region_weights < 1e-3
    assert untouched.sum() > 250  # mouth, nose, jaw and cheeks move by the expression basis only


def test_eye_detail_is_smoothed_with_the_rest_and_eases_out_when_the_face_is_lost(model, people):
    from dataclasses import replace

    from h2h.app.pipeline import FaceStage

    source, target = people
    target = replace(target, eye_detail=True)
    pose = Pose(150.0, euler_rotation(0, 0, 0), np.array([300.0, 240.0, 0.0]))
    winking = source.neutral.copy()
    lids = model.topology_lid_pairs[:3]
    winking[lids[:, 0]] = winking[lids[:, 1]]
    calibration = SourceCalibration.from_frames(model, _landmarks(source.neutral, pose)[None])
    right_eye = lambda out: out.openings[0] / out.pose.scale  # noqa: E731
    plain = Retargeter(model, target, "head")
    smooth = Retargeter(model, target, "head", options=RetargetOptions(smoothing=1.0))
    open_, closed = (plain.retarget(_landmarks(shape, pose), np.zeros((2, 2)), calibration.subject) for shape in (source.neutral, winking))
    smooth.retarget(_landmarks(source.neutral, pose), np.zeros((2, 2)), calibration.subject)
    halfway = smooth.retarget(_landmarks(winking, pose), np.zeros((2, 2)), calibration.subject)
    assert right_eye(closed) < right_eye(halfway) < right_eye(open_)  # the lid follows, smoothed
    stage = FaceStage(model, target)
    stage._last = closed
    eased = stage._fallback(lost_for=60.0)  # long gone: back to the target's neutral face
    assert abs(right_eye(eased) - right_eye(open_)) < 0.05 * right_eye(open_)
