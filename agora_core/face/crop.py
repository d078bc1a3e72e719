"""Square face crops with the affine that maps them back, SMIRK-style and FFHQ-style.

Coordinates are OpenCV's: pixel (i, j) has its centre at (x=j, y=i) and covers a unit square, so
an image of width W spans x in [-0.5, W - 0.5]. A square region of side ``s`` centred at ``c``
is mapped onto the whole ``size`` x ``size`` crop:
``x_crop = (x - (c_x - s/2)) * size / s - 0.5`` (same for y), a 2 x 3 affine `CropTransform`.

Two crops are taken from a landmark box (detect.py):
- the SMIRK crop: side = 1.4 x the box's mean side, centred on the box, 224² (SMIRK's demo);
- the dataset crop (FFHQ-like framing for prep-data/invert): side = FFHQ_CROP_SCALE x the mean
  side, centre moved up by FFHQ_CROP_SHIFT sides, 512² by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from agora_core.face.detect import FaceDetector, check_rgb_image

SMIRK_CROP_SCALE = 1.4  # crop side / landmark-box mean side (SMIRK demo.py)
SMIRK_CROP_SIZE = 224  # SMIRK encoder input resolution

# FFHQ alignment (recreate_aligned_images in the FFHQ repository) takes a square of side
# max(4 x eye-to-eye, 3.6 x eye-to-mouth) centred 0.1 x eye-to-mouth below the eyes' midpoint.
# With mediapipe's canonical face proportions (landmark box from 0.86 eye-to-mouth above the eyes
# to 1.82 below, mean side ~2.5 eye-to-mouth) that square is ~1.65 landmark-box sides, centred
# ~0.15 sides above the box centre.
FFHQ_CROP_SCALE = 1.65  # dataset crop side / landmark-box mean side
FFHQ_CROP_SHIFT = -0.15  # dataset crop centre offset along y, in landmark-box sides (negative: up)
DATASET_CROP_SIZE = 512  # AGORA stage-2 image resolution

Border = Literal["replicate", "white", "black"]


@dataclass(frozen=True)
class CropTransform:
    """Affine map from source-image pixels to crop pixels.

    matrix: [2, 3] float64, ``[x_crop, y_crop] = matrix @ [x, y, 1]``.
    size:   the crop's side in pixels.
    """

    matrix: np.ndarray
    size: int

    def __post_init__(self) -> None:
        assert self.matrix.shape == (2, 3), self.matrix.shape

    def inverse_matrix(self) -> np.ndarray:
        """[2, 3] affine from crop pixels back to source-image pixels."""
        return cv2.invertAffineTransform(self.matrix)

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """[N, 2] source-image (x, y) -> [N, 2] crop (x, y)."""
        return _apply_affine(self.matrix, points)

    def to_image(self, points: np.ndarray) -> np.ndarray:
        """[N, 2] crop (x, y) -> [N, 2] source-image (x, y)."""
        return _apply_affine(self.inverse_matrix(), points)


def _apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    assert points.ndim == 2 and points.shape[1] == 2, points.shape
    return points @ matrix[:, :2].T + matrix[:, 2]


def square_crop_transform(centre: tuple[float, float], side: float, size: int) -> CropTransform:
    """`CropTransform` mapping the square (``centre``, ``side``) onto a ``size``² crop."""
    assert side > 0 and size > 0, (side, size)
    a = size / side
    cx, cy = centre
    matrix = np.array(
        [[a, 0.0, -a * (cx - 0.5 * side) - 0.5], [0.0, a, -a * (cy - 0.5 * side) - 0.5]], dtype=np.float64
    )
    return CropTransform(matrix, int(size))


def warp_crop(image_rgb: np.ndarray, transform: CropTransform, border: Border = "replicate") -> np.ndarray:
    """Resample ``image_rgb`` [H, W, 3] uint8 into the [size, size, 3] uint8 crop.

    Bilinear; when the crop shrinks the image by more than 2x the image is first reduced with
    INTER_AREA (bilinear sampling alone would alias). Outside the image: ``border``.
    """
    check_rgb_image(image_rgb)
    matrix, source = transform.matrix, image_rgb
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale < 0.5:
        source, matrix = _prefilter(image_rgb, matrix, scale)
    mode = cv2.BORDER_REPLICATE if border == "replicate" else cv2.BORDER_CONSTANT
    value = (255, 255, 255) if border == "white" else (0, 0, 0)
    size = transform.size
    return cv2.warpAffine(source, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=mode, borderValue=value)


def _prefilter(image_rgb: np.ndarray, matrix: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Shrink the image by ~``scale`` with INTER_AREA; return it and the matrix from its pixels."""
    h, w = image_rgb.shape[:2]
    sw, sh = max(int(round(w * scale)), 1), max(int(round(h * scale)), 1)
    small = cv2.resize(image_rgb, (sw, sh), interpolation=cv2.INTER_AREA)
    fx, fy = sw / w, sh / h
    # small pixel -> source pixel: x = (x_s + 0.5) / fx - 0.5 (cv2.resize's pixel-centre mapping)
    small_to_src = np.array([[1 / fx, 0, 0.5 / fx - 0.5], [0, 1 / fy, 0.5 / fy - 0.5], [0, 0, 1]])
    return small, matrix @ small_to_src


