import cv2
import numpy as np
import pytest

from h2h.models.metrics import apd, frame_metrics, laplacian_variance, mask_iou, mouth_box, nearest_frames, psnr, rotation_degrees, search_key, summarise
from h2h.models.geometry.retarget import euler_rotation


def _image(seed=0):
    return np.random.default_rng(seed).integers(0, 200, (256, 256, 3), dtype=np.uint8)


def test_apd_is_the_mean_rgb_distance():
    real = _image()
    assert apd(real, real) == 0.0
    gen = real + np.array([3, 4, 0], np.uint8)
    assert np.isclose(apd(gen, real), 5.0)
    mask = np.zeros((256, 256), bool)
    mask[:10] = True
    gen2 = real.copy()
    gen2[:10] += np.array([0, 6, 8], np.uint8)
    assert np.isclose(apd(gen2, real, mask), 10.0)
    assert np.isclose(apd(gen2, real), 10.0 * 10 / 256)


def test_psnr_of_a_known_error():
    real = _image()
    gen = real + np.uint8(5)
    assert np.isclose(psnr(gen, real), 10 * np.log10(255**2 / 25))


def test_mouth_box_is_72px_and_stays_inside():
    rows, cols = mouth_box(np.array([250.0, 5.0]), 72, 256)
    assert (rows.stop - rows.start, cols.stop - cols.start) == (72, 72)
    assert cols.stop == 256 and rows.start == 0


def test_blur_lowers_sharpness_below_one():
    real = _image()
    mask = np.ones((256, 256), bool)
    blurred = cv2.GaussianBlur(real, (0, 0), 2.0)
    assert laplacian_variance(blurred, mask) / laplacian_variance(real, mask) < 0.2
    row = frame_metrics(blurred, real, mask, np.array([128.0, 128.0]), (None, None))
    assert row["sharpness"] < 0.2 and row["coarse_sharpness"] < 0.5 and "aeld" not in row


def test_checkerboard_noise_counts_as_sharpness_but_not_as_coarse_sharpness():
    real = cv2.GaussianBlur(_image(), (0, 0), 1.0)
    mask = np.ones((256, 256), bool)
    checker = (np.indices((256, 256)).sum(0) % 2 * 8 - 4)[..., None]
    noisy = np.clip(cv2.GaussianBlur(real, (0, 0), 2.0).astype(int) + checker, 0, 255).astype(np.uint8)
    row = frame_metrics(noisy, real, mask, np.array([128.0, 128.0]), (None, None))
    assert row["sharpness"] > 0.8 and row["coarse_sharpness"] < 0.5


def test_rotation_degrees():
    assert np.isclose(rotation_degrees(euler_rotation(10, 0, 0), euler_rotation(-5, 0, 0)), 15.0)


def test_nearest_frames_finds_the_matching_conditioning():
    train = np.stack([_image(i) for i in range(5)])
    test = train[[3, 1]] + np.uint8(2)
    keys = lambda images: np.stack([search_key(im) for im in images])
    assert nearest_frames(keys(train), keys(test)).tolist() == [3, 1]


def test_summary_means_and_median_sharpness():
    rows = [{"apd": 1.0, "masked_apd": 2.0, "mouth_apd": 3.0, "psnr": 30.0, "sharpness": s} for s in (0.5, 0.9, 2.0)]
    out = summarise(rows)
    assert out["apd"] == 1.0 and out["sharpness"] == 0.9 and out["face_found"] == 0.0 and np.isnan(out["aeld"])


def test_mask_iou_counts_overlap_over_union():
    a = np.zeros((10, 10), np.uint8)
    b = a.copy()
    a[:, :6], b[:, 4:] = 255, 200
    assert mask_iou(a, b) == pytest.approx(2 / 10)
    assert mask_iou(a, a) == 1.0 and mask_iou(np.zeros_like(a), np.zeros_like(a)) == 1.0
