"""Structural similarity (SSIM, Wang et al. 2004) in torch, differentiable, for PTI's fallback loss.

    SSIM(x, y) = mean over the valid region of
        (2 μx μy + C1)(2 σxy + C2) / ((μx² + μy² + C1)(σx² + σy² + C2)),   C1 = (0.01 L)², C2 = (0.03 L)²

with local statistics from an isotropic Gaussian window (σ = 1.5, truncated at 3.5 σ: 11×11),
population (not sample) covariances, computed per channel and averaged. Only pixels whose window
lies inside the image count ("valid" filtering), which is what `skimage.metrics.structural_similarity`
(gaussian_weights=True, use_sample_covariance=False, data_range=L) returns after its border crop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

SSIM_SIGMA = 1.5  # Wang et al.'s Gaussian window
SSIM_TRUNCATE = 3.5  # window radius in σ (scipy/skimage default): 11×11 at σ = 1.5
K1, K2 = 0.01, 0.03


def gaussian_window(sigma: float = SSIM_SIGMA, truncate: float = SSIM_TRUNCATE,
                    dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> Tensor:
    """[2r + 1] normalised 1-D Gaussian, r = int(truncate·σ + 0.5) (scipy.ndimage's radius)."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).to(dtype=dtype, device=device)


def _filter_valid(x: Tensor, k: Tensor) -> Tensor:
    """Separable Gaussian filter, per channel, no padding: [B, C, H, W] -> [B, C, H-2r, W-2r]."""
    c = x.shape[1]
    kh = k.reshape(1, 1, -1, 1).expand(c, 1, -1, 1)
    kw = k.reshape(1, 1, 1, -1).expand(c, 1, 1, -1)
    return F.conv2d(F.conv2d(x, kh, groups=c), kw, groups=c)


def ssim(x: Tensor, y: Tensor, data_range: float = 1.0, sigma: float = SSIM_SIGMA) -> Tensor:
    """Mean SSIM per image.

    Args:
        x, y: [B, C, H, W] images with values spanning `data_range` (e.g. [0, 1] -> 1.0);
            H and W at least the window size (11 at σ = 1.5).
    Returns:
        [B] SSIM in [-1, 1] (1 = identical).
    """
    assert x.shape == y.shape and x.ndim == 4, (x.shape, y.shape)
    k = gaussian_window(sigma, dtype=x.dtype, device=x.device)
    assert min(x.shape[-2:]) >= k.numel(), f"SSIM needs images of at least {k.numel()} px, got {tuple(x.shape[-2:])}"
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    mu_x, mu_y = _filter_valid(x, k), _filter_valid(y, k)
    var_x = _filter_valid(x * x, k) - mu_x**2
    var_y = _filter_valid(y * y, k) - mu_y**2
    cov = _filter_valid(x * y, k) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.mean(dim=(1, 2, 3))
