import cv2
import numpy as np

from h2h.models.geometry.eyes import (
    EYE_CORNERS,
    PUPIL_COLOR,
    draw_eye_sketch,
    eyelid_opening,
    pupil_centroid,
    pupils_absolute,
    pupils_relative,
)
from h2h.models.geometry.fitting import Pose


def test_pupil_centroid_lands_on_a_dark_disc():
    image = np.full((64, 96), 220, np.uint8)
    centre = (41.3, 30.6)
    cv2.circle(image, (int(centre[0] * 16), int(centre[1] * 16)), 6 * 16, 30, -1, cv2.LINE_AA, 4)
    contour = np.array([[20, 30], [35, 18], [55, 16], [72, 28], [56, 42], [34, 42]], np.float32)
    found = pupil_centroid(image, contour)
    # cv2 draws with pixel centres at integers; the centroid uses pixel-centre +0.5
    assert np.linalg.norm(found - (np.array(centre) + 0.5)) < 1.0


def test_pupil_position_transfers_relative_to_the_eye(model):
    src = Pose(80.0, np.eye(3), np.array([128.0, 128.0, 0.0])).apply(model.mean_shape)
    dst = Pose(60.0, np.eye(3), np.array([100.0, 140.0, 0.0])).apply(model.mean_shape)
    right_corners = src[list(EYE_CORNERS[0]), :2]
    pupils = np.stack([right_corners.mean(0) + (3.0, 1.0), src[list(EYE_CORNERS[1]), :2].mean(0)])
    moved = pupils_absolute(dst, pupils_relative(src, pupils))
    expected_right = dst[list(EYE_CORNERS[0]), :2].mean(0) + np.array([3.0, 1.0]) * 60 / 80
    np.testing.assert_allclose(moved[0], expected_right, atol=1e-3)
    np.testing.assert_allclose(pupils_relative(dst, moved), pupils_relative(src, pupils), atol=1e-5)


def _mean_face_eyes(model):
    """(mesh, topology, pupils, openings) of the mean face posed in the middle of 256x256."""
    mesh = Pose(90.0, np.eye(3), np.array([128.0, 128.0, 0.0])).apply(model.mean_shape)
    pupils = np.stack([mesh[eye, :2].mean(0) for eye in model.topology.eyes])
    return mesh, model.topology, pupils, eyelid_opening(mesh, model.topology_lid_pairs)


def test_eye_sketch_draws_lids_and_pupils_and_hides_pupils_of_closed_eyes(model):
    mesh, topo, pupils, openings = _mean_face_eyes(model)
    sketch = draw_eye_sketch(mesh, pupils, openings, topo)
    red = np.all(sketch == PUPIL_COLOR, -1)
    white = np.all(sketch == 255, -1)
    assert red.sum() > 10 and white.sum() > 40
    for pupil in pupils:  # the disc is centred on each pupil
        x, y = pupil.astype(int)
        assert red[y - 1 : y + 2, x - 1 : x + 2].any()
    closed = draw_eye_sketch(mesh, pupils, np.zeros(2), topo)
    assert not np.all(closed == PUPIL_COLOR, -1).any()


def test_version_2_sketches_draw_each_brow_where_it_is(model):
    from h2h.models.geometry.eyes import BROW_COLOR, BROWS

    mesh, topo, pupils, openings = _mean_face_eyes(model)
    plain = draw_eye_sketch(mesh, pupils, openings, topo)
    assert not np.all(plain == BROW_COLOR, -1).any()  # version 1: no brows
    green = lambda sketch: np.argwhere(np.all(sketch == BROW_COLOR, -1))  # noqa: E731
    sketch = draw_eye_sketch(mesh, pupils, openings, topo, brows=True)
    drawn = green(sketch)
    assert len(drawn) > 40
    raised = mesh.copy()
    raised[list(BROWS[0]), 1] -= 6  # the right brow up by 6 px, the left one still
    moved = green(draw_eye_sketch(raised, pupils, openings, topo, brows=True))
    right_half = lambda pts: pts[pts[:, 1] < 128]  # noqa: E731  (image columns left of the centre: the right brow)
    assert right_half(moved)[:, 0].mean() < right_half(drawn)[:, 0].mean() - 4
    left = lambda pts: pts[pts[:, 1] >= 128]  # noqa: E731
    assert np.array_equal(left(moved), left(drawn))
