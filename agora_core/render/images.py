"""Rendered images as bytes: the one float → uint8 rule (what a saved PNG holds)."""

from __future__ import annotations

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
