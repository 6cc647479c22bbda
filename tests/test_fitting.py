import numpy as np

from h2h.models.geometry.fitting import Pose, fit_frame, fit_pose, mouth_openings, neutral_shape, umeyama
from h2h.models.geometry.retarget import euler_rotation


def _rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    cos = (np.trace(a.T @ b) - 1) / 2
    return float(np.degrees(np.arccos(np.clip(cos, -1, 1))))


def test_umeyama_recovers_a_similarity_exactly():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(50, 3))
    truth = Pose(2.5, euler_rotation(30, -10, 5), np.array([3.0, -1.0, 0.5]))
    est = umeyama(src, truth.apply(src))
    assert abs(est.scale - 2.5) < 1e-5
    assert _rotation_angle_deg(est.rotation, truth.rotation) < 1e-3
    np.testing.assert_allclose(est.translation, truth.translation, atol=1e-4)


def test_pose_fit_recovers_known_head_rotation_within_one_degree(model):
    rng = np.random.default_rng(1)
    for yaw, pitch, roll in ((25, 0, 0), (-15, 12, 4), (5, -20, -10)):
        truth = Pose(90.0, euler_rotation(yaw, pitch, roll), np.array([128.0, 120.0, 0.0]))
        mesh = truth.apply(model.mean_shape) + rng.normal(scale=0.4, size=model.mean_shape.shape)
        # an expression (open jaw) must not tilt the head: anchors ignore the mouth
        mesh[model.topology.lips_inner] += np.array([0, 6.0, 0])
        est = fit_pose(np.concatenate([mesh, np.zeros((10, 3))]), model)
        assert _rotation_angle_deg(est.rotation, truth.rotation) < 1.0
        assert abs(est.scale / truth.scale - 1) < 0.02


def test_expression_round_trips_through_the_basis(model):
    coeffs = np.zeros(model.num_expressions, np.float32)
    coeffs[:3] = (0.3, -0.2, 0.1)
    pose = Pose(80.0, euler_rotation(10, 5, 0), np.array([128.0, 128.0, 0.0]))
    mesh = pose.apply(model.mean_shape + model.expression_offset(coeffs))
    fit = fit_frame(np.concatenate([mesh, np.zeros((10, 3))]), model)
    np.testing.assert_allclose(fit.expression[:3], coeffs[:3], atol=0.02)


def test_neutral_shape_prefers_closed_mouth_frames(model):
    rng = np.random.default_rng(2)
    frames = np.repeat(model.mean_shape[None], 40, axis=0).copy()
    upper, lower = model.inner_lip_pair
    frames[:, lower, 1] += rng.uniform(0.0, 0.3, size=40)  # mouths open by varying amounts
    closed = mouth_openings(model.mean_shape, model)
    extra_mean = mouth_openings(frames.mean(0), model) - closed
    extra_neutral = mouth_openings(neutral_shape(frames, model), model) - closed
    assert extra_neutral < 0.5 * extra_mean