def box_square(box, scale: float, shift: float = 0.0) -> tuple[tuple[float, float], float]:
    """(centre, side) of the square ``scale`` x the box's mean side, moved ``shift`` sides in y."""
    x0, y0, x1, y1 = (float(v) for v in box)
    assert x1 > x0 and y1 > y0, box
    mean_side = 0.5 * ((x1 - x0) + (y1 - y0))
    centre = (0.5 * (x0 + x1), 0.5 * (y0 + y1) + shift * mean_side)
    return centre, scale * mean_side


def crop_face(
    image_rgb: np.ndarray,
    box,
    scale: float = SMIRK_CROP_SCALE,
    size: int = SMIRK_CROP_SIZE,
    border: Border = "replicate",
) -> tuple[np.ndarray, CropTransform]:
    """SMIRK-style crop: square of side ``scale`` x the landmark box's mean side, centred on it.

    Args:
        image_rgb: [H, W, 3] uint8.
        box: landmark box (x0, y0, x1, y1) in pixels (a `Detection.box`).
    Returns:
        crop [size, size, 3] uint8 and its `CropTransform`.
    """
    centre, side = box_square(box, scale)
    transform = square_crop_transform(centre, side, size)
    return warp_crop(image_rgb, transform, border), transform


def crop_dataset_image(
    image_rgb: np.ndarray, box, size: int = DATASET_CROP_SIZE, border: Border = "replicate"
) -> tuple[np.ndarray, CropTransform]:
    """FFHQ-like crop around a landmark box (see FFHQ_CROP_*): [size, size, 3] uint8 + transform."""
    centre, side = box_square(box, FFHQ_CROP_SCALE, FFHQ_CROP_SHIFT)
    transform = square_crop_transform(centre, side, size)
    return warp_crop(image_rgb, transform, border), transform


def crop_aligned_image(image_rgb: np.ndarray, size: int = DATASET_CROP_SIZE) -> tuple[np.ndarray, CropTransform]:
    """An FFHQ-aligned (square) image resized to ``size``²: the whole image is the dataset crop."""
    check_rgb_image(image_rgb)
    h, w = image_rgb.shape[:2]
    assert h == w, f"FFHQ-aligned images are square, got {w}x{h}"
    transform = square_crop_transform(((w - 1) / 2, (h - 1) / 2), float(w), size)
    interp = cv2.INTER_AREA if size < w else cv2.INTER_LINEAR
    return cv2.resize(image_rgb, (size, size), interpolation=interp), transform


def ffhq_aligned_box(height: int, width: int) -> tuple[float, float, float, float]:
    """The landmark box expected in an FFHQ-aligned image (inverse of the dataset crop)."""
    side = width / FFHQ_CROP_SCALE
    cx, cy = (width - 1) / 2, (height - 1) / 2 - FFHQ_CROP_SHIFT * side
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


def is_ffhq_aligned(
    image_rgb: np.ndarray, detector: FaceDetector, centre_tol: float = 0.08, size_tol: float = 1.3
) -> bool:
    """Whether a square image looks FFHQ-aligned: its largest face sits where alignment puts it.

    ``centre_tol``: allowed centre offset as a fraction of the image side; ``size_tol``: allowed
    ratio between the detected and the expected landmark-box side. False when no face is found.
    """
    check_rgb_image(image_rgb)
    h, w = image_rgb.shape[:2]
    detections = detector.detect(image_rgb) if h == w else []
    if not detections:
        return False
    found = max(detections, key=lambda d: d.area)
    ex0, ey0, ex1, ey1 = ffhq_aligned_box(h, w)
    (fx, fy), expected_side = found.centre, ex1 - ex0
    offset = np.hypot(fx - 0.5 * (ex0 + ex1), fy - 0.5 * (ey0 + ey1)) / w
    ratio = found.mean_side / expected_side
    return bool(offset <= centre_tol and 1 / size_tol <= ratio <= size_tol)


__all__ = [
    "Border",
    "CropTransform",
    "DATASET_CROP_SIZE",
    "FFHQ_CROP_SCALE",
    "FFHQ_CROP_SHIFT",
    "SMIRK_CROP_SCALE",
    "SMIRK_CROP_SIZE",
    "box_square",
    "crop_aligned_image",
    "crop_dataset_image",
    "crop_face",
    "ffhq_aligned_box",
    "is_ffhq_aligned",
    "square_crop_transform",
    "warp_crop",
]
