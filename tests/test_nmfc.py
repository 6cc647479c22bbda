import numpy as np
import pytest

from h2h.models.geometry.fitting import Pose
from h2h.models.geometry.nmfc import NMFCRenderer, render_reference
from h2h.models.geometry.retarget import euler_rotation


@pytest.fixture(scope="module")
def gl(model):
    renderer = NMFCRenderer(model, backend="gl")
    yield renderer
    renderer.close()


@pytest.mark.parametrize("angles", [(0, 0, 0), (30, -10, 5), (-40, 15, -8)])
def test_gl_and_reference_rasterisers_agree(model, gl, angles):
    vertices = Pose(85.0, euler_rotation(*angles), np.array([130.0, 125.0, 0.0])).apply(model.mean_shape)
    a, b = gl.render(vertices), render_reference(vertices, model)
    assert a.shape == b.shape == (256, 256, 3)
    covered = b.any(-1).mean()
    assert covered > 0.15  # the face fills a good part of the image
    agree = (np.abs(a.astype(int) - b.astype(int)).max(-1) <= 1).mean()
    assert agree >= 0.99


def test_nmfc_colours_are_the_mean_face_coordinates(model, gl):
    vertices = Pose(85.0, np.eye(3), np.array([128.0, 128.0, 0.0])).apply(model.mean_shape)
    image = gl.render(vertices)
    colours = np.round(model.triangle_colors * 255).astype(int)
    pixels = image[image.any(-1)].astype(int)
    distance = np.abs(pixels[:, None, :] - colours[None]).max(-1).min(1)
    assert (distance <= 1).mean() > 0.999
    assert image[0, 0].tolist() == [0, 0, 0]  # black background


def test_depth_test_keeps_the_nearer_surface(model, gl):
    """Turned 90 degrees the near cheek must hide the far one: front and back differ."""
    left = Pose(85.0, euler_rotation(80, 0, 0), np.array([128.0, 128.0, 0.0])).apply(model.mean_shape)
    right = Pose(85.0, euler_rotation(-80, 0, 0), np.array([128.0, 128.0, 0.0])).apply(model.mean_shape)
    a, b = gl.render(left), gl.render(right)
    ra, rb = render_reference(left, model), render_reference(right, model)
    assert (np.abs(a.astype(int) - ra).max(-1) <= 1).mean() >= 0.99
    assert (np.abs(b.astype(int) - rb).max(-1) <= 1).mean() >= 0.99
    # the visible side's red channel (mean-face x) differs between the two views
    assert abs(a[..., 0][a.any(-1)].mean() - b[..., 0][b.any(-1)].mean()) > 40


@pytest.mark.parametrize("angles", [(0, 0, 0), (35, -10, 5)])
def test_values_are_interpolated_over_the_visible_surface(model, gl, angles):
    """Each vertex's own position, interpolated, is the pixel's centre (an exact correspondence
    from a pose to itself); another pose's positions tell where each pixel's surface point went."""
    pose = Pose(85.0, euler_rotation(*angles), np.array([130.0, 125.0, 0.0]))
    vertices = pose.apply(model.mean_shape)
    image = gl.render_values(vertices, vertices)
    covered = ~np.isnan(image).any(-1)
    assert covered.mean() > 0.15 and (covered == gl.render(vertices).any(-1)).mean() > 0.99
    ys, xs = np.nonzero(covered)
    assert np.abs(image[ys, xs, 0] - (xs + 0.5)).max() < 0.05 and np.abs(image[ys, xs, 1] - (ys + 0.5)).max() < 0.05
    moved = Pose(85.0, euler_rotation(*angles), np.array([140.0, 120.0, 0.0])).apply(model.mean_shape)
    shifted = gl.render_values(vertices, moved)
    assert np.allclose(shifted[covered, :2] - image[covered, :2], [10.0, -5.0], atol=1e-3)
    reference = NMFCRenderer(model, backend="reference").render_values(vertices, moved)
    both = covered & ~np.isnan(reference).any(-1)
    assert both.mean() > 0.99 * covered.mean() and np.abs(shifted[both, :2] - reference[both, :2]).max() < 0.05
