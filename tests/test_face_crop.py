"""Square face crops and their affine transforms (agora_core.face.crop)."""

from __future__ import annotations

import numpy as np
import pytest
from face_helpers import astronaut

from agora_core.face.crop import (
    FFHQ_CROP_SCALE,
    SMIRK_CROP_SCALE,
    box_square,
    crop_aligned_image,
    crop_dataset_image,
    crop_face,
    ffhq_aligned_box,
    is_ffhq_aligned,
    square_crop_transform,
)
from agora_core.face.detect import HaarDetector, detect_largest_face


def _x_ramp(height: int, width: int) -> np.ndarray:
    """RGB uint8 image whose value is the pixel's column index (width <= 256)."""
    ramp = np.broadcast_to(np.arange(width, dtype=np.uint8)[None, :, None], (height, width, 3))
    return np.ascontiguousarray(ramp)


def test_smirk_crop_shape_dtype_and_framing():
    box = (100.0, 60.0, 180.0, 160.0)  # mean side 90, centre (140, 110)
    crop, transform = crop_face(astronaut(), box)
    assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8
    assert transform.matrix.shape == (2, 3) and transform.size == 224
    side = SMIRK_CROP_SCALE * 90.0
    corners = np.array([[140 - side / 2, 110 - side / 2], [140 + side / 2, 110 + side / 2]])
    # the square's outer edges land on the crop's outer pixel edges (-0.5 and size - 0.5)
    np.testing.assert_allclose(transform.to_crop(corners), [[-0.5, -0.5], [223.5, 223.5]], atol=1e-9)
    points = np.random.default_rng(0).uniform(0, 512, (10, 2))
    np.testing.assert_allclose(transform.to_image(transform.to_crop(points)), points, atol=1e-9)


def test_crop_samples_where_the_transform_says():
    image = _x_ramp(64, 200)
    transform = square_crop_transform(centre=(100.0, 31.5), side=50.0, size=25)  # 2x downscale
    crop, crop_transform = crop_face(image, (75.0, 6.5, 125.0, 56.5), scale=1.0, size=25)
    np.testing.assert_allclose(crop_transform.matrix, transform.matrix)
    expected_x = transform.to_image(np.stack([np.arange(25.0), np.zeros(25)], 1))[:, 0]
    np.testing.assert_allclose(crop[12, :, 0], expected_x, atol=1.0)  # uint8 rounding


def test_strong_downscale_is_prefiltered():
    # 1-px stripes: plain bilinear sampling at 1/8 scale would alias to a random mix of 0 and 255
    stripes = np.zeros((800, 800, 3), np.uint8)
    stripes[:, ::2] = 255
    crop, _ = crop_face(stripes, (0.0, 0.0, 800.0, 800.0), scale=1.0, size=100)
    assert abs(float(crop.mean()) - 127.5) < 2.0 and float(crop.std()) < 3.0


@pytest.mark.parametrize("border,corner", [("white", 255), ("black", 0)])
def test_constant_border_outside_the_image(border, corner):
    image = np.full((100, 100, 3), 128, np.uint8)
    crop, _ = crop_face(image, (-40.0, -40.0, 40.0, 40.0), scale=1.4, size=64, border=border)
    assert (crop[0, 0] == corner).all() and (crop[-1, -1] == 128).all()


def test_replicate_border_copies_the_edge():
    image = _x_ramp(50, 50)
    crop, _ = crop_face(image, (30.0, 0.0, 70.0, 40.0), scale=1.5, size=32)  # runs off the right edge
    assert crop[:, -1, 0].min() == 49


def test_dataset_crop_and_aligned_crop_agree_on_an_aligned_image():
    size = 256
    crop, transform = crop_dataset_image(astronaut(), ffhq_aligned_box(512, 512), size=size)
    aligned, aligned_transform = crop_aligned_image(astronaut(), size=size)
    assert crop.shape == aligned.shape == (size, size, 3)
    np.testing.assert_allclose(transform.matrix, aligned_transform.matrix, atol=1e-9)
    assert np.abs(crop.astype(int) - aligned.astype(int)).mean() < 3.0  # bilinear vs INTER_AREA


def test_ffhq_aligned_box_inverts_the_dataset_crop():
    box = (200.0, 100.0, 300.0, 220.0)
    (cx, cy), side = box_square(box, FFHQ_CROP_SCALE, -0.15)
    transform = square_crop_transform((cx, cy), side, 512)
    x0, y0, x1, y1 = ffhq_aligned_box(512, 512)
    corners = transform.to_image(np.array([[x0, y0], [x1, y1]]))
    mean_side = 0.5 * ((box[2] - box[0]) + (box[3] - box[1]))
    np.testing.assert_allclose(corners[1] - corners[0], [mean_side, mean_side], rtol=1e-6)
    np.testing.assert_allclose(corners.mean(0), [250.0, 160.0], atol=1e-6)


def test_is_ffhq_aligned():
    detector = HaarDetector()
    photo = astronaut()
    dataset_crop, _ = crop_dataset_image(photo, detect_largest_face(photo, detector).box)
    assert is_ffhq_aligned(dataset_crop, detector)
    assert not is_ffhq_aligned(photo, detector)  # the face is small and off-centre
    assert not is_ffhq_aligned(np.full((128, 128, 3), 255, np.uint8), detector)
