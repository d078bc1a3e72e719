"""`GaussianSet`: a batch of 3D Gaussian splats, the currency between generator and renderer.

Conventions (shared with gsplat and the INRIA 3DGS ply format):
- means are world-space positions; log_scales are natural logs of the per-axis std deviations;
- quaternions are unit, stored w, x, y, z;
- colour is spherical harmonics with the 3DGS offset: rgb = clamp(SH(dir) + 0.5, min=0);
- opacities are post-activation, in (0, 1).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

SH_C0 = 0.28209479177387814  # Y_0^0
SH_C1 = 0.4886025119029199  # |Y_1^m| factor


@dataclass
class GaussianSet:
    """A batch of B sets of N Gaussians.

    Attributes:
        means:      [B, N, 3] world positions.
        log_scales: [B, N, 3] log standard deviations along the local axes.
        quats:      [B, N, 4] quaternions (w, x, y, z); unit, except in imported models, which keep
                    the authors' column-normalised ones (renderers and writers normalise).
        sh:         [B, N, K, 3] SH coefficients, K = (degree + 1)^2 in {1, 4}.
        opacities:  [B, N] in (0, 1).
    """

    means: Tensor
    log_scales: Tensor
    quats: Tensor
    sh: Tensor
    opacities: Tensor

    def __post_init__(self) -> None:
        b, n = self.means.shape[:2]
        assert self.means.shape == (b, n, 3), self.means.shape
        assert self.log_scales.shape == (b, n, 3), self.log_scales.shape
        assert self.quats.shape == (b, n, 4), self.quats.shape
        assert self.sh.ndim == 4 and self.sh.shape[:2] == (b, n) and self.sh.shape[3] == 3, self.sh.shape
        assert self.sh.shape[2] in (1, 4), f"SH degree 0 or 1 expected, got K={self.sh.shape[2]}"
        assert self.opacities.shape == (b, n), self.opacities.shape

    @property
    def batch_size(self) -> int:
        return self.means.shape[0]

    @property
    def num_gaussians(self) -> int:
        return self.means.shape[1]

    @property
    def sh_degree(self) -> int:
        return 0 if self.sh.shape[2] == 1 else 1

    @property
    def device(self) -> torch.device:
        return self.means.device

    def map(self, fn) -> "GaussianSet":
        """Apply ``fn`` to every tensor field and return a new set."""
        return GaussianSet(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    def to(self, *args, **kwargs) -> "GaussianSet":
        return self.map(lambda t: t.to(*args, **kwargs))

    def detach(self) -> "GaussianSet":
        return self.map(lambda t: t.detach())

    def select(self, batch_index: int | slice) -> "GaussianSet":
        """Sub-batch, keeping the batch dimension."""
        idx = slice(batch_index, batch_index + 1) if isinstance(batch_index, int) else batch_index
        return self.map(lambda t: t[idx])

    def scales(self) -> Tensor:
        """[B, N, 3] standard deviations (exp of log_scales)."""
        return self.log_scales.exp()

    def colors(self, view_dirs: Tensor | None = None) -> Tensor:
        """[B, N, 3] RGB for unit view directions [B, N, 3] (camera to Gaussian); DC only if None."""
        return eval_sh(self.sh, view_dirs)

    @staticmethod
    def cat(sets: list["GaussianSet"], dim: int = 0) -> "GaussianSet":
        """Concatenate along the batch (dim=0) or Gaussian (dim=1) axis."""
        return GaussianSet(**{f.name: torch.cat([getattr(s, f.name) for s in sets], dim=dim) for f in fields(GaussianSet)})


def eval_sh(sh: Tensor, view_dirs: Tensor | None = None) -> Tensor:
    """RGB from SH of degree 0 or 1 (3DGS convention, +0.5 offset, clamped at 0).

    Args:
        sh:        [..., K, 3], K in {1, 4}.
        view_dirs: [..., 3] unit directions from the camera to the Gaussian; needed when K == 4.
    Returns:
        [..., 3]
    """
    rgb = SH_C0 * sh[..., 0, :]
    if sh.shape[-2] == 4:
        assert view_dirs is not None and view_dirs.shape[-1] == 3, "degree-1 SH needs view directions"
        x, y, z = view_dirs[..., 0:1], view_dirs[..., 1:2], view_dirs[..., 2:3]
        rgb = rgb - SH_C1 * y * sh[..., 1, :] + SH_C1 * z * sh[..., 2, :] - SH_C1 * x * sh[..., 3, :]
    return torch.clamp_min(rgb + 0.5, 0.0)


def rgb_to_sh0(rgb: Tensor) -> Tensor:
    """[..., 3] RGB -> [..., 1, 3] degree-0 SH coefficient."""
    return ((rgb - 0.5) / SH_C0).unsqueeze(-2)


def sh0_to_rgb(sh: Tensor) -> Tensor:
    """[..., K, 3] SH -> [..., 3] DC colour (view-independent part)."""
    return SH_C0 * sh[..., 0, :] + 0.5
