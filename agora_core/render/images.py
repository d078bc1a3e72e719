"""Rendered images as bytes: the one float → uint8 rule (what a saved PNG holds)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor


def to_uint8(images: Tensor) -> Tensor:
    """Float images in [0, 1] (any layout) -> uint8, clamped and rounded half up (x·255 + 0.5)."""
    return (images.detach().clamp(0, 1) * 255 + 0.5).to(torch.uint8)


def to_uint8_hwc(images: Tensor) -> np.ndarray:
    """[B, C, H, W] float in [0, 1] -> [B, H, W, C] uint8 numpy (video frames, image files)."""
    assert images.ndim == 4, images.shape
    return to_uint8(images).permute(0, 2, 3, 1).cpu().numpy()


DISPLAY_SIZE = 256  # default pixels per avatar of what a person looks at (grids, previews, videos)


def enlarge(images: Tensor, size: int) -> Tensor:
    """[B, C, R, R] float in [0, 1] -> [B, C, size, size]: bicubic (area-weighted when shrinking), clamped.

    A model is shown at the resolution it was trained at, enlarged: rendering a low-resolution model
    natively at a larger size exposes gaps between splats that its training images never held
    (docs/architecture.md, "Viewable outputs").
    """
    assert images.ndim == 4 and images.shape[-1] == images.shape[-2], images.shape
    if images.shape[-1] == size:
        return images
    shrink = size < images.shape[-1]
    out = torch.nn.functional.interpolate(images, size=(size, size), mode="bicubic", align_corners=False,
                                          antialias=shrink)
    return out.clamp(0, 1)


def image_grid(images: Tensor, rows: int, cols: int) -> np.ndarray:
    """[rows*cols, 3, R, R] in [0, 1] (row-major) -> uint8 RGB [rows*R, cols*R, 3]."""
    n, _, r, _ = images.shape
    assert n == rows * cols, (n, rows, cols)
    grid = images.reshape(rows, cols, 3, r, r).permute(0, 3, 1, 4, 2).reshape(rows * r, cols * r, 3)
    return to_uint8(grid).cpu().numpy()


def write_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write uint8 RGB [H, W, 3] as an image (format from the suffix: .png, .jpg...), atomically."""
    from agora_core.gaussians.files import atomic_write

    path = Path(path)
    try:
        ok, encoded = cv2.imencode(path.suffix or ".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    except cv2.error:
        ok = False
    if not ok:
        from agora_core.errors import AgoraError

        raise AgoraError(f"{path}: cannot write an image with suffix {path.suffix!r}; use .png or .jpg")
    with atomic_write(path) as f:
        f.write(encoded.tobytes())
    return path
